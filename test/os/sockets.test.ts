// Contract tests for src/os/sockets.ts: listening and datagram sockets made with libc, what
// can be read back from them (address, state, peer credentials).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { closeFd } from '../../src/os/fds.js';
import { isListening, openTcpListener, openUdpSocket, openUnixListener, peerCredentials, sendDatagram, socketAddress } from '../../src/os/sockets.js';
import {
  acceptQueue,
  allServed,
  assertSysError,
  closeQuietly,
  connectClient,
  connectMany,
  hasCloexecFlag,
  killChild,
  openFdCount,
  PYTHON,
  serveChild,
  TIMEOUT,
  tcpListener,
  tempDir,
  unixServer,
  waitFor,
} from '../helpers/os.js';
import { noIPv6Loopback, nonlocalBind, v6only } from '../helpers/prereq.js';

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
    assertSysError(
      () => openTcpListener('nonsense', 80, 511),
      'EINVAL',
      /^cannot listen on nonsense:80: 'nonsense' is not an IPv4 or IPv6 address literal \(EINVAL\)$/,
    );
    assertSysError(() => openTcpListener('localhost', 80, 511), 'EINVAL', /not an IPv4 or IPv6 address literal/);
    assertSysError(() => openTcpListener('', 80, 511), 'EINVAL', /not an IPv4 or IPv6 address literal/);
    assertSysError(() => openTcpListener('fe80::1%lo', 80, 511), 'EINVAL', /zone ids \('%lo'\) are not supported/);
    for (const port of [-1, 65536, 1.5, NaN]) {
      assertSysError(() => openTcpListener('127.0.0.1', port, 511), 'EINVAL', /port must be an integer from 0 to 65535/);
    }
    assertSysError(() => openTcpListener('127.0.0.1', 0, -1), 'EINVAL', /backlog must be an integer >= 0/);
    assert.equal(openFdCount(), before);
  });

  test("an address no interface has: the kernel's refusal is passed on, readably", { skip: nonlocalBind() }, () => {
    const before = openFdCount();
    assertSysError(() => openTcpListener('192.0.2.1', 0, 511), 'EADDRNOTAVAIL', /^cannot listen on 192\.0\.2\.1:0: address not available \(EADDRNOTAVAIL\)$/);
    assert.equal(openFdCount(), before);
  });

  test('IPv6: ::1, bracketed errors, and :: is dual-stack like Node', { ...TIMEOUT, skip: noIPv6Loopback() }, async (t) => {
    const { fd, port } = tcpListener(t, '::1');
    assert.deepEqual(socketAddress(fd), { kind: 'tcp', host: '::1', port });
    assert.equal(isListening(fd), true);
    assertSysError(
      () => openTcpListener('::1', port, 511),
      'EADDRINUSE',
      new RegExp(`^cannot listen on \\[::1\\]:${port}: address already in use \\(EADDRINUSE\\)$`),
    );
    const clients = await connectMany(t, 3, { host: '::1', port });
    serveChild(t, fd);
    await allServed(clients);

    await t.test('[::] takes IPv4 clients (dual-stack)', { skip: v6only() }, async (t) => {
      const any = tcpListener(t, '::');
      assert.deepEqual(socketAddress(any.fd), { kind: 'tcp', host: '::', port: any.port });
      await connectClient(t, { host: '127.0.0.1', port: any.port });
      await waitFor('an IPv4 client queued on [::]', () => acceptQueue(any.fd) === 1);
    });
  });
});

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
    assert.deepEqual(
      clients.map((c) => c.data),
      clients.map(() => ''),
    );
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

    assertSysError(() => openUnixListener(file, 8), 'EADDRINUSE', new RegExp(`^cannot listen on ${file}: a running server answers on it \\(EADDRINUSE\\)$`));
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
    assertSysError(() => openUnixListener(file, 8), 'EEXIST', new RegExp(`^cannot listen on ${file}: the path exists and is not a socket \\(EEXIST\\)$`));
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
    assertSysError(
      () => openUnixListener(tooLong, 8),
      'ENAMETOOLONG',
      /: the path is 108 bytes long, a unix socket path may have at most 107 \(ENAMETOOLONG\)$/,
    );
    assert.equal(fs.existsSync(tooLong), false);

    const missing = path.join(dir, 'no', 'such.sock');
    assertSysError(() => openUnixListener(missing, 8), 'ENOENT', new RegExp(`^cannot listen on ${missing}: no such file or directory \\(ENOENT\\)$`));
  });
});

describe('openUdpSocket', () => {
  test('binds without reading: datagrams queue until a child inheriting the fd reads them', TIMEOUT, async (t) => {
    const fd = openUdpSocket('127.0.0.1', 0);
    t.after(() => closeQuietly(fd));
    const addr = socketAddress(fd);
    assert.equal(addr.kind, 'udp');
    const port = addr.kind === 'udp' ? addr.port : -1;
    assert.ok(port > 0);
    assert.equal(isListening(fd), false);

    const client = dgram.createSocket('udp4');
    t.after(() => client.close());
    for (const n of [1, 2, 3]) client.send(`early ${n}`, port, '127.0.0.1');
    // A child started afterwards reads what queued before it existed, and answers.
    const child = spawn(
      process.execPath,
      ['-e', `const s = require('dgram').createSocket('udp4'); s.on('message', (m, r) => s.send('echo ' + m, r.port, r.address)); s.bind({ fd: 3 })`],
      { stdio: ['ignore', 'inherit', 'inherit', fd] },
    );
    t.after(() => child.kill('SIGKILL'));
    const got: string[] = [];
    await new Promise<void>((resolve) => client.on('message', (m) => got.push(String(m)) === 3 && resolve()));
    assert.deepEqual(got.sort(), ['echo early 1', 'echo early 2', 'echo early 3']);
  });

  test('bad input: one clear line', () => {
    assert.throws(() => openUdpSocket('nonsense', 1), {
      code: 'EINVAL',
      message: /^cannot bind udp:nonsense:1: 'nonsense' is not an IPv4 or IPv6 address literal \(EINVAL\)$/,
    });
    assert.throws(() => openUdpSocket('127.0.0.1', 70000), /port must be an integer from 0 to 65535/);
  });

  test('an address no interface has: one clear line', { skip: nonlocalBind() }, () => {
    assert.throws(() => openUdpSocket('192.0.2.1', 0), { code: 'EADDRNOTAVAIL', message: /^cannot bind udp:192\.0\.2\.1:0: address not available/ });
  });
});

describe('sendDatagram', () => {
  test('sends one datagram to a unix path and to an abstract name (@name), as sd_notify does', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'notify.sock');
    const name = `baton-test-${process.pid}`;
    // Python's socket module binds both kinds; each receiver prints what it got.
    const receive = (address: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const script = `import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1].replace('@','\\0',1))\nprint('bound',flush=True)\nprint(s.recv(4096).decode(),end='',flush=True)`;
        const p = spawn(PYTHON, ['-c', script, address], { stdio: ['ignore', 'pipe', 'inherit'] });
        t.after(() => p.kill('SIGKILL'));
        let out = '';
        p.stdout.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out === 'bound\n') {
            sendDatagram(address, 'READY=1\nSTATUS=all good');
          }
        });
        p.on('exit', (code) => (code === 0 ? resolve(out.slice('bound\n'.length)) : reject(new Error(`receiver exited ${code}`))));
      });
    assert.equal(await receive(file), 'READY=1\nSTATUS=all good');
    assert.equal(await receive(`@${name}`), 'READY=1\nSTATUS=all good');
  });

  test('nobody listening: ECONNREFUSED or ENOENT, in one line, and no fd left open', (t) => {
    const before = fs.readdirSync('/proc/self/fd').length;
    assert.throws(() => sendDatagram(path.join(tempDir(t), 'none.sock'), 'READY=1'), {
      code: 'ENOENT',
      message: /^cannot send to .*none\.sock: no such file or directory \(ENOENT\)$/,
    });
    assert.throws(() => sendDatagram(`@baton-nobody-${process.pid}`, 'READY=1'), { code: 'ECONNREFUSED' });
    assert.equal(fs.readdirSync('/proc/self/fd').length, before);
  });
});

describe('peerCredentials', () => {
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
});
