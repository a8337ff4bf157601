// The supervisor itself is SIGKILLed: its workers must not serve on, orphaned, forever.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startBaton } from '../helpers/baton.js';
import { alive, cases, faulty, flowing, freezeAndCount, listenState, load, record, until } from './harness.js';

const EXPECTED = cases({
  'supervisor-kill': {
    fault: 'the supervisor is SIGKILLed under load (shared distribution; a second listener the app does not serve)',
    expected:
      'workers see the IPC channel close and drain: they stop accepting at once and close every listener descriptor they inherited (the ports are free while they still finish), answer what they hold (slow requests included) and exit; a restarted baton binds the same ports; failed only = connections the kernel had queued and nobody accepted',
  },
  'supervisor-kill-rr': {
    fault: 'the supervisor is SIGKILLed under load (round-robin: workers hold the listeners but never accept)',
    expected:
      'as above: workers close every listener descriptor they hold on drain, so the port is free at once; failed only = connections queued in the kernel or accepted by the dead supervisor',
  },
});

for (const [id, mode] of [
  ['supervisor-kill', 'shared'],
  ['supervisor-kill-rr', 'round-robin'],
] as const) {
  test(EXPECTED[id].fault, async (t) => {
    const spec = EXPECTED[id];
    // Shared: a second listener the app never listens on (ready by --ready-after): the worker
    // holds its descriptor all the same, and must let go of it too.
    const extra = mode === 'shared' ? { listen: ['127.0.0.1:0', '127.0.0.1:0'], args: ['--ready-after', '300ms'] } : { listen: ['127.0.0.1:0'], args: [] };
    const b = await startBaton({ argv: faulty('--tag=v1'), listen: extra.listen, args: ['--drain-timeout', '15s', '--distribution', mode, ...extra.args] });
    t.after(() => b.dispose());
    const port = await b.port();
    const ports = (await b.status()).listeners.map((x) => Number(x.address.slice(x.address.lastIndexOf(':') + 1)));
    const worker = (await b.status()).generations[0]!.workers[0]!.pid;
    const l = load(t, port);
    await flowing(l);
    // Work it holds when baton dies; the first to finish logs to a pipe nobody reads any more.
    const slow = [3000, 4500].map((ms) =>
      request(`http://127.0.0.1:${port}/slow?ms=${ms}`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })),
    );
    await b.waitFor(/(slow-start[\s\S]*){2}/);
    // Freeze both, so what is lost can be counted: connections the kernel queued that nobody
    // accepted, and (round-robin) those the supervisor had accepted but not passed on.
    process.kill(worker, 'SIGSTOP');
    const supervisor = await freezeAndCount(b.proc.pid!, port);
    const pending = l.stop(); // no request starts once the service is down
    const queued = listenState(port).queued;
    b.proc.kill('SIGKILL');
    await b.exited;
    process.kill(worker, 'SIGCONT');
    const freeMs = await until('nothing listens on the ports', () => ports.every((p) => listenState(p).listening === 0), 10_000);
    assert.ok(alive(worker), 'the ports must be free while the old worker still finishes its work');
    const b2 = await startBaton({ argv: faulty('--tag=v2'), listen: ports.map((p) => `127.0.0.1:${p}`), args: ['--distribution', mode, ...extra.args] });
    t.after(() => b2.dispose());
    const r = await request(`http://127.0.0.1:${port}/`);
    assert.match(await r.body.text(), /^gen=1 v2/);
    for (const s of await Promise.all(slow)) {
      assert.equal(s.status, 200);
      assert.match(s.body, /^gen=1 v1/);
    }
    const goneMs = await until('the old worker has exited', () => !alive(worker), 15_000);
    const rep = await pending;
    const lost = supervisor.held + queued;
    assert.ok(
      rep.failed <= lost,
      `failed ${rep.failed} (${JSON.stringify(rep.errors)}), but only ${queued} were queued and ${supervisor.held} held by the supervisor`,
    );
    for (const e of Object.keys(rep.errors)) assert.match(e, /^(ECONNRESET|UND_ERR_SOCKET|ECONNREFUSED)$/, JSON.stringify(rep.errors));
    await b2.stop();
    record(
      spec,
      {
        observed: `${ports.length > 1 ? `both ports (one the app never listened on) free` : 'port free'} ${freeMs} ms after the worker resumed, while it still worked; new baton bound ${ports.length > 1 ? 'them' : 'it'} and served; both slow requests answered 200 by the old worker, which exited ${goneMs} ms later; failed ${rep.failed} of ${queued} queued + ${supervisor.held} held by the supervisor`,
        held: lost,
      },
      rep,
    );
  });
}
