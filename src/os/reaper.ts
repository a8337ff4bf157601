// Orphans and zombies. baton makes itself a child subreaper, so a process a worker leaves
// behind (a daemonized grandchild, the child of a worker that died) is re-parented to baton
// instead of to PID 1; as PID 1 of a container, every orphan in it comes to baton anyway.
// Either way baton must collect their exit statuses, or they stay zombies for good.
//
// libuv collects only the children it spawned, each by its pid, so baton reaps exactly the
// others: a waitpid(-1) would steal the statuses of libuv's own children, whose 'exit'
// would then never fire. Children are listed on SIGCHLD, and on a slow sweep for the
// signals that arrive while a sweep runs (the kernel merges them).
import { readdirSync, readFileSync } from 'node:fs';
import { log } from '../log/log.js';
import { childrenWaitedFor } from './internals.js';
import { type ProcessExit, reap, setChildSubreaper } from './process.js';

const SWEEP_EVERY_MS = 5_000;

/** Call before anything is spawned: a child spawned earlier would not be known as libuv's. */
export function startReaper(): void {
  const ours = childrenWaitedFor();
  try {
    setChildSubreaper();
  } catch (e) {
    log.warn(`orphans of workers will go to PID 1, not to baton: ${(e as Error).message}`);
  }
  if (process.pid === 1) log.info('running as PID 1: reaping every orphan; SIGTERM stops gracefully');
  const sweep = (): void => reapOrphans(ours);
  process.on('SIGCHLD', sweep);
  setInterval(sweep, SWEEP_EVERY_MS).unref();
}

/** Reap every child that has exited and that libuv does not wait for. */
function reapOrphans(ours: ReadonlySet<number>): void {
  for (const pid of childPids()) {
    if (ours.has(pid)) continue;
    let status: ProcessExit | null;
    try {
      status = reap(pid);
    } catch {
      continue; // ECHILD: reaped meanwhile, or listed by a stale read
    }
    if (status) log.info('reaped an orphaned process', { pid, code: status.code, signal: status.signal });
  }
}

/**
 * This process's children, zombies included: /proc/self/task/<tid>/children for each thread
 * (an orphan is re-parented to one thread of the reaper, not necessarily the main one); on a
 * kernel without CONFIG_PROC_CHILDREN, every /proc/<pid>/stat whose parent is us.
 */
function childPids(): number[] {
  const pids: number[] = [];
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const text = readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim();
      if (text) for (const p of text.split(' ')) pids.push(Number(p));
    }
    return pids;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces and parentheses: parse after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}
