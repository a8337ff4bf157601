// The handoff: replacing the serving generation by a new one, as an explicit state machine.
//
//  waiting --(fewer old generations draining than --max-draining)--> starting
//
//            new workers ready             old ones answered "stopped accepting"
//  starting -------------------> transferring ------------------------------> done
//   | |  ^  \                     |   |  \  --probation                        ^
//   | |  |   \ --canary n         |   |   +-----------> probation -- healthy --+
//   | |  |    v                   |   |                     |
//   | |  +-- canary (both accept, |   |                     | a death, too many 5xx,
//   | |        probation's rules) |   |                     | or `baton rollback`
//   | |          | unhealthy      |   |                     v
//   | |          v                |   |                   failed  (then a rollback handoff)
//   | a new worker exited / not   |   |  rolling (--max-surge): next batch
//   | ready in time / stopping    |   |  rolling: a new worker died while old ones were retired
//   v                             v   v
//  rolling-back --(new workers drained; old generation whole again)--> failed
//
// A rollback is a handoff of its own, from the serving generation back to the standby:
//
//            standby accepts again          current one stopped accepting
//  resuming -----------------------> transferring ----------------------------> done
//     | no standby worker left
//     v
//   failed  (the supervisor then reloads the previous command line instead)
//
// --handoff exclusive: in `transferring`, the new workers accept only after every old one
// answered (or, silent past the transfer timeout, was killed): connections wait in the
// kernel queue meanwhile, and no two versions ever accept at once. (So no canary.)
//
// The old generation drains in the background after `done` (with --keep-previous, into
// standby); the supervisor tracks that, so a long-lived connection never blocks the next deploy.

import { formatEndings } from '../common/connections.js';
import type { ConnEndings } from '../common/protocol.js';
import type { Generation } from './generation.js';
import { StartError } from './generation.js';
import type { Worker } from './worker.js';

export type HandoffState = 'waiting' | 'starting' | 'canary' | 'rolling-back' | 'transferring' | 'probation' | 'resuming' | 'done' | 'failed';

const TRANSITIONS: Record<HandoffState, readonly HandoffState[]> = {
  waiting: ['starting'],
  starting: ['transferring', 'rolling-back', 'canary'],
  canary: ['starting', 'rolling-back'],
  'rolling-back': ['failed'],
  transferring: ['starting', 'probation', 'done', 'rolling-back'],
  probation: ['done', 'failed'],
  resuming: ['transferring', 'failed'],
  done: [],
  failed: [],
};

export type HandoffTrigger = 'start' | 'reload' | 'signal' | 'restart' | 'upgrade' | 'rollback';

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
  /** Request -> old generation exited, or in standby (filled in later, in the background). */
  drainedMs: number | null;
  /** The old generation finished its work and waits in standby (--keep-previous) rather than exited. */
  oldStandby?: boolean;
  /** Rollback: request -> every standby worker accepting again. */
  resumeMs: number | null;
  /** Why this rollback (or why the handoff was rolled back). */
  reason: string | null;
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
  /** The old generation drains into standby, kept for a rollback (--keep-previous). */
  keepOld: boolean;
  /** Start only this many new workers next to the old generation, under probation, then the rest (null: no canary). */
  canary: number | null;
  /** Watch a generation that serves: resolves with why it must be rolled back, or null once it passed (null: no probation). */
  probation: ((g: Generation) => Promise<string | null>) | null;
  onChange(rec: HandoffRecord, message: string): void;
  /** Advice about a new worker (it said nothing for a while), for whoever follows the handoff; not a state change. */
  onHint(rec: HandoffRecord, text: string): void;
}

export interface RollbackPlan {
  /** The standby to serve again. */
  standby: Generation;
  /** The generation serving now, drained for good. */
  current: Generation | null;
  drainTimeoutMs: number;
  transferTimeoutMs: number;
  /** --handoff exclusive: the current generation stops accepting before the standby starts again. */
  exclusive: boolean;
  onChange(rec: HandoffRecord, message: string): void;
}

export function newRecord(
  id: number,
  trigger: HandoffTrigger,
  from: number | null,
  to: number,
  argv: string[],
  first: HandoffState = 'starting',
  requestedAt = Date.now(),
): HandoffRecord {
  const now = Date.now();
  return {
    id,
    trigger,
    from,
    to,
    argv,
    requestedAt,
    state: first,
    phases: [{ state: first, at: now }],
    readyMs: null,
    transferMs: null,
    totalMs: null,
    drainedMs: null,
    resumeMs: null,
    reason: null,
    cut: 0,
    ended: {},
    error: null,
    output: [],
  };
}

function enter(rec: HandoffRecord, to: HandoffState, plan: Pick<HandoffPlan, 'onChange'>, message: string): void {
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
  plan.onChange(
    rec,
    `starting generation ${next.number} with ${plan.workers} worker(s)${rolling ? `, ${plan.maxSurge} at a time` : ''}: ${rec.argv.join(' ')}`,
  );
  // Any new worker that dies before the handoff is over fails it, even one that was ready
  // already (a pool's first worker while the rest start; a rolling batch while an old one
  // drains): the version is not fit to take over, and the old generation is made whole again.
  const crash = watchCrash(next);
  const hints = (w: Worker): void => void w.on('hint', (text: string) => plan.onHint(rec, text));
  next.on('worker-start', hints);
  const canary = old !== null && plan.canary !== null && plan.probation !== null ? Math.min(plan.canary, plan.workers) : null;
  try {
    if (rolling) await rollingStart(rec, plan, old, crash.died);
    else if (canary !== null) await runCanary(rec, plan, old!, canary, crash.died);
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
  if (!rolling)
    enter(rec, 'transferring', plan, `generation ${next.number} ready in ${rec.readyMs} ms` + (old ? `; generation ${old.number} stops accepting` : ''));
  if (old) {
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const answered = await Promise.race([
      (plan.keepOld ? old.drainToStandby(plan.drainTimeoutMs) : old.drain(plan.drainTimeoutMs)).then(() => true),
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
      plan.onChange(
        rec,
        `generation ${old.number} did not confirm it stopped accepting within ${plan.transferTimeoutMs} ms; it is killed at its drain deadline`,
      );
    }
    void old.whenSettled().then(() => {
      rec.drainedMs = Date.now() - rec.requestedAt;
      rec.cut = old.cut;
      rec.ended = old.ended;
      const ended = formatEndings(rec.ended);
      if (old.state === 'standby') rec.oldStandby = true;
      plan.onChange(
        rec,
        `generation ${old.number} ${old.state === 'standby' ? 'finished its work; standby, not accepting' : 'exited'}` +
          (ended ? ` (connections: ${ended})` : '') +
          (rec.cut ? `; ${rec.cut} connection(s) cut at the drain deadline` : ''),
      );
    });
  }
  if (plan.exclusive) await next.startAccepting();
  if (plan.probation && canary === null && old) {
    enter(rec, 'probation', plan, `generation ${next.number} serves, on probation`);
    const reason = await plan.probation(next);
    if (reason !== null) {
      rec.error = `rolled back: ${reason}`;
      rec.reason = reason;
      enter(rec, 'failed', plan, `generation ${next.number} failed its probation: ${reason}`);
      return rec;
    }
    plan.onChange(rec, `generation ${next.number} passed its probation`);
  }
  enter(rec, 'done', plan, `generation ${next.number} serves`);
  return rec;
}

/**
 * Canary: n workers of the new version accept next to the old generation, under
 * probation's rules. Healthy: the generation grows to its full size (then the common
 * transfer). Not: it throws, and the caller drains it; the old generation never stopped.
 */
async function runCanary(rec: HandoffRecord, plan: HandoffPlan, old: Generation, n: number, died: Promise<never>): Promise<void> {
  const { next } = plan;
  await Promise.race([next.start(n, plan.readyTimeoutMs), died]);
  rec.readyMs = Date.now() - rec.requestedAt;
  enter(rec, 'canary', plan, `${n} canary worker(s) of generation ${next.number} serve next to the ${old.readyCount} of generation ${old.number}`);
  const reason = await plan.probation!(next);
  if (reason !== null) {
    rec.reason = reason;
    throw new StartError(`canary failed: ${reason}`, []);
  }
  enter(rec, 'starting', plan, `canary passed; generation ${next.number} grows to ${plan.workers} worker(s)`);
  next.resize(plan.workers);
  await Promise.race([next.whenSized(plan.readyTimeoutMs), died]);
  if (next.readyCount < plan.workers)
    throw new StartError(`generation ${next.number} not ready at ${plan.workers} worker(s) after ${plan.readyTimeoutMs} ms`, []);
}

/** Undo the last handoff: the standby accepts again, the current generation drains as after any handoff. */
export async function runRollback(rec: HandoffRecord, plan: RollbackPlan): Promise<HandoffRecord> {
  const { standby, current } = plan;
  plan.onChange(rec, `generation ${standby.number} (standby) accepts again` + (rec.reason ? `: ${rec.reason}` : ''));
  if (!standby.resumable) {
    rec.error = `generation ${standby.number} has no standby worker left`;
    enter(rec, 'failed', plan, rec.error);
    return rec;
  }
  const stopCurrent = async (): Promise<void> => {
    if (!current) return;
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([current.drain(plan.drainTimeoutMs), new Promise<void>((res) => (timer = setTimeout(res, plan.transferTimeoutMs)))]);
    clearTimeout(timer);
    rec.transferMs = Date.now() - t0;
  };
  // Exclusive: never two versions accepting, so the standby waits for the current one to stop
  // (connections wait in the kernel queue meanwhile, as in an exclusive handoff).
  if (plan.exclusive) await stopCurrent();
  await standby.resumeAccepting();
  rec.resumeMs = rec.readyMs = Date.now() - rec.requestedAt;
  enter(
    rec,
    'transferring',
    plan,
    `generation ${standby.number} accepting again in ${rec.resumeMs} ms` +
      (current ? `; generation ${current.number} ${plan.exclusive ? 'stopped' : 'stops'} accepting` : ''),
  );
  if (current) {
    if (!plan.exclusive) await stopCurrent();
    void current.whenExited().then(() => {
      rec.drainedMs = Date.now() - rec.requestedAt;
      rec.cut = current.cut;
      plan.onChange(rec, `generation ${current.number} exited` + (rec.cut ? `; ${rec.cut} connection(s) cut at the drain deadline` : ''));
    });
  }
  enter(rec, 'done', plan, `generation ${standby.number} serves again`);
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
    enter(
      rec,
      'transferring',
      plan,
      `worker(s) ${slots.join(', ')} of generation ${next.number} ready` +
        (last ? `; generation ${old.number} stops accepting` : `; retiring the same of generation ${old.number}`),
    );
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
