// Several services under one baton (a config file's `services`): each its own Supervisor
// with its own listeners, command, workers, timeouts and generations, so a reload, a scale or
// a failure of one never touches another. What is process-wide lives here: the one control
// socket, which routes each request to the service it names; a stop, which stops them all.

import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import type { ControlRequest } from '../common/protocol.js';
import { VERSION } from '../common/version.js';
import { ControlError, closeControl, prepareControlPath, REPLIED, serveControl } from '../control/control.js';
import { log, ring } from '../log/log.js';
import { type LogClient, serveLogs } from '../log/ring.js';
import { type InheritedSocket, releaseUnused } from '../os/activation.js';
import type { HandoffRecord, HandoffTrigger } from './handoff.js';
import type { StatusReport, Supervisor } from './supervisor.js';
import { TakeoverHost } from './takeover.js';

export interface GroupStatus {
  name: string;
  pid: number;
  version: string;
  rssBytes: number;
  uptimeMs: number;
  control: string;
  services: StatusReport[];
}

/** What a group shows a supervisor upgrade (upgrade/upgrade.ts) of what its services share, in the old image. */
export interface GroupInternals {
  control: Server | null;
  controlPath: string;
  startedAt: number;
  /** Why no upgrade may start now (stopping, a takeover), or null. */
  busy: string | null;
}

/** A supervisor upgrade of every service at once, given by the layer above (upgrade/upgrade.ts); never resolves. */
export type GroupUpgrader = (
  group: ServiceGroup,
  req: Extract<ControlRequest, { cmd: 'upgrade' }>,
  emit: (state: string, message: string) => void,
  conn: Socket | null,
) => Promise<never>;

export interface GroupEvents {
  /** Every service's generation 1 serves. */
  started: [];
  /** reloadAll began, and ended (each service's result). */
  reloading: [];
  reloaded: [GroupReload];
  stopping: [];
}

/** A reload of several services: one record per service, in the group's order. */
export type GroupReload = { service: string; record: HandoffRecord | null; error: string | null }[];

export class ServiceGroup {
  private control: Server | null = null;
  private stopping: Promise<void> | null = null;
  /** Set again by an upgrade: the group's start, not this image's. */
  private startedAt = Date.now();
  /** Set by the command line (upgrade/upgrade.ts). */
  upgrader: GroupUpgrader | null = null;
  readonly stopped: Promise<void>;
  readonly events = new EventEmitter<GroupEvents>();
  /**
   * A new baton taking every service's sockets over. They go out named `service/listener`, so
   * that the new baton's services take them by address, each its own.
   */
  private readonly takeover = new TakeoverHost({
    listeners: () => this.services.flatMap((s) => s.listenerList.map((l) => ({ ...l, name: `${s.name}/${l.name}` }))),
    stopping: () => this.stopping !== null,
    handOver: async () => {
      for (const s of this.services) s.disown();
      await this.stop();
      await this.closeControl();
    },
  });

  constructor(
    readonly name: string,
    private controlPath: string,
    readonly services: readonly Supervisor[],
    /** Sockets from socket activation or a takeover, shared out among the services by address. */
    private readonly inherited: InheritedSocket[] = [],
  ) {
    this.stopped = Promise.all(services.map((s) => s.stopped)).then(() => undefined);
  }

  /**
   * Every service's listeners first (a port conflict fails before any worker runs), then the
   * control socket, then every generation 1 side by side. If one does not start, the others
   * are stopped too: a half-started set of services is not what the config file asked for.
   */
  async start(): Promise<void> {
    await prepareControlPath(this.controlPath);
    const opened: Supervisor[] = [];
    try {
      for (const s of this.services) {
        s.open();
        opened.push(s);
      }
      releaseUnused(this.inherited);
      this.control = await serveControl(this.controlPath, (req, emit, client, conn) => this.handle(req, emit, client, conn));
    } catch (e) {
      for (const s of opened) s.close();
      throw e;
    }
    log.info('control socket ready', { path: this.controlPath, services: this.names });
    const results = await Promise.allSettled(this.services.map((s) => s.startFirst()));
    const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`service ${this.services[i]!.name}: ${(r.reason as Error).message}`] : []));
    if (failed.length) {
      await this.stop();
      throw new Error(failed.join('\n'));
    }
    this.events.emit('started');
  }

  service(name: string): Supervisor {
    const s = this.services.find((x) => x.name === name);
    if (!s) throw new Error(`no service '${name}': this baton runs ${this.services.map((x) => `'${x.name}'`).join(', ')}`);
    return s;
  }

  private get names(): string {
    return this.services.map((s) => s.name).join(', ');
  }

  /**
   * Reload every service, each on its own (SIGHUP, `baton reload` without a name). Resolves
   * once all are over; one failing leaves the others' results as they are.
   */
  async reloadAll(
    trigger: HandoffTrigger,
    watch?: (service: string, state: string, message: string) => void,
    env?: Record<string, string>,
  ): Promise<GroupReload> {
    this.events.emit('reloading');
    const results = await Promise.all(
      this.services.map(async (s) => {
        try {
          const record = await s.reload({ trigger, env, watch: watch && ((state, message) => watch(s.name, state, message)) });
          return { service: s.name, record, error: record.state === 'failed' ? record.error : null };
        } catch (e) {
          return { service: s.name, record: null, error: (e as Error).message };
        }
      }),
    );
    this.events.emit('reloaded', results);
    return results;
  }

  /** A request for one service, answered by it; an error names it. */
  private async routed(name: string, req: ControlRequest, emit: (state: string, message: string) => void, client: LogClient, conn: Socket): Promise<unknown> {
    const s = this.service(name);
    try {
      return await s.handle(req, emit, client, conn);
    } catch (e) {
      if (e instanceof Error) e.message = `service ${name}: ${e.message}`;
      throw e;
    }
  }

  private async handle(req: ControlRequest, emit: (state: string, message: string) => void, client: LogClient, conn: Socket): Promise<unknown> {
    switch (req.cmd) {
      case 'status':
        return req.service === undefined ? this.status() : this.service(req.service).status();
      case 'reload': {
        if (req.service !== undefined) return this.routed(req.service, req, emit, client, conn);
        if (req.argv) throw new Error(`a new command line is for one service: name it (${this.names})`);
        const results = await this.reloadAll('reload', (service, state, message) => emit(state, `${service}: ${message}`), req.env);
        const failed = results.filter((r) => r.error !== null);
        if (failed.length)
          throw new ControlError(`reload failed for ${failed.map((r) => `${r.service} (${r.error})`).join(', ')}; the others reloaded`, results);
        return results;
      }
      case 'scale':
        if (req.service === undefined) throw new Error(`name the service to scale: ${this.names}`);
        return this.routed(req.service, req, emit, client, conn);
      case 'rollback':
        if (req.service === undefined) throw new Error(`name the service to roll back: ${this.names}`);
        return this.routed(req.service, req, emit, client, conn);
      case 'logs':
        if (req.service !== undefined) this.service(req.service);
        return serveLogs(ring, req, client, this.stopped);
      case 'stop':
        await this.stop();
        return { stopped: true };
      case 'takeover':
        this.takeover.offer(conn);
        return REPLIED;
      case 'takeover-commit':
        return this.takeover.commit(conn);
      case 'upgrade':
        if (!this.upgrader) throw new ControlError('upgrade is not available in this process');
        if (req.dropStandby) await Promise.all(this.services.map((s) => s.dropStandbyForUpgrade(emit)));
        return this.upgrader(this, req, emit, conn);
    }
  }

  /** Supervisor upgrade, old image (src/upgrade/upgrade.ts): what the services share. */
  get internals(): GroupInternals {
    return {
      control: this.control,
      controlPath: this.controlPath,
      startedAt: this.startedAt,
      busy: this.stopping ? 'the supervisor is stopping' : this.takeover.inProgress ? 'a takeover is in progress' : null,
    };
  }

  /** Supervisor upgrade, new image: every service resumed (Supervisor.resume); serve the control socket carried over. */
  async resume(controlFd: number, startedAt: number): Promise<void> {
    this.startedAt = startedAt;
    this.control = await serveControl({ fd: controlFd }, (req, emit, client, conn) => this.handle(req, emit, client, conn));
    // Bound by an earlier image, the path is not unlinked by close(): stop removes it as start's would.
    const path = this.controlPath;
    this.control.once('close', () => rmSync(path, { force: true }));
    log.info('control socket taken over', { path, services: this.names });
  }

  /** After a takeover: the control socket was renamed onto the service's own path. */
  controlMoved(path: string): void {
    this.controlPath = path;
  }

  /** Every service drains and stops, together. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.events.emit('stopping');
      await Promise.all(this.services.map((s) => s.stop()));
    })();
    return this.stopping;
  }

  kill(): void {
    for (const s of this.services) s.kill();
  }

  async closeControl(): Promise<void> {
    const c = this.control;
    this.control = null;
    await closeControl(c);
  }

  status(): GroupStatus {
    return {
      name: this.name,
      pid: process.pid,
      version: VERSION,
      rssBytes: process.memoryUsage.rss(),
      uptimeMs: Date.now() - this.startedAt,
      control: this.controlPath,
      services: this.services.map((s) => s.status()),
    };
  }
}
