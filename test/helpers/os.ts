// Shared by the os contract tests (test/os/*.test.ts): listeners, clients, children and
// the /proc readings they check against.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { closeFd } from '../../src/os/fds.js';
import type { SysError } from '../../src/os/libc.js';
import { openTcpListener, socketAddress } from '../../src/os/sockets.js';

export const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
export const TIMEOUT = { timeout: 20_000 };

/** For scripts run in a child process: import every os module and take the names given. */
export function importOs(...names: string[]): string {
  const urls = ['libc', 'sockets', 'fdpass', 'fds', 'process', 'internals'].map((m) => new URL(`../../src/os/${m}.js`, import.meta.url).href);
  return `const { ${names.join(', ')} } = Object.assign({}, ...(await Promise.all(${JSON.stringify(urls)}.map((u) => import(u)))));`;
}
export const SERVE_HI = `require('net').createServer((s) => s.end('hi')).listen({ fd: 3 })`;

export function tcpListener(t: TestContext, host = '127.0.0.1', backlog = 511): { fd: number; port: number } {
  const fd = openTcpListener(host, 0, backlog);
  t.after(() => closeQuietly(fd));
  const addr = socketAddress(fd);
  assert.equal(addr.kind, 'tcp');
  return { fd, port: addr.kind === 'tcp' ? addr.port : -1 };
}

export function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // already closed by the test itself
  }
}

export function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-sys-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A worker: a child process that serves 'hi' on the listener it inherits at fd 3. */
export function serveChild(t: TestContext, fd: number): ChildProcess {
  const child = spawn(process.execPath, ['-e', SERVE_HI], { stdio: ['ignore', 'inherit', 'inherit', fd] });
  t.after(() => killChild(child));
  return child;
}

export async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

export interface Client {
  socket: net.Socket;
  data: string;
  closed: boolean;
  /** Settles when the connection closes, with what was received. Never rejects. */
  done: Promise<{ data: string; error: Error | undefined }>;
}

/** Resolves once connected: the kernel completed the handshake, whoever accepts later. */
export function connectClient(t: TestContext, to: net.NetConnectOpts): Promise<Client> {
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

export async function connectMany(t: TestContext, n: number, to: net.NetConnectOpts): Promise<Client[]> {
  return Promise.all(Array.from({ length: n }, () => connectClient(t, to)));
}

export async function allServed(clients: Client[]): Promise<void> {
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
export function acceptQueue(fd: number): number {
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
export async function waitFor(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** O_CLOEXEC as shown in /proc/<pid>/fdinfo/<fd> ("flags:" is octal). */
export function hasCloexecFlag(fd: number, pid: number | 'self' = 'self'): boolean {
  const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
  const flags = /^flags:\s+([0-7]+)$/m.exec(info);
  assert.ok(flags, `no flags: line in fdinfo: ${info}`);
  return (parseInt(flags[1]!, 8) & 0o2000000) !== 0;
}

export function assertSysError(fn: () => unknown, code: string, message: RegExp): void {
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

/** Runs an ES module script in a fresh node; resolves with its exit code and stdout. */
export async function runScript(script: string): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [code] = await once(child, 'exit');
  return { code: code as number | null, out };
}

export async function unixServer(t: TestContext): Promise<{ server: net.Server; file: string; accepted: Promise<net.Socket> }> {
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
