// `npm run build && node dist/bench/cost.js [--seconds 5] [--reloads 5]`
//
// What the supervisor itself costs, read from /proc/<pid>/stat (utime + stime) and
// /proc/<pid>/status (VmRSS, and its anonymous / file-backed parts) while it runs
// examples/hello/v1.js:
//   just started: the first second after generation 1 serves;
//   idle: nothing happens (from 10 s after the start, once V8 has shrunk the heap);
//   under load: clients saturating the app, with a new connection per request, then
//     keep-alive (shared: the supervisor is not in the data path; round-robin: it accepts
//     every connection and passes it on);
//   during reloads: back to back under the same load; CPU per reload.
// RSS is sampled every 100 ms and its maximum kept. Next to it, the floor any Node.js
// process has here: `node -e` idle, measured in the same run. Bars: RSS < 60 MB; CPU under
// load near 0 in shared mode.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { APPS, Baton, cpuShare, isMain, LoadWatch, type ProcSample, procSample, round, runMain, type Section, spawnServer, table } from './harness.js';
import { startLoad } from './load.js';

/** "Near 0": what the supervisor may use of one core while a saturated app serves in shared mode. */
const NEAR_ZERO = 0.01;
const RSS_BAR = 60 * 1024 * 1024;
const MB = 1024 * 1024;
const SETTLE_MS = 10_000;

export interface CostOptions {
  seconds: number;
  reloads: number;
}

interface Phase {
  config: string;
  phase: string;
  cpu: number;
  /** CPU ms per reload, for the reload phase */
  perReload: number | null;
  rssMax: number;
  anon: number;
  file: number;
}

/** RSS split as the kernel counts it: anonymous (the process's own) and file-backed (the node binary, shared). */
function rssParts(pid: number): { anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(s)?.[1] ?? 0) * 1024;
  return { anon: kb('RssAnon'), file: kb('RssFile') };
}

/** Run `during` while sampling the process every 100 ms; CPU share over the whole, RSS at its maximum. */
// biome-ignore lint/suspicious/noConfusingVoidType: phases return a count, or nothing
async function observe(pid: number, config: string, phase: string, during: () => Promise<number | void>): Promise<Phase> {
  let max: ProcSample = procSample(pid);
  let parts = rssParts(pid);
  const first = max;
  const timer = setInterval(() => {
    const s = procSample(pid);
    if (s.rss >= max.rss) [max, parts] = [s, rssParts(pid)];
  }, 100);
  const reloads = await during();
  clearInterval(timer);
  const last = procSample(pid);
  if (last.rss >= max.rss) [max, parts] = [last, rssParts(pid)];
  return { config, phase, cpu: cpuShare(first, last), perReload: reloads ? (last.cpuMs - first.cpuMs) / reloads : null, rssMax: max.rss, ...parts };
}

async function phases(distribution: 'shared' | 'round-robin', o: CostOptions): Promise<Phase[]> {
  const config = `${distribution}, 1 worker`;
  const b = await Baton.start({ argv: ['node', APPS.hello], distribution });
  const ms = o.seconds * 1000;
  try {
    const port = await b.port();
    const out = [await observe(b.pid, config, 'just started', () => sleep(1000))];
    // Some seconds after start-up V8 collects its garbage and hands memory back (~80 ms of
    // CPU, RSS down by several MB, once): the phases below are measured after that.
    await sleep(SETTLE_MS);
    out.push(await observe(b.pid, config, 'idle', () => sleep(ms)));
    const target = { host: '127.0.0.1', port };
    // New connections first: in round-robin mode each one is accepted and passed on by the supervisor.
    const fresh = startLoad({ target, clients: [{ kind: 'fresh', concurrency: 8 }], maxRequests: 50_000_000, maxDurationMs: ms + 1000, sampleLatencies: 0 });
    await sleep(500);
    out.push(await observe(b.pid, config, 'under load, new connections', () => sleep(ms)));
    const failed = (await fresh.stop()).failed;
    const load = startLoad({
      target,
      clients: [{ kind: 'undici', concurrency: 16 }],
      maxRequests: 50_000_000,
      maxDurationMs: 10 * ms + o.reloads * 30_000,
      sampleLatencies: 0,
    });
    await sleep(500);
    out.push(await observe(b.pid, config, 'under load, keep-alive', () => sleep(ms)));
    out.push(
      await observe(b.pid, config, `${o.reloads} reloads under load`, async () => {
        for (let i = 0; i < o.reloads; i++) {
          const r = await b.request({ cmd: 'reload' });
          if (!r.ok) throw new Error(`reload failed: ${r.error}`);
        }
        return o.reloads;
      }),
    );
    const report = await load.stop();
    if (report.failed + failed) console.error(`cost: ${report.failed + failed} failed requests`);
    return out;
  } finally {
    await b.stop();
  }
}

/** The same observation of a Node.js process that does nothing: the floor under any supervisor written in Node. */
async function nodeFloor(label: string, imports: string): Promise<Phase> {
  const c = spawnServer(['--input-type=module', '-e', `${imports} console.log("up"); setTimeout(() => {}, 60_000);`]);
  await c.waitFor(/up/);
  await sleep(1000);
  try {
    return await observe(c.pid, label, 'idle', () => sleep(1000));
  } finally {
    c.proc.kill('SIGKILL');
    await c.exited;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function cost(o: CostOptions): Promise<Section> {
  const watch = new LoadWatch();
  const floors = [await nodeFloor('`node -e` (floor)', '')];
  const all = [...floors, ...(await phases('shared', o)), ...(await phases('round-robin', o))];
  const load = watch.stop();
  const rows = all.map((p) => [
    p.config,
    p.phase,
    `${round(p.cpu * 100, 1)} %`,
    p.perReload === null ? '—' : round(p.perReload),
    round(p.rssMax / MB, 1),
    round(p.anon / MB, 1),
    round(p.file / MB, 1),
  ]);
  const sharedLoad = all.filter((p) => p.config.startsWith('shared') && p.phase.startsWith('under load')).reduce((a, p) => (p.cpu > a.cpu ? p : a));
  const rssVerdict = (distribution: string): Section['verdicts'][number] => {
    const mine = all.filter((p) => p.config.startsWith(distribution));
    const started = mine.find((p) => p.phase === 'just started')!;
    const worst = mine.filter((p) => p !== started).reduce((a, p) => (p.rssMax > a.rssMax ? p : a));
    return {
      bar: `supervisor RSS < 60 MB, ${distribution} (idle, under load, during reloads)`,
      measured:
        `max ${round(worst.rssMax / MB, 1)} MB (${worst.phase}; anonymous ${round(worst.anon / MB, 1)} MB); just started: ${round(started.rssMax / MB, 1)} MB; ` +
        `a bare \`node -e\`: ${round(floors[0]!.rssMax / MB, 1)} MB`,
      met: worst.rssMax < RSS_BAR && started.rssMax < RSS_BAR,
    };
  };
  const verdicts: Section['verdicts'] = [
    rssVerdict('shared'),
    rssVerdict('round-robin'),
    {
      bar: 'supervisor CPU under load near 0 in shared mode (< 1 % of a core)',
      measured: `${round(sharedLoad.cpu * 100, 2)} % of a core (${sharedLoad.phase})`,
      met: sharedLoad.cpu < NEAR_ZERO,
    },
  ];
  const markdown = [
    `\`examples/hello/v1.js\`, 1 worker; just started: 1 s, then ${SETTLE_MS / 1000} s left alone; each further phase ${o.seconds} s (reloads: ${o.reloads} back to back, under the keep-alive load); loads: 8 clients with a new connection per request, 16 keep-alive clients, no pause. ` +
      `CPU: share of one core (utime + stime, 10 ms ticks); RSS: VmRSS, its maximum over the phase, split into anonymous memory (the process's own) and file-backed pages (mostly the node binary, shared with every Node process).`,
    '',
    table(['supervisor', 'phase', 'CPU', 'CPU ms per reload', 'RSS max MB', 'anonymous MB', 'file-backed MB'], rows),
  ].join('\n');
  return {
    title: 'Supervisor cost: CPU and memory',
    command: `node dist/bench/cost.js --seconds ${o.seconds} --reloads ${o.reloads}`,
    load,
    markdown,
    verdicts,
  };
}

if (isMain(import.meta.url)) {
  const { values: v } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, reloads: { type: 'string', default: '5' } } });
  runMain(() => cost({ seconds: Number(v.seconds), reloads: Number(v.reloads) }));
}
