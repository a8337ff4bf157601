// Workers a new baton image takes over from the previous one in a supervisor upgrade: same
// pids, same pipes, same IPC channel, not restarted. libuv in this image did not spawn them,
// so nothing here reads their channel or reaps them unless this module does: it reads the
// inherited fds as plain sockets and collects each exit by its pid.

import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import { childrenWaitedFor, handleFd, ipcFd } from '../os/internals.js';
import { type ProcessExit, reap } from '../os/process.js';

/** What a Worker uses of its process: satisfied by the ChildProcess it spawned and by AdoptedProcess. */
export interface WorkerProcess {
  readonly pid?: number | undefined;
  readonly connected: boolean;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  send(message: object, callback: (error: Error | null) => void): boolean;
  send(message: object, handle: net.Socket, options: { keepOpen: boolean }, callback: (error: Error | null) => void): boolean;
  on(event: 'message', listener: (message: unknown) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
}

/** This image's ends of a worker's IPC channel and output pipes; null when closed. */
export interface ProcessFds {
  ipc: number | null;
  stdout: number | null;
  stderr: number | null;
}

/** After the exit, how long the IPC channel may stay open for the worker's last messages. */
const LAST_MESSAGES_MS = 1000;
/** A sweep also runs this often: SIGCHLDs that arrive together are merged into one. */
const SWEEP_EVERY_MS = 1000;

/**
 * A worker process the previous image spawned. Its IPC channel speaks Node's 'json'
 * serialization, which is newline-delimited JSON, so a plain socket carries baton's
 * messages both ways. Passing a handle needs Node's own channel: not possible here.
 */
export class AdoptedProcess extends EventEmitter implements WorkerProcess {
  readonly stdout: net.Socket | null;
  readonly stderr: net.Socket | null;
  private readonly ipc: net.Socket | null;

  constructor(
    readonly pid: number,
    fds: ProcessFds,
  ) {
    super();
    this.stdout = fds.stdout === null ? null : new net.Socket({ fd: fds.stdout, readable: true, writable: false });
    this.stderr = fds.stderr === null ? null : new net.Socket({ fd: fds.stderr, readable: true, writable: false });
    this.ipc = fds.ipc === null ? null : this.channel(fds.ipc);
    watch(this);
  }

  get connected(): boolean {
    return this.ipc !== null && !this.ipc.destroyed && this.ipc.writable;
  }

  send(message: object, ...rest: unknown[]): boolean {
    const callback = rest[rest.length - 1] as (error: Error | null) => void;
    if (rest.length > 1) {
      callback(new Error(`worker ${this.pid} was adopted in a supervisor upgrade: connections cannot be passed to it`));
      return false;
    }
    if (!this.connected) {
      callback(new Error('channel closed'));
      return false;
    }
    return this.ipc!.write(JSON.stringify(message) + '\n', (e) => callback(e ?? null));
  }

  /** The fds to carry over to the next image, should there be another upgrade. */
  get fds(): ProcessFds {
    return { ipc: liveFd(this.ipc), stdout: liveFd(this.stdout), stderr: liveFd(this.stderr) };
  }

  /** Called by the sweep once the process has been reaped. */
  exited(exit: ProcessExit): void {
    // The channel ends when the worker's last copy of it closes; a grandchild that inherited
    // it must not keep this fd open for good.
    setTimeout(() => this.ipc?.destroy(), LAST_MESSAGES_MS).unref();
    this.emit('exit', exit.code, exit.signal);
  }

  private channel(fd: number): net.Socket {
    const s = new net.Socket({ fd, readable: true, writable: true });
    s.setEncoding('utf8');
    let buf = '';
    s.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let m: unknown;
        try {
          m = JSON.parse(line);
        } catch {
          // The previous image may have read the first part of a message: the rest is noise.
          continue;
        }
        this.emit('message', m);
      }
    });
    s.on('error', (e) => this.emit('error', e));
    return s;
  }
}

function liveFd(s: net.Socket | null): number | null {
  if (!s || s.destroyed) return null;
  try {
    return handleFd(s);
  } catch {
    return null;
  }
}

/** The fds of a worker's process to carry over to the next image. */
export function processFds(p: WorkerProcess): ProcessFds {
  if (p instanceof AdoptedProcess) return p.fds;
  const child = p as ChildProcess;
  return { ipc: ipcFd(child), stdout: liveFd(child.stdout as net.Socket | null), stderr: liveFd(child.stderr as net.Socket | null) };
}

/* ------------------------------------------------------------------ */
/* Reaping, by pid                                                     */
/* ------------------------------------------------------------------ */

const adopted = new Map<number, AdoptedProcess>();
let sweeper: NodeJS.Timeout | undefined;

function watch(p: AdoptedProcess): void {
  // Known to the orphan reaper (reaper.ts) as waited for: it must leave this pid to us.
  childrenWaitedFor().add(p.pid);
  adopted.set(p.pid, p);
  if (!sweeper) {
    process.on('SIGCHLD', sweep);
    sweeper = setInterval(sweep, SWEEP_EVERY_MS).unref();
  }
  // It may have exited while the images were swapped, when nobody listened for SIGCHLD.
  setImmediate(sweep);
}

/** waitpid for each adopted pid only: never -1, which would take libuv's children too. */
function sweep(): void {
  for (const [pid, p] of adopted) {
    let exit: ProcessExit | null;
    try {
      exit = reap(pid);
    } catch {
      // ECHILD: collected by someone else (it cannot be: every reaper here skips this pid),
      // so its status is unknown; it is gone all the same.
      exit = { code: null, signal: null };
    }
    if (!exit) continue;
    adopted.delete(pid);
    childrenWaitedFor().delete(pid);
    p.exited(exit);
  }
  if (adopted.size === 0 && sweeper) {
    process.off('SIGCHLD', sweep);
    clearInterval(sweeper);
    sweeper = undefined;
  }
}
