// `baton start --takeover`: a new, unrelated baton (started by a deploy tool or systemd, not
// by the running supervisor) receives the running supervisor's listening sockets over its
// control socket (SCM_RIGHTS), starts its own generation on them, and only once that one
// serves tells the old supervisor to drain and exit. The sockets never close, so nothing is
// refused; if the new generation fails, the new baton exits and the old one never noticed.
//
//   new                                   old
//   {"cmd":"takeover"}            ---->   (owner checked by peer credentials)
//                                 <----   reply line + every listener fd
//   generation 1 starts and serves (on the same sockets: both accept meanwhile)
//   {"cmd":"takeover-commit"}     ---->   drain every generation, close the control socket
//                                 <----   connection closed: the control path is free
//   renames its own control socket onto the path
import { closeSync, renameSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import type { Listener } from '../common/address.js';
import { log } from '../log/log.js';
import type { InheritedSocket } from '../os/activation.js';
import { connectUnix, recvLineWithFds, sendWithFds } from '../os/fdpass.js';
import { handleFd } from '../os/internals.js';
import type { SysError } from '../os/libc.js';
import { isListening, socketAddress } from '../os/sockets.js';

export interface TakeoverOffer {
  pid: number;
  listeners: { name: string }[];
}

/** The new side, once it holds the sockets. */
export interface Takeover {
  sockets: InheritedSocket[];
  oldPid: number;
  /** Where the new supervisor serves control until the old one is gone. */
  controlPath: string;
  /** The new generation serves: let the old one go; resolves once its control socket is closed. */
  commit(): Promise<void>;
  /** Give up: the old supervisor keeps serving as if nothing happened. */
  abort(): void;
}

/** Ask the supervisor at `path` for its sockets. Blocks the event loop for the handshake only. */
export function requestTakeover(path: string): Takeover {
  let fd: number;
  try {
    fd = connectUnix(path);
  } catch (e) {
    const code = (e as SysError).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new Error(`--takeover: no baton supervisor is running at ${path} (${code})`);
    throw new Error(`--takeover: ${(e as Error).message}`);
  }
  let received: { line: string; fds: number[] };
  try {
    writeSync(fd, JSON.stringify({ id: 1, cmd: 'takeover' }) + '\n');
    received = recvLineWithFds(fd);
  } catch (e) {
    closeSync(fd);
    throw new Error(`--takeover: ${(e as Error).message}`);
  }
  const reply = JSON.parse(received.line) as { ok: boolean; error?: string; result?: TakeoverOffer };
  if (!reply.ok || !reply.result || received.fds.length !== reply.result.listeners.length) {
    for (const f of [...received.fds, fd]) closeSync(f);
    throw new Error(
      `--takeover refused by the supervisor at ${path}: ${reply.error ?? `${received.fds.length} sockets for ${reply.result?.listeners.length} listeners`}`,
    );
  }
  const offer = reply.result;
  const sockets = received.fds.map((f, i): InheritedSocket => {
    const address = socketAddress(f);
    return { fd: f, name: offer.listeners[i]!.name, address, listening: address.kind !== 'udp' && isListening(f), used: false };
  });
  // From here on the connection is an ordinary Node socket: its close tells us the old one is gone.
  const conn = new net.Socket({ fd, readable: true, writable: true });
  const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
  conn.on('error', () => conn.destroy());
  conn.resume();
  const temporary = `${path}.takeover-${process.pid}`;
  return {
    sockets,
    oldPid: offer.pid,
    controlPath: temporary,
    async commit() {
      conn.write(JSON.stringify({ id: 2, cmd: 'takeover-commit' }) + '\n');
      await closed;
      renameSync(temporary, path);
    },
    abort() {
      conn.destroy();
    },
  };
}

/** The old side: answer a takeover request with every listener's fd, in order. */
export function offerSockets(conn: net.Socket, listeners: readonly Listener[]): void {
  const offer: TakeoverOffer = { pid: process.pid, listeners: listeners.map((l) => ({ name: l.name })) };
  sendWithFds(
    handleFd(conn),
    JSON.stringify({ id: 1, ok: true, result: offer }) + '\n',
    listeners.map((l) => l.fd),
  );
}

/**
 * The old side of a takeover in progress, for one supervisor or a group of them: the sockets
 * go out on `takeover`; a `takeover-commit` on the same connection hands everything over.
 * A new baton that goes away before it commits leaves everything as it was.
 */
export class TakeoverHost {
  private by: net.Socket | null = null;

  constructor(
    private readonly host: {
      listeners(): readonly Listener[];
      stopping(): boolean;
      /** Drain and stop; the sockets stay open in the new baton. */
      handOver(): Promise<void>;
    },
  ) {}

  get inProgress(): boolean {
    return this.by !== null;
  }

  /** Answer `takeover` with every listener's fd (the reply is written here). */
  offer(conn: net.Socket): void {
    if (this.host.stopping() || this.by) throw new Error(this.host.stopping() ? 'the supervisor is stopping' : 'another takeover is in progress');
    offerSockets(conn, this.host.listeners());
    this.by = conn;
    log.info('takeover: listening sockets passed to a new baton; serving on until it commits');
    conn.once('close', () => {
      if (this.by !== conn) return;
      this.by = null;
      if (!this.host.stopping()) log.info('takeover abandoned: the new baton went away; serving on');
    });
  }

  /** `takeover-commit`: drain and stop, then close the connection (the new baton waits for that). */
  commit(conn: net.Socket): { stopping: true } {
    if (this.by !== conn) throw new Error('no takeover in progress on this connection');
    log.info('takeover committed: draining every generation; the sockets stay open in the new baton');
    void this.host.handOver().then(() => conn.destroy());
    return { stopping: true };
  }
}
