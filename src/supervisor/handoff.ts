// The handoff: replacing the serving generation by a new one, as an explicit state machine.
//
//  waiting --(fewer old generations draining than --max-draining)--> starting
//
//            new workers ready             old ones answered "stopped accepting"
//  starting -------------------> transferring -------------------------------> done
//     |   ^                           |   |
//     |   +---------------------------+   |  rolling (--max-surge): next batch
//     | a new worker exited / not ready   |  rolling: a new worker exited while
//     | in time / supervisor stopping     |  old ones of its batch were retired
//     v                                   v
//  rolling-back --(new workers drained; old generation whole again)--> failed
//
// --handoff exclusive: in `transferring`, the new workers accept only after every old one
// answered (or, silent past the transfer timeout, was killed): connections wait in the
// kernel queue meanwhile, and no two versions ever accept at once.
//
// The old generation drains in the background after `done`; the supervisor tracks that,
// so a long-lived connection never blocks the next deploy.
import type { Generation } from './generation.js';
import { StartError } from './generation.js';
import type { Worker } from './worker.js';
import type { ConnEndings } from '../common/protocol.js';
import { formatEndings } from '../common/connections.js';

export type HandoffState = 'waiting' | 'starting' | 'rolling-back' | 'transferring' | 'done' | 'failed';

const TRANSITIONS: Record<HandoffState, readonly HandoffState[]> = {
  waiting: ['starting'],
  starting: ['transferring', 'rolling-back'],
  'rolling-back': ['failed'],
  transferring: ['starting', 'done', 'rolling-back'],
  done: [],
  failed: [],
};

export type HandoffTrigger = 'start' | 'reload' | 'signal' | 'restart' | 'upgrade';

export interface HandoffRecord {
  id: number;
  trigger: HandoffTrigger;
  from: number | null;
  to: number;
  argv: string[];
  requestedAt: number;
  state: HandoffState;
  phases: { state: HandoffState; at: number }[];
  /** Request -> every new worker ready. */
  readyMs: number | null;
  /** Old generation told to drain -> all of it stopped accepting. */
  transferMs: number | null;
  /** Request -> done or failed. */
  totalMs: number | null;
  /** Request -> old generation exited (filled in later, in the background). */
  drainedMs: number | null;
  /** Connections the old generation still held at its drain deadline. */
  cut: number;
  /** How the old generation's connections ended, by kind (filled in when it exited). */
  ended: ConnEndings;
  error: string | null;
  /** Last output lines of the worker that failed the reload. */
  output: string[];
}

export interface HandoffPlan {
  old: Generation | null;
  next: Generation;
  workers: number;
  readyTimeoutMs: number;
  drainTimeoutMs: number;
  /** How long to wait for the old generation's "stopped accepting" before calling it done anyway. */
  transferTimeoutMs: number;
  /** Exclusive: the new generation accepts only once the old one has stopped (never two versions at once). */
  exclusive: boolean;
  /** Rolling: start at most this many new workers at a time (null: all at once). */
  maxSurge: number | null;
  /** Resolves once fewer old generations drain than the cap allows (null: room now). */
  drainSlot: Promise<void> | null;
  onChange(rec: HandoffRecord, message: string): void;
  /** Advice about a new worker (it said nothing for a while), for whoever follows the handoff; not a state change. */
  onHint(rec: HandoffRecord, text: string): void;
}

export function newRecord(id: number, trigger: HandoffTrigger, from: number | null, to: number, argv: string[], waiting = false): HandoffRecord {
  const now = Date.now();
  const state: HandoffState = waiting ? 'waiting' : 'starting';
  return {
    id, trigger, from, to, argv, requestedAt: now, state, phases: [{ state, at: now }],
    readyMs: null, transferMs: null, totalMs: null, drainedMs: null, cut: 0, ended: {}, error: null, output: [],
  };
}

function enter(rec: HandoffRecord, to: HandoffState, plan: HandoffPlan, message: string): void {
  if (!TRANSITIONS[rec.state].includes(to)) throw new Error(`handoff ${rec.id}: no transition ${rec.state} -> ${to}`);
  rec.state = to;
  const at = Date.now();
  rec.phases.push({ state: to, at });
  if (to === 'done' || to === 'failed') rec.totalMs = at - rec.requestedAt;
  plan.onChange(rec, message);
}

export async function runHandoff(rec: HandoffRecord, plan: HandoffPlan): Promise<HandoffRecord> {
  const { old, next } = plan;
  if (rec.state === 'waiting') {
    plan.onChange(rec, 'waiting: too many old generations still draining (--max-draining)');
    await plan.drainSlot;
    enter(rec, 'starting', plan, 'a draining generation exited');
  }
  const rolling = old !== null && plan.maxSurge !== null && plan.maxSurge < plan.workers;
  plan.onChange(rec, `starting generation ${next.number} with ${plan.workers} worker(s)${rolling ? `, ${plan.maxSurge} at a time` : ''}: ${rec.argv.join(' ')}`);
  // Any new worker that dies before the handoff is over fails it, even one that was ready
  // already (a pool's first worker while the rest start; a rolling batch while an old one
  // drains): the version is not fit to take over, and the old generation is made whole again.
  const crash = watchCrash(next);
  const hints = (w: Worker): void => void w.on('hint', (text: string) => plan.onHint(rec, text));
  next.on('worker-start', hints);
  try {
    if (rolling) await rollingStart(rec, plan, old, crash.died);
    else await Promise.race([next.start(plan.workers, plan.readyTimeoutMs), crash.died]);
  } catch (e) {
    rec.error = (e as Error).message;
    rec.output = e instanceof StartError ? e.output : [];
    enter(rec, 'rolling-back', plan, `generation ${next.number} failed: ${rec.error}; stopping it`);
    // A rolling start may have retired old workers already: refill their slots first.
    if (old && rolling) old.resize(old.target);
    await next.drain(plan.drainTimeoutMs);
    if (old && rolling) await old.whenSized(plan.readyTimeoutMs);
    enter(rec, 'failed', plan, old ? `generation ${old.number} keeps serving` + (rolling ? '' : ', untouched') : 'no generation serves');
    return rec;
  } finally {
    crash.dispose();
    next.off('worker-start', hints);
  }
  rec.readyMs ??= Date.now() - rec.requestedAt;
  if (!rolling) enter(rec, 'transferring', plan, `generation ${next.number} ready in ${rec.readyMs} ms` + (old ? `; generation ${old.number} stops accepting` : ''));
  if (old) {
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const answered = await Promise.race([
      old.drain(plan.drainTimeoutMs).then(() => true),
      new Promise<false>((res) => (timer = setTimeout(() => res(false), plan.transferTimeoutMs))),
    ]);
    clearTimeout(timer);
    rec.transferMs = (rec.transferMs ?? 0) + Date.now() - t0;
    if (!answered && plan.exclusive) {
      // Never two versions accepting: a generation that cannot confirm is stopped hard.
      plan.onChange(rec, `generation ${old.number} did not confirm it stopped accepting within ${plan.transferTimeoutMs} ms; killing it`);
      old.kill();
      await old.whenExited();
    } else if (!answered) {
      plan.onChange(rec, `generation ${old.number} did not confirm it stopped accepting within ${plan.transferTimeoutMs} ms; it is killed at its drain deadline`);
    }
    void old.whenExited().then(() => {
      rec.drainedMs = Date.now() - rec.requestedAt;
      rec.cut = old.cut;
      rec.ended = old.ended;
      const ended = formatEndings(rec.ended);
      plan.onChange(rec, `generation ${old.number} exited` + (ended ? ` (connections: ${ended})` : '') + (rec.cut ? `; ${rec.cut} connection(s) cut at the drain deadline` : ''));
    });
  }
  if (plan.exclusive) await next.startAccepting();
  enter(rec, 'done', plan, `generation ${next.number} serves`);
  return rec;
}

/**
 * Replace the old workers a batch at a time: start K new ones, wait until they are ready,
 * then retire K old ones and wait until they have exited. Ready capacity never drops below
 * N and no more than N + K workers are alive at once.
 */
async function rollingStart(rec: HandoffRecord, plan: HandoffPlan, old: Generation, died: Promise<never>): Promise<void> {
  const { next, workers } = plan;
  const k = plan.maxSurge!;
  for (let first = 0; first < workers; first += k) {
    const slots = Array.from({ length: Math.min(k, workers - first) }, (_, i) => first + i);
    if (first > 0) enter(rec, 'starting', plan, `starting worker(s) ${slots.join(', ')} of generation ${next.number}`);
    await Promise.race([next.startSlots(slots, plan.readyTimeoutMs), died]);
    rec.readyMs ??= Date.now() - rec.requestedAt;
    const last = first + k >= workers;
    // The last batch leaves the old generation's remaining workers to the common transfer below.
    enter(rec, 'transferring', plan, `worker(s) ${slots.join(', ')} of generation ${next.number} ready` + (last ? `; generation ${old.number} stops accepting` : `; retiring the same of generation ${old.number}`));
    if (last) break;
    const t0 = Date.now();
    await Promise.race([old.retire(slots, plan.drainTimeoutMs), died]);
    rec.transferMs = (rec.transferMs ?? 0) + Date.now() - t0;
  }
  next.markServing(workers);
}

/** Rejects when a worker of `g` exits while `g` is still starting (not yet serving). */
function watchCrash(g: Generation): { died: Promise<never>; dispose(): void } {
  let onExit: (w: Worker) => void = () => {};
  const died = new Promise<never>((_, reject) => {
    onExit = (w) => {
      if (g.state !== 'starting') return;
      const when = w.readyAt === null ? 'before it was ready' : 'after it was ready, before the handoff was over';
      reject(new StartError(`worker ${w.index} of generation ${g.number} ${w.describeExit()} ${when}`, w.output.slice(-20)));
    };
    g.on('worker-exit', onExit);
  });
  died.catch(() => {}); // a rejection nobody awaits any more (the handoff is over) is not an error
  return { died, dispose: () => g.off('worker-exit', onExit) };
}

/** Time spent in each state, summed (a rolling handoff passes through starting and transferring once per batch). */
export function phaseDurations(rec: HandoffRecord): Partial<Record<HandoffState, number>> {
  const out: Partial<Record<HandoffState, number>> = {};
  for (let i = 0; i + 1 < rec.phases.length; i++) {
    const p = rec.phases[i]!;
    out[p.state] = (out[p.state] ?? 0) + rec.phases[i + 1]!.at - p.at;
  }
  return out;
}
