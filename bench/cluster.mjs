// Node's own cluster running the example app, as the baseline for baton's pools.
// NODE_CLUSTER_SCHED_POLICY=rr|none picks round-robin or shared-handle scheduling.
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';

if (cluster.isPrimary) {
  cluster.setupPrimary({ exec: fileURLToPath(new URL('../examples/hello/v1.js', import.meta.url)) });
  for (let i = 0; i < Number(process.env.WORKERS ?? 2); i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill();
    process.exit(0);
  });
}
