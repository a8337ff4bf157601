// `npm run build && node dist/bench/overhead.js [--rounds 3] [--seconds 3] [--only threads]`
//
// Is baton out of the data path? The example app, under keep-alive (undici) and
// new-connection-per-request clients, in pairs measured back to back:
//   bare node (1 process)       vs baton shared / round-robin, 1 worker
//   node cluster, shared handle vs baton shared, 2 workers
//   node cluster, round-robin   vs baton round-robin, 2 workers
//   baton, 2 workers × 1 thread vs baton, 1 worker × 2 threads (--threads; the app names its thread)
// `--only TEXT` runs the pairs whose names contain TEXT.
// Both sides of a pair run for the whole pair (the one not under load idles); in each round
// the load goes to them in slices A B B A of half the --seconds each, so load that other work
// on the machine puts on and takes off within seconds hits both sides alike (on the busy
// 2-core machine, sides measured one after the other, 3 s each, differed by up to 2× from one
// round to the next). The figure is the median over the rounds of the ratio within a round.
// Reports req/s, p50/p99, and how evenly requests spread over the workers (share per worker
// and Jain's fairness index: 1 = perfectly even, 1/n = one worker serves everything).
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { APPS, Baton, freePorts, isMain, LoadWatch, median, procSample, ROOT, round, runMain, type Section, spawnBare, spawnServer, table } from './harness.js';
import { type ClientKind, type LoadReport, percentile, startLoad } from './load.js';

const CLUSTER = join(ROOT, 'bench/cluster.mjs');
/** Load before each measurement, not counted: both sides start cold (JIT, connection pool). */
const WARMUP_MS = 500;

interface Target {
  name: string;
  workers: number;
  /** `parent`: the process that owns the socket and does not serve (supervisor, cluster primary), if any. */
  start(): Promise<Started>;
}

const bare: Target = {
  name: 'bare node',
  workers: 1,
  async start() {
    const [port] = await freePorts(1);
    const c = spawnBare(APPS.hello, port!);
    await c.waitFor(/listening/);
    return { port: port!, parent: null, stop: () => c.end() };
  },
};

function cluster(policy: 'none' | 'rr'): Target {
  return {
    name: `node cluster ${policy === 'rr' ? 'round-robin' : 'shared'}`,
    workers: 2,
    async start() {
      const [port] = await freePorts(1);
      const c = spawnServer([CLUSTER], { PORT: String(port), WORKERS: '2', NODE_CLUSTER_SCHED_POLICY: policy });
      await c.waitFor(/(listening[\s\S]*){2}/);
      return { port: port!, parent: c.pid, stop: () => c.end() };
    },
  };
}

function baton(distribution: 'shared' | 'round-robin', workers: number): Target {
  return {
    name: `baton ${distribution}, ${workers} worker${workers > 1 ? 's' : ''}`,
    workers,
    async start() {
      const b = await Baton.start({ argv: ['node', APPS.hello], workers, distribution });
      return { port: await b.port(), parent: b.pid, stop: () => b.stop() };
    },
  };
}

/** Copies of the app as processes or as --threads; test/fixtures/threads.mjs answers `pid=P thread=T`. */
function copies(workers: number, threads: number): Target {
  return {
    name: `baton shared, ${workers} worker${workers > 1 ? 's' : ''} × ${threads} thread${threads > 1 ? 's' : ''}`,
    workers: workers * threads,
    async start() {
      const b = await Baton.start({ argv: ['node', join(ROOT, 'test/fixtures/threads.mjs')], workers, args: ['--threads', String(threads)] });
      return { port: await b.port(), parent: b.pid, stop: () => b.stop() };
    },
  };
}

/** [baseline, baton]; `bar`: the ratio baton must reach (null: reported only). */
const PAIRS: { base: Target; baton: Target; bar: number | null }[] = [
  { base: bare, baton: baton('shared', 1), bar: 0.97 },
  { base: bare, baton: baton('round-robin', 1), bar: null },
  { base: cluster('none'), baton: baton('shared', 2), bar: 0.97 },
  { base: cluster('rr'), baton: baton('round-robin', 2), bar: 1 },
  { base: copies(2, 1), baton: copies(1, 2), bar: null },
];
const LOADS: { name: string; kind: ClientKind; concurrency: number }[] = [
  { name: 'keep-alive', kind: 'undici', concurrency: 32 },
  { name: 'new connection', kind: 'fresh', concurrency: 16 },
];

interface Started {
  port: number;
  parent: number | null;
  stop(): Promise<void>;
}

interface Run {
  ok: number;
  durationMs: number;
  failed: number;
  /** latency of every ok request, ms */
  latencies: number[];
  /** ok requests per worker (pid, or pid and thread) */
  perWorker: Map<string, number>;
  /** CPU time of the target's parent process meanwhile (round-robin: the dispatch), ms */
  parentCpuMs: number;
}

export function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const sq = xs.reduce((a, b) => a + b * b, 0);
  return xs.length && sq ? (sum * sum) / (xs.length * sq) : 1;
}

async function measure(t: Started, kind: ClientKind, concurrency: number, ms: number): Promise<Run> {
  const perWorker = new Map<string, number>();
  const cpu0 = t.parent === null ? 0 : procSample(t.parent).cpuMs;
  const r: LoadReport = await startLoad({
    target: { host: '127.0.0.1', port: t.port },
    clients: [{ kind, concurrency }],
    maxRequests: 50_000_000,
    maxDurationMs: ms,
    expect: (status, body) => {
      const pid = /pid=\d+(?: thread=\d+)?/.exec(body)?.[0] ?? '?'; // a thread counts as a worker
      perWorker.set(pid, (perWorker.get(pid) ?? 0) + 1);
      return status === 200;
    },
  }).done;
  const parentCpuMs = t.parent === null ? 0 : procSample(t.parent).cpuMs - cpu0;
  return { ok: r.ok, durationMs: r.durationMs, failed: r.failed, latencies: r.samples.map((x) => x.ms), perWorker, parentCpuMs };
}

function merge(a: Run, b: Run): Run {
  const perWorker = new Map(a.perWorker);
  for (const [k, n] of b.perWorker) perWorker.set(k, (perWorker.get(k) ?? 0) + n);
  return {
    ok: a.ok + b.ok,
    durationMs: a.durationMs + b.durationMs,
    failed: a.failed + b.failed,
    latencies: [...a.latencies, ...b.latencies],
    perWorker,
    parentCpuMs: a.parentCpuMs + b.parentCpuMs,
  };
}

const rps = (r: Run): number => (r.ok * 1000) / r.durationMs;

/** Both targets up for the whole pair; per round and load, slices A B B A. One { base, baton } per round and load. */
async function runPair(base: Target, baton: Target, rounds: number, seconds: number): Promise<Map<string, { base: Run; baton: Run }[]>> {
  const a = await base.start();
  try {
    const b = await baton.start();
    try {
      for (const s of [a, b]) await measure(s, 'undici', 8, WARMUP_MS);
      const out = new Map<string, { base: Run; baton: Run }[]>();
      const half = (seconds * 1000) / 2;
      for (let round = 0; round < rounds; round++) {
        for (const l of LOADS) {
          const slice = (t: Started): Promise<Run> => measure(t, l.kind, l.concurrency, half);
          const a1 = await slice(a);
          const b1 = await slice(b);
          const b2 = await slice(b);
          const a2 = await slice(a);
          const pair = { base: merge(a1, a2), baton: merge(b1, b2) };
          out.set(l.name, [...(out.get(l.name) ?? []), pair]);
          console.error(
            `round ${round + 1} ${l.name}: ${base.name} ${Math.round(rps(pair.base))} req/s | ${baton.name} ${Math.round(rps(pair.baton))} req/s (${(rps(pair.baton) / rps(pair.base)).toFixed(3)})`,
          );
        }
      }
      return out;
    } finally {
      await b.stop();
    }
  } finally {
    await a.stop();
  }
}

export interface OverheadOptions {
  rounds: number;
  seconds: number;
  /** Only the pairs whose names contain this. */
  only?: string;
}

export async function overhead(o: OverheadOptions): Promise<Section> {
  const watch = new LoadWatch();
  // results[pair]: for each load, one { base, baton } per round
  const pairs = PAIRS.filter((p) => !o.only || `${p.base.name} ${p.baton.name}`.includes(o.only));
  const results: Map<string, { base: Run; baton: Run }[]>[] = [];
  for (const p of pairs) results.push(await runPair(p.base, p.baton, o.rounds, o.seconds));
  const load = watch.stop();

  const rows: (string | number)[][] = [];
  const verdicts: Section['verdicts'] = [];
  const describe = (runs: Run[], t: Target): (string | number)[] => {
    const workers = t.workers;
    const all = runs.reduce(merge);
    const counts = [...all.perWorker.values()];
    while (counts.length < workers) counts.push(0);
    const total = counts.reduce((x, y) => x + y, 0);
    const latencies = [...all.latencies].sort((x, y) => x - y);
    return [
      Math.round(rps(all)),
      round(percentile(latencies, 50), 1),
      round(percentile(latencies, 99), 1),
      all.failed,
      workers > 1 ? counts.map((c) => `${Math.round((100 * c) / total)}%`).join(' / ') : '—',
      workers > 1 ? round(jain(counts), 3) : '—',
      t === bare ? '—' : round((all.parentCpuMs * 1000) / all.ok),
    ];
  };
  for (const l of LOADS) {
    for (const [i, p] of pairs.entries()) {
      const runs = results[i]!.get(l.name)!;
      const ratios = runs.map((r) => rps(r.baton) / rps(r.base));
      const ratio = median(ratios);
      const spread = `${round(ratio, 3)} (${round(Math.min(...ratios), 2)}–${round(Math.max(...ratios), 2)})`;
      rows.push([
        l.name,
        p.base.name,
        ...describe(
          runs.map((r) => r.base),
          p.base,
        ),
        '',
      ]);
      rows.push([
        l.name,
        p.baton.name,
        ...describe(
          runs.map((r) => r.baton),
          p.baton,
        ),
        `${spread} × ${p.base.name}`,
      ]);
      if (p.bar !== null) {
        verdicts.push({
          bar: `${p.baton.name}, ${l.name}: req/s ≥ ${p.bar}× ${p.base.name}`,
          measured: `${round(ratio, 3)}× (rounds ${ratios.map((r) => round(r, 2)).join(', ')})`,
          met: ratio >= p.bar,
        });
      }
    }
  }
  const markdown = [
    `${o.rounds} rounds × ${o.seconds} s per load and side, in slices A B B A of ${o.seconds / 2} s, both sides running for the whole pair; ${LOADS.map((l) => `${l.name}: ${l.concurrency} clients`).join(', ')}; \`examples/hello/v1.js\` (the --threads pair: \`test/fixtures/threads.mjs\`).`,
    '',
    table(
      [
        'load',
        'target',
        'req/s',
        'p50 ms',
        'p99 ms',
        'failed',
        'share per worker',
        'Jain',
        'supervisor / primary CPU µs per request',
        'baton / baseline, median of rounds (min–max)',
      ],
      rows,
    ),
  ].join('\n');
  return {
    title: 'Overhead: throughput under baton vs bare',
    command: `node dist/bench/overhead.js --rounds ${o.rounds} --seconds ${o.seconds}${o.only ? ` --only '${o.only}'` : ''}`,
    load,
    markdown,
    verdicts,
  };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '3' }, only: { type: 'string' } } });
  runMain(() => overhead({ rounds: Number(values.rounds), seconds: Number(values.seconds), only: values.only }));
}
