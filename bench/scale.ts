// `npm run build && node dist/bench/scale.js [--workers 1,2,4,8,16] [--listeners 1,10,100]
//                                           [--handoffs 3] [--svg docs/scale.svg]`
//
// How the handoff grows with the pool and with the number of listeners: with 1 listener,
// 1 to 16 workers; with 1 worker, 1 to 100 listeners. The app is bench/ports.mjs (the example
// handler on every port). For each point, alternating:
//   a handoff (`reload` waiting until the old generation exited): request -> new generation
//     ready, -> done (old one stopped accepting), -> old one exited; and the supervisor's own
//     CPU time for it (utime + stime in /proc), the part of the cost that is baton's, and
//     the longest its event loop was blocked meanwhile (bench/loopdelay.mjs);
//   the floor: the same number of processes with the same number of ports started bare, all
//     at once, until each has said it listens.
// Linear growth: the cost of one more worker (or listener) does not rise with the count.
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import { Baton, freePorts, isMain, LoadWatch, median, procSample, ROOT, round, runMain, type Section, spawnBare, table } from './harness.js';
import { svg } from './plot.js';

const APP = join(ROOT, 'bench/ports.mjs');

export interface ScaleOptions {
  workers: number[];
  listeners: number[];
  handoffs: number;
  /** Where to write the plot (null: not drawn). */
  svgPath: string | null;
}

interface Point {
  workers: number;
  listeners: number;
  readyMs: number;
  doneMs: number;
  exitedMs: number;
  supervisorCpuMs: number;
  /** the longest the supervisor's event loop was blocked during a handoff */
  blockMs: number;
  bareMs: number;
}

/** `n` bare processes, each on its own `ports` ports, spawned at once: ms until every one listens. */
async function bareStart(n: number, ports: number): Promise<number> {
  const all = await freePorts(n * ports);
  const t0 = performance.now();
  const kids = Array.from({ length: n }, (_, i) => {
    const mine = all.slice(i * ports, (i + 1) * ports);
    return spawnBare(APP, mine[0]!, { PORTS: mine.join(',') });
  });
  try {
    await Promise.all(kids.map((k) => k.waitFor(/listening/)));
    return performance.now() - t0;
  } finally {
    await Promise.all(kids.map((k) => k.end()));
  }
}

async function point(workers: number, listeners: number, handoffs: number): Promise<Point> {
  const ports = await freePorts(listeners);
  const b = await Baton.start({
    argv: ['node', APP],
    workers,
    listen: ports.map((p) => `127.0.0.1:${p}`),
    env: { PORTS: ports.join(',') },
    args: ['--ready-timeout', '120s'],
    loopDelay: true,
  });
  const recs: HandoffRecord[] = [];
  const cpu: number[] = [];
  const block: number[] = [];
  const bare: number[] = [];
  try {
    for (let i = 0; i < handoffs; i++) {
      bare.push(await bareStart(workers, listeners));
      await b.loopDelay(); // from here: this handoff only
      const a = procSample(b.pid);
      const reply = await b.request({ cmd: 'reload', wait: 'drained' });
      if (!reply.ok) throw new Error(`reload with ${workers} workers, ${listeners} listeners failed: ${reply.error}`);
      cpu.push(procSample(b.pid).cpuMs - a.cpuMs);
      block.push((await b.loopDelay()).max);
      recs.push(reply.result as HandoffRecord);
    }
  } finally {
    await b.stop();
  }
  const p: Point = {
    workers,
    listeners,
    readyMs: median(recs.map((r) => r.readyMs!)),
    doneMs: median(recs.map((r) => r.totalMs!)),
    exitedMs: median(recs.map((r) => r.drainedMs!)),
    supervisorCpuMs: median(cpu),
    blockMs: median(block),
    bareMs: median(bare),
  };
  console.error(
    `scale ${workers} worker(s), ${listeners} listener(s): ready ${round(p.readyMs)} ms, done ${round(p.doneMs)} ms, supervisor CPU ${round(p.supervisorCpuMs)} ms, longest loop block ${round(p.blockMs)} ms, bare ${round(p.bareMs)} ms`,
  );
  return p;
}

/**
 * Growth between the middle and the last point vs between the first and the middle, per unit
 * (worker or listener): ≤ 1.5 reads as linear or better (noise allowed); quadratic growth
 * from 1 -> 4 -> 16 would give about 5. A rise of less than 5 % of the first value over the
 * lower half counts as that much (it is noise), so a flat start does not divide by ~0.
 */
function slopeRatio(xs: number[], ys: number[]): number {
  const m = Math.floor((xs.length - 1) / 2);
  const last = xs.length - 1;
  const lo = Math.max(ys[m]! - ys[0]!, 0.05 * ys[0]!) / (xs[m]! - xs[0]!);
  const hi = (ys[last]! - ys[m]!) / (xs[last]! - xs[m]!);
  return hi / lo;
}

export async function scale(o: ScaleOptions): Promise<Section> {
  const watch = new LoadWatch();
  const byWorkers: Point[] = [];
  for (const w of o.workers) byWorkers.push(await point(w, 1, o.handoffs));
  const byListeners: Point[] = [];
  for (const l of o.listeners) byListeners.push(l === 1 && byWorkers[0]?.workers === 1 ? byWorkers[0] : await point(1, l, o.handoffs));
  const load = watch.stop();

  const row = (p: Point): (string | number)[] => [
    p.workers,
    p.listeners,
    round(p.bareMs),
    round(p.readyMs),
    round(p.readyMs - p.bareMs),
    round(p.doneMs),
    round(p.exitedMs),
    round(p.supervisorCpuMs),
    round(p.blockMs),
  ];
  const headers = [
    'workers',
    'listeners',
    'bare start-up ms',
    'handoff: ready ms',
    'ready − bare ms',
    'done ms',
    'old exited ms',
    'supervisor CPU ms',
    'supervisor loop blocked, longest ms',
  ];
  const verdicts: Section['verdicts'] = [];
  for (const [what, pts, x] of [
    ['workers', byWorkers, (p: Point) => p.workers],
    ['listeners', byListeners, (p: Point) => p.listeners],
  ] as const) {
    if (pts.length < 3) continue;
    const xs = pts.map(x);
    const done = slopeRatio(
      xs,
      pts.map((p) => p.doneMs),
    );
    const cpu = slopeRatio(
      xs,
      pts.map((p) => p.supervisorCpuMs),
    );
    // The floor under the handoff: starting as many processes bare, on the same cores.
    const bare = slopeRatio(
      xs,
      pts.map((p) => p.bareMs),
    );
    verdicts.push({
      bar: `handoff time grows no faster than linearly with ${what} (${xs.join(', ')})`,
      measured:
        `done: ${round(pts[0]!.doneMs)} → ${round(pts.at(-1)!.doneMs)} ms, slope ratio ${round(done, 2)}; supervisor CPU: ${round(pts[0]!.supervisorCpuMs)} → ${round(pts.at(-1)!.supervisorCpuMs)} ms, slope ratio ${round(cpu, 2)}; ` +
        `bare start-up of as many: ${round(pts[0]!.bareMs)} → ${round(pts.at(-1)!.bareMs)} ms, slope ratio ${round(bare, 2)}`,
      met: done <= 1.5,
    });
  }
  if (o.svgPath) {
    const charts = [
      { title: 'Handoff vs workers (1 listener)', xLabel: 'workers', pts: byWorkers, x: (p: Point) => p.workers },
      { title: 'Handoff vs listeners (1 worker)', xLabel: 'listeners', pts: byListeners, x: (p: Point) => p.listeners },
    ].map((c) => ({
      title: c.title,
      xLabel: c.xLabel,
      yLabel: 'ms',
      series: [
        { name: 'bare start-up', color: '#999', points: c.pts.map((p) => [c.x(p), p.bareMs] as [number, number]) },
        { name: 'handoff done', color: '#1f77b4', points: c.pts.map((p) => [c.x(p), p.doneMs] as [number, number]) },
        { name: 'supervisor CPU', color: '#d62728', points: c.pts.map((p) => [c.x(p), p.supervisorCpuMs] as [number, number]) },
        { name: 'loop blocked', color: '#ff7f0e', points: c.pts.map((p) => [c.x(p), p.blockMs] as [number, number]) },
      ],
    }));
    writeFileSync(o.svgPath, svg(charts));
  }
  const markdown = [
    `\`bench/ports.mjs\` (the example handler on every listener); median of ${o.handoffs} handoffs per point, each \`reload\` waiting until the old generation exited, ` +
      `alternating with the bare start-up of as many processes with as many ports, all spawned at once (until each says it listens). ` +
      `Supervisor CPU: utime + stime of the supervisor over the whole handoff (10 ms resolution). Loop blocked: the longest delay of the supervisor's event loop during the handoff (bench/loopdelay.mjs; it includes time the busy machine did not schedule it). Slope ratio: ms per added worker (listener) in the upper half of the range ÷ in the lower half (≤ 1.5: linear; quadratic growth gives about 5; a rise under 5 % of the first value counts as 5 %).`,
    '',
    table(headers, [...byWorkers, ...byListeners.filter((p) => !byWorkers.includes(p))].map(row)),
    '',
    // The plot sits beside docs/benchmarks.md.
    ...(o.svgPath ? [`![handoff time vs workers and listeners](${basename(o.svgPath)})`] : []),
  ].join('\n');
  return {
    title: 'Scale: handoff time vs workers and listeners',
    command: `node dist/bench/scale.js --workers ${o.workers.join(',')} --listeners ${o.listeners.join(',')} --handoffs ${o.handoffs}${o.svgPath ? ` --svg ${o.svgPath}` : ''}`,
    load,
    markdown,
    verdicts,
  };
}

if (isMain(import.meta.url)) {
  const { values: v } = parseArgs({
    options: {
      workers: { type: 'string', default: '1,2,4,8,16' },
      listeners: { type: 'string', default: '1,10,100' },
      handoffs: { type: 'string', default: '3' },
      svg: { type: 'string' },
    },
  });
  const list = (s: string): number[] => s.split(',').map(Number);
  runMain(() => scale({ workers: list(v.workers!), listeners: list(v.listeners!), handoffs: Number(v.handoffs), svgPath: v.svg ?? null }));
}
