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
import http from 'node:http';
import type * as net from 'node:net';
import { Duplex } from 'node:stream';

export interface WarmupOptions {
  /** Paths asked for in turn, e.g. ['/', '/api/items']. */
  paths: string[];
  /** Requests in all (over every path and server). */
  requests: number;
  /** Nothing is started after this; what still runs then is cut. */
  timeMs: number;
  /** Requests in flight at once. */
  concurrency: number;
}

export interface WarmupResult {
  requests: number;
  /** Answers with a status other than 2xx/3xx, or cut: the warm-up goes on regardless. */
  failed: number;
  ms: number;
}

export const WARMUP_HEADER = 'x-baton-warmup';

/** Parses BATON_WARMUP: JSON WarmupOptions; null when absent or off (no paths / no requests). */
export function parseWarmup(text: string | undefined): WarmupOptions | null {
  if (!text) return null;
  const o = JSON.parse(text) as Partial<WarmupOptions>;
  const paths = Array.isArray(o.paths) ? o.paths.filter((p): p is string => typeof p === 'string' && p.startsWith('/')) : [];
  const n = (x: unknown, d: number): number => (typeof x === 'number' && Number.isFinite(x) && x >= 0 ? x : d);
  const w = { paths, requests: Math.floor(n(o.requests, 0)), timeMs: n(o.timeMs, 0), concurrency: Math.max(1, Math.floor(n(o.concurrency, 4))) };
  return w.paths.length > 0 && w.requests > 0 && w.timeMs > 0 ? w : null;
}

/** Sends the warm-up requests to every HTTP server given; resolves when done or out of time. */
export async function warmUp(servers: net.Server[], o: WarmupOptions): Promise<WarmupResult> {
  const t0 = performance.now();
  const targets = servers.filter(isHttpServer);
  const result: WarmupResult = { requests: 0, failed: 0, ms: 0 };
  if (targets.length === 0) return result;
  const deadline = t0 + o.timeMs;
  const open = new Set<Duplex>();
  // One keep-alive agent per server: a warm-up connection serves several requests in turn,
  // as a real client's does, until the agent is destroyed at the end.
  const agents = targets.map((server) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: o.concurrency });
    (agent as unknown as { createConnection: () => Duplex }).createConnection = () => connect(server, open);
    return agent;
  });
  let next = 0;
  const timer = setTimeout(() => {
    for (const s of open) s.destroy();
  }, o.timeMs);
  const loop = async (): Promise<void> => {
    while (next < o.requests && performance.now() < deadline) {
      const i = next++;
      const server = i % targets.length;
      const path = o.paths[Math.floor(i / targets.length) % o.paths.length]!;
      result.requests++;
      const ok = await get(agents[server]!, hostOf(targets[server]!), path);
      if (!ok) result.failed++;
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, loop));
  } finally {
    clearTimeout(timer);
    for (const a of agents) a.destroy();
    for (const s of open) s.destroy();
  }
  result.ms = performance.now() - t0;
  return result;
}

function get(agent: http.Agent, host: string, path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ agent, host, path, headers: { host, [WARMUP_HEADER]: '1', 'user-agent': 'baton-warmup' } }, (res) => {
      res.resume();
      res.once('end', () => resolve((res.statusCode ?? 0) < 400));
      res.once('error', () => resolve(false));
    });
    req.once('error', () => resolve(false));
    req.end();
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

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.touch();
    this.peer?.touch();
    this.peer?.push(chunk);
    done();
  }

  override _final(done: (err?: Error | null) => void): void {
    this.peer?.push(null);
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.idle);
    const peer = this.peer;
    this.peer = null;
    if (peer && !peer.destroyed) process.nextTick(() => peer.destroy());
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
