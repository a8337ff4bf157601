// The systemd notify protocol (sd_notify(3)) between baton and its workers, so programs in
// any language can say they are ready, what they are doing, and that they are alive. Each
// worker gets a unix datagram socket of its own as NOTIFY_SOCKET, in a private directory:
// whatever arrives on it comes from that worker (or a child it passed the variable on to,
// as `sh -c`, npm and gunicorn's arbiter do), so no SCM_CREDENTIALS are needed to tell
// workers apart (why not one socket for all: ../os/notify.ts, which reads them).
//
// Understood: READY=1 (ready, by default and with --ready notify), STATUS=… (shown by `baton status`),
// STOPPING=1 (logged and shown), WATCHDOG=1 / WATCHDOG=trigger (with --watchdog), MAINPID=
// (the process that serves is another one of the worker's: the drain signal goes to it, as
// systemd sends stop signals to its main pid; `npm start`). Other assignments (ERRNO=, …) are ignored.
// --ready-after lives here too: it is readiness for the programs that say nothing at all.
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReadyMode } from '../common/protocol.js';
import { log } from '../log/log.js';
import { bindNotifySocket, type NotifyReceiver } from '../os/notify.js';
import { processGroup } from '../os/proc.js';

export interface NotifyOptions {
  /** A worker that has stayed up this long is ready, whatever it said or did not say (null: off). */
  readyAfterMs: number | null;
  /** A ready worker that sends no WATCHDOG=1 for this long is killed, then restarted (null: off). */
  watchdogMs: number | null;
}

export interface Credentials {
  uid: number;
  gid: number;
}

/** Longest STATUS= kept: it is shown in one line of `baton status`. */
const STATUS_MAX = 200;
/**
 * A starting worker that has said nothing for this long (neither baton's runtime nor
 * NOTIFY_SOCKET) gets a hint: long before --ready-timeout (30 s), well after the ~0.2-0.5 s
 * any server here takes to start on a busy machine.
 */
export const SILENT_HINT_MS = 3000;

let dir: string | undefined;
let shared = false;
let sequence = 0;

/**
 * The directory of every worker's socket, made on first use and removed at exit. 0700; 0711
 * once workers run as another user, who may then reach the socket they own (and only it:
 * the directory cannot be listed, and each socket is 0600 and owned by its worker's user).
 */
function notifyDir(otherUser: boolean): string {
  if (!dir) {
    const made = mkdtempSync(join(tmpdir(), 'baton-notify-'));
    dir = made;
    process.once('exit', () => rmSync(made, { recursive: true, force: true }));
  }
  if (otherUser && !shared) {
    chmodSync(dir, 0o711);
    shared = true;
  }
  return dir;
}

/**
 * The directory of this process's notify sockets, if made. A supervisor upgrade hands it to
 * the new image, which removes it: the exec closes the sockets without running 'exit'.
 */
export function notifyDirectory(): string | null {
  return dir ?? null;
}

/** What the notify socket reads and drives of its worker (worker.ts's Worker). */
export interface NotifiedWorker {
  readonly generation: number;
  readonly index: number;
  readonly pid: number | undefined;
  readonly state: string;
  statusText: string | null;
  /** The baton runtime spoke over IPC. */
  readonly hasRuntime: boolean;
  /** The process that serves, named by MAINPID=. */
  mainPid: number | null;
  markReady(): void;
  hint(text: string): void;
  kill(): void;
  once(event: 'ready' | 'draining' | 'exit', f: () => void): unknown;
}

export class WorkerNotify {
  /** The socket's path: the worker's NOTIFY_SOCKET. */
  readonly path: string;
  private readonly socket: NotifyReceiver;
  private worker: NotifiedWorker | null = null;
  private readyTimer: NodeJS.Timeout | undefined;
  private hintTimer: NodeJS.Timeout | undefined;
  /** Anything arrived on the socket. */
  private spoke = false;
  private watchdog: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly opts: NotifyOptions,
    private readonly readyMode: ReadyMode,
    label: string,
    owner: Credentials | null,
  ) {
    this.path = join(notifyDir(owner !== null), `${label}-${++sequence}.sock`);
    // Close-on-exec: no worker spawned later inherits another's socket.
    this.socket = bindNotifySocket(this.path, (text) => this.onMessage(text));
    chmodSync(this.path, 0o600);
    if (owner) chownSync(this.path, owner.uid, owner.gid);
  }

  /** What the worker's environment gets. */
  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: this.path };
    if (this.opts.watchdogMs !== null) env.WATCHDOG_USEC = String(this.opts.watchdogMs * 1000);
    return env;
  }

  /** Start listening to `w`, which was just spawned with env(); ends when it exits. */
  attach(w: NotifiedWorker): void {
    this.worker = w;
    const { readyAfterMs } = this.opts;
    if (readyAfterMs !== null) this.readyTimer = setTimeout(() => w.markReady(), readyAfterMs);
    else this.hintTimer = setTimeout(() => this.hint(), SILENT_HINT_MS);
    // The watchdog runs while the worker serves: from ready until it drains.
    w.once('ready', () => this.arm());
    w.once('draining', () => clearTimeout(this.watchdog));
    w.once('exit', () => this.close());
  }

  /** Nothing said after SILENT_HINT_MS: tell the operator what the worker is waited for, and the way out. */
  private hint(): void {
    const w = this.worker;
    if (w?.state !== 'starting' || w.hasRuntime || this.spoke) return;
    const runtime = "to load baton's Node.js runtime (Node.js programs do by themselves)";
    const notify = 'to send READY=1 on NOTIFY_SOCKET (the systemd notify protocol)';
    const waitedFor = this.readyMode === 'auto' ? `${runtime} or ${notify}` : this.readyMode === 'notify' ? notify : runtime;
    w.hint(
      `worker ${w.generation}.${w.index} has said nothing for ${SILENT_HINT_MS / 1000} s: baton waits for it ${waitedFor}. ` +
        'For a program that does neither, use --ready-after <time> (ready once it has stayed up that long, e.g. --ready-after 2s); ' +
        'without it, the start fails at --ready-timeout.',
    );
  }

  private onMessage(text: string): void {
    const w = this.worker;
    if (!w || this.closed) return;
    this.spoke = true;
    for (const line of text.split('\n')) {
      const eq = line.indexOf('=');
      if (eq <= 0) continue;
      const key = line.slice(0, eq);
      const value = line.slice(eq + 1);
      if (key === 'READY' && value === '1' && (this.readyMode === 'notify' || this.readyMode === 'auto')) w.markReady();
      else if (key === 'MAINPID') this.mainPid(Number(value));
      else if (key === 'STATUS') w.statusText = value.replace(/[\x00-\x1f\x7f]/g, ' ').slice(0, STATUS_MAX);
      else if (key === 'STOPPING' && value === '1') {
        w.statusText = w.statusText ? `stopping: ${w.statusText}` : 'stopping';
        // Expected while draining; news otherwise (it will exit, and be restarted).
        if (w.state !== 'draining') log.info(`worker ${w.generation}.${w.index} says it is stopping (STOPPING=1)`, { pid: w.pid });
      } else if (key === 'WATCHDOG' && value === '1') this.arm();
      else if (key === 'WATCHDOG' && value === 'trigger') this.expire('it asked for it (WATCHDOG=trigger)');
    }
  }

  /**
   * Only a process of the worker's own process group (it leads one: spawned detached) may be
   * named, or anybody who can write to the socket could have baton signal any process.
   */
  private mainPid(pid: number): void {
    const w = this.worker;
    if (!w || !Number.isInteger(pid) || pid <= 0) return;
    if (processGroup(pid) === w.pid) w.mainPid = pid;
    else log.warn(`worker ${w.generation}.${w.index} named MAINPID=${pid}, which is not one of its processes; ignored`, { pid: w.pid });
  }

  private arm(): void {
    const ms = this.opts.watchdogMs;
    if (ms === null || this.worker?.state !== 'ready') return;
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.expire(`no WATCHDOG=1 for ${ms} ms`), ms);
  }

  private expire(why: string): void {
    const w = this.worker;
    if (this.opts.watchdogMs === null || w?.state !== 'ready') return;
    log.warn(`worker ${w.generation}.${w.index} failed its watchdog: ${why}; killing it (it is restarted)`, { pid: w.pid });
    w.kill();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.readyTimer);
    clearTimeout(this.hintTimer);
    clearTimeout(this.watchdog);
    this.socket.close();
    rmSync(this.path, { force: true });
  }
}
