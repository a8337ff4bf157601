// Node.js internals: the only module that reads them. Each is checked by a contract test
// (test/os/internals.test.ts) so that a Node.js upgrade that breaks one fails loudly there.

import { ChildProcess } from 'node:child_process';
import type * as dgram from 'node:dgram';
import type { ServerResponse } from 'node:http';
import * as net from 'node:net';
import type { SysError } from './libc.js';
import { sysError } from './libc.js';

/* ------------------------------------------------------------------ */
/* Node internals: the only places baton touches them                  */
/* ------------------------------------------------------------------ */

/** The OS fd behind a net.Socket or net.Server (Node internal `_handle.fd`). */
export function handleFd(obj: net.Socket | net.Server): number {
  const fd: unknown = (obj as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error(
      `no OS file descriptor behind this ${obj instanceof net.Server ? 'server' : 'socket'} ` +
        `(not connected/listening yet, already closed, or Node ${process.version} changed _handle.fd)`,
    );
  }
  return fd;
}

/** A connection as libuv accepted it (Node's internal TCP or Pipe wrap), before any net.Socket exists. */
export interface RawConnection {
  close(): void;
}

/**
 * Take a listening server's accepted connections as raw handles, with no net.Socket made for
 * them: round-robin passes each one straight to a worker, where a socket made here would be
 * built, detached and thrown away (cluster's round-robin primary does the same). Internal:
 * libuv calls `_handle.onconnection(err, clientHandle)`, looked up on each connection.
 */
export function onRawConnection(server: net.Server, f: (conn: RawConnection) => void, onError: (e: SysError) => void): void {
  const handle = (server as unknown as { _handle?: { onconnection?: unknown } | null })._handle;
  if (!handle || typeof handle.onconnection !== 'function') {
    throw new Error(`no listening handle with onconnection behind this server (not listening yet, or Node ${process.version} changed _handle.onconnection)`);
  }
  handle.onconnection = (err: number, conn: RawConnection | undefined) => {
    if (err || !conn) return onError(sysError('accept failed', 'accept', -err));
    f(conn);
  };
}

/** The net.Socket for a raw connection received over IPC (Node internal: the `handle` option, as child_process itself uses). */
export function socketOf(conn: unknown): net.Socket {
  if (typeof (conn as RawConnection | null)?.close !== 'function')
    throw new Error(`not a raw connection handle (Node ${process.version} changed how handles arrive over IPC?)`);
  return new net.Socket({ handle: conn, readable: true, writable: true } as net.SocketConstructorOpts);
}

/**
 * The parent's fd of a child's IPC channel (Node internal: `subprocess.channel` is public,
 * its `fd` is not documented), or null once the channel is closed.
 */
export function ipcFd(child: ChildProcess): number | null {
  const fd: unknown = (child.channel as { fd?: unknown } | null | undefined)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

let spawned: Set<number> | undefined;

/**
 * The children somebody in this process waits for by pid, which the orphan reaper
 * (reaper.ts) must leave alone: every child started through node:child_process (spawn,
 * fork, exec, execFile all go through ChildProcess.prototype.spawn) until its 'exit', added
 * here automatically from the first call on (call it before anything spawns); and any
 * child that code reaping its own with reap() adds (and deletes once reaped). spawnSync
 * needs nothing: it waits for its child before returning.
 */
export function childrenWaitedFor(): Set<number> {
  if (spawned) return spawned;
  const pids = new Set<number>();
  // Not in @types/node, but public on the class since Node 0.x; the contract test checks it.
  const proto = ChildProcess.prototype as ChildProcess & { spawn?: (...args: unknown[]) => unknown };
  const original = proto.spawn;
  if (typeof original !== 'function')
    throw new Error(`Node ${process.version} has no ChildProcess.prototype.spawn: update childrenWaitedFor() in src/os/internals.ts`);
  proto.spawn = function spawn(this: ChildProcess, ...args: unknown[]): unknown {
    const r = Reflect.apply(original, this, args);
    const pid = this.pid;
    if (pid !== undefined) {
      pids.add(pid);
      this.once('exit', () => pids.delete(pid));
    }
    return r;
  };
  spawned = pids;
  return pids;
}

/**
 * Stops reading a bound dgram socket and keeps it open for sending (Node 20 has no public
 * call for it: close() would also cancel replies still queued). Internal: the socket's
 * state lives under Symbol('state symbol') with the libuv UDP handle in `.handle`.
 */
export function stopReceiving(socket: dgram.Socket): void {
  const key = Object.getOwnPropertySymbols(socket).find((k) => String(k) === 'Symbol(state symbol)');
  const handle = key ? (socket as unknown as Record<symbol, { handle?: { recvStop?: () => number } | null }>)[key]?.handle : undefined;
  if (typeof handle?.recvStop !== 'function') {
    throw new Error(`no UDP handle behind this dgram socket (not bound yet, closed, or Node ${process.version} changed its internals)`);
  }
  handle.recvStop();
}

/*
 * HTTP server internals the worker runtime's drain reads (src/runtime/drain.ts and
 * protocols/): Node 20 to 26. Contract: test/protocols-contract.test.ts.
 */

/**
 * `socket._httpMessage` is the response the socket is writing now (set by
 * ServerResponse.assignSocket, cleared once it has finished); `socket.parser` is the HTTP
 * parser, set on connection and taken away when the socket is upgraded.
 */
export function httpState(sock: net.Socket): { response: ServerResponse | null; upgraded: boolean } {
  const s = sock as net.Socket & { _httpMessage?: ServerResponse | null; parser?: unknown };
  return { response: s._httpMessage ?? null, upgraded: s.parser == null };
}

/** `tlsSocket._parent`: the TCP socket a server-side TLS socket wraps. */
export function tcpOf(tls: net.Socket): net.Socket {
  return (tls as net.Socket & { _parent?: net.Socket })._parent ?? tls;
}

/** `res._header`: the header block a response sent (writeHead's headers included), or null. */
export function sentHeader(res: ServerResponse): string | null {
  const sent = (res as ServerResponse & { _header?: unknown })._header;
  return typeof sent === 'string' ? sent : null;
}
