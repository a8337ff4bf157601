// A serving worker dies or hangs: SIGKILL, SIGSTOP, out of memory.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import type { HandoffRecord } from '../../src/supervisor/handoff.js';
import type { StatusReport } from '../../src/supervisor/supervisor.js';
import { startBaton } from '../helpers/baton.js';
import {
  alive,
  assertHeldFailed,
  assertLoaded,
  cases,
  describeHeld,
  FAULTY,
  faulty,
  flowing,
  freezeAndCount,
  load,
  record,
  served,
  settled,
} from './harness.js';

const EXPECTED = cases({
  sigkill: {
    fault: 'a serving worker (of 2) is SIGKILLed',
    expected: 'it is restarted at once; the other serves meanwhile; failed = what the killed worker held',
  },
  sigstop: {
    fault: 'a serving worker (of 2) is SIGSTOPped (hung, not dead), then a reload and a stop (--drain-timeout 2s)',
    expected:
      'not killed while it serves (baton cannot tell hung from busy without --watchdog); the other one takes every new connection; a reload, and a stop, each completes within the drain deadline + 0.5 s because the hung worker is killed there; failed = what the hung workers held = cut',
  },
  oom: {
    fault: 'a serving worker (of 2) exhausts its memory (--max-old-space-size=32, allocation loop)',
    expected: 'V8 aborts it (SIGABRT); it is restarted; failed = what it held',
  },
});

function serving(s: StatusReport): StatusReport['generations'][number] {
  const g = s.generations.find((x) => x.number === s.serving);
  assert.ok(g);
  return g;
}

test(EXPECTED.sigkill.fault, async (t) => {
  const spec = EXPECTED.sigkill;
  const b = await startBaton({ argv: faulty('--tag=v1'), args: ['--workers', '2'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const l = load(t, port);
  await flowing(l, 200);
  const victim = serving(await b.status()).workers[0]!.pid;
  const c = await freezeAndCount(victim, port, () => served(port));
  process.kill(victim, 'SIGKILL');
  await b.waitFor(/worker 1\.0 killed by SIGKILL while serving/);
  await b.waitFor(/worker 1\.0 ready[\s\S]*worker 1\.0 ready/);
  await flowing(l);
  const rep = await l.stop();
  const g = serving(await b.status());
  assert.equal(g.ready, 2);
  assert.equal(g.workers[0]!.restarts, 1);
  assertHeldFailed(rep.failed, c, 0, JSON.stringify(rep.errors));
  assertLoaded(rep);
  record(spec, { observed: `restarted at once, 2 ready again; ${describeHeld(rep.failed, c)}`, ...c }, rep);
});

test(EXPECTED.sigstop.fault, async (t) => {
  const spec = EXPECTED.sigstop;
  const b = await startBaton({ argv: faulty('--tag=v1'), args: ['--workers', '2', '--drain-timeout', '2s'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const l = load(t, port);
  await flowing(l, 200);
  const hung = serving(await b.status()).workers[0]!.pid;
  const c1 = await freezeAndCount(hung, port, () => served(port));
  // Service goes on through the other worker: new connections are all its own.
  await served(port, 50);
  assert.ok(alive(hung), 'a hung worker is left alone while it serves');
  const t0 = Date.now();
  const reply = await b.reload(faulty('--tag=v2'));
  const reloadMs = Date.now() - t0;
  assert.ok(reply.ok, JSON.stringify(reply));
  await b.waitFor(/worker 1\.0 killed at the drain deadline/);
  const rec = (await b.status()).history.at(-1)! as HandoffRecord;
  // Transfer = old generation told to drain -> all of it stopped accepting (or killed).
  assert.ok(rec.transferMs! < 2500 + 1000, `transfer took ${rec.transferMs} ms`);
  await flowing(l, 200);
  // The same during a stop: it ends within the drain deadline.
  const hung2 = serving(await b.status()).workers[1]!.pid;
  const c2 = await freezeAndCount(hung2, port, () => served(port));
  await served(port, 50);
  // Stop starting requests, and let those not stuck on the hung worker finish first: a stop
  // refuses what comes after it (see the stop cases).
  const pending = l.stop();
  await settled(l, c2.held);
  const t1 = Date.now();
  assert.equal(await b.stop(), 0);
  const stopMs = Date.now() - t1;
  assert.ok(stopMs < 2500 + 1000, `stop took ${stopMs} ms`);
  assert.match(b.out, /worker 2\.1 killed at the drain deadline pid=\d+ cut=\d+/);
  const cut2 = Number(/worker 2\.1 killed at the drain deadline pid=\d+ cut=(\d+)/.exec(b.out)![1]);
  const rep = await pending;
  // Frozen, each holds exactly what was counted: that is what baton reports as cut.
  assert.equal(rec.cut, c1.held, `reload: cut ${rec.cut}, held ${c1.held}`);
  assert.equal(cut2, c2.held, `stop: cut ${cut2}, held ${c2.held}`);
  const c = { held: c1.held + c2.held, unread: c1.unread + c2.unread };
  assertHeldFailed(rep.failed, c, 0, JSON.stringify(rep.errors));
  assertLoaded(rep);
  record(
    spec,
    {
      observed: `hung worker left alone while serving, the other took the load; reload done in ${reloadMs} ms (transfer ${rec.transferMs} ms: hung one killed at the deadline, cut ${rec.cut}); stop with another hung worker took ${stopMs} ms (cut ${cut2}); ${describeHeld(rep.failed, c)}`,
      ...c,
    },
    rep,
  );
});

test(EXPECTED.oom.fault, async (t) => {
  const spec = EXPECTED.oom;
  const b = await startBaton({ argv: ['node', '--max-old-space-size=32', FAULTY, '--tag=v1'], args: ['--workers', '2'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const l = load(t, port);
  await flowing(l, 200);
  const oom = request(`http://127.0.0.1:${port}/oom`).then(
    () => 'answered',
    (e: Error & { code?: string }) => e.code ?? e.message,
  );
  const line = await b.waitFor(/\[1\.(\d)\] allocating pid=\d+/);
  const index = /\[1\.(\d)\]/.exec(line)![1];
  const pid = Number(/pid=(\d+)/.exec(line)![1]);
  const c = await freezeAndCount(pid, port);
  process.kill(pid, 'SIGCONT');
  await b.waitFor(new RegExp(`worker 1\\.${index} killed by SIGABRT while serving`));
  assert.match(b.out, /heap out of memory/);
  await b.waitFor(new RegExp(`worker 1\\.${index} ready[\\s\\S]*worker 1\\.${index} ready`));
  assert.notEqual(await oom, 'answered');
  await flowing(l);
  const rep = await l.stop();
  assert.equal(serving(await b.status()).ready, 2);
  assertHeldFailed(rep.failed + 1, c, 1, JSON.stringify(rep.errors));
  assertLoaded(rep);
  record(
    spec,
    { observed: `"JavaScript heap out of memory", SIGABRT; restarted, 2 ready; ${describeHeld(rep.failed + 1, c)} (the /oom request included)`, ...c },
    { ...rep, requests: rep.requests + 1, failed: rep.failed + 1 },
  );
});
