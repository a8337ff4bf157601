// baton as a systemd service (Type=notify, with ExecReload=baton reload so that a failed
// reload fails `systemctl reload`: docs/systemd.md): when systemd gave baton a NOTIFY_SOCKET,
// baton tells it READY=1 once generation
// 1 serves; on each reload RELOADING=1 with MONOTONIC_USEC, then READY=1 when it is over
// (also when it failed: the old generation serves on); STOPPING=1 on stop; and a one-line
// STATUS= each time. With WatchdogSec= it pings WATCHDOG=1 at half the interval.

import { log } from '../log/log.js';
import { sendDatagram } from '../os/sockets.js';
import type { HandoffRecord } from '../supervisor/handoff.js';
import type { ServiceGroup } from '../supervisor/services.js';
import type { StatusReport, Supervisor } from '../supervisor/supervisor.js';

export class SystemdNotifier {
  private warned = false;
  /** Handoffs that already said RELOADING=1. */
  private readonly reloading = new Set<number>();

  private constructor(private readonly address: string) {}

  /**
   * From baton's own environment. Takes NOTIFY_SOCKET and the WATCHDOG_* variables out of
   * `env` either way: they are baton's, and a worker that inherited them would speak to
   * systemd in baton's name (each worker gets a NOTIFY_SOCKET of baton's instead).
   */
  static fromEnv(env: NodeJS.ProcessEnv, pid = process.pid): { notifier: SystemdNotifier | null; watchdogMs: number | null } {
    const { NOTIFY_SOCKET: address, WATCHDOG_USEC: usec, WATCHDOG_PID: forPid } = env;
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    if (!address) return { notifier: null, watchdogMs: null };
    const watchdog = usec && /^\d+$/.test(usec) && (forPid === undefined || forPid === String(pid)) ? Number(usec) / 1000 : null;
    return { notifier: new SystemdNotifier(address), watchdogMs: watchdog };
  }

  /** Follow the supervisor: its handoffs, rejected reloads and stop. */
  follow(sup: Supervisor, watchdogMs: number | null): void {
    // The supervisor records which generation serves just after the handoff's last event.
    sup.events.on('handoff', (rec) => this.handoff(rec, (then) => setImmediate(() => then(sup.status()))));
    // An automatic rollback is news for `systemctl status`: said with its reason.
    sup.events.on('rollback', (rec, automatic) => {
      if (automatic)
        setImmediate(() => this.send(`STATUS=${statusLine(sup.status(), `rolled back to generation ${rec.to}: ${rec.reason ?? rec.error ?? 'probation'}`)}`));
    });
    sup.events.on('reload-rejected', (message) => {
      // systemd waits for RELOADING=1 after its reload signal: say it, and that it is over.
      this.send(reloadingNow());
      this.send(`READY=1\nSTATUS=${statusLine(sup.status(), message)}`);
    });
    sup.events.on('stopping', () => this.send('STOPPING=1\nSTATUS=stopping: draining every generation'));
    if (watchdogMs !== null) setInterval(() => this.send('WATCHDOG=1'), Math.max(1, watchdogMs / 2)).unref();
  }

  /**
   * Several services: READY=1 once every one serves. Reloads are told as busy spells: the
   * first reload to begin (of them all, as SIGHUP asks, or of one service through the
   * control socket) says RELOADING=1, the last to end READY=1, whatever each one's result;
   * systemd has one reload state per unit, not one per service.
   */
  followGroup(group: ServiceGroup, watchdogMs: number | null): void {
    const line = (): string => group.services.map((s) => `${s.name}: ${statusLine(s.status())}`).join(' | ');
    const busy = new Set<string>();
    const begin = (key: string, status: string): void => {
      if (busy.size === 0) this.send(`${reloadingNow()}\nSTATUS=${status}`);
      busy.add(key);
    };
    const end = (key: string): void => {
      if (busy.delete(key) && busy.size === 0) setImmediate(() => this.send(`READY=1\nSTATUS=${line()}`));
    };
    group.events.on('started', () => this.send(`READY=1\nSTATUS=${line()}`));
    group.events.on('reloading', () => begin('*', `reloading ${group.services.map((s) => s.name).join(', ')}`));
    group.events.on('reloaded', () => end('*'));
    for (const s of group.services) {
      s.events.on('handoff', (rec) => {
        if (rec.trigger === 'start') return;
        const key = `${s.name}#${rec.id}`;
        if (rec.state === 'done' || rec.state === 'failed') end(key);
        else if (!busy.has(key)) begin(key, `reloading ${s.name}: generation ${rec.from ?? '-'} -> ${rec.to}`);
      });
      // A reload refused before it began (its config invalid): over at once, with the reason.
      s.events.on('reload-rejected', (message) => {
        if (busy.size > 0) return;
        this.send(reloadingNow());
        this.send(`READY=1\nSTATUS=${s.name}: ${statusLine(s.status(), message)}`);
      });
    }
    group.events.on('stopping', () => this.send('STOPPING=1\nSTATUS=stopping: draining every generation'));
    if (watchdogMs !== null) setInterval(() => this.send('WATCHDOG=1'), Math.max(1, watchdogMs / 2)).unref();
  }

  private handoff(rec: HandoffRecord, withStatus: (then: (s: StatusReport) => void) => void): void {
    const over = rec.state === 'done' || rec.state === 'failed';
    if (rec.trigger === 'start') {
      if (rec.state === 'done') withStatus((s) => this.send(`READY=1\nSTATUS=${statusLine(s)}`));
      return;
    }
    if (!this.reloading.has(rec.id) && !over) {
      this.reloading.add(rec.id);
      this.send(`${reloadingNow()}\nSTATUS=reloading: generation ${rec.from ?? '-'} -> ${rec.to}`);
    } else if (over && this.reloading.delete(rec.id)) {
      const note = rec.state === 'failed' ? `reload #${rec.id} failed: ${rec.error ?? 'unknown error'}` : undefined;
      withStatus((s) => this.send(`READY=1\nSTATUS=${statusLine(s, note)}`));
    }
  }

  send(state: string): void {
    try {
      sendDatagram(this.address, state);
    } catch (e) {
      // systemd gone or its queue full: nothing to do but say so, once.
      if (!this.warned) log.warn(`cannot notify systemd at ${this.address}: ${(e as Error).message}`);
      this.warned = true;
    }
  }
}

/** RELOADING=1 must carry CLOCK_MONOTONIC in µs; libuv's hrtime reads that very clock. */
function reloadingNow(): string {
  return `RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`;
}

/** One line for `systemctl status`: what serves, what drains, and the last reload. */
export function statusLine(s: StatusReport, note?: string): string {
  const g = s.generations.find((x) => x.number === s.serving);
  const parts = [g ? `serving generation ${g.number} (${g.ready}/${g.target} ready)` : 'no generation serving'];
  if (s.draining) parts.push(`${s.draining} draining`);
  const last = s.history.at(-1);
  if (note) parts.push(note);
  else if (last && last.trigger !== 'start')
    parts.push(
      `reload #${last.id} ${last.state}${last.totalMs !== null ? ` in ${last.totalMs} ms` : ''}${last.state === 'failed' ? `: ${last.error ?? 'unknown error'}` : ''}`,
    );
  return parts.join('; ').replace(/\n/g, ' ');
}
