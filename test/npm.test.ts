// `baton start -- npm start`: npm is the process baton spawns, the app runs under it
// (npm -> sh -c -> node server.js). The app is what baton serves and reloads: npm hands the
// listeners down (src/runtime/launcher.ts), the app says ready and names itself with
// READY=1/MAINPID= on NOTIFY_SOCKET, and the drain signal goes to it, not to npm.

import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { mixedClients, startLoad } from '../bench/load.js';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import { startBaton, tempDir } from './helpers/baton.js';

/** An app that knows nothing of baton, started the way many teams start theirs. */
function npmApp(scripts: Record<string, string> = { start: 'node server.js' }): string {
  const dir = tempDir('baton-npm-app-');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, scripts }));
  writeFileSync(
    join(dir, 'server.js'),
    [
      "const http = require('http');",
      "http.createServer((req, res) => res.end('pid=' + process.pid + '\\n')).listen(process.env.PORT || 3000, () => console.log('app listening'));",
      '',
    ].join('\n'),
  );
  return dir;
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`);

test('baton start -- npm start: the app under npm serves and reloads under load, 0 failed', { timeout: 120_000 }, async (t) => {
  const app = npmApp();
  const b = await startBaton({ argv: ['npm', '--prefix', app, 'start'], env: { npm_config_update_notifier: 'false' } });
  t.after(() => b.dispose());
  await b.waitFor(/app listening/);
  const port = await b.port();
  const load = startLoad({ target: { host: '127.0.0.1', port }, clients: mixedClients(4, 4, 4), maxRequests: 200_000, maxDurationMs: 60_000 });
  const records: HandoffRecord[] = [];
  for (let i = 0; i < 5; i++) {
    const reply = await b.reload(undefined, 'drained');
    assert.ok(reply.ok, `reload ${i + 1} failed: ${JSON.stringify(reply)}`);
    records.push(reply.result as HandoffRecord);
  }
  const report = await load.stop();
  assert.equal(report.failed, 0, `failed requests: ${JSON.stringify(report.errors)}`);
  assert.ok(report.ok > 200, `too little load to prove anything: ${report.ok}`);
  assert.deepEqual(
    records.map((r) => r.state),
    Array(5).fill('done'),
  );
  // Each generation's app answered (not npm's own port, not one app for all), and every old one is gone.
  const pids = Object.keys(report.bodies)
    .filter((k) => k.startsWith('pid='))
    .map((k) => Number(k.slice(4)));
  assert.ok(pids.length >= 4, `only ${pids.length} apps answered: ${pids.join(' ')}`);
  // Each old app drained and exited with its generation (at most the serving one still runs).
  assert.ok(pids.filter(alive).length <= 1, `old apps still run: ${pids.filter(alive).join(' ')}`);
  assert.doesNotMatch(b.out, /has said nothing|EADDRINUSE|killed at the drain deadline/);
  t.diagnostic(`${report.ok} requests; reload ready in ${records.map((r) => r.readyMs).join(' ')} ms`);
  assert.equal(await b.stop(), 0);
  assert.deepEqual(pids.filter(alive), [], 'an app outlived baton stop');
  // npm ended as a program does, not by a signal: the app under it drained and exited 0.
  assert.doesNotMatch(b.out, /worker \d+\.0 exited pid=\d+ code=null signal=SIGTERM/);
});

test('npm under npm (`"start": "npm run serve"`): the app two launchers down is served and reloaded', { timeout: 60_000 }, async (t) => {
  const app = npmApp({ start: 'npm run serve', serve: 'node server.js' });
  const b = await startBaton({ argv: ['npm', '--prefix', app, 'start'], env: { npm_config_update_notifier: 'false' } });
  t.after(() => b.dispose());
  const port = await b.port();
  const get = async (): Promise<string> => (await (await request(`http://127.0.0.1:${port}/`)).body.text()).trim();
  const first = await get();
  assert.match(first, /^pid=\d+$/);
  const reply = await b.reload(undefined, 'drained');
  assert.ok(reply.ok, JSON.stringify(reply));
  const second = await get();
  assert.match(second, /^pid=\d+$/);
  assert.notEqual(second, first);
  assert.equal(alive(Number(first.slice(4))), false, 'the old app still runs');
  assert.equal(await b.stop(), 0);
});
