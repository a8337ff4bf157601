// Addresses as the user writes them (`--listen`, `--metrics`) and the listener types every
// layer shares: pure parsing, no sockets.
import { isIPv4, isIPv6 } from 'node:net';
import { resolve } from 'node:path';

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
