// The Node worker runtime (src/runtime/), exercised the way the supervisor uses it: real
// listeners opened with sys.ts and inherited at fd 3, real worker processes running
// unmodified apps (test/fixtures), real HTTP clients. Waits are on events, bounded.

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from 'undici';
import type { FromWorker, ListenerInfo } from '../src/common/protocol.js';
import { closeFd, dup } from '../src/os/fds.js';
import { onRawConnection } from '../src/os/internals.js';
import { openTcpListener, openUnixListener, socketAddress } from '../src/os/sockets.js';
import { noCommand, noIPv6Loopback } from './helpers/prereq.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = path.join(ROOT, 'test/fixtures');
const PRELOAD = new URL('../src/runtime/preload.js', import.meta.url).href;
// As the supervisor does it: LISTEN_PID must be the worker's own pid, known only after fork.
const WRAPPER = 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"';
/** The backlog workers are told to apply; listeners are opened with 511. */
const BACKLOG = 1000;
/** Per test: a failure shows up as a failure, not as a hang of the whole file. */
const T = { timeout: 20_000 };
/** undici waits 300 s by default: a failing test must not hold the file that long. */
const LIMITS = { headersTimeout: 15_000, bodyTimeout: 15_000 };
const WARN = (what: string): string => `baton: ${what} is not one of baton's listeners; bound directly, it will not survive a reload`;

/* ------------------------------------------------------------------ */
/* Harness                                                             */
/* ------------------------------------------------------------------ */

/** A listener as the supervisor holds it: `fd` in this process, `info.fd` unused until spawn. */
interface Opened {
  fd: number;
  info: ListenerInfo;
}

type Msg = FromWorker & { at: number };

class Worker {
  readonly child: ChildProcess;
  readonly messages: Msg[] = [];
  stdout = '';
  stderr = '';
  exitAt = 0;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly ev = new EventEmitter();

  constructor(fixture: string, listeners: Opened[], env: Record<string, string> = {}, opts: { wrapper?: boolean } = {}) {
    const info = listeners.map((l, i) => ({ ...l.info, fd: 3 + i }));
    const tcp = info.find((l) => l.kind === 'tcp');
    const base = { ...process.env };
    for (const k of Object.keys(base)) if (/^(NODE_TEST|NODE_OPTIONS|LISTEN_|BATON_)/.test(k)) delete base[k];
    const app = [process.execPath, path.join(FIXTURES, fixture)];
    this.child = spawn(opts.wrapper === false ? app[0]! : '/bin/sh', opts.wrapper === false ? app.slice(1) : ['-c', WRAPPER, 'baton-worker', ...app], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe', ...listeners.map((l) => l.fd), 'ipc'],
      env: {
        ...base,
        NODE_OPTIONS: `--import=${PRELOAD}`,
        BATON_LISTENERS: JSON.stringify(info),
        BATON_BACKLOG: String(BACKLOG),
        BATON_READY: 'listen',
        BATON_GENERATION: '1',
        BATON_WORKER: '0',
        BATON_DRAIN_TIMEOUT_MS: '10000',
        LISTEN_FDS: String(info.length),
        LISTEN_FDNAMES: info.map((l) => l.name).join(':'),
        ...(tcp?.kind === 'tcp' ? { PORT: String(tcp.port) } : {}),
        ...env,
      },
    });
    this.child.on('message', (m: FromWorker) => {
      this.messages.push({ ...m, at: performance.now() });
      this.ev.emit('change');
    });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.stdout += d.toString();
      this.ev.emit('change');
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.ev.emit('change');
    });
    // Exit plus the end of its output. Not the child's 'close' event: after the parent
    // disconnects the IPC channel, Node 20 never emits it (seen here).
    const ended = (s: NodeJS.ReadableStream): Promise<unknown> => new Promise((resolve) => s.once('close', resolve));
    this.exited = Promise.all([
      new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        this.child.once('exit', (code, signal) => {
          this.exitAt = performance.now();
          resolve({ code, signal });
        }),
      ),
      ended(this.child.stdout!),
      ended(this.child.stderr!),
    ]).then(([exit]) => {
      this.ev.emit('close');
      return exit;
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  message<T extends FromWorker['type']>(type: T, timeoutMs = 15_000): Promise<Extract<Msg, { type: T }>> {
    return this.until(() => this.messages.find((m) => m.type === type) as Extract<Msg, { type: T }> | undefined, `'${type}'`, timeoutMs);
  }

  /** Waits until the stream's output so far matches. */
  output(re: RegExp, stream: 'stdout' | 'stderr' = 'stdout', timeoutMs = 15_000): Promise<RegExpExecArray> {
    return this.until(() => re.exec(this[stream]) ?? undefined, `${stream} ${re}`, timeoutMs);
  }

  /** Sends drain; returns when it was sent. */
  drain(timeoutMs: number): number {
    this.child.send({ baton: 1, type: 'drain', timeoutMs });
    return performance.now();
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  private until<T>(probe: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.ev.off('change', check);
        this.ev.off('close', closed);
      };
      const check = (): void => {
        const v = probe();
        if (v === undefined) return;
        done();
        resolve(v);
      };
      const fail = (why: string): void => {
        done();
        reject(new Error(`${why} waiting for ${what}\nmessages: ${JSON.stringify(this.messages)}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`));
      };
      const closed = (): void => {
        check();
        fail('worker exited');
      };
      const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      this.ev.on('change', check);
      this.ev.on('close', closed);
      check();
      if (this.child.exitCode !== null || this.child.signalCode !== null) void this.exited.then(closed);
    });
  }
}

/** Per test: listeners and workers, all released when the test ends. */
function harness(t: TestContext) {
  const fds: number[] = [];
  const paths: string[] = [];
  const workers: Worker[] = [];
  t.after(() => {
    for (const w of workers) w.kill();
    for (const fd of fds) closeFd(fd);
    for (const p of paths) fs.rmSync(p, { recursive: true, force: true });
  });
  return {
    tcp(name = 'web'): Opened {
      const fd = openTcpListener('127.0.0.1', 0, 511);
      fds.push(fd);
      const addr = socketAddress(fd);
      assert.equal(addr.kind, 'tcp');
      return { fd, info: { fd: -1, name, kind: 'tcp', host: '127.0.0.1', port: addr.kind === 'tcp' ? addr.port : 0 } };
    },
    unix(name = 'sock'): Opened {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-rt-'));
      paths.push(dir);
      const p = path.join(dir, 'app.sock');
      const fd = openUnixListener(p, 511);
      fds.push(fd);
      return { fd, info: { fd: -1, name, kind: 'unix', path: p } };
    },
    start(fixture: string, listeners: Opened[], env?: Record<string, string>, opts?: { wrapper?: boolean }): Worker {
      const w = new Worker(fixture, listeners, env, opts);
      workers.push(w);
      return w;
    },
  };
}

function portOf(l: Opened): number {
  assert.equal(l.info.kind, 'tcp');
  return l.info.kind === 'tcp' ? l.info.port : 0;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  endAt: number;
}

async function requestOn(client: Client, p = '/'): Promise<Reply> {
  const r = await client.request({ path: p, method: 'GET' });
  const body = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body, endAt: performance.now() };
}

/** One request on a connection of its own, closed afterwards. */
async function get(where: number | string, p = '/'): Promise<Reply> {
  const client = typeof where === 'number' ? new Client(`http://127.0.0.1:${where}`, LIMITS) : new Client('http://localhost', { socketPath: where, ...LIMITS });
  try {
    return await requestOn(client, p);
  } finally {
    await client.close();
  }
}

/** A TCP connection that never sends a request. */
async function idleConnection(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((resolve) => s.once('connect', resolve));
  return s;
}

function refused(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/** Inodes of the sockets in LISTEN state on `port`, IPv4 and IPv6. */
function listeningInodes(port: number): string[] {
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== '0A') continue;
      if (parseInt(cols[1]!.split(':')[1]!, 16) === port) out.push(cols[9]!);
    }
  }
  return out;
}

/** The accept backlog in force on the listening socket on `port` (ss shows it as Send-Q). */
function backlogOf(port: number): number {
  const line = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim();
  return Number(line.split(/\s+/)[2]);
}

function inodeOf(fd: number): string {
  return /socket:\[(\d+)\]/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))![1]!;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** With nothing in flight: drained, nothing cut, and the process exits 0 by itself, promptly. */
async function drainsCleanly(t: TestContext, w: Worker): Promise<void> {
  const sent = w.drain(10_000);
  const drained = await w.message('drained');
  assert.equal(drained.cut, 0);
  assert.deepEqual(await w.exited, { code: 0, signal: null });
  assert.ok(w.messages.findIndex((m) => m.type === 'accepting-stopped') < w.messages.indexOf(drained));
  const ms = w.exitAt - sent;
  assert.ok(ms < 2000, `exit ${ms.toFixed(0)} ms after drain with nothing in flight`);
  t.diagnostic(`drain -> exit ${ms.toFixed(0)} ms`);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

describe('worker runtime', { concurrency: 4, timeout: 60_000 }, () => {
  for (const fixture of ['http.cjs', 'http.mjs', 'express.cjs', 'express.mjs', 'fastify.cjs', 'fastify.mjs', 'fastify-dualstack.cjs']) {
    test(`${fixture}: serves the inherited listener, binds nothing, says ready, drains and exits`, T, async (t) => {
      const h = harness(t);
      const web = h.tcp();
      const port = portOf(web);
      const w = h.start(fixture, [web]);
      await w.message('ready');
      const listening = w.messages.filter((m) => m.type === 'listening');
      assert.deepEqual(
        listening.map((m) => m.type === 'listening' && m.listener),
        ['web'],
      );
      assert.ok(w.messages.indexOf(listening[0]!) < w.messages.findIndex((m) => m.type === 'ready'));

      const client = new Client(`http://127.0.0.1:${port}`, LIMITS);
      t.after(() => client.destroy());
      const r = await requestOn(client);
      assert.equal(r.status, 200);
      assert.equal(r.body.trim(), `gen=1 pid=${w.pid}`);
      assert.equal(r.headers.connection, 'keep-alive');
      // The only socket listening on the app's port is the one this test (the "supervisor") opened.
      assert.deepEqual(listeningInodes(port), [inodeOf(web.fd)]);
      await t.test('BATON_BACKLOG applied (Node would reset it to 511)', { skip: noCommand('ss', 'iproute2') }, () => {
        assert.equal(backlogOf(port), BACKLOG);
      });
      if (fixture === 'fastify-dualstack.cjs') {
        // The secondary server reports the primary's address.
        await w.output(/bindings=\[.*"127\.0\.0\.1".*"127\.0\.0\.1".*\]/);
        await t.test('fastify secondary listen on [::1] does not bind', { skip: noIPv6Loopback() }, async () => {
          assert.ok(await refused(port, '::1'));
        });
      }
      assert.doesNotMatch(w.stderr, /baton:/);
      assert.equal(w.messages.filter((m) => m.type === 'warning').length, 0);

      // Drain with an idle keep-alive connection open: it is left alone, and its next
      // request is answered with Connection: close, after which the worker exits at once.
      w.drain(10_000);
      await w.message('accepting-stopped');
      const again = await requestOn(client);
      assert.equal(again.status, 200);
      assert.equal(again.headers.connection, 'close');
      const drained = await w.message('drained');
      assert.equal(drained.cut, 0);
      assert.deepEqual(await w.exited, { code: 0, signal: null });
      const ms = w.exitAt - again.endAt;
      assert.ok(ms < 2000, `exit ${ms.toFixed(0)} ms after the last response`);
      t.diagnostic(`last response -> exit ${ms.toFixed(0)} ms`);
    });
  }

  for (const which of ['free', 'zero'] as const) {
    test(`a port baton does not own (${which === 'zero' ? 'port 0' : 'a free port'}) is bound directly, with a warning`, T, async (t) => {
      const h = harness(t);
      const web = h.tcp();
      const asked = which === 'zero' ? 0 : await freePort();
      const w = h.start('http.mjs', [web], { EXTRA_PORT: String(asked) });
      await w.message('ready');
      const warning = await w.message('warning');
      const extra = Number(JSON.parse((await w.output(/extra (.*)\n/))[1]!).port); // ready waits for baton's listeners only
      if (asked !== 0) assert.equal(extra, asked);
      assert.equal(warning.message, WARN(`port ${asked}`));
      await w.output(/\n/, 'stderr'); // (stderr and IPC arrive in either order)
      assert.equal(w.stderr.trim(), WARN(`port ${asked}`));
      assert.equal((await get(extra)).status, 200);
      assert.equal((await get(portOf(web))).status, 200);
      await drainsCleanly(t, w);
    });
  }

  test('unix socket listener: served, address() is the path', T, async (t) => {
    const h = harness(t);
    const sock = h.unix();
    const w = h.start('unix.mjs', [sock], { SOCKET_PATH: sock.info.kind === 'unix' ? sock.info.path : '' });
    await w.message('ready');
    const r = await get(sock.info.kind === 'unix' ? sock.info.path : '');
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body) as { pid: number; address: unknown };
    assert.equal(body.pid, w.pid);
    assert.equal(body.address, sock.info.kind === 'unix' ? sock.info.path : '');
    await drainsCleanly(t, w);
  });

  for (const via of ['sdk', 'pm2'] as const) {
    test(`manual ready (${via === 'sdk' ? "SDK's ready()" : "PM2's process.send('ready')"})`, T, async (t) => {
      const h = harness(t);
      const w = h.start('manual-ready.mjs', [h.tcp()], { BATON_READY: 'manual', READY_DELAY_MS: '500', READY_VIA: via });
      await w.message('ready');
      await w.output(/calling ready isBaton=true/);
      // One IPC channel keeps the order: the app's own message, sent READY_DELAY_MS after
      // listening and just before it calls ready, comes before baton's 'ready'.
      const order = (pick: (m: Msg) => boolean): number => w.messages.findIndex(pick);
      const listening = order((m) => m.type === 'listening');
      const calling = order((m) => (m as unknown as { app?: string }).app === 'calling ready');
      const ready = order((m) => m.type === 'ready');
      assert.ok(listening >= 0 && listening < calling && calling < ready, `order: listening ${listening}, app calling ready ${calling}, ready ${ready}`);
      assert.equal(w.messages.filter((m) => m.type === 'ready').length, 1);
      await drainsCleanly(t, w);
    });
  }

  test('closing the server and listening again reuses the listener (dup), koffi loaded only then', T, async (t) => {
    const h = harness(t);
    const web = h.tcp();
    const port = portOf(web);
    const w = h.start('relisten.mjs', [web]);
    await w.message('ready');
    await w.output(/listening server=1 koffi=false/);
    assert.match((await get(port)).body, /server=1/);
    assert.match((await get(port, '/relisten')).body, /server=1/);
    await w.output(/listening server=2 koffi=true/);
    await w.output(/relistened koffi=true/);
    assert.match((await get(port)).body, /server=2/);
    assert.deepEqual(listeningInodes(port), [inodeOf(web.fd)]);
    assert.equal(w.messages.filter((m) => m.type === 'ready').length, 1);
    assert.doesNotMatch(w.stderr, /baton:/);
    await drainsCleanly(t, w);
  });

  test('round-robin: serves the connections baton passes over IPC, never accepts on the inherited socket', T, async (t) => {
    const h = harness(t);
    const web = h.tcp();
    const port = portOf(web);
    const w = h.start('http.cjs', [web], { BATON_DISTRIBUTION: 'round-robin' });
    await w.message('ready');
    assert.deepEqual(w.messages[0] && { ...w.messages[0], at: 0 }, { baton: 1, type: 'hello', pid: w.pid, at: 0 });
    await w.output(new RegExp(`listening \\{"address":"127\\.0\\.0\\.1","family":"IPv4","port":${port}\\}`));

    // The supervisor's side, as src/supervisor/roundrobin.ts does it: accept, pass the raw handle on, close ours.
    let passed = 0;
    const acceptor = net.createServer(() => assert.fail('round-robin makes no socket in the supervisor'));
    acceptor.listen({ fd: dup(web.fd) }, 511);
    onRawConnection(
      acceptor,
      (conn) => {
        passed++;
        w.child.send({ baton: 1, type: 'connection', listener: 'web' }, conn as unknown as net.Socket, { keepOpen: true }, () => conn.close());
      },
      (e) => assert.fail(e),
    );
    t.after(() => acceptor.close());
    // One connection per request: had the worker accepted on its inherited copy too, about
    // half of them would have bypassed `acceptor`.
    for (let i = 0; i < 20; i++) assert.equal((await get(port)).body.trim(), `gen=1 pid=${w.pid}`);
    assert.equal(passed, 20);

    const client = new Client(`http://127.0.0.1:${port}`, LIMITS);
    t.after(() => client.destroy());
    assert.equal((await requestOn(client)).headers.connection, 'keep-alive');
    w.drain(10_000);
    await w.message('accepting-stopped');
    const again = await requestOn(client);
    assert.equal(again.status, 200);
    assert.equal(again.headers.connection, 'close');
    assert.equal((await w.message('drained')).cut, 0);
    assert.deepEqual(await w.exited, { code: 0, signal: null });
  });

  test('inactive unless LISTEN_PID is the process itself: the app binds as it would bare', T, async (t) => {
    const h = harness(t);
    const own = await freePort();
    // Started without the wrapper, LISTEN_PID points elsewhere (as for the app's own children).
    const w = h.start('http.cjs', [h.tcp()], { PORT: String(own), LISTEN_PID: '1' }, { wrapper: false });
    await w.output(/listening /);
    assert.equal((await get(own)).status, 200);
    assert.deepEqual(w.messages, []);
    assert.equal(w.stderr, '');
    w.kill();
  });

  test(
    'drain: in-flight request completes with Connection: close, idle keep-alive conn gets close on reuse, queued conn goes to the next generation',
    T,
    async (t) => {
      const h = harness(t);
      const web = h.tcp();
      const port = portOf(web);
      const w = h.start('slow.mjs', [web]);
      await w.message('ready');

      const origin = `http://127.0.0.1:${port}`;
      const a = new Client(origin, LIMITS);
      const b = new Client(origin, LIMITS);
      t.after(() => Promise.all([a.destroy(), b.destroy()]));
      const first = await requestOn(b); // b: keep-alive connection, idle from now on
      assert.equal(first.headers.connection, 'keep-alive');
      const slow = requestOn(a, '/slow?ms=2000');
      await w.output(/slow-start/);

      const sent = w.drain(10_000);
      const stopped = await w.message('accepting-stopped');

      // (b) the idle keep-alive connection is not closed under the client: reusing it works,
      // and the answer says Connection: close.
      const reuse = await requestOn(b);
      assert.equal(reuse.status, 200);
      assert.equal(reuse.body.match(/conn=\d+/)![0], first.body.match(/conn=\d+/)![0], 'same connection');
      assert.equal(reuse.headers.connection, 'close');

      // A new connection now waits in the listener's queue: this worker no longer accepts;
      // the next generation started on the same listener answers it.
      const c = get(port);
      const next = h.start('slow.mjs', [web], { BATON_GENERATION: '2' });
      await next.message('ready');

      // (a) the in-flight request completes fully, with Connection: close; (c) accepting-stopped came first.
      const done = await slow;
      assert.equal(done.status, 200);
      assert.equal(done.body.trim().replace(/ conn=\d+$/, ''), `gen=1 pid=${w.pid}`);
      assert.equal(done.headers.connection, 'close');
      assert.ok(stopped.at < done.endAt, 'accepting-stopped before the in-flight response ended');
      assert.ok(done.endAt - sent > 1500, 'the in-flight request was not cut short');

      assert.match((await c).body, new RegExp(`^gen=2 pid=${next.pid} `));
      const drained = await w.message('drained');
      assert.equal(drained.cut, 0);
      assert.deepEqual(await w.exited, { code: 0, signal: null });
      const progress = w.messages.filter((m) => m.type === 'drain-progress');
      assert.ok(progress.length >= 1 && progress[0]!.type === 'drain-progress' && progress[0]!.connections >= 1, JSON.stringify(progress));
      // At most one per 100 ms (counted, not timed: a busy test process receives them in bursts).
      assert.ok(progress.length <= (drained.at - sent) / 100 + 2, `${progress.length} drain-progress in ${(drained.at - sent).toFixed(0)} ms`);
      await drainsCleanly(t, next);
    },
  );

  test('drain: a never-used connection holds the worker only until keepAliveTimeout + 1 s', T, async (t) => {
    const h = harness(t);
    const web = h.tcp();
    const port = portOf(web);
    const w = h.start('http.cjs', [web], { KEEP_ALIVE_MS: '300' });
    await w.message('ready');
    const never = await idleConnection(port);
    const closed = new Promise((resolve) => never.once('close', resolve));
    await get(port); // accepted after `never` (one FIFO queue): so `never` is the worker's now

    const sent = w.drain(10_000);
    const drained = await w.message('drained');
    assert.equal(drained.cut, 0);
    const ms = drained.at - sent;
    assert.ok(ms >= 1200 && ms < 3500, `drained ${ms.toFixed(0)} ms after drain (expected ~1300)`);
    await closed;
    assert.deepEqual(await w.exited, { code: 0, signal: null });
    t.diagnostic(`never-used connection: drained after ${ms.toFixed(0)} ms`);
  });

  test('drain: a request that never ends is cut at the deadline (cut: 1), idle ones are not counted', T, async (t) => {
    const h = harness(t);
    const web = h.tcp();
    const port = portOf(web);
    const w = h.start('ignore-drain.mjs', [web]);
    await w.message('ready');
    const never = await idleConnection(port);
    const client = new Client(`http://127.0.0.1:${port}`, LIMITS);
    t.after(() => client.destroy());
    const hang = requestOn(client, '/hang').then(
      () => 'answered',
      () => 'failed',
    );
    await w.output(/hang-start/);
    assert.ok(never.readyState === 'open');

    const sent = w.drain(1500);
    const drained = await w.message('drained');
    assert.equal(drained.cut, 1);
    const ms = drained.at - sent;
    assert.ok(ms >= 1400 && ms < 3500, `drained ${ms.toFixed(0)} ms after drain (deadline 1500)`);
    assert.deepEqual(await w.exited, { code: 0, signal: null });
    assert.equal(await hang, 'failed');
  });

  test('drain: connections of a server that is not HTTP are left to the app, cut at the deadline', T, async (t) => {
    const h = harness(t);
    const web = h.tcp();
    const w = h.start('tcp-echo.mjs', [web]);
    await w.message('ready');
    const sock = net.connect(portOf(web), '127.0.0.1');
    sock.on('error', () => {});
    sock.write('ping\n');
    await new Promise((resolve) => sock.once('data', resolve)); // echoed: the worker has it
    const sent = w.drain(1000);
    const drained = await w.message('drained');
    assert.equal(drained.cut, 1);
    assert.ok(drained.at - sent >= 900, `drained ${(drained.at - sent).toFixed(0)} ms after drain (deadline 1000)`);
    assert.deepEqual(await w.exited, { code: 0, signal: null });
  });

  test('standby: drains, stays alive not accepting (a new connection waits in the queue), resumes on the same listener and answers it', T, async (t) => {
    const h = harness(t);
    const web = h.tcp();
    const port = portOf(web);
    const w = h.start('http.mjs', [web]);
    await w.message('ready');
    w.child.send({ baton: 1, type: 'drain', timeoutMs: 10_000, standby: true });
    await w.message('accepting-stopped');
    assert.equal((await w.message('standby')).cut, 0);
    assert.equal(
      w.messages.some((m) => m.type === 'drained'),
      false,
    );
    // Nobody accepts now: the request waits in the kernel's queue, the worker stays alive.
    let answered = false;
    const queued = get(port).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(answered, false, 'a standby must not accept');
    assert.equal(w.child.exitCode, null);
    w.child.send({ baton: 1, type: 'resume' });
    await w.message('accepting');
    const r = await queued;
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection, 'keep-alive', 'a resumed worker no longer closes after each answer');
    // Still the listener baton opened: nothing was bound.
    assert.deepEqual(listeningInodes(port), [inodeOf(web.fd)]);
    // And a drain for good after that ends it as always.
    await drainsCleanly(t, w);
  });

  test('drain: onDrain hooks run and are awaited', T, async (t) => {
    const h = harness(t);
    const w = h.start('ondrain.mjs', [h.tcp()], { HOOK_MS: '400' });
    await w.message('ready');
    assert.doesNotMatch(w.stdout, /ondrain-hook-called/);
    const sent = w.drain(10_000);
    await w.output(/ondrain-hook-called/);
    const drained = await w.message('drained');
    assert.equal(drained.cut, 0);
    assert.ok(drained.at - sent >= 350, `drained ${(drained.at - sent).toFixed(0)} ms after drain, hook takes 400`);
    assert.deepEqual(await w.exited, { code: 0, signal: null });
    assert.match(w.stdout, /ondrain-hook-done/);
  });

  test('IPC disconnect (supervisor gone): drains, finishes the in-flight request, exits', T, async (t) => {
    const h = harness(t);
    const web = h.tcp();
    const port = portOf(web);
    const w = h.start('slow.mjs', [web], { BATON_DRAIN_TIMEOUT_MS: '5000' });
    await w.message('ready');
    const slow = get(port, '/slow?ms=800');
    await w.output(/slow-start/);
    const at = performance.now();
    w.child.disconnect();
    const done = await slow;
    assert.equal(done.status, 200);
    assert.equal(done.headers.connection, 'close');
    assert.deepEqual(await w.exited, { code: 0, signal: null });
    const ms = w.exitAt - at;
    assert.ok(ms >= 600 && ms < 3000, `exited ${ms.toFixed(0)} ms after disconnect`);
  });
});
