// --max-memory: a worker whose RSS grows past the limit is replaced as a crashed one would be,
// but with nothing lost: a fresh worker starts in its slot first, and only once it is ready
// does the old one drain. Counted in metrics, shown in status.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { mixedClients, startLoad } from '../bench/load.js';
import { FIXTURES, runCli, startBaton } from './helpers/baton.js';
import { configDir } from './helpers/ops.js';

const grow = ['node', join(FIXTURES, 'grow.mjs')];
const LIMIT_MB = 96;

test('a worker that grows past --max-memory under load is replaced with 0 failed: fresh one first, the old one drains; in status and metrics', {
  timeout: 90_000,
}, async (t) => {
  const b = await startBaton({ argv: grow, args: ['--workers', '2', '--max-memory', `${LIMIT_MB}M`, '--metrics', '127.0.0.1:0'] });
  t.after(() => b.dispose());
  const metrics = `http://127.0.0.1:${/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(await b.waitFor(/metrics on http:\/\/127\.0\.0\.1:\d+\/metrics/))![1]}/metrics`;
  const first = (await b.status()).generations[0]!.workers.map((w) => w.pid);
  const l = startLoad({ target: { host: '127.0.0.1', port: await b.port() }, clients: mixedClients(4, 4, 2), maxRequests: 200_000, maxDurationMs: 40_000 });
  // Each request keeps 256 KiB: a worker passes the limit after a few hundred.
  const replaced = await b.waitFor(/worker 1\.(\d) uses [\d.]+ MiB, over --max-memory 96\.0 MiB: replacing it[^\n]*pid=(\d+)/, 40_000);
  const old = Number(/pid=(\d+)/.exec(replaced)![1]);
  const during = l.snapshot().ok;
  assert.ok(first.includes(old), `${old} is not one of the first workers ${first}`);
  // The old one drains by itself (code 0), after its fresh copy is ready.
  const exited = await b.waitFor(new RegExp(`worker 1\\.\\d exited pid=${old} code=0`), 30_000);
  // The load ran through the whole replacement, from the limit to the old one's exit.
  const through = l.snapshot().ok - during;
  const report = await l.stop();
  assert.equal(report.failed, 0, `failed requests: ${JSON.stringify(report.errors)}\n${b.out}`);
  assert.ok(through >= 20, `too little load during the replacement to prove anything: ${through}`);
  const at = (re: RegExp): number => b.out.search(re);
  assert.ok(at(/replaced for memory; the old one drains/) < b.out.indexOf(exited), 'the old worker exited before its fresh copy was ready');
  assert.doesNotMatch(b.out, /killed at the drain deadline|crash-looping|exited with code 1/);

  const s = await b.status();
  assert.equal(s.maxMemoryBytes, LIMIT_MB * 2 ** 20);
  const g = s.generations[0]!;
  assert.equal(s.serving, 1, 'no reload: the same generation serves');
  assert.ok(g.workers.reduce((n, w) => n + w.replaced, 0) >= 1, JSON.stringify(g.workers));
  assert.equal(
    g.workers.reduce((n, w) => n + w.restarts, 0),
    0,
    'a replacement is not a crash restart',
  );
  assert.ok(!g.workers.some((w) => w.pid === old), 'the old worker still holds its slot');
  const text = await runCli(['status', '--control', b.control]);
  assert.match(text.stdout, /max-memory 96\.0 MiB/);
  assert.match(text.stdout, /\b0, \d+ mem\b/);
  const body = await (await request(metrics)).body.text();
  const count = Number(/^baton_worker_memory_replacements_total (\d+)$/m.exec(body)?.[1] ?? -1);
  assert.ok(count >= 1, `baton_worker_memory_replacements_total: ${count}`);
});

test('--max-memory and the config key maxMemory take a size with a unit; a bare number is refused', async (t) => {
  const bare = await runCli(['start', '--max-memory', '512', '--listen', '127.0.0.1:0', '--', ...grow]);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /bad size '512': use a number with a unit, e.g\. 512M, 1\.5G, 300MiB/);
  const c = configDir(JSON.stringify({ listen: ['127.0.0.1:0'], command: grow, maxMemory: 'lots' }));
  t.after(() => c.write('{}'));
  const file = await runCli(['start'], { cwd: c.dir });
  assert.equal(file.code, 2);
  assert.match(file.stderr, /baton\.config\.json: maxMemory: expected a size such as "512M" or "1G", got "lots"/);
});
