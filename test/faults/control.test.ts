// Faults on the control plane: requests that race each other, and hostile input.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { test } from 'node:test';
import { request } from 'undici';
import type { LoadHandle, LoadReport } from '../../bench/load.js';
import type { ControlReply } from '../../src/common/protocol.js';
import type { HandoffRecord } from '../../src/supervisor/handoff.js';
import type { Baton } from '../helpers/baton.js';
import { ROOT, startBaton } from '../helpers/baton.js';
import { assertLoaded, assertNoneFailed, cases, faulty, flowing, inFlight, load, mergeReports, record, splitLoad, until } from './harness.js';

const EXPECTED = cases({
  'reload-storm': {
    fault: 'reload storm: 100 reload requests within about a second from 5 clients at once, each naming its own command line',
    expected:
      'every request is answered (merged ones with the handoff that served them); handoffs never overlap (history phase times); far fewer handoffs than requests; the end state runs the last requested command line; 0 failed',
  },
  'stop-during-handoff': {
    fault: '`stop` while a handoff is starting a slow new version',
    expected:
      'the starting generation is stopped and the reload answered "failed"; requests in flight at the stop (the load\'s and a slow one) are answered; baton exits 0 within the drain deadline; what the load starts after the stop is refused, or reset if the kernel had queued its new connection when the listeners closed (a stop ends the service); nothing else fails',
  },
  'reload-during-stop': {
    fault: '`reload` while a stop drains a slow request',
    expected:
      'the reload is refused ("the supervisor is stopping") and starts nothing; requests in flight at the stop (the load\'s and a slow one) are answered; baton exits 0; what the load starts after the stop is refused (ECONNREFUSED), a new connection queued in the instant the listener closed reset (one per client at most); nothing else fails',
  },
  'scale-during-handoff': {
    fault: '`scale 3` while a handoff is starting (1 worker, slow new version)',
    expected: 'the scale is answered once the handoff is over, with the new generation at 3 ready workers; 0 failed',
  },
  'hostile-control': {
    fault: 'hostile control input: malformed JSON, 500k-deep nesting, a 10 MB line, a client that says nothing, 1,000 clients at once, unknown commands',
    expected:
      'each gets an error reply (the 10 MB line: "request too long", then the connection is closed) or is simply served; the supervisor keeps serving, answers the next well-formed request, holds no extra descriptor afterwards; 0 failed',
  },
});

const v1 = faulty('--tag=v1');

test(EXPECTED['reload-storm'].fault, async (t) => {
  const spec = EXPECTED['reload-storm'];
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const l = load(t, port);
  await flowing(l);
  const t0 = Date.now();
  const replies: Promise<ControlReply>[] = [];
  const received: Promise<void>[] = [];
  // When each request was sent, and when its first event said it was in (both on this clock).
  const sent: { tag: string; at: number; heard: number }[] = [];
  const send = (tag: string): void => {
    let heard!: () => void;
    const req = { tag, at: Date.now(), heard: Infinity };
    sent.push(req);
    received.push(new Promise<void>((r) => (heard = r)));
    replies.push(
      b.request({ cmd: 'reload', argv: faulty(`--tag=${tag}`), cwd: ROOT }, () => {
        req.heard = Math.min(req.heard, Date.now());
        heard();
      }),
    );
  };
  // 5 clients, 99 requests spread over about a second; the 100th once all of them are in.
  await Promise.all(
    Array.from({ length: 5 }, async (_, c) => {
      for (let i = c; i < 99; i += 5) {
        send(`storm-${i}`);
        await new Promise((r) => setTimeout(r, 45));
      }
    }),
  );
  await Promise.all(received);
  send('storm-last');
  const sentMs = Date.now() - t0;
  const all = await Promise.all(replies);
  for (const r of all) assert.ok(r.ok, JSON.stringify(r));
  const s = await b.status();
  const serving = s.generations.find((g) => g.number === s.serving)!;
  assert.deepEqual(serving.argv, faulty('--tag=storm-last'));
  const res = await request(`http://127.0.0.1:${port}/`);
  assert.match(await res.body.text(), /storm-last/);
  const storm = s.history.filter((r) => r.trigger === 'reload');
  for (let i = 1; i < storm.length; i++) {
    const prevEnd = storm[i - 1]!.phases.at(-1)!.at;
    assert.ok(storm[i]!.phases[0]!.at >= prevEnd, `handoff ${storm[i]!.id} began before ${storm[i - 1]!.id} ended`);
  }
  for (const r of storm) assert.equal(r.state, 'done');
  assert.ok(storm.length < 20, `${storm.length} handoffs for 100 requests`);
  // Each request is answered with the handoff that served it: the first one to start after
  // the request was in, running the command line of one of the requests it merged.
  const tagOf = (argv: string[]): string => /--tag=(\S+)/.exec(argv.join(' '))?.[1] ?? '?';
  const served = new Map<number, string[]>();
  all.forEach((r, i) => {
    const req = sent[i]!;
    assert.ok(r.ok);
    const rec = r.result as HandoffRecord;
    assert.equal(rec.state, 'done', `${req.tag}: ${JSON.stringify(rec)}`);
    assert.ok(
      rec.requestedAt >= req.at,
      `${req.tag} (sent at ${req.at}) answered with handoff ${rec.id}, which began at ${rec.requestedAt}, before it was sent`,
    );
    const skipped = storm.find((h) => h.requestedAt > req.heard && h.requestedAt < rec.requestedAt);
    assert.equal(
      skipped,
      undefined,
      `${req.tag} was in at ${req.heard}, so handoff ${skipped?.id} (began ${skipped?.requestedAt}) served it, not handoff ${rec.id} (began ${rec.requestedAt})`,
    );
    served.set(rec.id, [...(served.get(rec.id) ?? []), req.tag]);
    assert.ok(
      storm.some((h) => h.id === rec.id && tagOf(h.argv) === tagOf(rec.argv)),
      `handoff ${rec.id} is not in the history as answered`,
    );
  });
  for (const [id, tags] of served) {
    const ran = tagOf(storm.find((h) => h.id === id)!.argv);
    assert.ok(tags.includes(ran), `handoff ${id} ran ${ran}, a command line none of the requests it answered (${tags.join(', ')}) asked for`);
  }
  assert.deepEqual(
    [...served.keys()].sort((a, b) => a - b),
    storm.map((h) => h.id),
    'every handoff answered some request',
  );
  const last = all.at(-1)!;
  assert.ok(last.ok);
  assert.equal(tagOf((last.result as HandoffRecord).argv), 'storm-last');
  await flowing(l);
  const rep = await l.stop();
  assertNoneFailed(rep, b);
  assertLoaded(rep);
  record(
    spec,
    { observed: `100 requests sent in ${sentMs} ms, all answered ok; ${storm.length} handoffs, none overlapping; serving ${serving.argv.slice(2).join(' ')}` },
    rep,
  );
});

/**
 * The load runs into a stop: requests in flight when it was sent are all answered (the
 * drain finishes them, with Connection: close), and what comes after it is refused. Keep-alive
 * and new-connection clients run as two loads, so each kind's errors can be told apart.
 */
async function intoStop(
  b: Baton,
  l: { keepAlive: LoadHandle; fresh: LoadHandle },
  during: () => Promise<void>,
): Promise<{ keepAlive: LoadReport; fresh: LoadReport; inFlight: number; answeredAfter: number }> {
  const before = l.keepAlive.snapshot();
  const busy = inFlight(l.keepAlive);
  const stopped = b.request({ cmd: 'stop' });
  await b.waitFor(/stopping: draining every generation/);
  await during();
  // Only once the stop is under way (and `during` is done) do the loads stop starting requests.
  const [keepAlive, fresh] = await Promise.all([l.keepAlive.stop(), l.fresh.stop()]);
  assert.equal((await stopped).ok, true);
  return { keepAlive, fresh, inFlight: busy, answeredAfter: keepAlive.ok - before.ok };
}

test(EXPECTED['stop-during-handoff'].fault, async (t) => {
  const spec = EXPECTED['stop-during-handoff'];
  const b = await startBaton({ argv: v1, args: ['--drain-timeout', '5s'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const l = splitLoad(t, port);
  await Promise.all([flowing(l.keepAlive), flowing(l.fresh)]);
  const reloading = b.reload(faulty('--tag=v2', '--start-delay=3000'));
  await b.waitFor(/worker 2\.0 started/);
  const inFlightSlow = request(`http://127.0.0.1:${port}/slow?ms=1000`).then(
    async (r) => ({ status: r.statusCode, body: await r.body.text() }),
    (e: Error & { code?: string }) => ({ status: 0, body: e.code ?? e.message }),
  );
  await b.waitFor(/\[1\.0\] slow-start/);
  const t0 = Date.now();
  let reply!: ControlReply;
  const r = await intoStop(b, l, async () => {
    reply = await reloading;
  });
  assert.ok(!reply.ok);
  assert.match(reply.error, /stopped while starting|stopping/);
  assert.equal(await b.exited, 0);
  const stopMs = Date.now() - t0;
  assert.ok(stopMs < 5000, `stop took ${stopMs} ms`);
  // Overlap: keep-alive requests were in flight when the stop was sent, and all were answered.
  assert.ok(r.inFlight > 0 && r.answeredAfter >= r.inFlight, `${r.inFlight} keep-alive requests in flight at the stop, ${r.answeredAfter} answered after it`);
  // After the stop, a keep-alive client's new connection is refused, or queued in the listener
  // that generation 2 (stopped while starting) still held, and reset with it.
  for (const e of Object.keys(r.keepAlive.errors)) assert.match(e, /^(ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)$/, JSON.stringify(r.keepAlive.errors));
  for (const e of Object.keys(r.fresh.errors)) assert.match(e, /^(ECONNREFUSED|ECONNRESET)$/, JSON.stringify(r.fresh.errors));
  const slow = await inFlightSlow;
  assert.equal(slow.status, 200, slow.body);
  const rep = mergeReports(r.keepAlive, r.fresh);
  assertLoaded(rep);
  record(
    spec,
    {
      observed: `reload answered "${reply.error}"; stop done in ${stopMs} ms, exit 0; in-flight slow request answered 200; the ${r.inFlight} keep-alive requests in flight at the stop answered; after it: ${JSON.stringify(rep.errors)} (refused, or reset in the closing listener's queue)`,
    },
    rep,
  );
});

test(EXPECTED['reload-during-stop'].fault, async (t) => {
  const spec = EXPECTED['reload-during-stop'];
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const l = splitLoad(t, port);
  await Promise.all([flowing(l.keepAlive), flowing(l.fresh)]);
  const slow = request(`http://127.0.0.1:${port}/slow?ms=1500`).then(
    async (r) => ({ status: r.statusCode, body: await r.body.text() }),
    (e: Error & { code?: string }) => ({ status: 0, body: e.code ?? e.message }),
  );
  await b.waitFor(/\[1\.0\] slow-start/);
  let reply!: ControlReply;
  const r = await intoStop(b, l, async () => {
    reply = await b.reload(faulty('--tag=v2'));
  });
  assert.ok(!reply.ok);
  assert.match(reply.error, /the supervisor is stopping/);
  assert.equal(await b.exited, 0);
  assert.doesNotMatch(b.out, /generation 2/);
  assert.ok(r.inFlight > 0 && r.answeredAfter >= r.inFlight, `${r.inFlight} keep-alive requests in flight at the stop, ${r.answeredAfter} answered after it`);
  // Nothing but the refusal of what came after the stop: no request cut, no connection reset
  // (the one worker stopped accepting before it told its keep-alive clients to go).
  for (const e of Object.keys(r.keepAlive.errors)) assert.match(e, /^ECONNREFUSED$/, JSON.stringify(r.keepAlive.errors));
  // A new connection the kernel queued in the instant the last listener closed is reset: one per client at most.
  for (const e of Object.keys(r.fresh.errors)) assert.match(e, /^(ECONNREFUSED|ECONNRESET)$/, JSON.stringify(r.fresh.errors));
  assert.ok((r.fresh.errors.ECONNRESET ?? 0) <= 2, JSON.stringify(r.fresh.errors));
  const answered = await slow;
  assert.equal(answered.status, 200, answered.body);
  const rep = mergeReports(r.keepAlive, r.fresh);
  assertLoaded(rep);
  record(
    spec,
    {
      observed: `reload answered "${reply.error}", no generation 2 started; slow request answered 200; exit 0; the ${r.inFlight} keep-alive requests in flight at the stop answered; after it: ${JSON.stringify(rep.errors)}`,
    },
    rep,
  );
});

test(EXPECTED['scale-during-handoff'].fault, async (t) => {
  const spec = EXPECTED['scale-during-handoff'];
  const b = await startBaton({ argv: v1 });
  t.after(() => b.dispose());
  const port = await b.port();
  const l = load(t, port);
  await flowing(l);
  const reloading = b.reload(faulty('--tag=v2', '--start-delay=1500'));
  await b.waitFor(/worker 2\.0 started/);
  const scaled = await b.request({ cmd: 'scale', workers: 3 });
  assert.ok(scaled.ok, JSON.stringify(scaled));
  const reply = await reloading;
  assert.ok(reply.ok, JSON.stringify(reply));
  assert.deepEqual(scaled.result, { target: 3, ready: 3, generation: 2 });
  const s = await b.status();
  const g = s.generations.find((x) => x.number === s.serving)!;
  assert.equal(g.number, 2);
  assert.equal(g.ready, 3);
  await flowing(l);
  const rep = await l.stop();
  assertNoneFailed(rep, b);
  assertLoaded(rep);
  record(spec, { observed: `scale answered after the handoff: ${JSON.stringify(scaled.result)}; generation 2 serves with 3 ready` }, rep);
});

/** One connection: send `data`, collect reply lines until `want` of them or the connection ends. */
function converse(path: string, data: string | null, want = 1): Promise<{ lines: string[]; closed: boolean; sock: Socket }> {
  return new Promise((resolve) => {
    const sock = createConnection(path);
    let buf = '';
    const done = (closed: boolean): void => resolve({ lines: buf.split('\n').filter(Boolean), closed, sock });
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf += d;
      // want = Infinity: until the supervisor closes the connection.
      if (buf.split('\n').filter(Boolean).length >= want) {
        sock.end();
        done(false);
      }
    });
    sock.on('close', () => done(true));
    if (data !== null) sock.write(data);
  });
}

test(EXPECTED['hostile-control'].fault, async (t) => {
  const spec = EXPECTED['hostile-control'];
  // The old generation exits after the reload below (a standby would keep its pipes open here).
  const b = await startBaton({ argv: v1, args: ['--keep-previous', '0'] });
  t.after(() => b.dispose());
  const port = await b.port();
  const pid = b.proc.pid!;
  const fds = (): number => readdirSync(`/proc/${pid}/fd`).length;
  const before = fds();
  const l = load(t, port);
  await flowing(l);
  // A client that connects and says nothing: it must not hold anyone else up.
  const silent = createConnection(b.control);
  silent.on('error', () => {});
  await new Promise((r) => silent.once('connect', r));

  const [malformed, nested, unknown, huge] = await Promise.all([
    converse(b.control, 'this is not json\n{"cmd":\n'),
    converse(b.control, '['.repeat(500_000) + '\n'),
    converse(b.control, '{"cmd":"explode"}\n{"cmd":"status","extra":1}\n{"cmd":"reload","argv":"node"}\n', 3),
    converse(b.control, 'x'.repeat(10 * 1024 * 1024) + '\n', Infinity),
  ]);
  assert.match(malformed.lines[0]!, /malformed request: not JSON/);
  assert.match(nested.lines[0]!, /malformed request/);
  assert.equal(unknown.lines.length, 3);
  for (const line of unknown.lines) assert.match(line, /"ok":false,"error":"invalid request/);
  assert.match(huge.lines[0] ?? '', /request too long/);
  assert.ok(huge.closed, 'the 10 MB line ends its connection');

  // 1,000 clients at once, each asking for status.
  const crowd = await Promise.all(Array.from({ length: 1000 }, () => converse(b.control, '{"cmd":"status"}\n')));
  const answered = crowd.filter((c) => /"ok":true/.test(c.lines[0] ?? '')).length;
  assert.equal(answered, 1000);

  // Still serving, and answering: a status, then a reload.
  const s = await b.status();
  assert.equal(s.serving, 1);
  const reply = await b.reload(faulty('--tag=v2'));
  assert.ok(reply.ok, JSON.stringify(reply));
  await flowing(l);
  const rep = await l.stop();
  silent.destroy();
  for (const c of crowd) c.sock.destroy();
  // Every control connection is closed again: none left open in the supervisor.
  await until('the supervisor has closed the control connections', () => fds() <= before, 10_000).catch(() => undefined);
  const after = fds();
  assert.ok(after <= before, `supervisor fds: ${before} before, ${after} after`);
  assertNoneFailed(rep, b);
  assertLoaded(rep);
  record(
    spec,
    {
      observed: `all errors answered, 10 MB line cut at 1 MiB and closed; 1000/1000 concurrent status answered; next status and a reload answered; supervisor fds ${before} -> ${after}`,
    },
    rep,
  );
});
