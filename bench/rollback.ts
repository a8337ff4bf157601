// `npm run build && node dist/bench/rollback.js [--rounds 10] [--apps hello,express] [--workers 1,4]`
//
// How long `baton rollback` takes next to a reload of the same app, in the same run, with no
// client load. For each app and pool size, `rounds` times: reload to a new generation (the
// old one goes to standby: --keep-previous), then roll back to it.
//   reload: from sending the request until its answer and a first 200 from the new
//     generation (new connection, generation read from the body); and the record's done time;
//   rollback: the record's resumeMs (the supervisor's clock, from the request's arrival until
//     every standby worker said it accepts again), its done time (the current generation has
//     stopped accepting too), and from sending the request until a first 200 from the old
//     generation again;
//   standby memory: the RSS of the standby generation's workers, next to the serving one's.
// Bar (issue 16): rollback, request -> standby accepting, p50 < 20 ms.
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { APPS, type AppName, appMatrixArgs, Baton, firstOk, isMain, LoadWatch, median, round, runMain, type Section, table } from './harness.js';

const BAR_MS = 20;

export interface RollbackOptions {
  rounds: number;
  apps: AppName[];
  workers: number[];
}

interface Config {
  app: AppName;
  workers: number;
  reloadServed: number[];
  reloadDone: number[];
  resume: number[];
  rollbackDone: number[];
  rollbackServed: number[];
  /** MiB: the standby generation's workers, and the serving generation's, summed. */
  standbyRss: number[];
  servingRss: number[];
}

function p95(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)] ?? NaN;
}

/** Polls status every 20 ms, at most a minute, until `ok` holds. */
async function until(b: Baton, ok: (s: StatusReport) => boolean, what: string): Promise<StatusReport> {
  for (let i = 0; i < 3000; i++) {
    const s = await b.status();
    if (ok(s)) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what}: not within a minute`);
}

const mib = (s: StatusReport, n: number): number =>
  (s.generations.find((g) => g.number === n)?.workers ?? []).reduce((t, w) => t + (w.rssBytes ?? 0), 0) / (1024 * 1024);

async function measure(app: AppName, workers: number, rounds: number): Promise<Config> {
  const c: Config = { app, workers, reloadServed: [], reloadDone: [], resume: [], rollbackDone: [], rollbackServed: [], standbyRss: [], servingRss: [] };
  const b = await Baton.start({ argv: ['node', APPS[app]], workers, args: ['--keep-previous', '10m'] });
  try {
    const port = await b.port();
    for (let i = 0; i < rounds; i++) {
      const before = (await b.status()).serving!;
      let t0 = performance.now();
      const reload = await b.request({ cmd: 'reload' });
      if (!reload.ok) throw new Error(`reload of ${app} failed: ${reload.error}`);
      const rec = reload.result as HandoffRecord;
      c.reloadServed.push((await firstOk(port, (body) => body.startsWith(`gen=${rec.to} `))) - t0);
      c.reloadDone.push(rec.totalMs!);
      const s = await until(b, (x) => x.standby?.state === 'standby', 'the old generation in standby');
      c.standbyRss.push(mib(s, before));
      c.servingRss.push(mib(s, rec.to));

      t0 = performance.now();
      const back = await b.request({ cmd: 'rollback', reason: 'benchmark' });
      if (!back.ok) throw new Error(`rollback of ${app} failed: ${back.error}`);
      const rb = back.result as HandoffRecord;
      c.rollbackServed.push((await firstOk(port, (body) => body.startsWith(`gen=${before} `))) - t0);
      c.resume.push(rb.resumeMs!);
      c.rollbackDone.push(rb.totalMs!);
      // The next round starts with one generation alive, as this one did.
      await until(b, (x) => x.generations.length === 1, 'the rolled-back generation to exit');
    }
  } finally {
    await b.stop();
  }
  console.error(`rollback ${app} × ${workers}: standby accepting p50 ${round(median(c.resume), 1)} ms, reload to serving ${round(median(c.reloadServed))} ms`);
  return c;
}

export async function rollbackTime(o: RollbackOptions): Promise<Section> {
  const watch = new LoadWatch();
  const configs: Config[] = [];
  for (const app of o.apps) for (const w of o.workers) configs.push(await measure(app, w, o.rounds));
  const load = watch.stop();
  const rows = configs.map((c) => [
    c.app,
    c.workers,
    `**${round(median(c.resume), 1)}** / ${round(p95(c.resume), 1)}`,
    round(median(c.rollbackDone), 1),
    round(median(c.rollbackServed), 1),
    round(median(c.reloadDone)),
    round(median(c.reloadServed)),
    round(median(c.reloadServed) / median(c.rollbackServed), 1),
    round(median(c.standbyRss), 1),
    round(median(c.servingRss), 1),
  ]);
  const verdicts = configs.map((c) => ({
    bar: `${c.app}, ${c.workers} worker(s): rollback, request -> standby accepting, p50 < ${BAR_MS} ms`,
    measured: `p50 ${round(median(c.resume), 1)} ms, p95 ${round(p95(c.resume), 1)} ms (reload: ${round(median(c.reloadDone))} ms)`,
    met: median(c.resume) < BAR_MS,
  }));
  const markdown = [
    `${o.rounds} rounds per row, no client load; each round reloads (the old generation goes to standby) and rolls back to it. ` +
      `Standby accepting and done: from the rollback's record (the supervisor's clock, from the request's arrival). ` +
      `To serving: from sending the request until a first 200 from the generation it names (new connection, polled every 5 ms). ` +
      `Standby RSS: the standby generation's workers summed, next to the serving generation's.`,
    '',
    table(
      [
        'app',
        'workers',
        'rollback: standby accepting p50 / p95 ms',
        'rollback done ms',
        'rollback to serving ms',
        'reload done ms',
        'reload to serving ms',
        'reload / rollback',
        'standby RSS MiB',
        'serving RSS MiB',
      ],
      rows,
    ),
  ].join('\n');
  return {
    title: 'Rollback time next to reload time',
    command: `node dist/bench/rollback.js --rounds ${o.rounds} --apps ${o.apps.join(',')} --workers ${o.workers.join(',')}`,
    load,
    markdown,
    verdicts,
  };
}

if (isMain(import.meta.url)) runMain(() => rollbackTime(appMatrixArgs(10)));
