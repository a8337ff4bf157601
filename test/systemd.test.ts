// baton as a systemd service: it speaks sd_notify to the NOTIFY_SOCKET it is given, and
// takes its listeners from socket activation (LISTEN_FDS) instead of binding them.

import assert from 'node:assert/strict';
import { existsSync, fstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { Agent, request } from 'undici';
import { closeFd } from '../src/os/fds.js';
import { bindNotifySocket } from '../src/os/notify.js';
import { openTcpListener, openUnixListener, socketAddress } from '../src/os/sockets.js';
import { EXAMPLES, FIXTURES, startBaton, tempDir } from './helpers/baton.js';
import { cli, configDir } from './helpers/ops.js';

const v1 = ['node', join(EXAMPLES, 'hello/v1.js')];
const broken = ['node', join(EXAMPLES, 'hello/broken.js')];
const listenFds = ['node', join(FIXTURES, 'listen-fds.mjs')];
// LISTEN_PID must be baton's own pid: set by a shell that then becomes baton.
const WITH_LISTEN_PID = ['/bin/sh', '-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'sh'];

/** A stand-in for systemd's notify socket: collects what baton sends, in order. */
function notifySocket(t: TestContext): { path: string; messages: string[]; next(match: RegExp): Promise<string> } {
  const path = join(tempDir(), 'notify.sock');
  const messages: string[] = [];
  let waiters: { re: RegExp; from: number; resolve(m: string): void }[] = [];
  const s = bindNotifySocket(path, (text) => {
    messages.push(text);
    for (const w of waiters) {
      const m = messages.slice(w.from).find((x) => w.re.test(x));
      if (m) w.resolve(m);
    }
    waiters = waiters.filter((w) => !messages.slice(w.from).some((x) => w.re.test(x)));
  });
  t.after(() => s.close());
  let seen = 0;
  return {
    path,
    messages,
    // The next message (after those already taken) that matches.
    next(re) {
      const from = seen;
      const i = messages.findIndex((x, j) => j >= from && re.test(x));
      if (i >= 0) {
        seen = i + 1;
        return Promise.resolve(messages[i]!);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no notify message matching ${re}; got ${JSON.stringify(messages)}`)), 20_000);
        waiters.push({
          re,
          from,
          resolve: (m) => {
            clearTimeout(timer);
            seen = messages.lastIndexOf(m) + 1;
            resolve(m);
          },
        });
      });
    },
  };
}

const kinds = (messages: string[]): string[] => messages.map((m) => m.split('\n')[0]!).filter((k) => k !== 'WATCHDOG=1');

test('under systemd: READY=1, then RELOADING=1 + MONOTONIC_USEC and READY=1 per reload (failed too), STOPPING=1', { timeout: 60_000 }, async (t) => {
  const notify = notifySocket(t);
  const b = await startBaton({ argv: v1, env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '500000' } });
  t.after(() => b.dispose());
  const ready = await notify.next(/^READY=1/);
  assert.match(ready, /^READY=1\nSTATUS=serving generation 1 \(1\/1 ready\)$/);

  // The worker talks to baton's notify socket, never to systemd's; baton's watchdog stays baton's.
  const worker = (await b.status()).generations[0]!.workers[0]!.pid;
  const env = readFileSync(`/proc/${worker}/environ`, 'utf8').split('\0');
  assert.ok(!env.includes(`NOTIFY_SOCKET=${notify.path}`), "the worker got systemd's NOTIFY_SOCKET");
  assert.ok(
    env.some((e) => e.startsWith('NOTIFY_SOCKET=')),
    'the worker has no NOTIFY_SOCKET of its own',
  );
  assert.ok(!env.some((e) => e.startsWith('WATCHDOG_USEC=')), "the worker got baton's WATCHDOG_USEC");
  // WatchdogSec=: pings at half the interval.
  await notify.next(/^WATCHDOG=1$/);

  const before = process.hrtime.bigint() / 1000n;
  assert.ok((await b.reload()).ok);
  const after = process.hrtime.bigint() / 1000n;
  const reloading = await notify.next(/^RELOADING=1/);
  const usec = BigInt(/^MONOTONIC_USEC=(\d+)$/m.exec(reloading)?.[1] ?? '0');
  // Both processes read CLOCK_MONOTONIC: the stamp falls within the reload request.
  assert.ok(usec >= before && usec <= after, `MONOTONIC_USEC ${usec} not within [${before}, ${after}]`);
  assert.match(await notify.next(/^READY=1/), /STATUS=serving generation 2 \(1\/1 ready\); (1 draining; )?reload #2 done in \d+ ms$/);

  // A failed reload also ends with READY=1: the old generation serves on.
  assert.equal((await b.reload(broken)).ok, false);
  await notify.next(/^RELOADING=1/);
  assert.match(await notify.next(/^READY=1/), /STATUS=serving generation 2 \(1\/1 ready\); (1 draining; )?reload #3 failed: worker 0 of generation 3 exited/);

  // systemctl reload with Type=notify-reload sends SIGHUP.
  b.proc.kill('SIGHUP');
  await notify.next(/^RELOADING=1/);
  assert.match(await notify.next(/^READY=1/), /serving generation 4/);

  assert.equal(await b.stop(), 0);
  await notify.next(/^STOPPING=1/);
  assert.deepEqual(kinds(notify.messages), ['READY=1', 'RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
});

test('socket activation: inherited listeners are used, never bound again, and outlive a full restart', { timeout: 60_000 }, async (t) => {
  // What systemd's .socket unit would hold: a TCP and a unix listener, at fds 3 and 4.
  const tcp = openTcpListener('127.0.0.1', 0, 128);
  const path = join(tempDir(), 'admin.sock');
  const unix = openUnixListener(path, 128);
  t.after(() => {
    closeFd(tcp);
    closeFd(unix);
  });
  const port = (socketAddress(tcp) as { port: number }).port;
  const activation = { LISTEN_FDS: '2', LISTEN_FDNAMES: 'web:admin' };

  // Matched by address (the TCP one) and by name (the unix one, at another path on purpose).
  const a = await startBaton({
    argv: listenFds,
    listen: [`127.0.0.1:${port}`, `admin=unix:${join(tempDir(), 'elsewhere.sock')}`],
    launcher: WITH_LISTEN_PID,
    fds: [tcp, unix],
    env: activation,
  });
  t.after(() => a.dispose());
  const s = await a.status();
  assert.deepEqual(
    s.listeners.map((l) => ({ name: l.name, fd: l.fd, inode: l.inode, inherited: l.inherited })),
    [
      { name: `tcp-${port}`, fd: 3, inode: fstatSync(tcp).ino, inherited: true },
      { name: 'admin', fd: 4, inode: fstatSync(unix).ino, inherited: true },
    ],
  );
  assert.match(a.out, /listener tcp-\d+ uses inherited fd 3 \(web\); not bound again/);
  assert.match(a.out, /listener admin uses inherited fd 4 \(admin\); not bound again/);
  // reset: no keep-alive connection left for the stop's drain to wait out.
  const r = await request(`http://127.0.0.1:${port}/`, { reset: true });
  assert.equal(await r.body.text(), `gen=1 tcp-${port}\n`);
  assert.equal(await a.stop(), 0);
  // Ours to keep: a socket systemd passed in is not unlinked on stop.
  assert.ok(existsSync(path), 'the inherited unix socket was unlinked');

  // No baton runs: the listener still queues connections (systemd holds it, here the test).
  const queued = Array.from({ length: 5 }, () => request(`http://127.0.0.1:${port}/`).then((x) => x.body.text()));
  // A new baton, with no --listen at all: every inherited socket is a listener, named by LISTEN_FDNAMES.
  const b = await startBaton({ argv: listenFds, listen: [], launcher: WITH_LISTEN_PID, fds: [tcp, unix], env: activation });
  t.after(() => b.dispose());
  for (const body of await Promise.all(queued)) assert.equal(body, 'gen=1 web\n');
  assert.deepEqual(
    (await b.status()).listeners.map((l) => [l.name, l.address]),
    [
      ['web', `127.0.0.1:${port}`],
      ['admin', `unix:${path}`],
    ],
  );
  const viaUnix = await request('http://localhost/', { dispatcher: new Agent({ connect: { socketPath: path } }) });
  assert.equal(await viaUnix.body.text(), 'gen=1 admin\n');
});

test('several services under systemd: one READY=1 once every service serves, one RELOADING=1 / READY=1 per SIGHUP and per reload of one service (failed too)', {
  timeout: 60_000,
}, async (t) => {
  const notify = notifySocket(t);
  const services = { api: { listen: ['127.0.0.1:0'], command: v1 }, web: { listen: ['127.0.0.1:0'], command: v1, workers: 2 } };
  const c = configDir(JSON.stringify({ control: './ctl.sock', services }));
  const b = cli(['start'], { cwd: c.dir, env: { NOTIFY_SOCKET: notify.path } });
  t.after(() => b.kill());
  assert.match(await notify.next(/^READY=1/), /^READY=1\nSTATUS=api: serving generation 1 \(1\/1 ready\) \| web: serving generation 1 \(2\/2 ready\)$/);
  b.proc.kill('SIGHUP');
  await notify.next(/^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading api, web$/);
  assert.match(await notify.next(/^READY=1/), /api: serving generation 2 .*\| web: serving generation 2 /);
  // One service through the control socket: systemd hears of it as well.
  const control = join(c.dir, 'ctl.sock');
  const one = cli(['reload', '--control', control, '--quiet', 'web']);
  await notify.next(/^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading web: generation 2 -> 3$/);
  assert.match(await notify.next(/^READY=1/), /api: serving generation 2 .*\| web: serving generation 3 /);
  assert.equal(await one.exited, 0, one.out);
  // A failed one too: the old generation serves on, and the reason is in STATUS=.
  const failed = cli(['reload', '--control', control, '--quiet', 'api', '--', ...broken]);
  await notify.next(/^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading api: generation 2 -> 3$/);
  assert.match(await notify.next(/^READY=1/), /api: serving generation 2 .*reload #3 failed in \d+ ms: worker 0 of generation 3 exited/);
  assert.equal(await failed.exited, 1, failed.out);
  b.proc.kill('SIGTERM');
  assert.equal(await b.exited, 0);
  await notify.next(/^STOPPING=1/);
  assert.deepEqual(kinds(notify.messages), ['READY=1', 'RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
});
