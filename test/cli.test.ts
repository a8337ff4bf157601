// The command line as scripts use it: `--version`, `--json` on every command that reports a
// result (one JSON document on stdout, errors too), and options before or after the service
// name meaning the same.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FIXTURES, ROOT, runCli, startBaton } from './helpers/baton.js';

const ops = (...args: string[]): string[] => ['node', join(FIXTURES, 'ops.mjs'), ...args];
const PACKAGE_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The whole of stdout is one JSON document (JSON.parse refuses anything around it). */
// biome-ignore lint/suspicious/noExplicitAny: the JSON documents are checked field by field
function doc(stdout: string): any {
  return JSON.parse(stdout);
}

test('baton --version and -V print the package version; status shows it, in JSON and in text', async (t) => {
  for (const flag of ['--version', '-V']) {
    const r = await runCli([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), PACKAGE_VERSION);
  }
  const b = await startBaton({ argv: ops() });
  t.after(() => b.dispose());
  const json = await runCli(['status', '--json', '--control', b.control]);
  assert.equal(doc(json.stdout).version, PACKAGE_VERSION);
  const text = await runCli(['status', '--control', b.control]);
  assert.match(text.stdout.split('\n')[0]!, new RegExp(`  baton ${PACKAGE_VERSION.replace(/\./g, '\\.')}  `));
});

test("--json: every command that reports a result prints the protocol's record as one document, errors too", async (t) => {
  // No standby: an upgrade refuses while one is kept (docs/rollback.md), and this runs one.
  const b = await startBaton({ argv: ops(), args: ['--keep-previous', '0'] });
  t.after(() => b.dispose());
  const ctl = ['--control', b.control];

  const reload = await runCli(['reload', '--json', ...ctl]);
  assert.equal(reload.code, 0, reload.stderr);
  const rec = doc(reload.stdout);
  assert.deepEqual([rec.state, rec.from, rec.to, rec.trigger], ['done', 1, 2, 'reload']);
  assert.ok(rec.phases.length >= 2 && typeof rec.totalMs === 'number', reload.stdout);

  // A failed reload: exit 1, the error and the failing handoff's record, still one document on stdout.
  const bad = await runCli(['reload', '--json', ...ctl, '--', 'node', '-e', 'console.log("boom"); process.exit(3)']);
  assert.equal(bad.code, 1);
  const err = doc(bad.stdout);
  assert.match(err.error, /^reload failed: .*exited with code 3/);
  assert.equal(err.detail.state, 'failed');
  assert.ok(err.detail.output.includes('boom'), bad.stdout);

  const scale = await runCli(['scale', '--json', ...ctl, '2']);
  assert.equal(scale.code, 0, scale.stderr);
  assert.deepEqual(doc(scale.stdout), { target: 2, ready: 2, generation: 2 });

  const status = doc((await runCli(['status', '--json', ...ctl])).stdout);
  assert.equal(status.serving, 2);
  assert.equal(status.history.at(-1).state, 'failed');

  const logs = await runCli(['logs', '--json', '-n', '3', ...ctl]);
  assert.equal(logs.code, 0, logs.stderr);
  const lines = logs.stdout.trim().split('\n');
  assert.equal(lines.length, 3);
  for (const l of lines) assert.equal(typeof JSON.parse(l).msg, 'string');

  const upgrade = await runCli(['upgrade', '--json', ...ctl]);
  assert.equal(upgrade.code, 0, upgrade.stderr);
  const up = doc(upgrade.stdout);
  assert.deepEqual([up.pid, up.version, up.adopted], [b.proc.pid, PACKAGE_VERSION, 2]);

  const stop = await runCli(['stop', '--json', ...ctl]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.deepEqual(doc(stop.stdout), { stopped: true });
  assert.equal(await b.exited, 0);

  // Nobody answers now: every command says so in JSON, exit 1; a wrong command line too, exit 2.
  for (const cmd of [['reload'], ['status'], ['scale', '3'], ['stop'], ['upgrade'], ['logs']]) {
    const r = await runCli([...cmd, '--json', ...ctl]);
    assert.equal(r.code, 1, `${cmd[0]}: ${r.stderr}`);
    assert.match(doc(r.stdout).error, /^no baton supervisor is running at /, cmd[0]);
  }
  const usage = await runCli(['scale', '--json', '--bogus', ...ctl]);
  assert.equal(usage.code, 2);
  assert.deepEqual(doc(usage.stdout), { error: "unknown option '--bogus'" });
});

test('options before or after the service name mean the same, for every command that takes one', async (t) => {
  const b = await startBaton({ argv: ops() });
  t.after(() => b.dispose());
  // A single service answers to its name (here the default, baton).
  const forms = (cmd: string, tail: string[], options: string[]): string[][] => [
    [cmd, 'baton', ...options, ...tail],
    [cmd, ...options, 'baton', ...tail],
  ];
  const ctl = ['--control', b.control];
  let gen = 1;
  for (const args of forms('reload', ['--', ...ops('after')], [...ctl, '--json'])) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}\n${r.stdout}${r.stderr}`);
    const rec = doc(r.stdout);
    assert.deepEqual([rec.to, rec.argv.at(-1)], [++gen, 'after'], args.join(' '));
  }
  for (const [i, args] of [...forms('scale', ['2'], [...ctl, '--json']), ...forms('scale', ['3'], [...ctl, '--json'])].entries()) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
    assert.equal(doc(r.stdout).target, i < 2 ? 2 : 3, args.join(' '));
  }
  for (const args of forms('status', [], [...ctl, '--json'])) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
    assert.deepEqual([doc(r.stdout).name, doc(r.stdout).workers], ['baton', 3]);
  }
  for (const args of forms('logs', [], [...ctl, '--gen', '3', '-n', '1', '--json'])) {
    const r = await runCli(args);
    assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
    assert.equal(JSON.parse(r.stdout).gen, 3, args.join(' '));
  }
  // A service this baton does not run is refused in both places alike.
  for (const args of forms('status', [], ctl.concat('--json')).map((a) => a.map((x) => (x === 'baton' ? 'other' : x)))) {
    const r = await runCli(args);
    assert.equal(r.code, 1);
    assert.match(doc(r.stdout).error, /no service 'other'/);
  }
});
