// Processes: reaping by pid, execve in place (supervisor upgrade), the child subreaper,
// and user and group lookups through NSS.
import * as os from 'node:os';
import { c, check, E, lastErrno, PR_GET_CHILD_SUBREAPER, PR_SET_CHILD_SUBREAPER, readU32, sysError, WNOHANG } from './libc.js';
import { pauseNotifySignals } from './notify.js';

/* ------------------------------------------------------------------ */
/* Processes                                                           */
/* ------------------------------------------------------------------ */

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * waitpid(pid, WNOHANG) for exactly one child: null while it runs, how it ended once it has
 * been reaped. Never called with -1: that would also take the exit status of children libuv
 * spawned and is waiting for. Throws ECHILD if `pid` is not (or no longer) our child.
 */
export function reap(pid: number): ProcessExit | null {
  if (!Number.isInteger(pid) || pid <= 0) throw sysError(`cannot wait for pid ${String(pid)}`, 'waitpid', E.EINVAL, 'not a single process id');
  const status = [0];
  for (;;) {
    const r = c().waitpid(pid, status, WNOHANG);
    if (r === 0) return null;
    if (r === pid) break;
    const errno = lastErrno();
    if (errno !== E.EINTR) throw sysError(`cannot wait for pid ${String(pid)}`, 'waitpid', errno);
  }
  // The <sys/wait.h> macros: low 7 bits = terminating signal (0: exited), exit code above.
  const s = status[0]!;
  const sig = s & 0x7f;
  if (sig === 0) return { code: (s >> 8) & 0xff, signal: null };
  const name = Object.entries(os.constants.signals).find(([, n]) => n === sig)?.[0];
  return { code: null, signal: (name ?? `SIG${String(sig)}`) as NodeJS.Signals };
}

/**
 * Replace this process's image (same pid). Fds without FD_CLOEXEC stay open in the new
 * image. Returns only by throwing, and then this process carries on unchanged.
 *
 * Node's own process.execve (22.15+) is used only from Node 26 on: before that, a failed
 * execve(2) aborted the process (and native AtExit callbacks ran first), which would take
 * the running supervisor down with a failed upgrade (nodejs/node#62878 made it throw).
 */
export function execve(path: string, argv: readonly string[], env: NodeJS.ProcessEnv): never {
  // A SIGIO raised during the exec would reach the new image before it handles SIGIO, and kill it.
  const resumeNotify = pauseNotifySignals();
  try {
    return execveNow(path, argv, env);
  } catch (e) {
    resumeNotify();
    throw e;
  }
}

function execveNow(path: string, argv: readonly string[], env: NodeJS.ProcessEnv): never {
  const native = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof native === 'function' && Number(process.versions.node.split('.')[0]) >= 26) native(path, [...argv], env);
  const pairs = Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
  c().execve(path, [...argv, null], [...pairs, null]);
  throw sysError(`cannot execute ${path}`, 'execve', lastErrno());
}

/* ------------------------------------------------------------------ */
/* Subreaper and users                                                 */
/* ------------------------------------------------------------------ */

/**
 * prctl(PR_SET_CHILD_SUBREAPER): orphans among this process's descendants are re-parented
 * to it instead of to PID 1, so it sees (and must reap) them.
 */
export function setChildSubreaper(): void {
  check(c().prctl(PR_SET_CHILD_SUBREAPER, 'unsigned long', 1), 'cannot become a child subreaper', 'prctl');
}

export function isChildSubreaper(): boolean {
  const flag = Buffer.alloc(4);
  check(c().prctl(PR_GET_CHILD_SUBREAPER, 'void *', flag), 'cannot read the child subreaper flag', 'prctl');
  return readU32(flag) !== 0;
}

/** getpwnam / getpwuid: uid, primary gid and home of a user (through NSS, like `id`), or null. */
export function lookupUser(user: string | number): { name: string; uid: number; gid: number; home: string } | null {
  const p = typeof user === 'number' ? c().getpwuid(user) : c().getpwnam(user);
  if (p === null) return null;
  const pw = c().koffi.decode(p, 'passwd') as { pw_name: string; pw_uid: number; pw_gid: number; pw_dir: string };
  return { name: pw.pw_name, uid: pw.pw_uid, gid: pw.pw_gid, home: pw.pw_dir };
}

/** getgrnam: the gid of a group name, or null. */
export function lookupGroup(name: string): number | null {
  const g = c().getgrnam(name);
  if (g === null) return null;
  return (c().koffi.decode(g, 'group') as { gr_gid: number }).gr_gid;
}
