// The control socket: a unix socket, owner-only, on which the CLI (or any program) asks the
// supervisor for reload / status / stop. Newline-delimited JSON; see protocol.ts.

import { lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import {
  type ControlEvent,
  type ControlReply,
  type ControlRequest,
  type LogEntry,
  type LogEvent,
  MAX_CONTROL_LINE,
  parseControlRequest,
} from '../common/protocol.js';
import type { LogClient } from '../log/ring.js';
import { peerCredentials } from '../os/sockets.js';

/**
 * Make the socket's directory private (create it 0700 if missing; refuse one that others
 * can write or that belongs to someone else: a shared /tmp must not let them plant a socket),
 * and clear a stale socket left by a supervisor that died. A live one is an error.
 */
export async function prepareControlPath(path: string): Promise<void> {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new Error(`refusing control directory ${dir}: it must be a directory owned by you and writable only by you`);
  }
  let exists = false;
  try {
    exists = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!exists) throw new Error(`${path} exists and is not a socket; remove it or choose another --control path`);
  if (await answers(path)) throw new Error(`a baton supervisor is already running with control socket ${path}`);
  unlinkSync(path);
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** `conn` is the client's connection itself: an upgrade carries it across the exec, to answer from the new image. */
export type ControlHandler = (req: ControlRequest, emit: (state: string, message: string) => void, client: LogClient, conn: Socket) => Promise<unknown>;

/** Unsent output a `logs -f` client may leave queued before its lines are dropped instead. */
const MAX_QUEUED_BYTES = 1 << 20;
/**
 * Connections waiting to be accepted on the control socket. A full unix socket backlog
 * refuses at once (EAGAIN), not after a retry as TCP does: with Node's 511, a burst of
 * 1,000 scripted `baton status` saw ~5% refused. Capped by net.core.somaxconn.
 */
const CONTROL_BACKLOG = 4096;
/** How long a client whose request was too long may go on sending before it is cut off. */
const REFUSED_LINGER_MS = 5000;

/** A handler that wrote its reply itself (e.g. with fds attached) returns this. */
export const REPLIED = Symbol('replied');

/** An error whose `detail` (e.g. the failed reload's record) goes to the client with the message. */
export class ControlError extends Error {
  constructor(
    message: string,
    readonly detail?: unknown,
  ) {
    super(message);
  }
}

/** On `where`: a path to bind, or (after a supervisor upgrade) the fd of the socket already bound there. */
export async function serveControl(where: string | { fd: number }, handler: ControlHandler): Promise<Server> {
  // Half-open: a client may shut its side once it has sent its request (`echo … | socat`);
  // the answers still come, and the connection ends after the last one.
  const server = createServer({ allowHalfOpen: true }, (sock) => serveClient(sock, handler));
  // Owner-only from the first instant: the umask covers the window between bind and chmod.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const listening = (): void => {
        server.off('error', reject);
        resolve();
      };
      if (typeof where === 'string') server.listen({ path: where, backlog: CONTROL_BACKLOG }, listening);
      else server.listen(where, listening);
    });
  } finally {
    process.umask(old);
  }
  return server;
}

/**
 * Close the control socket. close() waits for the connections still open (a `logs -f`
 * client, the stop request's own), so not longer than a second.
 */
export async function closeControl(server: Server | null): Promise<void> {
  if (!server) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 1000);
    server.close(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

function serveClient(sock: Socket, handler: ControlHandler): void {
  const write = (m: ControlReply | ControlEvent | LogEvent): void => {
    if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(m) + '\n');
  };
  const gone = new AbortController();
  sock.once('close', () => gone.abort());
  const client: LogClient = {
    send: (e) => {
      if (sock.writableLength > MAX_QUEUED_BYTES) return false;
      write(e);
      return true;
    },
    signal: gone.signal,
  };
  // File permissions already keep others out; the peer's uid is checked too, because a
  // socket passed on (or a directory made group-writable later) must not open the door.
  try {
    const peer = peerCredentials(sock);
    const me = process.getuid?.() ?? 0;
    // Root too: it could signal or trace the supervisor anyway, and `sudo baton reload` is
    // how an operator reaches a unit that runs as its own User=.
    if (peer.uid !== me && peer.uid !== 0) {
      write({ ok: false, error: `permission denied: uid ${peer.uid} is neither the owner (uid ${me}) nor root` });
      sock.end();
      return;
    }
  } catch {
    /* credentials unavailable on this platform: file permissions still apply */
  }
  let buf = '';
  let pending = 0;
  let ended = false;
  sock.setEncoding('utf8');
  sock.on('error', () => sock.destroy());
  sock.on('end', () => {
    ended = true;
    if (pending === 0) sock.end();
  });
  let refused = false;
  sock.on('data', (chunk: string) => {
    if (refused) return; // the rest of a request too long: read and dropped
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      pending++;
      void handleLine(line, handler, write, client, sock).finally(() => {
        if (--pending === 0 && ended) sock.end();
      });
    }
    if (buf.length > MAX_CONTROL_LINE) {
      write({ ok: false, error: `request too long (over ${MAX_CONTROL_LINE} bytes without a newline)` });
      // Answer and close our side, but go on reading (and dropping) what the client still
      // sends, for a while: closing at once resets a client that is still writing, and it
      // never reads why (seen with a 10 MB line).
      refused = true;
      buf = '';
      sock.end();
      setTimeout(() => sock.destroy(), REFUSED_LINGER_MS).unref();
    }
  });
}

/** One request line: exactly one reply (or error) is written for it, whatever it holds. Exported for the fuzzer. */
export async function handleLine(
  line: string,
  handler: ControlHandler,
  write: (m: ControlReply | ControlEvent | LogEvent) => void,
  client: LogClient,
  conn: Socket,
): Promise<void> {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    write({ ok: false, error: 'malformed request: not JSON' });
    return;
  }
  const parsed = parseControlRequest(raw);
  const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : undefined;
  if (!parsed.ok) {
    write({ id, ok: false, error: `invalid request${parsed.where ? ` at '${parsed.where}'` : ''}: ${parsed.message}` });
    return;
  }
  try {
    const withId: LogClient = { send: (e) => client.send({ ...e, id }), signal: client.signal };
    const result = await handler(parsed.request, (state, message) => write({ id, event: 'progress', state, message, at: Date.now() }), withId, conn);
    if (result !== REPLIED) write({ id, ok: true, result });
  } catch (e) {
    write({ id, ok: false, error: (e as Error).message, detail: (e as ControlError).detail });
  }
}

/** Send one request; `onEvent` sees progress events, `onLog` the lines of `logs`; resolves with the reply. */
export function controlRequest(path: string, req: ControlRequest, onEvent?: (e: ControlEvent) => void, onLog?: (e: LogEntry) => void): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    let replied = false;
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify({ ...req, id: 1 }) + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as ControlReply | ControlEvent | LogEvent;
        buf = buf.slice(nl + 1);
        if ('event' in msg) {
          if (msg.event === 'log') onLog?.(msg.entry);
          else onEvent?.(msg);
        } else {
          replied = true;
          sock.end();
          resolve(msg);
        }
      }
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        reject(new Error(`no baton supervisor is running at ${path} (${e.code})`));
      } else if (e.code === 'EACCES') {
        reject(new Error(`permission denied on ${path}: only the supervisor's owner (or root) may control it: sudo -u <owner> baton …`));
      } else reject(e);
    });
    sock.once('close', () => {
      if (!replied) reject(new Error(`the supervisor at ${path} closed the connection without answering`));
    });
  });
}
