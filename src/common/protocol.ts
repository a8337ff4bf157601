// Every message baton exchanges, in one place.
//
// Two conversations:
//  - supervisor <-> worker runtime, over the Node IPC channel of each worker
//    (`process.send`). Messages carry `baton: 1` so an app that uses its own IPC
//    messages (PM2 style `process.send('ready')`) never collides with ours.
//  - control client <-> supervisor, newline-delimited JSON on the control socket.
//    Requests are validated with valibot (it adds ~1 MB to a process where zod measured
//    ~12 MB): anything malformed gets an error reply and changes nothing.
import * as v from 'valibot';

/* ------------------------------------------------------------------ */
/* Worker contract: the environment every worker gets                  */
/* ------------------------------------------------------------------ */

/** One inherited listener as described to a worker in BATON_LISTENERS. */
export type ListenerInfo = { fd: number; name: string; kind: 'tcp'; host: string; port: number } | { fd: number; name: string; kind: 'unix'; path: string };

/** One inherited UDP socket, described to a Node worker in BATON_UDP_LISTENERS. */
export type UdpListenerInfo = { fd: number; name: string; host: string; port: number };

/** Kept out of ENV: the runtime copies ENV literally and waits for every listener in it. */
export const ENV_UDP = 'BATON_UDP_LISTENERS'; // JSON UdpListenerInfo[]

/**
 * When a worker is ready: auto (the default) = whichever comes first of the Node runtime's
 * "all listeners are served" and READY=1 on NOTIFY_SOCKET, so any program that says so needs
 * no flag; the strict ones: listen = all listeners are served, manual = the app calls ready()
 * (both said by the Node runtime only), notify = it sent READY=1 to NOTIFY_SOCKET (any language).
 */
export type ReadyMode = 'auto' | 'listen' | 'manual' | 'notify';

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
  warmup: 'BATON_WARMUP', // JSON Warmup: requests through the app's own server before ready (runtime/warmup.ts)
  drainSpread: 'BATON_DRAIN_SPREAD_MS', // keep-alive connections told to close over this long (runtime/drain.ts)
  stats: 'BATON_STATS', // '1': report HTTP responses and 5xx answered (probation, canary)
} as const;

/** --warmup: what a new Node worker asks its own server before it says ready; off when `paths` is empty or `requests` 0. */
export interface Warmup {
  paths: string[];
  /** Requests in all, over every path. */
  requests: number;
  /** Bound: none starts after this, what still runs then is cut, and the worker is ready regardless. */
  timeMs: number;
}

/* ------------------------------------------------------------------ */
/* Supervisor -> worker                                                */
/* ------------------------------------------------------------------ */

export type ToWorker =
  /**
   * Stop accepting, answer `accepting-stopped`, finish in-flight work by `timeoutMs`, then
   * exit; with `standby`, stay alive not accepting instead and answer `standby` (a later
   * drain without it ends the standby).
   */
  | { baton: 1; type: 'drain'; timeoutMs: number; standby?: boolean }
  /** Rollback: a standby (or one still draining towards it) accepts again; answer `accepting`. */
  | { baton: 1; type: 'resume' }
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

/** What a connection carried, as the drain saw it. */
export type ConnKind = 'http1' | 'h2' | 'ws' | 'sse' | 'tls-handshake' | 'tcp';
/**
 * finished: closed by the client, or idle with nothing in flight; polite: asked to end the
 * way its protocol says (Connection: close, GOAWAY, WebSocket close 1012, end of an event
 * stream) and ended; cut: destroyed at the drain deadline with work in flight.
 */
export type ConnEnding = 'finished' | 'polite' | 'cut';
export type ConnEndings = Partial<Record<ConnKind, Record<ConnEnding, number>>>;

export type FromWorker =
  /** First message of the runtime: this worker understands IPC drain (else it gets the drain signal). */
  | { baton: 1; type: 'hello'; pid: number }
  | { baton: 1; type: 'listening'; listener: string }
  /** `warmup`: what the warm-up before it did (runtime/warmup.ts), when one was configured. */
  | { baton: 1; type: 'ready'; warmup?: { requests: number; failed: number; ms: number } }
  | { baton: 1; type: 'accepting-stopped' }
  /** Exclusive handoff: the deferred listens are real now. */
  | { baton: 1; type: 'accepting' }
  /** `byKind`: the open connections by what they carry (absent: older runtime). */
  | { baton: 1; type: 'drain-progress'; connections: number; byKind?: Partial<Record<ConnKind, number>> }
  /**
   * Sent just before exit; `cut` counts connections destroyed at the deadline, `ended` how
   * every connection open during the drain ended, by what it carried (absent: older runtime).
   */
  | { baton: 1; type: 'drained'; cut: number; ended?: ConnEndings }
  /** A drain to standby is over: alive, not accepting, no connection held. */
  | { baton: 1; type: 'standby'; cut: number }
  /** With BATON_STATS=1: HTTP responses answered and how many were 5xx, totals since start. */
  | { baton: 1; type: 'stats'; requests: number; errors: number }
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

const argv = v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1), v.maxLength(4096));
const id = v.optional(v.pipe(v.number(), v.integer()));
const absolute = v.optional(v.pipe(v.string(), v.startsWith('/', 'expected an absolute path'), v.maxLength(4096)));
/**
 * Environment variables for the new generation, over its other environment, kept for later
 * generations (see Supervisor.reload). Names as a shell writes them; values without NUL.
 */
const env = v.optional(
  v.record(
    v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected a variable name of letters, digits and "_"')),
    v.pipe(
      v.string(),
      v.check((s) => !s.includes('\0'), 'expected a value without NUL'),
    ),
  ),
);
/** Which service of a baton running several (a config file's `services`); omitted: all of them, or the only one. */
const service = v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a service name')));

export const ControlRequest = v.variant('cmd', [
  v.strictObject({
    id,
    cmd: v.literal('reload'),
    service,
    /** New command line; omitted = reload the current one. */
    argv: v.optional(argv),
    /** Directory the new command line's relative paths are meant from (the caller's cwd). */
    cwd: absolute,
    /** Reply when the new generation serves (default), once the old one has exited, or once probation is over (promoted or rolled back). */
    wait: v.optional(v.picklist(['serving', 'drained', 'probation'])),
    /** Watch the new generation this long after the handoff; roll back to the standby on a death or too many 5xx (default: the service's). */
    probationMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(86_400_000))),
    /** Highest share of 5xx answers (0-1) the new generation may give during probation. */
    maxErrorRate: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1))),
    /** Start only this many new workers next to the serving generation; promote them after probation, or drop them. */
    canary: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1024))),
    env,
  }),
  /** The previous version serves again: the standby at once, else a reload to the previous command line. */
  v.strictObject({ id, cmd: v.literal('rollback'), service, reason: v.optional(v.pipe(v.string(), v.maxLength(500))) }),
  v.strictObject({ id, cmd: v.literal('status'), service }),
  v.strictObject({
    id,
    cmd: v.literal('scale'),
    service,
    /** An absolute count, or a relative change such as "+1" / "-2". */
    workers: v.union([v.pipe(v.number(), v.integer()), v.pipe(v.string(), v.regex(/^[+-]\d{1,4}$/, 'expected a count or +N / -N'))]),
  }),
  v.strictObject({ id, cmd: v.literal('stop') }),
  /** An unrelated new baton asks for the listening sockets (passed with the reply, SCM_RIGHTS). */
  v.strictObject({ id, cmd: v.literal('takeover') }),
  /** Sent on the same connection once the new baton serves: drain and exit. */
  v.strictObject({ id, cmd: v.literal('takeover-commit') }),
  v.strictObject({
    id,
    cmd: v.literal('upgrade'),
    /** The new baton's entry point (default: the running one's dist/src/cli/main.js, as installed now). */
    exec: absolute,
    /** Also replace the workers: a fresh generation, as a reload (default: adopt them as they are). */
    restartWorkers: v.optional(v.boolean()),
    /** End the warm standby first (an upgrade does not carry one, and refuses while one is kept). */
    dropStandby: v.optional(v.boolean()),
  }),
  v.strictObject({
    id,
    cmd: v.literal('logs'),
    service,
    /** Lines from the end of the ring to send first. */
    lines: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(LOG_RING_LINES))),
    /** Only the output of this generation's workers. */
    generation: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
    /** Keep sending new lines as `log` events until the client disconnects. */
    follow: v.optional(v.boolean()),
  }),
]);
export type ControlRequest = v.InferOutput<typeof ControlRequest>;

/** A request line's JSON, checked: the request, or what is wrong with it (the first problem, and where). */
export function parseControlRequest(raw: unknown): { ok: true; request: ControlRequest } | { ok: false; where: string | null; message: string } {
  const r = v.safeParse(ControlRequest, raw);
  if (r.success) return { ok: true, request: r.output };
  const issue = r.issues[0];
  const path = v.getDotPath(issue);
  return { ok: false, where: path, message: issue.message };
}

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
export type ControlReply = { id?: number; ok: true; result: unknown } | { id?: number; ok: false; error: string; detail?: unknown };

/** The SDK's side of the worker runtime (src/sdk.ts): what the runtime registers on globalThis[Symbol.for('baton.runtime')]. */
export interface BatonRuntime {
  ready(): void;
  onDrain(fn: (info: { standby: boolean }) => unknown): void;
  generation: number;
  worker: number;
}

export const RUNTIME_KEY: unique symbol = Symbol.for('baton.runtime');
