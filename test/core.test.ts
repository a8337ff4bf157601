// The core promise, end to end: a real supervisor, real workers, real sockets, real clients.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { mixedClients, startLoad } from '../bench/load.js';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import { EXAMPLES, FIXTURES, runCli, startBaton, tempDir } from './helpers/baton.js';
import { assertNothingLost, assertReloadsCrossed } from './helpers/reloads.js';

const v1 = ['node', join(EXAMPLES, 'hello/v1.js')];
const v2 = ['node', join(EXAMPLES, 'hello/v2.js')];
const broken = ['node', join(EXAMPLES, 'hello/broken.js')];

const MIXED = mixedClients(6, 6, 4);

test('20 reloads under keep-alive and new-connection load lose nothing', async (t) => {
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 400_000, maxDurationMs: 90_000 });
  const records: HandoffRecord[] = [];
  for (let i = 0; i < 20; i++) {
    const reply = await b.reload(i % 2 ? v1 : v2);
    assert.ok(reply.ok, `reload ${i + 1} failed: ${JSON.stringify(reply)}`);
    records.push(reply.result as HandoffRecord);
  }
  assertReloadsCrossed(await load.stop(), records, 1000);
  const s = await b.status();
  assert.equal(s.serving, 21);
  assert.equal(await b.stop(), 0);
});

test('a new version that exits at start-up fails the reload; the old one serves on, untouched', async (t) => {
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const pid = (await b.status()).generations[0]!.workers[0]!.pid;
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 100_000, maxDurationMs: 30_000 });
  const reply = await b.reload(broken);
  assert.equal(reply.ok, false);
  assert.ok(!reply.ok);
  assert.match(reply.error, /worker 0 of generation 2 exited with code 1 before it was ready/);
  const rec = reply.detail as HandoffRecord;
  assert.equal(rec.state, 'failed');
  assert.ok(
    rec.output.some((l) => l.includes('config file missing')),
    `output: ${rec.output.join('\n')}`,
  );
  const mid = await b.status();
  assert.equal(mid.serving, 1);
  assert.equal(mid.generations.find((g) => g.number === 1)!.workers[0]!.pid, pid, 'the old worker must be untouched');
  // A plain reload afterwards runs the serving version again, not the broken one.
  const again = await b.reload();
  assert.ok(again.ok);
  assert.deepEqual((again.result as HandoffRecord).argv, v1);
  const report = await load.stop();
  assertNothingLost(report);
  const after = await b.status();
  assert.equal(after.serving, 3);
  assert.deepEqual(
    after.history.map((r) => r.state),
    ['done', 'failed', 'done'],
  );
});

test('a new version that never becomes ready fails at --ready-timeout; the old worker is untouched', async (t) => {
  // --warmup off: generation 1 must be ready well within the 1 s, on a busy machine too.
  const b = await startBaton({ argv: v1, args: ['--ready-timeout', '1s', '--warmup', 'off'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const pid = (await b.status()).generations[0]!.workers[0]!.pid;
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 100_000, maxDurationMs: 30_000 });
  const reply = await b.reload(['node', join(FIXTURES, 'never-ready.mjs')]);
  assert.ok(!reply.ok);
  assert.match(reply.error, /not ready after 1000 ms/);
  const report = await load.stop();
  assertNothingLost(report);
  const s = await b.status();
  assert.equal(s.serving, 1);
  assert.equal(s.generations.find((g) => g.number === 1)!.workers[0]!.pid, pid);
});

test('requests in flight when a reload starts complete in full from the old version', async (t) => {
  const b = await startBaton({ argv: ['node', join(FIXTURES, 'inflight.mjs')] });
  t.after(() => b.dispose());
  const port = await b.port();
  const inflight = Array.from({ length: 10 }, () =>
    request(`http://127.0.0.1:${port}/slow?ms=2000`).then(async (r) => ({ status: r.statusCode, body: await r.body.text(), conn: r.headers.connection })),
  );
  await b.waitFor(/(slow request started[\s\S]*){10}/);
  const t0 = Date.now();
  const reply = await b.reload(['node', join(FIXTURES, 'inflight.mjs')]);
  assert.ok(reply.ok);
  assert.ok(Date.now() - t0 < 1900, 'the reload waited for the old requests instead of returning once gen 2 served');
  const results = await Promise.all(inflight);
  for (const r of results) {
    assert.equal(r.status, 200);
    assert.match(r.body, /^gen=1 slow done/);
    assert.equal(r.conn, 'close');
  }
});

test('a worker that ignores drain is killed at the drain deadline, and the cut is reported', async (t) => {
  const b = await startBaton({ argv: ['node', join(FIXTURES, 'blocking.mjs')], args: ['--drain-timeout', '1s'] });
  t.after(() => b.dispose());
  const port = await b.port();
  // This request blocks the old worker's event loop: it cannot even hear the drain.
  const hung = request(`http://127.0.0.1:${port}/block`).then(
    () => 'answered',
    (e: Error & { code?: string }) => e.code ?? e.message,
  );
  await b.waitFor(/blocking the event loop/);
  const reply = await b.reload(['node', join(FIXTURES, 'blocking.mjs')], 'drained');
  assert.ok(reply.ok, JSON.stringify(reply));
  const rec = reply.result as HandoffRecord;
  assert.equal(rec.cut, 1);
  assert.ok(rec.drainedMs! >= 1000 && rec.drainedMs! < 5000, `old generation exited after ${rec.drainedMs} ms`);
  assert.notEqual(await hung, 'answered');
  await b.waitFor(/worker 1\.0 killed at the drain deadline/);
  const s = await b.status();
  assert.equal(s.history.at(-1)!.cut, 1);
});

test('unix socket listener: served, reloaded under load with nothing lost, unlinked on stop', async (t) => {
  const sock = join(tempDir(), 'app.sock');
  const b = await startBaton({ argv: v1, listen: [`unix:${sock}`] });
  t.after(() => b.dispose());
  const load = startLoad({ target: { socketPath: sock }, clients: MIXED, maxRequests: 100_000, maxDurationMs: 30_000 });
  for (let i = 0; i < 3; i++) assert.ok((await b.reload(i % 2 ? v1 : v2)).ok);
  assertNothingLost(await load.stop());
  assert.equal(await b.stop(), 0);
  assert.equal(existsSync(sock), false, 'the socket file should be removed on stop');
});

test('baton reload (CLI) shows progress, names the program at reload time, and exits 0; failure exits 1 with the output', async (t) => {
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const ok = await runCli(['reload', '--control', b.control, '--', 'node', 'examples/hello/v2.js']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /\[transferring\] generation 2 ready in \d+ ms; generation 1 stops accepting/);
  assert.match(ok.stdout, /reloaded: #2 .* done/);
  const port = await b.port();
  const r = await request(`http://127.0.0.1:${port}/`);
  assert.match(await r.body.text(), /^gen=2 v2/);
  const bad = await runCli(['reload', '--control', b.control, '--', 'node', 'examples/hello/broken.js']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /reload failed: worker 0 of generation 3 exited with code 1 before it was ready/);
  assert.match(bad.stderr, /config file missing/);
  const status = await runCli(['status', '--control', b.control]);
  assert.equal(status.code, 0);
  for (const line of status.stdout.split('\n')) assert.ok(line.length <= 100, `status line over 100 columns: ${line}`);
  assert.match(status.stdout, /serving\*/);
  const drained = await runCli(['reload', '--wait-drained', '--control', b.control]);
  assert.equal(drained.code, 0, drained.stderr);
  // With --keep-previous (on by default) the old generation ends in standby rather than exit.
  assert.match(drained.stdout, /generation 2 (exited|finished its work; standby)/);
});

test('SIGHUP reloads; SIGTERM stops gracefully and lets a request in flight finish', async (t) => {
  const b = await startBaton({ argv: ['node', join(FIXTURES, 'inflight.mjs')] });
  t.after(() => b.dispose());
  const port = await b.port();
  b.proc.kill('SIGHUP');
  await b.waitFor(/handoff 2: generation 2 serves/);
  const slow = request(`http://127.0.0.1:${port}/slow?ms=1000`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
  await b.waitFor(/slow request started/);
  b.proc.kill('SIGTERM');
  const r = await slow;
  assert.equal(r.status, 200);
  assert.match(r.body, /^gen=2 slow done/);
  assert.equal(await b.exited, 0);
});

test('bad input: a clear one-line error, a non-zero exit, and nothing changed', async (t) => {
  const unknown = await runCli(['start', '--bogus', '--', 'node', 'x.js']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown option '--bogus'/);
  const badListen = await runCli(['start', '--listen', 'nowhere:80', '--', 'node', 'x.js']);
  assert.equal(badListen.code, 2);
  assert.match(badListen.stderr, /'nowhere' is not an IP address/);
  const noCmd = await runCli(['start', '--listen', '127.0.0.1:0']);
  assert.equal(noCmd.code, 2);
  assert.match(noCmd.stderr, /missing command/);
  const badDuration = await runCli(['start', '--listen', '0', '--drain-timeout', '30', '--', 'node', 'x.js']);
  assert.equal(badDuration.code, 2);
  assert.match(badDuration.stderr, /bad duration '30'/);
  const nobody = await runCli(['reload', '--control', join(tempDir(), 'none.sock')]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /no baton supervisor is running at/);

  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const taken = await runCli(['start', '--control', join(b.dir, 'other.sock'), '--listen', `127.0.0.1:${port}`, '--', ...v1]);
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /cannot listen on 127\.0\.0\.1:\d+: address already in use \(EADDRINUSE\)/);
  assert.equal(taken.stderr.trim().split('\n').length, 1, taken.stderr);
  const twice = await runCli(['start', '--control', b.control, '--listen', '127.0.0.1:0', '--', ...v1]);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /already running/);

  // Malformed control messages get an error reply; the supervisor keeps serving.
  const replies = await new Promise<string[]>((resolve) => {
    const s = createConnection(b.control);
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      const lines = buf.trim().split('\n');
      if (lines.length === 4) {
        s.end();
        resolve(lines);
      }
    });
    s.write('this is not json\n{"cmd":"explode"}\n{"cmd":"reload","argv":[]}\n{"cmd":"status","extra":1}\n');
  });
  assert.match(replies[0]!, /malformed request: not JSON/);
  assert.match(replies[1]!, /invalid request/);
  assert.match(replies[2]!, /invalid request at 'argv'/);
  assert.match(replies[3]!, /invalid request/);
  const s = await b.status();
  assert.equal(s.serving, 1);
  assert.equal(s.history.length, 1);
  const r = await request(`http://127.0.0.1:${port}/`);
  assert.equal(r.statusCode, 200);
  await r.body.text();
});
