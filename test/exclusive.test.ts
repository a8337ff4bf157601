// --handoff exclusive: at no instant do two generations accept; nothing is refused meanwhile.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { mixedClients, startLoad } from '../bench/load.js';
import { acceptSpans, assertNoOverlap } from './helpers/accepts.js';
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

  const gens = assertNoOverlap(acceptSpans(log));
  assert.ok(gens.length >= 15, `only generations ${gens.join(',')} accepted anything`);
});

test('--handoff exclusive with --max-surge is refused with a clear error', async () => {
  const r = await runCli(['start', '--listen', '127.0.0.1:0', '--handoff', 'exclusive', '--max-surge', '1', '--', 'node', 'x.js']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--max-surge cannot be combined with --handoff exclusive/);
});
