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
import { ChildProcess } from 'node:child_process';
import type * as dgram from 'node:dgram';
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
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_TYPE = 3;
const SO_PEERCRED = 17;
const SO_ACCEPTCONN = 30;
const F_GETFD = 1;
const F_SETFD = 2;
const F_DUPFD_CLOEXEC = 1030;
const FD_CLOEXEC = 1;
const MFD_CLOEXEC = 1;
const WNOHANG = 1;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SCM_RIGHTS = 1;
/** sizeof(struct cmsghdr) on LP64: size_t cmsg_len, int cmsg_level, int cmsg_type. */
const CMSG_HDR = 16;
const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;
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
  sendto: Fn;
  sendmsg: Fn;
  recvmsg: Fn;
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
function c(): Libc {
  if (libc) return libc;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load('libc.so.6');
  // Declared in full for their layout; baton reads the ids only.
  koffi.struct('passwd', {
    pw_name: 'char *', pw_passwd: 'char *', pw_uid: 'uint32_t', pw_gid: 'uint32_t',
    pw_gecos: 'char *', pw_dir: 'char *', pw_shell: 'char *',
  });
  koffi.struct('group', { gr_name: 'char *', gr_passwd: 'char *', gr_gid: 'uint32_t', gr_mem: 'void *' });
  koffi.struct('iovec', { iov_base: 'void *', iov_len: 'size_t' });
  koffi.struct('msghdr', {
    msg_name: 'void *', msg_namelen: 'uint32_t', msg_iov: 'iovec *', msg_iovlen: 'size_t',
    msg_control: 'void *', msg_controllen: 'size_t', msg_flags: 'int',
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
    prctl: lib.func('int prctl(int option, ...)'),
    getpwnam: lib.func('passwd *getpwnam(const char *name)'),
    getpwuid: lib.func('passwd *getpwuid(uint32_t uid)'),
    getgrnam: lib.func('group *getgrnam(const char *name)'),
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

/** A unix address as systemd writes it: a path, or '@name' for the abstract namespace. */
function sockaddrUnOrAbstract(address: string, what: string): Buffer {
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

/**
 * socket(AF_INET|AF_INET6, SOCK_DGRAM|SOCK_CLOEXEC) + SO_REUSEADDR + bind. Like a TCP
 * listener, the fd is never given to libuv, so this process never reads it: datagrams
 * wait in the socket's receive buffer (SO_RCVBUF) until a worker reads them.
 */
export function openUdpSocket(host: string, port: number): number {
  const family = net.isIP(host);
  const what = `cannot bind udp:${family === 6 ? `[${host}]` : host}:${String(port)}`;
  if (family === 0) {
    throw sysError(what, 'bind', E.EINVAL, `'${host}' is not an IPv4 or IPv6 address literal`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw sysError(what, 'bind', E.EINVAL, `port must be an integer from 0 to 65535`);
  }
  const addr = sockaddrIn(host, port, what);
  const fd = check(c().socket(family === 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), what, 'socket');
  setIntOpt(fd, SOL_SOCKET, SO_REUSEADDR, 1, what);
  check(c().bind(fd, addr, addr.length), what, 'bind', fd);
  return fd;
}

/**
 * One datagram to a unix datagram socket, as sd_notify(3) sends it: `address` is a path or
 * '@name' (abstract). Non-blocking: a receiver whose queue is full must not stall baton;
 * the caller gets EAGAIN and decides.
 */
export function sendDatagram(address: string, data: string): void {
  const what = `cannot send to ${address}`;
  const addr = sockaddrUnOrAbstract(address, what);
  const fd = check(c().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), what, 'socket');
  try {
    const buf = Buffer.from(data);
    check(Number(c().sendto(fd, buf, buf.length, MSG_NOSIGNAL, addr, addr.length)), what, 'sendto');
  } finally {
    c().close(fd);
  }
}

/* ------------------------------------------------------------------ */
/* Passing fds to an unrelated process (SCM_RIGHTS): takeover          */
/* ------------------------------------------------------------------ */

/** A blocking, close-on-exec connection to a unix stream socket. */
export function connectUnix(path: string): number {
  const what = `cannot connect to ${path}`;
  const addr = sockaddrUn(path, what);
  const fd = check(c().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), what, 'socket');
  check(c().connect(fd, addr, addr.length), what, 'connect', fd);
  return fd;
}

/** One sendmsg of `data` with `fds` attached. The socket may be Node's (non-blocking): the message is small. */
export function sendWithFds(fd: number, data: string, fds: readonly number[]): void {
  const what = 'cannot pass sockets';
  const body = Buffer.from(data);
  const len = CMSG_HDR + 4 * fds.length;
  const control = Buffer.alloc(fds.length ? (len + 7) & ~7 : 0);
  if (fds.length) {
    control.writeBigUInt64LE(BigInt(len), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    fds.forEach((f, i) => control.writeInt32LE(f, CMSG_HDR + 4 * i));
  }
  const msg = {
    msg_name: null, msg_namelen: 0, msg_iov: [{ iov_base: body, iov_len: body.length }], msg_iovlen: 1,
    msg_control: fds.length ? control : null, msg_controllen: control.length, msg_flags: 0,
  };
  const sent = check(Number(c().sendmsg(fd, msg, MSG_NOSIGNAL)), what, 'sendmsg');
  if (sent !== body.length) throw sysError(what, 'sendmsg', E.EAGAIN, `only ${sent} of ${body.length} bytes went out`);
}

/**
 * Blocking read until a newline: the bytes, and the fds that came with them (close-on-exec).
 * For a short handshake only: it blocks the event loop while it waits.
 */
export function recvLineWithFds(fd: number, maxBytes = 1 << 20, maxFds = 1024): { line: string; fds: number[] } {
  const what = 'cannot receive sockets';
  const chunks: Buffer[] = [];
  const fds: number[] = [];
  let total = 0;
  for (;;) {
    const buf = Buffer.alloc(64 * 1024);
    const control = Buffer.alloc(((CMSG_HDR + 4 * maxFds) + 7) & ~7);
    const msg = {
      msg_name: null, msg_namelen: 0, msg_iov: [{ iov_base: buf, iov_len: buf.length }], msg_iovlen: 1,
      msg_control: control, msg_controllen: control.length, msg_flags: 0,
    };
    const n = check(Number(c().recvmsg(fd, msg, MSG_CMSG_CLOEXEC)), what, 'recvmsg');
    for (let off = 0; off + CMSG_HDR <= Number(msg.msg_controllen); ) {
      const len = Number(control.readBigUInt64LE(off));
      if (len < CMSG_HDR) break;
      if (control.readInt32LE(off + 8) === SOL_SOCKET && control.readInt32LE(off + 12) === SCM_RIGHTS) {
        for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
      }
      off += (len + 7) & ~7;
    }
    if (n === 0) throw sysError(what, 'recvmsg', E.ECONNRESET, 'the other side closed the connection');
    chunks.push(buf.subarray(0, n));
    total += n;
    const nl = buf.subarray(0, n).indexOf(10);
    if (nl >= 0) return { line: Buffer.concat(chunks).toString('utf8', 0, total - n + nl), fds };
    if (total > maxBytes) throw sysError(what, 'recvmsg', E.EMSGSIZE, `no newline in ${total} bytes`);
  }
}

/* ------------------------------------------------------------------ */
/* Inspecting and handling fds                                         */
/* ------------------------------------------------------------------ */

/** getsockname: what the fd is bound to. */
export function socketAddress(
  fd: number,
): { kind: 'tcp' | 'udp'; host: string; port: number } | { kind: 'unix'; path: string } {
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
    const type = readU32(getOpt(fd, SOL_SOCKET, SO_TYPE, 4, what));
    return { kind: type === SOCK_DGRAM ? 'udp' : 'tcp', host: text.toString('latin1', 0, text.indexOf(0)), port: addr.readUInt16BE(2) };
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
  const native = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof native === 'function' && Number(process.versions.node.split('.')[0]) >= 26) native(path, [...argv], env);
  const pairs = Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
  c().execve(path, [...argv, null], [...pairs, null]);
  throw sysError(`cannot execute ${path}`, 'execve', lastErrno());
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

/* ------------------------------------------------------------------ */
/* Node internals: the only places baton touches them                  */
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

/** A connection as libuv accepted it (Node's internal TCP or Pipe wrap), before any net.Socket exists. */
export interface RawConnection {
  close(): void;
}

/**
 * Take a listening server's accepted connections as raw handles, with no net.Socket made for
 * them: round-robin passes each one straight to a worker, where a socket made here would be
 * built, detached and thrown away (cluster's round-robin primary does the same). Internal:
 * libuv calls `_handle.onconnection(err, clientHandle)`, looked up on each connection.
 */
export function onRawConnection(server: net.Server, f: (conn: RawConnection) => void, onError: (e: SysError) => void): void {
  const handle = (server as unknown as { _handle?: { onconnection?: unknown } | null })._handle;
  if (!handle || typeof handle.onconnection !== 'function') {
    throw new Error(`no listening handle with onconnection behind this server (not listening yet, or Node ${process.version} changed _handle.onconnection)`);
  }
  handle.onconnection = (err: number, conn: RawConnection | undefined) => {
    if (err || !conn) return onError(sysError('accept failed', 'accept', -err));
    f(conn);
  };
}

/** The net.Socket for a raw connection received over IPC (Node internal: the `handle` option, as child_process itself uses). */
export function socketOf(conn: unknown): net.Socket {
  if (typeof (conn as RawConnection | null)?.close !== 'function') throw new Error(`not a raw connection handle (Node ${process.version} changed how handles arrive over IPC?)`);
  return new net.Socket({ handle: conn, readable: true, writable: true } as net.SocketConstructorOpts);
}

/**
 * The parent's fd of a child's IPC channel (Node internal: `subprocess.channel` is public,
 * its `fd` is not documented), or null once the channel is closed.
 */
export function ipcFd(child: ChildProcess): number | null {
  const fd: unknown = (child.channel as { fd?: unknown } | null | undefined)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

let spawned: Set<number> | undefined;

/**
 * The children somebody in this process waits for by pid, which the orphan reaper
 * (reaper.ts) must leave alone: every child started through node:child_process (spawn,
 * fork, exec, execFile all go through ChildProcess.prototype.spawn) until its 'exit', added
 * here automatically from the first call on (call it before anything spawns); and any
 * child that code reaping its own with reap() adds (and deletes once reaped). spawnSync
 * needs nothing: it waits for its child before returning.
 */
export function childrenWaitedFor(): Set<number> {
  if (spawned) return spawned;
  const pids = new Set<number>();
  // Not in @types/node, but public on the class since Node 0.x; the contract test checks it.
  const proto = ChildProcess.prototype as ChildProcess & { spawn?: (...args: unknown[]) => unknown };
  const original = proto.spawn;
  if (typeof original !== 'function') throw new Error(`Node ${process.version} has no ChildProcess.prototype.spawn: update childrenWaitedFor() in src/sys.ts`);
  proto.spawn = function spawn(this: ChildProcess, ...args: unknown[]): unknown {
    const r = Reflect.apply(original, this, args);
    const pid = this.pid;
    if (pid !== undefined) {
      pids.add(pid);
      this.once('exit', () => pids.delete(pid));
    }
    return r;
  };
  spawned = pids;
  return pids;
}

/**
 * Stops reading a bound dgram socket and keeps it open for sending (Node 20 has no public
 * call for it: close() would also cancel replies still queued). Internal: the socket's
 * state lives under Symbol('state symbol') with the libuv UDP handle in `.handle`.
 */
export function stopReceiving(socket: dgram.Socket): void {
  const key = Object.getOwnPropertySymbols(socket).find((k) => String(k) === 'Symbol(state symbol)');
  const handle = key ? (socket as unknown as Record<symbol, { handle?: { recvStop?: () => number } | null }>)[key]?.handle : undefined;
  if (typeof handle?.recvStop !== 'function') {
    throw new Error(`no UDP handle behind this dgram socket (not bound yet, closed, or Node ${process.version} changed its internals)`);
  }
  handle.recvStop();
}
