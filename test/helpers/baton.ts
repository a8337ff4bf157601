// Runs a real `baton start` in a child process for a test, and talks to it the way users do.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ControlReply, ControlRequest } from '../../src/common/protocol.js';
import { controlRequest } from '../../src/control/control.js';
import type { StatusReport } from '../../src/supervisor/supervisor.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(ROOT, 'dist/src/cli/main.js');
export const FIXTURES = join(ROOT, 'test/fixtures');
export const EXAMPLES = join(ROOT, 'examples');

export function tempDir(prefix = 'baton-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** `from` as a tree of hard links at `to` (copies across file systems): it costs next to nothing. */
function linkTree(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const e of readdirSync(from, { withFileTypes: true })) {
    const [a, b] = [join(from, e.name), join(to, e.name)];
    if (e.isDirectory()) linkTree(a, b);
    else if (e.isSymbolicLink()) symlinkSync(readlinkSync(a), b);
    else {
      try {
        linkSync(a, b);
      } catch {
        copyFileSync(a, b);
      }
    }
  }
}

/**
 * A copy of this build in directories every user can enter (files keep their modes), for
 * tests that run workers, or baton itself, as another user: the checkout may sit in a
 * directory only its owner can enter. dist/src, node_modules, the examples and the node
 * binary are hard-linked into it. Removed by the caller.
 */
export function worldReadableCopy(): { dir: string; cli: string; node: string; examples: string } {
  const dir = tempDir('baton-readable-');
  chmodSync(dir, 0o755);
  for (const sub of ['dist/src', 'node_modules', 'examples']) linkTree(join(ROOT, sub), join(dir, sub));
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  const node = join(dir, 'node');
  try {
    linkSync(realpathSync(process.execPath), node);
  } catch {
    copyFileSync(process.execPath, node); // another file system
  }
  return { dir, cli: join(dir, relative(ROOT, CLI)), node, examples: join(dir, 'examples') };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the CLI to completion (bounded). */
export function runCli(args: string[], opts: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`baton ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60_000} ms\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    p.on('exit', (code) => {
      clearTimeout(t);
      // let the pipes drain
      setImmediate(() => resolve({ code, stdout, stderr }));
    });
  });
}

export interface BatonOptions {
  argv: string[];
  listen?: string[];
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Wait for generation 1 to serve (default true). */
  waitReady?: boolean;
  /** A command line baton is started through, e.g. `unshare --pid --fork --mount-proc`. */
  launcher?: string[];
  /** Descriptors baton gets at fd 3, 4, … (socket activation). */
  fds?: number[];
  /** The baton to run (default: this checkout's build), and the directory it runs in (default: the checkout). */
  cli?: string;
  cwd?: string;
}

export class Baton {
  readonly proc: ChildProcess;
  readonly dir: string;
  readonly control: string;
  out = '';
  private waiters: Array<{ re: RegExp; resolve(s: string): void }> = [];
  readonly exited: Promise<number | null>;

  constructor(opts: BatonOptions) {
    this.dir = tempDir();
    this.control = join(this.dir, 'ctl.sock');
    const listen = (opts.listen ?? ['127.0.0.1:0']).flatMap((l) => ['--listen', l]);
    const [cmd, ...args] = [
      ...(opts.launcher ?? []),
      process.execPath,
      opts.cli ?? CLI,
      'start',
      '--control',
      this.control,
      ...listen,
      ...(opts.args ?? []),
      '--',
      ...opts.argv,
    ];
    this.proc = spawn(cmd!, args, {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe', ...(opts.fds ?? [])],
    });
    const onData = (d: Buffer): void => {
      this.out += d.toString();
      for (const w of [...this.waiters]) {
        const m = w.re.exec(this.out);
        if (m) {
          this.waiters = this.waiters.filter((x) => x !== w);
          w.resolve(m[0]);
        }
      }
    };
    this.proc.stdout!.on('data', onData);
    this.proc.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
  }

  /** Resolves when the combined output matches (searched from the start). */
  waitFor(re: RegExp, timeoutMs = 20_000): Promise<string> {
    const m = re.exec(this.out);
    if (m) return Promise.resolve(m[0]);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} in baton output:\n${this.out}`)), timeoutMs);
      this.waiters.push({
        re,
        resolve: (s) => {
          clearTimeout(t);
          resolve(s);
        },
      });
    });
  }

  request(req: ControlRequest, onEvent?: (state: string, message: string) => void): Promise<ControlReply> {
    return controlRequest(this.control, req, (e) => onEvent?.(e.state, e.message));
  }

  async status(): Promise<StatusReport> {
    const r = await this.request({ cmd: 'status' });
    if (!r.ok) throw new Error(r.error);
    return r.result as StatusReport;
  }

  /** The real port of the first TCP listener. */
  async port(): Promise<number> {
    const s = await this.status();
    const tcp = s.listeners.find((l) => /:\d+$/.test(l.address));
    if (!tcp) throw new Error('no tcp listener');
    return Number(tcp.address.slice(tcp.address.lastIndexOf(':') + 1));
  }

  reload(argv?: string[], wait: 'serving' | 'drained' = 'serving'): Promise<ControlReply> {
    return this.request(argv ? { cmd: 'reload', argv, cwd: ROOT, wait } : { cmd: 'reload', wait });
  }

  /** Graceful stop through the control socket; resolves with baton's exit code. */
  async stop(): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      await this.request({ cmd: 'stop' }).catch(() => undefined);
    }
    return this.exited;
  }

  /** Last resort in test teardown: never leave a supervisor or its workers behind. */
  async dispose(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 15_000);
      this.proc.kill('SIGTERM');
      await this.exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startBaton(opts: BatonOptions): Promise<Baton> {
  const b = new Baton(opts);
  if (opts.waitReady !== false) {
    await Promise.race([
      b.waitFor(/handoff 1: generation 1 serves/),
      b.exited.then((code) => {
        throw new Error(`baton exited with ${code} before serving:\n${b.out}`);
      }),
    ]);
  }
  return b;
}
