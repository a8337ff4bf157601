// What apps get from `import { ready, onDrain, isBaton } from 'baton-reload'`. Apps never need
// it to run under baton; it is for the two things only the app knows: when it has warmed
// up (with --ready manual), and what long-lived work to wind down when it is replaced.
//
// It talks to the worker runtime through a global registered under Symbol.for(), not
// through a module import, so it works even when the app resolves another copy or
// version of this package than the one baton preloaded. Outside baton every function
// is a harmless no-op, so the same app code runs bare.

import { type BatonRuntime, RUNTIME_KEY } from './common/protocol.js';

function runtime(): BatonRuntime | undefined {
  return (globalThis as { [RUNTIME_KEY]?: BatonRuntime })[RUNTIME_KEY];
}

/** Tell baton this worker may be sent traffic (only needed with `--ready manual`). */
export function ready(): void {
  runtime()?.ready();
}

/**
 * Run `fn` when this worker starts to drain (it already stopped accepting): close
 * websockets, stop background jobs, flush. The worker exits once every open connection
 * has ended and every hook has settled (a returned promise is awaited), or at the drain
 * deadline, whichever comes first. With `--keep-previous`, `info.standby` is true when the
 * process stays alive afterwards as a warm standby that a rollback may make serve again:
 * end connections then, but keep what serving needs (database pools); the hook runs again
 * with `standby: false` when the standby leaves for good.
 */
export function onDrain(fn: (info: { standby: boolean }) => unknown): void {
  runtime()?.onDrain(fn);
}

/** True when this process is a worker run by baton. */
export function isBaton(): boolean {
  return runtime() !== undefined;
}

/** The generation (1, 2, ...) and pool index of this worker, or null outside baton. */
export function workerInfo(): { generation: number; worker: number } | null {
  const rt = runtime();
  return rt ? { generation: rt.generation, worker: rt.worker } : null;
}
