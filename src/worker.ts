// One worker process: how it is started with the listeners inherited, what it says over
// IPC, how it is told to drain, and how it is killed when it does not finish in time.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import { ENV, isFromWorker, type Distribution, type ReadyMode, type ToWorker } from './protocol.js';
import { workerInfo, type Listener } from './listeners.js';
import { heldConnections } from './proc.js';

export type WorkerState = 'starting' | 'ready' | 'draining' | 'exited';

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
  drainTimeoutMs: number;
  preloadUrl: string;
  /** Each line of the worker's stdout/stderr, already split. */
  onOutput(w: Worker, line: string, stream: 'stdout' | 'stderr'): void;
}

/** How long a runtime that got the drain deadline may take to exit by itself before SIGKILL. */
const KILL_GRACE_MS = 500;
/** Lines of output kept per worker, for the reason of a failed reload. */
const OUTPUT_LINES = 50;

// LISTEN_PID must equal the worker's own pid (sd_listen_fds() checks it), which is only
// known after fork: a shell sets it and exec's the program, keeping that pid.
const EXEC_WRAPPER = 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"';

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Events: 'ready', 'draining', 'accepting-stopped', 'exit' (WorkerExit), 'progress' (connections).
 */
export class Worker extends EventEmitter {
  readonly generation: number;
  readonly index: number;
  readonly startedAt = Date.now();
  state: WorkerState = 'starting';
  readyAt: number | null = null;
  drainStartedAt: number | null = null;
  exitedAt: number | null = null;
  exit: WorkerExit | null = null;
  /** Open connections, as last reported by the runtime while draining. */
  connections: number | null = null;
  /** Connections cut at the drain deadline (reported by the runtime, or counted at SIGKILL). */
  cut = 0;
  killedAtDeadline = false;
  /** True once the baton runtime has spoken: drain goes over IPC, else by signal. */
  hasRuntime = false;
  readonly output: string[] = [];
  private readonly child: ChildProcess;
  private deadline: NodeJS.Timeout | null = null;
  private acceptingStopped = false;

  constructor(private readonly opts: WorkerOptions) {
    super();
    this.generation = opts.generation;
    this.index = opts.index;
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
      NODE_OPTIONS: [opts.env.NODE_OPTIONS, `--import=${opts.preloadUrl}`].filter(Boolean).join(' '),
    };
    // The common `listen(process.env.PORT)` convention: the first TCP port, else the first
    // unix path (Node's listen() takes a path string too).
    const first = opts.listeners.find((l) => l.kind === 'tcp') ?? opts.listeners[0];
    if (env.PORT === undefined && first) env.PORT = first.kind === 'tcp' ? String(first.port) : first.path;
    delete env.LISTEN_PID;

    this.child = spawn('/bin/sh', ['-c', EXEC_WRAPPER, 'baton-worker', ...opts.argv], {
      cwd: opts.cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe', ...fds, 'ipc'],
      // Own process group: a Ctrl-C in baton's terminal goes to baton, which drains the
      // workers, instead of killing every worker mid-request.
      detached: true,
    });
    this.lines(this.child.stdout!, 'stdout');
    this.lines(this.child.stderr!, 'stderr');
    this.child.on('message', (m) => this.onMessage(m));
    // A worker that is not a Node program never reads the channel; a send must not crash us.
    this.child.on('error', (e) => this.remember(`baton: ${e.message}`));
    this.child.once('exit', (code, signal) => this.onExit({ code, signal }));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Tell the worker to stop accepting, finish, and exit within timeoutMs; kill it after. */
  drain(timeoutMs: number, signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.state === 'exited' || this.state === 'draining') return;
    this.state = 'draining';
    this.drainStartedAt = Date.now();
    this.emit('draining');
    if (this.hasRuntime && this.child.connected) {
      this.send({ baton: 1, type: 'drain', timeoutMs });
      this.deadline = setTimeout(() => this.killAtDeadline(), timeoutMs + KILL_GRACE_MS);
    } else {
      // No runtime: the signal is all we can say, and stopping to accept is all we can assume.
      this.signal(signal);
      this.markAcceptingStopped();
      this.deadline = setTimeout(() => this.killAtDeadline(), timeoutMs);
    }
  }

  /** Round-robin: hand over a connection the supervisor accepted. `done(false)`: try another worker. */
  sendConnection(listener: string, socket: import('node:net').Socket, done: (ok: boolean) => void): void {
    if (this.state !== 'ready' || !this.child.connected) return done(false);
    const m: ToWorker = { baton: 1, type: 'connection', listener };
    try {
      // keepOpen false: once sent, the supervisor's copy is closed; the worker owns it.
      this.child.send(m, socket, { keepOpen: false }, (e) => done(!e));
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

  private signal(sig: NodeJS.Signals, group = false): void {
    try {
      // Negative pid = the worker's process group (it was started detached, as its leader).
      process.kill(group ? -this.pid : this.pid, sig);
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
        if (this.state !== 'starting') break;
        this.state = 'ready';
        this.readyAt = Date.now();
        this.emit('ready');
        break;
      case 'accepting-stopped':
        this.markAcceptingStopped();
        break;
      case 'drain-progress':
        this.connections = m.connections;
        this.emit('progress', m.connections);
        break;
      case 'drained':
        this.cut = m.cut;
        this.connections = 0;
        break;
      case 'warning':
        this.remember(`baton: ${m.message}`);
        break;
    }
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
