// `npm run demo`: baton supervises the bundled example under load, reloads it between two
// versions and once to a version that cannot start, then prints the tally.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '../src/control/control.js';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { mixedClients, startLoad } from './load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');
const app = (v: string): string[] => ['node', join(ROOT, 'examples/hello', `${v}.js`)];
// Two versions back and forth, and one broken deploy in the middle that must roll back.
const PLAN = ['v2', 'v1', 'v2', 'broken', 'v1', 'v2', 'v1', 'v2', 'v1', 'v2'];
const PAUSE_MS = 400; // between reloads, so every version serves real traffic

const dir = mkdtempSync(join(tmpdir(), 'baton-demo-'));
const control = join(dir, 'baton.sock');
const baton = spawn(process.execPath, [CLI, 'start', '--listen', '127.0.0.1:0', '--control', control, '--drain-timeout', '10s', '--', ...app('v1')], {
  cwd: ROOT,
  stdio: ['ignore', 'pipe', 'pipe'],
});
let output = '';
const serving = new Promise<void>((resolve, reject) => {
  const onData = (d: Buffer): void => {
    output += d;
    if (output.includes('generation 1 serves')) resolve();
  };
  baton.stdout.on('data', onData);
  baton.stderr.on('data', onData);
  baton.once('exit', (code) => reject(new Error(`baton exited with ${code}:\n${output}`)));
});

async function ask<T>(req: Parameters<typeof controlRequest>[1]): Promise<{ ok: boolean; result?: T; error?: string; detail?: unknown }> {
  return (await controlRequest(control, req)) as { ok: boolean; result?: T; error?: string; detail?: unknown };
}

function row(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => String(c).padStart(widths[i]!)).join('  ');
}

async function main(): Promise<number> {
  await serving;
  const status = (await ask<StatusReport>({ cmd: 'status' })).result!;
  const address = status.listeners[0]!.address;
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  console.log(`baton (pid ${status.pid}) serves examples/hello/v1.js on http://${address}/`);
  console.log(`load: 8 undici keep-alive + 8 http.Agent keep-alive + 4 new-connection-per-request clients\n`);

  const load = startLoad({
    target: { host: '127.0.0.1', port },
    clients: mixedClients(8, 8, 4),
    maxRequests: 2_000_000,
    maxDurationMs: 120_000,
  });

  const records: HandoffRecord[] = [];
  for (const version of PLAN) {
    await new Promise((r) => setTimeout(r, PAUSE_MS));
    const reply = await ask<HandoffRecord>({ cmd: 'reload', argv: app(version), cwd: ROOT });
    const rec = (reply.ok ? reply.result : reply.detail) as HandoffRecord;
    records.push(rec);
    const line = reply.ok
      ? `reload to ${version.padEnd(6)} -> generation ${rec.to} serves (ready ${rec.readyMs} ms, handoff ${rec.totalMs} ms)`
      : `reload to ${version.padEnd(6)} -> ROLLED BACK: ${rec.error}; generation ${rec.from} serves on`;
    const snap = load.snapshot();
    console.log(`${line}   [${snap.ok} ok, ${snap.failed} failed so far]`);
  }
  await new Promise((r) => setTimeout(r, PAUSE_MS));
  const report = await load.stop();
  const stopped = await ask({ cmd: 'stop' });
  await new Promise((r) => baton.once('exit', r));

  const done = records.filter((r) => r.state === 'done');
  const failed = records.filter((r) => r.state === 'failed');
  const w = [10, 10, 10, 8];
  console.log('\n' + row(['client', 'requests', 'ok', 'failed'], w));
  for (const [kind, k] of Object.entries(report.byKind)) console.log(row([kind, k.requests, k.ok, k.failed], w));
  console.log(row(['total', report.requests, report.ok, report.failed], w));
  if (report.failed) console.log(`errors: ${JSON.stringify(report.errors)}`);
  const ready = done.map((r) => r.readyMs!).sort((a, b) => a - b);
  const total = done.map((r) => r.totalMs!).sort((a, b) => a - b);
  console.log(
    `\nreloads: ${done.length} done, ${failed.length} rolled back (the broken version never served)\n` +
      `new generation ready: median ${ready[ready.length >> 1]} ms, max ${ready.at(-1)} ms; ` +
      `handoff done: median ${total[total.length >> 1]} ms, max ${total.at(-1)} ms\n` +
      `throughput ${Math.round(report.rps)} req/s, latency p50 ${report.latency.p50.toFixed(1)} ms, p99 ${report.latency.p99.toFixed(1)} ms, ` +
      `max ${report.latency.max.toFixed(1)} ms\n` +
      `answers by generation: ${Object.entries(report.bodies)
        .map(([k, v]) => `${k}:${v}`)
        .join(' ')}`,
  );
  const ok = report.failed === 0 && failed.length === 1 && done.length === PLAN.length - 1 && stopped.ok;
  console.log(ok ? '\nFAILED REQUESTS: 0' : `\nFAILED REQUESTS: ${report.failed} (see errors above)`);
  return ok ? 0 : 1;
}

main()
  .then((code) => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(code);
  })
  .catch((e) => {
    console.error(e);
    baton.kill('SIGTERM');
    process.exit(1);
  });
