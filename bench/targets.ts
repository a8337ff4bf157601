// The servers the comparison reloads under load, each the same app (bench/app.cjs) on its
// own port of 127.0.0.1: baton in a given mode, PM2 in cluster mode (`pm2 reload`), Node's
// cluster module with a hand-written rolling restart (bench/compare-cluster.cjs), and a
// plain restart of one process (stop, start again: `systemctl restart` without socket
// activation). Each says when its reload was asked for and when the tool called it done.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { HandoffRecord } from '../src/supervisor/handoff.js';
import { Baton, type Child, freePorts, ROOT, spawnBare, spawnServer } from './harness.js';

export const APP = join(ROOT, 'bench/app.cjs');
const SETSID = join(ROOT, 'bench/setsid.cjs');

export interface Target {
  name: string;
  /** The command that reloads it, as a user would type it (shown in the tables). */
  how: string;
  port: number;
  /** Reloads (or restarts); resolves when the tool calls it done. */
  reload(): Promise<void>;
  /** After a reload: what the tool itself says it took (baton: its handoff record), if anything. */
  details?(): string;
  /**
   * baton with loopDelay: after a reload window [from, to] (wall clock), the longest event-loop
   * block of the supervisor since the reload request, and a reader for the workers' (which
   * they write at exit: call it once the target stopped).
   */
  loops?(from: number, to: number): Promise<{ supervisor: number; workers: () => { old: number; next: number } }>;
  stop(): Promise<void>;
}

export interface BatonTargetOptions {
  workers: number;
  distribution: 'shared' | 'round-robin';
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Measure the event loops of the supervisor and of every worker (bench/loopdelay*.mjs). */
  loopDelay?: boolean;
}

export async function batonTarget(name: string, o: BatonTargetOptions): Promise<Target> {
  const dir = o.loopDelay ? mkdtempSync(join(tmpdir(), 'baton-loop-')) : null;
  // Read after the target stopped (the workers write at exit): removed when the benchmark ends.
  if (dir) process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const env = { ...o.env, ...(dir ? { LOOP_DELAY_DIR: dir, NODE_OPTIONS: `--import=${pathToFileURL(join(ROOT, 'bench/loopdelay-worker.mjs')).href}` } : {}) };
  const b = await Baton.start({
    argv: ['node', APP],
    workers: o.workers,
    distribution: o.distribution,
    ...(o.args ? { args: o.args } : {}),
    env,
    loopDelay: o.loopDelay ?? false,
  });
  const port = await b.port();
  let last: HandoffRecord | null = null;
  return {
    name,
    how: `baton start --workers ${o.workers} --distribution ${o.distribution}${o.args?.length ? ` ${o.args.join(' ')}` : ''}; baton reload`,
    port,
    async reload() {
      if (dir) await b.loopDelay(); // counts afresh from here
      const r = await b.request({ cmd: 'reload' });
      if (!r.ok) throw new Error(`${name}: reload failed: ${r.error}`);
      last = r.result as HandoffRecord;
    },
    details: () => {
      if (!last) return '';
      const warm = b.warmup(last.to);
      return `ready ${last.readyMs} ms, done ${last.totalMs} ms${warm ? `, warm-up ${warm.ms} ms (${warm.requests.join(' + ')} requests)` : ''}`;
    },
    ...(dir
      ? {
          loops: async (from: number, to: number) => {
            const supervisor = (await b.loopDelay()).max;
            return { supervisor, workers: () => workerLoops(dir, from, to) };
          },
        }
      : {}),
    stop: () => b.stop(),
  };
}

/**
 * The longest event-loop block of any worker in [from, to] (wall clock ms), old generation
 * and new: read from the files the workers wrote at exit (bench/loopdelay-worker.mjs).
 */
function workerLoops(dir: string, from: number, to: number): { old: number; next: number } {
  const files = readdirSync(dir).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as { generation: number; buckets: [number, number][] });
  const inWindow = files.filter((f) => f.buckets.some(([t]) => t >= from && t <= to));
  const newest = Math.max(...inWindow.map((f) => f.generation));
  const worst = (fs: typeof files): number => Math.max(0, ...fs.flatMap((f) => f.buckets.filter(([t]) => t >= from && t <= to + 50).map(([, ms]) => ms)));
  return { old: worst(inWindow.filter((f) => f.generation < newest)), next: worst(inWindow.filter((f) => f.generation === newest)) };
}

/** Starting a bare process of the app until it answers: the start-up floor every reload is measured against. */
export async function plainTarget(name: string): Promise<Target> {
  const [port] = await freePorts(1);
  let version = 1;
  const start = async (): Promise<Child> => {
    const c = spawnBare(APP, port!, { APP_VERSION: String(version) });
    await c.waitFor(/app listening/);
    return c;
  };
  let child = await start();
  return {
    name,
    how: 'node bench/app.cjs; on reload SIGTERM, wait for the exit, start again',
    port: port!,
    async reload() {
      await child.end();
      version++;
      child = await start();
    },
    stop: () => child.end(),
  };
}

export async function clusterTarget(name: string, workers: number): Promise<Target> {
  const [port] = await freePorts(1);
  const c = spawnServer([join(ROOT, 'bench/compare-cluster.cjs')], { PORT: String(port), WORKERS: String(workers) });
  await c.waitFor(/cluster listening/);
  let rolled = 1;
  return {
    name,
    how: `node bench/compare-cluster.cjs (${workers} workers); kill -HUP`,
    port: port!,
    async reload() {
      rolled++;
      c.proc.kill('SIGHUP');
      await c.waitFor(new RegExp(`rolled ${rolled}\\b`), 60_000);
    },
    stop: () => c.end(),
  };
}

/**
 * PM2 in cluster mode, driven through its API from this process (what `pm2 reload` sends,
 * without the CLI's own start-up), with a PM2_HOME of its own in a temporary directory;
 * its daemon is killed by the pid it wrote there. `wait_ready`: a new worker counts once it
 * sent 'ready' (bench/app.cjs does, once it listens), PM2's graceful reload.
 */
export async function pm2Target(name: string, workers: number): Promise<Target> {
  const home = mkdtempSync(join(tmpdir(), 'baton-pm2-'));
  const [port] = await freePorts(1);
  // PM2 reads PM2_HOME when it is loaded, and its daemon inherits this environment.
  const saved = process.env.PM2_HOME;
  process.env.PM2_HOME = home;
  const { default: pm2 } = (await import('pm2')) as { default: Pm2 };
  if (saved === undefined) delete process.env.PM2_HOME;
  else process.env.PM2_HOME = saved;
  const call = <T>(f: (cb: (err: Error | null, r?: T) => void) => void): Promise<T> =>
    new Promise((resolve, reject) => f((err, r) => (err ? reject(err) : resolve(r as T))));
  await call((cb) => pm2.connect(cb));
  const daemon = Number(readFileSync(join(home, 'pm2.pid'), 'utf8'));
  const app = 'baton-compare';
  try {
    await call((cb) =>
      pm2.start(
        {
          name: app,
          script: APP,
          instances: workers,
          exec_mode: 'cluster',
          wait_ready: true,
          listen_timeout: 10_000,
          kill_timeout: 5000,
          autorestart: false,
          node_args: ['--require', SETSID],
          env: { PORT: String(port) },
        },
        cb,
      ),
    );
  } catch (e) {
    await stopDaemon(daemon, home);
    throw e;
  }
  return {
    name,
    how: `pm2 start bench/app.cjs -i ${workers} --wait-ready; pm2 reload`,
    port: port!,
    async reload() {
      await call((cb) => pm2.reload(app, cb));
    },
    async stop() {
      await call((cb) => pm2.delete(app, cb)).catch(() => {});
      pm2.disconnect();
      await stopDaemon(daemon, home);
    },
  };
}

/** The PM2 daemon this benchmark started, and nothing else: by its pid, then its home goes. */
async function stopDaemon(pid: number, home: string): Promise<void> {
  if (pid > 0) {
    try {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
  rmSync(home, { recursive: true, force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The part of PM2's API used here. */
interface Pm2 {
  connect(cb: (err: Error | null) => void): void;
  start(opts: Record<string, unknown>, cb: (err: Error | null) => void): void;
  reload(name: string, cb: (err: Error | null) => void): void;
  delete(name: string, cb: (err: Error | null) => void): void;
  disconnect(): void;
}
