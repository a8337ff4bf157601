// libc through koffi: loading it, the constants, errno handling and socket addresses the
// other os modules share. src/os/ is the only place where baton makes raw syscalls or
// reaches into Node.js internals (internals.ts); test/os/*.test.ts (one file per module)
// hold their contract tests, so that a Node or koffi upgrade that breaks one fails there.
//
// Why libc and not Node's API: Node 20 cannot listen on a socket without also
// accepting on it (libuv starts accepting the moment `listen()` is called, and
// leaks every connection if nobody handles them). The supervisor must own its
// listeners for the life of the service yet never accept, so it makes the
// socket/bind/listen calls itself and never shows the fd to libuv.
//
// Constants: only values that are identical on Linux x86_64 and arm64 are used
// (both use the generic socket/fcntl numbers). Errno numbers come from Node at
// run time, never from a table here.
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as util from 'node:util';
import type * as KoffiModule from 'koffi';

export interface SysError extends Error {
  code: string;
  syscall: string;
  /** The positive libc errno (Node's own system errors carry it negated). */
  errno: number;
}

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_TYPE = 3;
export const SO_PEERCRED = 17;
export const SO_ACCEPTCONN = 30;
export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_DUPFD_CLOEXEC = 1030;
export const FD_CLOEXEC = 1;
export const MFD_CLOEXEC = 1;
export const WNOHANG = 1;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CMSG_CLOEXEC = 0x40000000;
export const SCM_RIGHTS = 1;
/** sizeof(struct cmsghdr) on LP64: size_t cmsg_len, int cmsg_level, int cmsg_type. */
export const CMSG_HDR = 16;
export const PR_SET_CHILD_SUBREAPER = 36;
export const PR_GET_CHILD_SUBREAPER = 37;
/** sizeof(sun_path), including the terminating NUL. */
export const SUN_PATH_SIZE = 108;
/** sizeof(struct sockaddr_storage). */
export const SOCKADDR_MAX = 128;

export const E = os.constants.errno;

/* ------------------------------------------------------------------ */
/* libc, loaded on first use                                           */
/* ------------------------------------------------------------------ */

type Koffi = typeof KoffiModule;
// biome-ignore lint/suspicious/noExplicitAny: koffi passes any JS value to the C function
type Fn = (...args: any[]) => number;
interface Libc {
  koffi: Koffi;
  socket: Fn;
  setsockopt: Fn;
  getsockopt: Fn;
  bind: Fn;
  listen: Fn;
  connect: Fn;
  getsockname: Fn;
  close: Fn;
  fcntl: Fn;
  inet_pton: Fn;
  // biome-ignore lint/suspicious/noExplicitAny: as Fn
  inet_ntop: (...args: any[]) => unknown;
  sendto: Fn;
  sendmsg: Fn;
  recvmsg: Fn;
  recv: Fn;
  prctl: Fn;
  waitpid: Fn;
  memfd_create: Fn;
  execve: Fn;
  getpwnam: (name: string) => unknown;
  getpwuid: (uid: number) => unknown;
  getgrnam: (name: string) => unknown;
}

let libc: Libc | undefined;

// koffi is required lazily too, not only libc: loading koffi's native addon costs
// ~15-20 ms, and worker processes import modules that import this one without
// ever making a syscall.
export function c(): Libc {
  if (libc) return libc;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = loadLibc(koffi);
  // Declared in full for their layout; baton reads the ids only.
  koffi.struct('passwd', {
    pw_name: 'char *',
    pw_passwd: 'char *',
    pw_uid: 'uint32_t',
    pw_gid: 'uint32_t',
    pw_gecos: 'char *',
    pw_dir: 'char *',
    pw_shell: 'char *',
  });
  koffi.struct('group', { gr_name: 'char *', gr_passwd: 'char *', gr_gid: 'uint32_t', gr_mem: 'void *' });
  koffi.struct('iovec', { iov_base: 'void *', iov_len: 'size_t' });
  koffi.struct('msghdr', {
    msg_name: 'void *',
    msg_namelen: 'uint32_t',
    msg_iov: 'iovec *',
    msg_iovlen: 'size_t',
    msg_control: 'void *',
    msg_controllen: 'size_t',
    msg_flags: 'int',
  });
  // Buffers are passed as `void *`: koffi hands the C function a pointer into the
  // Buffer's own memory, so output parameters land in the Buffer.
  libc = {
    koffi,
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)'),
    getsockopt: lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
    bind: lib.func('int bind(int fd, void *addr, uint32_t len)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    connect: lib.func('int connect(int fd, void *addr, uint32_t len)'),
    getsockname: lib.func('int getsockname(int fd, void *addr, void *len)'),
    close: lib.func('int close(int fd)'),
    // fcntl is variadic: declaring it so keeps the call right on every ABI.
    fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
    inet_pton: lib.func('int inet_pton(int af, const char *src, void *dst)'),
    inet_ntop: lib.func('void *inet_ntop(int af, void *src, void *dst, uint32_t size)'),
    memfd_create: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)'),
    // argv and envp are NULL-terminated string arrays: koffi converts a JS array of strings
    // (ending with null) into one.
    execve: lib.func('int execve(const char *path, const char **argv, const char **envp)'),
    sendto: lib.func('intptr_t sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t addrlen)'),
    sendmsg: lib.func('intptr_t sendmsg(int fd, const msghdr *msg, int flags)'),
    recvmsg: lib.func('intptr_t recvmsg(int fd, _Inout_ msghdr *msg, int flags)'),
    recv: lib.func('intptr_t recv(int fd, void *buf, size_t len, int flags)'),
    prctl: lib.func('int prctl(int option, ...)'),
    getpwnam: lib.func('passwd *getpwnam(const char *name)'),
    getpwuid: lib.func('passwd *getpwuid(uint32_t uid)'),
    getgrnam: lib.func('group *getgrnam(const char *name)'),
  };
  return libc;
}

/**
 * glibc's is libc.so.6. musl (Alpine) has no file of that name: there the C library is
 * reached through the process itself (dlopen(NULL)), which Node is linked against.
 */
function loadLibc(koffi: Koffi): ReturnType<Koffi['load']> {
  try {
    return koffi.load('libc.so.6');
  } catch {
    return koffi.load(null);
  }
}

/** errno of the libc call that just failed; must be read before anything else runs. */
export function lastErrno(): number {
  return c().koffi.errno();
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

export function errnoName(errno: number): [code: string, text: string] {
  const known = util.getSystemErrorMap().get(-errno);
  if (known) return known;
  const name = Object.entries(E).find(([, n]) => n === errno)?.[0];
  return [name ?? `errno ${errno}`, 'system error'];
}

/** Builds "<what>: <text> (<CODE>)". `detail` replaces the generic errno text. */
export function sysError(what: string, syscall: string, errno: number, detail?: string): SysError {
  const [code, text] = errnoName(errno);
  const err = new Error(`${what}: ${detail ?? text} (${code})`) as SysError;
  err.code = code;
  err.syscall = syscall;
  err.errno = errno;
  return err;
}

/** Checks the result of a libc call that returns -1 on failure; closes `fdToClose` (if given) before throwing. */
export function check(result: number, what: string, syscall: string, fdToClose?: number): number {
  if (result !== -1) return result;
  const errno = lastErrno();
  if (fdToClose !== undefined) c().close(fdToClose);
  throw sysError(what, syscall, errno);
}

/* ------------------------------------------------------------------ */
/* Socket addresses                                                    */
/* ------------------------------------------------------------------ */

export const LE = os.endianness() === 'LE';

export function sockaddrIn(host: string, port: number, what: string): Buffer {
  const v6 = net.isIPv6(host);
  const addr = Buffer.alloc(v6 ? 28 : 16);
  // sa_family is in host byte order, sin_port in network byte order.
  if (LE) addr.writeUInt16LE(v6 ? AF_INET6 : AF_INET, 0);
  else addr.writeUInt16BE(v6 ? AF_INET6 : AF_INET, 0);
  addr.writeUInt16BE(port, 2);
  // sockaddr_in6: flowinfo (4 bytes) precedes the address; scope_id stays 0.
  const dst = addr.subarray(v6 ? 8 : 4, v6 ? 24 : 8);
  if (host.includes('%')) {
    throw sysError(what, 'bind', E.EINVAL, `IPv6 zone ids ('${host.slice(host.indexOf('%'))}') are not supported`);
  }
  if (c().inet_pton(v6 ? AF_INET6 : AF_INET, host, dst) !== 1) {
    throw sysError(what, 'bind', E.EINVAL, `'${host}' is not an address libc can parse`);
  }
  return addr;
}

export function sockaddrUn(path: string, what: string): Buffer {
  const bytes = Buffer.from(path);
  if (bytes.length === 0 || bytes.includes(0)) {
    throw sysError(what, 'bind', E.EINVAL, 'a unix socket path must be non-empty and contain no NUL byte');
  }
  if (bytes.length >= SUN_PATH_SIZE) {
    throw sysError(what, 'bind', E.ENAMETOOLONG, `the path is ${bytes.length} bytes long, a unix socket path may have at most ${SUN_PATH_SIZE - 1}`);
  }
  const addr = Buffer.alloc(2 + bytes.length + 1);
  if (LE) addr.writeUInt16LE(AF_UNIX, 0);
  else addr.writeUInt16BE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  return addr;
}

/** A unix address as systemd writes it: a path, or '@name' for the abstract namespace. */
export function sockaddrUnOrAbstract(address: string, what: string): Buffer {
  if (!address.startsWith('@')) return sockaddrUn(address, what);
  const name = Buffer.from(address.slice(1));
  if (name.length + 1 > SUN_PATH_SIZE) {
    throw sysError(what, 'sendto', E.ENAMETOOLONG, `the abstract name is ${name.length} bytes long, at most ${SUN_PATH_SIZE - 1} fit`);
  }
  // Abstract names start with a NUL and are not NUL-terminated: the length says where they end.
  const addr = Buffer.alloc(2 + 1 + name.length);
  if (LE) addr.writeUInt16LE(AF_UNIX, 0);
  else addr.writeUInt16BE(AF_UNIX, 0);
  name.copy(addr, 3);
  return addr;
}

export function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  if (LE) b.writeUInt32LE(value);
  else b.writeUInt32BE(value);
  return b;
}

export function readU32(b: Buffer, offset = 0): number {
  return LE ? b.readUInt32LE(offset) : b.readUInt32BE(offset);
}

export function setIntOpt(fd: number, level: number, name: number, value: number, what: string): void {
  const v = Buffer.alloc(4);
  if (LE) v.writeInt32LE(value);
  else v.writeInt32BE(value);
  check(c().setsockopt(fd, level, name, v, 4), what, 'setsockopt', fd);
}

/** getsockopt into a buffer of `size` bytes. */
export function getOpt(fd: number, level: number, name: number, size: number, what: string): Buffer {
  const value = Buffer.alloc(size);
  check(c().getsockopt(fd, level, name, value, u32(size)), what, 'getsockopt');
  return value;
}

export function assertBacklog(backlog: number, what: string): void {
  if (!Number.isInteger(backlog) || backlog < 0) {
    throw sysError(what, 'listen', E.EINVAL, `backlog must be an integer >= 0, got ${String(backlog)}`);
  }
}
