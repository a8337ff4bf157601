// Passing fds to an unrelated process over a unix socket (SCM_RIGHTS): how a takeover
// hands the listening sockets to a new baton.
import {
  AF_UNIX,
  CMSG_HDR,
  c,
  check,
  E,
  MSG_CMSG_CLOEXEC,
  MSG_NOSIGNAL,
  SCM_RIGHTS,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  SOL_SOCKET,
  sockaddrUn,
  sysError,
} from './libc.js';

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
    for (const [i, f] of fds.entries()) control.writeInt32LE(f, CMSG_HDR + 4 * i);
  }
  const msg = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: body, iov_len: body.length }],
    msg_iovlen: 1,
    msg_control: fds.length ? control : null,
    msg_controllen: control.length,
    msg_flags: 0,
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
    const control = Buffer.alloc((CMSG_HDR + 4 * maxFds + 7) & ~7);
    const msg = {
      msg_name: null,
      msg_namelen: 0,
      msg_iov: [{ iov_base: buf, iov_len: buf.length }],
      msg_iovlen: 1,
      msg_control: control,
      msg_controllen: control.length,
      msg_flags: 0,
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
