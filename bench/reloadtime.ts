// `npm run build && node dist/bench/reloadtime.js [--rounds 5] [--apps hello,express] [--workers 1,4]`
//
// How long a reload takes next to the app's own start-up. For each app and pool size, in
// alternating rounds with no client load:
//   bare start-up: the app run bare, as many processes as the pool has workers, spawned at
//     once on ports of their own; from spawn to the first 200 of the last one (polled every 5 ms);
//   reload on the control socket: from sending the request until the new generation serves:
//     the answer has come (every new worker ready, the old generation stopped accepting) and
//     then a 200 from the new generation (on a new connection; the generation is read from the
//     body), its first request like the bare start-up's. Polling during the reload would load
//     the old generation while the new one starts. And from the handoff record: request -> new
//     generation ready, -> done, -> old one exited;
//   `baton reload` from the command line: the wall time a user waits, CLI start-up included.
// Bars: reload to the new generation serving ≤ bare start-up + 100 ms + the warm-up the
// workers did (--warmup, read from the supervisor's log); with 4 workers, start-up in
// parallel: 4 serial start-ups would take 4× one; on 2 cores, 2× one is the floor.
import { execFile } from 'node:child_process';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import {
  APPS,
  type AppName,
  appMatrixArgs,
  Baton,
  CLI,
  firstOk,
  freePorts,
  isMain,
  LoadWatch,
  median,
  round,
  runMain,
  type Section,
  spawnBare,
  table,
} from './harness.js';

/** What the bar allows on top of the app's start-up. */
const SLACK_MS = 100;

export interface ReloadTimeOptions {
  rounds: number;
  apps: AppName[];
  workers: number[];
}

interface Config {
  app: AppName;
  workers: number;
  bare: number[];
  records: HandoffRecord[];
  /** request sent -> answered, then a first 200 from the new generation */
  served: number[];
  cli: number[];
  /** The warm-up before ready (--warmup), ms, per reload: what the bar allows on top. */
  warmup: number[];
}

/** `n` bare processes at once: ms from spawn until every one has answered 200. */
async function bareStart(app: AppName, n: number): Promise<number> {
  const ports = await freePorts(n);
  const t0 = performance.now();
  const kids = ports.map((p) => spawnBare(APPS[app], p));
  try {
    const at = await Promise.all(ports.map((p) => firstOk(p)));
    return Math.max(...at) - t0;
  } finally {
    await Promise.all(kids.map((k) => k.end()));
  }
}

/** The handoff's record once its old generation has exited (drainedMs is filled in then). */
async function exited(b: Baton, id: number): Promise<HandoffRecord> {
  for (let i = 0; i < 3000; i++) {
    const rec = (await b.status()).history.find((r) => r.id === id);
    if (rec?.drainedMs != null) return rec;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`the old generation of handoff ${id} did not exit within a minute`);
}

function cliReload(control: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [CLI, 'reload', '--control', control, '--wait-drained', '--quiet'], (e, _out, err) =>
      e ? reject(new Error(`baton reload: ${err}`)) : resolve(performance.now() - t0),
    ),
  );
}

async function measure(app: AppName, workers: number, rounds: number): Promise<Config> {
  const c: Config = { app, workers, bare: [], records: [], served: [], cli: [], warmup: [] };
  const b = await Baton.start({ argv: ['node', APPS[app]], workers });
  try {
    const port = await b.port();
    for (let i = 0; i < rounds; i++) {
      c.bare.push(await bareStart(app, workers));
      const next = `gen=${(await b.status()).serving! + 1} `;
      const t0 = performance.now();
      const reply = await b.request({ cmd: 'reload' });
      if (!reply.ok) throw new Error(`reload of ${app} failed: ${reply.error}`);
      c.served.push((await firstOk(port, (body) => body.startsWith(next))) - t0);
      c.records.push(await exited(b, (reply.result as HandoffRecord).id));
      c.warmup.push(b.warmup((reply.result as HandoffRecord).to)?.ms ?? 0);
      c.cli.push(await cliReload(b.control));
    }
  } finally {
    await b.stop();
  }
  console.error(`reload time ${app} × ${workers}: bare ${round(median(c.bare))} ms, reload to serving ${round(median(c.served))} ms`);
  return c;
}

export async function reloadTime(o: ReloadTimeOptions): Promise<Section> {
  const watch = new LoadWatch();
  const configs: Config[] = [];
  for (const app of o.apps) for (const w of o.workers) configs.push(await measure(app, w, o.rounds));
  const load = watch.stop();

  const signed = (x: number): string => `${x >= 0 ? '+' : ''}${round(x)}`;
  const rows = configs.map((c) => {
    const bare = median(c.bare);
    const served = median(c.served);
    return [
      c.app,
      c.workers,
      round(bare),
      round(served),
      `**${signed(served - bare)}**`,
      round(median(c.warmup)),
      round(median(c.records.map((r) => r.readyMs!))),
      round(median(c.records.map((r) => r.totalMs!))),
      round(median(c.records.map((r) => r.drainedMs!))),
      round(median(c.cli)),
    ];
  });
  const verdicts: Section['verdicts'] = configs.map((c) => {
    const bare = median(c.bare);
    const served = median(c.served);
    const warm = median(c.warmup);
    return {
      bar: `${c.app}, ${c.workers} worker(s): reload to the new generation serving ≤ bare start-up + ${SLACK_MS} ms + the warm-up`,
      measured: `${round(served)} ms vs ${round(bare)} ms (${signed(served - bare)} ms, of which warm-up ${round(warm)} ms)`,
      met: served <= bare + SLACK_MS + warm,
    };
  });
  for (const app of o.apps) {
    const one = configs.find((c) => c.app === app && c.workers === 1);
    for (const many of configs.filter((c) => c.app === app && c.workers > 1)) {
      if (!one) continue;
      const r1 = median(one.records.map((r) => r.readyMs!));
      const rn = median(many.records.map((r) => r.readyMs!));
      // Halfway between the parallel floor on 2 cores (2×) and serial start-ups (n×).
      const limit = (2 + many.workers) / 2;
      verdicts.push({
        bar: `${app}, ${many.workers} workers start in parallel, not ${many.workers}× serial (ready < ${limit}× one worker's)`,
        measured: `ready ${round(rn)} ms = ${round(rn / r1, 2)}× 1 worker's ${round(r1)} ms; ${many.workers} bare at once: ${round(median(many.bare))} ms`,
        met: rn < limit * r1,
      });
    }
  }
  const markdown = [
    `Median of ${o.rounds} rounds, no client load. Bare start-up: spawn to the first 200 (polled every 5 ms), as many processes as workers, all spawned at once. ` +
      `Reload to serving: from sending the reload request until its answer (every new worker ready, the old generation stopped accepting) and then a 200 from the new generation have come. Warm-up: the longest of the new workers' warm-up before they said ready (\`--warmup\`, off by default, so 0 here; the supervisor's log), part of ready. Ready / done / old exited: from the handoff record (the supervisor's clock, from the request's arrival). ` +
      `\`baton reload\`: wall time of \`baton reload --wait-drained\`, CLI start-up included.`,
    '',
    table(
      [
        'app',
        'workers',
        'bare start-up ms',
        'reload to serving ms',
        'difference ms',
        'warm-up ms',
        'ready ms',
        'done ms',
        'old exited ms',
        '`baton reload` ms',
      ],
      rows,
    ),
  ].join('\n');
  return {
    title: 'Reload time vs the app’s own start-up',
    command: `node dist/bench/reloadtime.js --rounds ${o.rounds} --apps ${o.apps.join(',')} --workers ${o.workers.join(',')}`,
    load,
    markdown,
    verdicts,
  };
}

if (isMain(import.meta.url)) runMain(() => reloadTime(appMatrixArgs(5)));
