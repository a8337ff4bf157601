// `npm run build && node dist/bench/threads.js [--rounds 3] [--seconds 3]`
//
// What `--threads` saves or costs beside processes, for the same number of copies of the
// app (test/fixtures/threads.mjs): 2 workers × 1 thread vs 1 × 2, and 4 × 1 vs 1 × 4.
// Per layout: how long a reload takes to have the new generation ready, and the memory of
// the workers after keep-alive load: RSS as `ps` shows it, and private memory (USS:
// Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup), which is what a copy really
// adds, since the Node binary's pages are shared by every process. Throughput side by side
// is in overhead.ts (`--only threads`). Medians over the rounds.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import { Baton, isMain, LoadWatch, median, procSample, ROOT, round, runMain, type Section, table } from './harness.js';
import { startLoad } from './load.js';

const APP = join(ROOT, 'test/fixtures/threads.mjs');
const LAYOUTS: [workers: number, threads: number][] = [
  [2, 1],
  [1, 2],
  [4, 1],
  [1, 4],
];
const RELOADS = 3;
const MB = 1024 * 1024;

interface Sample {
  readyMs: number;
  rss: number;
  uss: number;
  rps: number;
}

/** Private memory of a process: what it alone keeps resident. */
function uss(pid: number): number {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return [...rollup.matchAll(/^Private_(?:Clean|Dirty):\s+(\d+) kB$/gm)].reduce((n, m) => n + Number(m[1]) * 1024, 0);
}

async function measure(workers: number, threads: number, seconds: number): Promise<Sample> {
  const b = await Baton.start({ argv: ['node', APP], workers, args: ['--threads', String(threads)] });
  try {
    const ready: number[] = [];
    for (let i = 0; i < RELOADS; i++) {
      const r = await b.request({ cmd: 'reload' });
      if (!r.ok) throw new Error(r.error);
      ready.push((r.result as HandoffRecord).readyMs ?? NaN);
    }
    const port = await b.port();
    const load = await startLoad({
      target: { host: '127.0.0.1', port },
      clients: [{ kind: 'undici', concurrency: 32 }],
      maxRequests: 50_000_000,
      maxDurationMs: seconds * 1000,
      sampleLatencies: 0,
    }).done;
    if (load.failed) throw new Error(`${load.failed} requests failed: ${JSON.stringify(load.errors)}`);
    const s = await b.status();
    const pids = s.generations.find((g) => g.number === s.serving)!.workers.map((w) => w.pid);
    return {
      readyMs: median(ready),
      rss: pids.reduce((n, p) => n + procSample(p).rss, 0),
      uss: pids.reduce((n, p) => n + uss(p), 0),
      rps: load.rps,
    };
  } finally {
    await b.stop();
  }
}

export async function threadsBench(o: { rounds: number; seconds: number }): Promise<Section> {
  const watch = new LoadWatch();
  const runs = LAYOUTS.map(() => [] as Sample[]);
  for (let r = 0; r < o.rounds; r++) {
    for (const [i, [w, t]] of LAYOUTS.entries()) {
      const s = await measure(w, t, o.seconds);
      runs[i]!.push(s);
      console.error(
        `round ${r + 1}: ${w} × ${t}: reload ready ${Math.round(s.readyMs)} ms, RSS ${round(s.rss / MB, 1)} MiB, USS ${round(s.uss / MB, 1)} MiB, ${Math.round(s.rps)} req/s`,
      );
    }
  }
  const rows = LAYOUTS.map(([w, t], i) => {
    const m = (f: (s: Sample) => number): number => median(runs[i]!.map(f));
    return [
      `${w} worker${w > 1 ? 's' : ''} × ${t} thread${t > 1 ? 's' : ''}`,
      w * t,
      round(m((s) => s.readyMs)),
      round(m((s) => s.rss) / MB, 1),
      round(m((s) => s.uss) / MB, 1),
      round(m((s) => s.uss) / MB / (w * t), 1),
      Math.round(m((s) => s.rps)),
    ];
  });
  const markdown = [
    `${o.rounds} rounds; per layout ${RELOADS} reloads, then ${o.seconds} s of keep-alive load (32 clients), memory read right after it; \`test/fixtures/threads.mjs\`.`,
    '',
    table(['layout', 'copies', 'reload: new generation ready, ms', 'RSS of the workers, MiB', 'private (USS), MiB', 'USS per copy, MiB', 'req/s'], rows),
  ].join('\n');
  return {
    title: '--threads beside processes: reload time and memory',
    command: `node dist/bench/threads.js --rounds ${o.rounds} --seconds ${o.seconds}`,
    load: watch.stop(),
    markdown,
    verdicts: [],
  };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '3' } } });
  runMain(() => threadsBench({ rounds: Number(values.rounds), seconds: Number(values.seconds) }));
}
