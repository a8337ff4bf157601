// Contract tests for the parts of src/os/ that serve the host integration: UDP sockets,
// sd_notify datagrams, the subreaper, users, and the Node internals the orphan reaper and
// the dgram redirect rely on. Same rule as test/os.test.ts: a Node or koffi upgrade that
// breaks any of it must fail here, saying what changed.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { closeFd, dup, fdBoundTo, isCloexec, lowestFreeFd, setCloexec } from '../src/os/fds.js';
import { childrenWaitedFor, stopReceiving } from '../src/os/internals.js';
import { lookupGroup, lookupUser } from '../src/os/process.js';
import { isListening, openUdpSocket, sendDatagram, socketAddress } from '../src/os/sockets.js';

const TIMEOUT = { timeout: 20_000 };
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-syshost-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function closeQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // closed by the test itself
  }
}

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

  test('bad input and an address no interface has: one clear line', () => {
    assert.throws(() => openUdpSocket('nonsense', 1), { code: 'EINVAL', message: /^cannot bind udp:nonsense:1: 'nonsense' is not an IPv4 or IPv6 address literal \(EINVAL\)$/ });
    assert.throws(() => openUdpSocket('127.0.0.1', 70000), /port must be an integer from 0 to 65535/);
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
    assert.throws(() => sendDatagram(path.join(tempDir(t), 'none.sock'), 'READY=1'), { code: 'ENOENT', message: /^cannot send to .*none\.sock: no such file or directory \(ENOENT\)$/ });
    assert.throws(() => sendDatagram(`@baton-nobody-${process.pid}`, 'READY=1'), { code: 'ECONNREFUSED' });
    assert.equal(fs.readdirSync('/proc/self/fd').length, before);
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

describe('subreaper, reap and childrenWaitedFor', () => {
  test('as a subreaper, an orphaned grandchild is re-parented here; reap collects it; libuv children are known', TIMEOUT, async (t) => {
    const fifo = path.join(tempDir(t), 'release');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    // In a child process: the subreaper flag must not leak into the test runner.
    const processUrl = new URL('../src/os/process.js', import.meta.url).href;
    const internalsUrl = new URL('../src/os/internals.js', import.meta.url).href;
    const script = `
      import { spawn } from 'node:child_process';
      import { readFileSync, writeFileSync } from 'node:fs';
      const { isChildSubreaper, reap, setChildSubreaper } = await import(${JSON.stringify(processUrl)});
      const { childrenWaitedFor } = await import(${JSON.stringify(internalsUrl)});
      const fifo = process.argv[1];
      const ours = childrenWaitedFor();
      const before = isChildSubreaper();
      setChildSubreaper();
      // sh starts a grandchild that exits (code 3) once the fifo is written to, prints its pid, and exits.
      const sh = spawn('/bin/sh', ['-c', '(read x < "$0"; exit 3) & echo $!', fifo], { stdio: ['ignore', 'pipe', 'inherit'] });
      const known = ours.has(sh.pid);
      let orphan = 0;
      sh.stdout.on('data', (d) => (orphan = Number(String(d).trim())));
      sh.on('exit', async () => {
        const ppid = Number(/PPid:\\s+(\\d+)/.exec(readFileSync('/proc/' + orphan + '/status', 'utf8'))[1]);
        const running = reap(orphan);
        writeFileSync(fifo, 'go\\n');
        let status = null;
        while (!(status = reap(orphan))) await new Promise((r) => setTimeout(r, 5));
        console.log(JSON.stringify({ before, after: isChildSubreaper(), known, forgotten: !ours.has(sh.pid), adopted: ppid === process.pid, running, status }));
      });`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, fifo], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(out), {
      before: false,
      after: true,
      known: true,
      forgotten: true,
      adopted: true,
      running: null,
      status: { code: 3, signal: null },
    });
  });

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

describe('lookupUser / lookupGroup', () => {
  test('names and ids through NSS', () => {
    const root = lookupUser('root');
    assert.deepEqual(root && { uid: root.uid, gid: root.gid, name: root.name }, { uid: 0, gid: 0, name: 'root' });
    assert.equal(lookupUser(0)?.name, 'root');
    assert.equal(lookupUser('no-such-user-baton'), null);
    assert.equal(lookupGroup('root'), 0);
    assert.equal(lookupGroup('no-such-group-baton'), null);
    const nobody = lookupUser('nobody');
    if (nobody) assert.equal(lookupUser(nobody.uid)?.name, 'nobody');
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
