// `npm run build && node dist/bench/reload.js [--reloads 100] [--workers 1] [--undici 8] [--agent 8] [--fresh 4]
//                                              [--rounds 3] [--seconds 4] [--app examples/hello/v1.js]`
//
// Two measurements in one run, on the same app:
//  1. throughput of the app run bare (`node app.js`) vs under baton, alternating rounds so a
//     noisy machine hits both alike; the ratio of medians is the figure;
//  2. the reload tally under mixed keep-alive / new-connection load: failed requests across
//     --reloads handoffs, reload timings, and p99 in the second after each reload vs steady.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { controlRequest } from '../src/control/control.js';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { type ClientKind, type LoadReport, percentile, startLoad, windowStats } from './load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');

const { values: o } = parseArgs({
  options: {
    reloads: { type: 'string', default: '100' },
    workers: { type: 'string', default: '1' },
    undici: { type: 'string', default: '8' },
    agent: { type: 'string', default: '8' },
    fresh: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '4' },
    app: { type: 'string', default: 'examples/hello/v1.js' },
    'skip-throughput': { type: 'boolean', default: false },
  },
});
const APP = join(ROOT, o.app!);
const clients = (['undici', 'agent', 'fresh'] as ClientKind[]).map((kind) => ({ kind, concurrency: Number(o[kind]) })).filter((c) => c.concurrency > 0);

function waitOutput(p: ChildProcess, re: RegExp, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${what}: no ${re} within 20 s:\n${out}`)), 20_000);
    const on = (d: Buffer): void => {
      out += d;
      if (re.test(out)) {
        clearTimeout(t);
        resolve();
      }
    };
    p.stdout!.on('data', on);
    p.stderr!.on('data', on);
    p.once('exit', (c) => reject(new Error(`${what} exited with ${c}:\n${out}`)));
  });
}

async function stopped(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exit = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await exit;
}

async function startBaton(dir: string, extra: string[] = []): Promise<{ proc: ChildProcess; control: string; port: number }> {
  const control = join(dir, `ctl-${Math.random().toString(36).slice(2)}.sock`);
  const proc = spawn(process.execPath, [CLI, 'start', '--listen', '127.0.0.1:0', '--control', control, '--workers', o.workers!, ...extra, '--', 'node', APP], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitOutput(proc, /generation 1 serves/, 'baton');
  const s = (await controlRequest(control, { cmd: 'status' })) as { ok: true; result: StatusReport };
  const a = s.result.listeners[0]!.address;
  return { proc, control, port: Number(a.slice(a.lastIndexOf(':') + 1)) };
}

async function startBare(port: number): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [APP], { cwd: ROOT, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  await waitOutput(proc, /listening/, 'bare app');
  return proc;
}

async function throughput(port: number): Promise<LoadReport> {
  return startLoad({ target: { host: '127.0.0.1', port }, clients, maxRequests: 10_000_000, maxDurationMs: Number(o.seconds) * 1000 }).done;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const lines: string[] = [];
  const say = (s: string): void => {
    console.log(s);
    lines.push(s);
  };
  say(`# baton reload benchmark  (${new Date().toISOString()}, node ${process.version}, workers ${o.workers})`);
  say(`clients: ${clients.map((c) => `${c.kind}×${c.concurrency}`).join(', ')}; app ${o.app}`);

  if (!o['skip-throughput'] && o.workers === '1') {
    const bare: number[] = [];
    const under: number[] = [];
    const p99s: { bare: number[]; baton: number[] } = { bare: [], baton: [] };
    const port = 20000 + Math.floor(Math.random() * 20000);
    for (let round = 0; round < Number(o.rounds); round++) {
      const app = await startBare(port);
      const a = await throughput(port);
      await stopped(app);
      const b = await startBaton(dir);
      const c = await throughput(b.port);
      await stopped(b.proc);
      bare.push(a.rps);
      under.push(c.rps);
      p99s.bare.push(a.latency.p99);
      p99s.baton.push(c.latency.p99);
      say(
        `round ${round + 1}: bare ${Math.round(a.rps)} req/s (p99 ${a.latency.p99.toFixed(1)} ms, ${a.failed} failed) | baton ${Math.round(c.rps)} req/s (p99 ${c.latency.p99.toFixed(1)} ms, ${c.failed} failed)`,
      );
    }
    say(
      `throughput baton/bare: ${(median(under) / median(bare)).toFixed(3)}  (median ${Math.round(median(under))} vs ${Math.round(median(bare))} req/s; p99 ${median(p99s.baton).toFixed(1)} vs ${median(p99s.bare).toFixed(1)} ms)`,
    );
  }

  const b = await startBaton(dir);
  const reloads = Number(o.reloads);
  const load = startLoad({ target: { host: '127.0.0.1', port: b.port }, clients, maxRequests: 50_000_000, maxDurationMs: 60_000 + reloads * 5_000 });
  // One second of steady state first, as the baseline for the reload windows.
  await new Promise((r) => setTimeout(r, 1000));
  const records: HandoffRecord[] = [];
  const at: number[] = [];
  const versions = [join(ROOT, 'examples/hello/v2.js'), APP];
  for (let i = 0; i < reloads; i++) {
    at.push(performance.now() - load.startedAt);
    const reply = await controlRequest(b.control, { cmd: 'reload', argv: ['node', versions[i % 2]!], cwd: ROOT });
    const rec = (reply.ok ? reply.result : (reply as { detail: unknown }).detail) as HandoffRecord;
    records.push(rec);
    if (!reply.ok) say(`reload ${i + 1} failed: ${rec.error}`);
    if ((i + 1) % 10 === 0) {
      const s = load.snapshot();
      console.log(`  ${i + 1}/${reloads} reloads, ${s.ok} ok, ${s.failed} failed`);
    }
  }
  await new Promise((r) => setTimeout(r, 1000));
  const report = await load.stop();
  await controlRequest(b.control, { cmd: 'stop' });
  await new Promise((r) => b.proc.once('exit', r));
  rmSync(dir, { recursive: true, force: true });

  const steady = windowStats(report.samples, 0, at[0]!);
  const windows = at.map((t) => windowStats(report.samples, t, t + 1000));
  const worstP99 = Math.max(...windows.map((w) => w.p99));
  const medianWindowP99 = median(windows.map((w) => w.p99));
  const ready = records
    .filter((r) => r.state === 'done')
    .map((r) => r.readyMs!)
    .sort((x, y) => x - y);
  const total = records
    .filter((r) => r.state === 'done')
    .map((r) => r.totalMs!)
    .sort((x, y) => x - y);
  say('');
  say(`| reloads | done | requests | failed | errors | ready p50 / max (ms) | handoff p50 / max (ms) |`);
  say(`|---|---|---|---|---|---|---|`);
  say(
    `| ${reloads} | ${records.filter((r) => r.state === 'done').length} | ${report.requests} | ${report.failed} | ${JSON.stringify(report.errors)} | ` +
      `${percentile(ready, 50)} / ${ready.at(-1)} | ${percentile(total, 50)} / ${total.at(-1)} |`,
  );
  say('');
  say(
    `per client: ${Object.entries(report.byKind)
      .map(([k, v]) => `${k} ${v.ok} ok / ${v.failed} failed`)
      .join('; ')}`,
  );
  say(
    `latency p99: steady ${steady.p99.toFixed(1)} ms; in the second after a reload: median ${medianWindowP99.toFixed(1)} ms, worst ${worstP99.toFixed(1)} ms`,
  );
  say(`throughput during the reloads: ${Math.round(report.rps)} req/s`);
  process.exitCode = report.failed === 0 ? 0 : 1;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
