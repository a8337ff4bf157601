// Logs: a failed reload shows exactly the failing worker's last 20 lines; `baton logs` tails
// the supervisor's ring (by generation, and following); `--log-format json` is pino JSON.

import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import type { LogEntry } from '../src/common/protocol.js';
import { FIXTURES, runCli, startBaton, tempDir } from './helpers/baton.js';
import { cli } from './helpers/ops.js';

const ops = ['node', join(FIXTURES, 'ops.mjs')];

/** On a new connection each time: a kept-alive one may still reach the old generation while it drains. */
async function hit(port: number, path: string): Promise<void> {
  const r = await request(`http://127.0.0.1:${port}${path}`, { reset: true, dispatcher: new Agent() });
  assert.equal(r.statusCode, 200);
  await r.body.text();
}

test('a failed reload prints exactly the last 20 lines of the failing worker', async (t) => {
  const b = await startBaton({ argv: ops });
  t.after(() => b.dispose());
  const r = await runCli(['reload', '--control', b.control, '--', 'node', join(FIXTURES, 'thirty-lines.mjs')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /reload failed: worker 0 of generation 2 exited with code 1 before it was ready/);
  const lines = r.stderr.split('\n');
  const from = lines.indexOf('last output of the failing worker:');
  assert.ok(from >= 0, r.stderr);
  const shown = lines.slice(from + 1).filter((l) => l.startsWith('  | '));
  assert.deepEqual(
    shown,
    Array.from({ length: 20 }, (_, i) => `  | line ${i + 11} of 30`),
  );
  // The supervisor's own log says the same, and the old generation serves on.
  await b.waitFor(/error:\s+\| line 30 of 30/);
  assert.doesNotMatch(b.out, /error:\s+\| line 10 of 30\n/);
  assert.equal((await b.status()).serving, 1);
});

test('baton logs tails the ring, by generation, and -f follows until the client leaves', async (t) => {
  const b = await startBaton({ argv: ops });
  t.after(() => b.dispose());
  const port = await b.port();
  await hit(port, '/log?m=first');
  assert.ok((await b.reload()).ok);
  await hit(port, '/log?m=second');
  await b.waitFor(/\[2\.0\] request second/);

  const all = await runCli(['logs', '--control', b.control]);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /^\d\d:\d\d:\d\d\.\d{3} \[1\.0\] request first$/m);
  assert.match(all.stdout, /^\d\d:\d\d:\d\d\.\d{3} baton: handoff 2: generation 2 serves state=done$/m);

  const gen2 = await runCli(['logs', '--gen', '2', '--json', '--control', b.control]);
  const entries = gen2.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as LogEntry);
  assert.ok(entries.length >= 2);
  for (const e of entries) assert.equal(e.gen, 2);
  assert.deepEqual(
    entries.map((e) => e.msg),
    ['ops listening gen=2', 'request second'],
  );
  assert.deepEqual({ worker: entries[1]!.worker, stream: entries[1]!.stream }, { worker: 0, stream: 'stdout' });

  const two = await runCli(['logs', '-n', '2', '--control', b.control]);
  assert.equal(two.stdout.trim().split('\n').length, 2);

  const follow = cli(['logs', '-f', '-n', '1', '--control', b.control]);
  t.after(() => follow.kill());
  // The last line comes with the subscription: from then on nothing logged is missed.
  await follow.waitFor(/\n/);
  assert.equal(follow.out.split('\n').length, 2, '-n 1: one earlier line');
  // Lines are followed as they are logged, worker output and baton events alike.
  await hit(port, '/log?m=third');
  await follow.waitFor(/\[2\.0\] request third/);
  assert.ok((await b.reload()).ok);
  await follow.waitFor(/baton: handoff 3: generation 3 serves/);
  await follow.kill();
  // The supervisor is unaffected by the follower leaving.
  await hit(port, '/log?m=fourth');
  await b.waitFor(/\[3\.0\] request fourth/);
  assert.equal((await b.status()).serving, 3);
});

test('--log-format json: one pino object per line, worker lines with gen, worker, stream and msg', async (t) => {
  const b = await startBaton({ argv: ops, args: ['--log-format', 'json'] });
  t.after(() => b.dispose());
  await hit(await b.port(), '/log?m=json');
  await b.waitFor(/"msg":"request json"/);
  assert.ok((await b.stop()) === 0);
  const records = b.out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const r of records) {
    assert.equal(typeof r.time, 'number');
    assert.match(String(r.level), /^(info|warn|error)$/);
    assert.equal(typeof r.msg, 'string');
  }
  const line = records.find((r) => r.msg === 'request json')!;
  assert.deepEqual({ gen: line.gen, worker: line.worker, stream: line.stream, level: line.level }, { gen: 1, worker: 0, stream: 'stdout', level: 'info' });
  const listening = records.find((r) => String(r.msg).startsWith('listening on 127.0.0.1:'))!;
  assert.equal(listening.name, 'tcp-' + String(listening.msg).split(':').at(-1));
  assert.ok(records.some((r) => r.msg === 'handoff 1: generation 1 serves' && r.state === 'done'));
});

test('text log lines start with an ISO 8601 time, except on the stream journald reads (JOURNAL_STREAM)', async (t) => {
  // Without journald: every line of baton's and of the workers', on both streams.
  const b = await startBaton({ argv: ops });
  t.after(() => b.dispose());
  // The worker's own line comes on its stdout pipe, after or before baton's 'serves' line.
  await b.waitFor(/ \[1\.0\] ops listening gen=1$/m);
  const lines = b.out.split('\n').filter(Boolean);
  assert.ok(lines.some((l) => / \[1\.0\] ops listening gen=1$/.test(l)) && lines.some((l) => / baton: handoff 1: /.test(l)), b.out);
  for (const l of lines) {
    const at = Date.parse(l.slice(0, 24));
    assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /, l);
    assert.ok(Math.abs(Date.now() - at) < 60_000, l);
  }

  // stdout is "the journal": a file whose device:inode JOURNAL_STREAM names; stderr is not.
  const dir = tempDir();
  const journal = join(dir, 'journal');
  const fd = openSync(journal, 'w');
  const st = fstatSync(fd);
  const j = cli(['start', '--control', join(dir, 'ctl.sock'), '--listen', '127.0.0.1:0', '--', ...ops], {
    env: { JOURNAL_STREAM: `${st.dev}:${st.ino}` },
    stdout: fd,
  });
  closeSync(fd);
  t.after(() => j.kill());
  await j.waitFor(/handoff 1: generation 1 serves/);
  assert.equal((await runCli(['stop', '--control', join(dir, 'ctl.sock')])).code, 0);
  assert.equal(await j.exited, 0);
  assert.match(readFileSync(journal, 'utf8'), /^\[1\.0\] ops listening gen=1$/m, 'no time on the journal stream');
  assert.match(j.out, /^\d{4}-\d\d-\d\dT[\d:.]+Z baton: handoff 1: generation 1 serves/m, 'stderr, not the journal, is stamped');
});
