// Supervisor upgrade end to end: a real supervisor execve's into a new baton under real load,
// keeps its pid, its ports and (by default) its workers, and refuses what it cannot become.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { type LoadReport, mixedClients, startLoad } from '../bench/load.js';
import { closeFd, isCloexec, memfd, setCloexec } from '../src/os/fds.js';
import { execve } from '../src/os/process.js';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import type { GroupStatus } from '../src/supervisor/services.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { inheriting } from '../src/upgrade/upgrade.js';
import { type Baton, CLI, EXAMPLES, ROOT, runCli, startBaton, tempDir } from './helpers/baton.js';
import { cli, configDir } from './helpers/ops.js';

const v1 = ['node', join(EXAMPLES, 'hello/v1.js')];
const v2 = ['node', join(EXAMPLES, 'hello/v2.js')];
const MIXED = mixedClients(6, 6, 4);

function assertNothingLost(r: LoadReport, out: string): void {
  assert.equal(r.failed, 0, `failed requests: ${JSON.stringify(r.errors)}\n${out}`);
  for (const kind of ['undici', 'agent', 'fresh'] as const) assert.ok(r.byKind[kind].ok > 0, `no ${kind} request succeeded`);
}

function load(port: number): ReturnType<typeof startLoad> {
  return startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 2_000_000, maxDurationMs: 120_000 });
}

async function upgradeCli(b: Baton, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(['upgrade', '--control', b.control, '--quiet', ...args]);
}

function workerPids(s: StatusReport): number[] {
  return s.generations.flatMap((g) => g.workers.map((w) => w.pid)).sort((a, b) => a - b);
}

/** Same handoffs, in the same order, with the same outcome. */
function historyOf(s: StatusReport): string[] {
  return s.history.map((r) => `#${r.id} ${r.trigger} ${r.from ?? '-'}->${r.to} ${r.state}`);
}

/* /proc views of a process */

function fds(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return `${fd} -> ${readlinkSync(`/proc/${pid}/fd/${fd}`)}`;
    } catch {
      return `${fd} -> (closed)`;
    }
  });
}

/**
 * What `pid`'s fds point to, without fd numbers, without the control connections a test's
 * own requests leave open for a moment (the server end closes just after the answer), and
 * without the workers' notify sockets (an adopted worker is not given a new one: see
 * docs/upgrade.md). Node's own pipes and event fds are new ones in a new image: compared by kind.
 */
function heldFds(pid: number, control: string): string[] {
  const clients = new Set(
    readFileSync('/proc/net/unix', 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => (f[5] === '03' && f[7] === control) || f[7]?.includes('/baton-notify-'))
      .map((f) => f[6]),
  );
  return (
    fds(pid)
      .map((l) => l.slice(l.indexOf(' -> ') + 4))
      // Gone between listing and reading it: a moment's fd (Node.js 26 has some), not one held.
      .filter((x) => x !== '(closed)')
      .filter((x) => !clients.has(/socket:\[(\d+)\]/.exec(x)?.[1] ?? ''))
      .map((x) => x.replace(/^(pipe|anon_inode):.*$/, '$1'))
      .sort()
  );
}

/** The directories of the notify sockets `pid` holds. */
function notifyDirsOf(pid: number): string[] {
  const mine = inodes(pid);
  const paths = readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => mine.has(f[6] ?? '') && f[7]?.includes('/baton-notify-'))
    .map((f) => dirname(f[7]!));
  return [...new Set(paths)];
}

/** Inodes of the sockets and pipes `pid` holds. */
function inodes(pid: number): Set<string> {
  return new Set(fds(pid).flatMap((l) => /(?:socket|pipe):\[(\d+)\]/.exec(l)?.[1] ?? []));
}

/** pid -> [ppid, state] of every process, zombies included. */
function processTable(): Map<number, { ppid: number; state: string }> {
  const table = new Map<number, { ppid: number; state: string }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      table.set(Number(name), { ppid: Number(ppid), state: state! });
    } catch {
      // exited meanwhile
    }
  }
  return table;
}

function childrenOf(pid: number): { pid: number; state: string }[] {
  return [...processTable()].filter(([, p]) => p.ppid === pid).map(([child, p]) => ({ pid: child, state: p.state }));
}

/**
 * The kernel closes a control connection's server end a moment after the client got its
 * answer; no event says when. Bounded poll on /proc, as in sys.test.ts.
 */
async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A copy of this build that reads only the given state formats: an older baton (formats up
 * to 1) or a newer one that dropped format 2. Its modules resolve to this repository's.
 */
function buildWithFormats(dir: string, oldest: number, current: number, version: string): string {
  mkdirSync(join(dir, 'dist'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'baton-reload', version, type: 'module' }));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  cpSync(join(ROOT, 'dist/src'), join(dir, 'dist/src'), { recursive: true });
  const state = join(dir, 'dist/src/upgrade/state.js');
  const text = readFileSync(state, 'utf8');
  const patched = text
    .replace('export const STATE_FORMAT = 2;', `export const STATE_FORMAT = ${current};`)
    .replace('export const OLDEST_FORMAT = 1;', `export const OLDEST_FORMAT = ${oldest};`);
  assert.notEqual(patched, text, 'state.js no longer declares its formats as expected');
  writeFileSync(state, patched);
  return join(dir, 'dist/src/cli/main.js');
}

test('10 upgrades under keep-alive and new-connection load: 0 failed, same pid and workers, full history, no zombie, no fd leaked', async (t) => {
  // The workers adopted are the ones serving: no standby left by the reload below.
  const b = await startBaton({ argv: v1, args: ['--workers', '2', '--keep-previous', '0'] });
  t.after(() => b.dispose());
  const pid = b.proc.pid!;
  const port = await b.port();
  const reload = await b.reload(v2, 'drained');
  assert.ok(reload.ok, JSON.stringify(reload));
  const before = await b.status();
  const fdsBefore = heldFds(pid, b.control);
  const notifyDirs = notifyDirsOf(pid);
  assert.ok(notifyDirs.length > 0, 'the workers have notify sockets');

  const l = load(port);
  const times: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = Date.now();
    const r = await upgradeCli(b);
    times.push(Date.now() - t0);
    assert.equal(r.code, 0, `upgrade ${i + 1}: ${r.stderr}\n${b.out}`);
    assert.match(r.stdout, new RegExp(`^upgraded: pid ${pid} now runs baton .* 2 worker\\(s\\) carry on`));
  }
  const report = await l.stop();
  assertNothingLost(report, b.out);
  assert.ok(report.ok > 1000, `too little load to prove anything: ${report.ok}`);
  t.diagnostic(`upgrade ms: ${times.join(' ')}; ${report.ok} requests, p99 ${report.latency.p99.toFixed(1)} ms, max ${report.latency.max.toFixed(1)} ms`);

  const after = await b.status();
  assert.equal(after.pid, pid);
  assert.equal(after.serving, before.serving);
  assert.deepEqual(historyOf(after), historyOf(before));
  assert.deepEqual(after.history, before.history, 'every record comes through unchanged');
  assert.deepEqual(workerPids(after), workerPids(before), 'the workers were adopted, not restarted');
  assert.ok(after.uptimeMs > before.uptimeMs, "uptime is the service's, not the image's");
  assert.equal((b.out.match(/upgraded in place/g) ?? []).length, 10);

  // The supervisor holds exactly what it held before: the same sockets, as many pipes.
  for (const d of notifyDirs) assert.ok(!existsSync(d), `${d}: left behind by the first image`);
  assert.deepEqual(heldFds(pid, b.control), fdsBefore, `fds now:\n${fds(pid).join('\n')}\n${readFileSync('/proc/net/unix', 'utf8')}`);
  // Its children: the two workers and nothing else, no zombie (the checks were reaped too).
  const kids = childrenOf(pid);
  for (const c of kids) assert.notEqual(c.state, 'Z', `zombie child ${c.pid}`);
  assert.deepEqual(
    kids.map((c) => c.pid).sort((x, y) => x - y),
    workerPids(after),
  );

  assert.equal(await b.stop(), 0);
  const table = processTable();
  for (const w of workerPids(after)) assert.ok(!table.has(w), `worker ${w} outlived the stop (orphaned)`);
});

test('a broken new baton is refused: syntax error, missing file, older and newer state formats; the service serves on', async (t) => {
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const dir = tempDir('baton-upgrade-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pid = b.proc.pid!;
  const port = await b.port();
  const before = await b.status();

  const syntax = join(dir, 'syntax.js');
  writeFileSync(syntax, 'export const = ;\n');
  const older = buildWithFormats(join(dir, 'older'), 1, 1, '0.0.1');
  const newer = buildWithFormats(join(dir, 'newer'), 3, 3, '9.0.0');
  const cases: [string, string, RegExp][] = [
    ['syntax error', syntax, /failed its check: it exited with code 1[\s\S]*SyntaxError/],
    ['missing file', join(dir, 'nope/cli.js'), /nope\/cli\.js: no such file/],
    ['older baton', older, /state is format 2, newer than this baton understands \(baton 0\.0\.1 reads state formats 1 to 1\)/],
    ['newer baton without format 2', newer, /state is format 2, older than this baton understands \(baton 9\.0\.0 reads state formats 3 to 3\)/],
  ];
  const l = load(port);
  for (const [what, entry, why] of cases) {
    const r = await upgradeCli(b, '--exec', entry);
    assert.equal(r.code, 1, `${what}: ${r.stdout}`);
    assert.match(r.stderr, /upgrade refused: /, what);
    assert.match(r.stderr, why, what);
    assert.match(r.stderr, /the running supervisor carries on/, what);
  }
  // Still the same supervisor, untouched, and it can still be upgraded.
  const mid = await b.status();
  assert.equal(mid.pid, pid);
  assert.deepEqual(workerPids(mid), workerPids(before));
  assert.deepEqual(historyOf(mid), historyOf(before));
  assert.doesNotMatch(b.out, /upgrade: execve/);
  const ok = await upgradeCli(b);
  assert.equal(ok.code, 0, ok.stderr);
  const report = await l.stop();
  assertNothingLost(report, b.out);
});

test('a failed execve puts every FD_CLOEXEC flag back as it was', () => {
  const flagged = memfd('flagged');
  const plain = memfd('plain');
  setCloexec(plain, false);
  try {
    assert.throws(
      () =>
        inheriting([flagged, plain], () => {
          assert.deepEqual([isCloexec(flagged), isCloexec(plain)], [false, false]);
          return execve('/nonexistent/baton', ['baton'], process.env);
        }),
      { code: 'ENOENT' },
    );
    assert.deepEqual([isCloexec(flagged), isCloexec(plain)], [true, false]);
  } finally {
    closeFd(flagged);
    closeFd(plain);
  }
});

test('the check mode reads states: this format, format 1 (one supervisor, as baton 0.1.0 wrote it), a newer one (999), an older one and garbage', async (t) => {
  const dir = tempDir('baton-state-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const v1State = {
    format: 1,
    writtenBy: { version: '0.1.0', entry: CLI, pid: 1 },
    writtenAt: Date.now(),
    request: { reply: null, restartWorkers: false, requestedAt: Date.now() },
    service: { name: 'x', controlPath: '/tmp/x.sock', argv: ['node', 'a.js'], cwd: '/', workers: 1, drainTimeoutMs: 1000, readyTimeoutMs: 1000 },
    listeners: [{ name: 'tcp-1', kind: 'tcp', host: '127.0.0.1', port: 1, fd: 9 }],
    control: { path: '/tmp/x.sock', fd: 10 },
    supervisor: { startedAt: 1, nextGeneration: 2, nextHandoff: 2, serving: 1, upgrades: 1 },
    leftovers: [],
    history: [],
    generations: [],
    logs: [],
  };
  // Format 2: the same supervisor as the one service in a list, beside the control socket.
  const valid = {
    format: 2,
    writtenBy: v1State.writtenBy,
    writtenAt: v1State.writtenAt,
    request: v1State.request,
    control: v1State.control,
    group: null,
    upgrades: 1,
    leftovers: [],
    services: [
      {
        options: v1State.service,
        listeners: v1State.listeners,
        supervisor: { startedAt: 1, nextGeneration: 2, nextHandoff: 2, serving: 1 },
        history: [],
        generations: [],
      },
    ],
    logs: [],
  };
  const checkWith = async (content: string): Promise<{ code: number | null; out: string }> => {
    const file = join(dir, 'state.json');
    writeFileSync(file, content);
    const fd = openSync(file, 'r');
    try {
      const child = spawn(
        process.execPath,
        [CLI, 'start', '--upgrade-check=3', '--control', join(dir, 'c.sock'), '--listen', '127.0.0.1:0', '--', 'node', 'a.js'],
        {
          stdio: ['ignore', 'pipe', 'pipe', fd],
        },
      );
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d));
      child.stderr!.on('data', (d: Buffer) => (out += d));
      const [code] = (await once(child, 'exit')) as [number | null];
      return { code, out };
    } finally {
      closeSync(fd);
    }
  };
  const good = await checkWith(JSON.stringify(valid));
  assert.equal(good.code, 0, good.out);
  assert.match(good.out, /^baton upgrade check: ok: baton \S+, state format 2, 1 service\(s\), 1 listener\(s\), 0 worker\(s\)/);
  const old = await checkWith(JSON.stringify(v1State));
  assert.equal(old.code, 0, old.out);
  assert.match(old.out, /^baton upgrade check: ok: baton \S+, state format 1, 1 service\(s\), 1 listener\(s\), 0 worker\(s\)/);
  const oldBroken = await checkWith(JSON.stringify({ ...v1State, supervisor: { ...v1State.supervisor, upgrades: -1 } }));
  assert.equal(oldBroken.code, 1);
  assert.match(oldBroken.out, /invalid baton state \(format 1\) at 'supervisor\.upgrades'/);
  // A baton of several services cannot become one supervisor (the command line changed).
  const group = await checkWith(JSON.stringify({ ...valid, group: { name: 'baton', startedAt: 1 } }));
  assert.equal(group.code, 1);
  assert.match(group.out, /the running baton runs several services \(x\), and its command line .* starts one supervisor/);
  const future = await checkWith(JSON.stringify({ ...valid, format: 999, somethingNew: true }));
  assert.equal(future.code, 1);
  assert.match(
    future.out,
    /state is format 999, newer than this baton understands \(baton \S+ reads state formats 1 to 2\): a supervisor cannot be upgraded to an older baton/,
  );
  const past = await checkWith(JSON.stringify({ ...valid, format: 0 }));
  assert.equal(past.code, 1);
  assert.match(past.out, /state is format 0, older than this baton understands/);
  const changed = await checkWith(JSON.stringify({ ...valid, services: [{ ...valid.services[0], listeners: [{ ...v1State.listeners[0], fd: 'nine' }] }] }));
  assert.equal(changed.code, 1);
  assert.match(changed.out, /invalid baton state \(format 2\) at 'services\.0\.listeners\.0\.fd'/);
  const garbage = await checkWith('{"hello":');
  assert.equal(garbage.code, 1);
  assert.match(garbage.out, /not a baton state: it is not JSON/);
});

test('after an upgrade a reload and a scale work exactly as before; new workers inherit nothing of the supervisor', async (t) => {
  // The old workers exit after the reload, rather than stay as a standby.
  const b = await startBaton({ argv: v1, args: ['--workers', '2', '--keep-previous', '0'] });
  t.after(() => b.dispose());
  const pid = b.proc.pid!;
  const port = await b.port();
  const l = load(port);
  const up = await upgradeCli(b);
  assert.equal(up.code, 0, up.stderr);

  // The reload drains the adopted workers over their carried IPC channel: they must answer
  // "accepting stopped" (else the transfer waits for its 5 s timeout) and exit by themselves.
  const old = workerPids(await b.status());
  const rel = await b.reload(v2);
  assert.ok(rel.ok, JSON.stringify(rel));
  const rec = rel.result as HandoffRecord;
  assert.equal(rec.state, 'done');
  assert.ok(rec.transferMs! < 2000, `transfer took ${rec.transferMs} ms: the adopted workers did not answer the drain`);
  await b.waitFor(new RegExp(`worker 1\\.0 exited pid=${old[0]} code=0`));
  await b.waitFor(new RegExp(`worker 1\\.1 exited pid=${old[1]} code=0`));

  const sc = await runCli(['scale', '--control', b.control, '3']);
  assert.equal(sc.code, 0, sc.stderr);
  const s = await b.status();
  assert.equal(s.serving, 2);
  const g = s.generations.find((x) => x.number === 2)!;
  assert.equal(g.ready, 3);

  // Upgrade again (gen 2's workers adopted), then SIGUSR2 does the same, then scale down.
  const up2 = await upgradeCli(b);
  assert.equal(up2.code, 0, up2.stderr);
  b.proc.kill('SIGUSR2');
  await b.waitFor(/(upgraded in place[\s\S]*){3}/);
  const down = await runCli(['scale', '--control', b.control, '1']);
  assert.equal(down.code, 0, down.stderr);
  const rel2 = await b.reload(v1);
  assert.ok(rel2.ok, JSON.stringify(rel2));

  // A worker spawned by the new image shares no socket or pipe with the supervisor but the
  // listener (and what this test process itself inherited, which everything here inherits).
  const after = await b.status();
  assert.equal(after.pid, pid);
  const fresh = after.generations.find((x) => x.number === after.serving)!.workers[0]!.pid;
  const expected = new Set([...inodes(process.pid), ...after.listeners.map((x) => String(x.inode))]);
  const shared = [...inodes(fresh)].filter((i) => inodes(pid).has(i) && !expected.has(i));
  assert.deepEqual(shared, [], `worker ${fresh} inherited supervisor fds:\n${fds(fresh).join('\n')}`);
  assert.deepEqual(
    historyOf(after).map((h) => h.replace(/^#\d+ /, '')),
    ['start -->1 done', 'reload 1->2 done', 'reload 2->3 done'],
  );

  // `baton logs` still has what the first image logged.
  const logs = await runCli(['logs', '--control', b.control, '--lines', '2000']);
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /handoff 1: generation 1 serves[\s\S]*upgraded in place[\s\S]*handoff 3: generation 3 serves/);

  const report = await l.stop();
  assertNothingLost(report, b.out);
  assert.equal(await b.stop(), 0);
});

test('--restart-workers: a fresh generation takes over, the adopted one drains; 0 failed', async (t) => {
  const b = await startBaton({ argv: v1, args: ['--workers', '2'] });
  t.after(() => b.dispose());
  const pid = b.proc.pid!;
  const port = await b.port();
  const l = load(port);
  const seen = new Set(workerPids(await b.status()));
  for (let i = 0; i < 3; i++) {
    const r = await upgradeCli(b, '--restart-workers');
    assert.equal(r.code, 0, `${r.stderr}\n${b.out}`);
    assert.match(r.stdout, /workers replaced: #\d+ .* upgrade .* done/);
  }
  const report = await l.stop();
  assertNothingLost(report, b.out);
  const s = await b.status();
  assert.equal(s.pid, pid);
  assert.equal(s.serving, 4);
  assert.deepEqual(
    s.history.map((r) => r.trigger),
    ['start', 'upgrade', 'upgrade', 'upgrade'],
  );
  const serving = s.generations.find((g) => g.number === 4)!.workers.map((w) => w.pid);
  for (const w of serving) assert.ok(!seen.has(w), 'the serving workers are new');
  // The replaced workers drain and exit; the new image reaps them (no zombie left).
  await until('the old generations to exit', () => childrenOf(pid).length === 2, 20_000);
  assert.deepEqual(
    childrenOf(pid)
      .map((c) => c.pid)
      .sort((x, y) => x - y),
    [...serving].sort((x, y) => x - y),
  );
  assert.equal(await b.stop(), 0);
});

test('round-robin: adopting is refused with the way out; --restart-workers works, 0 failed', async (t) => {
  const b = await startBaton({ argv: v1, args: ['--distribution', 'round-robin', '--workers', '2'] });
  t.after(() => b.dispose());
  const l = load(await b.port());
  const r = await upgradeCli(b);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /upgrade refused: with --distribution round-robin .* use baton upgrade --restart-workers; the running supervisor carries on/);
  for (let i = 0; i < 2; i++) {
    const up = await upgradeCli(b, '--restart-workers');
    assert.equal(up.code, 0, `${up.stderr}\n${b.out}`);
  }
  const report = await l.stop();
  assertNothingLost(report, b.out);
  const s = await b.status();
  assert.equal(s.pid, b.proc.pid);
  assert.equal(s.serving, 3);
  // Round-robin spreads evenly: both new workers answered.
  assert.ok(Object.keys(report.bodies).includes('gen=3'), JSON.stringify(report.bodies));
});

test('two services under one baton: upgrades under load on both, adopting then restarting the workers: 0 failed on both, same pid', async (t) => {
  const services = { api: { listen: ['127.0.0.1:0'], command: v1, workers: 2 }, web: { listen: ['127.0.0.1:0'], command: v2 } };
  const c = configDir(JSON.stringify({ control: './ctl.sock', services }));
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  const b = cli(['start'], { cwd: c.dir });
  t.after(() => b.kill());
  await b.waitFor(
    /api.*handoff 1: generation 1 serves[\s\S]*web.*handoff 1: generation 1 serves|web.*handoff 1: generation 1 serves[\s\S]*api.*handoff 1: generation 1 serves/,
  );
  const control = join(c.dir, 'ctl.sock');
  const status = async (): Promise<GroupStatus> => JSON.parse((await runCli(['status', '--control', control, '--json'])).stdout) as GroupStatus;
  const portOf = (s: GroupStatus, name: string): number => Number(/:(\d+)$/.exec(s.services.find((x) => x.name === name)!.listeners[0]!.address)![1]);
  const pidsOf = (s: GroupStatus): number[] => s.services.flatMap(workerPids);
  const before = await status();
  const loads = { api: load(portOf(before, 'api')), web: load(portOf(before, 'web')) };

  const up = await runCli(['upgrade', '--control', control, '--quiet']);
  assert.equal(up.code, 0, `${up.stderr}\n${b.out}`);
  assert.match(up.stdout, new RegExp(`^upgraded: pid ${b.proc.pid} now runs baton .* 3 worker\\(s\\) carry on`));
  const mid = await status();
  assert.equal(mid.pid, b.proc.pid);
  assert.deepEqual(pidsOf(mid), pidsOf(before), 'the workers of both services were adopted');
  assert.ok(mid.uptimeMs > before.uptimeMs, "uptime is the group's, not the image's");
  assert.deepEqual(
    mid.services.map((x) => historyOf(x)),
    before.services.map((x) => historyOf(x)),
  );

  const again = await runCli(['upgrade', '--control', control, '--quiet', '--restart-workers']);
  assert.equal(again.code, 0, `${again.stderr}\n${b.out}`);
  assert.match(again.stdout, /^api: #2 .* upgrade .* done/m);
  assert.match(again.stdout, /^web: #2 .* upgrade .* done/m);
  const after = await status();
  assert.equal(after.pid, b.proc.pid);
  assert.deepEqual(
    after.services.map((x) => [x.name, x.serving]),
    [
      ['api', 2],
      ['web', 2],
    ],
  );
  // A reload of one service still works in the new image, through the carried control socket.
  const rel = await runCli(['reload', '--control', control, '--quiet', 'web']);
  assert.equal(rel.code, 0, rel.stderr);

  for (const [name, l] of Object.entries(loads)) {
    const r = await l.stop();
    assertNothingLost(r, b.out);
    assert.ok(r.ok > 200, `${name}: too little load to prove anything: ${r.ok}`);
  }
  const stop = await runCli(['stop', '--control', control]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(await b.exited, 0);
});
