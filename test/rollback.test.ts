// Warm standby, `baton rollback`, probation and canary (issue 16).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { mixedClients, startLoad } from '../bench/load.js';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { alive } from './faults/harness.js';
import { type Baton, CLI, FIXTURES, ROOT, runCli, startBaton } from './helpers/baton.js';

const version = (tag: string, ...faults: string[]): string[] => ['node', join(FIXTURES, 'faulty.mjs'), `--tag=${tag}`, ...faults];
const MIXED = mixedClients(3, 3, 4);

function gen(s: StatusReport, n: number): StatusReport['generations'][number] {
  const g = s.generations.find((x) => x.number === n);
  assert.ok(g, `no generation ${n} in ${JSON.stringify(s.generations.map((x) => [x.number, x.state]))}`);
  return g;
}

/** The pids of generation n's workers, sorted: the same processes, or not. */
function pidsOf(s: StatusReport, n: number): number[] {
  return gen(s, n)
    .workers.map((w) => w.pid)
    .sort();
}

/** Mixed load that counts a 500 as an answer: the versions under probation here answer 500 on purpose. */
function loadTaking500s(port: number): ReturnType<typeof startLoad> {
  return startLoad({
    target: { host: '127.0.0.1', port },
    clients: MIXED,
    maxRequests: 300_000,
    maxDurationMs: 60_000,
    expect: (status) => status === 200 || status === 500,
  });
}

/** Polls status (bounded) until `ok` holds. */
async function until(b: Baton, ok: (s: StatusReport) => boolean, what: string, timeoutMs = 15_000): Promise<StatusReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await b.status();
    if (ok(s)) return s;
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}: ${JSON.stringify({ gens: s.generations.map((g) => [g.number, g.state, g.workers.map((w) => w.state)]), standby: s.standby })}\n${b.out}`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('rollback under keep-alive and new-connection load: 0 failed, the standby answers again, its accept time in the history', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--workers', '2', '--keep-previous', '1m'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const v1pids = pidsOf(await b.status(), 1);
  assert.ok((await b.reload(version('v2'))).ok);
  const kept = await until(b, (s) => s.standby?.state === 'standby', 'generation 1 in standby');
  assert.equal(kept.standby!.generation, 1);
  assert.ok(kept.standby!.leftMs > 50_000 && kept.standby!.leftMs <= 60_000, JSON.stringify(kept.standby));
  assert.deepEqual(
    gen(kept, 1).workers.map((w) => w.state),
    ['standby', 'standby'],
  );

  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000 });
  await new Promise((r) => setTimeout(r, 300));
  const before = load.snapshot().ok;
  const r = await runCli(['rollback', '--control', b.control, '--reason', 'test']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  // Load after it too: generation 1 alone accepts new connections now (2 drains).
  await new Promise((r) => setTimeout(r, 500));
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors) + '\n' + b.out);
  assert.ok(report.ok > before, 'the load ran during the rollback');
  assert.ok((report.bodies['gen=1'] ?? 0) > 0 && (report.bodies['gen=2'] ?? 0) > 0, JSON.stringify(report.bodies));

  const s = await b.status();
  assert.equal(s.serving, 1);
  // The same processes serve again: no start-up.
  assert.deepEqual(pidsOf(s, 1), v1pids);
  assert.equal(s.standby, null);
  const rec = s.history.at(-1)!;
  assert.equal(rec.trigger, 'rollback');
  assert.equal(rec.state, 'done');
  assert.equal(rec.reason, 'test');
  assert.equal(rec.from, 2);
  assert.equal(rec.to, 1);
  assert.ok(rec.resumeMs !== null && rec.resumeMs >= 0 && rec.resumeMs < 1000, JSON.stringify(rec));
  const answer = await fetch(`http://127.0.0.1:${port}/`).then((x) => x.text());
  assert.match(answer, /^gen=1 v1 /);
});

test('--probation 10s: a version that dies 2 s after ready is rolled back by itself; only what the dying worker held can fail', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--workers', '2', '--probation', '10s'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const v1pids = pidsOf(await b.status(), 1);
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000 });
  const t0 = Date.now();
  // --wait: the answer comes after probation, here a rollback.
  const r = await runCli(['reload', '--wait', '--control', b.control, '--', ...version('v2', '--crash-after-ready=2000', '--block-before-crash=0')]);
  const took = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 300));
  const report = await load.stop();
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, /rolled back: worker 2\.\d killed by SIGABRT/);
  assert.ok(took < 10_000, `rolled back after ${took} ms`);
  // Each of the 2 new workers aborts with what it had in flight: at most one request per
  // client loop each (a loop whose request died on the first may land on the second before
  // the rollback takes it out of service).
  const clients = MIXED.reduce((n, c) => n + c.concurrency, 0);
  assert.ok(report.failed <= 2 * clients, `${report.failed} failed: ${JSON.stringify(report.errors)}`);
  const s = await b.status();
  assert.equal(s.serving, 1);
  assert.deepEqual(pidsOf(s, 1), v1pids);
  const [failed, rollback] = s.history.slice(-2) as [HandoffRecord, HandoffRecord];
  assert.equal(failed.state, 'failed');
  assert.ok(
    failed.phases.some((p) => p.state === 'probation'),
    JSON.stringify(failed.phases),
  );
  assert.equal(rollback.trigger, 'rollback');
  assert.equal(rollback.state, 'done');
  assert.match(rollback.reason ?? '', /^probation of generation 2: worker 2\.\d killed by SIGABRT/);
  assert.match(b.out, /rollback to generation 1: probation of generation 2/);
});

test('--probation 10s --max-error-rate 5%: a version answering 500 is rolled back within probation; reload --wait exits non-zero with the reason', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--workers', '2', '--probation', '10s', '--max-error-rate', '5%'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const load = loadTaking500s(port);
  const t0 = Date.now();
  const r = await runCli(['reload', '--wait', '--control', b.control, '--', ...version('v2', '--status=500')]);
  const took = Date.now() - t0;
  const report = await load.stop();
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(
    r.stderr,
    /reload failed: rolled back: \d+ of \d+ answers were 5xx \(100% , limit 5%\)|reload failed: rolled back: \d+ of \d+ answers were 5xx \(100%, limit 5%\)/,
  );
  assert.ok(took < 10_000, `rolled back after ${took} ms`);
  assert.equal(report.failed, 0, JSON.stringify(report.errors));
  const s = await b.status();
  assert.equal(s.serving, 1);
  assert.equal(s.history.at(-1)!.trigger, 'rollback');
  assert.equal(await fetch(`http://127.0.0.1:${port}/`).then((x) => x.status), 200);
});

/** Processes whose parent is `pid`. */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

test('a good version under probation is promoted; the standby leaves when --keep-previous ends; processes, fds and RSS back where they were', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--workers', '2', '--probation', '1s', '--keep-previous', '2s'] });
  t.after(() => b.dispose());
  const pid = b.proc.pid!;
  const fds = (): number => readdirSync(`/proc/${pid}/fd`).length;
  const before = { procs: children(pid).length, fds: fds(), rss: (await b.status()).generations[0]!.workers.reduce((n, w) => n + (w.rssBytes ?? 0), 0) };
  const r = await runCli(['reload', '--wait', '--control', b.control, '--', ...version('v2')]);
  assert.equal(r.code, 0, r.stderr);
  let s = await b.status();
  assert.equal(s.serving, 2);
  assert.equal(s.history.at(-1)!.state, 'done');
  assert.ok(s.history.at(-1)!.phases.some((p) => p.state === 'probation'));
  assert.equal(s.standby?.generation, 1);
  assert.equal(children(pid).length, before.procs * 2, 'the standby is alive');
  s = await until(b, (x) => x.generations.length === 1, 'the standby to leave', 10_000);
  assert.equal(s.standby, null);
  assert.match(b.out, /generation 1 leaves standby: --keep-previous \(2000 ms\) is over/);
  assert.equal(children(pid).length, before.procs);
  // A control connection just answered may still be closing on baton's side: bounded wait.
  for (let i = 0; i < 40 && fds() !== before.fds; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(fds(), before.fds);
  const rss = s.generations[0]!.workers.reduce((n, w) => n + (w.rssBytes ?? 0), 0);
  assert.ok(rss < before.rss * 1.5, `workers' RSS ${rss} vs ${before.rss} before`);
});

/** Fresh connections (one request each), counted by the generation that answered. */
async function shareOf(port: number, n: number): Promise<{ failed: number; bodies: Record<string, number>; errors: unknown }> {
  const report = await startLoad({ target: { host: '127.0.0.1', port }, clients: [{ kind: 'fresh', concurrency: 8 }], maxRequests: n, maxDurationMs: 60_000 })
    .done;
  return report;
}

test('--canary 1 on 4 workers, round-robin: a fifth of 10,000 connections; `baton rollback` drops it with 0 failed', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--workers', '4', '--distribution', 'round-robin'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const v1pids = pidsOf(await b.status(), 1);
  const r = await runCli(['reload', '--canary', '1', '--probation', '1m', '--control', b.control, '--', ...version('v2')]);
  assert.equal(r.code, 0, r.stderr);
  const s = await b.status();
  assert.equal(s.handoff?.state, 'canary');
  assert.equal(gen(s, 2).workers.length, 1);
  const report = await shareOf(port, 10_000);
  assert.equal(report.failed, 0, JSON.stringify(report.errors));
  const canary = report.bodies['gen=2'] ?? 0;
  assert.ok(Math.abs(canary - 2000) <= 100, `the canary answered ${canary} of 10000: ${JSON.stringify(report.bodies)}`);

  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000 });
  await new Promise((r) => setTimeout(r, 300));
  const rb = await runCli(['rollback', '--control', b.control, '--reason', 'not today']);
  assert.equal(rb.code, 0, rb.stderr);
  await new Promise((r) => setTimeout(r, 300));
  const during = await load.stop();
  assert.equal(during.failed, 0, JSON.stringify(during.errors));
  const after = await b.status();
  assert.equal(after.serving, 1);
  assert.deepEqual(pidsOf(after, 1), v1pids, 'the old generation never stopped');
  const rec = after.history.at(-1)!;
  assert.equal(rec.to, 2);
  assert.equal(rec.state, 'failed');
  assert.match(rec.error ?? '', /canary failed: not today/);
});

test('a canary answering 500 is dropped by itself, the old generation serving throughout; a good one is promoted', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--workers', '2', '--distribution', 'round-robin', '--keep-previous', '1m'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const v1pids = pidsOf(await b.status(), 1);
  const load = loadTaking500s(port);
  const bad = await runCli([
    'reload',
    '--canary',
    '1',
    '--probation',
    '10s',
    '--max-error-rate',
    '5%',
    '--wait',
    '--control',
    b.control,
    '--',
    ...version('v2', '--status=500'),
  ]);
  const report = await load.stop();
  assert.equal(bad.code, 1, bad.stdout);
  assert.match(bad.stderr, /canary failed: \d+ of \d+ answers were 5xx/);
  assert.equal(report.failed, 0, JSON.stringify(report.errors));
  let s = await b.status();
  assert.equal(s.serving, 1);
  assert.deepEqual(pidsOf(s, 1), v1pids);
  assert.equal(gen(s, 1).state, 'serving');

  const good = await runCli(['reload', '--canary', '1', '--probation', '1s', '--wait', '--control', b.control, '--', ...version('v3')]);
  assert.equal(good.code, 0, good.stderr);
  s = await b.status();
  assert.equal(s.serving, 3);
  assert.equal(gen(s, 3).ready, 2);
  assert.deepEqual(
    s.history.at(-1)!.phases.map((p) => p.state),
    ['starting', 'canary', 'starting', 'transferring', 'done'],
  );
  assert.equal(s.standby?.generation, 1);
});

test('--canary with --handoff exclusive is refused with the reason', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--handoff', 'exclusive'] });
  t.after(() => b.dispose());
  const r = await runCli(['reload', '--canary', '1', '--control', b.control]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--canary needs --handoff overlap/);
  assert.equal((await b.status()).history.length, 1);
});

test('a newer reload replaces the standby; supervisor upgrade refuses while one is kept, --drop-standby ends it first; a takeover ends it, never orphaned', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--keep-previous', '1m'] });
  t.after(() => b.dispose());
  assert.ok((await b.reload(version('v2'))).ok);
  const s = await until(b, (x) => x.standby?.state === 'standby', 'generation 1 in standby');
  const standbyPid = gen(s, 1).workers[0]!.pid;
  const refused = await runCli(['upgrade', '--control', b.control, '--quiet']);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /generation 1 is kept as a warm standby for rollback \(\d+ s left\) and a supervisor upgrade does not carry it: retry with --drop-standby/,
  );
  assert.ok(alive(standbyPid), 'a refused upgrade changes nothing');
  const up = await runCli(['upgrade', '--control', b.control, '--drop-standby']);
  assert.equal(up.code, 0, up.stderr + up.stdout);
  assert.match(up.stdout, /generation 1 leaves standby: an upgrade does not carry it/);
  assert.equal(alive(standbyPid), false);
  const after = await b.status();
  assert.equal(after.standby, null);
  assert.equal(after.serving, 2);

  // A newer reload replaces the standby: the older one leaves.
  assert.ok((await b.reload(version('v3'))).ok);
  const s2 = await until(b, (x) => x.standby?.state === 'standby', 'generation 2 in standby');
  const pid2 = gen(s2, 2).workers[0]!.pid;
  assert.ok((await b.reload(version('v4'))).ok);
  const s3 = await until(
    b,
    (x) => x.standby?.generation === 3 && x.standby.state === 'standby' && !x.generations.some((g) => g.number === 2),
    'generation 3 in standby, 2 gone',
  );
  assert.equal(alive(pid2), false, 'the replaced standby exited');
  assert.match(b.out, /generation 2 leaves standby: a newer generation replaces it/);
  const pid3 = gen(s3, 3).workers[0]!.pid;

  // A takeover: the old supervisor drains everything, its standby included.
  const next = spawn(process.execPath, [CLI, 'start', '--takeover', '--control', b.control, '--', ...version('v5')], { cwd: ROOT, stdio: 'ignore' });
  t.after(() => next.kill('SIGTERM'));
  assert.equal(await b.exited, 0, b.out);
  assert.match(b.out, /generation 3 leaves standby: the supervisor stops/);
  assert.equal(alive(pid3), false, 'the standby left with the old supervisor');
});

test('--keep-previous 0: rollback reloads the previous command line; recorded with its reason', async (t) => {
  const b = await startBaton({ argv: version('v1'), args: ['--keep-previous', '0'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const none = await runCli(['rollback', '--control', b.control]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /nothing to roll back to: this service has had one generation only/);
  assert.ok((await b.reload(version('v2'))).ok);
  await until(b, (s) => s.generations.length === 1, 'generation 1 exited');
  const r = await runCli(['rollback', '--control', b.control, '--reason', 'bad v2']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(await fetch(`http://127.0.0.1:${port}/`).then((x) => x.text()), /^gen=3 v1 /);
  const rec = (await b.status()).history.at(-1)!;
  assert.deepEqual([rec.trigger, rec.from, rec.to, rec.state, rec.reason, rec.resumeMs], ['rollback', 2, 3, 'done', 'bad v2', null]);
  assert.deepEqual(rec.argv, version('v1'));
});
