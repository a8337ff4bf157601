// The config file: precise errors, `baton start` with no arguments, flags over the file, and
// reloads that read it again (a change takes effect through the handoff; an invalid edit
// fails the reload and changes nothing).

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { CONFIG_KEYS, validateConfig } from '../src/cli/config.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { EXAMPLES, FIXTURES, ROOT, runCli, tempDir } from './helpers/baton.js';
import { cli, configDir } from './helpers/ops.js';

const OPS = join(FIXTURES, 'ops.mjs');

function errorOf(raw: unknown): string {
  try {
    validateConfig(raw, 'baton.config.json', '/srv/app');
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail(`accepted: ${JSON.stringify(raw)}`);
}

test("services: each has its own listeners and command; the rest stays at the top; a socket is one service's", () => {
  const svc = { listen: [8080], command: ['node', 'api.js'] };
  const cases: [unknown, RegExp][] = [
    [{ services: { api: { listen: [8080] } } }, /^baton\.config\.json: services\.api: missing "command"$/],
    [{ services: { api: { command: ['x'] } } }, /^baton\.config\.json: services\.api: missing "listen"$/],
    [{ listen: [8081], services: { api: svc } }, /^baton\.config\.json: listen: with "services", each service has its own listen; move it into them$/],
    [{ command: ['x'], services: { api: svc } }, /^baton\.config\.json: command: with "services", each service has its own command/],
    [
      { services: { api: svc, web: { listen: ['8080'], command: ['y'] } } },
      /^baton\.config\.json: services\.web: 0\.0\.0\.0:8080 is also api's: a socket belongs to one service$/,
    ],
    [
      { services: { api: { ...svc, user: 'www' } } },
      /^baton\.config\.json: services\.api: unknown key "user" \("user" is for the whole baton: set it at the top of the file\)$/,
    ],
    [{ services: { api: { ...svc, wrkers: 2 } } }, /^baton\.config\.json: services\.api: unknown key "wrkers" \(a service has "listen", "command", /],
    [{ services: { 'a b': svc } }, /^baton\.config\.json: services: "a b" is not a service name/],
    [{ services: {} }, /^baton\.config\.json: services: expected at least one service$/],
    [
      { services: { api: { ...svc, workers: 'lots' } } },
      /^baton\.config\.json: services\.api\.workers: expected a number from 1 to 1024 or "auto", got "lots"$/,
    ],
  ];
  for (const [raw, re] of cases) assert.match(errorOf(raw), re, JSON.stringify(raw));
  // Ports of the kernel's choosing are each their own; paths are meant from the file.
  const ok = validateConfig(
    { workers: 2, services: { a: { listen: ['127.0.0.1:0', 'unix:run/a.sock'], command: ['x'], cwd: 'a' }, b: { listen: ['127.0.0.1:0'], command: ['y'] } } },
    'f',
    '/srv',
  );
  assert.equal(ok.services!.a!.cwd, '/srv/a');
  assert.deepEqual(ok.services!.a!.listen![1], { name: 'unix-a.sock', kind: 'unix', path: '/srv/run/a.sock' });
});

test('an invalid config names the key and what it expects', () => {
  const cases: [unknown, RegExp][] = [
    [{ workers: 'lots' }, /^baton\.config\.json: workers: expected a number from 1 to 1024 or "auto", got "lots"$/],
    [{ workers: 0 }, /^baton\.config\.json: workers: expected a number from 1 to 1024 or "auto", got 0$/],
    [{ drainTimeout: 30 }, /^baton\.config\.json: drainTimeout: expected a duration such as "30s", "500ms" or "2m", got 30$/],
    [{ readyTimeout: '30' }, /^baton\.config\.json: readyTimeout: expected a duration .*, got "30"$/],
    [{ wokers: 2 }, /^baton\.config\.json: unknown key "wokers" \(did you mean "workers"\?\)$/],
    [{ 'drain-timeout': '1s' }, /^baton\.config\.json: unknown key "drain-timeout" \(did you mean "drainTimeout"\?\)$/],
    [{ listen: ['nowhere:80'] }, /^baton\.config\.json: listen\[0\]: 'nowhere' is not an IP address/],
    [{ listen: ['8080', { name: 'a b', address: '8081' }] }, /^baton\.config\.json: listen\[1\]\.name: expected a name of letters/],
    [{ listen: [{ name: 'admin', address: '127.0.0.1:99999' }] }, /^baton\.config\.json: listen\[0\]\.address: '99999' is not a port/],
    [{ listen: [{ address: '8080', port: 1 }] }, /^baton\.config\.json: listen\[0\]: unknown key "port"/],
    [{ listen: [true] }, /^baton\.config\.json: listen\[0\]: expected "PORT", "HOST:PORT", .* got true$/],
    [{ listen: '8080' }, /^baton\.config\.json: listen: expected a list of listeners/],
    [{ command: 'node app.js' }, /^baton\.config\.json: command: expected a list of strings such as \["node", "app\.js"\], got "node app\.js"$/],
    [{ env: { PORT: 8080 } }, /^baton\.config\.json: env\.PORT: expected a string, got 8080$/],
    [{ ready: 'soon' }, /^baton\.config\.json: ready: expected "auto", "listen", "manual" or "notify", got "soon"$/],
    [{ drainSignal: 'SIGNOPE' }, /^baton\.config\.json: drainSignal: expected a signal such as "SIGTERM" or "SIGQUIT", got "SIGNOPE"$/],
    [{ metrics: 'unix:/x' }, /^baton\.config\.json: metrics: expected "HOST:PORT" or "PORT", got "unix:\/x"$/],
    [[1, 2], /^baton\.config\.json: expected an object of settings, got a list$/],
  ];
  for (const [raw, re] of cases) assert.match(errorOf(raw), re, JSON.stringify(raw));
  // Every problem at once, one line each.
  assert.equal(errorOf({ workers: 'lots', wokers: 1, backlog: -1 }).split('\n').length, 3);

  const ok = validateConfig(
    {
      listen: [8080, 'admin=unix:run/admin.sock', { name: 'public', address: '[::1]:443' }],
      workers: 'auto',
      drainTimeout: '2m',
      control: 'ctl.sock',
      cwd: 'app',
    },
    'baton.config.json',
    '/srv/app',
  );
  assert.deepEqual(ok.listen, [
    { name: 'tcp-8080', kind: 'tcp', host: '0.0.0.0', port: 8080 },
    { name: 'admin', kind: 'unix', path: '/srv/app/run/admin.sock' },
    { name: 'public', kind: 'tcp', host: '::1', port: 443 },
  ]);
  assert.equal(ok.drainTimeout, 120_000);
  assert.equal(ok.control, '/srv/app/ctl.sock', 'relative paths are meant from the file');
  assert.equal(ok.cwd, '/srv/app/app');
  assert.ok(ok.workers! >= 1);
});

test('every option of baton start has a config key of the same name', async () => {
  const help = await runCli(['start', '--help']);
  const options = [...help.stdout.matchAll(/--([a-z][a-z-]*)/g)].map((m) => m[1]!).filter((o) => o !== 'help' && o !== 'config' && o !== 'takeover'); // --takeover is how to start, not what
  assert.ok(options.length >= 10, help.stdout);
  for (const o of new Set(options)) {
    const key = o.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    assert.ok(CONFIG_KEYS.includes(key), `--${o} has no config key "${key}"`);
  }
});

test('baton start with an invalid config file exits 2 with the errors, starting nothing', async () => {
  const c = configDir(JSON.stringify({ listen: ['127.0.0.1:0'], workers: 'lots', command: ['node', OPS] }));
  const r = await runCli(['start'], { cwd: c.dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /baton\.config\.json: workers: expected a number from 1 to 1024 or "auto", got "lots"/);
  assert.doesNotMatch(r.stderr, /listening on/);
  c.write('{ "listen": [8080], }');
  const syntax = await runCli(['start'], { cwd: c.dir });
  assert.equal(syntax.code, 2);
  assert.match(syntax.stderr, /baton\.config\.json: not valid JSON: .*position/);
});

/** On a new connection each time: a kept-alive one may still reach the old generation while it drains. */
async function get(port: number, path = '/'): Promise<string> {
  const r = await request(`http://127.0.0.1:${port}${path}`, { reset: true, dispatcher: new Agent() });
  assert.equal(r.statusCode, 200);
  return r.body.text();
}

test('baton start with no arguments runs the file; a reload reads it again; an invalid edit fails the reload and changes nothing', async (t) => {
  const settings = {
    name: 'shop',
    control: './ctl.sock',
    listen: [{ name: 'http', address: '127.0.0.1:0' }],
    workers: 2,
    command: ['node', OPS],
    env: { GREETING: 'hello' },
  };
  const c = configDir(JSON.stringify(settings, null, 2));
  const b = cli(['start'], { cwd: c.dir });
  t.after(() => b.kill());
  await b.waitFor(/handoff 1: generation 1 serves/);
  const control = join(c.dir, 'ctl.sock');
  // Other commands find the service through the same file: no --name or --control.
  const status = async (): Promise<StatusReport> => {
    const r = await runCli(['status', '--json'], { cwd: c.dir });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as StatusReport;
  };
  const s1 = await status();
  assert.equal(s1.name, 'shop');
  assert.equal(s1.control, control);
  assert.equal(s1.listeners[0]!.name, 'http');
  assert.equal(s1.generations[0]!.workers.length, 2);
  const port = Number(s1.listeners[0]!.address.split(':')[1]);
  assert.match(await get(port), /^gen=1 greeting=hello /);

  // A changed command line, env and worker count take effect through the handoff.
  c.write(JSON.stringify({ ...settings, workers: 3, env: { GREETING: 'bonjour' }, command: ['node', OPS, '--v2'] }));
  const ok = await runCli(['reload'], { cwd: c.dir });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /starting generation 2 with 3 worker\(s\): node .*ops\.mjs --v2/);
  const s2 = await status();
  assert.equal(s2.serving, 2);
  assert.equal(s2.workers, 3);
  assert.equal(s2.generations.find((g) => g.number === 2)!.workers.length, 3);
  assert.match(await get(port), /^gen=2 greeting=bonjour /);

  // An invalid edit: the reload fails with the reason; nothing is started or stopped.
  const pids = s2.generations.find((g) => g.number === 2)!.workers.map((w) => w.pid);
  c.write(JSON.stringify({ ...settings, workers: 'lots', listen: [{ name: 'http', address: 'nowhere:1' }] }));
  const bad = await runCli(['reload'], { cwd: c.dir });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /reload failed: baton\.config\.json: listen\[0\]\.address: 'nowhere' is not an IP address/);
  assert.match(bad.stderr, /baton\.config\.json: workers: expected a number from 1 to 1024 or "auto", got "lots"/);
  // SIGHUP reads the file too, and refuses it the same way.
  b.proc.kill('SIGHUP');
  await b.waitFor(/SIGHUP: reload\n[^]*reload failed: baton\.config\.json: listen\[0\]\.address/);
  const s3 = await status();
  assert.equal(s3.serving, 2);
  assert.equal(s3.history.length, 2, 'no handoff was started');
  assert.deepEqual(
    s3.generations.find((g) => g.number === 2)!.workers.map((w) => w.pid),
    pids,
    'the same workers serve',
  );
  for (let i = 0; i < 5; i++) assert.match(await get(port), /^gen=2 greeting=bonjour /);

  // A command after `--` wins over the file's for that reload.
  c.write(JSON.stringify(settings));
  const named = await runCli(['reload', '--', 'node', join(EXAMPLES, 'hello/v2.js')], { cwd: c.dir });
  assert.equal(named.code, 0, named.stderr);
  assert.match(await get(port), /^gen=3 v2 /);
  assert.equal((await status()).workers, 2, 'the worker count came from the file');

  assert.equal((await runCli(['stop'], { cwd: c.dir })).code, 0);
  assert.equal(await b.exited, 0);
});

test('flags override the file, also on reload; a .mjs file is read again on each reload', async (t) => {
  const body = (workers: number, greeting: string): string =>
    `export default { control: './ctl.sock', listen: ['127.0.0.1:0'], workers: ${workers}, command: ['node', ${JSON.stringify(OPS)}], env: { GREETING: '${greeting}' } };\n`;
  const c = configDir(body(2, 'one'), 'mjs');
  const b = cli(['start', '--workers', '1'], { cwd: c.dir });
  t.after(() => b.kill());
  await b.waitFor(/handoff 1: generation 1 serves/);
  const control = join(c.dir, 'ctl.sock');
  c.write(body(3, 'two'));
  const r = await runCli(['reload', '--control', control]);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse((await runCli(['status', '--json', '--control', control])).stdout) as StatusReport;
  assert.equal(s.workers, 1, '--workers on the command line stays in force');
  assert.match(
    b.out,
    /baton\.config\.mjs: workers changed in the file, but --workers given to baton start wins; start baton without --workers for the file to count/,
  );
  const port = Number(s.listeners[0]!.address.split(':')[1]);
  assert.match(await get(port), /^gen=2 greeting=two /, 'the edited module was imported again');
  c.write('export default 42;\n');
  const bad = await runCli(['reload', '--control', control]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /reload failed: baton\.config\.mjs: expected an object of settings, got 42/);
});

test("the getting-started file kept next to the app: its command runs where baton start runs; a relative cwd is the file's directory; a command after -- wins over an edited one, with a warning", {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir('baton-cwd-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const app = join(dir, 'examples/hello');
  mkdirSync(app, { recursive: true });
  for (const f of ['v1.js', 'v2.js']) copyFileSync(join(EXAMPLES, 'hello', f), join(app, f));
  // The file exactly as docs/getting-started.md shows it.
  const page = readFileSync(join(ROOT, 'docs/getting-started.md'), 'utf8');
  const shown = /## Keep the settings in a file[\s\S]*?```json\n([\s\S]*?)```/.exec(page)?.[1] ?? assert.fail('no config file in docs/getting-started.md');
  assert.deepEqual((JSON.parse(shown) as { command: string[] }).command, ['node', 'examples/hello/v1.js']);
  const file = join(app, 'baton.config.json');
  writeFileSync(file, shown);
  const control = join(dir, 'ctl.sock');
  // Run from the directory the page's other commands run in; a port of our own instead of 3000.
  const a = cli(['start', '--config', 'examples/hello/baton.config.json', '--listen', '127.0.0.1:0', '--control', control], { cwd: dir });
  t.after(() => a.kill());
  await a.waitFor(/handoff 1: generation 1 serves/);
  const s = JSON.parse((await runCli(['status', '--json', '--control', control])).stdout) as StatusReport;
  assert.equal(s.generations[0]!.ready, 2);
  assert.match(await get(Number(s.listeners[0]!.address.split(':')[1])), /^gen=1 v1 /);
  assert.equal((await runCli(['stop', '--control', control])).code, 0);
  assert.equal(await a.exited, 0);

  // "cwd": "." is the file's own directory, wherever baton starts; the command after -- wins.
  writeFileSync(file, JSON.stringify({ listen: ['127.0.0.1:0'], cwd: '.', command: ['node', 'v1.js'] }));
  const b = cli(['start', '--config', file, '--control', control, '--', 'node', 'v1.js'], { cwd: ROOT });
  t.after(() => b.kill());
  await b.waitFor(/handoff 1: generation 1 serves/);
  writeFileSync(file, JSON.stringify({ listen: ['127.0.0.1:0'], cwd: '.', command: ['node', 'v2.js'] }));
  const r = await runCli(['reload', '--control', control]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(b.out, /command changed in the file, but baton was started with a command after --, which wins/);
  const port = Number((JSON.parse((await runCli(['status', '--json', '--control', control])).stdout) as StatusReport).listeners[0]!.address.split(':')[1]);
  assert.match(await get(port), /^gen=2 v1 /);
});
