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
// Protocols that never end on their own are ended politely at drain start (and when one
// starts while we drain), each the way its clients understand (./protocols/): HTTP/2 gets
// GOAWAY, WebSockets a 1012 close, Server-Sent Events the end of the stream.
// A drain to standby (--keep-previous) is the same drain, except that at its end the process
// stays alive, not accepting, until told to accept again (resume) or to drain for good.

import type { IncomingMessage, ServerResponse } from 'node:http';
import * as net from 'node:net';
import type { ConnEnding, ConnKind, FromWorker } from '../common/protocol.js';
import { httpState, tcpOf } from '../os/internals.js';
import { Http2Sessions, isHttp2 } from './protocols/http2.js';
import { endEventStream, isEventStream } from './protocols/sse.js';
import { closeWebSocket, webSocketOf } from './protocols/ws.js';

/** An app's onDrain hook; `standby`: the process stays alive and may serve again (a rollback). */
export type DrainHook = (info: { standby: boolean }) => unknown;

export interface DrainIO {
  send(msg: FromWorker, done?: () => void): void;
  warn(message: string): void;
  exit(): void;
}

/** Node 20's server closes an idle keep-alive connection this long after keepAliveTimeout. */
const NODE_IDLE_SLACK_MS = 1000;
const PROGRESS_EVERY_MS = 100;
/** While draining: how often to look for WebSockets and event streams that started since. */
const SWEEP_EVERY_MS = 100;
/** An HTTP/2 server has no keepAliveTimeout of its own; its HTTP/1 side (allowHTTP1) uses http's default. */
const HTTP1_KEEP_ALIVE_MS = 5000;

interface Conn {
  server: net.Server;
  /** Behind TLS: the TLS socket, which carries the HTTP state; null until the handshake is done. */
  tls: net.Socket | null;
  /** What it turned out to carry, once known (an HTTP/1 connection may become a WebSocket). */
  kind: ConnKind | null;
  /** We asked it to end: GOAWAY, a WebSocket close, the end of an event stream, Connection: close. */
  polite: boolean;
}
/** If the 'drained' message cannot be flushed (channel gone), exit anyway. */
const EXIT_FALLBACK_MS = 1000;

export class Drain {
  started = false;
  /** This drain ends in standby rather than exit (until a drain for good comes). */
  standby = false;
  /** Servers listening, or closed with connections left. */
  private readonly servers = new Set<net.Server>();
  private readonly seen = new WeakSet<net.Server>();
  /**
   * Every open connection of every server this process listens with, by its TCP socket:
   * counted from 'connection', so a TLS connection whose handshake ends after the drain
   * began is waited for too, not dropped with the process.
   */
  private readonly conns = new Map<net.Socket, Conn>();
  /** TLS socket -> its TCP socket's entry. */
  private readonly byTls = new WeakMap<net.Socket, Conn>();
  private readonly h2 = new Http2Sessions();
  /** How the connections the drain saw ended, by kind. */
  private readonly ended: Partial<Record<ConnKind, Record<ConnEnding, number>>> = {};
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly hooks: DrainHook[] = [];
  /** What start() set up, undone by resume(): the deadline, idle closes, Connection: close. */
  private timers: NodeJS.Timeout[] = [];
  private marked: { server: net.Server; listener: (req: IncomingMessage, res: ServerResponse) => void }[] = [];
  private pendingHooks = 0;
  private finished = false;
  private progressSent = -1;
  private progressAt = 0;
  private progressTimer: NodeJS.Timeout | undefined;

  /** When each keep-alive connection gets its `Connection: close` (spread drain); start + [0, spreadMs). */
  private closeAt = new WeakMap<net.Socket, number>();
  /** Answers in flight waiting for their connection's moment (spread drain); cleared by a resume. */
  private readonly due = new Set<NodeJS.Timeout>();
  private startedAt = 0;

  /**
   * `spreadMs` > 0: keep-alive connections are told to close over that long, each at its own
   * moment, instead of all on their next response: their clients reconnect to the new
   * generation a few at a time (docs/benchmarks.md#warm-hand-over).
   */
  constructor(
    private readonly io: DrainIO,
    private readonly spreadMs = 0,
  ) {}

  track(server: net.Server): void {
    if (this.started) this.stopAccepting(server); // a server the app opens while we drain
    if (this.servers.has(server)) return;
    this.servers.add(server);
    if (this.seen.has(server)) return; // listening again after a close(): listeners are in place
    this.seen.add(server);
    // 'close' comes once the server stopped listening and its last connection ended.
    server.on('close', () => this.servers.delete(server));
    server.on('connection', (sock: net.Socket) => {
      const conn: Conn = { server, tls: null, kind: null, polite: false };
      this.conns.set(sock, conn);
      sock.once('close', () => {
        if (this.conns.get(sock) !== conn) return; // counted at the deadline
        this.conns.delete(sock);
        if (this.started) {
          this.count(conn, conn.polite ? 'polite' : 'finished');
          this.progress();
          this.check();
        }
      });
    });
    // Behind TLS the HTTP state lives on the TLS socket, not on the TCP one under it.
    if (isTls(server)) {
      server.on('secureConnection', (tls: net.Socket) => {
        const conn = this.conns.get(tcpOf(tls));
        if (!conn) return;
        conn.tls = tls;
        this.byTls.set(tls, conn);
      });
    }
    if (isHttp2(server)) this.h2.track(server);
  }

  onDrain(fn: DrainHook): void {
    this.hooks.push(fn);
    if (this.started) this.runHook(fn);
  }

  start(timeoutMs: number, standby = false): void {
    if (this.started) {
      // A standby (or one on its way there) told to drain for good: it leaves once done.
      if (!this.standby || standby) return;
      this.standby = false;
      for (const fn of this.hooks) this.runHook(fn);
      if (this.finished) {
        this.finished = false;
        this.check();
      }
      return;
    }
    this.started = true;
    this.standby = standby;
    this.startedAt = Date.now();
    // Capped below the idle close of step 3 (a connection still open then is closed as idle
    // anyway), and at half the drain deadline: the last clients told must have time to go.
    const spread = Math.min(this.spreadMs, timeoutMs / 2, ...[...this.servers].filter(isHttp).map((s) => Math.max(0, s.keepAliveTimeout)));
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      // HTTP/2 compatibility responses refuse connection headers: GOAWAY does that job.
      if (req.httpVersionMajor !== 1) return;
      this.closeAfter(res, req.socket, spread);
    };
    for (const s of this.servers) {
      if (isHttp(s)) {
        // 'checkContinue'/'checkExpectation' replace 'request' when the app listens to them
        // (Node emits them only then, so they get ours only then).
        for (const event of ['request', 'checkContinue', 'checkExpectation']) {
          if (event === 'request' || s.listenerCount(event) > 0) s.prependListener(event, onRequest);
        }
        this.marked.push({ server: s, listener: onRequest });
        this.timers.push(setTimeout(() => this.closeIdle(s), Math.max(0, s.keepAliveTimeout) + NODE_IDLE_SLACK_MS).unref());
      } else if (isHttp2(s)) {
        // Only where the app listens to 'request': adding the first 'request' listener to
        // an HTTP/2 server would switch on Node's compatibility layer for a 'stream' app.
        if (s.listenerCount('request') > 0) s.prependListener('request', onRequest);
        this.marked.push({ server: s, listener: onRequest });
        this.timers.push(setTimeout(() => this.closeIdle(s), HTTP1_KEEP_ALIVE_MS + NODE_IDLE_SLACK_MS).unref());
      }
      this.stopAccepting(s);
    }
    this.io.send({ baton: 1, type: 'accepting-stopped' });

    for (const [sock, conn] of this.conns) {
      if (isH2(conn)) conn.polite = true; // every session open now gets GOAWAY just below
      const res = httpState(conn.tls ?? sock).response;
      if (isHttp1(conn) && res && !res.headersSent) this.closeAfter(res, conn.tls ?? sock, spread);
    }
    this.h2.drain();
    this.sweep();
    for (const fn of this.hooks) this.runHook(fn);
    // Ref'd: the process must live to report 'drained', even if nothing else keeps it up.
    this.timers.push(setTimeout(() => this.deadline(), timeoutMs));
    this.check();
    this.progress();
  }

  /**
   * This answer carries `Connection: close` if its connection's moment has come (at once
   * without a spread), or comes before its headers go out: a slow answer in flight when the
   * drain starts still closes its connection within the spread, not at the idle close.
   */
  private closeAfter(res: ServerResponse, sock: net.Socket, spread: number): void {
    const close = (): void => {
      if (res.headersSent) return;
      res.setHeader('Connection', 'close');
      this.markPolite(sock);
    };
    const wait = spread > 0 ? this.momentOf(sock, spread) - Date.now() : 0;
    if (wait <= 0) return close();
    const timer = setTimeout(() => {
      this.due.delete(timer);
      close();
    }, wait).unref();
    this.due.add(timer);
    res.once('close', () => {
      clearTimeout(timer);
      this.due.delete(timer);
    });
  }

  /** Spread drain: when this connection is told to close, drawn on first sight in [start, start + spread). */
  private momentOf(sock: net.Socket, spread: number): number {
    let at = this.closeAt.get(sock);
    if (at === undefined) {
      at = this.startedAt + Math.random() * spread;
      this.closeAt.set(sock, at);
    }
    return at;
  }

  /**
   * A standby (or a drain on its way to standby) serves again (rollback): responses no
   * longer say Connection: close and nothing is closed or cut. The caller listens again.
   */
  resume(): void {
    if (!this.started || !this.standby) return;
    for (const t of this.timers.splice(0)) clearTimeout(t);
    for (const t of this.due) clearTimeout(t);
    this.due.clear();
    this.closeAt = new WeakMap(); // a later drain draws new moments from its own start
    for (const { server, listener } of this.marked.splice(0))
      for (const event of ['request', 'checkContinue', 'checkExpectation']) server.removeListener(event, listener);
    clearTimeout(this.progressTimer);
    clearTimeout(this.sweepTimer);
    this.progressTimer = undefined;
    this.sweepTimer = undefined;
    this.progressSent = -1;
    this.h2.resume();
    this.started = false;
    this.standby = false;
    this.finished = false;
  }

  private stopAccepting(s: net.Server): void {
    // net's close, not http's: http.Server.close() also closes idle keep-alive connections
    // at once, which is exactly the race step 3 avoids. Guarded: closing a server that is
    // not listening would emit a second 'close'.
    if (s.listening) net.Server.prototype.close.call(s);
  }

  private runHook(fn: DrainHook): void {
    this.pendingHooks++;
    const info = { standby: this.standby };
    Promise.resolve()
      .then(() => fn(info))
      .catch((err: unknown) => this.io.warn(`baton: an onDrain hook failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`))
      .finally(() => {
        this.pendingHooks--;
        this.check();
      });
  }

  /**
   * Ends politely what would otherwise hold the drain to its deadline: WebSockets (1012)
   * and event streams, at drain start and then every SWEEP_EVERY_MS for those that start
   * on connections accepted before the drain.
   */
  private sweep(): void {
    if (this.finished) return;
    for (const [sock, conn] of this.conns) {
      const s = conn.tls ?? sock;
      if (!isHttp1(conn)) continue;
      const { response, upgraded } = httpState(s);
      if (upgraded) {
        const ws = webSocketOf(s);
        if (ws) {
          conn.kind = 'ws';
          if (closeWebSocket(ws)) conn.polite = true;
        }
      } else if (response && isEventStream(response)) {
        conn.kind = 'sse';
        conn.polite = true;
        endEventStream(response, s);
      }
    }
    for (const stream of this.h2.eventStreams()) stream.end();
    this.sweepTimer = setTimeout(() => this.sweep(), SWEEP_EVERY_MS).unref();
  }

  private markPolite(sock: net.Socket | null): void {
    const conn = sock && (this.byTls.get(sock) ?? this.conns.get(sock));
    if (conn) conn.polite = true;
  }

  private count(conn: Conn, how: ConnEnding): void {
    const kind = conn.kind ?? kindOf(conn);
    const by = (this.ended[kind] ??= { finished: 0, polite: 0, cut: 0 });
    by[how]++;
  }

  private closeIdle(s: net.Server): void {
    if (this.finished) return;
    for (const [sock, conn] of this.conns) if (conn.server === s && isIdle(conn, sock)) sock.destroy();
  }

  private deadline(): void {
    if (this.finished) return;
    let cut = 0;
    for (const [sock, conn] of [...this.conns]) {
      this.conns.delete(sock);
      const idle = isIdle(conn, sock);
      if (!idle) cut++;
      this.count(conn, idle ? 'finished' : 'cut');
      sock.destroy();
      conn.tls?.destroy();
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
    clearTimeout(this.sweepTimer);
    this.progressTimer = undefined;
    if (this.standby) {
      // Alive, not accepting, holding no connection: the deadline has nothing left to do.
      for (const t of this.timers.splice(0)) clearTimeout(t);
      return this.io.send({ baton: 1, type: 'standby', cut });
    }
    this.io.send({ baton: 1, type: 'drained', cut, ended: this.ended }, () => this.io.exit());
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
    const byKind: Partial<Record<ConnKind, number>> = {};
    for (const conn of this.conns.values()) {
      const kind = conn.kind ?? kindOf(conn);
      byKind[kind] = (byKind[kind] ?? 0) + 1;
    }
    this.io.send({ baton: 1, type: 'drain-progress', connections: n, byKind });
  }
}

function isHttp(s: net.Server): s is net.Server & { keepAliveTimeout: number } {
  return typeof (s as { keepAliveTimeout?: unknown }).keepAliveTimeout === 'number'; // http and https
}

function isTls(s: net.Server): boolean {
  return typeof (s as { setSecureContext?: unknown }).setSecureContext === 'function';
}

/** h2c, or TLS with ALPN h2: everything else an HTTP/2 server serves is HTTP/1 (allowHTTP1). */
function isH2(conn: Conn): boolean {
  if (!isHttp2(conn.server)) return false;
  return !isTls(conn.server) || (conn.tls as (net.Socket & { alpnProtocol?: unknown }) | null)?.alpnProtocol === 'h2';
}

/** An HTTP/1 connection (of an http/https server, or the HTTP/1 side of allowHTTP1), handshake done. */
function isHttp1(conn: Conn): boolean {
  if (isTls(conn.server) && !conn.tls) return false;
  return isHttp(conn.server) || (isHttp2(conn.server) && !isH2(conn));
}

function kindOf(conn: Conn): ConnKind {
  if (isTls(conn.server) && !conn.tls) return 'tls-handshake';
  if (isH2(conn)) return 'h2';
  return isHttp(conn.server) || isHttp2(conn.server) ? 'http1' : 'tcp';
}

/**
 * A connection whose loss costs nothing: an HTTP/1 connection with no response being
 * written, or a TLS connection still without a completed handshake this long after the
 * drain began. Connections of other servers (raw TCP protocols) and upgraded ones
 * are never idle: only the app knows how to end them (in an onDrain hook). HTTP/2 sessions
 * end themselves after GOAWAY once their streams are done.
 */
function isIdle(conn: Conn, sock: net.Socket): boolean {
  if (!isHttp(conn.server) && !isHttp2(conn.server)) return false;
  if (isTls(conn.server) && !conn.tls) return true;
  if (!isHttp1(conn)) return false;
  const { response, upgraded } = httpState(conn.tls ?? sock);
  return !upgraded && (response === null || response.writableFinished);
}
