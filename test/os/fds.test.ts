// Contract tests for src/os/fds.ts: dup, close-on-exec, close, in-memory files.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, test } from 'node:test';
import { closeFd, dup, isCloexec, memfd, setCloexec } from '../../src/os/fds.js';
import { isListening } from '../../src/os/sockets.js';
import { assertSysError, closeQuietly, hasCloexecFlag, tcpListener } from '../helpers/os.js';

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
    const inherited = () => spawnSync('/bin/sh', ['-c', `readlink /proc/$$/fd/${fd} || true`], { encoding: 'utf8' }).stdout.trim();

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
