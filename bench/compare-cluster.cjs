// Node's cluster module with a hand-written rolling restart, as a team without a process
// manager would write one: on SIGHUP, for each worker in turn, fork a new one, wait until
// it listens, then tell the old one to close its server ('shutdown', see bench/app.cjs) and
// kill it if it has not exited after KILL_AFTER_MS. Prints `rolled` when every worker is new.
// WORKERS workers of bench/app.cjs; NODE_CLUSTER_SCHED_POLICY as Node's default (rr on Linux).
const cluster = require('node:cluster');
const path = require('node:path');

const KILL_AFTER_MS = 5000;
cluster.setupPrimary({ exec: path.join(__dirname, 'app.cjs'), execArgv: ['--require', path.join(__dirname, 'setsid.cjs')] });
let workers = Array.from({ length: Number(process.env.WORKERS ?? 2) }, () => cluster.fork({ APP_VERSION: '1' }));
let version = 1;
let rolling = false;

process.on('SIGHUP', async () => {
  if (rolling) return;
  rolling = true;
  version++;
  const next = [];
  for (const old of workers) {
    const w = cluster.fork({ APP_VERSION: String(version) });
    await new Promise((resolve) => w.once('listening', resolve));
    next.push(w);
    old.send('shutdown');
    const t = setTimeout(() => old.process.kill('SIGKILL'), KILL_AFTER_MS);
    old.once('exit', () => clearTimeout(t));
  }
  workers = next;
  rolling = false;
  console.log(`rolled ${version}`);
});
process.on('SIGTERM', () => {
  for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  cluster.on('exit', () => Object.keys(cluster.workers).length === 0 && process.exit(0));
});
Promise.all(workers.map((w) => new Promise((r) => w.once('listening', r)))).then(() => console.log('cluster listening'));
