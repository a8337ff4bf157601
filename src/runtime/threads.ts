// --threads T: T copies of the app in one worker process, as worker_threads.
//
// The main thread, where the runtime starts, keeps the IPC channel to baton and runs copy
// #0 (the app's main module runs there anyway, after the preload). It starts T-1 threads
// running the same entry with the same argv and execArgv. Node 20 applies NODE_OPTIONS from
// a thread's env to the thread, so the preload and the runtime start in each of them too
// (seen: a thread given `env: {}` runs no preload, one given a copy of process.env does).
// Each thread gets its own duplicate of every listener fd, so a copy that closes its server
// closes only its own descriptor, and talks to the main thread over a MessagePort of its
// own: parentPort belongs to the app.
//
// Toward baton the process stays one worker: ready once every copy is ready; told to drain,
// every copy drains (the same graceful drain), and the process says drained and exits once
// all of them have ended. A thread that ends while the process serves fails the whole
// process at once (exit 1), as an uncaught exception in a single-copy worker does: baton
// replaces it like any crashed worker, with its backoff. Recovering one thread in place
// would hide a crashing app from status and from that backoff.
import { createRequire } from 'node:module';
import { MessageChannel, type MessagePort, Worker, workerData } from 'node:worker_threads';
import { addEndings } from '../common/connections.js';
import type { ConnEndings, ConnKind, ENV, ENV_UDP, FromWorker, ListenerInfo } from '../common/protocol.js';
import type { Uplink } from './uplink.js';

/** The workerData key that marks a thread as a copy baton started (checked by ./preload.ts). */
export const THREAD_KEY = 'baton.thread';

// Literal copies, type-checked against protocol.ts (importing its values would load valibot and the schemas).
const LISTENERS: typeof ENV.listeners = 'BATON_LISTENERS';
const UDP: typeof ENV_UDP = 'BATON_UDP_LISTENERS';
/** If the last 'drained' cannot be flushed (channel gone), exit anyway, as ./drain.ts does. */
const EXIT_FALLBACK_MS = 1000;

interface Copy {
  name: string;
  /** Where to reach it; null for copy #0, this thread's own runtime. */
  port: MessagePort | null;
  ready: boolean;
  stopped: boolean;
  accepting: boolean;
  connections: number;
  cut: number;
  /** How its drain's connections ended, and while it drains, its open ones by kind. */
  endings: ConnEndings;
  byKind: Partial<Record<ConnKind, number>>;
  ended: boolean;
}

/**
 * In the main thread: starts copies 1..count-1 and returns the uplink copy #0 uses. What the
 * copies say reaches baton through `up` as if one worker spoke.
 */
export function runThreads(count: number, listeners: ListenerInfo[], up: Uplink, drainTimeoutMs: number): Uplink {
  const copy = (name: string, port: MessagePort | null): Copy => ({
    name,
    port,
    ready: false,
    stopped: false,
    accepting: false,
    connections: 0,
    cut: 0,
    endings: {},
    byKind: {},
    ended: false,
  });
  const self = copy('the main thread', null);
  const copies = [self];
  const announced = new Set<string>();
  const said = new Set<FromWorker['type']>();
  let draining = false;
  let finished = false;

  try {
    const entry = entryFile();
    for (let i = 1; i < count; i++) copies.push(startThread(i, entry));
  } catch (err) {
    // The process was asked for `count` copies: serving with fewer would be a silent lie.
    process.stderr.write(`baton: cannot start --threads ${count}: ${(err as Error).message}\n`);
    process.exit(1);
  }

  function startThread(i: number, entry: string): Copy {
    const { port1, port2 } = new MessageChannel();
    const env: NodeJS.ProcessEnv = { ...process.env, [LISTENERS]: JSON.stringify(ownFds(listeners)) };
    const udp = process.env[UDP];
    if (udp) env[UDP] = JSON.stringify(ownFds(JSON.parse(udp) as { fd: number }[]));
    const w = new Worker(entry, { argv: process.argv.slice(2), env, workerData: { [THREAD_KEY]: port2 }, transferList: [port2] });
    const c = copy(`thread ${i}`, port1);
    let error: unknown;
    w.on('error', (err) => (error = err)); // 'exit' follows; with no listener, Node would throw it here
    w.on('exit', (code) => {
      c.ended = true;
      if (!draining) fail(c, error ? `failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}` : `exited with code ${code}`);
      finish();
    });
    port1.on('message', (m: FromWorker) => fromCopy(c, m));
    port1.unref(); // the running Worker keeps the process alive, the port need not
    return c;
  }

  function fromCopy(c: Copy, msg: FromWorker, done?: () => void): void {
    switch (msg.type) {
      case 'hello': // baton needs one: copy #0's, the first thing it says
        if (c === self) return up.send(msg, done);
        break;
      case 'listening':
        if (announced.has(msg.listener)) break;
        announced.add(msg.listener);
        return up.send(msg, done);
      case 'ready':
        c.ready = true;
        return once('ready', msg, done);
      case 'accepting-stopped':
        c.stopped = true;
        return once('stopped', msg, done);
      case 'accepting':
        c.accepting = true;
        return once('accepting', msg, done);
      case 'drain-progress':
        c.connections = msg.connections;
        c.byKind = msg.byKind ?? {};
        return up.send({ ...msg, connections: copies.reduce((n, x) => n + x.connections, 0), byKind: sumKinds(copies) }, done);
      case 'drained':
        c.cut = msg.cut; // its exit follows; the process says drained once every copy has ended
        c.endings = msg.ended ?? {};
        break;
      case 'warning':
        return up.send(msg, done);
    }
    done?.();
  }

  /** Says `msg` for the process once every copy has (a copy that ended counts as having). */
  function once(key: 'ready' | 'stopped' | 'accepting', msg: FromWorker, done?: () => void): void {
    if (said.has(msg.type) || !copies.every((x) => x.ended || x[key])) return done?.();
    said.add(msg.type);
    up.send(msg, done);
  }

  function toThreads(msg: unknown): void {
    for (const c of copies) if (c.port && !c.ended) c.port.postMessage(msg);
  }

  function fail(c: Copy, why: string): never {
    process.stderr.write(`baton: ${c.name} of this worker ${why}; the worker exits so that baton replaces it\n`);
    process.exit(1);
  }

  function finish(): void {
    if (finished || !copies.every((c) => c.ended)) return;
    finished = true;
    const ended = copies.reduce((sum, c) => addEndings(sum, c.endings), {});
    up.send({ baton: 1, type: 'drained', cut: copies.reduce((n, c) => n + c.cut, 0), ended }, () => up.exit());
    setTimeout(() => up.exit(), EXIT_FALLBACK_MS);
  }

  return {
    send: (msg, done) => fromCopy(self, msg, done),
    receive(onMessage, onGone) {
      up.receive(
        (m, handle) => {
          const msg = m as { baton?: unknown; type?: unknown } | null;
          // Drain and accept (exclusive handoff) are for every copy. Round-robin connections
          // reach copy #0 only: the CLI refuses --threads with round-robin.
          if (msg?.baton === 1 && (msg.type === 'drain' || msg.type === 'accept')) {
            if (msg.type === 'drain') draining = true;
            toThreads(m);
          }
          onMessage(m, handle);
        },
        () => {
          draining = true;
          toThreads({ baton: 1, type: 'drain', timeoutMs: drainTimeoutMs });
          onGone();
        },
      );
    },
    hold: (on) => up.hold(on),
    // Copy #0 has drained; the process leaves with the last copy.
    exit() {
      self.ended = true;
      finish();
    },
  };
}

/** In a thread started by runThreads: its copy talks to the main thread over its own port. */
export function threadUplink(): Uplink {
  const port = (workerData as Record<string, MessagePort>)[THREAD_KEY]!;
  return {
    send(msg, done) {
      port.postMessage(msg);
      done?.();
    },
    receive(onMessage, onGone) {
      port.on('message', (m) => onMessage(m, undefined));
      port.once('close', onGone);
      port.unref(); // as the IPC channel: it must not keep alive an app that would exit
    },
    hold: (on) => (on ? port.ref() : port.unref()),
    exit: () => process.exit(0), // in a worker thread: ends this thread only
  };
}

/** The app's entry file, found as Node found the main module (`node app` runs app.js). */
function entryFile(): string {
  const main = process.argv[1];
  if (!main) throw new Error('the app has no entry file to start again in a thread (node -e, -p and stdin have none)');
  return createRequire(import.meta.url).resolve(main);
}

/** Each listener with a duplicate of its fd, for one thread alone. */
function ownFds<T extends { fd: number }>(list: T[]): T[] {
  // Loaded only with --threads, as ./listen.ts does: the runtime's start-up stays free of koffi.
  const sys = createRequire(import.meta.url)('../os/fds.js') as typeof import('../os/fds.js');
  return list.map((l) => ({ ...l, fd: sys.dup(l.fd) }));
}

function sumKinds(copies: { byKind: Partial<Record<ConnKind, number>> }[]): Partial<Record<ConnKind, number>> {
  const sum: Partial<Record<ConnKind, number>> = {};
  for (const c of copies) for (const [k, n] of Object.entries(c.byKind) as [ConnKind, number][]) sum[k] = (sum[k] ?? 0) + n;
  return sum;
}
