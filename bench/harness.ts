// What every benchmark in bench/ shares: starting baton, a bare app and Node's cluster as
// child processes, reading a process's CPU time and memory from /proc, the machine and its
// load average (the figures are only comparable with those next to them), and markdown tables.
// Traffic only ever goes to 127.0.0.1.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { ControlReply, ControlRequest } from '../src/common/protocol.js';
import { controlRequest } from '../src/control/control.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'dist/src/cli/main.js');

/** The apps the benchmarks run: the trivial one and a framework one. */
export const APPS = {
  hello: join(ROOT, 'examples/hello/v1.js'),
  express: join(ROOT, 'test/fixtures/express.mjs'),
} as const;
export type AppName = keyof typeof APPS;

/** Output kept per child for error messages: enough for the last lines, bounded for long runs. */
const KEEP_OUTPUT = 64 * 1024;

/**
 * How every server a benchmark starts is spawned: in a session of its own, as baton starts
 * its workers. The kernel's autogroup scheduling (on here: /proc/sys/kernel/sched_autogroup_enabled)
 * shares the CPU out per session; 16 bare processes left in the benchmark's session took
 * 2.5× as long to start on the busy machine as the same 16 in sessions of their own.
 */
function serverProcess(argv: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, argv, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
}

export function spawnServer(argv: string[], env: NodeJS.ProcessEnv = {}): Child {
  return new Child(serverProcess(argv, env));
}

/** Children still running, killed by pid if the benchmark dies: detached, nothing else would. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/**
 * A child whose stdout and stderr are read continuously: a supervisor writes its log to a
 * pipe synchronously, so a pipe nobody reads would stall it and falsify every figure.
 */
export class Child {
  out = '';
  readonly exited: Promise<void>;
  private waiters: { re: RegExp; resolve(): void }[] = [];

  constructor(readonly proc: ChildProcess) {
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    const on = (d: Buffer): void => {
      this.out = (this.out + d.toString()).slice(-KEEP_OUTPUT);
      for (const w of [...this.waiters]) if (w.re.test(this.out)) w.resolve();
    };
    proc.stdout?.on('data', on);
    proc.stderr?.on('data', on);
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  /** Resolves once the output matches `re`; rejects if the process exits first or after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs = 60_000): Promise<void> {
    if (re.test(this.out)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = {
        re,
        resolve: () => {
          clearTimeout(t);
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve();
        },
      };
      const t = setTimeout(() => reject(new Error(`no ${re} within ${timeoutMs} ms:\n${this.out}`)), timeoutMs);
      this.waiters.push(w);
      void this.exited.then(() => {
        clearTimeout(t);
        reject(new Error(`exited (${this.proc.exitCode ?? this.proc.signalCode}) before ${re}:\n${this.out}`));
      });
    });
  }

  /** SIGTERM and wait; SIGKILL if it has not exited after `graceMs`. Only this child's own pid. */
  async end(graceMs = 30_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    this.proc.kill('SIGTERM');
    await this.exited;
    clearTimeout(t);
  }
}

/** Ports free on 127.0.0.1 right now (bound to 0, read, released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve) => {
          const s = createServer();
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export interface BatonOptions {
  argv: string[];
  workers?: number;
  distribution?: 'shared' | 'round-robin';
  /** --listen specs; default one listener on 127.0.0.1, port picked by the kernel. */
  listen?: string[];
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Load bench/loopdelay.mjs into the supervisor, for loopDelay(). */
  loopDelay?: boolean;
}

/** A `baton start` in the foreground, as a user runs it; talks to it over its control socket. */
export class Baton extends Child {
  readonly control: string;
  private readonly dir: string;

  constructor(opts: BatonOptions) {
    const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
    const control = join(dir, 'ctl.sock');
    const listen = (opts.listen ?? ['127.0.0.1:0']).flatMap((l) => ['--listen', l]);
    const probe = opts.loopDelay ? [`--import=${pathToFileURL(join(ROOT, 'bench/loopdelay.mjs')).href}`] : [];
    const args = [
      ...probe,
      CLI,
      'start',
      '--control',
      control,
      ...listen,
      '--workers',
      String(opts.workers ?? 1),
      '--distribution',
      opts.distribution ?? 'shared',
      ...(opts.args ?? []),
      '--',
      ...opts.argv,
    ];
    super(serverProcess(args, { ...opts.env, LOOP_DELAY_OUT: join(dir, 'loop-delay.json') }));
    this.dir = dir;
    this.control = control;
  }

  /**
   * With `loopDelay`: the longest block of the supervisor's event loop since the previous
   * call (or start), and its p99, in ms; the count starts afresh.
   */
  async loopDelay(): Promise<{ max: number; p99: number }> {
    const file = join(this.dir, 'loop-delay.json');
    rmSync(file, { force: true });
    this.proc.kill('SIGWINCH');
    for (let i = 0; i < 200 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 10));
    return JSON.parse(readFileSync(file, 'utf8')) as { max: number; p99: number };
  }

  /**
   * The warm-up (--warmup) the workers of `generation` did before they said ready, from the
   * supervisor's log: the longest, in ms (they run side by side), and the requests; null if none ran.
   */
  warmup(generation: number): { ms: number; requests: number[] } | null {
    const lines = [...this.out.matchAll(new RegExp(`worker ${generation}\\.\\d+ ready .*?warmupRequests=(\\d+) .*?warmupMs=(\\d+)`, 'g'))];
    return lines.length ? { ms: Math.max(...lines.map((m) => Number(m[2]))), requests: lines.map((m) => Number(m[1])) } : null;
  }

  static async start(opts: BatonOptions): Promise<Baton> {
    const b = new Baton(opts);
    await b.waitFor(/handoff 1: generation 1 serves/);
    return b;
  }

  request(req: ControlRequest): Promise<ControlReply> {
    return controlRequest(this.control, req);
  }

  async status(): Promise<StatusReport> {
    const r = await this.request({ cmd: 'status' });
    if (!r.ok) throw new Error(r.error);
    return r.result as StatusReport;
  }

  /** The real port of the first TCP listener. */
  async port(): Promise<number> {
    const a = (await this.status()).listeners[0]!.address;
    return Number(a.slice(a.lastIndexOf(':') + 1));
  }

  /** Graceful stop (every generation drains), then the temporary directory goes. */
  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      await this.request({ cmd: 'stop' }).catch(() => this.proc.kill('SIGTERM'));
      await this.end();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The app run bare (`node app`) on `port`, as without baton. */
export function spawnBare(app: string, port: number, env: NodeJS.ProcessEnv = {}): Child {
  return spawnServer([app], { ...env, PORT: String(port) });
}

/** One GET / on 127.0.0.1:port, on a new connection: the body of a 200, null on anything else. */
export function get200(port: number, timeoutMs = 2000): Promise<string | null> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.once('end', () => resolve(res.statusCode === 200 ? body : null));
      res.once('error', () => resolve(null));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(null));
    req.end();
  });
}

/**
 * Poll until the port answers 200 with a body `accept` takes (every `everyMs`); resolves
 * with performance.now() of that answer.
 */
export async function firstOk(port: number, accept: (body: string) => boolean = () => true, timeoutMs = 60_000, everyMs = 5): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const body = await get200(port);
    if (body !== null && accept(body)) return performance.now();
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`127.0.0.1:${port} did not answer as expected within ${timeoutMs} ms`);
}

/* ------------------------------------------------------------------ */
/* /proc: CPU time and memory of a process                              */
/* ------------------------------------------------------------------ */

/** Kernel clock ticks per second, as /proc/<pid>/stat counts utime and stime (100 on Linux). */
const TICKS_PER_S = 100;

export interface ProcSample {
  /** utime + stime, ms (10 ms resolution). */
  cpuMs: number;
  /** VmRSS, bytes. */
  rss: number;
  /** performance.now() when read. */
  at: number;
}

export function procSample(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // pid (comm) state ppid ... : fields after the comm, which may hold spaces; utime, stime are 14 and 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuMs: (ticks * 1000) / TICKS_PER_S, rss: rss ? Number(rss[1]) * 1024 : 0, at: performance.now() };
}

/** CPU used between two samples, as a share of one core (0.05 = 5 %). */
export function cpuShare(a: ProcSample, b: ProcSample): number {
  return b.at > a.at ? (b.cpuMs - a.cpuMs) / (b.at - a.at) : 0;
}

/* ------------------------------------------------------------------ */
/* The machine and its load                                             */
/* ------------------------------------------------------------------ */

export function machine(): string {
  const c = cpus();
  return `${c.length} × ${c[0]?.model.trim() ?? 'cpu'}, Linux ${release()}, Node ${process.version}`;
}

/**
 * The 1-minute load average, sampled every few seconds while a benchmark runs. `before` is
 * what other work left on the machine when it began; during the run the benchmark's own
 * processes (load generator, server, supervisor) add about 2 to 3.
 */
export class LoadWatch {
  readonly before = loadavg()[0]!;
  private readonly samples: number[] = [];
  private readonly timer = setInterval(() => this.samples.push(loadavg()[0]!), 2000).unref();

  stop(): { before: number; mean: number; max: number } {
    clearInterval(this.timer);
    this.samples.push(loadavg()[0]!);
    const mean = this.samples.reduce((a, b) => a + b, 0) / this.samples.length;
    return { before: this.before, mean, max: Math.max(...this.samples) };
  }
}

export function describeLoad(l: { before: number; mean: number; max: number }): string {
  return `load average (1 min) ${l.before.toFixed(2)} before, ${l.mean.toFixed(2)} mean / ${l.max.toFixed(2)} max during`;
}

/* ------------------------------------------------------------------ */
/* Numbers and tables                                                   */
/* ------------------------------------------------------------------ */

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function round(x: number, digits = 0): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '—';
}

export function table(headers: string[], rows: (string | number)[][]): string {
  return [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** A bar's verdict for the summary: what was asked, what was measured, met or not. */
export interface Verdict {
  bar: string;
  measured: string;
  met: boolean;
}

/** What each benchmark hands the suite: its markdown section and its verdicts. */
export interface Section {
  title: string;
  command: string;
  load: { before: number; mean: number; max: number };
  markdown: string;
  verdicts: Verdict[];
}

export function renderSection(s: Section): string {
  return [`### ${s.title}`, '', `\`${s.command}\` — ${describeLoad(s.load)}`, '', s.markdown, ''].join('\n');
}

/** Run a benchmark module on its own: print its section, exit non-zero on a crash. */
export function runMain(main: () => Promise<Section>): void {
  main().then(
    (s) => {
      console.log(`\n${renderSection(s)}`);
      console.log(
        table(
          ['bar', 'measured', 'met'],
          s.verdicts.map((v) => [v.bar, v.measured, v.met ? 'yes' : '**no**']),
        ),
      );
    },
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}

/** The command line of a benchmark run per app and pool size: --rounds, --apps, --workers. */
export function appMatrixArgs(rounds: number): { rounds: number; apps: AppName[]; workers: number[] } {
  const { values: v } = parseArgs({
    options: {
      rounds: { type: 'string', default: String(rounds) },
      apps: { type: 'string', default: 'hello,express' },
      workers: { type: 'string', default: '1,4' },
    },
  });
  return { rounds: Number(v.rounds), apps: v.apps.split(',') as AppName[], workers: v.workers.split(',').map(Number) };
}

export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && url === pathToFileURL(process.argv[1]).href;
}
