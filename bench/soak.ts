// Soak: many reloads under load, then a check that nothing leaked or was lost.
//
//   npm run soak                      # 1000 reloads
//   npm run soak -- --reloads 50      # the short form
//   node dist/bench/soak.js --reloads 200 --workers 2 --out soak.json
//
// Runs a real `baton start` (examples/hello v1 <-> v2, alternating), a bounded mixed load
// (undici and http.Agent keep-alive, a new connection per request) for the whole run, and
// compares the supervisor before and after: its open descriptors (/proc/<pid>/fd), its RSS,
// the processes in its tree. "Before" is taken after a warm-up of 10 reloads (first-use
// allocations, JIT); "after" once every old generation has exited. Exits 1 if a request
// failed, or descriptors or processes are not back where they were.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { controlRequest } from '../src/control/control.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { mixedClients, startLoad } from './load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli/main.js');
const V1 = ['node', join(ROOT, 'examples/hello/v1.js')];
const V2 = ['node', join(ROOT, 'examples/hello/v2.js')];
const WARMUP = 10;

interface Figures {
  fds: number;
  rssMiB: number;
  processes: number;
}

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} wants a whole number`);
  return n;
}

function option(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? undefined : process.argv[i + 1];
}

/** Processes whose parent chain leads to `root`, itself included. */
function tree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(d), ppid);
    } catch {
      /* gone meanwhile */
    }
  }
  return [...parent.keys()].filter((p) => {
    for (let q: number | undefined = p; q !== undefined && q > 1; q = parent.get(q)) if (q === root) return true;
    return false;
  });
}

function figures(pid: number): Figures {
  const rss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rssMiB: Math.round(rss * 10) / 10, processes: tree(pid).length };
}

async function main(): Promise<void> {
  const reloads = flag('reloads', 1000);
  const workers = flag('workers', 1);
  const out = option('out');
  const dir = mkdtempSync(join(tmpdir(), 'baton-soak-'));
  const control = join(dir, 'ctl.sock');
  const sup = spawn(
    process.execPath,
    [CLI, 'start', '--control', control, '--listen', '127.0.0.1:0', '--workers', String(workers), '--drain-timeout', '10s', '--', ...V1],
    {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let log = '';
  sup.stderr!.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-20_000);
  });
  const exited = new Promise<number | null>((r) => sup.once('exit', (code) => r(code)));
  const call = async (req: Parameters<typeof controlRequest>[1]): Promise<unknown> => {
    const r = await controlRequest(control, req);
    if (!r.ok) throw new Error(`${req.cmd}: ${r.error}\n${log}`);
    return r.result;
  };
  const status = (): Promise<StatusReport> => call({ cmd: 'status' }) as Promise<StatusReport>;
  try {
    // Up once generation 1 serves.
    for (let i = 0; ; i++) {
      const s = await status().catch(() => null);
      if (s?.serving === 1) break;
      if (i > 300 || sup.exitCode !== null) throw new Error(`baton did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const s0 = await status();
    const address = s0.listeners[0]!.address;
    const port = Number(address.slice(address.lastIndexOf(':') + 1));
    const pid = s0.pid;
    const atStart = figures(pid);
    const t0 = Date.now();
    const load = startLoad({
      target: { host: '127.0.0.1', port },
      clients: mixedClients(4, 4, 2),
      maxRequests: 100_000_000,
      // Bounded in time: far more than the reloads take even on a busy box.
      maxDurationMs: 60_000 + (reloads + WARMUP) * 5_000,
      sampleLatencies: 0,
    });
    const settle = async (): Promise<void> => {
      // Old generations drain in the background: wait until only the serving one is left.
      for (let i = 0; (await status()).generations.length > 1; i++) {
        if (i > 300) throw new Error('old generations did not exit');
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const reload = async (i: number): Promise<void> => {
      const r = await controlRequest(control, { cmd: 'reload', argv: i % 2 ? V1 : V2, cwd: ROOT });
      if (!r.ok) throw new Error(`reload ${i} failed: ${r.error}\n${log}`);
    };
    let n = 0;
    for (; n < WARMUP; n++) await reload(n);
    await settle();
    const before = figures(pid);
    const every = Math.max(1, Math.floor(reloads / 10));
    for (let i = 0; i < reloads; i++, n++) {
      await reload(n);
      if ((i + 1) % every === 0) {
        const f = figures(pid);
        const snap = load.snapshot();
        console.log(
          `${i + 1}/${reloads} reloads, ${snap.ok} ok / ${snap.failed} failed, supervisor fds ${f.fds}, rss ${f.rssMiB} MiB, processes ${f.processes}`,
        );
      }
    }
    const reloadSeconds = (Date.now() - t0) / 1000;
    const report = await load.stop();
    await settle();
    const after = figures(pid);
    const s1 = await status();
    await call({ cmd: 'stop' });
    await exited;
    const result = {
      command: `npm run soak -- --reloads ${reloads}${workers !== 1 ? ` --workers ${workers}` : ''}`,
      reloads,
      workers,
      warmup: WARMUP,
      seconds: Math.round(reloadSeconds),
      requests: report.requests,
      ok: report.ok,
      failed: report.failed,
      errors: report.errors,
      byKind: report.byKind,
      latencyMs: report.latency,
      generations: s1.serving,
      atStart,
      before,
      after,
      node: process.version,
      date: new Date().toISOString(),
    };
    console.log(JSON.stringify(result, null, 2));
    if (out) writeFileSync(out, JSON.stringify(result) + '\n');
    const leaked = after.fds > before.fds || after.processes > before.processes;
    if (report.failed > 0 || leaked) {
      console.error(
        `soak: FAILED (${report.failed} failed request(s); fds ${before.fds} -> ${after.fds}; processes ${before.processes} -> ${after.processes})`,
      );
      process.exitCode = 1;
    } else
      console.log(
        `soak: ok: ${reloads} reloads, ${report.ok} requests, 0 failed; fds ${before.fds} -> ${after.fds}, rss ${before.rssMiB} -> ${after.rssMiB} MiB, processes ${before.processes} -> ${after.processes}`,
      );
  } finally {
    if (sup.exitCode === null && sup.signalCode === null) {
      sup.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
