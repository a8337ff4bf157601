// The worker runtime, started by ./preload.js inside the worker process baton spawned:
// redirects listen() to the inherited listeners, says when the worker is ready, drains
// when told to (or when baton is gone), and backs the SDK (../sdk.ts).
import type { ENV, FromWorker, ListenerInfo, ReadyMode } from '../protocol.js';
import { RUNTIME_KEY, type BatonRuntime } from '../sdk.js';
import { patchListen } from './listen.js';
import { Drain } from './drain.js';

// Literal copies, type-checked against protocol.ts (importing its values would load zod).
const E: typeof ENV = {
  listeners: 'BATON_LISTENERS',
  backlog: 'BATON_BACKLOG',
  ready: 'BATON_READY',
  generation: 'BATON_GENERATION',
  worker: 'BATON_WORKER',
  drainTimeout: 'BATON_DRAIN_TIMEOUT_MS',
  distribution: 'BATON_DISTRIBUTION',
};

const DEFAULT_BACKLOG = 511;
const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

export function start(): void {
  let listeners: ListenerInfo[];
  try {
    listeners = JSON.parse(process.env[E.listeners] ?? '') as ListenerInfo[];
    if (!Array.isArray(listeners)) throw new Error('not an array');
  } catch (err) {
    process.stderr.write(`baton: ${E.listeners} is not valid (${(err as Error).message}); the baton runtime is off\n`);
    return;
  }
  const backlog = num(process.env[E.backlog], DEFAULT_BACKLOG);
  const mode: ReadyMode = process.env[E.ready] === 'manual' ? 'manual' : 'listen';
  const drainTimeoutMs = num(process.env[E.drainTimeout], DEFAULT_DRAIN_TIMEOUT_MS);

  const rawSend = process.send!;
  // Always with a callback: without one, a send on a closing channel emits 'error' on
  // process, which would crash an app that has no handler for it.
  const send = (msg: FromWorker, done?: () => void): void => {
    if (!process.connected) return done?.();
    try {
      Reflect.apply(rawSend, process, [msg, undefined, undefined, () => done?.()]);
    } catch {
      done?.();
    }
  };
  const warn = (message: string): void => {
    process.stderr.write(`${message}\n`);
    send({ baton: 1, type: 'warning', message });
  };

  const drain = new Drain({ send, warn, exit: () => process.exit(0) });

  let readySent = false;
  const sendReady = (): void => {
    if (readySent || drain.started) return;
    readySent = true;
    send({ baton: 1, type: 'ready' });
  };
  const appReady = (): void => {
    if (mode === 'manual') sendReady();
  };

  const served = new Set<number>();
  patchListen(listeners, backlog, {
    server: (s) => drain.track(s),
    served: (l) => {
      if (served.has(l.fd)) return;
      served.add(l.fd);
      send({ baton: 1, type: 'listening', listener: l.name });
      if (mode === 'listen' && served.size === listeners.length) sendReady();
    },
    warn,
    draining: () => drain.started,
  });
  if (mode === 'listen' && listeners.length === 0) setImmediate(sendReady);

  // PM2's convention for "ready": process.send('ready'). Passed on unchanged.
  process.send = function (this: NodeJS.Process, ...args: unknown[]): boolean {
    if (args[0] === 'ready') appReady();
    return Reflect.apply(rawSend, this, args) as boolean;
  } as typeof process.send;

  process.on('message', (m: unknown) => {
    const msg = m as { baton?: unknown; type?: unknown; timeoutMs?: unknown } | null;
    if (msg?.baton !== 1 || msg.type !== 'drain') return;
    drain.start(typeof msg.timeoutMs === 'number' && msg.timeoutMs >= 0 ? msg.timeoutMs : drainTimeoutMs);
  });
  // The channel closes when baton dies: nobody will say drain, and a worker left serving
  // outside baton would hold connections no reload can reach. Leave on our own.
  process.on('disconnect', () => drain.start(drainTimeoutMs));
  // Listening for 'message'/'disconnect' refs the channel; it must not keep an app alive
  // that would otherwise exit.
  process.channel?.unref();

  const rt: BatonRuntime = {
    ready: appReady,
    onDrain: (fn) => drain.onDrain(fn),
    generation: num(process.env[E.generation], 0),
    worker: num(process.env[E.worker], 0),
  };
  Object.defineProperty(globalThis, RUNTIME_KEY, { value: Object.freeze(rt), configurable: true });
}

function num(text: string | undefined, fallback: number): number {
  const n = Number(text);
  return text !== undefined && text !== '' && Number.isFinite(n) && n >= 0 ? n : fallback;
}
