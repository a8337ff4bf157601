// `baton status`: the JSON a tool reads through a reload, the table a person reads, and
// `--watch` redrawing it in place on a real pseudo-terminal.

import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { FIXTURES, runCli, startBaton, tempDir } from './helpers/baton.js';
import { cli, cliInPty, plain } from './helpers/ops.js';

const ops = (...args: string[]): string[] => ['node', join(FIXTURES, 'ops.mjs'), ...args];

async function statusJson(control: string): Promise<StatusReport> {
  const r = await runCli(['status', '--json', '--control', control]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as StatusReport;
}

test('status --json follows a reload through every phase; the text table fits 100 columns', async (t) => {
  const gates = tempDir();
  const open = join(gates, 'open');
  writeFileSync(open, '');
  // A long command line: the table must clip it, not wrap.
  const b = await startBaton({ argv: ops(open, 'x'.repeat(150)), args: ['--ready', 'manual', '--workers', '2'] });
  t.after(() => b.dispose());

  const before = await statusJson(b.control);
  assert.equal(before.state, 'running');
  assert.ok(before.rssBytes > 0);
  const w0 = before.generations[0]!.workers[0]!;
  assert.ok(w0.rssBytes !== null && w0.rssBytes > 1024 * 1024, `worker RSS ${w0.rssBytes}`);
  assert.equal(w0.restarts, 0);

  // Generation 2 waits at its gate: the reload stays in `starting` while we look.
  const held = join(gates, 'held');
  const reload = runCli(['reload', '--control', b.control, '--', ...ops(held, 'x'.repeat(150))]);
  let live: StatusReport | null = null;
  for (let i = 0; i < 40 && !live; i++) {
    const s = await statusJson(b.control);
    if (s.handoff?.state === 'starting') live = s;
  }
  assert.ok(live, 'never saw the handoff in its starting state');
  assert.equal(live.state, 'reloading');
  assert.deepEqual(live.handoff, { id: 2, state: 'starting', from: 1, to: 2 });
  const starting = live.generations.find((g) => g.number === 2)!;
  assert.equal(starting.state, 'starting');
  assert.equal(starting.ready, 0);
  assert.equal(live.serving, 1);

  writeFileSync(held, '');
  const done = await reload;
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stdout, /reloaded: #2 .* done in \d+(\.\d+)? m?s/);

  const after = await statusJson(b.control);
  assert.equal(after.serving, 2);
  const rec = after.history.at(-1)!;
  assert.deepEqual(
    rec.phases.map((p) => p.state),
    ['starting', 'transferring', 'done'],
  );
  assert.ok(rec.readyMs! >= 0 && rec.totalMs! >= rec.readyMs!);

  const table = await runCli(['status', '--control', b.control]);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  for (const l of lines) assert.ok(l.length <= 100, `over 100 columns (${l.length}): ${l}`);
  assert.match(table.stdout, /^GEN +STATE +WORKER +PID +STATE +UPTIME +RESTARTS +RSS +CONNS$/m);
  assert.match(table.stdout, /^2 +serving\* +2\/2 +node .*…$/m, 'generation line: ready/target and the clipped command');
  assert.match(table.stdout, /^ +0 +\d+ +ready +\S+( s| ms)? +0 +\d+\.\d MiB +-$/m, 'worker line with its RSS');
  assert.match(table.stdout, /#2 .* done in .* starting .*, transferring /);
});

test('status --watch redraws in place on a terminal, within its width; on a pipe it prints a table per interval', async (t) => {
  const b = await startBaton({ argv: ops() });
  t.after(() => b.dispose());

  const wide = cliInPty(['status', '--watch', '--interval', '200ms', '--control', b.control], { cols: 120, rows: 50 });
  t.after(() => wide.kill());
  // Three redraws: each starts at the top left and clears what the last one left below it.
  await wide.waitFor(/(\x1b\[H[^]*?\x1b\[J[^]*?){3}/);
  assert.match(wide.out, /\x1b\[\?25l/, 'cursor hidden while watching');
  // A complete frame ends by clearing below it; the first piece is the initial clear screen.
  const frames = wide.out.split('\x1b[H').filter((f) => f.includes('\x1b[J'));
  assert.ok(frames.length >= 2);
  for (const f of frames) {
    const lines = plain(f).split('\n');
    assert.match(lines[0]!, /^every 200 ms: baton status +\d\d:\d\d:\d\d$/);
    assert.ok(
      lines.some((l) => /^GEN +STATE/.test(l)),
      `no table in frame:\n${plain(f)}`,
    );
    for (const l of lines) assert.ok(l.length <= 100, `over 100 columns (${l.length}): ${l}`);
  }

  const narrow = cliInPty(['status', '--watch', '--interval', '200ms', '--control', b.control], { cols: 60, rows: 8 });
  t.after(() => narrow.kill());
  await narrow.waitFor(/(\x1b\[H[^]*?\x1b\[J[^]*?){2}/);
  for (const f of narrow.out.split('\x1b[H').filter((x) => x.includes('\x1b[J'))) {
    const lines = plain(f).split('\n');
    assert.ok(lines.length <= 8, `more lines than the screen has: ${lines.length}`);
    for (const l of lines) assert.ok(l.length <= 60, `wider than the terminal (${l.length}): ${l}`);
  }

  const piped = cli(['status', '--watch', '--interval', '200ms', '--control', b.control]);
  t.after(() => piped.kill());
  await piped.waitFor(/(--- \d\d:\d\d:\d\d\n[^]*?RELOADS[^]*?){2}/);
  assert.doesNotMatch(piped.out, /\x1b\[/, 'no terminal control sequences on a pipe');

  // The supervisor going away is shown, not fatal: the watch keeps trying.
  await b.stop();
  await piped.waitFor(/no baton supervisor is running at .* \(retrying\)/);
  assert.equal(existsSync(b.control), false);
});
