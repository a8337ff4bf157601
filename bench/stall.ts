// `npm run build && node dist/bench/stall.js [--reloads 10] [--every 3000] [--app hello|express]
//                                           [--workers 1] [--distribution shared] [--think 0,0]
//                                           [--handoff overlap|exclusive|overlap,exclusive]`
//
// Does a reload stall the service? Events at a fixed cadence under load, one run per client
// kind (keep-alive undici; a new connection per request), and latency compared between
//   reload windows: from each reload request until 1 s after the handoff is done (the
//     new generation's start-up, the transfer, and the second after it);
//   control windows: the same app started bare next to the service, as many processes as
//     it has workers, and stopped once they listen, plus 1 s: what starting that many Node.js
//     processes costs the service on this machine, with baton taking no part;
//   steady state: every other moment of the same run (after a warm-up).
// Reloads and controls alternate in one run, so the machine's noise hits all three alike.
// Bar: p99 in the reload windows ≤ 2× the steady p99, for each client kind. A reload window
// well above its control window points at baton; one close to it, at the CPU the new
// processes need. With --handoff overlap,exclusive each client kind runs once per mode, one
// after the other: what the exclusive handoff's moment without an acceptor costs, next to
// the overlapping one.
import { parseArgs } from 'node:util';
import type { HandoffMode } from '../src/common/protocol.js';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import {
  APPS,
  type AppName,
  Baton,
  cpuShare,
  freePorts,
  isMain,
  LoadWatch,
  median,
  procSample,
  round,
  runMain,
  type Section,
  spawnBare,
  table,
} from './harness.js';
import { type ClientKind, percentile, type Sample, startLoad } from './load.js';

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
  /** Each client kind runs once per mode. */
  handoff: HandoffMode[];
}

export const CLIENTS: StallOptions['clients'] = [
  { name: 'keep-alive', kind: 'undici', concurrency: 16 },
  { name: 'new connection', kind: 'fresh', concurrency: 8 },
];

interface KindResult {
  name: string;
  handoff: HandoffMode;
  steady: number[];
  windows: number[][];
  controls: number[][];
  failed: number;
  errors: Record<string, number>;
  records: HandoffRecord[];
  supervisorCpu: number;
}

async function runKind(o: StallOptions, client: StallOptions['clients'][number], handoff: HandoffMode): Promise<KindResult> {
  const b = await Baton.start({ argv: ['node', APPS[o.app]], workers: o.workers, distribution: o.distribution, args: ['--handoff', handoff] });
  try {
    const port = await b.port();
    const load = startLoad({
      target: { host: '127.0.0.1', port },
      clients: [{ kind: client.kind, concurrency: client.concurrency }],
      maxRequests: 50_000_000,
      maxDurationMs: WARMUP_MS + STEADY_FIRST_MS + o.reloads * 2 * (o.everyMs + 30_000),
      ...(o.think[1] > 0 ? { thinkMs: o.think } : {}),
    });
    const now = (): number => performance.now() - load.startedAt;
    await sleep(WARMUP_MS + STEADY_FIRST_MS);
    const cpu0 = procSample(b.pid);
    const windows: [number, number][] = [];
    const controls: [number, number][] = [];
    const records: HandoffRecord[] = [];
    for (let i = 0; i < o.reloads; i++) {
      let from = now();
      const reply = await b.request({ cmd: 'reload' });
      const rec = (reply.ok ? reply.result : (reply as { detail?: unknown }).detail) as HandoffRecord;
      records.push(rec);
      if (!reply.ok) throw new Error(`reload ${i + 1} failed: ${reply.error}`);
      windows.push([from, now() + AFTER_MS]);
      await sleep(Math.max(AFTER_MS, from + o.everyMs - now()));
      from = now();
      await startBare(o.app, o.workers);
      controls.push([from, now() + AFTER_MS]);
      await sleep(Math.max(AFTER_MS, from + o.everyMs - now()));
    }
    const cpu1 = procSample(b.pid);
    const report = await load.stop();
    const during = (ws: [number, number][]): number[][] => ws.map(([a, z]) => report.samples.filter((s) => s.t >= a && s.t < z).map((s) => s.ms));
    const inWindow = (s: Sample): boolean => [...windows, ...controls].some(([a, z]) => s.t >= a && s.t < z);
    const steady = report.samples.filter((s) => s.t >= WARMUP_MS && !inWindow(s)).map((s) => s.ms);
    return {
      name: client.name,
      handoff,
      steady,
      windows: during(windows),
      controls: during(controls),
      failed: report.failed,
      errors: report.errors,
      records,
      supervisorCpu: cpuShare(cpu0, cpu1),
    };
  } finally {
    await b.stop();
  }
}

/** The control event: `n` bare processes of the app started at once, stopped once all listen. */
async function startBare(app: AppName, n: number): Promise<void> {
  const ports = await freePorts(n);
  const kids = ports.map((p) => spawnBare(APPS[app], p));
  try {
    await Promise.all(kids.map((k) => k.waitFor(/listening/)));
  } finally {
    await Promise.all(kids.map((k) => k.end()));
  }
}

const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function stall(o: StallOptions): Promise<Section> {
  const watch = new LoadWatch();
  const results: KindResult[] = [];
  for (const c of o.clients)
    for (const mode of o.handoff) {
      results.push(await runKind(o, c, mode));
      const r = results.at(-1)!;
      console.error(
        `stall ${c.name}, ${mode}: p99 steady ${round(percentile(sorted(r.steady), 99), 1)} ms, reload windows ${round(percentile(sorted(r.windows.flat()), 99), 1)} ms, control windows ${round(percentile(sorted(r.controls.flat()), 99), 1)} ms`,
      );
    }
  const load = watch.stop();
  const p = (xs: number[], q: number): number => percentile(xs, q);
  const trio = (xs: number[]): string => `${round(p(xs, 50), 1)} / ${round(p(xs, 99), 1)} / ${round(xs.at(-1) ?? NaN, 1)}`;
  const rows = results.map((r) => {
    const steady = sorted(r.steady);
    const reload = sorted(r.windows.flat());
    const control = sorted(r.controls.flat());
    const perWindow = r.windows.map((w) => p(sorted(w), 99));
    const ready = r.records.map((x) => x.readyMs ?? NaN);
    const transfer = r.records.map((x) => x.transferMs ?? NaN);
    return [
      o.handoff.length > 1 ? `${r.name}, ${r.handoff}` : r.name,
      trio(steady),
      trio(reload),
      `**${round(p(reload, 99) / p(steady, 99), 2)}×**`,
      `${round(median(perWindow), 1)} / ${round(Math.max(...perWindow), 1)}`,
      trio(control),
      `${round(p(control, 99) / p(steady, 99), 2)}×`,
      `${round(median(ready))} / ${round(Math.max(...ready))}`,
      `${round(median(transfer), 1)} / ${round(Math.max(...transfer), 1)}`,
      `${round(r.supervisorCpu * 100, 1)} %`,
      r.failed ? `${r.failed} ${JSON.stringify(r.errors)}` : '0',
    ];
  });
  // The bar is the default (overlap) handoff's; the exclusive one's gap is shown in the table beside it.
  const verdicts = results
    .filter((r) => r.handoff === 'overlap' || !o.handoff.includes('overlap'))
    .map((r) => {
      const ratio = p(sorted(r.windows.flat()), 99) / p(sorted(r.steady), 99);
      const control = p(sorted(r.controls.flat()), 99) / p(sorted(r.steady), 99);
      const label = o.handoff.length > 1 || r.handoff !== 'overlap' ? `${r.name}, ${r.handoff} handoff` : r.name;
      return {
        bar: `${label}: p99 in reload windows ≤ 2× steady p99`,
        measured: `${round(ratio, 2)}× (bare start-up next to it: ${round(control, 2)}×)`,
        met: ratio <= 2 && r.failed === 0,
      };
    });
  const how = o.think[1] > 0 ? `each client pausing ${o.think[0]}–${o.think[1]} ms between requests` : 'no pause between requests (saturating)';
  const markdown = [
    `\`${o.app}\`, ${o.workers} worker(s), ${o.distribution}, ${o.handoff.join(' then ')} handoff; ${o.reloads} reloads, one every ${o.everyMs / 1000} s; ` +
      `${o.clients.map((c) => `${c.name}: ${c.concurrency} clients`).join(', ')}, ${how}. ` +
      `A reload window runs from the reload request to ${AFTER_MS} ms after the handoff is done; between reloads, a control window: ${o.workers} bare process(es) of the same app started next to the service and stopped once they listen, plus ${AFTER_MS} ms; ` +
      `steady state is the rest of the run after a ${WARMUP_MS} ms warm-up. Latencies in ms, p50 / p99 / max.`,
    '',
    table(
      [
        'clients',
        'steady',
        'reload windows',
        'reload p99 ÷ steady p99',
        'p99 per reload window, median / worst',
        'control windows',
        'control p99 ÷ steady p99',
        'ready ms, median / max',
        'transfer ms, median / max',
        'supervisor CPU',
        'failed',
      ],
      rows,
    ),
  ].join('\n');
  const think = o.think[1] > 0 ? ` --think ${o.think.join(',')}` : '';
  const modes = o.handoff.join(',');
  return {
    title: `No stall: latency around reloads${o.think[1] > 0 ? ' (paced clients)' : ''}${modes === 'overlap' ? '' : `, ${o.handoff.join(' vs ')} handoff`}`,
    command: `node dist/bench/stall.js --reloads ${o.reloads} --every ${o.everyMs} --app ${o.app} --workers ${o.workers} --distribution ${o.distribution}${think}${modes === 'overlap' ? '' : ` --handoff ${modes}`}`,
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
      handoff: { type: 'string', default: 'overlap' },
    },
  });
  const modes = v.handoff!.split(',');
  if (!modes.every((m) => m === 'overlap' || m === 'exclusive')) throw new Error(`--handoff: overlap, exclusive or overlap,exclusive`);
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
      handoff: modes as HandoffMode[],
    }),
  );
}
