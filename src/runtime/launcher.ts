// `baton start -- npm start`: npm (yarn, pnpm) is the process baton spawns, and the app
// runs two levels below it (npm -> sh -c -> node server.js). npm does not pass fds 3, 4, ...
// on to the script it runs, so the app could only bind a port of its own, which no reload
// survives. In a package manager, baton's runtime therefore does not start: it hands the
// listeners down instead, at the same fd numbers, to every child the launcher spawns, and
// marks them (LAUNCHED) with the listeners' socket inodes. The app's runtime (preload.ts)
// then serves them, says ready with READY=1 on NOTIFY_SOCKET and drains on the SIGTERM npm
// passes on (uplink.ts, notifyUplink).
import childProcess from 'node:child_process';
import { fstatSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

/** In a launcher's children: "ino,ino,..." of the listeners at fds 3, 4, ... */
export const LAUNCHED = 'BATON_LAUNCHED';

/** The socket inodes of fds 3 .. 3+count-1, or null if one is not an open socket. */
export function inodes(count: number): string | null {
  const out: string[] = [];
  for (let fd = 3; fd < 3 + count; fd++) {
    try {
      const st = fstatSync(fd);
      if (!st.isSocket()) return null;
      out.push(String(st.ino));
    } catch {
      return null;
    }
  }
  return out.join(',');
}

/** Every child this process spawns from now on gets fds 3 .. 3+count-1 at the same numbers. */
export function handDown(count: number): void {
  const marks = inodes(count);
  if (count === 0 || marks === null) return;
  process.env[LAUNCHED] = marks;
  const original = childProcess.spawn;
  const spawn = function (this: unknown, command: string, ...rest: unknown[]): childProcess.ChildProcess {
    const args = Array.isArray(rest[0]) ? (rest[0] as string[]) : [];
    const options = (Array.isArray(rest[0]) ? rest[1] : rest[0]) as childProcess.SpawnOptions | undefined;
    const stdio = withListeners(options?.stdio, count);
    return Reflect.apply(original, this, [command, args, stdio ? { ...options, stdio } : options]) as childProcess.ChildProcess;
  };
  (childProcess as { spawn: typeof original }).spawn = spawn as typeof original;
  syncBuiltinESMExports();
}

/** `stdio` with the listeners appended at their fd numbers; undefined if it already uses fd 3 or more. */
function withListeners(stdio: childProcess.StdioOptions | undefined, count: number): childProcess.StdioOptions | undefined {
  const base: childProcess.IOType | undefined = typeof stdio === 'string' ? (stdio as childProcess.IOType) : undefined;
  const list = Array.isArray(stdio) ? [...stdio] : [base ?? 'pipe', base ?? 'pipe', base ?? 'pipe'];
  if (list.length > 3) return undefined;
  // Node's own default for an entry left out: 'pipe'.
  while (list.length < 3) list.push('pipe');
  for (let fd = 3; fd < 3 + count; fd++) list.push(fd);
  return list;
}
