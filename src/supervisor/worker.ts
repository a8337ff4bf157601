// One worker process: how it is started with the listeners inherited, what it says over
// IPC, how it is told to drain, and how it is killed when it does not finish in time.
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import type { Listener } from '../common/address.js';
import {
  type ConnEndings,
  type ConnKind,
  type Distribution,
  ENV,
  ENV_UDP,
  type HandoffMode,
  isFromWorker,
  type ReadyMode,
  type ToWorker,
  type Warmup,
} from '../common/protocol.js';
import type { RawConnection } from '../os/internals.js';
import { heldConnections } from '../os/proc.js';
import type { WorkerProcess } from './adopt.js';
import { udpWorkerInfo, workerInfo } from './listeners.js';
import { type Credentials, type NotifyOptions, WorkerNotify } from './notify.js';

/** standby: drained, alive, not accepting, until a rollback resumes it or it drains for good (--keep-previous). */
export type WorkerState = 'starting' | 'ready' | 'draining' | 'standby' | 'exited';

/** What a supervisor upgrade carries of a worker to the new image (upgrade/state.ts validates it). */
export interface WorkerSnapshot {
  index: number;
  pid: number;
  /** Taken out of its slot by a scale-down or a rolling reload, still draining. */
  retired: boolean;
  state: 'starting' | 'ready' | 'draining';
  startedAt: number;
  readyAt: number | null;
  drainStartedAt: number | null;
  acceptingStopped: boolean;
  hasRuntime: boolean;
  connections: number | null;
  cut: number;
  statusText: string | null;
  output: string[];
  /** This image's ends of the worker's IPC channel and output pipes (null: already closed). */
  fds: { ipc: number | null; stdout: number | null; stderr: number | null };
}

export interface WorkerOptions {
  generation: number;
  index: number;
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  listeners: Listener[];
  backlog: number;
  readyMode: ReadyMode;
  distribution: Distribution;
  handoff: HandoffMode;
  /** Copies of the app in the process, as worker_threads run by baton's Node runtime (runtime/threads.ts). */
  threads: number;
  drainTimeoutMs: number;
  /** Node runtime: requests through the app's own server before it says ready (absent: none). */
  warmup?: Warmup | null;
  /** Node runtime: keep-alive connections told to close over this long when it drains (absent: 0, all at once). */
  drainSpreadMs?: number;
  /** Report HTTP responses and 5xx answered (probation, canary). */
  stats?: boolean;
  preloadUrl: string;
  /** Each line of the worker's stdout/stderr, already split. */
  onOutput(w: Worker, line: string, stream: 'stdout' | 'stderr'): void;
  /** A NOTIFY_SOCKET of its own, --ready-after and --watchdog (see notify.ts); none if absent. */
  notify?: NotifyOptions;
  /** How a worker without the baton runtime is told to drain (default SIGTERM). */
  drainSignal?: NodeJS.Signals;
  /** Run the worker as this user and group (baton keeps its own, e.g. root to bind port 80). */
  credentials?: Credentials;
  /** Supervisor upgrade: the running process the previous baton image spawned, taken over instead of spawning one (adopt.ts). */
  adopted?: WorkerProcess;
}

/** How long a runtime that got the drain deadline may take to exit by itself before SIGKILL. */
const KILL_GRACE_MS = 500;
/** Lines of output kept per worker, for the reason of a failed reload. */
const OUTPUT_LINES = 50;

// LISTEN_PID must equal the worker's own pid (sd_listen_fds() checks it), which is only
// known after fork: a shell sets it and exec's the program, keeping that pid. WATCHDOG_PID
// likewise, for sd_watchdog_enabled(), when there is a watchdog.
const EXEC_WRAPPER = 'LISTEN_PID=$$; export LISTEN_PID; if [ -n "$WATCHDOG_USEC" ]; then WATCHDOG_PID=$$; export WATCHDOG_PID; fi; exec "$@"';

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Events: 'ready', 'draining', 'accepting-stopped', 'exit' (WorkerExit), 'progress' (connections),
 * 'hint' (text: a starting worker said nothing for a while, see notify.ts).
 */
export class Worker extends EventEmitter {
  readonly generation: number;
  readonly index: number;
  startedAt = Date.now();
  state: WorkerState = 'starting';
  readyAt: number | null = null;
  drainStartedAt: number | null = null;
  exitedAt: number | null = null;
  exit: WorkerExit | null = null;
  /** Open connections, as last reported by the runtime while draining. */
  connections: number | null = null;
  /** Connections cut at the drain deadline (reported by the runtime, or counted at SIGKILL). */
  cut = 0;
  /** How the connections of its drain ended, by kind (from the runtime's 'drained'). */
  ended: ConnEndings = {};
  /** Open connections by kind while it drains (from the runtime's progress). */
  connectionsByKind: Partial<Record<ConnKind, number>> | null = null;
  killedAtDeadline = false;
  /** Exclusive handoff: the worker confirmed its listens are real (from the start in overlap mode). */
  accepting: boolean;
  /** True once the baton runtime has spoken: drain goes over IPC, else by signal. */
  hasRuntime = false;
  /** The process that serves, if not the one spawned (MAINPID= on NOTIFY_SOCKET): the drain signal goes there. */
  mainPid: number | null = null;
  /** Drained towards standby rather than exit (--keep-previous). */
  toStandby = false;
  /** Connections cut before this worker's last drain (on its way to standby). */
  private cutBefore = 0;
  /** HTTP responses and 5xx answered, as last reported by the runtime (probation). */
  requests = 0;
  errors = 0;
  /** What the worker last said with STATUS= on its NOTIFY_SOCKET. */
  statusText: string | null = null;
  readonly output: string[] = [];
  private readonly child: WorkerProcess;
  private deadline: NodeJS.Timeout | null = null;
  private acceptingStopped = false;
  /** What the runtime's warm-up did before it said ready (--warmup), if it ran one. */
  warmup: { requests: number; failed: number; ms: number } | null = null;

  constructor(private readonly opts: WorkerOptions) {
    super();
    this.generation = opts.generation;
    this.index = opts.index;
    this.accepting = opts.handoff === 'overlap';
    const fds = opts.listeners.map((l) => l.fd);
    const env: NodeJS.ProcessEnv = {
      ...opts.env,
      LISTEN_FDS: String(fds.length),
      LISTEN_FDNAMES: opts.listeners.map((l) => l.name).join(':'),
      [ENV.listeners]: JSON.stringify(workerInfo(opts.listeners)),
      [ENV.backlog]: String(opts.backlog),
      [ENV.ready]: opts.readyMode,
      [ENV.generation]: String(opts.generation),
      [ENV.worker]: String(opts.index),
      [ENV.drainTimeout]: String(opts.drainTimeoutMs),
      [ENV.distribution]: opts.distribution,
      [ENV.handoff]: opts.handoff,
      [ENV.threads]: String(opts.threads),
      [ENV.warmup]: opts.warmup ? JSON.stringify(opts.warmup) : '',
      [ENV.drainSpread]: String(opts.drainSpreadMs ?? 0),
      ...(opts.stats ? { [ENV.stats]: '1' } : {}),
      NODE_OPTIONS: [opts.env.NODE_OPTIONS, `--import=${opts.preloadUrl}`].filter(Boolean).join(' '),
    };
    // The common `listen(process.env.PORT)` convention: the first TCP port, else the first
    // unix path (Node's listen() takes a path string too).
    const first = opts.listeners.find((l) => l.kind === 'tcp') ?? opts.listeners[0];
    if (env.PORT === undefined && first) env.PORT = first.kind === 'unix' ? first.path : String(first.port);
    delete env.LISTEN_PID;
    const udp = udpWorkerInfo(opts.listeners);
    if (udp.length) env[ENV_UDP] = JSON.stringify(udp);
    // An adopted worker keeps the NOTIFY_SOCKET it was started with: it is not given a new one.
    const notify =
      opts.notify && !opts.adopted ? new WorkerNotify(opts.notify, opts.readyMode, `${opts.generation}.${opts.index}`, opts.credentials ?? null) : undefined;
    if (notify) Object.assign(env, notify.env());

    this.child =
      opts.adopted ??
      spawn('/bin/sh', ['-c', EXEC_WRAPPER, 'baton-worker', ...opts.argv], {
        cwd: opts.cwd,
        env,
        stdio: ['ignore', 'pipe', 'pipe', ...fds, 'ipc'],
        // Own process group: a Ctrl-C in baton's terminal goes to baton, which drains the
        // workers, instead of killing every worker mid-request.
        detached: true,
        ...opts.credentials,
      });
    notify?.attach(this);
    this.lines(this.child.stdout!, 'stdout');
    this.lines(this.child.stderr!, 'stderr');
    this.child.on('message', (m) => this.onMessage(m));
    // A worker that is not a Node program never reads the channel; a send must not crash us.
    this.child.on('error', (e) => this.remember(`baton: ${e.message}`));
    this.child.once('exit', (code, signal) => this.onExit({ code, signal }));
  }

  /** The process behind: spawned here, or adopted (src/supervisor/adopt.ts). */
  get process(): WorkerProcess {
    return this.child;
  }

  get adopted(): boolean {
    return this.opts.adopted !== undefined;
  }

  /** What the next baton image needs to adopt this worker (src/upgrade/upgrade.ts); `fds` are filled in there. */
  snapshot(): Omit<WorkerSnapshot, 'retired' | 'fds'> {
    return {
      index: this.index,
      pid: this.pid,
      state: this.state as WorkerSnapshot['state'],
      startedAt: this.startedAt,
      readyAt: this.readyAt,
      drainStartedAt: this.drainStartedAt,
      acceptingStopped: this.acceptingStopped,
      hasRuntime: this.hasRuntime,
      connections: this.connections,
      cut: this.cut,
      statusText: this.statusText,
      output: [...this.output],
    };
  }

  /** An adopted worker carries on where the previous image left it; a draining one keeps its deadline. */
  resume(was: WorkerSnapshot, drainTimeoutMs: number): void {
    Object.assign(this, {
      state: was.state,
      startedAt: was.startedAt,
      readyAt: was.readyAt,
      drainStartedAt: was.drainStartedAt,
      hasRuntime: was.hasRuntime,
      connections: was.connections,
      cut: was.cut,
      statusText: was.statusText,
      acceptingStopped: was.acceptingStopped,
    });
    this.output.push(...was.output);
    if (was.state !== 'draining' || was.drainStartedAt === null) return;
    const left = was.drainStartedAt + drainTimeoutMs + (this.hasRuntime ? KILL_GRACE_MS : 0) - Date.now();
    this.deadline = setTimeout(() => this.killAtDeadline(), Math.max(0, left));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Tell the worker to stop accepting, finish, and exit within timeoutMs; kill it after. */
  drain(timeoutMs: number, signal: NodeJS.Signals = this.opts.drainSignal ?? 'SIGTERM'): void {
    if (this.toStandby) return this.endStandby(timeoutMs);
    if (this.state === 'exited' || this.state === 'draining') return;
    this.state = 'draining';
    this.drainStartedAt = Date.now();
    this.emit('draining');
    if (this.hasRuntime && this.child.connected) {
      this.send({ baton: 1, type: 'drain', timeoutMs });
      this.deadline = setTimeout(() => this.killAtDeadline(), timeoutMs + KILL_GRACE_MS);
    } else {
      this.toStandby = false;
      // No runtime: the signal is all we can say, and stopping to accept is all we can assume.
      this.signal(signal, false, this.mainPid ?? this.pid);
      this.markAcceptingStopped();
      this.deadline = setTimeout(() => this.killAtDeadline(), timeoutMs);
    }
  }

  /** Whether this worker can be a warm standby: only baton's runtime can stop accepting and start again. */
  get canStandby(): boolean {
    return this.hasRuntime && this.opts.threads === 1 && this.child.connected;
  }

  /** Drain, then stay alive not accepting (--keep-previous); a later drain() ends it for good. */
  drainToStandby(timeoutMs: number): void {
    if (!this.canStandby || (this.state !== 'ready' && this.state !== 'starting')) return this.drain(timeoutMs);
    this.state = 'draining';
    this.toStandby = true;
    this.drainStartedAt = Date.now();
    this.emit('draining');
    this.send({ baton: 1, type: 'drain', timeoutMs, standby: true });
    this.deadline = setTimeout(() => this.killAtDeadline(), timeoutMs + KILL_GRACE_MS);
  }

  /** A standby leaves for good: it holds nothing, so this is quick. */
  endStandby(timeoutMs: number): void {
    if (!this.toStandby || this.state === 'exited') return;
    this.toStandby = false;
    this.state = 'draining';
    this.send({ baton: 1, type: 'drain', timeoutMs });
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = setTimeout(() => this.killAtDeadline(), timeoutMs + KILL_GRACE_MS);
  }

  /** Rollback: a standby (or one still draining towards it) accepts again; resolves once it said so. */
  resumeAccepting(): Promise<void> {
    if (!this.toStandby || this.state === 'exited') return Promise.resolve();
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    this.toStandby = false;
    this.state = 'ready';
    this.drainStartedAt = null;
    this.acceptingStopped = false;
    this.connections = null;
    this.accepting = false;
    const acked = this.whenAccepting();
    this.send({ baton: 1, type: 'resume' });
    return acked;
  }

  private whenAccepting(): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.off('accepting', done);
        this.off('exit', done);
        resolve();
      };
      this.on('accepting', done);
      this.on('exit', done);
    });
  }

  /**
   * Exclusive handoff: the old generation stopped accepting, this worker may start. A
   * worker without the runtime cannot defer its accept: it accepted since it listened.
   */
  accept(): Promise<void> {
    if (this.accepting || this.state === 'exited') return Promise.resolve();
    const acked = this.whenAccepting();
    if (this.hasRuntime && this.child.connected) this.send({ baton: 1, type: 'accept' });
    else {
      this.accepting = true;
      this.emit('accepting');
    }
    return acked;
  }

  /** Round-robin: hand over a connection the supervisor accepted. `done(false)`: try another worker. */
  sendConnection(listener: string, conn: RawConnection, done: (ok: boolean) => void): void {
    if (this.state !== 'ready' || !this.child.connected) return done(false);
    const m: ToWorker = { baton: 1, type: 'connection', listener };
    try {
      // A raw handle: sent as is (SCM_RIGHTS); the caller closes its copy once the write is done.
      this.child.send(m, conn as unknown as import('node:net').Socket, { keepOpen: true }, (e) => done(!e));
    } catch {
      done(false);
    }
  }

  /** Hard stop of the worker and anything it started in its process group. */
  kill(): void {
    if (this.state === 'exited') return;
    this.signal('SIGKILL', true);
  }

  /** Resolves once the worker no longer accepts connections (answered, or exited). */
  whenAcceptingStopped(): Promise<void> {
    if (this.acceptingStopped || this.state === 'exited') return Promise.resolve();
    return new Promise((res) => {
      const done = (): void => {
        this.off('accepting-stopped', done);
        this.off('exit', done);
        res();
      };
      this.on('accepting-stopped', done);
      this.on('exit', done);
    });
  }

  whenExited(): Promise<WorkerExit> {
    if (this.exit) return Promise.resolve(this.exit);
    return new Promise((res) => this.once('exit', res));
  }

  describeExit(): string {
    if (!this.exit) return 'running';
    if (this.exit.signal) return `killed by ${this.exit.signal}`;
    return `exited with code ${this.exit.code}`;
  }

  private send(m: ToWorker): void {
    try {
      this.child.send(m, (e) => e && this.remember(`baton: cannot reach worker: ${e.message}`));
    } catch (e) {
      this.remember(`baton: cannot reach worker: ${(e as Error).message}`);
    }
  }

  private signal(sig: NodeJS.Signals, group = false, pid = this.pid): void {
    try {
      // Negative pid = the worker's process group (it was started detached, as its leader).
      process.kill(group ? -this.pid : pid, sig);
    } catch {
      /* already gone */
    }
  }

  private killAtDeadline(): void {
    if (this.state === 'exited') return;
    this.killedAtDeadline = true;
    // A hung worker cannot report; the kernel's view counts for any program.
    this.cut = Math.max(this.cut, this.connections ?? 0, heldConnections(this.pid, this.opts.listeners));
    this.kill();
  }

  private onMessage(m: unknown): void {
    if (!isFromWorker(m)) return;
    this.hasRuntime = true;
    switch (m.type) {
      case 'hello':
        break;
      case 'listening':
        this.emit('listening', m.listener);
        break;
      case 'ready':
        this.warmup = m.warmup ?? null;
        // With --ready notify only READY=1 counts, even from a Node program.
        if (this.opts.readyMode !== 'notify') this.markReady();
        break;
      case 'accepting-stopped':
        this.markAcceptingStopped();
        break;
      case 'accepting':
        this.accepting = true;
        this.emit('accepting');
        break;
      case 'drain-progress':
        this.connections = m.connections;
        this.connectionsByKind = m.byKind ?? null;
        this.emit('progress', m.connections);
        break;
      case 'drained':
        this.cut = this.cutBefore + m.cut;
        this.ended = m.ended ?? {};
        this.connections = 0;
        this.connectionsByKind = null;
        break;
      case 'standby':
        this.cut = this.cutBefore += m.cut;
        this.connections = 0;
        if (!this.toStandby || this.state !== 'draining') break;
        if (this.deadline) clearTimeout(this.deadline);
        this.deadline = null;
        this.state = 'standby';
        this.emit('standby');
        break;
      case 'stats':
        this.requests = m.requests;
        this.errors = m.errors;
        this.emit('stats');
        break;
      case 'warning':
        this.remember(`baton: ${m.message}`);
        break;
    }
  }

  /** Advice for the operator about this worker (kept with its output, so a failed start shows it too). */
  hint(text: string): void {
    this.remember(`baton: ${text}`);
    this.emit('hint', text);
  }

  /** Ready: said by the runtime, by READY=1 (notify.ts), or by staying up for --ready-after. */
  markReady(): void {
    if (this.state !== 'starting') return;
    if (this.opts.threads > 1 && !this.hasRuntime) {
      // Ready by --ready-after, yet no runtime spoke: one copy runs, not the --threads asked for.
      this.remember(
        `baton: --threads ${this.opts.threads} needs baton's Node runtime in the worker, and this program did not load it (a non-Node program, or Node started through another process)`,
      );
      return this.kill();
    }
    this.state = 'ready';
    this.readyAt = Date.now();
    this.emit('ready');
  }

  private markAcceptingStopped(): void {
    if (this.acceptingStopped) return;
    this.acceptingStopped = true;
    this.emit('accepting-stopped');
  }

  private onExit(exit: WorkerExit): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.state = 'exited';
    this.exit = exit;
    this.exitedAt = Date.now();
    // Output still in the pipes belongs to the exit reason: give the streams a moment.
    let pending = [this.child.stdout, this.child.stderr].filter((s) => s && !s.readableEnded).length;
    const finish = (): void => {
      if (pending < 0) return;
      pending = -1;
      clearTimeout(timer);
      this.emit('exit', exit);
    };
    const timer = setTimeout(finish, 200);
    if (pending === 0) finish();
    for (const s of [this.child.stdout, this.child.stderr]) s?.once('end', () => --pending === 0 && finish());
  }

  private lines(stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr'): void {
    const rl = createInterface({ input: stream, crlfDelay: Infinity });
    rl.on('line', (line) => {
      this.remember(line);
      this.opts.onOutput(this, line, name);
    });
  }

  private remember(line: string): void {
    this.output.push(line);
    if (this.output.length > OUTPUT_LINES) this.output.shift();
  }
}
