// File descriptors as such: close, dup, close-on-exec, in-memory files, and finding the fd
// a library opened without telling.
import * as fs from 'node:fs';
import { socketAddress } from './sockets.js';
import { E, FD_CLOEXEC, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, MFD_CLOEXEC, c, check, lastErrno, sysError } from './libc.js';

export function closeFd(fd: number): void {
  if (c().close(fd) === 0) return;
  const errno = lastErrno();
  // On Linux the fd is released even when close() reports EINTR; retrying could close a reused fd.
  if (errno === E.EINTR) return;
  throw sysError(`cannot close fd ${String(fd)}`, 'close', errno);
}

/** fcntl(F_DUPFD_CLOEXEC, 3): a new fd (>= 3, close-on-exec) on the same open socket. */
export function dup(fd: number): number {
  return check(c().fcntl(fd, F_DUPFD_CLOEXEC, 'int', 3), `cannot duplicate fd ${String(fd)}`, 'fcntl');
}

/** Sets or clears FD_CLOEXEC on `fd`. */
export function setCloexec(fd: number, on: boolean): void {
  const what = `cannot set close-on-exec on fd ${String(fd)}`;
  const flags = check(c().fcntl(fd, F_GETFD), what, 'fcntl');
  const next = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
  if (next !== flags) check(c().fcntl(fd, F_SETFD, 'int', next), what, 'fcntl');
}

/** Is FD_CLOEXEC set on `fd`? */
export function isCloexec(fd: number): boolean {
  return (check(c().fcntl(fd, F_GETFD), `cannot read the flags of fd ${String(fd)}`, 'fcntl') & FD_CLOEXEC) !== 0;
}

/**
 * memfd_create(name, MFD_CLOEXEC): an anonymous file in memory, read and written with
 * node:fs through its fd. Nothing on disk: no path to clean up, no full or read-only /tmp.
 */
export function memfd(name: string): number {
  return check(c().memfd_create(name, MFD_CLOEXEC), `cannot create an in-memory file '${name}'`, 'memfd_create');
}


/**
 * The fd of this process's socket bound to the unix path `path`, or null. For sockets a
 * library opened without telling its fd (node-unix-socket opens them without
 * FD_CLOEXEC, so every program spawned later would inherit them).
 */
export function fdBoundTo(path: string, likely?: number): number | null {
  const bound = (fd: number): boolean => {
    const a = socketAddress(fd);
    return a.kind === 'unix' && a.path === path;
  };
  // `likely` first (see lowestFreeFd): the scan costs a readlink and a getsockname per open
  // fd, and a supervisor with many listeners and workers has hundreds, for every worker.
  try {
    if (likely !== undefined && bound(likely)) return likely;
  } catch {
    // not a socket: the guess was wrong
  }
  for (const name of fs.readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    try {
      if (fs.readlinkSync(`/proc/self/fd/${name}`).startsWith('socket:') && bound(fd)) return fd;
    } catch {
      // closed meanwhile (the readdir fd itself), or a family socketAddress does not read
    }
  }
  return null;
}

/**
 * The fd the next socket or file this process opens will most likely get: POSIX hands out
 * the lowest free one, found here with F_DUPFD (the probe is closed at once). Only a guess:
 * another thread may open one first.
 */
export function lowestFreeFd(): number {
  const fd = dup(0);
  closeFd(fd);
  return fd;
}
