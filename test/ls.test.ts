// Finding supervisors without --control: `--name` under $RUNTIME_DIRECTORY (systemd's
// RuntimeDirectory=), found from a shell one level down in the base directories; `baton ls`
// lists every supervisor this user can reach.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Listed } from '../src/cli/ls.js';
import { FIXTURES, runCli, tempDir } from './helpers/baton.js';
import { cli, type Proc } from './helpers/ops.js';

const ops = ['node', join(FIXTURES, 'ops.mjs')];

test("baton ls lists the running supervisors; --name finds one that systemd's RuntimeDirectory= placed", async (t) => {
  const xdg = tempDir();
  // A shell of this user: no RUNTIME_DIRECTORY (systemd sets it only for the unit's processes).
  const shell = { XDG_RUNTIME_DIR: xdg, RUNTIME_DIRECTORY: '' };
  // What a user unit with RuntimeDirectory=baton/c gets.
  const unitDir = join(xdg, 'baton', 'c');
  mkdirSync(unitDir, { recursive: true, mode: 0o755 });
  const started: [string, Proc][] = [
    ['a', cli(['start', '--name', 'a', '--listen', '127.0.0.1:0', '--', ...ops], { env: shell })],
    ['b', cli(['start', '--name', 'b', '--listen', '127.0.0.1:0', '--workers', '2', '--', ...ops], { env: shell })],
    ['c', cli(['start', '--name', 'c', '--listen', '127.0.0.1:0', '--', ...ops], { env: { ...shell, RUNTIME_DIRECTORY: unitDir } })],
  ];
  t.after(() => Promise.all(started.map(([, p]) => p.kill())));
  await Promise.all(started.map(([, p]) => p.waitFor(/handoff 1: generation 1 serves/)));
  const expected = { a: join(xdg, 'baton', 'a.sock'), b: join(xdg, 'baton', 'b.sock'), c: join(unitDir, 'c.sock') };

  const json = await runCli(['ls', '--json'], { env: shell });
  assert.equal(json.code, 0, json.stderr);
  // Only ours: other supervisors of this user (in /tmp/baton-<uid>, /run/baton) may be listed too.
  const mine = (JSON.parse(json.stdout) as Listed[]).filter((l) => l.control.startsWith(xdg));
  assert.deepEqual(
    mine.map((l) => [l.name, l.control, l.pid, l.services.length, l.services[0]!.serving, l.services[0]!.ready]),
    started.map(([name, p], i) => [name, expected[name as 'a' | 'b' | 'c'], p.proc.pid, 1, 1, i === 1 ? 2 : 1]),
  );
  const text = await runCli(['ls'], { env: shell });
  for (const [name, path] of Object.entries(expected)) assert.match(text.stdout, new RegExp(`^${name} +\\d+ .*gen 1 .* ${path}$`, 'm'));

  // From the shell, `--name c` finds the unit's socket; inside the unit (ExecReload=), too.
  for (const env of [shell, { ...shell, RUNTIME_DIRECTORY: unitDir }]) {
    const s = await runCli(['status', '--json', '--name', 'c'], { env });
    assert.equal(s.code, 0, s.stdout + s.stderr);
    assert.equal(JSON.parse(s.stdout).control, expected.c);
  }

  // A stopped one is no longer listed.
  assert.equal((await runCli(['stop', '--name', 'b'], { env: shell })).code, 0);
  assert.equal(await started[1]![1].exited, 0);
  const after = (JSON.parse((await runCli(['ls', '--json'], { env: shell })).stdout) as Listed[]).filter((l) => l.control.startsWith(xdg));
  assert.deepEqual(
    after.map((l) => l.name),
    ['a', 'c'],
  );
});
