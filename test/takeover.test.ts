// `baton start --takeover`: an unrelated new baton receives the listening sockets over the
// control socket, serves, and the old supervisor drains and exits; nothing is refused.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { mixedClients, startLoad } from '../bench/load.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { CLI, EXAMPLES, ROOT, runCli, startBaton, tempDir } from './helpers/baton.js';

const v1 = ['node', join(EXAMPLES, 'hello/v1.js')];
const MIXED = mixedClients(4, 4, 2);

function startTakeover(control: string, argv: string[]): { exited: Promise<number | null>; out: () => string; kill(): void } {
  const p = spawn(process.execPath, [CLI, 'start', '--takeover', '--control', control, '--', ...argv], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  return { exited: new Promise((r) => p.once('exit', (c) => r(c))), out: () => out, kill: () => p.kill('SIGTERM') };
}

test('takeover under load: 0 failed, the old supervisor exits, the new one serves the same sockets', async (t) => {
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const before = await b.status();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000 });
  const next = startTakeover(b.control, ['node', join(EXAMPLES, 'hello/v2.js')]);
  t.after(() => next.kill());
  assert.equal(await b.exited, 0, b.out);
  // The old one is gone; the control path now answers from the new one.
  const st = await runCli(['status', '--json', '--control', b.control]);
  assert.equal(st.code, 0, st.stderr + next.out());
  const after = JSON.parse(st.stdout) as StatusReport;
  assert.notEqual(after.pid, before.pid);
  assert.deepEqual(
    after.listeners.map((l) => [l.address, l.inode]),
    before.listeners.map((l) => [l.address, l.inode]),
  );
  const r = await fetch(`http://127.0.0.1:${port}/version`);
  assert.match(await r.text(), /version=2/);
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors));
  assert.match(b.out, /takeover committed/);
});

test('a takeover whose new generation fails leaves the old supervisor serving', async (t) => {
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const pid = (await b.status()).pid;
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000 });
  const next = startTakeover(b.control, ['node', join(EXAMPLES, 'hello/broken.js')]);
  assert.equal(await next.exited, 1);
  assert.match(next.out(), /generation 1 did not start/);
  await b.waitFor(/takeover abandoned/);
  const s = await b.status();
  assert.equal(s.pid, pid);
  assert.equal(s.serving, 1);
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors));
});

test('--takeover with no supervisor running is a clear error', async () => {
  const r = await runCli(['start', '--takeover', '--control', join(tempDir(), 'none.sock'), '--', ...v1]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--takeover: no baton supervisor is running at/);
});
