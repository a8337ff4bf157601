// `--env` and `--env-file` on start and reload: the new generation sees the new values while the
// old one, still finishing a request, keeps its own; a plain reload keeps what was set, a failed
// one keeps nothing; status names the variables, never their values.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { type Baton, FIXTURES, runCli, startBaton, tempDir } from './helpers/baton.js';
import { cli, configDir } from './helpers/ops.js';

const ops = ['node', join(FIXTURES, 'ops.mjs')];

/** A new connection each time: an answer from the generation that accepts now. */
async function greeting(port: number): Promise<string> {
  const r = await request(`http://127.0.0.1:${port}/`, { reset: true });
  return /greeting=(.*) pid=/.exec(await r.body.text())![1]!;
}

/**
 * `baton reload <args>` while generation `gen` is answering a slow request: returns what the
 * new generation says, and what the old one said when it finished.
 */
async function reloadDuringRequest(b: Baton, port: number, gen: number, args: string[]): Promise<{ now: string; old: string }> {
  const slow = request(`http://127.0.0.1:${port}/slow?ms=1500`, { reset: true }).then((r) => r.body.text());
  const started = (b.out.match(/slow request started/g) ?? []).length;
  await b.waitFor(new RegExp(`(slow request started[^]*){${started + 1}}`));
  const r = await runCli(['reload', '--control', b.control, ...args]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const now = await greeting(port);
  const body = await slow;
  assert.match(body, new RegExp(`^gen=${gen} slow done`), 'the slow request was answered by the old generation');
  return { now, old: /greeting=(.*)$/.exec(body.trim())![1]! };
}

async function status(b: Baton): Promise<{ json: StatusReport; text: string }> {
  const j = await runCli(['status', '--json', '--control', b.control]);
  return { json: JSON.parse(j.stdout) as StatusReport, text: j.stdout + (await runCli(['status', '--control', b.control])).stdout };
}

test('reload --env / --env-file: the new generation sees the new value, the old one keeps its own', async (t) => {
  const dir = tempDir();
  const b = await startBaton({ argv: ops, args: ['--env', 'GREETING=hello-one'] });
  t.after(() => b.dispose());
  const port = await b.port();
  assert.equal(await greeting(port), 'hello-one');

  assert.deepEqual(await reloadDuringRequest(b, port, 1, ['--env', 'GREETING=hello-two']), { now: 'hello-two', old: 'hello-one' });
  const s = await status(b);
  const g2 = s.json.generations.find((g) => g.number === 2)!;
  assert.ok(g2.env.includes('GREETING'), JSON.stringify(g2.env));
  assert.deepEqual(g2.envChanged, ['GREETING']);
  assert.match(s.text, /env: .*GREETING/);
  assert.ok(!s.text.includes('hello-'), 'status shows names, never values');

  // A plain reload keeps what --env set; a failed one keeps nothing of its own --env.
  assert.equal((await runCli(['reload', '--control', b.control])).code, 0);
  assert.equal(await greeting(port), 'hello-two');
  const bad = await runCli(['reload', '--control', b.control, '--env', 'GREETING=lost', '--', 'node', '-e', 'process.exit(1)']);
  assert.equal(bad.code, 1);
  assert.equal((await runCli(['reload', '--control', b.control])).code, 0);
  assert.equal(await greeting(port), 'hello-two');

  // --env-file: quotes and comments as in a systemd or docker env file; --env wins over a file.
  const file = join(dir, 'app.env');
  writeFileSync(file, '# the greeting\nGREETING="from a file"\nOTHER=1\n');
  const g = (await status(b)).json.serving!;
  assert.deepEqual(await reloadDuringRequest(b, port, g, ['--env-file', file]), { now: 'from a file', old: 'hello-two' });
  assert.equal((await runCli(['reload', '--control', b.control, '--env-file', file, '--env', 'GREETING=explicit'])).code, 0);
  assert.equal(await greeting(port), 'explicit');
  const last = (await status(b)).json;
  assert.deepEqual(
    last.generations.find((x) => x.number === last.serving)!.env.filter((n) => n === 'GREETING' || n === 'OTHER'),
    ['GREETING', 'OTHER'],
  );

  // Wrong input is a wrong command line, and starts nothing. (A missing --env-file is refused
  // by Node.js itself before baton runs, exit 9: it reads that flag even after the script.)
  const missing = join(dir, 'missing.env');
  for (const args of [
    ['--env', 'NOEQUALS'],
    ['--env', '1X=2'],
    ['--env-file', missing],
  ]) {
    const r = await runCli(['reload', '--control', b.control, ...args]);
    assert.ok(r.code === 2 || (args[1] === missing && r.code === 9), `${args.join(' ')}: ${r.code} ${r.stderr}`);
    assert.ok(r.stderr.includes(args[1]!), r.stderr);
  }
  assert.equal((await status(b)).json.history.length, last.history.length, 'nothing was started');
});

test("the config file's envFile is read at start and again at each reload, under its env", async (t) => {
  const c = configDir(JSON.stringify({ listen: ['127.0.0.1:0'], command: ops, envFile: ['app.env'], env: { OTHER: 'x' } }));
  const file = join(c.dir, 'app.env');
  writeFileSync(file, 'GREETING=first\n');
  const control = join(c.dir, 'ctl.sock');
  const b = cli(['start', '--control', control], { cwd: c.dir });
  t.after(() => b.kill());
  await b.waitFor(/handoff 1: generation 1 serves/);
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(b.out)![1]);
  assert.equal(await greeting(port), 'first');
  writeFileSync(file, 'GREETING=second\n');
  assert.equal((await runCli(['reload', '--control', control])).code, 0);
  assert.equal(await greeting(port), 'second');
  // An env file that cannot be read fails the reload, with the key, and changes nothing.
  c.write(JSON.stringify({ listen: ['127.0.0.1:0'], command: ops, envFile: 'missing.env' }));
  const bad = await runCli(['reload', '--control', control]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /baton\.config\.json: envFile: missing\.env: no such file/);
  assert.equal(await greeting(port), 'second');
});
