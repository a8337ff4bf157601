// Contract tests for src/os/process.ts: execve in place, reaping by pid, the child
// subreaper, user and group lookups.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { execve, lookupGroup, lookupUser, reap } from '../../src/os/process.js';
import { assertSysError, importOs, runScript, TIMEOUT, tempDir } from '../helpers/os.js';

describe('execve / reap', () => {
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

describe('subreaper, reap and childrenWaitedFor', () => {
  test('as a subreaper, an orphaned grandchild is re-parented here; reap collects it; libuv children are known', TIMEOUT, async (t) => {
    const fifo = path.join(tempDir(t), 'release');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    // In a child process: the subreaper flag must not leak into the test runner.
    const processUrl = new URL('../../src/os/process.js', import.meta.url).href;
    const internalsUrl = new URL('../../src/os/internals.js', import.meta.url).href;
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
