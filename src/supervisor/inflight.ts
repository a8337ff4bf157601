// How much an old generation still holds while it drains, from the counts its workers'
// runtimes report (drain-progress), for `baton reload`: "generation 1 draining, 3 in flight".
import type { Generation } from './generation.js';
import type { Worker } from './worker.js';

/** A runtime reports right after it stopped accepting; this bounds the wait for a first count. */
const FIRST_COUNT_MS = 250;

/** Open connections of the generation's live workers; null when none of them reports (not Node). */
function inFlight(g: Generation): number | null {
  const counts = g.live.map((w) => w.connections);
  return counts.some((c) => c !== null) ? counts.reduce<number>((n, c) => n + (c ?? 0), 0) : null;
}

function message(g: Generation): string {
  const n = inFlight(g);
  return `generation ${g.number} draining` + (n === null ? '' : `, ${n} in flight`);
}

/** Resolves once every worker that has a runtime has sent a count (or reached standby, or exited, or the bound passed). */
function firstCounts(workers: Worker[]): Promise<void> {
  const waiting = workers.filter((w) => w.hasRuntime && w.connections === null && w.state !== 'exited');
  if (waiting.length === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, FIRST_COUNT_MS);
    function done(): void {
      clearTimeout(timer);
      for (const w of waiting) w.off('progress', check).off('standby', check).off('exit', check);
      resolve();
    }
    function check(): void {
      if (waiting.every((w) => w.connections !== null || w.state === 'exited')) done();
    }
    // A worker with nothing in flight reaches standby without a count in between (the 'standby' message sets it to 0).
    for (const w of waiting) w.on('progress', check).on('standby', check).on('exit', check);
  });
}

/** Report as a `draining` progress event once counts are in and, with `follow`, at each change until it has exited. */
export async function reportDrain(g: Generation, emit: (state: string, message: string) => void, follow: boolean): Promise<void> {
  const workers = g.live;
  await firstCounts(workers);
  if (g.state === 'exited') return;
  let last = message(g);
  emit('draining', last);
  if (!follow) return;
  const changed = (): void => {
    const m = message(g);
    if (m === last) return;
    last = m;
    emit('draining', m);
  };
  for (const w of workers) w.on('progress', changed);
  void g.whenExited().then(() => {
    for (const w of workers) w.off('progress', changed);
  });
}
