// The sockets baton owns for the life of the service: parsed from `--listen`, opened once
// (bound and listening, never accepted on here; UDP: bound, never read here), or taken
// over from systemd socket activation; handed to every worker, closed on stop.
import { isIPv4, isIPv6 } from 'node:net';
import { resolve } from 'node:path';
import { fstatSync, unlinkSync } from 'node:fs';
import * as sys from './sys.js';
import type { ListenerInfo, UdpListenerInfo } from './protocol.js';
import { adopt, releaseUnused, type InheritedSocket } from './activation.js';

export type ListenSpec =
  | { name: string; kind: 'tcp'; host: string; port: number }
  | { name: string; kind: 'udp'; host: string; port: number }
  | { name: string; kind: 'unix'; path: string };

/** `inherited`: the socket came from socket activation; its unix path is not ours to unlink. */
export type Listener = ListenSpec & { fd: number; inherited?: boolean };

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * `PORT`, `HOST:PORT`, `[IPV6]:PORT`, `unix:/path`, `udp:PORT|HOST:PORT|[IPV6]:PORT`, each
 * optionally prefixed by `name=`. Only IP literals (and `localhost`) are accepted as hosts:
 * a name that resolves to several addresses would silently become several sockets.
 */
export function parseListen(text: string): ListenSpec {
  let rest = text.trim();
  let name: string | undefined;
  const eq = /^([A-Za-z0-9_.-]+)=(.*)$/.exec(rest);
  if (eq) [, name, rest] = eq as unknown as [string, string, string];
  if (name !== undefined && !NAME.test(name)) throw new Error(`bad listener name '${name}': use letters, digits, '_', '.', '-'`);

  if (rest.startsWith('unix:')) {
    const path = rest.slice('unix:'.length);
    if (!path) throw new Error(`bad --listen '${text}': unix: needs a path, e.g. unix:/run/app.sock`);
    const abs = resolve(path);
    return { name: name ?? defaultName(abs.split('/').pop()!), kind: 'unix', path: abs };
  }
  const udp = rest.startsWith('udp:');
  if (udp) rest = rest.slice('udp:'.length);

  let host = '0.0.0.0';
  let portText = rest;
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(rest);
  if (v6) {
    [, host, portText] = v6 as unknown as [string, string, string];
    if (!isIPv6(host)) throw new Error(`bad --listen '${text}': '${host}' is not an IPv6 address`);
  } else if (rest.includes(':')) {
    const i = rest.lastIndexOf(':');
    host = rest.slice(0, i);
    portText = rest.slice(i + 1);
    if (host === 'localhost') host = '127.0.0.1';
    if (!isIPv4(host)) {
      throw new Error(
        isIPv6(host)
          ? `bad --listen '${text}': write IPv6 addresses in brackets, e.g. [${host}]:8080`
          : `bad --listen '${text}': '${host}' is not an IP address (use e.g. 127.0.0.1:8080, [::1]:8080, 8080 or unix:/path)`,
      );
    }
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new Error(`bad --listen '${text}': '${portText}' is not a port (0-65535); expected PORT, HOST:PORT, [IPV6]:PORT or unix:/path`);
  }
  const port = Number(portText);
  const kind = udp ? 'udp' : 'tcp';
  return { name: name ?? `${kind}-${port}`, kind, host, port };
}

function defaultName(base: string): string {
  const cleaned = base.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 59);
  return `unix-${cleaned || 'socket'}`;
}

export function describe(l: ListenSpec): string {
  if (l.kind === 'unix') return `unix:${l.path}`;
  const addr = l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
  return l.kind === 'udp' ? `udp:${addr}` : addr;
}

/** Names must be unique (they become LISTEN_FDNAMES); duplicate addresses are refused. */
export function checkSpecs(specs: ListenSpec[]): void {
  if (specs.length === 0) throw new Error('no listener: give at least one --listen, e.g. --listen 127.0.0.1:8080');
  const names = new Set<string>();
  const addrs = new Set<string>();
  for (const s of specs) {
    const addr = describe(s);
    if (addrs.has(addr) && !(s.kind !== 'unix' && s.port === 0)) throw new Error(`--listen ${addr} is given twice`);
    addrs.add(addr);
    let name = s.name;
    for (let i = 2; names.has(name); i++) name = `${s.name}-${i}`;
    s.name = name;
    names.add(name);
  }
}

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
        s.kind === 'tcp' ? sys.openTcpListener(s.host, s.port, backlog)
        : s.kind === 'udp' ? sys.openUdpSocket(s.host, s.port)
        : sys.openUnixListener(s.path, backlog);
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
  const a = sys.socketAddress(l.fd);
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
      sys.closeFd(l.fd);
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
    l.kind === 'tcp' ? [{ fd: 3 + i, name: l.name, kind: 'tcp', host: l.host, port: l.port }]
    : l.kind === 'unix' ? [{ fd: 3 + i, name: l.name, kind: 'unix', path: l.path }]
    : [],
  );
}

/** The UDP sockets among a worker's fds, for the runtime's dgram redirect (runtime/dgram.ts). */
export function udpWorkerInfo(ls: Listener[]): UdpListenerInfo[] {
  return ls.flatMap((l, i) => (l.kind === 'udp' ? [{ fd: 3 + i, name: l.name, host: l.host, port: l.port }] : []));
}

/** Where `--metrics` serves: a TCP address. */
export interface MetricsAddress {
  host: string;
  port: number;
}

/** `--metrics PORT` (on 127.0.0.1: say 0.0.0.0:PORT to be scraped from elsewhere), HOST:PORT or [IPV6]:PORT. */
export function parseMetricsAddress(text: string): MetricsAddress {
  const bad = (why: string): Error => new Error(`bad --metrics '${text}': ${why}`);
  if (text.includes('=') || text.startsWith('unix:')) throw bad('use PORT, HOST:PORT or [IPV6]:PORT, e.g. 127.0.0.1:9464');
  let spec: ListenSpec;
  try {
    spec = parseListen(text);
  } catch (e) {
    throw bad((e as Error).message.replace(/^bad --listen '[^']*': /, ''));
  }
  if (spec.kind !== 'tcp') throw bad('use PORT, HOST:PORT or [IPV6]:PORT');
  return { host: /^\s*\d+\s*$/.test(text) ? '127.0.0.1' : spec.host, port: spec.port };
}

