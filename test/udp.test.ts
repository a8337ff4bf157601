// UDP listeners: baton holds the socket without reading it; workers read it; at a handoff
// the old worker stops reading and the new one takes what is still queued in the kernel.

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { FIXTURES, startBaton } from './helpers/baton.js';

/** One datagram every SEND_EVERY_MS: ~500/s, far below what the receive buffer holds for a gap. */
const SEND_EVERY_MS = 2;
/** What the reload test sends at least while reloads go on. */
const MIN_DATAGRAMS = 1500;

test('UDP echo: 20 reloads or more, 1500 datagrams across them; each is answered exactly once', { timeout: 120_000 }, async (t) => {
  const echo = ['node', join(FIXTURES, 'udp-echo.mjs')];
  const b = await startBaton({ argv: echo, listen: ['udp:127.0.0.1:0'] });
  t.after(() => b.dispose());
  const s = await b.status();
  assert.match(s.listeners[0]!.address, /^udp:127\.0\.0\.1:\d+$/);
  const port = await b.port();

  const client = dgram.createSocket('udp4');
  t.after(() => client.close());
  const answers = new Map<number, number>();
  const gens = new Set<string>();
  let answered = 0;
  let wantAll: (() => void) | null = null;
  let sent = 0;
  client.on('message', (m) => {
    const [, seq, gen] = /^(\d+) gen=(\d+)$/.exec(String(m)) ?? [];
    assert.ok(seq && gen, `unexpected answer '${String(m)}'`);
    answers.set(Number(seq), (answers.get(Number(seq)) ?? 0) + 1);
    gens.add(gen);
    if (++answered === sent) wantAll?.();
  });
  client.bind(0, '127.0.0.1');
  await once(client, 'listening');
  const timer = setInterval(() => client.send(String(++sent), port, '127.0.0.1'), SEND_EVERY_MS);

  // Sized by traffic, not by reload count: reloads got faster from Node.js 24 on, and 20 of
  // them then span too few datagrams to prove anything.
  const deadline = Date.now() + 60_000;
  let reloads = 0;
  while (reloads < 20 || (sent < MIN_DATAGRAMS && reloads < 300 && Date.now() < deadline)) {
    const r = await b.reload();
    assert.ok(r.ok, `reload ${++reloads} failed: ${JSON.stringify(r)}`);
  }
  clearInterval(timer);
  // Every datagram sent is answered, or this times out: then count what is missing.
  const all = new Promise<void>((resolve) => (wantAll = resolve));
  if (answered === sent) wantAll!();
  const late = setTimeout(() => wantAll?.(), 10_000);
  await all;
  clearTimeout(late);

  const missing = Array.from({ length: sent }, (_, i) => i + 1).filter((n) => !answers.has(n));
  const twice = [...answers].filter(([, n]) => n > 1).map(([seq]) => seq);
  assert.deepEqual({ missing: missing.slice(0, 20), twice: twice.slice(0, 20) }, { missing: [], twice: [] });
  assert.equal(answered, sent);
  assert.ok(sent >= MIN_DATAGRAMS, `too few datagrams to prove anything: ${sent} in ${reloads} reloads`);
  assert.ok(gens.size >= 15, `only ${gens.size} generations answered: ${[...gens].join(' ')}`);
  t.diagnostic(`${sent} datagrams across ${reloads} reloads, answered by ${gens.size} generations`);
  assert.equal(await b.stop(), 0);
});
