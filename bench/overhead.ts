// `npm run bench:overhead -- [--rounds 2] [--seconds 3]`
//
// Is baton out of the data path? The same app, side by side in one run, alternating:
//   bare node (1 process) | baton shared / round-robin, 1 worker
//   node cluster (scheduling none / rr), 2 workers | baton shared / round-robin, 2 workers
// under keep-alive (undici) and new-connection-per-request clients. Reports req/s, p50/p99,
// the ratio to the matching baseline, and how evenly connections spread over the workers
// (share per worker and Jain's fairness index: 1 = perfectly even, 1/n = one worker takes all).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { controlRequest } from '../src/control.js';
import type { StatusReport } from '../src/supervisor.js';
import { startLoad, type ClientKind } from './load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'dist/src/cli.js');
const APP = join(ROOT, 'examples/hello/v1.js');
const CLUSTER = join(ROOT, 'bench/cluster.mjs');

const { values: o } = parseArgs({ options: { rounds: { type: 'string', default: '2' }, seconds: { type: 'string', default: '3' } } });

interface Target {
  name: string;
  workers: number;
  baseline: string | null;
  start(dir: string): Promise<{ port: number; stop(): Promise<void> }>;
}

function until(p: ChildProcess, re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`no ${re} in 20 s:\n${out}`)), 20_000);
    const on = (d: Buffer): void => {
      out += d;
      if (re.test(out)) {
        clearTimeout(t);
        resolve();
      }
    };
    p.stdout!.on('data', on);
    p.stderr!.on('data', on);
  });
}

async function end(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const e = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await e;
}

const freePort = (): number => 20000 + Math.floor(Math.random() * 30000);

const bare: Target = {
  name: 'bare node',
  workers: 1,
  baseline: null,
  async start() {
    const port = freePort();
    const p = spawn(process.execPath, [APP], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    await until(p, /listening/);
    return { port, stop: () => end(p) };
  },
};

function cluster(policy: 'none' | 'rr'): Target {
  return {
    name: `node cluster ${policy}`,
    workers: 2,
    baseline: null,
    async start() {
      const port = freePort();
      const p = spawn(process.execPath, [CLUSTER], {
        env: { ...process.env, PORT: String(port), WORKERS: '2', NODE_CLUSTER_SCHED_POLICY: policy },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      await until(p, /(listening[\s\S]*){2}/);
      return { port, stop: () => end(p) };
    },
  };
}

function baton(distribution: 'shared' | 'round-robin', workers: number, baseline: string): Target {
  return {
    name: `baton ${distribution} w${workers}`,
    workers,
    baseline,
    async start(dir) {
      const control = join(dir, `${Math.random().toString(36).slice(2)}.sock`);
      const p = spawn(
        process.execPath,
        [CLI, 'start', '--listen', '127.0.0.1:0', '--control', control, '--workers', String(workers), '--distribution', distribution, '--', 'node', APP],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      await until(p, /generation 1 serves/);
      const s = (await controlRequest(control, { cmd: 'status' })) as { result: StatusReport };
      const a = s.result.listeners[0]!.address;
      return { port: Number(a.slice(a.lastIndexOf(':') + 1)), stop: () => end(p) };
    },
  };
}

const TARGETS: Target[] = [
  bare,
  baton('shared', 1, 'bare node'),
  baton('round-robin', 1, 'bare node'),
  cluster('none'),
  cluster('rr'),
  baton('shared', 2, 'node cluster none'),
  baton('round-robin', 2, 'node cluster rr'),
];
const LOADS: { name: string; kind: ClientKind; concurrency: number }[] = [
  { name: 'keep-alive', kind: 'undici', concurrency: 32 },
  { name: 'new conn', kind: 'fresh', concurrency: 16 },
];

interface Result { rps: number[]; p50: number[]; p99: number[]; jain: number[]; shares: string[] }

function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const sq = xs.reduce((a, b) => a + b * b, 0);
  return xs.length && sq ? (sum * sum) / (xs.length * sq) : 1;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-overhead-'));
  const results = new Map<string, Result>();
  for (let round = 0; round < Number(o.rounds); round++) {
    for (const load of LOADS) {
      for (const t of TARGETS) {
        const s = await t.start(dir);
        const byPid = new Map<string, number>();
        const r = await startLoad({
          target: { host: '127.0.0.1', port: s.port },
          clients: [{ kind: load.kind, concurrency: load.concurrency }],
          maxRequests: 50_000_000,
          maxDurationMs: Number(o.seconds) * 1000,
          expect: (status, body) => {
            const pid = /pid=(\d+)/.exec(body)?.[1] ?? '?';
            byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
            return status === 200;
          },
        }).done;
        await s.stop();
        const key = `${load.name}|${t.name}`;
        const res = results.get(key) ?? { rps: [], p50: [], p99: [], jain: [], shares: [] };
        const counts = [...byPid.values()];
        while (counts.length < t.workers) counts.push(0);
        const total = counts.reduce((a, b) => a + b, 0);
        res.rps.push(r.rps);
        res.p50.push(r.latency.p50);
        res.p99.push(r.latency.p99);
        res.jain.push(jain(counts));
        res.shares.push(counts.map((c) => `${Math.round((100 * c) / total)}%`).join('/'));
        results.set(key, res);
        console.error(`round ${round + 1} ${key}: ${Math.round(r.rps)} req/s, p99 ${r.latency.p99.toFixed(1)} ms, ${r.failed} failed`);
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`\n${new Date().toISOString()}  node ${process.version}  rounds ${o.rounds} × ${o.seconds} s, alternating\n`);
  console.log('| load | target | req/s (median) | vs baseline | p50 ms | p99 ms | share per worker | Jain |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const load of LOADS) {
    for (const t of TARGETS) {
      const r = results.get(`${load.name}|${t.name}`)!;
      const base = t.baseline ? results.get(`${load.name}|${t.baseline}`) : undefined;
      const ratio = base ? (median(r.rps) / median(base.rps)).toFixed(3) + `× ${t.baseline}` : '—';
      console.log(
        `| ${load.name} | ${t.name} | ${Math.round(median(r.rps))} | ${ratio} | ${median(r.p50).toFixed(1)} | ${median(r.p99).toFixed(1)} | ` +
          `${r.shares.at(-1)} | ${t.workers > 1 ? median(r.jain).toFixed(3) : '—'} |`,
      );
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
