// Contract tests for src/os/notify.ts: the receiving end of NOTIFY_SOCKET, read on SIGIO
// without blocking; senders are this process (sendDatagram) and Python, as sd_notify
// clients are.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { isCloexec } from '../../src/os/fds.js';
import { bindNotifySocket, pauseNotifySignals } from '../../src/os/notify.js';
import { sendDatagram } from '../../src/os/sockets.js';
import { PYTHON, TIMEOUT, tempDir } from '../helpers/os.js';

describe('bindNotifySocket', () => {
  /** Resolves with the first `count` datagrams received. */
  function collect(count: number): { texts: string[]; done: Promise<string[]>; onMessage(text: string): void } {
    const texts: string[] = [];
    let resolve: (t: string[]) => void = () => {};
    // An open notify socket does not keep a process alive (the signal handler is unref'd): this does, until done.
    const timer = setTimeout(() => resolve(texts), 10_000);
    const done = new Promise<string[]>((r) => (resolve = r)).finally(() => clearTimeout(timer));
    return { texts, done, onMessage: (text) => texts.push(text) === count && resolve(texts) };
  }

  test('each datagram arrives whole and in order, read without blocking (SIGIO); an empty one stops nothing', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'n.sock');
    const c = collect(4);
    const r = bindNotifySocket(file, c.onMessage);
    t.after(() => r.close());
    assert.equal(isCloexec(r.fd), true, 'a worker spawned later would inherit it');
    sendDatagram(file, 'READY=1\nSTATUS=up');
    sendDatagram(file, '');
    sendDatagram(file, 'x'.repeat(5000));
    sendDatagram(file, 'STOPPING=1');
    assert.deepEqual(await c.done, ['READY=1\nSTATUS=up', '', 'x'.repeat(4096), 'STOPPING=1']);
  });

  test('a burst from another process all arrives, and the event loop keeps turning meanwhile', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'n.sock');
    const c = collect(400);
    const r = bindNotifySocket(file, c.onMessage);
    t.after(() => r.close());
    let turns = 0;
    const ticker = setInterval(() => turns++, 1);
    t.after(() => clearInterval(ticker));
    // A real sender nobody here wrote the receiving side for: Python, as sd_notify clients do it.
    const py = spawn(
      PYTHON,
      ['-c', `import socket\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\nfor i in range(400): s.sendto(b"N=%d" % i, ${JSON.stringify(file)})`],
      { stdio: 'inherit' },
    );
    const [code] = (await once(py, 'exit')) as [number];
    assert.equal(code, 0);
    const texts = await c.done;
    assert.deepEqual(
      texts,
      Array.from({ length: 400 }, (_, i) => `N=${i}`),
    );
    await new Promise((res) => setTimeout(res, 5));
    assert.ok(turns > 0, 'no timer ran');
  });

  test('paused (as for an execve), a datagram raises no SIGIO; resumed, what came meanwhile is read', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'n.sock');
    const got: string[] = [];
    const r = bindNotifySocket(file, (text) => got.push(text));
    t.after(() => r.close());
    const resume = pauseNotifySignals();
    sendDatagram(file, 'A=1');
    await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(got, [], 'read while paused');
    resume();
    assert.deepEqual(got, ['A=1']);
    sendDatagram(file, 'B=1');
    await new Promise((res) => setTimeout(res, 100));
    assert.deepEqual(got, ['A=1', 'B=1'], 'SIGIO not back after resume');
  });

  test('closed: nothing more is read, and senders are refused', TIMEOUT, async (t) => {
    const file = path.join(tempDir(t), 'n.sock');
    const got: string[] = [];
    const r = bindNotifySocket(file, (text) => got.push(text));
    sendDatagram(file, 'A=1');
    await new Promise((res) => setTimeout(res, 50));
    r.close();
    r.close(); // twice is harmless
    assert.throws(() => sendDatagram(file, 'B=1'), { code: 'ECONNREFUSED' });
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(got, ['A=1']);
    assert.throws(() => bindNotifySocket(path.join(tempDir(t), 'x'.repeat(120)), () => {}), { code: 'ENAMETOOLONG' });
  });
});
