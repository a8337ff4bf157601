// `npm run build && node dist/bench/stall.js [--reloads 10] [--every 3000] [--app hello|express]
//                                           [--workers 1] [--distribution shared] [--think 0,0]`
//
// Does a reload stall the service? Reloads at a fixed cadence under load, one run per client
// kind (keep-alive undici; a new connection per request), and latency compared between
//   reload windows: from each reload request until 1 s after the handoff is done (the
//     new generation's start-up, the transfer, and the second after it);
//   steady state: every other moment of the same run (a warm-up first, then between windows).
// Both come from the same run, interleaved, so the machine's noise hits both alike.
// Bar: p99 in the reload windows ≤ 2× the steady p99, for each client kind.
import { parseArgs } from 'node:util';
import { startLoad, percentile, type ClientKind, type Sample } from './load.js';
import type { HandoffRecord } from '../src/handoff.js';
import { APPS, Baton, LoadWatch, cpuShare, isMain, median, procSample, round, runMain, table, type AppName, type Section } from './harness.js';

/** After the handoff is done, how long a reload window lasts: "the second after a reload". */
const AFTER_MS = 1000;
/** Steady state before the first reload: the warm-up is left out of it. */
const WARMUP_MS = 1500;
const STEADY_FIRST_MS = 2000;

export interface StallOptions {
  reloads: number;
  everyMs: number;
  app: AppName;
  workers: number;
  distribution: 'shared' | 'round-robin';
  /** Pause between two requests of a client [lo, hi] ms; [0, 0] saturates. */
  think: [number, number];
  clients: { name: string; kind: ClientKind; concurrency: number }[];
}

export const CLIENTS: StallOptions['clients'] = [
  { name: 'keep-alive', kind: 'undici', concurrency: 16 },
  { name: 'new connection', kind: 'fresh', concurrency: 8 },
];

interface KindResult {
  name: string;
  steady: number[];
  windows: number[][];
  failed: number;
  errors: Record<string, number>;
  rps: number;
  records: HandoffRecord[];
  supervisorCpu: number;
}

async function runKind(o: StallOptions, client: StallOptions['clients'][number]): Promise<KindResult> {
  const b = await Baton.start({ argv: ['node', APPS[o.app]], workers: o.workers, distribution: o.distribution });
  try {
    const port = await b.port();
    const load = startLoad({
      target: { host: '127.0.0.1', port },
      clients: [{ kind: client.kind, concurrency: client.concurrency }],
      maxRequests: 50_000_000,
      maxDurationMs: WARMUP_MS + STEADY_FIRST_MS + o.reloads * (o.everyMs + 30_000),
      ...(o.think[1] > 0 ? { thinkMs: o.think } : {}),
    });
    const now = (): number => performance.now() - load.startedAt;
    await sleep(WARMUP_MS + STEADY_FIRST_MS);
    const cpu0 = procSample(b.pid);
    const windows: [number, number][] = [];
    const records: HandoffRecord[] = [];
    for (let i = 0; i < o.reloads; i++) {
      const from = now();
      const reply = await b.request({ cmd: 'reload' });
      const rec = (reply.ok ? reply.result : (reply as { detail?: unknown }).detail) as HandoffRecord;
      records.push(rec);
      if (!reply.ok) throw new Error(`reload ${i + 1} failed: ${reply.error}`);
      windows.push([from, now() + AFTER_MS]);
      await sleep(Math.max(AFTER_MS, from + o.everyMs - now()));
    }
    const cpu1 = procSample(b.pid);
    const report = await load.stop();
    const inWindow = (s: Sample): boolean => windows.some(([a, z]) => s.t >= a && s.t < z);
    const steady = report.samples.filter((s) => s.t >= WARMUP_MS && !inWindow(s)).map((s) => s.ms);
    return {
      name: client.name,
      steady,
      windows: windows.map(([a, z]) => report.samples.filter((s) => s.t >= a && s.t < z).map((s) => s.ms)),
      failed: report.failed,
      errors: report.errors,
      rps: report.rps,
      records,
      supervisorCpu: cpuShare(cpu0, cpu1),
    };
  } finally {
    await b.stop();
  }
}

const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function stall(o: StallOptions): Promise<Section> {
  const watch = new LoadWatch();
  const results: KindResult[] = [];
  for (const c of o.clients) {
    results.push(await runKind(o, c));
    const r = results.at(-1)!;
    console.error(`stall ${c.name}: steady p99 ${round(percentile(sorted(r.steady), 99), 1)} ms, reload windows p99 ${round(percentile(sorted(r.windows.flat()), 99), 1)} ms`);
  }
  const load = watch.stop();
  const rows = results.map((r) => {
    const steady = sorted(r.steady);
    const pooled = sorted(r.windows.flat());
    const perWindow = r.windows.map((w) => percentile(sorted(w), 99));
    const ready = r.records.map((x) => x.readyMs ?? NaN);
    return [
      r.name,
      steady.length,
      round(percentile(steady, 50), 1),
      round(percentile(steady, 99), 1),
      round(steady.at(-1) ?? NaN, 1),
      pooled.length,
      round(percentile(pooled, 50), 1),
      round(percentile(pooled, 99), 1),
      round(pooled.at(-1) ?? NaN, 1),
      `${round(median(perWindow), 1)} / ${round(Math.max(...perWindow), 1)}`,
      `**${round(percentile(pooled, 99) / percentile(steady, 99), 2)}×**`,
      `${round(median(ready))} / ${round(Math.max(...ready))}`,
      `${round(r.supervisorCpu * 100, 1)} %`,
      r.failed ? `${r.failed} ${JSON.stringify(r.errors)}` : '0',
    ];
  });
  const verdicts = results.map((r) => {
    const ratio = percentile(sorted(r.windows.flat()), 99) / percentile(sorted(r.steady), 99);
    return { bar: `${r.name}: p99 in reload windows ≤ 2× steady p99`, measured: `${round(ratio, 2)}×`, met: ratio <= 2 && r.failed === 0 };
  });
  const how = o.think[1] > 0 ? `each client pausing ${o.think[0]}–${o.think[1]} ms between requests` : 'no pause between requests (saturating)';
  const markdown = [
    `\`${o.app}\`, ${o.workers} worker(s), ${o.distribution}; ${o.reloads} reloads, one every ${o.everyMs / 1000} s; ` +
      `${o.clients.map((c) => `${c.name}: ${c.concurrency} clients`).join(', ')}, ${how}. ` +
      `A reload window runs from the reload request to ${AFTER_MS} ms after the handoff is done; steady state is the rest of the run after a ${WARMUP_MS} ms warm-up.`,
    '',
    table(
      ['clients', 'steady samples', 'steady p50 ms', 'steady p99 ms', 'steady max ms', 'window samples', 'window p50 ms', 'window p99 ms', 'window max ms', 'p99 per window, median / worst', 'window p99 / steady p99', 'ready ms, median / max', 'supervisor CPU', 'failed'],
      rows,
    ),
  ].join('\n');
  const think = o.think[1] > 0 ? ` --think ${o.think.join(',')}` : '';
  return {
    title: `No stall: latency around reloads${o.think[1] > 0 ? ' (paced clients)' : ''}`,
    command: `node dist/bench/stall.js --reloads ${o.reloads} --every ${o.everyMs} --app ${o.app} --workers ${o.workers} --distribution ${o.distribution}${think}`,
    load,
    markdown,
    verdicts,
  };
}

if (isMain(import.meta.url)) {
  const { values: v } = parseArgs({
    options: {
      reloads: { type: 'string', default: '10' },
      every: { type: 'string', default: '3000' },
      app: { type: 'string', default: 'hello' },
      workers: { type: 'string', default: '1' },
      distribution: { type: 'string', default: 'shared' },
      think: { type: 'string', default: '0,0' },
    },
  });
  const [lo, hi] = v.think!.split(',').map(Number);
  runMain(() =>
    stall({
      reloads: Number(v.reloads),
      everyMs: Number(v.every),
      app: v.app as AppName,
      workers: Number(v.workers),
      distribution: v.distribution as 'shared' | 'round-robin',
      think: [lo ?? 0, hi ?? lo ?? 0],
      clients: CLIENTS,
    }),
  );
}
