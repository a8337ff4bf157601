// Process helpers for the operator tests: a command whose output a test waits on, a command
// run under a pseudo-terminal (util-linux `script`), and a config file in a fresh directory.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, ROOT, tempDir } from './baton.js';

export class Proc {
  out = '';
  readonly exited: Promise<number | null>;
  private waiters: Array<{ re: RegExp; resolve(m: RegExpExecArray): void }> = [];

  constructor(readonly proc: ChildProcess) {
    const onData = (d: Buffer): void => {
      this.out += d.toString();
      for (const w of [...this.waiters]) {
        const m = w.re.exec(this.out);
        if (!m) continue;
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(m);
      }
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  /** Resolves with the match once the combined output matches (searched from the start). */
  waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const m = re.exec(this.out);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} in:\n${this.out}`)), timeoutMs);
      this.waiters.push({
        re,
        resolve: (x) => {
          clearTimeout(t);
          resolve(x);
        },
      });
    });
  }

  /** Ends the process (and, if it leads one, its process group); resolves with its exit code. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      try {
        process.kill(-this.proc.pid!, signal);
      } catch {
        this.proc.kill(signal);
      }
    }
    return this.exited;
  }
}

/** `baton <args>` with its own process group, so a test can end it and whatever it started; stdout to a pipe, or to the fd given. */
export function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdout?: number } = {}): Proc {
  return new Proc(
    spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'],
      detached: true,
    }),
  );
}

/** `baton <args>` on a pseudo-terminal of the given size, through util-linux `script`. */
export function cliInPty(args: string[], size: { cols: number; rows: number }): Proc {
  const quoted = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Proc(
    spawn('script', ['-qfec', `stty cols ${size.cols} rows ${size.rows}; exec ${quoted}`, '/dev/null'], {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    }),
  );
}

/** A fresh directory holding `baton.config.<ext>` with this content. */
export function configDir(content: string, ext: 'json' | 'js' | 'mjs' = 'json'): { dir: string; file: string; write(content: string): void } {
  const dir = tempDir('baton-config-');
  const file = join(dir, `baton.config.${ext}`);
  const write = (c: string): void => writeFileSync(file, c);
  write(content);
  return { dir, file, write };
}

/** Drop terminal control sequences: what a person would read on the screen, line by line. */
export function plain(s: string): string {
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
}
