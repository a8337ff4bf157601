// The sockets baton owns for the life of the service: parsed from `--listen`, opened once
// (bound and listening, never accepted on here), handed to every worker, closed on stop.
import { isIPv4, isIPv6 } from 'node:net';
import { resolve } from 'node:path';
import { unlinkSync } from 'node:fs';
import * as sys from './sys.js';
import type { ListenerInfo } from './protocol.js';

export type ListenSpec =
  | { name: string; kind: 'tcp'; host: string; port: number }
  | { name: string; kind: 'unix'; path: string };

export type Listener = ListenSpec & { fd: number };

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * `PORT`, `HOST:PORT`, `[IPV6]:PORT`, `unix:/path`, each optionally prefixed by `name=`.
 * Only IP literals (and `localhost`) are accepted as hosts: a name that resolves to
 * several addresses would silently become several sockets.
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
  return { name: name ?? `tcp-${port}`, kind: 'tcp', host, port };
}

function defaultName(base: string): string {
  const cleaned = base.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 59);
  return `unix-${cleaned || 'socket'}`;
}

export function describe(l: ListenSpec): string {
  if (l.kind === 'unix') return `unix:${l.path}`;
  return l.host.includes(':') ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

/** Names must be unique (they become LISTEN_FDNAMES); duplicate addresses are refused. */
export function checkSpecs(specs: ListenSpec[]): void {
  if (specs.length === 0) throw new Error('no listener: give at least one --listen, e.g. --listen 127.0.0.1:8080');
  const names = new Set<string>();
  const addrs = new Set<string>();
  for (const s of specs) {
    const addr = describe(s);
    if (addrs.has(addr) && !(s.kind === 'tcp' && s.port === 0)) throw new Error(`--listen ${addr} is given twice`);
    addrs.add(addr);
    let name = s.name;
    for (let i = 2; names.has(name); i++) name = `${s.name}-${i}`;
    s.name = name;
    names.add(name);
  }
}

/** Open every listener or none: on the first failure the ones already opened are closed. */
export function openListeners(specs: ListenSpec[], backlog: number): Listener[] {
  checkSpecs(specs);
  const opened: Listener[] = [];
  try {
    for (const s of specs) {
      const fd = s.kind === 'tcp' ? sys.openTcpListener(s.host, s.port, backlog) : sys.openUnixListener(s.path, backlog);
      opened.push(resolveAddress({ ...s, fd }));
    }
  } catch (e) {
    closeListeners(opened);
    throw e;
  }
  return opened;
}

/** Port 0 means "kernel picks": record the real port so workers and status see it. */
function resolveAddress(l: Listener): Listener {
  if (l.kind !== 'tcp' || l.port !== 0) return l;
  const a = sys.socketAddress(l.fd);
  if (a.kind !== 'tcp') return l;
  return { ...l, port: a.port, name: l.name === 'tcp-0' ? `tcp-${a.port}` : l.name };
}

export function closeListeners(ls: Listener[]): void {
  for (const l of ls) {
    try {
      sys.closeFd(l.fd);
    } catch {
      /* already closed: nothing left to release */
    }
    if (l.kind === 'unix') {
      try {
        unlinkSync(l.path);
      } catch {
        /* someone removed it already */
      }
    }
  }
}

/** What a worker is told about its fds: listener i is at fd 3 + i. */
export function workerInfo(ls: Listener[]): ListenerInfo[] {
  return ls.map((l, i) =>
    l.kind === 'tcp'
      ? { fd: 3 + i, name: l.name, kind: 'tcp', host: l.host, port: l.port }
      : { fd: 3 + i, name: l.name, kind: 'unix', path: l.path },
  );
}
