// Contract tests for src/os/fds.ts: dup, close-on-exec, close, in-memory files, and finding
// the fd a library opened without telling.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isListening } from '../../src/os/sockets.js';
import { closeFd, dup, fdBoundTo, isCloexec, lowestFreeFd, memfd, setCloexec } from '../../src/os/fds.js';
import { assertSysError, closeQuietly, hasCloexecFlag, tcpListener, tempDir } from '../helpers/os.js';

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
});

describe('memfd / isCloexec', () => {
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
});

describe('fdBoundTo', () => {
  test('finds the fd of a socket a library opened without saying which, so it can be made close-on-exec', (t) => {
    const file = path.join(tempDir(t), 'lib.sock');
    const { DgramSocket } = createRequire(import.meta.url)('node-unix-socket') as typeof import('node-unix-socket');
    const s = new DgramSocket();
    t.after(() => s.close());
    s.bind(file);
    const fd = fdBoundTo(file);
    assert.ok(fd !== null && fd > 2, `fd ${fd}`);
    // The package's own behaviour, which notify.ts corrects: no FD_CLOEXEC.
    assert.equal(isCloexec(fd), false, 'node-unix-socket now sets FD_CLOEXEC itself: the fix in notify.ts can go');
    setCloexec(fd, true);
    assert.equal(isCloexec(fd), true);
    assert.equal(fdBoundTo(path.join(path.dirname(file), 'other.sock')), null);
  });

  test('the likely fd is checked first; a wrong guess (not a socket, another socket, closed) falls back to the scan', (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'lib.sock');
    const { DgramSocket } = createRequire(import.meta.url)('node-unix-socket') as typeof import('node-unix-socket');
    const guess = lowestFreeFd();
    // lowestFreeFd is what the next open gets: the guess notify.ts makes before binding.
    const s = new DgramSocket();
    t.after(() => s.close());
    s.bind(file);
    const fd = fdBoundTo(file)!;
    assert.equal(fd, guess, 'the socket did not get the lowest free fd');
    assert.equal(fdBoundTo(file, fd), fd);
    const other = path.join(dir, 'other.sock');
    const o = new DgramSocket();
    t.after(() => o.close());
    o.bind(other);
    assert.equal(fdBoundTo(file, fdBoundTo(other)!), fd, 'another socket as the guess');
    assert.equal(fdBoundTo(file, 0), fd, 'fd 0 (stdin: not this socket) as the guess');
    assert.equal(fdBoundTo(file, lowestFreeFd()), fd, 'a closed fd as the guess');
  });
});
