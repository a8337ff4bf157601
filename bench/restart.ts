// `npm run build && node dist/bench/restart.js -- [--restarts 10] [--app examples/hello/v1.js]`
//
// The baseline baton is compared with: what a plain restart costs (what `systemctl restart`
// or a process manager without socket handover does). The app runs bare on a fixed port
// under the same mixed load as the reload benchmark; each restart sends SIGTERM, waits for
// the exit, and starts it again. Failed requests and refused connections are counted.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mixedClients, startLoad } from './load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const { values: o } = parseArgs({
  options: {
    restarts: { type: 'string', default: '10' },
    app: { type: 'string', default: 'examples/hello/v1.js' },
  },
});
const PAUSE_MS = 400; // between restarts, as in the demo: every instance serves real traffic

function start(port: number): Promise<ChildProcess> {
  const p = spawn(process.execPath, [join(ROOT, o.app!)], { cwd: ROOT, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the app did not say it listens within 20 s')), 20_000);
    p.stdout!.on('data', (d: Buffer) => {
      if (!d.toString().includes('listening')) return;
      clearTimeout(t);
      resolve(p);
    });
  });
}

async function main(): Promise<number> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  let app = await start(port);
  const load = startLoad({
    target: { host: '127.0.0.1', port },
    clients: mixedClients(8, 8, 4),
    maxRequests: 2_000_000,
    maxDurationMs: 120_000,
  });
  const gaps: number[] = [];
  for (let i = 0; i < Number(o.restarts); i++) {
    await new Promise((r) => setTimeout(r, PAUSE_MS));
    const t0 = performance.now();
    const exited = new Promise((r) => app.once('exit', r));
    app.kill('SIGTERM');
    await exited;
    app = await start(port);
    gaps.push(Math.round(performance.now() - t0));
    const s = load.snapshot();
    console.log(`restart ${i + 1}: down for ${gaps.at(-1)} ms   [${s.ok} ok, ${s.failed} failed so far]`);
  }
  await new Promise((r) => setTimeout(r, PAUSE_MS));
  const report = await load.stop();
  app.kill('SIGTERM');
  console.log(`\n| restarts | requests | failed | errors | down p50 / max (ms) |`);
  console.log(`|---|---|---|---|---|`);
  const sorted = [...gaps].sort((a, b) => a - b);
  console.log(
    `| ${gaps.length} | ${report.requests} | ${report.failed} | ${JSON.stringify(report.errors)} | ${sorted[sorted.length >> 1]} / ${sorted.at(-1)} |`,
  );
  console.log(
    `per client: ${Object.entries(report.byKind)
      .map(([k, v]) => `${k} ${v.ok} ok / ${v.failed} failed`)
      .join('; ')}`,
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
