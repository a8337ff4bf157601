// baton's worker runtime entry. The supervisor puts it into every Node worker with
// NODE_OPTIONS=--import=<this file's URL>, so NODE_OPTIONS also reaches every process the
// app starts: it must cost nothing and change nothing unless this process is the worker
// baton spawned. The real work lives in ./runtime.js, loaded only when it is.
//
// Only `import type` from ../protocol.js: that module loads zod, ~160 ms of start-up.
import type { ENV } from '../protocol.js';

const LISTENERS: typeof ENV.listeners = 'BATON_LISTENERS'; // checked against protocol.ts by tsc

// The process baton spawned has the listeners, an IPC channel to baton, and LISTEN_PID set
// to its own pid by baton's exec wrapper. Children that inherit the environment (and
// cluster workers, which have an IPC channel too) fail the pid check.
if (
  process.env[LISTENERS] !== undefined &&
  typeof process.send === 'function' &&
  process.env.LISTEN_PID === String(process.pid)
) {
  const { start } = await import('./runtime.js');
  start();
}
