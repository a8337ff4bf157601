// The examples work as written: every file under examples/ is read and checked for the facts
// a copy-paste user depends on (grace periods in the right order, `baton` on PATH where the
// docs run it, a `systemctl reload` that fails when the reload does), and the units'
// ExecReload= command line is run, without systemd, against a baton whose new version is broken.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { CLI, EXAMPLES, ROOT, tempDir } from './helpers/baton.js';
import { cli } from './helpers/ops.js';

const read = (path: string): string => readFileSync(join(EXAMPLES, path), 'utf8');

/** Every file under examples/, relative to it. */
function exampleFiles(dir = EXAMPLES): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? exampleFiles(join(dir, e.name)) : [relative(EXAMPLES, join(dir, e.name))],
  );
}

/** The [Service] section of a unit file: key -> values, continuation lines joined (systemd.syntax(7)). */
function serviceSection(text: string): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let section = '';
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = head[1]!;
      continue;
    }
    if (section !== 'Service') continue;
    const eq = line.indexOf('=');
    keys.set(line.slice(0, eq), [...(keys.get(line.slice(0, eq)) ?? []), line.slice(eq + 1).trim()]);
  }
  return keys;
}

/** One value of a unit key; exactly one must be there. */
function one(unit: Map<string, string[]>, key: string, file: string): string {
  const v = unit.get(key) ?? [];
  assert.equal(v.length, 1, `${file}: expected one ${key}=, got ${JSON.stringify(v)}`);
  return v[0]!;
}

/** An Exec*= line as argv: no quoting in these units, so words; systemd's prefixes (-@+!:) dropped. */
function execArgv(line: string): string[] {
  return line
    .replace(/^[-@+!:]+/, '')
    .split(/\s+/)
    .filter(Boolean);
}

/** systemd time spans as the example units write them (`45`, `45s`, `1min`), in ms: systemd.time(7). */
function systemdSpan(text: string): number {
  const m = /^(\d+)(s|sec|min|ms)?$/.exec(text);
  assert.ok(m, `unsupported time span '${text}'`);
  const unit = { ms: 1, s: 1000, sec: 1000, min: 60_000 }[m[2] ?? 's']!;
  return Number(m[1]) * unit;
}

/** baton's own durations (`30s`, `500ms`, `2m`), written out here rather than taken from src/duration.ts. */
function batonSpan(text: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(text);
  assert.ok(m, `unsupported duration '${text}'`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000 }[m[2]!]!;
}

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

const UNITS = exampleFiles().filter((f) => f.endsWith('.service'));
/** What `docker stop` waits before SIGKILL when nothing raised it (docker run --stop-timeout, compose's stop_grace_period). */
const DOCKER_DEFAULT_GRACE_MS = 10_000;

test('every file under examples/ is checked by this test or run by another', () => {
  const tests = readdirSync(join(ROOT, 'test'))
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => readFileSync(join(ROOT, 'test', f), 'utf8'))
    .join('\n');
  const checkedHere = (f: string): boolean => /\.(service|socket)$/.test(f) || f.startsWith('container/') || f.startsWith('kubernetes/');
  for (const f of exampleFiles()) {
    if (checkedHere(f) || f.endsWith('README.md')) continue;
    // The apps: some test runs each of them, by its path under examples/.
    assert.ok(
      tests.includes(`'${f}'`) || tests.includes(`'${f.split('/')[0]}', '${f.split('/')[1]}'`) || tests.includes(f),
      `examples/${f}: no test checks it`,
    );
  }
  assert.ok(UNITS.length >= 2, `unit files: ${UNITS.join(', ')}`);
});

test('systemd units: Type=notify with ExecReload= running baton reload for the same service; TimeoutStopSec > --stop-timeout > --drain-timeout; KillMode=mixed', () => {
  for (const file of UNITS) {
    const unit = serviceSection(read(file));
    // notify-reload's READY=1 cannot say that a reload failed: systemctl reload would succeed.
    assert.equal(one(unit, 'Type', file), 'notify', file);
    const start = execArgv(one(unit, 'ExecStart', file));
    const reload = execArgv(one(unit, 'ExecReload', file));
    assert.deepEqual(start.slice(0, 2), ['/usr/bin/baton', 'start'], file);
    assert.deepEqual(reload.slice(0, 2), ['/usr/bin/baton', 'reload'], file);
    assert.equal(flag(reload, '--name'), flag(start, '--name'), `${file}: ExecReload= names another service than ExecStart=`);
    assert.equal(flag(reload, '--control'), flag(start, '--control'), file);
    const stop = batonSpan(flag(start, '--stop-timeout') ?? assert.fail(`${file}: no --stop-timeout`));
    const drain = batonSpan(flag(start, '--drain-timeout') ?? assert.fail(`${file}: no --drain-timeout`));
    const grace = systemdSpan(one(unit, 'TimeoutStopSec', file));
    assert.ok(grace > stop && stop > drain, `${file}: TimeoutStopSec ${grace} ms > --stop-timeout ${stop} ms > --drain-timeout ${drain} ms does not hold`);
    assert.equal(one(unit, 'KillMode', file), 'mixed', file);
  }
});

/** `${NAME:-default}` in the entrypoint. */
function shellDefault(script: string, name: string): string {
  const m = new RegExp(`\\$\\{${name}:-([^}]+)\\}`).exec(script);
  assert.ok(m, `entrypoint.sh has no \${${name}:-…}`);
  return m[1]!;
}

/** `NAME: "value"` / `- { name: NAME, value: "value" }` in a YAML file (the examples' simple forms only). */
function yamlEnv(text: string, name: string): string {
  const m = new RegExp(`(?:^\\s*${name}:\\s*"?([^"\\s]+)"?\\s*$)|(?:name:\\s*${name},\\s*value:\\s*"?([^"\\s}]+)"?)`, 'm').exec(text);
  assert.ok(m, `no ${name} in the environment`);
  return (m[1] ?? m[2])!;
}

test('container: baton on PATH in the image; grace period > stop timeout > drain timeout under docker, compose and Kubernetes', () => {
  const dockerfile = read('container/Dockerfile');
  const entry = read('container/entrypoint.sh');
  const workdir = /^WORKDIR\s+(\S+)/m.exec(dockerfile)?.[1] ?? assert.fail('no WORKDIR');
  // npm puts a dependency's bins in node_modules/.bin; docker exec / kubectl exec use the image's ENV.
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  assert.ok('baton' in pkg.bin, 'the package has no `baton` bin');
  const path = /^ENV\s+PATH=(\S+)/m.exec(dockerfile)?.[1] ?? assert.fail('the Dockerfile sets no PATH');
  assert.ok(path.split(':').includes(`${workdir}/node_modules/.bin`), `PATH=${path} lacks ${workdir}/node_modules/.bin`);
  assert.match(entry, /^exec baton start /m, 'the entrypoint execs baton (by PATH) as PID 1');
  assert.match(dockerfile, /^ENTRYPOINT \["\/entrypoint.sh"\]/m, 'exec form: baton becomes PID 1');
  for (const f of ['kubernetes/deployment.yaml', 'container/compose.yaml']) {
    for (const m of read(f).matchAll(/(?:kubectl|docker compose) exec \S+ (?:-- )?(\S+)/g)) assert.equal(m[1], 'baton', `${f}: ${m[0]}`);
  }

  const stopDefault = batonSpan(shellDefault(entry, 'STOP_TIMEOUT'));
  const drainDefault = batonSpan(shellDefault(entry, 'DRAIN_TIMEOUT'));
  assert.match(entry, /--stop-timeout "\$\{STOP_TIMEOUT:-/);
  assert.match(entry, /--drain-timeout "\$\{DRAIN_TIMEOUT:-/);
  // `docker run` with nothing raised: Docker's own 10 s.
  assert.ok(
    DOCKER_DEFAULT_GRACE_MS > stopDefault && stopDefault > drainDefault,
    `docker defaults: 10 s > ${stopDefault} ms > ${drainDefault} ms does not hold`,
  );

  const compose = read('container/compose.yaml');
  const grace = systemdSpan(/^\s*stop_grace_period:\s*(\d+)s\s*$/m.exec(compose)?.[1] ?? assert.fail('compose.yaml: no stop_grace_period'));
  const stop = batonSpan(yamlEnv(compose, 'STOP_TIMEOUT'));
  const drain = batonSpan(yamlEnv(compose, 'DRAIN_TIMEOUT'));
  assert.ok(grace > stop && stop > drain, `compose: ${grace} > ${stop} > ${drain} ms does not hold`);

  const k8s = read('kubernetes/deployment.yaml');
  const kGrace = Number(/terminationGracePeriodSeconds:\s*(\d+)/.exec(k8s)?.[1] ?? assert.fail('no terminationGracePeriodSeconds')) * 1000;
  // The grace period counts from the start of preStop.
  const preStop = Number(/command:\s*\["sleep",\s*"(\d+)"\]/.exec(k8s)?.[1] ?? 0) * 1000;
  const kStop = batonSpan(yamlEnv(k8s, 'STOP_TIMEOUT'));
  const kDrain = batonSpan(yamlEnv(k8s, 'DRAIN_TIMEOUT'));
  assert.ok(kGrace > preStop + kStop && kStop > kDrain, `kubernetes: ${kGrace} > ${preStop} + ${kStop} > ${kDrain} ms does not hold`);
});

function run(argv: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

test("each unit's ExecReload= exits non-zero with the reason when the new version cannot start, and 0 when it can (run without systemd)", {
  timeout: 120_000,
}, async (t) => {
  for (const file of UNITS) {
    const unit = serviceSection(read(file));
    const start = execArgv(one(unit, 'ExecStart', file));
    // The unit's own command line, with this checkout's baton for /usr/bin/baton.
    const reload = execArgv(one(unit, 'ExecReload', file)).flatMap((w) => (w === '/usr/bin/baton' ? [process.execPath, CLI] : [w]));
    // The control socket is found as the unit's ExecReload= finds it: same user, same environment.
    const dir = tempDir('baton-unit-');
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const env = { XDG_RUNTIME_DIR: dir };
    // The deployed program, as /srv/shop/server.js: replaced in place by each release.
    const server = join(dir, 'server.js');
    copyFileSync(join(EXAMPLES, 'hello/v1.js'), server);
    const b = cli(['start', '--name', flag(start, '--name')!, '--listen', '127.0.0.1:0', '--', 'node', server], { env });
    t.after(() => b.kill());
    await b.waitFor(/handoff 1: generation 1 serves/);

    copyFileSync(join(EXAMPLES, 'hello/broken.js'), server);
    const bad = await run(reload, env);
    assert.equal(bad.code, 1, `${file}: ExecReload= exited ${bad.code} after a failed reload\n${bad.stdout}\n${bad.stderr}`);
    assert.match(bad.stderr, /reload failed: worker 0 of generation 2 exited with code 1 before it was ready/, file);
    assert.match(bad.stderr, /\| Error: config file missing: \/etc\/hello\.json/, `${file}: the new version's last lines`);

    copyFileSync(join(EXAMPLES, 'hello/v2.js'), server);
    const good = await run(reload, env);
    assert.equal(good.code, 0, `${file}: ${good.stderr}`);
    assert.match(good.stdout, /reloaded: #3 .* gen 1 -> 3 /, file);
    await b.kill();
  }
});
