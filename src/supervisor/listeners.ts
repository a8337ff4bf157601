// The sockets baton owns for the life of the service: parsed from `--listen`, opened once
// (bound and listening, never accepted on here; UDP: bound, never read here), or taken
// over from systemd socket activation; handed to every worker, closed on stop.
import { fstatSync, unlinkSync } from 'node:fs';
import { checkSpecs, type Listener, type ListenSpec } from '../common/address.js';
import type { ListenerInfo, UdpListenerInfo } from '../common/protocol.js';
import { adopt, type InheritedSocket, releaseUnused } from '../os/activation.js';
import { closeFd } from '../os/fds.js';
import { openTcpListener, openUdpSocket, openUnixListener, socketAddress } from '../os/sockets.js';

/**
 * Open every listener or none: on the first failure the ones already opened are closed.
 * A spec that matches a socket in `inherited` (socket activation) takes it and is never bound;
 * with `release`, the inherited sockets no spec took are closed.
 */
export function openListeners(specs: ListenSpec[], backlog: number, inherited: InheritedSocket[] = [], release = true): Listener[] {
  checkSpecs(specs);
  const opened: Listener[] = [];
  try {
    for (const s of specs) {
      const taken = adopt(s, inherited);
      if (taken) {
        opened.push({ ...taken, inherited: true });
        continue;
      }
      const own =
        s.kind === 'tcp' ? openTcpListener(s.host, s.port, backlog) : s.kind === 'udp' ? openUdpSocket(s.host, s.port) : openUnixListener(s.path, backlog);
      opened.push(resolveAddress({ ...s, fd: own }));
    }
    // With several services, the sockets the others will take are not unused: see services.ts.
    if (release) releaseUnused(inherited);
  } catch (e) {
    closeListeners(opened);
    throw e;
  }
  return opened;
}

/** Port 0 means "kernel picks": record the real port so workers and status see it. */
function resolveAddress(l: Listener): Listener {
  if (l.kind === 'unix' || l.port !== 0) return l;
  const a = socketAddress(l.fd);
  if (a.kind === 'unix') return l;
  const zero = `${l.kind}-0`;
  return { ...l, port: a.port, name: l.name === zero ? `${l.kind}-${a.port}` : l.name };
}

/** The socket's inode (as in /proc/<pid>/fd and `ss -e`): tells which socket a listener is. */
export function inodeOf(l: Listener): number | null {
  try {
    return fstatSync(l.fd).ino;
  } catch {
    return null; // closed: the service is stopping
  }
}

export function closeListeners(ls: Listener[]): void {
  for (const l of ls) {
    try {
      closeFd(l.fd);
    } catch {
      /* already closed: nothing left to release */
    }
    if (l.kind === 'unix' && !l.inherited) {
      try {
        unlinkSync(l.path);
      } catch {
        /* someone removed it already */
      }
    }
  }
}

/**
 * What a Node worker's runtime is told about its stream listeners (listener i is at fd 3 + i).
 * UDP sockets are described apart (udpWorkerInfo): the runtime waits for every listener in
 * this list to be served before it reports ready, and a datagram socket is not served by listen().
 */
export function workerInfo(ls: Listener[]): ListenerInfo[] {
  return ls.flatMap((l, i): ListenerInfo[] =>
    l.kind === 'tcp'
      ? [{ fd: 3 + i, name: l.name, kind: 'tcp', host: l.host, port: l.port }]
      : l.kind === 'unix'
        ? [{ fd: 3 + i, name: l.name, kind: 'unix', path: l.path }]
        : [],
  );
}

/** The UDP sockets among a worker's fds, for the runtime's dgram redirect (runtime/dgram.ts). */
export function udpWorkerInfo(ls: Listener[]): UdpListenerInfo[] {
  return ls.flatMap((l, i) => (l.kind === 'udp' ? [{ fd: 3 + i, name: l.name, host: l.host, port: l.port }] : []));
}
