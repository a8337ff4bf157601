// Unmodified apps of the popular frameworks, CommonJS and ESM, reload under load with
// nothing lost: the runtime baton preloads does all the work.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { mixedClients, startLoad } from '../bench/load.js';
import { FIXTURES, startBaton } from './helpers/baton.js';

const APPS = ['http.cjs', 'http.mjs', 'express.cjs', 'express.mjs', 'fastify.cjs', 'fastify.mjs', 'fastify-dualstack.cjs'];
const RELOADS = 3;

for (const app of APPS) {
  test(`${app}: serves on baton's socket and reloads ${RELOADS} times under load with 0 failed`, async (t) => {
    const argv = ['node', join(FIXTURES, app)];
    const b = await startBaton({ argv });
    t.after(() => b.dispose());
    const port = await b.port();
    const load = startLoad({
      target: { host: '127.0.0.1', port },
      clients: mixedClients(4, 4, 2),
      maxRequests: 200_000,
      maxDurationMs: 30_000,
    });
    for (let i = 0; i < RELOADS; i++) {
      const reply = await b.reload(argv);
      assert.ok(reply.ok, JSON.stringify(reply));
    }
    const last = await request(`http://127.0.0.1:${port}/`);
    assert.match(await last.body.text(), new RegExp(`^gen=${RELOADS + 1} `));
    const report = await load.stop();
    assert.equal(report.failed, 0, JSON.stringify(report.errors));
    assert.ok(Object.keys(report.bodies).length >= 2, `the load did not cross a handoff: ${JSON.stringify(report.bodies)}`);
    // Nothing but baton's listener was bound: no worker warned about a direct bind.
    assert.doesNotMatch(b.out, /bound directly/);
    assert.equal(await b.stop(), 0);
  });
}
