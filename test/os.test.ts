// Contract tests for src/os/: raw sockets through koffi + libc (sockets, fds, process), and the
// Node internals baton relies on (internals.ts). If a Node or koffi upgrade breaks any of it, this file
// must fail, with a message that says what changed.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { closeFd, dup, isCloexec, memfd, setCloexec } from '../src/os/fds.js';
import { RawConnection, handleFd, ipcFd, onRawConnection, socketOf } from '../src/os/internals.js';
import { SysError } from '../src/os/libc.js';
import { execve, reap } from '../src/os/process.js';
import { isListening, openTcpListener, openUnixListener, peerCredentials, socketAddress } from '../src/os/sockets.js';

const TIMEOUT = { timeout: 20_000 };

/** For scripts run in a child process: import every os module and take the names given. */
function importOs(...names: string[]): string {
  const urls = ['libc', 'sockets', 'fdpass', 'fds', 'process', 'internals'].map((m) => new URL(`../src/os/${m}.js`, import.meta.url).href);
  return `const { ${names.join(', ')} } = Object.assign({}, ...(await Promise.all(${JSON.stringify(urls)}.map((u) => import(u)))));`;
}
const SERVE_HI = `require('net').createServer((s) => s.end('hi')).listen({ fd: 3 })`;

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

function tcpListener(t: TestContext, host = '127.0.0.1', backlog = 511): { fd: number; port: number } {
  const fd = openTcpListener(host, 0, backlog);
  t.after(() => closeQuietly(fd));
  const addr = socketAddress(fd);
  assert.equal(addr.kind, 'tcp');
  return { fd, port: addr.kind === 'tcp' ? addr.port : -1 };
}

function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // already closed by the test itself
  }
}

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-sys-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A worker: a child process that serves 'hi' on the listener it inherits at fd 3. */
function serveChild(t: TestContext, fd: number): ChildProcess {
  const child = spawn(process.execPath, ['-e', SERVE_HI], { stdio: ['ignore', 'inherit', 'inherit', fd] });
  t.after(() => killChild(child));
  return child;
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

interface Client {
  socket: net.Socket;
  data: string;
  closed: boolean;
  /** Settles when the connection closes, with what was received. Never rejects. */
  done: Promise<{ data: string; error: Error | undefined }>;
}

/** Resolves once connected: the kernel completed the handshake, whoever accepts later. */
function connectClient(t: TestContext, to: net.NetConnectOpts): Promise<Client> {
  const socket = net.connect(to);
  socket.setEncoding('utf8');
  let error: Error | undefined;
  const client: Client = {
    socket,
    data: '',
    closed: false,
    done: new Promise((resolve) => socket.on('close', () => resolve({ data: client.data, error }))),
  };
  socket.on('data', (chunk: string) => (client.data += chunk));
  socket.on('close', () => (client.closed = true));
  // Queued connections get a RST when the test closes its listener: expected, never fatal.
  socket.on('error', (err) => (error = err));
  t.after(() => socket.destroy());
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(client));
    socket.once('error', reject);
  });
}

async function connectMany(t: TestContext, n: number, to: net.NetConnectOpts): Promise<Client[]> {
  return Promise.all(Array.from({ length: n }, () => connectClient(t, to)));
}

async function allServed(clients: Client[]): Promise<void> {
  const results = await Promise.all(clients.map((c) => c.done));
  assert.deepEqual(
    results.map((r) => r.error?.message ?? r.data),
    clients.map(() => 'hi'),
  );
}

/**
 * Length of a TCP listener's accept queue, from /proc/net/tcp{,6}: for a LISTEN row
 * rx_queue is the number of connections waiting for accept(). The row is found by
 * socket inode, which is what fstat() reports for the fd.
 */
function acceptQueue(fd: number): number {
  const ino = String(fs.fstatSync(fd).ino);
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(1)) {
      const col = line.trim().split(/\s+/);
      if (col[9] === ino && col[3] === '0A') return parseInt(col[4]!.split(':')[1]!, 16);
    }
  }
  throw new Error(`fd ${fd} (inode ${ino}) is not a listening TCP socket in /proc/net/tcp*`);
}

/**
 * The kernel queues the connection when it processes the client's final ACK, which
 * may run just after the client saw 'connect'; there is no event for it, so poll (bounded).
 */
async function waitFor(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** O_CLOEXEC as shown in /proc/<pid>/fdinfo/<fd> ("flags:" is octal). */
function hasCloexecFlag(fd: number, pid: number | 'self' = 'self'): boolean {
  const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  const flags = /^flags:\s+([0-7]+)$/m.exec(info);
  assert.ok(flags, `no flags: line in fdinfo: ${info}`);
  return (parseInt(flags[1]!, 8) & 0o2000000) !== 0;
}

function assertSysError(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    const e = err as SysError;
    assert.ok(e instanceof Error, 'not an Error');
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    assert.equal(e.message.includes('\n'), false, 'message must be one line');
    assert.equal(typeof e.syscall, 'string');
    assert.equal(e.errno, os.constants.errno[code as keyof typeof os.constants.errno]);
    return true;
  });
}

const hasIPv6Loopback = Object.values(os.networkInterfaces())
  .flat()
  .some((a) => a?.address === '::1');

/* ------------------------------------------------------------------ */
/* TCP                                                                 */
/* ------------------------------------------------------------------ */

describe('openTcpListener', () => {
  test('owns a listener without accepting on it; a child inheriting it serves every queued client', TIMEOUT, async (t) => {
    const { fd, port } = tcpListener(t);
    assert.ok(port > 0, `kernel picked port ${port}`);
    assert.deepEqual(socketAddress(fd), { kind: 'tcp', host: '127.0.0.1', port });
    assert.equal(isListening(fd), true);
    assert.equal(hasCloexecFlag(fd), true, 'listeners must be opened close-on-exec');

    const clients = await connectMany(t, 20, { host: '127.0.0.1', port });
    await waitFor('20 connections in the accept queue', () => acceptQueue(fd) === 20);
    assert.deepEqual(
      clients.map((c) => [c.data, c.closed]),
      clients.map(() => ['', false]),
      'this process must never accept',
    );

    serveChild(t, fd);
    await allServed(clients);
    assert.equal(isListening(fd), true);
  });

  test('the listener outlives a SIGKILLed worker; the next worker serves what queued meanwhile', TIMEOUT, async (t) => {
    const { fd, port } = tcpListener(t);

    const first = serveChild(t, fd);
    await allServed([await connectClient(t, { host: '127.0.0.1', port })]);
    await killChild(first);
    assert.equal(first.signalCode, 'SIGKILL');

    assert.equal(isListening(fd), true);
    const queued = await connectMany(t, 10, { host: '127.0.0.1', port });
    await waitFor('10 connections queued with no worker', () => acceptQueue(fd) === 10);

    serveChild(t, fd);
    await allServed(queued);
  });

  test('a taken port: EADDRINUSE in one clear line, and no fd leaks', TIMEOUT, async (t) => {
    const server = net.createServer().listen(0, '127.0.0.1');
    t.after(() => server.close());
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const own = tcpListener(t);

    const before = openFdCount();
    for (const taken of [port, own.port]) {
      assertSysError(
        () => openTcpListener('127.0.0.1', taken, 511),
        'EADDRINUSE',
        new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${taken}: address already in use \\(EADDRINUSE\\)$`),
      );
    }
    assert.equal(openFdCount(), before, 'a failed open must close its socket');
  });

  test('bad input is refused before any syscall, with a clear message', () => {
    const before = openFdCount();
    assertSysError(() => openTcpListener('nonsense', 80, 511), 'EINVAL',
      /^cannot listen on nonsense:80: 'nonsense' is not an IPv4 or IPv6 address literal \(EINVAL\)$/);
    assertSysError(() => openTcpListener('localhost', 80, 511), 'EINVAL', /not an IPv4 or IPv6 address literal/);
    assertSysError(() => openTcpListener('', 80, 511), 'EINVAL', /not an IPv4 or IPv6 address literal/);
    assertSysError(() => openTcpListener('fe80::1%lo', 80, 511), 'EINVAL', /zone ids \('%lo'\) are not supported/);
    for (const port of [-1, 65536, 1.5, NaN]) {
      assertSysError(() => openTcpListener('127.0.0.1', port, 511), 'EINVAL', /port must be an integer from 0 to 65535/);
    }
    assertSysError(() => openTcpListener('127.0.0.1', 0, -1), 'EINVAL', /backlog must be an integer >= 0/);
    // An address no interface has: the kernel's refusal is passed on, readably.
    assertSysError(() => openTcpListener('192.0.2.1', 0, 511), 'EADDRNOTAVAIL',
      /^cannot listen on 192\.0\.2\.1:0: address not available \(EADDRNOTAVAIL\)$/);
    assert.equal(openFdCount(), before);
  });

  test('IPv6: ::1, bracketed errors, and :: is dual-stack like Node', { ...TIMEOUT, skip: !hasIPv6Loopback && '::1 is not configured' }, async (t) => {
    const { fd, port } = tcpListener(t, '::1');
    assert.deepEqual(socketAddress(fd), { kind: 'tcp', host: '::1', port });
    assert.equal(isListening(fd), true);
    assertSysError(() => openTcpListener('::1', port, 511), 'EADDRINUSE',
      new RegExp(`^cannot listen on \\[::1\\]:${port}: address already in use \\(EADDRINUSE\\)$`));
    const clients = await connectMany(t, 3, { host: '::1', port });
    serveChild(t, fd);
    await allServed(clients);

    const bindv6only = fs.readFileSync('/proc/sys/net/ipv6/bindv6only', 'utf8').trim();
    if (bindv6only !== '0') return t.diagnostic(`bindv6only=${bindv6only}: dual-stack check skipped`);
    const any = tcpListener(t, '::');
    assert.deepEqual(socketAddress(any.fd), { kind: 'tcp', host: '::', port: any.port });
    await connectClient(t, { host: '127.0.0.1', port: any.port });
    await waitFor('an IPv4 client queued on [::]', () => acceptQueue(any.fd) === 1);
  });
});

/* ------------------------------------------------------------------ */
/* unix                                                                */
/* ------------------------------------------------------------------ */

describe('openUnixListener', () => {
  test('listens on a path; a child inheriting it serves every queued client', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'a.sock');
    const fd = openUnixListener(file, 64);
    t.after(() => closeQuietly(fd));
    assert.deepEqual(socketAddress(fd), { kind: 'unix', path: file });
    assert.equal(isListening(fd), true);
    assert.equal(fs.lstatSync(file).isSocket(), true);
    assert.equal(hasCloexecFlag(fd), true);

    const clients = await connectMany(t, 10, { path: file });
    assert.deepEqual(clients.map((c) => c.data), clients.map(() => ''));
    serveChild(t, fd);
    await allServed(clients);
  });

  test('a stale socket file (closed listener, path left behind) is replaced', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'stale.sock');
    closeFd(openUnixListener(file, 8));
    assert.equal(fs.lstatSync(file).isSocket(), true, 'closeFd must not unlink');
    await assert.rejects(connectClient(t, { path: file }), { code: 'ECONNREFUSED' });

    const fd = openUnixListener(file, 8);
    t.after(() => closeQuietly(fd));
    assert.equal(isListening(fd), true);
    const [client] = await connectMany(t, 1, { path: file });
    serveChild(t, fd);
    await allServed([client!]);
  });

  test('a socket a server answers on is left alone: EADDRINUSE', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'live.sock');
    const fd = openUnixListener(file, 8);
    t.after(() => closeQuietly(fd));
    const ino = fs.lstatSync(file).ino;

    assertSysError(() => openUnixListener(file, 8), 'EADDRINUSE',
      new RegExp(`^cannot listen on ${file}: a running server answers on it \\(EADDRINUSE\\)$`));
    assert.equal(fs.lstatSync(file).ino, ino, 'the live socket file must not be replaced');
    assert.equal(isListening(fd), true);
  });

  test('a live socket whose accept queue is full is still detected, without blocking', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'full.sock');
    const fd = openUnixListener(file, 0);
    t.after(() => closeQuietly(fd));
    // Fill the queue (a unix backlog of 0 admits one connection, then refuses with EAGAIN).
    await connectClient(t, { path: file });
    assertSysError(() => openUnixListener(file, 8), 'EADDRINUSE', /a running server answers on it/);
  });

  test('a path that is not a socket: EEXIST, and it is left untouched', (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'regular');
    fs.writeFileSync(file, 'keep me');
    assertSysError(() => openUnixListener(file, 8), 'EEXIST',
      new RegExp(`^cannot listen on ${file}: the path exists and is not a socket \\(EEXIST\\)$`));
    assert.equal(fs.readFileSync(file, 'utf8'), 'keep me');
    assertSysError(() => openUnixListener(dir, 8), 'EEXIST', /is not a socket/);
  });

  test('path length: 107 bytes work, 108 give ENAMETOOLONG; a missing directory gives ENOENT', (t) => {
    const dir = tempDir(t);
    const named = (len: number) => path.join(dir, 's'.repeat(len - dir.length - 1));

    const longest = named(107);
    assert.equal(Buffer.byteLength(longest), 107);
    const fd = openUnixListener(longest, 8);
    t.after(() => closeQuietly(fd));
    assert.deepEqual(socketAddress(fd), { kind: 'unix', path: longest });

    const tooLong = named(108);
    assertSysError(() => openUnixListener(tooLong, 8), 'ENAMETOOLONG',
      /: the path is 108 bytes long, a unix socket path may have at most 107 \(ENAMETOOLONG\)$/);
    assert.equal(fs.existsSync(tooLong), false);

    const missing = path.join(dir, 'no', 'such.sock');
    assertSysError(() => openUnixListener(missing, 8), 'ENOENT',
      new RegExp(`^cannot listen on ${missing}: no such file or directory \\(ENOENT\\)$`));
  });
});

/* ------------------------------------------------------------------ */
/* fds                                                                 */
/* ------------------------------------------------------------------ */

describe('dup / setCloexec / closeFd', () => {
  test('dup gives another fd on the same socket; closing it leaves the original listening', (t) => {
    const { fd } = tcpListener(t);
    const copy = dup(fd);
    t.after(() => closeQuietly(copy));
    assert.notEqual(copy, fd);
    assert.ok(copy >= 3);
    assert.equal(fs.fstatSync(copy).ino, fs.fstatSync(fd).ino);
    assert.equal(isListening(copy), true);
    assert.equal(hasCloexecFlag(copy), true, 'dup must be close-on-exec (F_DUPFD_CLOEXEC)');

    closeFd(copy);
    assert.equal(isListening(fd), true);
    assertSysError(() => isListening(copy), 'EBADF', /^cannot query fd \d+: bad file descriptor \(EBADF\)$/);
    assertSysError(() => closeFd(copy), 'EBADF', /bad file descriptor/);
  });

  test('setCloexec: the flag decides whether a spawned program inherits the fd', (t) => {
    const { fd } = tcpListener(t);
    const ino = fs.fstatSync(fd).ino;
    // `$$` is the shell itself: what it inherited through exec.
    const inherited = () =>
      spawnSync('/bin/sh', ['-c', `readlink /proc/$$/fd/${fd} || true`], { encoding: 'utf8' }).stdout.trim();

    setCloexec(fd, false);
    assert.equal(hasCloexecFlag(fd), false);
    assert.equal(inherited(), `socket:[${ino}]`);

    setCloexec(fd, true);
    setCloexec(fd, true); // idempotent
    assert.equal(hasCloexecFlag(fd), true);
    assert.equal(inherited(), '');
  });

  test('koffi errno contract: a failing call reports its errno', (t) => {
    assertSysError(() => closeFd(-1), 'EBADF', /^cannot close fd -1: bad file descriptor \(EBADF\)$/);
    assertSysError(() => dup(-1), 'EBADF', /^cannot duplicate fd -1: bad file descriptor \(EBADF\)$/);
    assertSysError(() => setCloexec(-1, true), 'EBADF', /bad file descriptor/);
    const notSocket = fs.openSync('/dev/null', 'r');
    t.after(() => fs.closeSync(notSocket));
    assertSysError(() => socketAddress(notSocket), 'ENOTSOCK', /socket operation on non-socket/);
    assertSysError(() => isListening(notSocket), 'ENOTSOCK', /socket operation on non-socket/);
  });
});

/* ------------------------------------------------------------------ */
/* Processes: memfd, execve, reap (what a supervisor upgrade needs)    */
/* ------------------------------------------------------------------ */

/** Runs an ES module script in a fresh node; resolves with its exit code and stdout. */
async function runScript(script: string): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [code] = await once(child, 'exit');
  return { code: code as number | null, out };
}

describe('memfd / isCloexec / execve / reap', () => {

  test('memfd: an in-memory file, close-on-exec until told otherwise', (t) => {
    const fd = memfd('baton-test');
    t.after(() => closeQuietly(fd));
    assert.equal(isCloexec(fd), true);
    assert.equal(hasCloexecFlag(fd), true);
    fs.writeSync(fd, 'state');
    const buf = Buffer.alloc(16);
    assert.equal(buf.toString('utf8', 0, fs.readSync(fd, buf, 0, 16, 0)), 'state');
    setCloexec(fd, false);
    assert.equal(isCloexec(fd), false);
    assertSysError(() => isCloexec(-1), 'EBADF', /^cannot read the flags of fd -1: bad file descriptor \(EBADF\)$/);
  });

  test('execve replaces the image in place: same pid, stdout and un-flagged fds survive, children are reaped by pid', TIMEOUT, async () => {
    // Old image: two children libuv spawned, a pipe to each, an in-memory file; everything
    // that must survive has FD_CLOEXEC cleared (0-2 included: Node sets it on them).
    const after = `
      ${importOs('reap')}
      const fs = await import('node:fs');
      const [oldPid, a, aIn, b, mem] = process.argv.slice(1).map(Number);
      const buf = Buffer.alloc(16);
      const carried = buf.toString('utf8', 0, fs.readSync(mem, buf, 0, 16, 0));
      const running = [reap(a), reap(b)];
      const exits = {};
      const timeout = setTimeout(() => { console.log('timeout'); process.exit(1); }, 10000);
      process.on('SIGCHLD', () => {
        for (const pid of [a, b]) if (!(pid in exits)) { const r = reap(pid); if (r) exits[pid] = r; }
        if (Object.keys(exits).length < 2) return;
        clearTimeout(timeout);
        console.log(JSON.stringify({ pid: process.pid, oldPid, carried, running, a: exits[a], b: exits[b] }));
        process.exit(0);
      });
      fs.writeSync(aIn, 'go\\n'); // a exits 7
      process.kill(b, 'SIGTERM');`;
    const before = `
      ${importOs('handleFd', 'memfd', 'setCloexec', 'execve')}
      const fs = await import('node:fs');
      const { spawn } = await import('node:child_process');
      const a = spawn('/bin/sh', ['-c', 'read x; exit 7'], { stdio: ['pipe', 'ignore', 'ignore'] });
      const b = spawn('/bin/sh', ['-c', 'read x'], { stdio: ['pipe', 'ignore', 'ignore'] });
      const aIn = handleFd(a.stdin);
      const mem = memfd('probe');
      fs.writeSync(mem, 'carried');
      // b's stdin too: closed by the exec, it would end b's read before the SIGTERM.
      for (const fd of [0, 1, 2, aIn, handleFd(b.stdin), mem]) setCloexec(fd, false);
      execve(process.execPath, [process.execPath, '--input-type=module', '-e', ${JSON.stringify(after)},
        String(process.pid), String(a.pid), String(aIn), String(b.pid), String(mem)], process.env);`;
    const { code, out } = await runScript(before);
    assert.equal(code, 0, out);
    const r = JSON.parse(out) as Record<string, unknown>;
    assert.equal(r.pid, r.oldPid, 'same pid after execve');
    assert.equal(r.carried, 'carried');
    assert.deepEqual(r.running, [null, null]);
    assert.deepEqual(r.a, { code: 7, signal: null });
    assert.deepEqual(r.b, { code: null, signal: 'SIGTERM' });
  });

  test('reap refuses a pid that is not our child; a failed execve throws and leaves the process running', () => {
    assertSysError(() => reap(1), 'ECHILD', /^cannot wait for pid 1: /);
    assert.throws(() => reap(-1), { code: 'EINVAL', message: /not a single process id/ });
    assert.throws(() => execve('/nonexistent/baton', ['baton'], process.env), { code: 'ENOENT' });
  });
});

/* ------------------------------------------------------------------ */
/* Node internals                                                      */
/* ------------------------------------------------------------------ */

async function unixServer(t: TestContext): Promise<{ server: net.Server; file: string; accepted: Promise<net.Socket> }> {
  const file = path.join(tempDir(t), 'peer.sock');
  const server = net.createServer();
  const accepted = once(server, 'connection').then(([s]) => s as net.Socket);
  server.listen(file);
  t.after(() => {
    server.close();
    return accepted.then((s) => s.destroy());
  });
  await once(server, 'listening');
  return { server, file, accepted };
}

describe('Node internals', () => {
  test('Node internals contract: _handle.fd on net.Socket and net.Server', TIMEOUT, async (t) => {
    const why = `Node ${process.version} changed net.Socket/net.Server._handle.fd: update handleFd() in src/os/internals.ts`;
    const { server, file, accepted } = await unixServer(t);
    const client = await connectClient(t, { path: file });
    const serverSide = await accepted;
    for (const obj of [server, client.socket, serverSide]) {
      const handle = (obj as unknown as { _handle?: { fd?: unknown } })._handle;
      assert.equal(typeof handle?.fd, 'number', why);
    }
  });

  test('handleFd gives the OS fd of sockets and servers, and throws when there is none', TIMEOUT, async (t) => {
    const { server, file, accepted } = await unixServer(t);
    const client = await connectClient(t, { path: file });
    for (const obj of [server, client.socket, await accepted]) {
      const fd = handleFd(obj);
      assert.ok(fd >= 0);
      assert.equal(fs.fstatSync(fd).isSocket(), true);
    }
    assert.equal(isListening(handleFd(server)), true);
    assert.equal(isListening(handleFd(client.socket)), false);
    assert.throws(() => handleFd(new net.Socket()), /no OS file descriptor behind this socket/);
    assert.throws(() => handleFd(net.createServer()), /no OS file descriptor behind this server/);
  });

  test('onRawConnection hands over libuv\'s raw handles; one sent over IPC becomes a socket with socketOf', TIMEOUT, async (t) => {
    const why = `Node ${process.version} changed _handle.onconnection or how raw handles cross IPC: update onRawConnection()/socketOf() in src/os/internals.ts`;
    // The child makes a socket of what arrives and answers on it, as a round-robin worker does.
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      ${importOs('socketOf')}
      process.on('message', (m, handle) => socketOf(handle).end('from the child ' + m));`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    t.after(() => killChild(child));
    const server = net.createServer(() => assert.fail('no net.Socket may be made for a raw connection')).listen(0, '127.0.0.1');
    t.after(() => server.close());
    await once(server, 'listening');
    const got = new Promise<RawConnection>((resolve, reject) => onRawConnection(server, resolve, reject));
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect(port, '127.0.0.1');
    t.after(() => client.destroy());
    const raw = await got;
    assert.equal(typeof raw.close, 'function', why);
    const body = new Promise<string>((resolve) => {
      let text = '';
      client.setEncoding('utf8').on('data', (d: string) => (text += d)).on('end', () => resolve(text));
    });
    await new Promise<void>((resolve, reject) => child.send('hello', raw as unknown as net.Socket, { keepOpen: true }, (e) => (e ? reject(e) : resolve())));
    raw.close();
    assert.equal(await body, 'from the child hello', why);
    assert.throws(() => socketOf({}), /not a raw connection handle/);
    assert.throws(() => onRawConnection(net.createServer(), () => undefined, () => undefined), /no listening handle/);
  });

  test('ipcFd: the parent end of a child\'s IPC channel (Node internal channel.fd), null once closed', TIMEOUT, async (t) => {
    const child = spawn(process.execPath, ['-e', `process.on('message', () => process.disconnect())`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    t.after(() => killChild(child));
    const fd = ipcFd(child);
    assert.equal(typeof fd, 'number', `Node ${process.version} changed ChildProcess.channel.fd: update ipcFd() in src/os/internals.ts`);
    assert.equal(fs.fstatSync(fd!).isSocket(), true);
    const gone = once(child, 'disconnect');
    child.send('bye');
    await gone;
    assert.equal(ipcFd(child), null);
  });

  test('peerCredentials names this process for its own connection', TIMEOUT, async (t) => {
    const { file, accepted } = await unixServer(t);
    const client = await connectClient(t, { path: file });
    const mine = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
    assert.deepEqual(peerCredentials(await accepted), mine);
    assert.deepEqual(peerCredentials(client.socket), mine, 'the server end is this process too');
  });

  test('peerCredentials names another process for its connection', TIMEOUT, async (t) => {
    const { file, accepted } = await unixServer(t);
    // The child holds its connection until we close it.
    const child = spawn(process.execPath, ['-e', `require('net').connect(process.argv[1]).resume()`, file], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    t.after(() => killChild(child));
    const cred = peerCredentials(await accepted);
    assert.deepEqual(cred, { pid: child.pid, uid: process.getuid!(), gid: process.getgid!() });
  });

  test('peerCredentials refuses a TCP socket instead of inventing an identity', TIMEOUT, async (t) => {
    const server = net.createServer().listen(0, '127.0.0.1');
    t.after(() => server.close());
    await once(server, 'listening');
    const client = await connectClient(t, { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
    assert.throws(() => peerCredentials(client.socket), { code: 'EINVAL', message: /not a unix socket/ });
  });

  test('importing the os modules does not load koffi until a syscall is made', TIMEOUT, async () => {
    const script = `
      import { createRequire } from 'node:module';
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('koffi'));
      ${importOs('closeFd')}
      const before = loaded();
      try { closeFd(-1); } catch {}
      console.log(JSON.stringify({ before, after: loaded() }));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(out), { before: false, after: true });
  });
});
