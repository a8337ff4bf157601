// `npm run build && node dist/bench/warm.js [--rounds 6] [--lead 2500] [--keep-alive 64] [--fresh 8]
//                                          [--candidates cold,warmup,spread,warmup+spread]`
//
// A/B of the ways to keep the second after a reload as fast as any other: the same baton
// service (bench/app.cjs, 2 workers, shared) once per candidate, all started at once and
// reloaded in interleaved slices of one run (bench/reloadwindows.ts), under 64 keep-alive
// clients and 8 with a new connection per request, `GET /?ms=20`:
//   cold              no warm-up, every keep-alive client told to close at once (baton before issue 17)
//   warmup            --warmup / : 50 requests through the app's own server before a worker is ready
//   spread            --drain-spread 1s : keep-alive clients told to close over a second
//   warmup+spread     both
//   warmup200+spread  both, 200 warm-up requests
// Bar (issue 17): p99 in the second after a reload ≤ 1.1× p99 outside reload windows, for
// both client kinds, and nothing failed.
import { parseArgs } from 'node:util';
import { isMain, LoadWatch, median, round, runMain, type Section, table } from './harness.js';
import { AFTER_MS, KINDS, p99, reloadWindows, type TargetResult, WINDOW_ARGS, windowArgs } from './reloadwindows.js';
import { batonTarget, type Target } from './targets.js';

export const CANDIDATES: Record<string, string[]> = {
  cold: ['--warmup', 'off', '--drain-spread', '0'],
  warmup: ['--warmup', '/', '--warmup-requests', '50', '--drain-spread', '0'],
  spread: ['--warmup', 'off', '--drain-spread', '1s'],
  'warmup+spread': ['--warmup', '/', '--warmup-requests', '50', '--drain-spread', '1s'],
  'warmup200+spread': ['--warmup', '/', '--warmup-requests', '200', '--warmup-time', '1s', '--drain-spread', '1s'],
};

export interface WarmOptions {
  rounds: number;
  leadMs: number;
  keepAlive: number;
  fresh: number;
  candidates: string[];
}

export async function warm(o: WarmOptions): Promise<Section> {
  const watch = new LoadWatch();
  const targets: Target[] = [];
  let results: TargetResult[];
  try {
    for (const c of o.candidates) {
      const args = CANDIDATES[c];
      if (!args) throw new Error(`unknown candidate ${c}: ${Object.keys(CANDIDATES).join(', ')}`);
      targets.push(await batonTarget(c, { workers: 2, distribution: 'shared', args, loopDelay: true }));
    }
    results = await reloadWindows(targets, {
      rounds: o.rounds,
      leadMs: o.leadMs,
      keepAlive: o.keepAlive,
      fresh: o.fresh,
      path: '/?ms=20',
      log: (l) => console.error(`warm ${l}`),
    });
  } finally {
    for (const t of targets) await t.stop();
  }
  // The workers wrote their event-loop figures as they exited.
  return section(o, results, watch.stop());
}

/** Longest event-loop blocks around the reloads, median over reloads: supervisor / old workers / new workers. */
function loopCells(r: TargetResult): string {
  const ws = r.loops.map((l) => l.workers());
  return [median(r.loops.map((l) => l.supervisor)), median(ws.map((w) => w.old)), median(ws.map((w) => w.next))].map((x) => round(x, 1)).join(' / ');
}

export function latencyCells(r: TargetResult): string[] {
  return KINDS.flatMap(({ kind }) => {
    const out = p99(r.outside[kind]);
    const after = p99(r.after[kind]);
    return [`${round(after, 1)} / ${round(out, 1)}`, `**${round(after / out, 2)}×**`];
  });
}

function section(o: WarmOptions, results: TargetResult[], load: { before: number; mean: number; max: number }): Section {
  const rows = results.map((r) => [
    r.target.name,
    `${r.failed.undici + r.failed.fresh} of ${r.requests.undici + r.requests.fresh}`,
    ...latencyCells(r),
    KINDS.map(({ kind }) => round(p99(r.during[kind]), 1)).join(' / '),
    `${round(median(r.reloadMs))} (${round(Math.min(...r.reloadMs))}–${round(Math.max(...r.reloadMs))})`,
    round(median(r.firstNewMs)),
    loopCells(r),
  ]);
  const verdicts = results.map((r) => {
    const worst = Math.max(...KINDS.map(({ kind }) => p99(r.after[kind]) / p99(r.outside[kind])));
    const failed = r.failed.undici + r.failed.fresh;
    return {
      bar: `${r.target.name}: p99 in the ${AFTER_MS / 1000} s after a reload ≤ 1.1× p99 outside, both client kinds, 0 failed`,
      measured: `${round(worst, 2)}× (worst kind), ${failed} failed`,
      met: worst <= 1.1 && failed === 0,
    };
  });
  const markdown = [
    `One baton service per candidate (\`bench/app.cjs\`, 2 workers, shared), all running at once; ${o.rounds} rounds, each reloading every candidate once in turn under its own slice of load ` +
      `(${o.keepAlive} keep-alive undici clients and ${o.fresh} with a new connection per request, \`GET /?ms=20\`, the reload ${o.leadMs} ms into the slice). ` +
      `p99 after: requests started in the ${AFTER_MS} ms after the reload was done; outside: the rest of each slice but the reload itself and its first 700 ms. Latencies in ms. ` +
      `Event loop: the longest block (monitorEventLoopDelay, bench/loopdelay.mjs and bench/loopdelay-worker.mjs) from the reload request until ${AFTER_MS} ms after it was done, median over the reloads; ` +
      `on a busy machine it includes time a process was not scheduled at all.`,
    '',
    table(
      [
        'candidate',
        'failed',
        'keep-alive p99 after / outside',
        'ratio',
        'new connection p99 after / outside',
        'ratio',
        'p99 during the reload, keep-alive / new',
        'reload ms, median (min–max)',
        'first answer of the new version, ms',
        'event loop blocked, longest ms: supervisor / old workers / new workers',
      ],
      rows,
    ),
    '',
    Object.entries(CANDIDATES)
      .filter(([c]) => o.candidates.includes(c))
      .map(([c, a]) => `- ${c}: \`${a.join(' ')}\``)
      .join('\n'),
  ].join('\n');
  return {
    title: 'Warm hand-over: candidates side by side',
    command: `node dist/bench/warm.js --rounds ${o.rounds} --lead ${o.leadMs} --keep-alive ${o.keepAlive} --fresh ${o.fresh} --candidates ${o.candidates.join(',')}`,
    load,
    markdown,
    verdicts,
  };
}

if (isMain(import.meta.url)) {
  const { values: v } = parseArgs({ options: { ...WINDOW_ARGS, candidates: { type: 'string', default: Object.keys(CANDIDATES).join(',') } } });
  runMain(() => warm({ ...windowArgs(v), candidates: v.candidates.split(',') }));
}
