// Pools of workers: resized at run time, crash-safe, replaced a few at a time.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { test } from 'node:test';
import { request } from 'undici';
import { mixedClients, startLoad } from '../bench/load.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { assertHeldFailed, countHeld, until } from './faults/harness.js';
import { EXAMPLES, FIXTURES, runCli, startBaton, tempDir } from './helpers/baton.js';

const v1 = ['node', join(EXAMPLES, 'hello/v1.js')];
const v2 = ['node', join(EXAMPLES, 'hello/v2.js')];
const MIXED = mixedClients(4, 4, 2);

function serving(s: StatusReport): StatusReport['generations'][number] {
  const g = s.generations.find((x) => x.number === s.serving);
  assert.ok(g, 'no serving generation');
  return g;
}

test('scale 2 -> 4 -> 1 -> 3 under load: 0 failed, status matches every step', async (t) => {
  const b = await startBaton({ argv: v1, args: ['--workers', '2'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000 });
  for (const n of [4, 1, 3]) {
    const r = await runCli(['scale', '--control', b.control, String(n)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`scaled: ${n} of ${n} worker\\(s\\) ready`));
    const g = serving(await b.status());
    assert.equal(g.target, n);
    assert.equal(g.ready, n);
    assert.equal(g.workers.filter((w) => w.state === 'ready').length, n);
    assert.deepEqual(
      g.workers.map((w) => w.index),
      Array.from({ length: n }, (_, i) => i),
    );
  }
  const rel = await runCli(['scale', '--control', b.control, '--', '-1']);
  assert.equal(rel.code, 0, rel.stderr);
  assert.equal(serving(await b.status()).ready, 2);
  // A reload keeps the scaled size.
  assert.ok((await b.reload(v2)).ok);
  assert.equal(serving(await b.status()).ready, 2);
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors) + '\n' + b.out);
  const bad = await runCli(['scale', '--control', b.control, '0']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /cannot scale to 0 workers/);
});

test('SIGTTIN / SIGTTOU add and remove a worker', async (t) => {
  const b = await startBaton({ argv: v1, args: ['--workers', '2'] });
  t.after(() => b.dispose());
  b.proc.kill('SIGTTIN');
  await b.waitFor(/worker 1\.2 ready/);
  assert.equal(serving(await b.status()).target, 3);
  b.proc.kill('SIGTTOU');
  await b.waitFor(/worker 1\.2 exited/);
  assert.equal(serving(await b.status()).workers.length, 2);
});

test('kill -9 of a worker under load: it is replaced; only what it held can fail; load flows to the replacement', async (t) => {
  const b = await startBaton({ argv: ['node', join(FIXTURES, 'inflight.mjs')], args: ['--workers', '2'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const byPid = spread();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000, expect: byPid.expect });
  t.after(() => load.stop());
  const victim = serving(await b.status()).workers[0]!;
  const answers = (pid: number): number => byPid.counts.get(String(pid)) ?? 0;
  // The victim demonstrably serves the load, and holds a request of ours it cannot finish.
  await until('the victim answers the load', () => answers(victim.pid) >= 20);
  const slow: Promise<string>[] = [];
  while (!/\[1\.0\] slow request started/.test(b.out) && slow.length < 40) {
    slow.push(
      request(`http://127.0.0.1:${port}/slow?ms=4000`, { reset: true }).then(
        async (r) => `answered ${r.statusCode} ${await r.body.text()}`,
        (e: Error & { code?: string }) => e.code ?? e.message,
      ),
    );
    await b.waitFor(new RegExp(`(slow request started[^\\n]*\\n[\\s\\S]*){${slow.length}}`));
  }
  assert.match(b.out, /\[1\.0\] slow request started/, 'no slow request reached the victim');
  const onVictim = slow.length - (b.out.match(/\[1\.1\] slow request started/g)?.length ?? 0);
  // Frozen, what it holds cannot change before the kill; the other worker serves on meanwhile.
  process.kill(victim.pid, 'SIGSTOP');
  const other = serving(await b.status()).workers[1]!.pid;
  const before = answers(other);
  await until('the other worker answers while the victim is frozen', () => answers(other) >= before + 50);
  const c = countHeld(victim.pid, port);
  process.kill(victim.pid, 'SIGKILL');
  await b.waitFor(/worker 1\.0 killed by SIGKILL while serving/);
  await b.waitFor(/worker 1\.0 ready[^\n]*\n[\s\S]*worker 1\.0 ready/);
  const g = serving(await b.status());
  const replacement = g.workers[0]!.pid;
  assert.notEqual(replacement, victim.pid);
  await until('the replacement answers the load', () => answers(replacement) >= 20);
  const report = await load.stop();
  const lost = (await Promise.all(slow)).filter((r) => !r.startsWith('answered 200 gen=1 slow done pid=' + other));
  assert.equal(lost.length, onVictim, `slow requests on the victim: ${onVictim}, outcomes: ${JSON.stringify(await Promise.all(slow))}`);
  assertHeldFailed(report.failed + onVictim, c, onVictim, JSON.stringify(report.errors));
  assert.equal(g.ready, 2);
  assert.equal(g.workers[0]!.restarts, 1);
  t.diagnostic(
    `victim answered ${answers(victim.pid)}, replacement ${answers(replacement)}; ${report.failed} + ${onVictim} failed of ${c.held} held (${c.unread} unread)`,
  );
});

test('a crash loop backs off: restarts come at growing intervals, and it is reported', async (t) => {
  const dir = tempDir();
  const marker = join(dir, 'crash');
  const b = await startBaton({ argv: ['node', join(FIXTURES, 'crashloop.mjs')], env: { CRASH_MARKER: marker } });
  t.after(() => b.dispose());
  const port = await b.port();
  await request(`http://127.0.0.1:${port}/crash`).catch(() => undefined);
  await b.waitFor(/(1\.0[^\n]*delay_ms=[^\n]*\n[\s\S]*){5}/, 20_000);
  const delays = [...b.out.matchAll(/1\.0[^\n]*delay_ms=(\d+)/g)].map((m) => Number(m[1]));
  assert.ok(delays.length >= 5, b.out);
  for (let i = 1; i < 5; i++) assert.ok(delays[i]! > delays[i - 1]!, `delays must grow: ${delays.join(', ')}`);
  assert.match(b.out, /is crash-looping/);
  const s = await b.status();
  assert.equal(serving(s).workers[0]!.crashLoop, true);
  // The loop ends once the cause is gone: the next restart serves again.
  rmSync(marker);
  await b.waitFor(/worker 1\.0 ready[\s\S]*worker 1\.0 ready/, 20_000);
  const r = await request(`http://127.0.0.1:${port}/`);
  assert.equal(r.statusCode, 200);
  await r.body.text();
});

test('rolling reload --workers 4 --max-surge 1: never more than 5 alive, never fewer than 4 ready, 0 failed', async (t) => {
  const b = await startBaton({ argv: v1, args: ['--workers', '4', '--max-surge', '1'] });
  t.after(() => b.dispose());
  const port = await b.port();
  // When each pid answered first and last, and for which generation: what is served.
  const seen = new Map<string, { gen: string; first: number; last: number }>();
  const load = startLoad({
    target: { host: '127.0.0.1', port },
    clients: MIXED,
    maxRequests: 300_000,
    maxDurationMs: 60_000,
    expect: (status, body) => {
      const m = /^gen=(\d+) v\d pid=(\d+)/.exec(body);
      if (!m) return false;
      const now = performance.now();
      const s = seen.get(m[2]!) ?? { gen: m[1]!, first: now, last: now };
      s.last = now;
      seen.set(m[2]!, s);
      return status === 200;
    },
  });
  t.after(() => load.stop());
  await until('all 4 workers of generation 1 answer', () => [...seen.values()].filter((s) => s.gen === '1').length === 4);
  const mark = b.out.length;
  const reply = await b.reload(v2, 'drained');
  assert.ok(reply.ok, JSON.stringify(reply));
  await until('all 4 workers of generation 2 answer', () => [...seen.values()].filter((s) => s.gen === '2').length === 4);
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors) + '\n' + b.out);
  const olds = [...seen.values()]
    .filter((s) => s.gen === '1')
    .map((s) => s.last)
    .sort((a, b) => a - b);
  const news = [...seen.values()]
    .filter((s) => s.gen === '2')
    .map((s) => s.first)
    .sort((a, b) => a - b);
  assert.equal(olds.length, 4, JSON.stringify([...seen]));
  assert.equal(news.length, 4, JSON.stringify([...seen]));
  // At most 5 alive: when the (k+1)-th new worker first answers, k+1 new ones live, so k old
  // ones must have answered for the last time already.
  for (let k = 1; k < 4; k++)
    assert.ok(
      olds[k - 1]! < news[k]!,
      `new worker ${k + 1} answered before old worker ${k} stopped answering: last old answers ${olds.map(Math.round)}, first new ${news.map(Math.round)}`,
    );
  // Replay the supervisor's worker events in order: alive and accepting-ready counts.
  let alive = 4;
  let ready = 4;
  let maxAlive = alive;
  let minReady = ready;
  const events = { started: 0, ready: 0, draining: 0, exited: 0 };
  for (const m of b.out.slice(mark).matchAll(/worker \d+\.\d+ (started|ready|draining|exited)/g)) {
    const e = m[1] as keyof typeof events;
    events[e]++;
    if (e === 'started') alive++;
    if (e === 'ready') ready++;
    if (e === 'draining') ready--;
    if (e === 'exited') alive--;
    maxAlive = Math.max(maxAlive, alive);
    minReady = Math.min(minReady, ready);
  }
  // Each of the 8 workers shows up in the replay, or the replay proves nothing.
  assert.deepEqual(events, { started: 4, ready: 4, draining: 4, exited: 4 });
  assert.equal(maxAlive, 5);
  assert.equal(minReady, 4);
  assert.equal(alive, 4);
  const g = serving(await b.status());
  assert.equal(g.number, 2);
  assert.equal(g.ready, 4);
});

/** Share of answers per worker pid, from bodies like `gen=1 v1 pid=123`. */
function spread(): { expect: (status: number, body: string) => boolean; counts: Map<string, number> } {
  const counts = new Map<string, number>();
  return {
    counts,
    expect: (status, body) => {
      const pid = /pid=(\d+)/.exec(body)?.[1] ?? '?';
      counts.set(pid, (counts.get(pid) ?? 0) + 1);
      return status === 200;
    },
  };
}

test('round-robin: 10,000 connections over 4 workers, no share off the mean by more than 5%', async (t) => {
  const b = await startBaton({ argv: v1, args: ['--workers', '4', '--distribution', 'round-robin'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const s = spread();
  const report = await startLoad({
    target: { host: '127.0.0.1', port },
    clients: [{ kind: 'fresh', concurrency: 8 }],
    maxRequests: 10_000,
    maxDurationMs: 120_000,
    expect: s.expect,
  }).done;
  assert.equal(report.failed, 0, JSON.stringify(report.errors));
  assert.equal(report.ok, 10_000);
  assert.equal(s.counts.size, 4, `answers by pid: ${JSON.stringify([...s.counts])}`);
  for (const [pid, n] of s.counts) assert.ok(Math.abs(n - 2500) <= 125, `worker ${pid} got ${n} of 10000`);
});

test('round-robin reloads under keep-alive and new-connection load lose nothing', async (t) => {
  const b = await startBaton({ argv: v1, args: ['--workers', '2', '--distribution', 'round-robin'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000 });
  for (let i = 0; i < 5; i++) assert.ok((await b.reload(i % 2 ? v1 : v2)).ok);
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors) + '\n' + b.out);
  assert.ok(Object.keys(report.bodies).length >= 3, JSON.stringify(report.bodies));
});
