// Listening and datagram sockets made with libc (socket/bind/listen, never polled here),
// and what can be read back from a socket: its address, its state, its peer.
import * as fs from 'node:fs';
import * as net from 'node:net';
import { handleFd } from './internals.js';
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  assertBacklog,
  c,
  check,
  E,
  getOpt,
  LE,
  lastErrno,
  MSG_NOSIGNAL,
  readU32,
  SO_ACCEPTCONN,
  SO_PEERCRED,
  SO_REUSEADDR,
  SO_TYPE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOCKADDR_MAX,
  SOL_SOCKET,
  setIntOpt,
  sockaddrIn,
  sockaddrUn,
  sockaddrUnOrAbstract,
  sysError,
  u32,
} from './libc.js';

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
/* Inspecting and handling fds                                         */
/* ------------------------------------------------------------------ */

/** getsockname: what the fd is bound to. */
export function socketAddress(fd: number): { kind: 'tcp' | 'udp'; host: string; port: number } | { kind: 'unix'; path: string } {
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
