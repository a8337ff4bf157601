// Containers and orphans: baton reaps what its workers leave behind (as a child subreaper,
// and as PID 1 of a pid namespace), and SIGTERM stops it gracefully within --stop-timeout.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { type Baton, EXAMPLES, FIXTURES, startBaton, tempDir } from './helpers/baton.js';
import { anyOf, noCommand, notRoot } from './helpers/prereq.js';

const noUnshare = anyOf(notRoot(), noCommand('unshare', 'util-linux'));
const cannotUnshare = anyOf(
  noUnshare,
  !noUnshare &&
    spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status !== 0 &&
    'unshare --pid --fork --mount-proc fails here (a container without CAP_SYS_ADMIN?)',
);

/** A worker command that leaves an orphan waiting on a fifo, then serves `app`. */
function withOrphan(app: string[]): { argv: string[]; fifo: string } {
  const fifo = join(tempDir(), 'release');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  return { argv: ['/bin/sh', join(FIXTURES, 'orphan.sh'), fifo, ...app], fifo };
}

function status(pid: number): { ppid: number; state: string } | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { ppid: Number(/^PPid:\s+(\d+)/m.exec(text)![1]), state: /^State:\s+(\S)/m.exec(text)![1]! };
  } catch {
    return null; // gone: reaped
  }
}

/** The orphan's pid as this test's namespace numbers it: its command line names the fifo. */
function orphanPid(fifo: string): number {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (cmdline.includes('read line') && cmdline.includes(fifo)) return Number(name);
    } catch {
      // exited meanwhile
    }
  }
  throw new Error(`no orphan waiting on ${fifo}`);
}

/**
 * Let the orphan exit and wait for baton to say it reaped it. The log line comes after the
 * waitpid, so the process must be gone by then: a zombie left would still be in /proc.
 */
async function releaseAndReap(b: Baton, fifo: string, nsPid: number, pid: number): Promise<void> {
  writeFileSync(fifo, 'go\n');
  await b.waitFor(new RegExp(`reaped an orphaned process pid=${nsPid} code=0`));
  assert.equal(status(pid), null, `orphan ${pid} still in /proc: ${JSON.stringify(status(pid))}`);
}

test('as a child subreaper, baton adopts an orphan a worker leaves behind and reaps it', { timeout: 30_000 }, async (t) => {
  const { argv, fifo } = withOrphan(['node', join(EXAMPLES, 'hello/v1.js')]);
  const b = await startBaton({ argv });
  t.after(() => b.dispose());
  const orphan = Number((await b.waitFor(/orphan pid=\d+/)).split('=')[1]);
  // Not PID 1's: baton's.
  assert.equal(status(orphan)?.ppid, b.proc.pid);
  await releaseAndReap(b, fifo, orphan, orphan);
  assert.equal((await b.status()).serving, 1);
});

test('as PID 1 of a pid namespace: orphans are reaped, SIGTERM stops gracefully, in-flight requests complete', {
  timeout: 60_000,
  skip: cannotUnshare,
}, async (t) => {
  const { argv, fifo } = withOrphan(['node', join(FIXTURES, 'inflight.mjs')]);
  const b = await startBaton({ argv, launcher: ['unshare', '--pid', '--fork', '--mount-proc'] });
  t.after(() => b.dispose());
  const s = await b.status();
  assert.equal(s.pid, 1, 'baton is not PID 1 in its namespace');
  assert.match(b.out, /running as PID 1/);
  // unshare forks baton: its only child, as this namespace numbers it.
  const baton = Number(readFileSync(`/proc/${b.proc.pid}/task/${b.proc.pid}/children`, 'utf8').trim());

  const nsPid = Number((await b.waitFor(/orphan pid=\d+/)).split('=')[1]);
  const orphan = orphanPid(fifo);
  assert.equal(status(orphan)?.ppid, baton);
  await releaseAndReap(b, fifo, nsPid, orphan);

  const port = await b.port();
  const inflight = Array.from({ length: 5 }, () =>
    request(`http://127.0.0.1:${port}/slow?ms=1000`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })),
  );
  await b.waitFor(/(slow request started[\s\S]*){5}/);
  process.kill(baton, 'SIGTERM');
  for (const r of await Promise.all(inflight)) {
    assert.equal(r.status, 200);
    assert.match(r.body, /^gen=1 slow done/);
  }
  assert.equal(await b.exited, 0);
  assert.match(b.out, /SIGTERM: stopping gracefully/);
});

test('--stop-timeout: a stop ends within it, even when a worker would take its whole drain timeout', { timeout: 30_000 }, async (t) => {
  const b = await startBaton({ argv: ['node', join(FIXTURES, 'blocking.mjs')], args: ['--drain-timeout', '60s', '--stop-timeout', '1s'] });
  t.after(() => b.dispose());
  const port = await b.port();
  // Blocks the worker's event loop: it cannot hear the drain.
  void request(`http://127.0.0.1:${port}/block`).catch(() => undefined);
  await b.waitFor(/blocking the event loop/);
  const t0 = Date.now();
  b.proc.kill('SIGTERM');
  assert.equal(await b.exited, 0);
  const took = Date.now() - t0;
  assert.ok(took >= 900 && took < 3000, `stop took ${took} ms with --stop-timeout 1s`);
});
