// How a worker leaves: the "graceful" drain, held to 0 failed requests across reloads with
// undici and http.Agent keep-alive clients and new-connection clients (test/core.test.ts,
// npm run soak), where a plain `server.close()` loses requests of clients reusing a
// connection just as it closes:
//  1. stop accepting; the listening socket stays open in baton and the new generation;
//  2. `Connection: close` on every response that starts from now on, and on in-flight ones
//     whose headers are not out yet: the client learns with its answer not to reuse the
//     connection, so no request of its can cross our FIN;
//  3. leave idle keep-alive connections alone until keepAliveTimeout + 1 s, Node 20's own
//     idle close time: clients that honour the Keep-Alive hint have closed them by then,
//     and closing earlier races clients that are reusing them at that very moment;
//  4. then destroy what carries no request: idle connections and never-used ones (those
//     would block server.close() for good);
//  5. at the deadline destroy the rest and report them as cut.
import * as net from 'node:net';
import type { ServerResponse } from 'node:http';
import type { FromWorker } from '../common/protocol.js';

export interface DrainIO {
  send(msg: FromWorker, done?: () => void): void;
  warn(message: string): void;
  exit(): void;
}

/** Node 20's server closes an idle keep-alive connection this long after keepAliveTimeout. */
const NODE_IDLE_SLACK_MS = 1000;
const PROGRESS_EVERY_MS = 100;
/** If the 'drained' message cannot be flushed (channel gone), exit anyway. */
const EXIT_FALLBACK_MS = 1000;

export class Drain {
  started = false;
  /** Servers listening, or closed with connections left. */
  private readonly servers = new Set<net.Server>();
  private readonly seen = new WeakSet<net.Server>();
  /** Every open connection of every server this process listens with, and its server. */
  private readonly conns = new Map<net.Socket, net.Server>();
  private readonly hooks: (() => unknown)[] = [];
  private pendingHooks = 0;
  private finished = false;
  private progressSent = -1;
  private progressAt = 0;
  private progressTimer: NodeJS.Timeout | undefined;

  constructor(private readonly io: DrainIO) {}

  track(server: net.Server): void {
    if (this.started) this.stopAccepting(server); // a server the app opens while we drain
    if (this.servers.has(server)) return;
    this.servers.add(server);
    if (this.seen.has(server)) return; // listening again after a close(): listeners are in place
    this.seen.add(server);
    // 'close' comes once the server stopped listening and its last connection ended.
    server.on('close', () => this.servers.delete(server));
    // Behind TLS the HTTP state lives on the TLS socket, not on the TCP one under it.
    const event = isTls(server) ? 'secureConnection' : 'connection';
    server.on(event, (sock: net.Socket) => {
      this.conns.set(sock, server);
      sock.once('close', () => {
        this.conns.delete(sock);
        if (this.started) {
          this.progress();
          this.check();
        }
      });
    });
  }

  onDrain(fn: () => unknown): void {
    this.hooks.push(fn);
    if (this.started) this.runHook(fn);
  }

  start(timeoutMs: number): void {
    if (this.started) return;
    this.started = true;
    for (const s of this.servers) {
      if (isHttp(s)) {
        // 'checkContinue'/'checkExpectation' replace 'request' when the app listens to them
        // (Node emits them only then, so they get ours only then).
        for (const event of ['request', 'checkContinue', 'checkExpectation']) {
          if (event === 'request' || s.listenerCount(event) > 0) s.prependListener(event, closeAfter);
        }
        setTimeout(() => this.closeIdle(s), Math.max(0, s.keepAliveTimeout) + NODE_IDLE_SLACK_MS).unref();
      }
      this.stopAccepting(s);
    }
    this.io.send({ baton: 1, type: 'accepting-stopped' });

    for (const [sock, s] of this.conns) {
      if (!isHttp(s)) continue;
      const res = httpState(sock).response;
      if (res && !res.headersSent) res.setHeader('Connection', 'close');
    }
    for (const fn of this.hooks) this.runHook(fn);
    // Ref'd: the process must live to report 'drained', even if nothing else keeps it up.
    setTimeout(() => this.deadline(), timeoutMs);
    this.check();
    this.progress();
  }

  private stopAccepting(s: net.Server): void {
    // net's close, not http's: http.Server.close() also closes idle keep-alive connections
    // at once, which is exactly the race step 3 avoids. Guarded: closing a server that is
    // not listening would emit a second 'close'.
    if (s.listening) net.Server.prototype.close.call(s);
  }

  private runHook(fn: () => unknown): void {
    this.pendingHooks++;
    Promise.resolve()
      .then(fn)
      .catch((err: unknown) => this.io.warn(`baton: an onDrain hook failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`))
      .finally(() => {
        this.pendingHooks--;
        this.check();
      });
  }

  private closeIdle(s: net.Server): void {
    if (this.finished) return;
    for (const [sock, srv] of this.conns) if (srv === s && isIdle(sock, srv)) sock.destroy();
  }

  private deadline(): void {
    if (this.finished) return;
    let cut = 0;
    for (const [sock, s] of this.conns) {
      if (!isIdle(sock, s)) cut++;
      sock.destroy();
    }
    this.finish(cut);
  }

  private check(): void {
    if (this.started && this.pendingHooks === 0 && this.conns.size === 0) this.finish(0);
  }

  private finish(cut: number): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.progressTimer);
    this.io.send({ baton: 1, type: 'drained', cut }, () => this.io.exit());
    setTimeout(() => this.io.exit(), EXIT_FALLBACK_MS);
  }

  /** drain-progress on change, at most every PROGRESS_EVERY_MS. */
  private progress(): void {
    if (this.progressTimer || this.finished) return;
    const wait = this.progressAt + PROGRESS_EVERY_MS - Date.now();
    if (wait > 0) {
      this.progressTimer = setTimeout(() => {
        this.progressTimer = undefined;
        this.progress();
      }, wait).unref();
      return;
    }
    const n = this.conns.size;
    if (n === this.progressSent) return;
    this.progressSent = n;
    this.progressAt = Date.now();
    this.io.send({ baton: 1, type: 'drain-progress', connections: n });
  }
}

function closeAfter(_req: unknown, res: ServerResponse): void {
  res.setHeader('Connection', 'close');
}

function isHttp(s: net.Server): s is net.Server & { keepAliveTimeout: number } {
  return typeof (s as { keepAliveTimeout?: unknown }).keepAliveTimeout === 'number'; // http and https
}

function isTls(s: net.Server): boolean {
  return typeof (s as { setSecureContext?: unknown }).setSecureContext === 'function';
}

/**
 * A connection whose loss costs nothing: an HTTP/1 connection with no response being
 * written. Connections of other servers (raw TCP protocols, HTTP/2) and upgraded ones
 * (WebSockets) are never idle: only the app knows how to end them (in an onDrain hook).
 */
function isIdle(sock: net.Socket, server: net.Server): boolean {
  if (!isHttp(server)) return false;
  const { response, upgraded } = httpState(sock);
  return !upgraded && (response === null || response.writableFinished);
}

/**
 * The only Node internals the runtime reads (http server sockets, Node 20):
 * `socket._httpMessage` is the response the socket is writing now (set by
 * ServerResponse.assignSocket, cleared once it has finished); `socket.parser` is the HTTP
 * parser, set on connection and taken away when the socket is upgraded.
 */
function httpState(sock: net.Socket): { response: ServerResponse | null; upgraded: boolean } {
  const s = sock as net.Socket & { _httpMessage?: ServerResponse | null; parser?: unknown };
  return { response: s._httpMessage ?? null, upgraded: s.parser == null };
}
