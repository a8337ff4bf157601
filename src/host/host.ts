// What `baton start` does for the host it runs on, before the supervisor starts: reap
// orphans (subreaper, PID 1), talk to systemd (sd_notify, socket activation), and choose
// the user workers run as. Everything read from the environment here is taken out of it,
// so workers never see baton's own systemd variables.
import { constants } from 'node:os';
import { type InheritedSocket, takeInheritedSockets } from '../os/activation.js';
import { lookupGroup, lookupUser } from '../os/process.js';
import { startReaper } from '../os/reaper.js';
import type { Credentials, NotifyOptions } from '../supervisor/notify.js';
import type { ServiceGroup } from '../supervisor/services.js';
import type { ServiceOptions, Supervisor } from '../supervisor/supervisor.js';
import { reachCheck } from './reach.js';
import { SystemdNotifier } from './systemd.js';

export interface HostFlags {
  readyAfter?: number;
  watchdog?: number;
  drainSignal: NodeJS.Signals;
  stopTimeout?: number;
  user?: string;
  group?: string;
}

export interface Host {
  /** Sockets handed to baton by socket activation (empty without). */
  inherited: InheritedSocket[];
  /** The supervisor options this module decides. */
  service: Pick<ServiceOptions, 'launch' | 'reach' | 'inherited' | 'stopTimeoutMs'>;
  /** Connect the supervisor to systemd, if baton runs under it. */
  follow(sup: Supervisor): void;
  /** The same for a baton running several services. */
  followGroup(group: ServiceGroup): void;
}

export function prepareHost(flags: HostFlags, env: NodeJS.ProcessEnv = process.env): Host {
  const credentials = resolveCredentials(flags.user, flags.group, env);
  // First: every child spawned from here on is known to the reaper as libuv's.
  startReaper();
  const { notifier, watchdogMs } = SystemdNotifier.fromEnv(env);
  const inherited = takeInheritedSockets(env);
  const notify: NotifyOptions = { readyAfterMs: flags.readyAfter ?? null, watchdogMs: flags.watchdog ?? null };
  return {
    inherited,
    service: {
      launch: { notify, drainSignal: flags.drainSignal, ...(credentials ? { credentials } : {}) },
      reach: credentials && reachCheck(flags.user ?? `uid ${credentials.uid}`, credentials),
      inherited,
      stopTimeoutMs: flags.stopTimeout ?? null,
    },
    follow: (sup) => notifier?.follow(sup, watchdogMs),
    followGroup: (group) => notifier?.followGroup(group, watchdogMs),
  };
}

/** `SIGTERM`, `TERM` or `15`: a signal this platform has. */
export function parseSignal(text: string): NodeJS.Signals {
  const signals = constants.signals as Record<string, number>;
  const byName = text.toUpperCase().startsWith('SIG') ? text.toUpperCase() : `SIG${text.toUpperCase()}`;
  const name = /^\d+$/.test(text) ? Object.keys(signals).find((k) => signals[k] === Number(text)) : byName in signals ? byName : undefined;
  if (!name) throw new Error(`bad signal '${text}': use a name such as SIGTERM, SIGQUIT or SIGINT`);
  return name as NodeJS.Signals;
}

/**
 * --user / --group (names or numbers) to the ids workers are spawned with. baton keeps its
 * own ids: it binds (privileged ports too) before any worker runs. HOME, USER and LOGNAME
 * become the user's, in the environment workers inherit, as `su` and systemd's User= do.
 */
function resolveCredentials(user: string | undefined, group: string | undefined, env: NodeJS.ProcessEnv): Credentials | null {
  if (user === undefined && group === undefined) return null;
  const me = process.getuid?.() ?? 0;
  const pw = user === undefined ? null : lookupUser(/^\d+$/.test(user) ? Number(user) : user);
  if (user !== undefined && !pw && !/^\d+$/.test(user)) throw new Error(`--user ${user}: no such user`);
  const uid = pw?.uid ?? (user === undefined ? me : Number(user));
  let gid = pw?.gid ?? process.getgid?.() ?? 0;
  if (group !== undefined) {
    const g = /^\d+$/.test(group) ? Number(group) : lookupGroup(group);
    if (g === null) throw new Error(`--group ${group}: no such group`);
    gid = g;
  } else if (!pw) {
    throw new Error(`--user ${user}: uid ${uid} has no entry in the user database; give --group as well`);
  }
  if (me !== 0 && uid !== me) throw new Error(`--user needs baton to run as root (it runs as uid ${me})`);
  if (pw) {
    env.HOME = pw.home;
    env.USER = pw.name;
    env.LOGNAME = pw.name;
  }
  return { uid, gid };
}
