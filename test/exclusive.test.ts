// --handoff exclusive: at no instant do two generations accept; nothing is refused meanwhile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { mixedClients, startLoad } from '../bench/load.js';
import { FIXTURES, runCli, startBaton, tempDir } from './helpers/baton.js';

test('exclusive handoff: accept intervals of generations never overlap over 20 reloads, 0 failed', async (t) => {
  const log = join(tempDir(), 'accepts.log');
  const argv = ['node', join(FIXTURES, 'accept-log.mjs')];
  const b = await startBaton({ argv, args: ['--handoff', 'exclusive', '--workers', '2'], env: { ACCEPT_LOG: log } });
  t.after(() => b.dispose());
  const port = await b.port();
  const load = startLoad({
    target: { host: '127.0.0.1', port },
    clients: mixedClients(4, 4, 6),
    maxRequests: 500_000,
    maxDurationMs: 120_000,
  });
  for (let i = 0; i < 20; i++) {
    const reply = await b.reload();
    assert.ok(reply.ok, JSON.stringify(reply));
  }
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors));

  // First and last accept of each generation, on one monotonic clock.
  const span = new Map<number, { first: bigint; last: bigint; n: number }>();
  for (const line of readFileSync(log, 'utf8').trim().split('\n')) {
    const [g, at] = line.split(' ');
    const s = span.get(Number(g)) ?? { first: BigInt(at!), last: BigInt(at!), n: 0 };
    s.first = BigInt(at!) < s.first ? BigInt(at!) : s.first;
    s.last = BigInt(at!) > s.last ? BigInt(at!) : s.last;
    s.n++;
    span.set(Number(g), s);
  }
  const gens = [...span.keys()].sort((a, b) => a - b);
  assert.ok(gens.length >= 15, `only generations ${gens.join(',')} accepted anything`);
  for (let i = 1; i < gens.length; i++) {
    const prev = span.get(gens[i - 1]!)!;
    const cur = span.get(gens[i]!)!;
    assert.ok(prev.last < cur.first, `generation ${gens[i - 1]} accepted until ${prev.last}, after generation ${gens[i]} began at ${cur.first}`);
  }
});

test('--handoff exclusive with --max-surge is refused with a clear error', async () => {
  const r = await runCli(['start', '--listen', '127.0.0.1:0', '--handoff', 'exclusive', '--max-surge', '1', '--', 'node', 'x.js']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--max-surge cannot be combined with --handoff exclusive/);
});
