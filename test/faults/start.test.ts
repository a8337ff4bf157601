// Faults of the new version: it cannot start, hangs, or dies soon after it said ready.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import type { HandoffRecord } from '../../src/supervisor/handoff.js';
import { FIXTURES, startBaton, tempDir } from '../helpers/baton.js';
import {
  alive,
  assertHeldFailed,
  assertLoaded,
  assertNoneFailed,
  cases,
  describeHeld,
  faulty,
  flowing,
  freezeAndCount,
  load,
  record,
  until,
} from './harness.js';

const EXPECTED = cases({
  'start-exit': {
    fault: 'new version exits during start-up',
    expected: 'reload fails with its exit and last output lines; the old worker (same pid) serves on; 0 failed',
  },
  'start-hang': {
    fault: 'new version hangs before ready (--ready-timeout 1s)',
    expected: 'reload fails at the ready timeout; the hung worker is stopped; the old one serves on; 0 failed',
  },
  'ready-then-crash': {
    fault: 'new version becomes ready, then crashes (SIGABRT) within a second',
    expected: 'reload done (the old one already stopped accepting); the crashed worker is restarted; failed = what it held',
  },
  'crash-mid-handoff': {
    fault: 'rolling reload (2 workers, --max-surge 1): a new worker crashes while an old one drains',
    expected: 'reload fails and rolls back: the old generation is whole again (2 ready); the draining request completes; failed = what the crashed worker held',
  },
});

const v1 = faulty('--tag=v1');

test(EXPECTED['start-exit'].fault, async (t) => {
  const spec = EXPECTED['start-exit'];
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const pid = (await b.status()).generations[0]!.workers[0]!.pid;
  const l = load(t, port);
  await flowing(l);
  const reply = await b.reload(faulty('--tag=v2', '--exit-at-start'));
  assert.ok(!reply.ok);
  assert.match(reply.error, /worker 0 of generation 2 exited with code 3 before it was ready/);
  assert.ok(
    (reply.detail as HandoffRecord).output.some((x) => x.includes('v2: cannot start')),
    JSON.stringify(reply.detail),
  );
  await flowing(l);
  const s = await b.status();
  assert.equal(s.serving, 1);
  assert.equal(s.generations.find((g) => g.number === 1)!.workers[0]!.pid, pid);
  const rep = await l.stop();
  assertNoneFailed(rep, b);
  assertLoaded(rep);
  record(spec, { observed: `${reply.error}; gen 1 pid unchanged` }, rep);
});

test(EXPECTED['start-hang'].fault, async (t) => {
  const spec = EXPECTED['start-hang'];
  const b = await startBaton({ argv: v1, args: ['--ready-timeout', '1s'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const pid = (await b.status()).generations[0]!.workers[0]!.pid;
  const l = load(t, port);
  await flowing(l);
  const t0 = Date.now();
  const reply = await b.reload(['node', join(FIXTURES, 'never-ready.mjs')]);
  const took = Date.now() - t0;
  assert.ok(!reply.ok);
  assert.match(reply.error, /1 of 1 new worker\(s\) of generation 2 not ready after 1000 ms/);
  const hung = Number(/worker 2\.0 started pid=(\d+)/.exec(b.out)![1]);
  const goneIn = await until('the hung worker has exited', () => !alive(hung));
  await flowing(l);
  const s = await b.status();
  assert.equal(s.serving, 1);
  assert.equal(s.generations.find((g) => g.number === 1)!.workers[0]!.pid, pid);
  assert.equal(s.generations.length, 1);
  const rep = await l.stop();
  assertNoneFailed(rep, b);
  assertLoaded(rep);
  record(spec, { observed: `reload failed after ${took} ms: not ready after 1000 ms; hung worker gone ${goneIn} ms later; gen 1 pid unchanged` }, rep);
});

test(EXPECTED['ready-then-crash'].fault, async (t) => {
  const spec = EXPECTED['ready-then-crash'];
  const marker = join(tempDir(), 'crashed');
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const l = load(t, port);
  await flowing(l);
  const reply = await b.reload(faulty('--tag=v2', '--crash-after-ready=300', `--marker=${marker}`, '--block-before-crash=3000'));
  assert.ok(reply.ok, JSON.stringify(reply));
  assert.equal((reply.result as HandoffRecord).state, 'done');
  // It blocks before it dies: frozen, what it holds cannot change.
  const line = await b.waitFor(/\[2\.0\] about to crash \(after ready\) pid=\d+/);
  const pid = Number(/pid=(\d+)/.exec(line)![1]);
  const c = await freezeAndCount(pid, port);
  process.kill(pid, 'SIGCONT');
  await b.waitFor(/worker 2\.0 killed by SIGABRT while serving/);
  await b.waitFor(/worker 2\.0 ready[\s\S]*worker 2\.0 ready/);
  await flowing(l);
  const rep = await l.stop();
  const s = await b.status();
  const g = s.generations.find((x) => x.number === 2)!;
  assert.equal(s.serving, 2);
  assert.equal(g.ready, 1);
  assert.equal(g.workers[0]!.restarts, 1);
  assertHeldFailed(rep.failed, c, 0, JSON.stringify(rep.errors));
  assertLoaded(rep);
  record(spec, { observed: `reload done; worker 2.0 died of SIGABRT; restarted once; ${describeHeld(rep.failed, c)}`, ...c }, rep);
});

test(EXPECTED['crash-mid-handoff'].fault, async (t) => {
  const spec = EXPECTED['crash-mid-handoff'];
  const marker = join(tempDir(), 'crashed');
  const b = await startBaton({ argv: v1, args: ['--workers', '2', '--max-surge', '1', '--drain-timeout', '20s'] });
  t.after(() => b.dispose());
  const port = await b.port();
  // A long request on each old worker: retiring one takes that long, so the new worker's
  // crash (about 4 s after the reload) comes while an old one drains, however fast the rest is.
  const slow: Promise<{ status: number; body: string }>[] = [];
  for (let i = 0; i < 30 && !(/\[1\.0\] slow-start/.test(b.out) && /\[1\.1\] slow-start/.test(b.out)); i++) {
    slow.push(request(`http://127.0.0.1:${port}/slow?ms=12000`, { reset: true }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })));
    await b.waitFor(new RegExp(`(slow-start[\\s\\S]*){${i + 1}}`));
  }
  assert.ok(/\[1\.0\] slow-start/.test(b.out) && /\[1\.1\] slow-start/.test(b.out), 'both old workers hold a slow request');
  const l = load(t, port);
  await flowing(l);
  const reloading = b.reload(faulty('--tag=v2', '--crash-after-ready=1000', `--marker=${marker}`, '--block-before-crash=3000'));
  const line = await b.waitFor(/\[2\.0\] about to crash \(after ready\) pid=\d+/);
  const pid = Number(/pid=(\d+)/.exec(line)![1]);
  const c = await freezeAndCount(pid, port);
  process.kill(pid, 'SIGCONT');
  const reply = await reloading;
  assert.ok(!reply.ok, JSON.stringify(reply));
  assert.match(reply.error, /worker 0 of generation 2 killed by SIGABRT after it was ready, before the handoff was over/);
  assert.match(b.out, /worker 1\.0 draining/, 'the crash came while an old worker drained');
  await flowing(l);
  const rep = await l.stop();
  const s = await b.status();
  assert.equal(s.serving, 1);
  const g1 = s.generations.find((x) => x.number === 1)!;
  assert.equal(g1.ready, 2, JSON.stringify(g1));
  assert.equal(
    s.generations.some((x) => x.number === 2),
    false,
    'generation 2 is gone',
  );
  for (const r of await Promise.all(slow)) assert.equal(r.status, 200);
  assertHeldFailed(rep.failed, c, 0, JSON.stringify(rep.errors));
  assertLoaded(rep);
  record(
    spec,
    {
      observed: `reload failed and rolled back (${reply.error.replace(/^reload failed: /, '')}); gen 1 whole again, 2 ready; ${slow.length} slow request(s) on old workers answered 200; ${describeHeld(rep.failed, c)}`,
      ...c,
    },
    rep,
  );
});
