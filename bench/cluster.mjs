// Node's own cluster running the example app, as the baseline for baton's pools.
// NODE_CLUSTER_SCHED_POLICY=rr|none picks round-robin or shared-handle scheduling.
//
// Each worker moves to a session of its own (setsid), as baton's workers are started: with
// the kernel's autogroup scheduling (on here), CPU is shared out per session, so workers
// sharing one session would get half the CPU of baton's on a busy machine.
import cluster from 'node:cluster';
import { createRequire } from 'node:module';

if (cluster.isPrimary) {
  const workers = Array.from({ length: Number(process.env.WORKERS ?? 2) }, () => cluster.fork());
  // Exit only once every worker has: the next measurement must not share the CPU with them.
  let left = workers.length;
  cluster.on('exit', () => --left === 0 && process.exit(0));
  process.on('SIGTERM', () => {
    for (const w of workers) w.kill();
  });
} else {
  const koffi = createRequire(import.meta.url)('koffi');
  koffi.load('libc.so.6').func('int setsid()')();
  await import('../examples/hello/v1.js');
}
