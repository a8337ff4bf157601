// Contract tests for src/os/internals.ts: the Node.js internals baton reads. Each failure
// names the Node version and what changed, so an upgrade that breaks one fails loudly here.

import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { describe, test } from 'node:test';
import { dup } from '../../src/os/fds.js';
import { childrenWaitedFor, handleFd, ipcFd, onRawConnection, type RawConnection, socketOf, stopReceiving } from '../../src/os/internals.js';
import { isListening, openUdpSocket, socketAddress } from '../../src/os/sockets.js';
import { closeQuietly, connectClient, importOs, killChild, TIMEOUT, unixServer } from '../helpers/os.js';

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

  test("onRawConnection hands over libuv's raw handles; one sent over IPC becomes a socket with socketOf", TIMEOUT, async (t) => {
    const why = `Node ${process.version} changed _handle.onconnection or how raw handles cross IPC: update onRawConnection()/socketOf() in src/os/internals.ts`;
    // The child makes a socket of what arrives and answers on it, as a round-robin worker does.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
      ${importOs('socketOf')}
      process.on('message', (m, handle) => socketOf(handle).end('from the child ' + m));`,
      ],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    );
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
      client
        .setEncoding('utf8')
        .on('data', (d: string) => (text += d))
        .on('end', () => resolve(text));
    });
    await new Promise<void>((resolve, reject) => child.send('hello', raw as unknown as net.Socket, { keepOpen: true }, (e) => (e ? reject(e) : resolve())));
    raw.close();
    assert.equal(await body, 'from the child hello', why);
    assert.throws(() => socketOf({}), /not a raw connection handle/);
    assert.throws(
      () =>
        onRawConnection(
          net.createServer(),
          () => undefined,
          () => undefined,
        ),
      /no listening handle/,
    );
  });

  test("ipcFd: the parent end of a child's IPC channel (Node internal channel.fd), null once closed", TIMEOUT, async (t) => {
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
});

describe('Node internals: ChildProcess.prototype.spawn', () => {
  test('Node internals contract: ChildProcess.prototype.spawn is what spawn, exec and fork call', TIMEOUT, async () => {
    const ours = childrenWaitedFor();
    const p = execFile('/bin/true');
    assert.ok(p.pid !== undefined && ours.has(p.pid), `Node ${process.version}: execFile did not go through ChildProcess.prototype.spawn`);
    await once(p, 'exit');
    assert.equal(ours.has(p.pid!), false);
    // spawnSync is not tracked and needs not be: it has reaped its child before returning.
    spawnSync('/bin/true');
  });
});

describe('Node internals: stopReceiving', () => {
  test('a bound dgram socket stops reading and can still send; later datagrams stay queued for another reader', TIMEOUT, async (t) => {
    const fd = openUdpSocket('127.0.0.1', 0);
    t.after(() => closeQuietly(fd));
    const port = (socketAddress(fd) as { port: number }).port;
    const reader = dgram.createSocket('udp4');
    const client = dgram.createSocket('udp4');
    t.after(() => client.close());
    reader.bind({ fd: dup(fd) }); // listening at once: bind({ fd }) has nothing to look up
    const got: string[] = [];
    reader.on('message', (m) => got.push(String(m)));
    client.send('one', port, '127.0.0.1');
    await once(reader, 'message');
    stopReceiving(reader);
    client.send('two', port, '127.0.0.1');
    // Still able to send: the reply reaches the client.
    const clientPort = (client.address() as { port: number }).port;
    reader.send('reply', clientPort, '127.0.0.1');
    const [reply] = await once(client, 'message');
    assert.equal(String(reply), 'reply');
    reader.close();
    assert.deepEqual(got, ['one']);
    // 'two' waited in the kernel for whoever reads next.
    const next = dgram.createSocket('udp4');
    t.after(() => next.close());
    next.bind({ fd: dup(fd) });
    const [m] = await once(next, 'message');
    assert.equal(String(m), 'two');
    const closed = dgram.createSocket('udp4');
    closed.close();
    assert.throws(() => stopReceiving(closed), /no UDP handle behind this dgram socket/);
  });
});
