// The listen backlog overflows while the first generation is slow to start.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startLoad } from '../../bench/load.js';
import { startBaton } from '../helpers/baton.js';
import { abortOnOverflow } from '../helpers/prereq.js';
import { cases, faulty, record } from './harness.js';

const EXPECTED = cases({
  'backlog-overflow': {
    fault: '60 new connections at once while the first generation takes over 1 s to start, with --backlog 8',
    expected:
      "nothing refused, nothing failed: the kernel queues backlog + 1 connections, answered as soon as the worker accepts; for the others it drops the SYN, or the handshake's last ACK (tcp_abort_on_overflow = 0), and they complete on a resend (of the SYN: 1 s, 3 s, 7 s after the first; of the request: 200 ms, 400 ms, …): later, never refused",
  },
});

test(EXPECTED['backlog-overflow'].fault, { skip: abortOnOverflow() }, async (t) => {
  const spec = EXPECTED['backlog-overflow'];
  const BACKLOG = 8;
  const N = 60;
  const b = await startBaton({ argv: faulty('--tag=v1', '--start-delay=1200'), args: ['--backlog', String(BACKLOG)], waitReady: false });
  t.after(() => b.dispose());
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(await b.waitFor(/listening on 127\.0\.0\.1:\d+/))![1]);
  const rep = await startLoad({
    target: { host: '127.0.0.1', port },
    clients: [{ kind: 'fresh', concurrency: N }],
    maxRequests: N,
    maxDurationMs: 30_000,
    graceMs: 30_000,
  }).done;
  await b.waitFor(/handoff 1: generation 1 serves/);
  assert.equal(rep.failed, 0, JSON.stringify(rep.errors));
  assert.equal(rep.ok, N);
  // All were sent at once. The backlog + 1 queued connections are answered as soon as the
  // worker accepts; every other one waits for a resend: of its SYN (1 s, 3 s, ... after the
  // first), or, where the handshake's last ACK was dropped, of its request (200 ms, 400 ms, ...).
  const ms = rep.samples.map((s) => s.ms).sort((a, b) => a - b);
  const first = ms[0]!;
  const withFirst = ms.filter((x) => x < first + 150).length;
  assert.ok(first >= 1200, `answered before the worker listened: ${ms.map(Math.round).join(' ')}`);
  assert.ok(withFirst < N, `all answered at once: nothing overflowed? ${ms.map(Math.round).join(' ')}`);
  record(
    spec,
    {
      observed: `${rep.ok}/${N} answered, 0 refused; ${withFirst} answered at ${Math.round(first)}-${Math.round(ms[withFirst - 1]!)} ms as the worker started (the queued ${BACKLOG + 1}, and resends that came just then); the other ${N - withFirst} at ${Math.round(ms[withFirst]!)}-${Math.round(ms.at(-1)!)} ms, on a resend`,
    },
    rep,
  );
});
