// --threads: copies of the app as worker_threads inside each worker process, each on its
// own duplicate of the listeners, drained and replaced with the process (src/runtime/threads.ts).

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { mixedClients, startLoad } from '../bench/load.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { acceptSpans, assertNoOverlap } from './helpers/accepts.js';
import { type Baton, FIXTURES, runCli, startBaton, tempDir } from './helpers/baton.js';

const APP = ['node', join(FIXTURES, 'threads.mjs')];
const MIXED = mixedClients(4, 4, 2);

/** The copies that answered, per generation: bodies like `gen=1 pid=123 thread=1`. */
function copies(): { expect: (status: number, body: string) => boolean; seen: Map<string, Set<string>> } {
  const seen = new Map<string, Set<string>>();
  return {
    seen,
    expect: (status, body) => {
      const m = /^gen=(\d+) pid=(\d+) thread=(\d+)/.exec(body);
      if (m) seen.set(m[1]!, (seen.get(m[1]!) ?? new Set()).add(`${m[2]}/${m[3]}`));
      return status === 200 && m !== null;
    },
  };
}

async function until(what: string, probe: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function serving(s: StatusReport): StatusReport['generations'][number] {
  const g = s.generations.find((x) => x.number === s.serving);
  assert.ok(g, 'no serving generation');
  return g;
}

/** One GET on a connection of its own; the body, or the error's code. */
function get(port: number, path: string): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
  });
}

/** Descriptors of `pid` open on the same socket as its fd 3 (the first listener). */
function listenerFds(pid: number): number {
  const dir = `/proc/${pid}/fd`;
  const listener = readlinkSync(`${dir}/3`);
  return readdirSync(dir).filter((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`) === listener;
    } catch {
      return false; // closed meanwhile
    }
  }).length;
}

async function start(t: TestContext, args: string[]): Promise<{ b: Baton; port: number }> {
  const b = await startBaton({ argv: APP, args });
  t.after(() => b.dispose());
  return { b, port: await b.port() };
}

test('--workers 2 --threads 2: 4 copies serve, each thread on its own fd; reloads under load lose nothing', async (t) => {
  const { b, port } = await start(t, ['--workers', '2', '--threads', '2']);
  for (const w of serving(await b.status()).workers) assert.equal(listenerFds(w.pid), 2, `worker ${w.pid}: fd 3 and thread 1's duplicate`);
  const c = copies();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: MIXED, maxRequests: 300_000, maxDurationMs: 60_000, expect: c.expect });
  await until('4 copies of generation 1 answering', () => (c.seen.get('1')?.size ?? 0) >= 4);
  for (let i = 0; i < 5; i++) {
    const r = await b.reload();
    assert.ok(r.ok, JSON.stringify(r));
  }
  await until('4 copies of generation 6 answering', () => (c.seen.get('6')?.size ?? 0) >= 4);
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors) + '\n' + b.out);
  t.diagnostic(`${report.ok} ok across 5 reloads, by kind ${JSON.stringify(report.byKind)}`);
  assert.equal(c.seen.get('1')!.size, 4, JSON.stringify([...c.seen.get('1')!]));
  assert.equal(c.seen.get('6')!.size, 4, JSON.stringify([...c.seen.get('6')!]));
  // Two pids, two threads each: the main thread (0) and the one the runtime started (1).
  assert.deepEqual([...new Set([...c.seen.get('6')!].map((x) => x.split('/')[1]))].sort(), ['0', '1']);
  assert.doesNotMatch(b.out, /cut=[1-9]/);
});

test("a thread's requests in flight at reload are finished by the draining worker, not cut", async (t) => {
  const { b, port } = await start(t, ['--workers', '1', '--threads', '2']);
  // The kernel chooses which copy accepts (it may favour one for a while): one more slow
  // request at a time, until both copies hold one.
  const slow: ReturnType<typeof get>[] = [];
  const started = (): string[] => [...b.out.matchAll(/slow request started gen=1 pid=\d+ thread=(\d+)/g)].map((m) => m[1]!);
  while (slow.length < 40 && !(started().includes('0') && started().includes('1'))) {
    slow.push(get(port, '/slow?ms=3000'));
    await b.waitFor(new RegExp(`(slow request started[^\\n]*\\n[\\s\\S]*){${slow.length}}`));
  }
  assert.ok(started().includes('0') && started().includes('1'), `the slow requests did not reach both copies: ${started().join(' ')}`);
  const r = await b.reload(undefined, 'drained');
  assert.ok(r.ok, JSON.stringify(r));
  const answers = await Promise.all(slow);
  for (const a of answers) assert.ok('body' in a && a.status === 200 && /^gen=1 .* slow done/.test(a.body), JSON.stringify(a));
  const threads = new Set(answers.map((a) => ('body' in a ? /thread=(\d+)/.exec(a.body)?.[1] : '')));
  assert.deepEqual([...threads].sort(), ['0', '1']);
  assert.match(b.out, /worker 1\.0 exited [^\n]*code=0/);
  assert.match(b.out, /generation 1 exited cut=0/);
});

test('a thread that crashes fails its worker, which baton replaces', async (t) => {
  const { b, port } = await start(t, ['--workers', '1', '--threads', '2']);
  const victim = serving(await b.status()).workers[0]!.pid;
  // The kernel picks the copy that accepts: ask until thread 1 got it.
  for (let i = 0; i < 200 && !/thread 1 of this worker failed/.test(b.out); i++) await get(port, '/crash?thread=1');
  await b.waitFor(/baton: thread 1 of this worker failed: Error: crash asked of thread 1/);
  await b.waitFor(/worker 1\.0 exited [^\n]*code=1/);
  await b.waitFor(/worker 1\.0 ready[\s\S]*worker 1\.0 ready/);
  const w = serving(await b.status()).workers[0]!;
  assert.notEqual(w.pid, victim);
  assert.equal(w.restarts, 1);
  const a = await get(port, '/');
  assert.ok('body' in a && /^gen=1 /.test(a.body), JSON.stringify(a));
});

test('--threads with --handoff exclusive: the threads accept once told, reloads lose nothing', async (t) => {
  const log = join(tempDir(), 'accepts.log');
  const b = await startBaton({
    argv: ['node', join(FIXTURES, 'accept-log.mjs')],
    args: ['--threads', '2', '--handoff', 'exclusive'],
    env: { ACCEPT_LOG: log },
  });
  t.after(() => b.dispose());
  const port = await b.port();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: [{ kind: 'fresh', concurrency: 4 }], maxRequests: 100_000, maxDurationMs: 60_000 });
  t.after(() => load.stop());
  const threadsOf = (gen: number): number => (existsSync(log) ? (acceptSpans(log).get(gen)?.threads.size ?? 0) : 0);
  await until('both copies of generation 1 accepting', () => threadsOf(1) >= 2);
  for (let gen = 2; gen <= 4; gen++) {
    assert.ok((await b.reload()).ok);
    await until(`both copies of generation ${gen} accepting`, () => threadsOf(gen) >= 2);
  }
  const report = await load.stop();
  assert.equal(report.failed, 0, JSON.stringify(report.errors) + '\n' + b.out);
  // No thread of a generation accepted while the one before still did.
  assert.deepEqual(assertNoOverlap(acceptSpans(log)), [1, 2, 3, 4]);
});

test('--threads is refused where the Node runtime cannot run the copies, and out of range', async () => {
  const cases: [string[], RegExp][] = [
    [['--threads', '2', '--ready', 'notify'], /--threads needs baton's Node\.js runtime/],
    [['--threads', '2', '--distribution', 'round-robin'], /--threads cannot be combined with --distribution round-robin/],
    [['--threads', '0'], /bad thread count '0': use 1-64/],
    [['--threads', '65'], /bad thread count '65': use 1-64/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(['start', '--listen', '127.0.0.1:0', ...args, '--', ...APP]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, re);
  }
  // A program without the runtime, declared ready by --ready-after: generation 1 fails, with the reason.
  const r = await runCli(['start', '--listen', '127.0.0.1:0', '--threads', '2', '--ready-after', '200ms', '--', 'sh', '-c', 'exec sleep 30'], {
    timeoutMs: 30_000,
  });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /--threads 2 needs baton's Node runtime in the worker/);
});
