// Bounded HTTP load generator. The demo, the benchmarks and the tests use it to count every
// request across reloads, so it never hides a failure: no retries anywhere (undici core Pool
// has no retry interceptor unless one is composed in; http.Agent never retries), every body is
// read to the end, and anything other than a complete, expected response is a failure.
//
// Three client behaviours matter for a drain (test/core.test.ts reloads under all three):
//   undici: keep-alive Pool; closes idle sockets ~2 s before the server's Keep-Alive hint.
//   agent:  node http.Agent({keepAlive:true}) with defaults; ignores the hint and keeps idle
//           sockets forever, so it is the one that races a server closing an idle socket.
//   fresh:  a new TCP connection per request (Connection: close); exercises accept/backlog.

import { setMaxListeners } from 'node:events';
import http from 'node:http';
import { createHistogram, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { buildConnector, Pool } from 'undici';

export type ClientKind = 'undici' | 'agent' | 'fresh';
const KINDS: ClientKind[] = ['undici', 'agent', 'fresh'];

export interface LoadOptions {
  target: { host: string; port: number } | { socketPath: string };
  /** concurrency = number of independent request loops of that kind */
  clients: { kind: ClientKind; concurrency: number }[];
  /** default '/' */
  path?: string;
  /** hard bound on requests started, all kinds together */
  maxRequests: number;
  /** hard bound on the time during which requests are started */
  maxDurationMs: number;
  /** default: status 200 and a non-empty body */
  expect?: (status: number, body: string) => boolean;
  /** random pause [min, max] ms between two requests of one loop (default none) */
  thinkMs?: [number, number];
  /** keep up to N latency samples of ok requests (reservoir; default 200_000) */
  sampleLatencies?: number;
  /** once no more requests are started, how long in-flight ones may take before they are
   *  aborted and counted failed as 'aborted' (default 5000). Bounds stop() and done. */
  graceMs?: number;
  /** Called with every ok answer: its kind, body and t (as in Sample). */
  onOk?: (kind: ClientKind, body: string, t: number) => void;
}

export interface KindReport {
  requests: number;
  ok: number;
  failed: number;
  connections?: number;
}
export interface Sample {
  t: number;
  ms: number;
  kind: ClientKind;
}

export interface LoadReport {
  requests: number;
  ok: number;
  failed: number;
  /** by error code (ECONNRESET, UND_ERR_SOCKET, ...), 'bad status N', 'bad body', 'truncated', 'aborted' */
  errors: Record<string, number>;
  byKind: Record<ClientKind, KindReport>;
  /** from start until the last request ended */
  durationMs: number;
  /** ok requests per second over durationMs */
  rps: number;
  /** ms, over all ok requests (histogram, so every request counts, not only the samples) */
  latency: { p50: number; p90: number; p99: number; max: number };
  /** ok responses counted by the body's first token, e.g. 'gen=2' */
  bodies: Record<string, number>;
  /** ok requests: t = start time in ms since the load started, ms = latency; sorted by t */
  samples: Sample[];
  /** performance.now() at the load's start: a time T of the caller maps to t = T - startedAt */
  startedAt: number;
}

export interface LoadHandle {
  stop(): Promise<LoadReport>;
  done: Promise<LoadReport>;
  snapshot(): { requests: number; ok: number; failed: number };
  /** performance.now() at the load's start (same as the report's) */
  startedAt: number;
}

const BODY_KEEP = 1 << 20; // bytes of a body kept for expect(); the rest is read and counted only
const MAX_KEYS = 100; // distinct error / body keys; more go to '(other)' so maps stay bounded

/** Nearest-rank percentile of an ascending array; p in [0, 100]. 0 for an empty array. */
export function percentile(sortedMs: number[], p: number): number {
  const n = sortedMs.length;
  if (n === 0) return 0;
  const rank = Math.ceil((Math.min(100, Math.max(0, p)) / 100) * n);
  return sortedMs[Math.min(n - 1, Math.max(0, rank - 1))]!;
}

/** p99 and max of the samples that started in [from, to). Unordered input is fine. */
export function windowStats(samples: { t: number; ms: number }[], from: number, to: number): { count: number; p99: number; max: number } {
  const ms = samples
    .filter((s) => s.t >= from && s.t < to)
    .map((s) => s.ms)
    .sort((a, b) => a - b);
  return { count: ms.length, p99: percentile(ms, 99), max: ms.length ? ms[ms.length - 1]! : 0 };
}

function bump(map: Record<string, number>, key: string): void {
  if (!(key in map) && Object.keys(map).length >= MAX_KEYS) key = '(other)';
  map[key] = (map[key] ?? 0) + 1;
}

class Failure extends Error {
  constructor(readonly kind: string) {
    super(kind);
  }
}

function errorKind(err: unknown): string {
  if (err instanceof Failure) return err.kind;
  const e = err as { code?: unknown; name?: unknown; message?: unknown } | null;
  if (e && typeof e.code === 'string') return e.code;
  if (e && e.name === 'AbortError') return 'aborted';
  return String(e?.message ?? err).slice(0, 60);
}

interface Response {
  status: number;
  body: string;
}

// One GET through node:http. agent === false means a fresh connection with Connection: close.
function httpGet(opts: LoadOptions, path: string, agent: http.Agent | false, signal: AbortSignal, onConnect: () => void): Promise<Response> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (!settled) {
        settled = true;
        reject(err);
      }
    };
    const where = 'socketPath' in opts.target ? { socketPath: opts.target.socketPath } : { host: opts.target.host, port: opts.target.port };
    const req = http.request({
      ...where,
      path,
      method: 'GET',
      agent,
      signal,
      headers: agent === false ? { connection: 'close' } : {},
    });
    // Count connections as they open: a socket still connecting is new, a reused one is not.
    // (agent: false makes Node build a throwaway Agent, so options.createConnection is not used.)
    req.on('socket', (s) => {
      if (s.connecting) s.once('connect', onConnect);
    });
    req.on('error', fail);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let kept = 0;
      res.on('data', (c: Buffer) => {
        if (kept < BODY_KEEP) {
          chunks.push(c);
          kept += c.length;
        }
      });
      res.on('error', fail); // socket closed mid-body: ECONNRESET 'aborted'
      res.on('end', () => {
        if (!res.complete) return fail(new Failure('truncated'));
        if (!settled) {
          settled = true;
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        }
      });
      res.on('close', () => fail(new Failure('truncated'))); // no-op if 'end' came first
    });
    req.end();
  });
}

/** The three client kinds side by side: undici keep-alive, http.Agent keep-alive, a new connection per request. */
export function mixedClients(undici: number, agent: number, fresh: number): LoadOptions['clients'] {
  return [
    { kind: 'undici', concurrency: undici },
    { kind: 'agent', concurrency: agent },
    { kind: 'fresh', concurrency: fresh },
  ];
}

export function startLoad(opts: LoadOptions): LoadHandle {
  const path = opts.path ?? '/';
  const expect = opts.expect ?? ((status: number, body: string) => status === 200 && body.length > 0);
  const sampleCap = opts.sampleLatencies ?? 200_000;
  const graceMs = opts.graceMs ?? 5000;
  const startedAt = performance.now();

  const byKind = Object.fromEntries(KINDS.map((k) => [k, { requests: 0, ok: 0, failed: 0, connections: 0 }])) as Record<ClientKind, Required<KindReport>>;
  const errors: Record<string, number> = {};
  const bodies: Record<string, number> = {};
  const samples: Sample[] = [];
  let seen = 0; // ok requests offered to the reservoir
  const hist = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 }); // microseconds
  let started = 0,
    ok = 0,
    failed = 0;
  let lastEnd = startedAt;

  const stopStarting = new AbortController(); // ends think pauses at once
  const abortInFlight = new AbortController(); // fired graceMs after stopStarting
  // Every in-flight request listens on this one signal. node:http removes its listener only at
  // the request's 'close', just after the next request of the loop began: two per loop at most.
  setMaxListeners(10 + 3 * opts.clients.reduce((a, c) => a + c.concurrency, 0), abortInFlight.signal, stopStarting.signal);
  let graceTimer: NodeJS.Timeout | undefined;
  const beginStop = () => {
    if (stopStarting.signal.aborted) return;
    stopStarting.abort();
    // unref: in-flight sockets keep the process alive anyway, and a stop() after the end
    // must not hold the process open for graceMs.
    graceTimer = setTimeout(() => abortInFlight.abort(), graceMs).unref();
  };
  const deadline = setTimeout(beginStop, opts.maxDurationMs);

  // One client per kind, shared by that kind's loops, as an application would share its agent.
  const kinds = new Set(opts.clients.filter((c) => c.concurrency > 0).map((c) => c.kind));
  const concurrencyOf = (k: ClientKind) => opts.clients.filter((c) => c.kind === k).reduce((a, c) => a + c.concurrency, 0);
  const countConn = (k: ClientKind) => () => {
    byKind[k].connections++;
  };

  let pool: Pool | undefined;
  if (kinds.has('undici')) {
    const socketPath = 'socketPath' in opts.target ? opts.target.socketPath : undefined;
    const base = buildConnector(socketPath ? { socketPath } : {});
    const origin =
      'socketPath' in opts.target
        ? 'http://localhost'
        : `http://${opts.target.host.includes(':') ? `[${opts.target.host}]` : opts.target.host}:${opts.target.port}`;
    pool = new Pool(origin, {
      connections: concurrencyOf('undici'),
      pipelining: 1,
      connect: (o, cb) =>
        base(o, (...args) => {
          if (!args[0]) byKind.undici.connections++;
          cb(...args);
        }),
    });
  }
  const agent = kinds.has('agent') ? new http.Agent({ keepAlive: true }) : undefined;

  const once = (kind: ClientKind): Promise<Response> => {
    const signal = abortInFlight.signal;
    if (kind === 'undici') {
      return pool!.request({ path, method: 'GET', signal }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
    }
    return httpGet(opts, path, kind === 'agent' ? agent! : false, signal, countConn(kind));
  };

  const record = (kind: ClientKind, t0: number, res: Response | undefined, err: unknown) => {
    const end = performance.now();
    lastEnd = Math.max(lastEnd, end);
    let why: string | undefined;
    // Whatever the error, a request cut by our own grace deadline is 'aborted'.
    if (!res) why = abortInFlight.signal.aborted ? 'aborted' : errorKind(err);
    else {
      try {
        if (!expect(res.status, res.body)) why = res.status !== 200 ? `bad status ${res.status}` : 'bad body';
      } catch {
        why = 'expect threw';
      }
    }
    if (why !== undefined) {
      failed++;
      byKind[kind].failed++;
      bump(errors, why);
      return;
    }
    ok++;
    byKind[kind].ok++;
    opts.onOk?.(kind, res!.body, t0 - startedAt);
    bump(bodies, res!.body.split(/\s/, 1)[0]!.slice(0, 32));
    const ms = end - t0;
    hist.record(Math.max(1, Math.round(ms * 1000)));
    // Reservoir sampling (algorithm R): a long run keeps a uniform sample over its whole
    // length, so windows late in the run still have data once the cap is reached.
    const s: Sample = { t: t0 - startedAt, ms, kind };
    seen++;
    if (samples.length < sampleCap) samples.push(s);
    else {
      const j = Math.floor(Math.random() * seen);
      if (j < sampleCap) samples[j] = s;
    }
  };

  const loop = async (kind: ClientKind): Promise<void> => {
    while (!stopStarting.signal.aborted && started < opts.maxRequests) {
      started++;
      byKind[kind].requests++;
      const t0 = performance.now();
      try {
        record(kind, t0, await once(kind), undefined);
      } catch (err) {
        record(kind, t0, undefined, err);
      }
      if (opts.thinkMs && !stopStarting.signal.aborted) {
        const [lo, hi] = opts.thinkMs;
        await sleep(lo + Math.random() * (hi - lo), undefined, { signal: stopStarting.signal }).catch(() => {});
      }
    }
  };

  const loops = opts.clients.flatMap((c) => Array.from({ length: c.concurrency }, () => loop(c.kind)));
  const done: Promise<LoadReport> = Promise.all(loops).then(async () => {
    clearTimeout(deadline);
    clearTimeout(graceTimer);
    stopStarting.abort();
    agent?.destroy();
    await pool?.destroy().catch(() => {}); // nothing in flight any more: no request is cut here
    const durationMs = lastEnd - startedAt;
    const us = (p: number) => (hist.count ? hist.percentile(p) / 1000 : 0);
    const report: LoadReport = {
      requests: started,
      ok,
      failed,
      errors,
      byKind,
      durationMs,
      rps: durationMs > 0 ? (ok * 1000) / durationMs : 0,
      latency: { p50: us(50), p90: us(90), p99: us(99), max: hist.count ? hist.max / 1000 : 0 },
      bodies,
      samples: samples.sort((a, b) => a.t - b.t),
      startedAt,
    };
    return report;
  });

  return {
    stop() {
      beginStop();
      return done;
    },
    done,
    snapshot: () => ({ requests: started, ok, failed }),
    startedAt,
  };
}

// CLI, for quick measurements and the demo:
//   node dist/bench/load.js <host:port | /path/to.sock> [--undici N] [--agent N] [--fresh N]
//        [--duration ms] [--max n] [--path /] [--think lo,hi]
// Prints the report (without samples) as JSON.
async function main(argv: string[]): Promise<void> {
  const [where, ...rest] = argv;
  if (!where || where === '--help') {
    console.error('usage: load <host:port | /path.sock> [--undici N] [--agent N] [--fresh N] [--duration ms] [--max n] [--path p] [--think lo,hi]');
    process.exit(2);
  }
  const flags = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) flags.set(rest[i]!.replace(/^--/, ''), rest[i + 1] ?? '');
  const target = where.startsWith('/')
    ? { socketPath: where }
    : { host: where.slice(0, where.lastIndexOf(':')).replace(/^\[|\]$/g, ''), port: Number(where.slice(where.lastIndexOf(':') + 1)) };
  const clients = KINDS.filter((k) => flags.has(k)).map((k) => ({ kind: k, concurrency: Number(flags.get(k)) }));
  const think = flags.get('think')?.split(',').map(Number);
  const report = await startLoad({
    target,
    clients: clients.length ? clients : [{ kind: 'undici', concurrency: 16 }],
    path: flags.get('path') ?? '/',
    maxRequests: Number(flags.get('max') ?? 10_000_000),
    maxDurationMs: Number(flags.get('duration') ?? 5000),
    ...(think ? { thinkMs: [think[0]!, think[1] ?? think[0]!] as [number, number] } : {}),
    sampleLatencies: 0,
  }).done;
  const { samples: _omit, ...shown } = report;
  console.log(JSON.stringify(shown, null, 2));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
