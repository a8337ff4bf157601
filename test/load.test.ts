// Tests for the load generator: it must count every request, honour its bounds, and classify
// failures, or every "0 failed" claim built on it means nothing.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { type ClientKind, type LoadReport, mixedClients, percentile, startLoad, windowStats } from '../bench/load.js';

const ALL: { kind: ClientKind; concurrency: number }[] = mixedClients(4, 4, 4);

// keepAliveTimeout 5000: with Node's short defaults undici would never reuse a connection
// (it keeps a 2 s margin under the Keep-Alive hint), and the keep-alive kinds would not differ.
async function serve(
  handler: http.RequestListener,
  where: number | string = 0,
): Promise<{ server: http.Server; target: { host: string; port: number } | { socketPath: string } }> {
  const server = http.createServer({ keepAliveTimeout: 5000 }, handler);
  await new Promise<void>((resolve) => (typeof where === 'string' ? server.listen(where, resolve) : server.listen(where, '127.0.0.1', resolve)));
  const target = typeof where === 'string' ? { socketPath: where } : { host: '127.0.0.1', port: (server.address() as { port: number }).port };
  return { server, target };
}

async function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

const hello: http.RequestListener = (_req, res) => res.end(`gen=7 pid=${process.pid}\n`);

function assertAllOk(r: LoadReport): void {
  assert.equal(r.failed, 0, JSON.stringify(r.errors));
  assert.equal(r.ok, r.requests);
  for (const k of ['undici', 'agent', 'fresh'] as const) {
    assert.ok(r.byKind[k].ok > 0, `${k} ok`);
    assert.equal(r.byKind[k].ok, r.byKind[k].requests);
  }
  assert.equal(r.bodies['gen=7'], r.ok);
  // Keep-alive kinds reuse connections; fresh opens one per request.
  assert.ok(r.byKind.undici.connections! <= 4, `undici conns ${r.byKind.undici.connections}`);
  assert.ok(r.byKind.agent.connections! <= 4, `agent conns ${r.byKind.agent.connections}`);
  assert.equal(r.byKind.fresh.connections, r.byKind.fresh.requests);
  assert.ok(r.latency.p50 > 0 && r.latency.p50 <= r.latency.p99 && r.latency.p99 <= r.latency.max);
  assert.equal(r.samples.length, r.ok);
}

test('all three kinds over TCP: every request ok, maxRequests honoured exactly', async () => {
  const { server, target } = await serve(hello);
  try {
    const r = await startLoad({ target, clients: ALL, maxRequests: 3000, maxDurationMs: 60_000 }).done;
    assert.equal(r.requests, 3000);
    assertAllOk(r);
  } finally {
    await close(server);
  }
});

test('all three kinds over a unix socket', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-load-'));
  const { server, target } = await serve(hello, path.join(dir, 's.sock'));
  try {
    const r = await startLoad({ target, clients: ALL, maxRequests: 1500, maxDurationMs: 60_000 }).done;
    assert.equal(r.requests, 1500);
    assertAllOk(r);
  } finally {
    await close(server);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('maxDurationMs bounds the run; stop() ends it early', async () => {
  const { server, target } = await serve((_req, res) => setTimeout(() => res.end('gen=7\n'), 20));
  try {
    const r = await startLoad({ target, clients: ALL, maxRequests: 1e9, maxDurationMs: 400 }).done;
    assert.equal(r.failed, 0);
    assert.ok(r.requests > 0);
    assert.ok(r.durationMs >= 400 && r.durationMs < 400 + 500, `duration ${r.durationMs}`);

    const h = startLoad({ target, clients: ALL, maxRequests: 1e9, maxDurationMs: 60_000, thinkMs: [0, 5] });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const t = performance.now();
    const s = await h.stop();
    assert.ok(performance.now() - t < 500, 'stop() waits only for in-flight requests');
    assert.equal(s.failed, 0);
    assert.ok(s.ok > 0);
    assert.deepEqual(h.snapshot(), { requests: s.requests, ok: s.ok, failed: s.failed });
    assert.equal(await h.stop(), s, 'stop() after the end returns the same report');
  } finally {
    await close(server);
  }
});

test('requests that never complete are aborted after graceMs and counted', async () => {
  const { server, target } = await serve(() => {
    /* never answers */
  });
  try {
    const t = performance.now();
    const r = await startLoad({ target, clients: ALL, maxRequests: 1e9, maxDurationMs: 100, graceMs: 200 }).done;
    assert.ok(performance.now() - t < 1000);
    assert.equal(r.requests, 12); // one per loop, each stuck
    assert.equal(r.failed, 12);
    assert.deepEqual(r.errors, { aborted: 12 });
  } finally {
    await close(server);
  }
});

test('failures are counted and classified', async () => {
  let n = 0;
  const { server, target } = await serve((req, res) => {
    n++;
    if (n % 10 === 3) return req.socket.destroy(); // reset before any response
    if (n % 10 === 6) {
      // truncated body
      res.writeHead(200, { 'content-length': '100' });
      res.write('gen=7 partial');
      setImmediate(() => req.socket.destroy());
      return;
    }
    if (n % 10 === 8) {
      res.statusCode = 502;
      return res.end('gen=7 bad gateway\n');
    }
    if (n % 10 === 9) return res.end(); // empty body
    res.end('gen=7\n');
  });
  try {
    const r = await startLoad({ target, clients: ALL, maxRequests: 2000, maxDurationMs: 60_000 }).done;
    assert.equal(r.requests, 2000);
    assert.equal(r.ok + r.failed, r.requests);
    assert.equal(
      Object.values(r.errors).reduce((a, b) => a + b, 0),
      r.failed,
    );
    assert.equal(r.bodies['gen=7'], r.ok);
    // 4 of every 10 requests fail; connection-level failures are not retried by anyone.
    assert.ok(Math.abs(r.failed - 800) <= 12, `failed ${r.failed} ${JSON.stringify(r.errors)}`);
    assert.ok(r.errors['bad status 502']! > 150, JSON.stringify(r.errors));
    assert.ok(r.errors['bad body']! > 150, JSON.stringify(r.errors));
    // Resets and truncations show up as socket error codes (ECONNRESET, UND_ERR_SOCKET, ...).
    const socketErrors = Object.entries(r.errors)
      .filter(([k]) => !k.startsWith('bad '))
      .reduce((a, [, v]) => a + v, 0);
    assert.ok(socketErrors > 300, JSON.stringify(r.errors));
    for (const k of ['undici', 'agent', 'fresh'] as const) assert.ok(r.byKind[k].failed > 0, `${k} failed`);
  } finally {
    await close(server);
  }
});

test('percentile and windowStats on known data', () => {
  const xs = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 90), 90);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile(xs, 100), 100);
  assert.equal(percentile(xs, 0), 1);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 99), 0);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);

  // t = 0..999; latency 1 ms except a spike of 10 samples at t in [500, 510) with 50..59 ms.
  const samples = Array.from({ length: 1000 }, (_, t) => ({ t, ms: t >= 500 && t < 510 ? 50 + (t - 500) : 1 }));
  samples.reverse(); // windowStats must not depend on order
  assert.deepEqual(windowStats(samples, 0, 500), { count: 500, p99: 1, max: 1 });
  assert.deepEqual(windowStats(samples, 500, 600), { count: 100, p99: 58, max: 59 });
  assert.deepEqual(windowStats(samples, 2000, 3000), { count: 0, p99: 0, max: 0 });
});

test('sampleLatencies caps the samples kept', async () => {
  const { server, target } = await serve(hello);
  try {
    const r = await startLoad({ target, clients: [{ kind: 'undici', concurrency: 4 }], maxRequests: 500, maxDurationMs: 60_000, sampleLatencies: 50 }).done;
    assert.equal(r.ok, 500);
    assert.equal(r.samples.length, 50);
    for (let i = 1; i < r.samples.length; i++) assert.ok(r.samples[i]!.t >= r.samples[i - 1]!.t);
  } finally {
    await close(server);
  }
});
