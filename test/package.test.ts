// What a user gets from the registry: this package packed as `npm publish` would pack it,
// installed into a fresh app next to Express, and driven with the commands the README
// gives (`npx baton start`, `reload`, `status`, `stop`) from that app's directory.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { ROOT, tempDir } from './helpers/baton.js';

interface Run {
  code: number | null;
  out: string;
}

/** Runs a command to completion (bounded); stdout and stderr together. */
function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => {
      process.kill(-p.pid!, 'SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish in ${opts.timeoutMs} ms:\n${out}`));
    }, opts.timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

const server = (version: string): string => `import express from 'express';
const app = express();
app.get('/', (req, res) => res.send('${version} pid=' + process.pid));
app.listen(process.env.PORT ?? 3000, () => console.log('${version} listening'));
`;

interface Status {
  pid: number;
  listeners: Array<{ address: string }>;
  generations: Array<{ number: number; state: string; workers: Array<{ pid: number }> }>;
}

test('the packed package in a fresh Express app: npx baton start, reload, status, stop', { timeout: 120_000 }, async (t) => {
  const dir = tempDir('baton-package-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
  // dist/ is already built (the tests run from it): packing must not rebuild it under the other tests' feet.
  const pack = await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT, env: process.env, timeoutMs: 60_000 });
  assert.equal(pack.code, 0, pack.out);
  const tarball = join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!);
  assert.ok(existsSync(tarball), pack.out);

  const app = join(dir, 'app');
  mkdirSync(app);
  const express = (JSON.parse(readFileSync(join(ROOT, 'node_modules/express/package.json'), 'utf8')) as { version: string }).version;
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { express, [pkg.name]: `file:${tarball}` } }),
  );
  writeFileSync(join(app, 'server.js'), server('v1'));
  // The node under test first on PATH (npx, baton's shebang and the `node` workers all take it);
  // a private XDG_RUNTIME_DIR so the default control socket is this test's alone.
  const env = {
    ...process.env,
    PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
    XDG_RUNTIME_DIR: join(dir, 'run'),
    npm_config_update_notifier: 'false',
  };
  mkdirSync(env.XDG_RUNTIME_DIR, { mode: 0o700 });
  const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, env, timeoutMs: 90_000 });
  assert.equal(install.code, 0, install.out);
  assert.ok(existsSync(join(app, 'node_modules/.bin/baton')), `no baton command in the app:\n${install.out}`);

  const npx = (...args: string[]): Promise<Run> => run('npx', ['baton', ...args], { cwd: app, env, timeoutMs: 30_000 });
  const start = spawn('npx', ['baton', 'start', '--listen', '127.0.0.1:0', '--', 'node', 'server.js'], {
    cwd: app,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  start.stdout.on('data', (d) => (out += d));
  start.stderr.on('data', (d) => (out += d));
  const exited = once(start, 'exit') as Promise<[number | null, string | null]>;
  t.after(() => {
    if (start.exitCode === null && start.signalCode === null) process.kill(-start.pid!, 'SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (/generation 1 serves/.test(out)) resolve();
    };
    start.stdout.on('data', check);
    start.stderr.on('data', check);
    void exited.then(([code]) => reject(new Error(`npx baton start exited (${code}) before serving:\n${out}`)));
    check();
  });

  const status = async (): Promise<Status> => {
    const r = await npx('status', '--json');
    assert.equal(r.code, 0, r.out);
    return JSON.parse(r.out) as Status;
  };
  const s1 = await status();
  const url = `http://${s1.listeners[0]!.address}/`;
  const worker1 = s1.generations[0]!.workers[0]!.pid;
  // baton and its worker run on the node under test, not on whatever else is installed.
  const node = realpathSync(process.execPath);
  assert.equal(realpathSync(`/proc/${s1.pid}/exe`), node, 'baton runs on another node');
  assert.equal(realpathSync(`/proc/${worker1}/exe`), node, 'the worker runs on another node');
  assert.equal(await (await request(url, { reset: true })).body.text(), `v1 pid=${worker1}`);

  // The next version is deployed over the old file; a plain reload runs it.
  writeFileSync(join(app, 'server.js'), server('v2'));
  const reload = await npx('reload');
  assert.equal(reload.code, 0, reload.out);
  assert.match(reload.out, /^reloaded: .*gen 1 -> 2 {2}done/m);
  const text = await npx('status');
  assert.equal(text.code, 0, text.out);
  assert.match(text.out, /^2 +serving\* +1\/1 +node server\.js$/m);
  const s2 = await status();
  assert.equal(s2.pid, s1.pid);
  const worker2 = s2.generations.find((g) => g.number === 2)!.workers[0]!.pid;
  assert.equal(await (await request(url, { reset: true })).body.text(), `v2 pid=${worker2}`);

  const stop = await npx('stop');
  assert.equal(stop.code, 0, stop.out);
  assert.deepEqual((await exited)[0], 0, out);
  assert.match(out, /baton: stopped/);
  for (const pid of [s1.pid, worker1, worker2]) assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `pid ${pid} is still there`);
  await assert.rejects(request(url), { code: 'ECONNREFUSED' });
});
