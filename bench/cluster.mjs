// Node's own cluster running the example app, as the baseline for baton's pools.
// NODE_CLUSTER_SCHED_POLICY=rr|none picks round-robin or shared-handle scheduling.
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';

if (cluster.isPrimary) {
  cluster.setupPrimary({ exec: fileURLToPath(new URL('../examples/hello/v1.js', import.meta.url)) });
  const workers = Array.from({ length: Number(process.env.WORKERS ?? 2) }, () => cluster.fork());
  // Exit only once every worker has: the next measurement must not share the CPU with them.
  let left = workers.length;
  cluster.on('exit', () => --left === 0 && process.exit(0));
  process.on('SIGTERM', () => workers.forEach((w) => w.kill()));
}
