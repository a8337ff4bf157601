// `npm run build && node dist/bench/overhead.js [--rounds 3] [--seconds 3] [--only threads]`
//
// Is baton out of the data path? The example app, under keep-alive (undici) and
// new-connection-per-request clients, in pairs measured back to back:
//   bare node (1 process)       vs baton shared / round-robin, 1 worker
//   node cluster, shared handle vs baton shared, 2 workers
//   node cluster, round-robin   vs baton round-robin, 2 workers
//   baton, 2 workers × 1 thread vs baton, 1 worker × 2 threads (--threads; the app names its thread)
// `--only TEXT` runs the pairs whose names contain TEXT.
// Each pair runs in the order AB in even rounds and BA in odd ones, so a machine that gets
// busier or quieter during the run favours neither side; the figure is the median over the
// rounds of the ratio within a pair. Reports req/s, p50/p99, and how evenly requests spread
// over the workers (share per worker and Jain's fairness index: 1 = perfectly even, 1/n = one
// worker serves everything).
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLoad, type ClientKind, type LoadReport } from './load.js';
import { APPS, Baton, LoadWatch, ROOT, freePorts, isMain, median, round, runMain, spawnBare, spawnServer, table, type Section } from './harness.js';

const CLUSTER = join(ROOT, 'bench/cluster.mjs');
/** Load before each measurement, not counted: both sides start cold (JIT, connection pool). */
const WARMUP_MS = 500;

interface Target {
  name: string;
  workers: number;
  start(): Promise<{ port: number; stop(): Promise<void> }>;
}

const bare: Target = {
  name: 'bare node',
  workers: 1,
  async start() {
    const [port] = await freePorts(1);
    const c = spawnBare(APPS.hello, port!);
    await c.waitFor(/listening/);
    return { port: port!, stop: () => c.end() };
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
      return { port: port!, stop: () => c.end() };
    },
  };
}

function baton(distribution: 'shared' | 'round-robin', workers: number): Target {
  return {
    name: `baton ${distribution}, ${workers} worker${workers > 1 ? 's' : ''}`,
    workers,
    async start() {
      const b = await Baton.start({ argv: ['node', APPS.hello], workers, distribution });
      return { port: await b.port(), stop: () => b.stop() };
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
      return { port: await b.port(), stop: () => b.stop() };
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

interface Run {
  rps: number;
  p50: number;
  p99: number;
  failed: number;
  /** ok requests per worker pid */
  perWorker: number[];
}

export function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const sq = xs.reduce((a, b) => a + b * b, 0);
  return xs.length && sq ? (sum * sum) / (xs.length * sq) : 1;
}

async function measure(port: number, kind: ClientKind, concurrency: number, ms: number, workers: number): Promise<Run> {
  const byPid = new Map<string, number>();
  const r: LoadReport = await startLoad({
    target: { host: '127.0.0.1', port },
    clients: [{ kind, concurrency }],
    maxRequests: 50_000_000,
    maxDurationMs: ms,
    sampleLatencies: 0,
    expect: (status, body) => {
      const pid = /pid=\d+(?: thread=\d+)?/.exec(body)?.[0] ?? '?'; // a thread counts as a worker
      byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
      return status === 200;
    },
  }).done;
  const perWorker = [...byPid.values()];
  while (perWorker.length < workers) perWorker.push(0);
  return { rps: r.rps, p50: r.latency.p50, p99: r.latency.p99, failed: r.failed, perWorker };
}

/** Start the target, warm it up, run every load on it, stop it. */
async function runTarget(t: Target, seconds: number): Promise<Map<string, Run>> {
  const s = await t.start();
  try {
    await measure(s.port, 'undici', 8, WARMUP_MS, t.workers);
    const out = new Map<string, Run>();
    for (const l of LOADS) out.set(l.name, await measure(s.port, l.kind, l.concurrency, seconds * 1000, t.workers));
    return out;
  } finally {
    await s.stop();
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
  // results[pair][load] = one { base, baton } per round
  const pairs = PAIRS.filter((p) => !o.only || `${p.base.name} ${p.baton.name}`.includes(o.only));
  const results = pairs.map(() => new Map<string, { base: Run; baton: Run }[]>());
  for (let round = 0; round < o.rounds; round++) {
    for (const [i, p] of pairs.entries()) {
      const order = round % 2 === 0 ? [p.base, p.baton] : [p.baton, p.base];
      const [first, second] = [await runTarget(order[0]!, o.seconds), await runTarget(order[1]!, o.seconds)];
      const [base, under] = round % 2 === 0 ? [first, second] : [second, first];
      for (const l of LOADS) {
        const pair = { base: base.get(l.name)!, baton: under.get(l.name)! };
        results[i]!.set(l.name, [...(results[i]!.get(l.name) ?? []), pair]);
        console.error(`round ${round + 1} ${l.name}: ${p.base.name} ${Math.round(pair.base.rps)} req/s | ${p.baton.name} ${Math.round(pair.baton.rps)} req/s (${(pair.baton.rps / pair.base.rps).toFixed(3)})`);
      }
    }
  }
  const load = watch.stop();

  const rows: (string | number)[][] = [];
  const verdicts: Section['verdicts'] = [];
  const describe = (runs: Run[]): (string | number)[] => {
    const last = runs.at(-1)!;
    const total = last.perWorker.reduce((a, b) => a + b, 0);
    return [
      Math.round(median(runs.map((r) => r.rps))),
      round(median(runs.map((r) => r.p50)), 1),
      round(median(runs.map((r) => r.p99)), 1),
      runs.reduce((n, r) => n + r.failed, 0),
      last.perWorker.length > 1 ? last.perWorker.map((c) => `${Math.round((100 * c) / total)}%`).join(' / ') : '—',
      last.perWorker.length > 1 ? round(median(runs.map((r) => jain(r.perWorker))), 3) : '—',
    ];
  };
  for (const l of LOADS) {
    for (const [i, p] of pairs.entries()) {
      const runs = results[i]!.get(l.name)!;
      const ratios = runs.map((r) => r.baton.rps / r.base.rps);
      const ratio = median(ratios);
      const spread = `${round(ratio, 3)} (${round(Math.min(...ratios), 2)}–${round(Math.max(...ratios), 2)})`;
      rows.push([l.name, p.base.name, ...describe(runs.map((r) => r.base)), '']);
      rows.push([l.name, p.baton.name, ...describe(runs.map((r) => r.baton)), `${spread} × ${p.base.name}`]);
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
    `${o.rounds} rounds × ${o.seconds} s per load, pairs alternating AB / BA; ${LOADS.map((l) => `${l.name}: ${l.concurrency} clients`).join(', ')}; \`examples/hello/v1.js\` (the --threads pair: \`test/fixtures/threads.mjs\`).`,
    '',
    table(['load', 'target', 'req/s (median)', 'p50 ms', 'p99 ms', 'failed', 'share per worker (last round)', 'Jain', 'baton / baseline, median of rounds (min–max)'], rows),
  ].join('\n');
  return { title: 'Overhead: throughput under baton vs bare', command: `node dist/bench/overhead.js --rounds ${o.rounds} --seconds ${o.seconds}${o.only ? ` --only '${o.only}'` : ''}`, load, markdown, verdicts };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '3' }, only: { type: 'string' } } });
  runMain(() => overhead({ rounds: Number(values.rounds), seconds: Number(values.seconds), only: values.only }));
}
