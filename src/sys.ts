// The one place where baton makes raw syscalls (through koffi, straight into libc)
// or reaches into Node.js internals. Everything here is tested by test/sys.test.ts
// so that a Node or koffi upgrade that breaks it fails loudly there.
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
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as util from 'node:util';
import type * as KoffiModule from 'koffi';

export interface SysError extends Error {
  code: string;
  syscall: string;
  /** The positive libc errno (Node's own system errors carry it negated). */
  errno: number;
}

const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_PEERCRED = 17;
const SO_ACCEPTCONN = 30;
const F_GETFD = 1;
const F_SETFD = 2;
const F_DUPFD_CLOEXEC = 1030;
const FD_CLOEXEC = 1;
/** sizeof(sun_path), including the terminating NUL. */
const SUN_PATH_SIZE = 108;
/** sizeof(struct sockaddr_storage). */
const SOCKADDR_MAX = 128;

const E = os.constants.errno;

/* ------------------------------------------------------------------ */
/* libc, loaded on first use                                           */
/* ------------------------------------------------------------------ */

type Koffi = typeof KoffiModule;
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
  inet_ntop: (...args: any[]) => unknown;
}

let libc: Libc | undefined;

// koffi is required lazily too, not only libc: loading koffi's native addon costs
// ~15-20 ms, and worker processes import modules that import this one without
// ever making a syscall.
function c(): Libc {
  if (libc) return libc;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load('libc.so.6');
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
  };
  return libc;
}

/** errno of the libc call that just failed; must be read before anything else runs. */
function lastErrno(): number {
  return c().koffi.errno();
}

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

function errnoName(errno: number): [code: string, text: string] {
  const known = util.getSystemErrorMap().get(-errno);
  if (known) return known;
  const name = Object.entries(E).find(([, n]) => n === errno)?.[0];
  return [name ?? `errno ${errno}`, 'system error'];
}

/** Builds "<what>: <text> (<CODE>)". `detail` replaces the generic errno text. */
function sysError(what: string, syscall: string, errno: number, detail?: string): SysError {
  const [code, text] = errnoName(errno);
  const err = new Error(`${what}: ${detail ?? text} (${code})`) as SysError;
  err.code = code;
  err.syscall = syscall;
  err.errno = errno;
  return err;
}

/** Checks the result of a libc call that returns -1 on failure; closes `fdToClose` (if given) before throwing. */
function check(result: number, what: string, syscall: string, fdToClose?: number): number {
  if (result !== -1) return result;
  const errno = lastErrno();
  if (fdToClose !== undefined) c().close(fdToClose);
  throw sysError(what, syscall, errno);
}

/* ------------------------------------------------------------------ */
/* Socket addresses                                                    */
/* ------------------------------------------------------------------ */

const LE = os.endianness() === 'LE';

function sockaddrIn(host: string, port: number, what: string): Buffer {
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

function sockaddrUn(path: string, what: string): Buffer {
  const bytes = Buffer.from(path);
  if (bytes.length === 0 || bytes.includes(0)) {
    throw sysError(what, 'bind', E.EINVAL, 'a unix socket path must be non-empty and contain no NUL byte');
  }
  if (bytes.length >= SUN_PATH_SIZE) {
    throw sysError(what, 'bind', E.ENAMETOOLONG,
      `the path is ${bytes.length} bytes long, a unix socket path may have at most ${SUN_PATH_SIZE - 1}`);
  }
  const addr = Buffer.alloc(2 + bytes.length + 1);
  if (LE) addr.writeUInt16LE(AF_UNIX, 0);
  else addr.writeUInt16BE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  return addr;
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  if (LE) b.writeUInt32LE(value);
  else b.writeUInt32BE(value);
  return b;
}

function readU32(b: Buffer, offset = 0): number {
  return LE ? b.readUInt32LE(offset) : b.readUInt32BE(offset);
}

function setIntOpt(fd: number, level: number, name: number, value: number, what: string): void {
  const v = Buffer.alloc(4);
  if (LE) v.writeInt32LE(value);
  else v.writeInt32BE(value);
  check(c().setsockopt(fd, level, name, v, 4), what, 'setsockopt', fd);
}

/** getsockopt into a buffer of `size` bytes. */
function getOpt(fd: number, level: number, name: number, size: number, what: string): Buffer {
  const value = Buffer.alloc(size);
  check(c().getsockopt(fd, level, name, value, u32(size)), what, 'getsockopt');
  return value;
}

function assertBacklog(backlog: number, what: string): void {
  if (!Number.isInteger(backlog) || backlog < 0) {
    throw sysError(what, 'listen', E.EINVAL, `backlog must be an integer >= 0, got ${String(backlog)}`);
  }
}

/* ------------------------------------------------------------------ */
/* Listeners                                                           */
/* ------------------------------------------------------------------ */

/**
 * socket(AF_INET|AF_INET6, SOCK_STREAM|SOCK_CLOEXEC) + SO_REUSEADDR + bind + listen.
 * `host` must be an IP literal; port 0 lets the kernel pick. The fd is never given to
 * libuv: the calling process must never accept on it. Throws a SysError with a
 * one-line message ("cannot listen on 127.0.0.1:8080: address already in use (EADDRINUSE)").
 */
export function openTcpListener(host: string, port: number, backlog: number): number {
  const family = net.isIP(host);
  const what = `cannot listen on ${family === 6 ? `[${host}]` : host}:${String(port)}`;
  if (family === 0) {
    throw sysError(what, 'bind', E.EINVAL, `'${host}' is not an IPv4 or IPv6 address literal`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw sysError(what, 'bind', E.EINVAL, `port must be an integer from 0 to 65535`);
  }
  assertBacklog(backlog, what);
  const addr = sockaddrIn(host, port, what);

  // IPV6_V6ONLY is left at the kernel default, so '::' is dual-stack as in Node.
  const fd = check(c().socket(family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), what, 'socket');
  setIntOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, what);
  check(c().bind(fd, addr, addr.length), what, 'bind', fd);
  // With SO_REUSEADDR two sockets may bind one port if neither listens yet;
  // the loser then gets EADDRINUSE here.
  check(c().listen(fd, backlog), what, 'listen', fd);
  return fd;
}

/**
 * AF_UNIX SOCK_STREAM|SOCK_CLOEXEC, bind(path), listen(backlog). An existing path is
 * replaced only if it is a stale socket (connecting is refused); a socket something
 * answers on gives EADDRINUSE, anything that is not a socket gives EEXIST.
 */
export function openUnixListener(path: string, backlog: number): number {
  const what = `cannot listen on ${path}`;
  assertBacklog(backlog, what);
  const addr = sockaddrUn(path, what);
  removeStaleSocket(path, addr, what);

  const fd = check(c().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), what, 'socket');
  check(c().bind(fd, addr, addr.length), what, 'bind', fd);
  try {
    check(c().listen(fd, backlog), what, 'listen');
  } catch (err) {
    // The path is ours now that bind succeeded: do not leave it behind.
    c().close(fd);
    fs.rmSync(path, { force: true });
    throw err;
  }
  return fd;
}

function removeStaleSocket(path: string, addr: Buffer, what: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw sysError(what, 'bind', E.EEXIST, 'the path exists and is not a socket');
  }
  // Non-blocking, so a live server whose accept queue is full answers EAGAIN
  // instead of blocking the supervisor.
  const probe = check(c().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), what, 'socket');
  const r = c().connect(probe, addr, addr.length);
  const errno = r === -1 ? lastErrno() : 0;
  c().close(probe);
  if (errno === E.ECONNREFUSED) {
    fs.rmSync(path, { force: true });
    return;
  }
  if (errno === 0 || errno === E.EAGAIN) {
    throw sysError(what, 'bind', E.EADDRINUSE, 'a running server answers on it');
  }
  if (errno === E.ENOENT) return; // removed meanwhile
  throw sysError(what, 'connect', errno);
}

/* ------------------------------------------------------------------ */
/* Inspecting and handling fds                                         */
/* ------------------------------------------------------------------ */

/** getsockname: what the fd is bound to. */
export function socketAddress(fd: number): { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string } {
  const what = `cannot read the address of fd ${String(fd)}`;
  const addr = Buffer.alloc(SOCKADDR_MAX);
  const len = u32(SOCKADDR_MAX);
  check(c().getsockname(fd, addr, len), what, 'getsockname');
  const size = Math.min(readU32(len), SOCKADDR_MAX);
  const family = LE ? addr.readUInt16LE(0) : addr.readUInt16BE(0);
  if (family === AF_INET || family === AF_INET6) {
    const text = Buffer.alloc(46); // INET6_ADDRSTRLEN
    const src = addr.subarray(family === AF_INET6 ? 8 : 4);
    if (c().inet_ntop(family, src, text, text.length) === null) throw sysError(what, 'inet_ntop', lastErrno());
    return { kind: 'tcp', host: text.toString('latin1', 0, text.indexOf(0)), port: addr.readUInt16BE(2) };
  }
  if (family === AF_UNIX) {
    const raw = addr.subarray(2, size);
    // Abstract names start with a NUL and are not NUL-terminated; Node shows them with the leading '\0'.
    const end = raw[0] === 0 ? raw.length : raw.indexOf(0) === -1 ? raw.length : raw.indexOf(0);
    return { kind: 'unix', path: raw.toString('utf8', 0, end) };
  }
  throw sysError(what, 'getsockname', E.EAFNOSUPPORT, `address family ${String(family)} is not TCP or unix`);
}

/** getsockopt SO_ACCEPTCONN: is the socket in the listening state? */
export function isListening(fd: number): boolean {
  return readU32(getOpt(fd, SOL_SOCKET, SO_ACCEPTCONN, 4, `cannot query fd ${String(fd)}`)) !== 0;
}

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

/* ------------------------------------------------------------------ */
/* Node internals: the only two places baton touches them              */
/* ------------------------------------------------------------------ */

/** SO_PEERCRED of a connected unix socket: who is at the other end. */
export function peerCredentials(socket: net.Socket): { pid: number; uid: number; gid: number } {
  const fd = handleFd(socket);
  const what = `cannot read the peer credentials of fd ${String(fd)}`;
  // On a TCP socket Linux answers SO_PEERCRED with pid 0, uid and gid -1 (seen)
  // instead of an error; refuse rather than hand out a made-up identity.
  if (socketAddress(fd).kind !== 'unix') throw sysError(what, 'getsockopt', E.EINVAL, 'not a unix socket');
  const cred = getOpt(fd, SOL_SOCKET, SO_PEERCRED, 12, what); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
  return {
    pid: LE ? cred.readInt32LE(0) : cred.readInt32BE(0),
    uid: readU32(cred, 4),
    gid: readU32(cred, 8),
  };
}

/** The OS fd behind a net.Socket or net.Server (Node internal `_handle.fd`). */
export function handleFd(obj: net.Socket | net.Server): number {
  const fd: unknown = (obj as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error(
      `no OS file descriptor behind this ${obj instanceof net.Server ? 'server' : 'socket'} ` +
        `(not connected/listening yet, already closed, or Node ${process.version} changed _handle.fd)`,
    );
  }
  return fd;
}
