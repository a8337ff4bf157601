// Workers in any language, unmodified: fds 3.. with LISTEN_FDS, readiness by the notify
// protocol (READY=1, with no flag) or by staying up (--ready-after), a hint for a program
// that says nothing, STATUS= and the watchdog, and drain by signal for programs without
// baton's runtime.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type LoadReport, mixedClients, startLoad } from '../bench/load.js';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import { type Baton, EXAMPLES, FIXTURES, startBaton } from './helpers/baton.js';
import { assertNothingLost, assertReloadsCrossed } from './helpers/reloads.js';

// The system interpreter, when there is one: a version manager's shim costs ~200 ms per start.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const server = [PYTHON, join(EXAMPLES, 'python/server.py')];
// Debian's gunicorn (.ci/run installs it): systemd socket activation and READY=1 of its own.
const GUNICORN = spawnSync('gunicorn', ['--version']).status === 0;
const gunicorn = ['gunicorn', '--chdir', FIXTURES, '--workers', '2', 'wsgi:app'];

const MIXED = mixedClients(6, 6, 4);

/** 20 reloads of a Python server under mixed keep-alive and new-connection load. */
async function reloadUnderLoad(b: Baton): Promise<{ report: LoadReport; records: HandoffRecord[] }> {
  const port = await b.port();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 400_000, maxDurationMs: 120_000 });
  const records: HandoffRecord[] = [];
  for (let i = 0; i < 20; i++) {
    const reply = await b.reload();
    assert.ok(reply.ok, `reload ${i + 1} failed: ${JSON.stringify(reply)}`);
    records.push(reply.result as HandoffRecord);
  }
  const report = await load.stop();
  return { report, records };
}

/** Sockets a process holds, by inode. */
function socketInodes(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      return m ? [m[1]!] : [];
    } catch {
      return [];
    }
  });
}

/** Inodes of the notify sockets baton binds (in its private baton-notify-* directory). */
function notifySocketInodes(): Set<string> {
  const rows = readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1);
  // Num RefCount Protocol Flags Type St Inode Path
  return new Set(
    rows
      .map((r) => r.trim().split(/\s+/))
      .filter((f) => /\/baton-notify-[^/]+\//.test(f[7] ?? ''))
      .map((f) => f[6]!),
  );
}

test('Python example, no readiness flag (READY=1 counts by default): 20 reloads under load lose nothing', { timeout: 180_000 }, async (t) => {
  const b = await startBaton({ argv: server });
  t.after(() => b.dispose());
  const { report, records } = await reloadUnderLoad(b);
  assertReloadsCrossed(report, records, 500);
  const s = await b.status();
  assert.equal(s.serving, 21);
  // What it said with STATUS= is shown; it is a Python program: no runtime spoke for it.
  assert.equal(s.generations.find((g) => g.number === 21)!.workers[0]!.status, 'serving generation 21');
  t.diagnostic(`${report.ok} requests, ${report.rps.toFixed(0)}/s; reload ready in ${records.map((r) => r.readyMs).join(' ')} ms`);
  assert.equal(await b.stop(), 0);
});

test('gunicorn (Debian), no readiness flag: 20 reloads under load lose nothing', {
  timeout: 180_000,
  skip: !GUNICORN && 'gunicorn is not installed (apt-get install gunicorn; .ci/run does)',
}, async (t) => {
  const b = await startBaton({ argv: gunicorn });
  t.after(() => b.dispose());
  // It took the inherited listener (socket activation), not a port of its own (its default is 8000).
  await b.waitFor(new RegExp(`Listening at: http://127\\.0\\.0\\.1:${await b.port()} \\(\\d+\\)`));
  const { report, records } = await reloadUnderLoad(b);
  assertReloadsCrossed(report, records, 500);
  assert.equal((await b.status()).serving, 21);
  assert.doesNotMatch(b.out, /has said nothing/);
  t.diagnostic(`${report.ok} requests, ${report.rps.toFixed(0)}/s; reload ready in ${records.map((r) => r.readyMs).join(' ')} ms`);
  assert.equal(await b.stop(), 0);
});

test('Python example, ready after --ready-after: 20 reloads under load lose nothing', { timeout: 180_000 }, async (t) => {
  // --ready listen: READY=1 does not count, so the timer alone declares it ready.
  const b = await startBaton({ argv: server, args: ['--ready', 'listen', '--ready-after', '300ms'] });
  t.after(() => b.dispose());
  const { report, records } = await reloadUnderLoad(b);
  assertNothingLost(report);
  assert.ok(report.ok > 500, `too little load to prove anything: ${report.ok}`);
  // Declared ready by the timer: never before it ran out (READY=1 does not count in listen mode).
  for (const r of records) assert.ok(r.readyMs! >= 300, `ready after ${r.readyMs} ms, before --ready-after`);
  assert.equal((await b.status()).serving, 21);
  assert.equal(await b.stop(), 0);
});

test('a program that says nothing and has no --ready-after fails to start, with a hint', { timeout: 30_000 }, async (t) => {
  const b = await startBaton({
    argv: ['/bin/sh', join(FIXTURES, 'signals.sh')],
    args: ['--ready-timeout', '500ms', '--drain-timeout', '500ms'],
    waitReady: false,
  });
  t.after(() => b.dispose());
  assert.equal(await b.exited, 1);
  assert.match(
    b.out,
    /not ready after 500 ms \(it said nothing: neither baton's Node\.js runtime nor READY=1 on NOTIFY_SOCKET; for a program that says nothing use --ready-after\)/,
  );
});

test("a program that never says ready: a hint in the log and in reload's progress within 5 s", { timeout: 30_000 }, async (t) => {
  const b = await startBaton({ argv: server, args: ['--ready-timeout', '5s', '--drain-timeout', '500ms'] });
  t.after(() => b.dispose());
  const t0 = Date.now();
  let hintAt: number | null = null;
  const reply = await b.request({ cmd: 'reload', argv: ['/bin/sh', join(FIXTURES, 'signals.sh')], cwd: FIXTURES, wait: 'serving' }, (state, message) => {
    if (hintAt === null && state === 'hint' && /worker 2\.0 has said nothing for 3 s/.test(message)) hintAt = Date.now();
  });
  assert.equal(reply.ok, false, 'a program that never said ready took over');
  assert.ok(hintAt !== null, 'no hint in the reload progress');
  assert.ok(hintAt - t0 < 5000, `hint after ${hintAt - t0} ms`);
  assert.match(
    b.out,
    /worker 2\.0 has said nothing for 3 s: baton waits for it to load baton's Node\.js runtime [^\n]* or to send READY=1 on NOTIFY_SOCKET[^\n]*--ready-after <time>/,
  );
  // The Python example spoke at once: no hint for it.
  assert.doesNotMatch(b.out, /worker 1\.0 has said nothing/);
  assert.equal((await b.status()).serving, 1);
});

test('watchdog: a worker that stops sending WATCHDOG=1 is killed and restarted; STATUS= is shown', { timeout: 30_000 }, async (t) => {
  const b = await startBaton({ argv: [PYTHON, join(FIXTURES, 'watchdog.py')], args: ['--ready', 'notify', '--watchdog', '400ms'] });
  t.after(() => b.dispose());
  const first = (await b.status()).generations[0]!.workers[0]!;
  assert.equal(first.status, 'warming the cache');
  // The variables sd_watchdog_enabled() checks: the interval in µs, and the worker's own pid.
  await b.waitFor(new RegExp(`pid=${first.pid} WATCHDOG_USEC=400000 WATCHDOG_PID=${first.pid}`));
  await b.waitFor(/stopped pinging/);
  await b.waitFor(/worker 1\.0 failed its watchdog: no WATCHDOG=1 for 400 ms; killing it/);
  await b.waitFor(/restarting worker 1\.0/);
  await b.waitFor(/worker 1\.0 ready[^\n]*\n[\s\S]*worker 1\.0 ready/);
  const again = (await b.status()).generations[0]!.workers[0]!;
  assert.notEqual(again.pid, first.pid);
  assert.equal(again.restarts, 1);
});

test('--drain-signal tells a non-Node worker to drain; one that ignores it is SIGKILLed at the deadline', { timeout: 30_000 }, async (t) => {
  const sh = ['/bin/sh', join(FIXTURES, 'signals.sh')];
  const b = await startBaton({ argv: sh, args: ['--ready-after', '100ms', '--drain-signal', 'INT', '--drain-timeout', '1s'] });
  t.after(() => b.dispose());
  const g1 = (await b.status()).generations[0]!.workers[0]!.pid;
  await b.waitFor(new RegExp(`up pid=${g1} LISTEN_PID=${g1} LISTEN_FDS=1`));
  const r1 = await b.reload(undefined, 'drained');
  assert.ok(r1.ok, JSON.stringify(r1));
  // Output and the control reply travel apart: wait for the line rather than expect it already.
  await b.waitFor(/\[1\.0\] got SIGINT/);
  assert.equal((r1.result as HandoffRecord).cut, 0);
  assert.doesNotMatch(b.out, /worker 1\.0 killed at the drain deadline/);

  // Generation 2 was spawned while generation 1's notify socket was open: it must not hold
  // it (nor its own: that one is baton's end).
  const g2 = (await b.status()).generations.find((g) => g.number === 2)!.workers[0]!.pid;
  const leaked = socketInodes(g2).filter((ino) => notifySocketInodes().has(ino));
  assert.deepEqual(leaked, [], 'a worker inherited notify sockets');
  assert.ok(notifySocketInodes().size > 0, 'no notify socket seen in /proc/net/unix');

  // Generation 3 gets the default drain signal, SIGTERM, which the fixture ignores.
  const c = await startBaton({ argv: sh, args: ['--ready-after', '100ms', '--drain-timeout', '500ms'] });
  t.after(() => c.dispose());
  const r2 = await c.reload(undefined, 'drained');
  assert.ok(r2.ok, JSON.stringify(r2));
  await c.waitFor(/\[1\.0\] got SIGTERM, ignoring it/);
  await c.waitFor(/worker 1\.0 killed at the drain deadline/);
  const rec = r2.result as HandoffRecord;
  assert.ok(rec.drainedMs! >= 500, `old generation exited after ${rec.drainedMs} ms, before the deadline`);
});
