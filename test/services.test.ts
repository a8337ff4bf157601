// Several services under one baton (a config file's `services`): each is reloaded, scaled and
// reported on its own, and what happens to one never touches another.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { freePorts } from '../bench/harness.js';
import { type LoadReport, mixedClients, startLoad } from '../bench/load.js';
import type { GroupReload, GroupStatus } from '../src/supervisor/services.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { EXAMPLES, FIXTURES, runCli } from './helpers/baton.js';
import { cli, configDir } from './helpers/ops.js';

const v1 = ['node', join(EXAMPLES, 'hello/v1.js')];
const v2 = ['node', join(EXAMPLES, 'hello/v2.js')];
const broken = ['node', join(EXAMPLES, 'hello/broken.js')];
const OPS = ['node', join(FIXTURES, 'ops.mjs')];

function config(services: Record<string, unknown>): string {
  return JSON.stringify({ name: 'shop', control: './ctl.sock', drainTimeout: '10s', services }, null, 2);
}

const TWO = {
  api: { listen: ['127.0.0.1:0'], command: v1, workers: 2 },
  web: { listen: ['127.0.0.1:0'], command: OPS, env: { GREETING: 'web' } },
};

async function groupStatus(dir: string): Promise<GroupStatus> {
  const r = await runCli(['status', '--json'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as GroupStatus;
}

function portOf(s: StatusReport): number {
  const a = s.listeners[0]!.address;
  return Number(a.slice(a.lastIndexOf(':') + 1));
}

function pidsOf(s: StatusReport): number[] {
  return s.generations.find((g) => g.number === s.serving)!.workers.map((w) => w.pid);
}

function assertNothingLost(name: string, r: LoadReport): void {
  assert.equal(r.failed, 0, `${name}: failed requests: ${JSON.stringify(r.errors)}`);
  for (const kind of ['undici', 'agent', 'fresh'] as const) assert.ok(r.byKind[kind].ok > 0, `${name}: no ${kind} request succeeded`);
}

async function get(port: number): Promise<string> {
  const r = await request(`http://127.0.0.1:${port}/`);
  return r.body.text();
}

test('two services: reloading one under load leaves the other untouched; a failed reload is its own; 0 failed on both', async (t) => {
  const c = configDir(config(TWO));
  const b = cli(['start'], { cwd: c.dir });
  t.after(() => b.kill());
  await Promise.all([b.waitFor(/baton\[api\]: handoff 1: generation 1 serves/), b.waitFor(/baton\[web\]: handoff 1: generation 1 serves/)]);

  const s0 = await groupStatus(c.dir);
  assert.equal(s0.name, 'shop');
  assert.deepEqual(
    s0.services.map((s) => s.name),
    ['api', 'web'],
  );
  const [api0, web0] = s0.services as [StatusReport, StatusReport];
  assert.equal(pidsOf(api0).length, 2);
  assert.equal(pidsOf(web0).length, 1);
  const [apiPort, webPort] = [portOf(api0), portOf(web0)];
  assert.notEqual(apiPort, webPort);
  assert.match(await get(webPort), /^gen=1 greeting=web /);

  const loads = [apiPort, webPort].map((port) =>
    startLoad({ target: { host: '127.0.0.1', port }, clients: mixedClients(3, 3, 2), maxRequests: 200_000, maxDurationMs: 90_000 }),
  );
  for (let i = 0; i < 5; i++) {
    const r = await runCli(['reload', 'api', '--', ...(i % 2 ? v1 : v2)], { cwd: c.dir });
    assert.equal(r.code, 0, r.stderr);
  }
  const mid = await groupStatus(c.dir);
  assert.deepEqual(pidsOf(mid.services[1]!), pidsOf(web0), "web's workers are the same processes after api's reloads");
  assert.equal(mid.services[0]!.serving, 6);

  // A version of api that fails: reported for api, by name; web is not asked anything.
  const apiPids = pidsOf(mid.services[0]!);
  const bad = await runCli(['reload', 'api', '--', ...broken], { cwd: c.dir });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^baton: service api: reload failed: worker [01] of generation 7 exited with code 1 before it was ready/m);
  const after = await groupStatus(c.dir);
  assert.deepEqual(pidsOf(after.services[0]!), apiPids, 'api: the old generation serves on');
  assert.deepEqual(pidsOf(after.services[1]!), pidsOf(web0), 'web: untouched');
  assert.equal(after.services[0]!.history.at(-1)!.state, 'failed');
  assert.deepEqual(
    after.services[1]!.history.map((h) => h.state),
    ['done'],
    'web: its generation 1 start, nothing else',
  );

  // And the other way round: web reloads, api's workers stay.
  const w = await runCli(['reload', 'web'], { cwd: c.dir });
  assert.equal(w.code, 0, w.stderr);
  assert.match(w.stdout, /reloaded: #2 .* gen 1 -> 2/);
  const last = await groupStatus(c.dir);
  assert.deepEqual(pidsOf(last.services[0]!), apiPids);
  assert.notDeepEqual(pidsOf(last.services[1]!), pidsOf(web0));

  const [apiLoad, webLoad] = await Promise.all(loads.map((l) => l.stop()));
  assertNothingLost('api', apiLoad!);
  assertNothingLost('web', webLoad!);
  assert.ok((apiLoad!.bodies['gen=6'] ?? 0) > 0, `api bodies: ${JSON.stringify(apiLoad!.bodies)}`);
  assert.deepEqual(Object.keys(webLoad!.bodies).sort(), ['gen=1', 'gen=2'], 'web answered from its own two generations only');

  // Per-service scale, status and logs.
  const sc = await runCli(['scale', 'web', '3'], { cwd: c.dir });
  assert.equal(sc.code, 0, sc.stderr);
  assert.match(sc.stdout, /^scaled web: 3 of 3 worker\(s\) ready in generation 2$/m);
  const noName = await runCli(['scale', '3'], { cwd: c.dir });
  assert.equal(noName.code, 1);
  assert.match(noName.stderr, /name the service to scale: api, web/);
  const one = await runCli(['status', 'web', '--json'], { cwd: c.dir });
  const web = JSON.parse(one.stdout) as StatusReport;
  assert.equal(web.name, 'web');
  assert.equal(web.workers, 3);
  assert.equal(pidsOf((await groupStatus(c.dir)).services[0]!).length, 2, 'api keeps its size');
  const text = await runCli(['status'], { cwd: c.dir });
  assert.match(text.stdout, /== service api =+\n/);
  assert.match(text.stdout, /== service web =+\n/);
  const unknown = await runCli(['status', 'nope'], { cwd: c.dir });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no service 'nope': this baton runs 'api', 'web'/);
  const logs = await runCli(['logs', 'web', '--json', '-n', '2000'], { cwd: c.dir });
  const entries = logs.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { service?: string; gen?: number });
  assert.ok(
    entries.some((e) => e.service === 'web' && e.gen === 2),
    'web worker output is there',
  );
  assert.ok(
    entries.every((e) => e.service === undefined || e.service === 'web'),
    'nothing of api',
  );
  assert.match(b.out, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[web 2\.0\] ops listening gen=2$/m, 'worker lines name their service');

  assert.equal((await runCli(['stop'], { cwd: c.dir })).code, 0);
  assert.equal(await b.exited, 0);
});

test('reload without a name reloads every service, each on its own; SIGHUP too', async (t) => {
  const c = configDir(config(TWO));
  const b = cli(['start'], { cwd: c.dir });
  t.after(() => b.kill());
  await Promise.all([b.waitFor(/baton\[api\]: handoff 1: generation 1 serves/), b.waitFor(/baton\[web\]: handoff 1: generation 1 serves/)]);
  const all = await runCli(['reload'], { cwd: c.dir });
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /^api: reloaded: #2 .* gen 1 -> 2/m);
  assert.match(all.stdout, /^web: reloaded: #2 .* gen 1 -> 2/m);

  // The file is read again per service: web's new command is broken, api's file entry is unchanged.
  c.write(config({ ...TWO, web: { ...TWO.web, command: broken } }));
  const webPids = pidsOf((await groupStatus(c.dir)).services[1]!);
  const some = await runCli(['reload'], { cwd: c.dir });
  assert.equal(some.code, 1);
  assert.match(some.stderr, /reload failed for web \(worker 0 of generation 3 exited with code 1 before it was ready\); the others reloaded/);
  assert.match(some.stderr, /^api: reloaded: #3 .* gen 2 -> 3/m);
  assert.match(some.stderr, /^web: failed: worker 0 of generation 3/m);
  assert.match(some.stderr, /web: last output of the failing worker:\n(?: {2}\|.*\n)*? {2}\| .*config file missing/);
  const s = await groupStatus(c.dir);
  assert.equal(s.services[0]!.serving, 3);
  assert.equal(s.services[1]!.serving, 2);
  assert.deepEqual(pidsOf(s.services[1]!), webPids);
  const newCommand = await runCli(['reload', '--', ...v2], { cwd: c.dir });
  assert.equal(newCommand.code, 1);
  assert.match(newCommand.stderr, /a new command line is for one service: name it \(api, web\)/);

  c.write(config(TWO));
  b.proc.kill('SIGHUP');
  await Promise.all([b.waitFor(/baton\[api\]: handoff 4: generation 4 serves/), b.waitFor(/baton\[web\]: handoff 4: generation 4 serves/)]);
  const r = (await groupStatus(c.dir)).services.map((x) => x.serving);
  assert.deepEqual(r, [4, 4]);
  b.proc.kill('SIGTERM');
  assert.equal(await b.exited, 0);
});

test('a service that cannot start fails the start by name; the others are stopped with it', async (t) => {
  const c = configDir(config({ ...TWO, api: { ...TWO.api, command: broken } }));
  const b = cli(['start'], { cwd: c.dir });
  t.after(() => b.kill());
  assert.equal(await b.exited, 1);
  assert.match(b.out, /error: service api: generation 1 did not start: worker [01] of generation 1 exited with code 1/);
  const pid = Number(/baton\[web\]: worker 1\.0 started pid=(\d+)/.exec(b.out)?.[1]);
  assert.ok(pid > 0, b.out);
  assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, "web's worker was stopped too");
});

test('the control protocol routes by service; metrics label each series with its service', async (t) => {
  const c = configDir(config(TWO));
  // No standby after the reloads below: the refused upgrade at the end is refused for its entry point.
  const b = cli(['start', '--metrics', '127.0.0.1:0', '--keep-previous', '0'], { cwd: c.dir });
  t.after(() => b.kill());
  await Promise.all([b.waitFor(/baton\[api\]: handoff 1: generation 1 serves/), b.waitFor(/baton\[web\]: handoff 1: generation 1 serves/)]);
  const metricsPort = Number((await b.waitFor(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/))[1]);
  const scrape = async (path: string): Promise<{ status: number; text: string }> => {
    const r = await request(`http://127.0.0.1:${metricsPort}${path}`);
    return { status: r.statusCode, text: await r.body.text() };
  };
  const { controlRequest } = await import('../src/control/control.js');
  const control = join(c.dir, 'ctl.sock');
  const reload = await controlRequest(control, { cmd: 'reload', service: 'web', argv: v2, cwd: '/' });
  assert.ok(reload.ok, JSON.stringify(reload));
  const both = await controlRequest(control, { cmd: 'reload' });
  assert.ok(both.ok);
  assert.deepEqual(
    (both.result as GroupReload).map((r) => [r.service, r.record?.state]),
    [
      ['api', 'done'],
      ['web', 'done'],
    ],
  );
  const m = await scrape('/metrics');
  assert.match(m.text, /^baton_reloads_total\{service="web",result="done"\} 2$/m);
  assert.match(m.text, /^baton_reloads_total\{service="api",result="done"\} 1$/m);
  assert.match(m.text, /^baton_workers\{service="api",state="ready"\} 2$/m);
  assert.match(m.text, /^baton_serving_generation\{service="web"\} 3$/m);
  const h = await scrape('/healthz');
  assert.equal(h.status, 200);
  assert.equal(h.text, 'api: serving generation 2\nweb: serving generation 3\n');
  // An upgrade of every service at once is upgrade.test.ts's; a refused one changes nothing.
  const up = await controlRequest(control, { cmd: 'upgrade', exec: '/nonexistent/baton/cli.js' });
  assert.ok(!up.ok);
  assert.match(up.error, /upgrade refused: \/nonexistent\/baton\/cli\.js: no such file; the running supervisor carries on/);
  assert.equal((await groupStatus(c.dir)).services.length, 2, 'still running');
  await controlRequest(control, { cmd: 'stop' });
  assert.equal(await b.exited, 0);
});

test('--takeover of a baton running several services: 0 failed on both, same sockets; a failed one leaves the old serving', async (t) => {
  // Real ports: a new baton takes a socket by its address, and port 0 asks for a new one.
  const [apiPort, webPort] = await freePorts(2);
  const FIXED = { api: { ...TWO.api, listen: [`127.0.0.1:${apiPort}`] }, web: { ...TWO.web, listen: [`127.0.0.1:${webPort}`] } };
  const c = configDir(config(FIXED));
  const old = cli(['start'], { cwd: c.dir });
  t.after(() => old.kill());
  await Promise.all([old.waitFor(/baton\[api\]: handoff 1: generation 1 serves/), old.waitFor(/baton\[web\]: handoff 1: generation 1 serves/)]);
  const before = await groupStatus(c.dir);
  const sockets = (s: GroupStatus): [string, string, number | null][] =>
    s.services.flatMap((x) => x.listeners.map((l) => [x.name, l.address, l.inode] as [string, string, number | null]));
  const loads = before.services.map((s) =>
    startLoad({ target: { host: '127.0.0.1', port: portOf(s) }, clients: mixedClients(3, 3, 2), maxRequests: 200_000, maxDurationMs: 60_000 }),
  );

  // A new baton whose web cannot start: it exits with the reason, the old one never noticed.
  c.write(config({ ...FIXED, web: { ...FIXED.web, command: broken } }));
  const failing = cli(['start', '--takeover'], { cwd: c.dir });
  t.after(() => failing.kill());
  assert.equal(await failing.exited, 1);
  assert.match(failing.out, /service web: generation 1 did not start/);
  await old.waitFor(/takeover abandoned/);
  assert.equal((await groupStatus(c.dir)).pid, before.pid);

  c.write(config({ ...FIXED, api: { ...FIXED.api, command: v2 } }));
  const next = cli(['start', '--takeover'], { cwd: c.dir });
  t.after(() => next.kill());
  assert.equal(await old.exited, 0, old.out);
  await next.waitFor(/takeover done/);
  const after = await groupStatus(c.dir);
  assert.notEqual(after.pid, before.pid);
  assert.deepEqual(sockets(after), sockets(before), 'each service serves the very sockets it had');
  assert.match(await get(portOf(after.services[0]!)), /^gen=1 v2 /);
  const [apiLoad, webLoad] = await Promise.all(loads.map((l) => l.stop()));
  assertNothingLost('api', apiLoad!);
  assertNothingLost('web', webLoad!);
  assert.equal((await runCli(['stop'], { cwd: c.dir })).code, 0);
  assert.equal(await next.exited, 0);
});
