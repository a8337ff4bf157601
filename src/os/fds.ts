// File descriptors as such: close, dup, close-on-exec, in-memory files.
import { c, check, E, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, FD_CLOEXEC, lastErrno, MFD_CLOEXEC, sysError } from './libc.js';

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
