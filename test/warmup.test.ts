// The warm hand-over (issue 17): warm-up requests through the app's own server before a
// worker is ready (runtime/warmup.ts), and the old generation's keep-alive clients told to
// close over --drain-spread instead of all at once (runtime/drain.ts).

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import Fastify from 'fastify';
import { startLoad } from '../bench/load.js';
import { type FileOptions, readConfig } from '../src/cli/config.js';
import { warmUp } from '../src/runtime/warmup.js';
import { FIXTURES, runCli, startBaton, tempDir } from './helpers/baton.js';

// express ships no types of its own; what this test uses of it.
type Express = http.RequestListener & {
  get(path: string, h: (req: { params: Record<string, string>; get(h: string): string | undefined }, res: { json(x: unknown): void }) => void): void;
};
const express = createRequire(import.meta.url)('express') as () => Express;

const listen = (s: http.Server): Promise<void> => new Promise((r) => s.listen(0, '127.0.0.1', () => r()));
const close = (s: http.Server): Promise<void> => new Promise((r) => s.close(() => r()));

test('warmUp: the requests go through Node http, express and fastify apps, with the header, and leave no connection open', async () => {
  const seen: string[] = [];
  const plain = http.createServer((req, res) => {
    seen.push(`plain ${req.url} ${req.headers['x-baton-warmup']}`);
    res.end('ok');
  });
  const app = express();
  app.get('/items/:id', (req, res) => {
    seen.push(`express ${req.params.id} ${req.get('x-baton-warmup')}`);
    res.json({ id: req.params.id });
  });
  const viaExpress = http.createServer(app);
  const fastify = Fastify();
  fastify.get('/f', async (req) => {
    seen.push(`fastify ${req.headers['x-baton-warmup']}`);
    return { ok: true };
  });
  await fastify.ready();
  for (const s of [plain, viaExpress, fastify.server]) await listen(s);
  const r1 = await warmUp([plain], { paths: ['/a', '/b'], requests: 10, timeMs: 5000 });
  const r2 = await warmUp([viaExpress], { paths: ['/items/7'], requests: 5, timeMs: 5000 });
  const r3 = await warmUp([fastify.server], { paths: ['/f', '/missing'], requests: 4, timeMs: 5000 });
  assert.deepEqual([r1.requests, r1.failed, r2.requests, r2.failed, r3.requests, r3.failed], [10, 0, 5, 0, 4, 2]);
  assert.equal(seen.filter((l) => l === 'plain /a 1').length, 5);
  assert.equal(seen.filter((l) => l === 'plain /b 1').length, 5);
  assert.equal(seen.filter((l) => l === 'express 7 1').length, 5);
  assert.equal(seen.filter((l) => l === 'fastify 1').length, 2);
  // close() waits for every connection: a warm-up connection left open would hang it.
  await Promise.all([close(plain), close(viaExpress), fastify.close()]);
});

test('warmUp is bounded in time: a handler that never answers is cut at timeMs', async () => {
  const s = http.createServer(() => {}); // never answers
  await listen(s);
  const t0 = performance.now();
  const r = await warmUp([s], { paths: ['/'], requests: 100, timeMs: 150 });
  const took = performance.now() - t0;
  assert.ok(took >= 140 && took < 1500, `took ${took} ms`);
  assert.equal(r.requests, 8, 'one request per warm-up connection, then none after the deadline');
  assert.equal(r.failed, 8);
  s.closeAllConnections();
  await close(s);
});

test('--warmup: every answer of a new generation comes after its warm-up, under load across reloads', async (t) => {
  const b = await startBaton({
    argv: ['node', join(FIXTURES, 'warmup.mjs')],
    args: ['--workers', '2', '--warmup', '/warm', '--warmup-requests', '16', '--warmup-time', '10s'],
    env: { WARM_MS: '20' },
  });
  t.after(() => b.dispose());
  const port = await b.port();
  const bodies = new Map<string, number>();
  const load = startLoad({
    target: { host: '127.0.0.1', port },
    clients: [
      { kind: 'fresh', concurrency: 4 },
      { kind: 'undici', concurrency: 4 },
    ],
    maxRequests: 200_000,
    maxDurationMs: 60_000,
    onOk: (_k, body) => bodies.set(body.trim(), (bodies.get(body.trim()) ?? 0) + 1),
  });
  for (let i = 0; i < 3; i++) assert.ok((await b.reload()).ok);
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors));
  // A worker answers its 16 warm-up requests before any client's: every answer says warm=16.
  const early = [...bodies.keys()].filter((k) => !k.endsWith('warm=16'));
  assert.deepEqual(early, [], `answers given before the worker's warm-up was over: ${early.join(', ')}`);
  for (const g of [2, 3, 4])
    assert.ok(
      [...bodies.keys()].some((k) => k.startsWith(`gen=${g} `)),
      `generation ${g} answered nothing`,
    );
  assert.match(b.out, /worker 4\.\d ready .*warmupRequests=16 warmupFailed=0 warmupMs=\d+/);
});

test('--drain-spread: keep-alive clients are told to close over the spread (1 s by default), not all at once', async (t) => {
  // Per connection: when its answer with `Connection: close` came, relative to the reload.
  // null: baton's defaults, no flag at all.
  let defaultsOut = '';
  const closes = async (spread: string | null): Promise<number[]> => {
    const args = spread === null ? [] : ['--warmup', 'off', '--drain-spread', spread];
    const b = await startBaton({ argv: ['node', join(FIXTURES, 'warmup.mjs')], args });
    t.after(() => b.dispose());
    const port = await b.port();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    let reloadAt = Infinity;
    const at: number[] = [];
    let stop = false;
    const loop = async (): Promise<void> => {
      for (let i = 0; i < 2000 && !stop; i++) {
        await new Promise<void>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port, agent }, (res) => {
              if (res.headers.connection === 'close' && res.socket.remotePort === port) at.push(performance.now() - reloadAt);
              res.resume();
              res.once('end', resolve);
            })
            .once('error', reject);
        });
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const loops = Array.from({ length: 16 }, loop);
    await new Promise((r) => setTimeout(r, 300));
    reloadAt = performance.now();
    assert.ok((await b.reload()).ok);
    await new Promise((r) => setTimeout(r, 1500));
    stop = true;
    await Promise.all(loops);
    agent.destroy(); // idle keep-alive connections would hold the drain of the stop
    if (spread === null) defaultsOut = b.out;
    return at.sort((a, b) => a - b);
  };
  const spread = await closes('800ms');
  const atOnce = await closes('0');
  const byDefault = await closes(null);
  assert.ok(spread.length >= 12 && atOnce.length >= 12 && byDefault.length >= 12, `closes seen: ${spread.length}, ${atOnce.length}, ${byDefault.length}`);
  // At once: every connection on its next answer (within a few of the 10 ms pauses); spread: over ~800 ms.
  assert.ok(atOnce.at(-1)! - atOnce[0]! < 300, `at once: ${atOnce.map(Math.round).join(', ')}`);
  assert.ok(spread.at(-1)! - spread[0]! > 400, `spread: ${spread.map(Math.round).join(', ')}`);
  assert.ok(byDefault.at(-1)! - byDefault[0]! > 500, `by default: ${byDefault.map(Math.round).join(', ')}`);
  // And by default no warm-up: the new workers say ready with no warm-up counts.
  assert.match(defaultsOut, /worker 2\.\d ready/);
  assert.doesNotMatch(defaultsOut, /warmupRequests=/);
});

test('--warmup and --drain-spread refuse bad values with a clear error', async () => {
  const bad = await runCli(['start', '--listen', '127.0.0.1:0', '--warmup', 'api', '--', 'node', 'x.js']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /bad --warmup 'api': paths start with "\/"/);
  const spread = await runCli(['start', '--listen', '127.0.0.1:0', '--drain-spread', 'soon', '--', 'node', 'x.js']);
  assert.equal(spread.code, 2);
  assert.match(spread.stderr, /--drain-spread/);
});

test('config file: warmup, warmupRequests, warmupTime and drainSpread, and their errors', async () => {
  const dir = tempDir();
  const read = async (cfg: object): Promise<FileOptions | string> => {
    const file = join(dir, 'baton.config.json');
    writeFileSync(file, JSON.stringify({ listen: [8080], command: ['node', 'app.js'], ...cfg }));
    return readConfig(file, 'baton.config.json').catch((e: Error) => e.message);
  };
  const ok = (await read({ warmup: ['/', '/api'], warmupRequests: 10, warmupTime: '1s', drainSpread: '0ms' })) as FileOptions;
  assert.deepEqual([ok.warmup, ok.warmupRequests, ok.warmupTime, ok.drainSpread], [['/', '/api'], 10, 1000, 0]);
  assert.deepEqual(((await read({ warmup: '/a,/b' })) as FileOptions).warmup, ['/a', '/b']);
  assert.deepEqual(((await read({ warmup: 'off' })) as FileOptions).warmup, []);
  assert.match((await read({ warmup: 'api' })) as string, /warmup: expected paths such as "\/,\/api\/items", a list of them, or "off", got "api"/);
  assert.match((await read({ warmupRequests: -1 })) as string, /warmupRequests: expected a number from 0 to 100000/);
  assert.match((await read({ drainSpread: 5 })) as string, /drainSpread: expected a duration/);
});
