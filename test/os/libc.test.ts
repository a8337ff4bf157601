// Contract tests for src/os/libc.ts: koffi reports errno, and koffi loads only on the
// first syscall (workers import the os modules without making one).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { describe, test } from 'node:test';
import { closeFd, dup, setCloexec } from '../../src/os/fds.js';
import { isListening, socketAddress } from '../../src/os/sockets.js';
import { assertSysError, importOs, TIMEOUT } from '../helpers/os.js';

describe('libc through koffi', () => {
  test('koffi errno contract: a failing call reports its errno', (t) => {
    assertSysError(() => closeFd(-1), 'EBADF', /^cannot close fd -1: bad file descriptor \(EBADF\)$/);
    assertSysError(() => dup(-1), 'EBADF', /^cannot duplicate fd -1: bad file descriptor \(EBADF\)$/);
    assertSysError(() => setCloexec(-1, true), 'EBADF', /bad file descriptor/);
    const notSocket = fs.openSync('/dev/null', 'r');
    t.after(() => fs.closeSync(notSocket));
    assertSysError(() => socketAddress(notSocket), 'ENOTSOCK', /socket operation on non-socket/);
    assertSysError(() => isListening(notSocket), 'ENOTSOCK', /socket operation on non-socket/);
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

  test('where there is no libc.so.6 (musl), libc comes through the process itself: dlopen(NULL) has every function used', () => {
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const lib = koffi.load(null);
    const getpid = lib.func('int getpid()');
    assert.equal(getpid(), process.pid);
    for (const name of [
      'socket',
      'setsockopt',
      'getsockopt',
      'bind',
      'listen',
      'connect',
      'getsockname',
      'close',
      'fcntl',
      'sendto',
      'sendmsg',
      'recvmsg',
      'recv',
      'prctl',
      'waitpid',
      'memfd_create',
      'execve',
      'getpwnam',
      'getpwuid',
      'getgrnam',
      'inet_pton',
      'inet_ntop',
    ]) {
      assert.doesNotThrow(() => lib.func(`int ${name}()`), `${name} is not found through dlopen(NULL)`);
    }
  });
});
