// What the kernel knows about a worker that can no longer tell us itself (hung, or not a
// Node program): how many client connections it holds on baton's listeners. Read from
// /proc only when a worker is about to be killed, never on a hot path; and its memory, for status.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Listener } from '../common/address.js';

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      /* fd closed meanwhile */
    }
  }
  return inodes;
}

function read(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(1);
  } catch {
    return [];
  }
}

const TCP_ESTABLISHED = '01';
const TCP_CLOSE_WAIT = '08';

/**
 * Of the lines of /proc/net/tcp and tcp6, the connections of the sockets in `mine` accepted
 * on one of `ports` that hold work: established, or closed by the client with a request
 * unread. Each socket counts once: the kernel prints the table a page at a time and finds
 * its place again by position in a hash bucket, so a row can come twice in one read while
 * other connections come and go (the later one counts).
 */
export function heldTcp(lines: readonly string[], mine: ReadonlySet<string>, ports: ReadonlySet<number>): number {
  const byInode = new Map<string, string[]>();
  for (const line of lines) {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    const f = line.trim().split(/\s+/);
    if (f.length >= 10 && mine.has(f[9]!)) byInode.set(f[9]!, f);
  }
  let n = 0;
  for (const f of byInode.values()) {
    const unread = parseInt(f[4]!.split(':')[1]!, 16) > 0;
    if ((f[3] === TCP_ESTABLISHED || (f[3] === TCP_CLOSE_WAIT && unread)) && ports.has(parseInt(f[1]!.split(':')[1]!, 16))) n++;
  }
  return n;
}

/**
 * Connections accepted from baton's listeners that `pid` still holds with work in them:
 * TCP sockets whose local port is a listener's port (accepted sockets share it) that are
 * established, or that the client closed with a request still unread (CLOSE_WAIT with
 * bytes queued); and unix stream sockets bound to a listener's path that are connected.
 * Not counted: a connection the client has closed with nothing pending (a response it
 * already read in full, waiting only for the process to close its end), nor one the
 * process has finished and half-closed: killing the process costs the client nothing there.
 * Measured on the fault matrix (docs/reliability.md), this equals the requests that fail.
 */
export function heldConnections(pid: number, listeners: readonly Listener[]): number {
  const mine = socketInodes(pid);
  if (mine.size === 0) return 0;
  const ports = new Set(listeners.flatMap((l) => (l.kind === 'tcp' ? [l.port] : [])));
  const paths = new Set(listeners.flatMap((l) => (l.kind === 'unix' ? [l.path] : [])));
  let n = ports.size ? heldTcp([...read('/proc/net/tcp'), ...read('/proc/net/tcp6')], mine, ports) : 0;
  if (paths.size) {
    const connected = new Set<string>();
    for (const line of read('/proc/net/unix')) {
      // Num RefCount Protocol Flags Type St Inode Path ; St 03 = connected
      const f = line.trim().split(/\s+/);
      if (f.length >= 8 && f[5] === '03' && mine.has(f[6]!) && paths.has(f[7]!)) connected.add(f[6]!);
    }
    n += connected.size;
  }
  return n;
}

/** Resident memory of a process (VmRSS in /proc/<pid>/status), null once it is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The process group of `pid` (field 5 of /proc/<pid>/stat, after the parenthesised name), or null if it is gone. */
export function processGroup(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    return Number.isInteger(pgrp) ? pgrp : null;
  } catch {
    return null;
  }
}
