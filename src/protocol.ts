// Every message baton exchanges, in one place.
//
// Two conversations:
//  - supervisor <-> worker runtime, over the Node IPC channel of each worker
//    (`process.send`). Messages carry `baton: 1` so an app that uses its own IPC
//    messages (PM2 style `process.send('ready')`) never collides with ours.
//  - control client <-> supervisor, newline-delimited JSON on the control socket.
//    Requests are validated with zod: anything malformed gets an error reply and
//    changes nothing.
import { z } from 'zod';

/* ------------------------------------------------------------------ */
/* Worker contract: the environment every worker gets                  */
/* ------------------------------------------------------------------ */

/** One inherited listener as described to a worker in BATON_LISTENERS. */
export type ListenerInfo =
  | { fd: number; name: string; kind: 'tcp'; host: string; port: number }
  | { fd: number; name: string; kind: 'unix'; path: string };

/** One inherited UDP socket, described to a Node worker in BATON_UDP_LISTENERS. */
export type UdpListenerInfo = { fd: number; name: string; host: string; port: number };

/** Kept out of ENV: the runtime copies ENV literally and waits for every listener in it. */
export const ENV_UDP = 'BATON_UDP_LISTENERS'; // JSON UdpListenerInfo[]

/**
 * When a worker is ready: listen = all listeners are served, manual = the app calls ready()
 * (both said by the Node runtime), notify = it sent READY=1 to NOTIFY_SOCKET (any language).
 */
export type ReadyMode = 'listen' | 'manual' | 'notify';

export const ENV = {
  listeners: 'BATON_LISTENERS', // JSON ListenerInfo[]
  backlog: 'BATON_BACKLOG', // listen() backlog to re-apply (Node resets it on every listen)
  ready: 'BATON_READY', // ReadyMode
  generation: 'BATON_GENERATION',
  worker: 'BATON_WORKER',
  drainTimeout: 'BATON_DRAIN_TIMEOUT_MS', // used when the supervisor vanishes
  distribution: 'BATON_DISTRIBUTION', // Distribution
  handoff: 'BATON_HANDOFF', // HandoffMode: 'exclusive' = accept only when told
  threads: 'BATON_THREADS', // copies of the app per worker process, as worker_threads (runtime/threads.ts)
} as const;

/* ------------------------------------------------------------------ */
/* Supervisor -> worker                                                */
/* ------------------------------------------------------------------ */

export type ToWorker =
  /** Stop accepting, answer `accepting-stopped`, finish in-flight work, exit by `timeoutMs`. */
  | { baton: 1; type: 'drain'; timeoutMs: number }
  /** Round-robin mode: the connection passed with this message was accepted on `listener`. */
  | { baton: 1; type: 'connection'; listener: string }
  /** Exclusive handoff: the old generation has stopped accepting; start now (answer `accepting`). */
  | { baton: 1; type: 'accept' };

/** overlap: new workers accept from the moment they listen; exclusive: only once the old ones stopped. */
export type HandoffMode = 'overlap' | 'exclusive';

/** shared: every worker accepts from the inherited listener; round-robin: the supervisor accepts and hands out. */
export type Distribution = 'shared' | 'round-robin';

/* ------------------------------------------------------------------ */
/* Worker -> supervisor                                                */
/* ------------------------------------------------------------------ */

export type FromWorker =
  /** First message of the runtime: this worker understands IPC drain (else it gets the drain signal). */
  | { baton: 1; type: 'hello'; pid: number }
  | { baton: 1; type: 'listening'; listener: string }
  | { baton: 1; type: 'ready' }
  | { baton: 1; type: 'accepting-stopped' }
  /** Exclusive handoff: the deferred listens are real now. */
  | { baton: 1; type: 'accepting' }
  | { baton: 1; type: 'drain-progress'; connections: number }
  /** Sent just before exit; `cut` counts connections destroyed at the deadline. */
  | { baton: 1; type: 'drained'; cut: number }
  | { baton: 1; type: 'warning'; message: string };

export function isFromWorker(m: unknown): m is FromWorker {
  return typeof m === 'object' && m !== null && (m as { baton?: unknown }).baton === 1 && typeof (m as { type?: unknown }).type === 'string';
}

/* ------------------------------------------------------------------ */
/* Control socket: client -> supervisor                                */
/* ------------------------------------------------------------------ */

/** Lines of output and events the supervisor keeps for `baton logs`. */
export const LOG_RING_LINES = 2000;

/** Longest request line accepted on the control socket. */
export const MAX_CONTROL_LINE = 1 << 20;

const argv = z.array(z.string().min(1)).min(1).max(4096);
/** Which service of a baton running several (a config file's `services`); omitted: all of them, or the only one. */
const service = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a service name').optional();

export const ControlRequest = z.discriminatedUnion('cmd', [
  z.strictObject({
    id: z.number().int().optional(),
    cmd: z.literal('reload'),
    service,
    /** New command line; omitted = reload the current one. */
    argv: argv.optional(),
    /** Directory the new command line's relative paths are meant from (the caller's cwd). */
    cwd: z.string().startsWith('/').max(4096).optional(),
    /** Reply when the new generation serves (default) or once the old one has exited. */
    wait: z.enum(['serving', 'drained']).optional(),
  }),
  z.strictObject({ id: z.number().int().optional(), cmd: z.literal('status'), service }),
  z.strictObject({
    id: z.number().int().optional(),
    cmd: z.literal('scale'),
    service,
    /** An absolute count, or a relative change such as "+1" / "-2". */
    workers: z.union([z.number().int(), z.string().regex(/^[+-]\d{1,4}$/, 'expected a count or +N / -N')]),
  }),
  z.strictObject({ id: z.number().int().optional(), cmd: z.literal('stop') }),
  /** An unrelated new baton asks for the listening sockets (passed with the reply, SCM_RIGHTS). */
  z.strictObject({ id: z.number().int().optional(), cmd: z.literal('takeover') }),
  /** Sent on the same connection once the new baton serves: drain and exit. */
  z.strictObject({ id: z.number().int().optional(), cmd: z.literal('takeover-commit') }),
  z.strictObject({
    id: z.number().int().optional(),
    cmd: z.literal('upgrade'),
    /** The new baton's entry point (default: the running one's dist/src/cli.js, as installed now). */
    exec: z.string().startsWith('/').max(4096).optional(),
    /** Also replace the workers: a fresh generation, as a reload (default: adopt them as they are). */
    restartWorkers: z.boolean().optional(),
  }),
  z.strictObject({
    id: z.number().int().optional(),
    cmd: z.literal('logs'),
    service,
    /** Lines from the end of the ring to send first. */
    lines: z.number().int().min(0).max(LOG_RING_LINES).optional(),
    /** Only the output of this generation's workers. */
    generation: z.number().int().min(1).optional(),
    /** Keep sending new lines as `log` events until the client disconnects. */
    follow: z.boolean().optional(),
  }),
]);
export type ControlRequest = z.infer<typeof ControlRequest>;

/* ------------------------------------------------------------------ */
/* Control socket: supervisor -> client                                */
/* ------------------------------------------------------------------ */

/** Intermediate event of a long request (reload progress). Zero or more precede the reply. */
export type ControlEvent = { id?: number; event: 'progress'; state: string; message: string; at: number };

/**
 * One line of the supervisor's log ring: a worker's output line (`gen`, `worker`, `stream`
 * set) or one of baton's own events (`fields` may add structured values).
 */
export interface LogEntry {
  at: number;
  level: 'info' | 'warn' | 'error';
  msg: string;
  /** The service it concerns, when one baton runs several. */
  service?: string;
  gen?: number;
  worker?: number;
  stream?: 'stdout' | 'stderr';
  fields?: Record<string, string | number | boolean | null>;
}

/** A line of `logs`: the tail, then (with `follow`) each new line as it is logged. */
export type LogEvent = { id?: number; event: 'log'; entry: LogEntry };

/** Exactly one reply ends each request. */
export type ControlReply =
  | { id?: number; ok: true; result: unknown }
  | { id?: number; ok: false; error: string; detail?: unknown };
