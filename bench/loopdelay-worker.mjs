// Loaded into baton's workers by the warm-up benchmark (NODE_OPTIONS=--import=<this file>,
// which the supervisor passes on to its workers): how long each worker's event loop was
// blocked, in 50 ms buckets stamped with the wall clock, written at exit to
// LOOP_DELAY_DIR/<pid>.json, so the benchmark can read what the runtime did around a
// handoff (the old generation's drain, the new one's warm-up and first clients).
// Does nothing in any other process (the supervisor has bench/loopdelay.mjs).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';

if (process.env.BATON_GENERATION && process.env.LOOP_DELAY_DIR) {
  const h = monitorEventLoopDelay({ resolution: 2 });
  h.enable();
  const buckets = [];
  setInterval(() => {
    buckets.push([Date.now(), h.max / 1e6]);
    h.reset();
  }, 50).unref();
  process.on('exit', () => {
    buckets.push([Date.now(), h.max / 1e6]);
    writeFileSync(join(process.env.LOOP_DELAY_DIR, `${process.pid}.json`), JSON.stringify({ generation: Number(process.env.BATON_GENERATION), buckets }));
  });
}
