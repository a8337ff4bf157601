// The worker runtime, started by ./preload.js inside the worker process baton spawned (and,
// with --threads, in each thread it runs a copy of the app in: ./threads.ts): redirects
// listen() to the inherited listeners, says when the worker is ready, drains when told to
// (or when baton is gone), and backs the SDK (../sdk.ts).
import type * as net from 'node:net';
import { isMainThread } from 'node:worker_threads';
import type { ENV, ListenerInfo, ReadyMode, Warmup } from '../common/protocol.js';
import { type BatonRuntime, RUNTIME_KEY } from '../common/protocol.js';
import { Drain } from './drain.js';
import { patchListen } from './listen.js';
import { Stats } from './stats.js';
import { runThreads, threadUplink } from './threads.js';
import { ipcUplink, type Uplink } from './uplink.js';
import { parseWarmup, type WarmupResult, warmUp } from './warmup.js';
import './dgram.js'; // UDP listeners: patches dgram's bind() when baton passed any

// Literal copies, type-checked against protocol.ts (importing its values would load valibot and the schemas).
const E: typeof ENV = {
  listeners: 'BATON_LISTENERS',
  backlog: 'BATON_BACKLOG',
  ready: 'BATON_READY',
  generation: 'BATON_GENERATION',
  worker: 'BATON_WORKER',
  drainTimeout: 'BATON_DRAIN_TIMEOUT_MS',
  distribution: 'BATON_DISTRIBUTION',
  handoff: 'BATON_HANDOFF',
  threads: 'BATON_THREADS',
  warmup: 'BATON_WARMUP',
  drainSpread: 'BATON_DRAIN_SPREAD_MS',
  stats: 'BATON_STATS',
};

const DEFAULT_BACKLOG = 511;
const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

/** `uplink`: how to reach baton when this process is not the one it spawned (default: the IPC channel). */
export function start(uplink?: (drainTimeoutMs: number) => Uplink): void {
  let listeners: ListenerInfo[];
  try {
    listeners = JSON.parse(process.env[E.listeners] ?? '') as ListenerInfo[];
    if (!Array.isArray(listeners) || !listeners.every(wellFormed)) throw new Error('not a list of listeners');
  } catch (err) {
    process.stderr.write(`baton: ${E.listeners} is not valid (${(err as Error).message}); the baton runtime is off\n`);
    return;
  }
  const backlog = num(process.env[E.backlog], DEFAULT_BACKLOG);
  // notify: the app itself sends READY=1 to NOTIFY_SOCKET; the runtime says nothing then.
  const modeText = process.env[E.ready];
  const mode: ReadyMode = modeText === 'manual' || modeText === 'notify' ? modeText : 'listen';
  const drainTimeoutMs = num(process.env[E.drainTimeout], DEFAULT_DRAIN_TIMEOUT_MS);

  // Who this copy of the app answers to: baton, or (in a thread) the process's main thread,
  // which then speaks to baton for every copy.
  const threads = isMainThread ? num(process.env[E.threads], 1) : 1;
  const toBaton = (): Uplink => uplink?.(drainTimeoutMs) ?? ipcUplink();
  const up = !isMainThread ? threadUplink() : threads > 1 ? runThreads(threads, listeners, toBaton(), drainTimeoutMs) : toBaton();
  const send = up.send;
  const warn = (message: string): void => {
    process.stderr.write(`${message}\n`);
    send({ baton: 1, type: 'warning', message });
  };

  // With --ready notify the app itself says READY=1: no moment to warm up before it.
  let warmup: Warmup | null = null;
  try {
    if (mode !== 'notify') warmup = parseWarmup(process.env[E.warmup]);
  } catch (err) {
    warn(`baton: ${E.warmup} is not valid (${(err as Error).message}); no warm-up`);
  }
  const drain = new Drain({ send, warn, exit: () => up.exit() }, num(process.env[E.drainSpread], 0));

  // Warm-up: each server the app listens with answers its warm-up requests before it accepts
  // (its listen is deferred as in an exclusive handoff), whether or not the worker then says
  // ready itself (--ready-after); ready waits for every warm-up begun.
  const warming = new Map<net.Server, Promise<WarmupResult>>();
  const warm = (s: net.Server): void => {
    if (!warmup) return;
    const w = warming.get(s) ?? warmUp([s], warmup);
    warming.set(s, w);
    // An exclusive handoff accepts when the supervisor says so; a server listening again, at once.
    void w.then(() => {
      if (!drain.started && !deferAccept) accept(s);
    });
  };
  let readySent = false;
  const sendReady = (): void => {
    if (readySent || drain.started) return;
    readySent = true;
    if (!warmup) return send({ baton: 1, type: 'ready' });
    void Promise.all(warming.values()).then((rs) => {
      if (drain.started) return;
      const sum = { requests: 0, failed: 0, ms: 0 };
      for (const r of rs) {
        sum.requests += r.requests;
        sum.failed += r.failed;
        sum.ms = Math.max(sum.ms, Math.round(r.ms));
      }
      send({ baton: 1, type: 'ready', warmup: sum });
    });
  };
  const appReady = (): void => {
    if (mode === 'manual') sendReady();
  };

  const served = new Set<number>();
  const roundRobin = process.env[E.distribution] === 'round-robin';
  const deferAccept = process.env[E.handoff] === 'exclusive';
  // Round-robin connections come as raw handles; sys.js makes sockets of them. Loaded now,
  // while the app starts (not in every worker: ~4 ms), and long before the first connection.
  let socketOf: ((handle: unknown) => net.Socket) | null = null;
  const early: [string, unknown][] = [];
  if (roundRobin) {
    void import('../os/internals.js').then((sys) => {
      socketOf = sys.socketOf;
      for (const [listener, handle] of early.splice(0)) deliver(listener, sys.socketOf(handle));
    });
  }
  // With a warm-up, listen() is deferred as in an exclusive handoff: the worker accepts only once warm.
  const stats = process.env[E.stats] === '1' ? new Stats(send) : null;
  const { deliver, release, accept, park, unpark } = patchListen(
    listeners,
    { backlog, roundRobin, deferAccept: deferAccept || warmup !== null },
    {
      server: (s) => {
        drain.track(s);
        stats?.track(s);
      },
      served: (l, s) => {
        warm(s);
        if (served.has(l.fd)) return;
        served.add(l.fd);
        send({ baton: 1, type: 'listening', listener: l.name });
        if (mode === 'listen' && served.size === listeners.length) sendReady();
      },
      warn,
      holdChannel: (hold) => up.hold(hold),
      // A standby keeps the listeners to accept again; only a drain for good gives them up.
      draining: () => drain.started && !drain.standby,
    },
  );
  if (mode === 'listen' && listeners.length === 0) setImmediate(sendReady);

  // PM2's convention for "ready": process.send('ready'). Passed on unchanged. A thread has
  // no process.send: its copy says ready through the SDK, or by listening.
  const rawSend = process.send;
  if (rawSend) {
    process.send = ((...args: unknown[]): boolean => {
      if (args[0] === 'ready') appReady();
      return Reflect.apply(rawSend, process, args) as boolean;
    }) as typeof process.send;
  }

  up.receive(
    (m: unknown, handle: unknown) => {
      const msg = m as { baton?: unknown; type?: unknown; timeoutMs?: unknown; listener?: unknown } | null;
      if (msg?.baton !== 1) return;
      if (msg.type === 'drain') {
        const standby = (msg as { standby?: unknown }).standby === true;
        if (standby && !drain.started) park();
        drain.start(typeof msg.timeoutMs === 'number' && msg.timeoutMs >= 0 ? msg.timeoutMs : drainTimeoutMs, standby);
        if (!drain.standby) release();
      } else if (msg.type === 'resume') {
        // Rollback: this standby serves again, at once (no bind, no start-up).
        if (drain.standby) {
          drain.resume();
          unpark();
        }
        send({ baton: 1, type: 'accepting' });
      } else if (msg.type === 'accept') {
        accept();
        send({ baton: 1, type: 'accepting' });
      } else if (msg.type === 'connection' && typeof msg.listener === 'string' && handle) {
        if (socketOf) deliver(msg.listener, socketOf(handle));
        else early.push([msg.listener, handle]);
      }
    },
    () => {
      // Nobody left to say drain (baton died): leave on our own.
      drain.start(drainTimeoutMs);
      release();
    },
  );
  // baton reads our stdout and stderr: once it is gone, the next write fails with EPIPE, and
  // an 'error' nobody handles would kill the process with the requests it is finishing.
  // (Registered now: a write can fail before 'disconnect' is emitted.)
  for (const s of [process.stdout, process.stderr]) s.on('error', () => {});

  const rt: BatonRuntime = {
    ready: appReady,
    onDrain: (fn) => drain.onDrain(fn),
    generation: num(process.env[E.generation], 0),
    worker: num(process.env[E.worker], 0),
  };
  Object.defineProperty(globalThis, RUNTIME_KEY, { value: Object.freeze(rt), configurable: true });
  // Tells baton that drain can go over IPC from now on, even before anything listens.
  send({ baton: 1, type: 'hello', pid: process.pid });
}

function num(text: string | undefined, fallback: number): number {
  const n = Number(text);
  return text !== undefined && text !== '' && Number.isFinite(n) && n >= 0 ? n : fallback;
}

function wellFormed(l: ListenerInfo): boolean {
  if (typeof l !== 'object' || l === null || !Number.isInteger(l.fd) || typeof l.name !== 'string') return false;
  return l.kind === 'tcp' ? typeof l.host === 'string' && Number.isInteger(l.port) : l.kind === 'unix' && typeof l.path === 'string';
}
