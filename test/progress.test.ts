// `baton reload` progress: plain `[state] message` lines off a terminal, a spinner line on
// one; the old generation's in-flight count while it drains; "done in"; the exit code.

import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import type { Generation } from '../src/supervisor/generation.js';
import { reportDrain } from '../src/supervisor/inflight.js';
import { EXAMPLES, FIXTURES, runCli, startBaton } from './helpers/baton.js';
import { cliInPty, plain } from './helpers/ops.js';

const ops = ['node', join(FIXTURES, 'ops.mjs')];

test('reload progress: each phase, the old generation draining with its requests in flight, done in Y s', async (t) => {
  // Exits rather than stays as a standby (see test/rollback.test.ts for that).
  const b = await startBaton({ argv: ops, args: ['--keep-previous', '0'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const inflight = Array.from({ length: 3 }, () => request(`http://127.0.0.1:${port}/slow?ms=1500`).then((r) => r.body.text()));
  await b.waitFor(/(slow request started[^]*){3}/);
  const r = await runCli(['reload', '--wait-drained', '--control', b.control]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^\[starting\] starting generation 2 with 1 worker\(s\): node .*ops\.mjs$/);
  assert.match(lines[1]!, /^\[transferring\] generation 2 ready in \d+ ms; generation 1 stops accepting$/);
  assert.match(lines[2]!, /^\[done\] generation 2 serves$/);
  assert.match(lines[3]!, /^\[draining\] generation 1 draining, 3 in flight$/);
  // The count goes down as the requests finish, then the old generation exits.
  const counts = [...r.stdout.matchAll(/^\[draining\] generation 1 draining, (\d) in flight$/gm)].map((m) => Number(m[1]));
  assert.deepEqual(counts, [...counts].sort().reverse(), `in-flight counts: ${counts}`);
  assert.match(
    r.stdout,
    /^\[draining\] generation 1 draining, 3 in flight\n(\[draining\] .*\n)*\[done\] generation 1 exited \(connections: http1 3 polite\)$/m,
  );
  assert.match(lines.at(-1)!, /^reloaded: #2 .* done in \d+ ms .*old exited \d+(\.\d+)? m?s {2}connections: http1 3 polite$/);
  for (const body of await Promise.all(inflight)) assert.match(body, /^gen=1 slow done/);

  const bad = await runCli(['reload', '--control', b.control, '--', 'node', join(EXAMPLES, 'hello/broken.js')]);
  assert.equal(bad.code, 1, 'a failed reload exits 1');
  assert.match(bad.stdout, /^\[rolling-back\] generation 3 failed: /m);
  assert.match(bad.stdout, /^\[failed\] generation 2 keeps serving, untouched$/m);
});

test('the first count waits for no timer: a worker that reaches standby with nothing in flight counts at once', async (t) => {
  // The 250 ms bound on the first count is a timer the clock below never moves: only the
  // workers' own messages can end the wait, as they must for a reload to answer at once.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const worker = Object.assign(new EventEmitter(), { hasRuntime: true, connections: null as number | null, state: 'draining' });
  const g = { number: 1, state: 'draining', live: [worker], whenExited: () => new Promise(() => {}) } as unknown as Generation;
  const said: string[] = [];
  let answered = false;
  const report = reportDrain(g, (_state, m) => said.push(m), false).then(() => (answered = true));
  await new Promise(setImmediate);
  assert.equal(answered, false, 'no count yet: it waits');
  // As src/supervisor/worker.ts handles the runtime's 'standby': count 0, then the event.
  worker.connections = 0;
  worker.state = 'standby';
  worker.emit('standby');
  await Promise.race([report, new Promise(setImmediate)]);
  assert.equal(answered, true, 'the standby ended the wait');
  assert.deepEqual(said, ['generation 1 draining, 0 in flight']);
});

test('on a terminal, reload draws a spinner line and marks each finished step', async (t) => {
  const b = await startBaton({ argv: ops });
  t.after(() => b.dispose());
  const ok = cliInPty(['reload', '--control', b.control], { cols: 100, rows: 30 });
  assert.equal(await ok.exited, 0, ok.out);
  // The spinner line is redrawn in place: carriage return, clear line, a braille frame.
  assert.match(ok.out, /\r\x1b\[K[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] (requested|starting)/);
  const screen = plain(ok.out);
  assert.match(screen, /✓ starting generation 2 with 1 worker\(s\)/);
  assert.match(screen, /✓ generation 2 ready in \d+ ms; generation 1 stops accepting/);
  assert.match(screen, /✓ generation 2 serves/);
  assert.match(screen, /reloaded: #2 .* done in /);
  assert.doesNotMatch(screen, /\[starting\]/, 'no plain lines on a terminal');

  const bad = cliInPty(['reload', '--control', b.control, '--', 'node', join(EXAMPLES, 'hello/broken.js')], { cols: 100, rows: 30 });
  assert.equal(await bad.exited, 1, 'script -e passes the exit code on');
  assert.match(plain(bad.out), /✗ generation 3 failed: /);
});
