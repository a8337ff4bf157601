// baton's worker runtime entry. The supervisor puts it into every Node worker with
// NODE_OPTIONS=--import=<this file's URL>, so NODE_OPTIONS also reaches every process the
// app starts: it must cost nothing and change nothing unless this process is the worker
// baton spawned. The real work lives in ./runtime.js, loaded only when it is.
//
// Only `import type` from ../protocol.js: that module loads valibot and builds the control
// schemas, which no worker needs.
import type { ENV } from '../common/protocol.js';
import type { THREAD_KEY } from './threads.js';

const LISTENERS: typeof ENV.listeners = 'BATON_LISTENERS'; // checked against protocol.ts by tsc
const THREAD: typeof THREAD_KEY = 'baton.thread';

// The process baton spawned has the listeners, an IPC channel to baton, and LISTEN_PID set
// to its own pid by baton's exec wrapper. Children that inherit the environment (and
// cluster workers, which have an IPC channel too) fail the pid check. With --threads, a
// thread the runtime started for a copy of the app has no IPC channel but baton's mark in
// its workerData; threads the app starts itself have neither.
if (
  process.env[LISTENERS] !== undefined &&
  process.env.LISTEN_PID === String(process.pid) &&
  (typeof process.send === 'function' || (await isBatonThread()))
) {
  const { start } = await import('./runtime.js');
  start();
}

async function isBatonThread(): Promise<boolean> {
  const { isMainThread, workerData } = await import('node:worker_threads');
  return !isMainThread && typeof workerData === 'object' && workerData !== null && THREAD in workerData;
}
