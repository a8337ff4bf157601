// Warm-up: before a new worker says it is ready, it answers a few requests it makes to
// itself, through the app's own HTTP server, so that V8 has run (and compiled) the app's
// hot paths before real clients arrive. Without it every client of a reload lands on
// processes that have not run a single request yet, and the first second after the
// handoff is the slowest of the service (docs/benchmarks.md, bench/warm.ts).
//
// No network: each warm-up connection is a pair of in-process streams, the server's end
// handed to the server as a new connection (`'connection'`), so the request goes through
// Node's HTTP parser, the app's middleware and its handler exactly as a client's would.
// Bounded: at most `requests` requests, and nothing after `timeMs`; whatever is still
// running then is cut. Answers are read and thrown away; the app can tell the requests by
// the `x-baton-warmup: 1` header (to leave them out of its metrics, say).
import type * as net from 'node:net';
import { Duplex } from 'node:stream';
import type { Warmup } from '../common/protocol.js';

/** Requests in flight at once: a few, as the first clients would send them, not a flood. */
const CONCURRENCY = 8;

export interface WarmupResult {
  requests: number;
  /** Answers with a status other than 2xx/3xx, or cut: the warm-up goes on regardless. */
  failed: number;
  ms: number;
}

export const WARMUP_HEADER = 'x-baton-warmup';

/** Parses BATON_WARMUP (JSON Warmup); null when absent or off (no paths, no requests or no time). */
export function parseWarmup(text: string | undefined): Warmup | null {
  if (!text) return null;
  const o = JSON.parse(text) as Partial<Warmup>;
  const paths = Array.isArray(o.paths) ? o.paths.filter((p): p is string => typeof p === 'string' && p.startsWith('/')) : [];
  const n = (x: unknown): number => (typeof x === 'number' && Number.isFinite(x) && x >= 0 ? x : 0);
  const w = { paths, requests: Math.floor(n(o.requests)), timeMs: n(o.timeMs) };
  return w.paths.length > 0 && w.requests > 0 && w.timeMs > 0 ? w : null;
}

/** Sends the warm-up requests to every HTTP server given; resolves when done or out of time. */
export async function warmUp(servers: net.Server[], o: Warmup, concurrency = CONCURRENCY): Promise<WarmupResult> {
  const t0 = performance.now();
  const targets = servers.filter(isHttpServer);
  const result: WarmupResult = { requests: 0, failed: 0, ms: 0 };
  if (targets.length === 0) return result;
  const deadline = t0 + o.timeMs;
  const open = new Set<Duplex>();
  let next = 0;
  const timer = setTimeout(() => {
    for (const s of open) s.destroy();
  }, o.timeMs);
  const loop = async (): Promise<void> => {
    while (next < o.requests && performance.now() < deadline) {
      const i = next++;
      const server = targets[i % targets.length]!;
      const path = o.paths[Math.floor(i / targets.length) % o.paths.length]!;
      result.requests++;
      if (!(await get(server, path, open))) result.failed++;
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, loop));
  } finally {
    clearTimeout(timer);
    for (const s of open) s.destroy();
  }
  result.ms = performance.now() - t0;
  return result;
}

/**
 * One request on a connection of its own that the server closes after its answer
 * (`Connection: close`): the answer needs no parsing here beyond its status line, so the
 * warm-up's CPU goes to the app's side, which is what is being warmed.
 */
function get(server: net.Server, path: string, open: Set<Duplex>): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(server, open);
    let head = '';
    c.on('data', (d: Buffer) => {
      if (head.length < 16) head += d.toString('latin1');
    });
    c.once('close', () => resolve(/^HTTP\/1\.[01] [23]\d\d /.test(head)));
    c.on('error', () => {});
    c.resume();
    c.write(`GET ${path} HTTP/1.1\r\nHost: ${hostOf(server)}\r\n${WARMUP_HEADER}: 1\r\nUser-Agent: baton-warmup\r\nConnection: close\r\n\r\n`);
  });
}

/**
 * A connection to `server` that never leaves the process: two streams, each writing into
 * the other's readable side. The server gets its end as a new connection, as if accepted.
 */
function connect(server: net.Server, open: Set<Duplex>): Duplex {
  const client = new Pipe();
  const peer = new Pipe();
  client.peer = peer;
  peer.peer = client;
  open.add(client);
  open.add(peer);
  client.once('close', () => open.delete(client));
  peer.once('close', () => open.delete(peer));
  server.emit('connection', peer);
  return client;
}

/** One end of an in-process connection, with the net.Socket methods http calls on a socket. */
class Pipe extends Duplex {
  peer: Pipe | null = null;
  readonly remoteAddress = '127.0.0.1';
  readonly remoteFamily = 'IPv4';
  readonly remotePort = 0;
  readonly localAddress = '127.0.0.1';
  readonly localPort = 0;
  readonly encrypted = undefined;
  connecting = false;
  private idle: NodeJS.Timeout | undefined;

  constructor() {
    super({ allowHalfOpen: false });
  }

  override _read(): void {}

  // Delivered on the next turn of the event loop, not at once: pushed synchronously, a
  // request, its answer and the next request would all run in one call chain, and the whole
  // warm-up would block the worker's event loop (IPC, timers) from start to end.
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.touch();
    const peer = this.peer;
    setImmediate(() => {
      peer?.touch();
      if (!peer?.destroyed) peer?.push(chunk);
    });
    done();
  }

  override _final(done: (err?: Error | null) => void): void {
    const peer = this.peer;
    setImmediate(() => {
      if (!peer?.destroyed) peer?.push(null);
    });
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.idle);
    const peer = this.peer;
    this.peer = null;
    // As a closed TCP connection: the other end reads what was written before, then its end.
    setImmediate(() => {
      if (peer && !peer.destroyed) peer.push(null);
    });
    done(err);
  }

  // http arms a socket timeout for keep-alive and headers; honoured, so a connection the
  // server considers idle ends as a real one would.
  private timeoutMs = 0;
  setTimeout(ms: number, cb?: () => void): this {
    this.timeoutMs = ms;
    if (cb) this.once('timeout', cb);
    this.touch();
    return this;
  }
  private touch(): void {
    clearTimeout(this.idle);
    if (this.timeoutMs > 0 && !this.destroyed) this.idle = setTimeout(() => this.emit('timeout'), this.timeoutMs).unref();
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  address(): net.AddressInfo {
    return { address: '127.0.0.1', family: 'IPv4', port: 0 };
  }
  destroySoon(): void {
    if (this.writableFinished) this.destroy();
    else {
      this.once('finish', () => this.destroy());
      this.end();
    }
  }
}

function isHttpServer(s: net.Server): boolean {
  return typeof (s as { keepAliveTimeout?: unknown }).keepAliveTimeout === 'number' && s.listenerCount('request') > 0;
}

function hostOf(s: net.Server): string {
  const a = s.address();
  return a && typeof a === 'object' ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : 'localhost';
}
