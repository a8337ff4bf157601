// systemd socket activation for baton itself: sockets handed to baton at fds 3, 4, … with
// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (sd_listen_fds(3)). baton matches them to its
// `--listen` entries and uses them instead of binding, so the ports outlive even a full
// restart of baton: systemd keeps its copy, and connections queue in the kernel meanwhile.

import type { ListenSpec } from '../common/address.js';
import { log } from '../log/log.js';
import { closeFd, setCloexec } from './fds.js';
import { isListening, socketAddress } from './sockets.js';

const FIRST_FD = 3;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export interface InheritedSocket {
  fd: number;
  /** From LISTEN_FDNAMES (systemd's FileDescriptorName=, by default the socket unit's name). */
  name: string;
  address: ReturnType<typeof socketAddress>;
  /** SO_ACCEPTCONN: false for datagram sockets, and for stream sockets bound without listen(). */
  listening: boolean;
  used: boolean;
}

/**
 * Takes the sockets this process was started with, if LISTEN_PID names it, and removes
 * the variables from `env` either way: they describe this process's fds, and no child
 * must mistake them for its own.
 */
export function takeInheritedSockets(env: NodeJS.ProcessEnv, pid = process.pid): InheritedSocket[] {
  const { LISTEN_PID: forPid, LISTEN_FDS: count, LISTEN_FDNAMES: names } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (forPid !== String(pid) || count === undefined) return [];
  if (!/^\d{1,4}$/.test(count)) throw new Error(`LISTEN_FDS='${count}' is not a number of sockets`);
  const nameList = names?.split(':') ?? [];
  return Array.from({ length: Number(count) }, (_, i) => {
    const fd = FIRST_FD + i;
    let address: InheritedSocket['address'];
    try {
      address = socketAddress(fd);
    } catch (e) {
      throw new Error(`socket activation: fd ${fd} (LISTEN_FDS=${count}) is not a TCP, UDP or unix socket: ${(e as Error).message}`);
    }
    // Inherited across exec, so not close-on-exec: without this every program baton starts
    // would get a copy, besides the one it is meant to have at its own fd 3, 4, ...
    setCloexec(fd, true);
    return { fd, name: nameList[i] || `fd-${fd}`, address, listening: address.kind !== 'udp' && isListening(fd), used: false };
  });
}

/**
 * The inherited socket for `spec`, or null: by name (LISTEN_FDNAMES equals the spec's
 * name), else by address. A wildcard host matches either wildcard, because systemd's
 * `ListenStream=8080` binds [::]:8080 (dual-stack) where `--listen 8080` says 0.0.0.0.
 * Matched by name, the socket's own address is what counts, not the one the spec gives.
 */
export function adopt(spec: ListenSpec, inherited: InheritedSocket[]): (ListenSpec & { fd: number }) | null {
  const free = inherited.filter((s) => !s.used && s.address.kind === spec.kind);
  const s = free.find((x) => x.name === spec.name) ?? free.find((x) => sameAddress(spec, x.address));
  if (!s) return null;
  if (spec.kind !== 'udp' && !s.listening) {
    throw new Error(`socket activation: fd ${s.fd} (${s.name}) for listener ${spec.name} is a stream socket that is not listening`);
  }
  s.used = true;
  log.info(`socket activation: listener ${spec.name} uses inherited fd ${s.fd} (${s.name}); not bound again`);
  const a = s.address;
  return a.kind === 'unix'
    ? { name: spec.name, kind: 'unix', path: a.path, fd: s.fd }
    : { name: spec.name, kind: a.kind, host: a.host, port: a.port, fd: s.fd };
}

function sameAddress(spec: ListenSpec, a: InheritedSocket['address']): boolean {
  if (spec.kind === 'unix' || a.kind === 'unix') return spec.kind === 'unix' && a.kind === 'unix' && spec.path === a.path;
  const wildcard = (h: string): boolean => h === '0.0.0.0' || h === '::';
  return spec.port === a.port && (spec.host === a.host || (wildcard(spec.host) && wildcard(a.host)));
}

/** Sockets no `--listen` took: closed, so nothing holds a port nobody serves. */
export function releaseUnused(inherited: InheritedSocket[]): void {
  for (const s of inherited) {
    if (s.used) continue;
    log.warn(`socket activation: inherited fd ${s.fd} (${s.name}) matches no --listen; closing it`);
    closeFd(s.fd);
    s.used = true;
  }
}

/** With no `--listen` at all, every inherited socket is a listener, named after LISTEN_FDNAMES. */
export function specsFromInherited(inherited: InheritedSocket[]): ListenSpec[] {
  return inherited.map((s): ListenSpec => {
    const name = NAME.test(s.name) ? s.name : `fd-${s.fd}`;
    const a = s.address;
    return a.kind === 'unix' ? { name, kind: 'unix', path: a.path } : { name, kind: a.kind, host: a.host, port: a.port };
  });
}
