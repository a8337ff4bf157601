// Contract tests for src/os/fdpass.ts: fds passed over a unix socket with SCM_RIGHTS, as a
// takeover hands the listening sockets to a new baton.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { connectUnix, recvLineWithFds, sendWithFds } from '../../src/os/fdpass.js';
import { isCloexec } from '../../src/os/fds.js';
import { handleFd } from '../../src/os/internals.js';
import { assertSysError, closeQuietly, tcpListener, tempDir } from '../helpers/os.js';

/** A unix connection: a blocking libc fd at one end (connectUnix), Node's accepted socket at the other. */
async function connection(t: TestContext, dir: string): Promise<{ client: number; conn: net.Socket }> {
  const file = path.join(dir, 'pass.sock');
  const server = net.createServer().listen(file);
  t.after(() => server.close());
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = connectUnix(file);
  t.after(() => closeQuietly(client));
  const [conn] = await accepted;
  t.after(() => conn.destroy());
  return { client, conn };
}

describe('sendWithFds / recvLineWithFds / connectUnix', () => {
  test('a line and two listening sockets cross a unix connection; the received fds are new, close-on-exec, the same sockets', async (t) => {
    const { client, conn } = await connection(t, tempDir(t));
    const a = tcpListener(t);
    const b = tcpListener(t);

    sendWithFds(handleFd(conn), 'offer 2\n', [a.fd, b.fd]);
    const got = recvLineWithFds(client);
    for (const fd of got.fds) t.after(() => closeQuietly(fd));

    assert.equal(got.line, 'offer 2');
    assert.equal(got.fds.length, 2);
    assert.ok(
      got.fds.every((fd) => fd !== a.fd && fd !== b.fd),
      'the kernel installs new fds',
    );
    assert.deepEqual(
      got.fds.map((fd) => fs.fstatSync(fd).ino),
      [a.fd, b.fd].map((fd) => fs.fstatSync(fd).ino),
    );
    assert.deepEqual(
      got.fds.map((fd) => isCloexec(fd)),
      [true, true],
    );
  });

  test('the other side closing before a newline: ECONNRESET in one line; nobody listening: ENOENT', async (t) => {
    const dir = tempDir(t);
    const { client, conn } = await connection(t, dir);
    // destroy() closes the fd at once (libuv defers only the callback): the read that follows
    // blocks the event loop, so the close must not wait for it.
    conn.destroy();
    assertSysError(() => recvLineWithFds(client), 'ECONNRESET', /^cannot receive sockets: the other side closed the connection \(ECONNRESET\)$/);
    assertSysError(() => connectUnix(path.join(dir, 'none.sock')), 'ENOENT', /^cannot connect to .*none\.sock: no such file or directory \(ENOENT\)$/);
  });
});
