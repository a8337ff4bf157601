// The long-lived baton process: owns the listeners, runs one handoff at a time (coalescing
// the reload requests that arrive meanwhile), tracks the generations still draining,
// answers the control socket, and stops gracefully.

import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { describe, type Listener, type ListenSpec } from '../common/address.js';
import { formatEndings } from '../common/connections.js';
import type { ConnEndings, ConnKind, ControlRequest, Distribution, HandoffMode, ReadyMode, Warmup } from '../common/protocol.js';
import { VERSION } from '../common/version.js';
import { ControlError, closeControl, prepareControlPath, REPLIED, serveControl } from '../control/control.js';
import { type Log, log as processLog, ring, serviceLog } from '../log/log.js';
import { type LogClient, serveLogs } from '../log/ring.js';
import type { InheritedSocket } from '../os/activation.js';
import { rssBytes } from '../os/proc.js';
import { Generation, type WorkerTemplate } from './generation.js';
import { type HandoffRecord, type HandoffTrigger, newRecord, runHandoff, runRollback } from './handoff.js';
import { reportDrain } from './inflight.js';
import { closeListeners, inodeOf, openListeners } from './listeners.js';
import { type ProbationRules, watchProbation } from './probation.js';
import { RoundRobin } from './roundrobin.js';
import { TakeoverHost } from './takeover.js';
import type { Worker } from './worker.js';

export interface ServiceOptions {
  name: string;
  controlPath: string;
  /** One of several services in one baton (services.ts): no control socket of its own, its name on every log line. */
  grouped?: boolean;
  listen: ListenSpec[];
  argv: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  /**
   * Variables set by `--env` / `--env-file`: at start, then merged with each reload's, over
   * `env` (which the config file may change at every reload). Kept only by a reload that succeeds.
   */
  setEnv?: Record<string, string>;
  workers: number;
  backlog: number;
  readyMode: ReadyMode;
  distribution: Distribution;
  handoff: HandoffMode;
  /** Copies of the app per worker process, as worker_threads (Node runtime only). */
  threads: number;
  readyTimeoutMs: number;
  drainTimeoutMs: number;
  /** Warm-up: requests each new Node worker makes to its own server before it is ready (no paths or 0 requests: none). */
  warmupPaths?: string[];
  warmupRequests?: number;
  warmupTimeMs?: number;
  /** A draining Node worker tells its keep-alive connections to close over this long (0: all at once). */
  drainSpreadMs?: number;
  /** Rolling reloads: at most this many extra workers at a time (null: all at once). */
  maxSurge: number | null;
  /** A reload waits while this many old generations are still draining. */
  maxDraining: number;
  /** After a handoff the old generation stays this long as a warm standby for `baton rollback` (0: it exits). */
  keepPreviousMs: number;
  /** After a handoff, watch the new generation this long and roll back on a death or too many 5xx (0: no probation). */
  probationMs: number;
  /** Highest share of 5xx answers during probation (0-1). */
  maxErrorRate: number;
  /** Answers needed before the error rate counts. */
  minRequests: number;
  /** Asked at each reload for settings that changed (the config file, read again); throws if invalid. */
  configure?: () => Promise<Partial<Reconfigurable>>;
  /** How workers are launched beyond their command line: NOTIFY_SOCKET, drain signal, user. */
  launch?: Pick<WorkerTemplate, 'notify' | 'drainSignal' | 'credentials'>;
  /** Why the workers' user could not run a command (one line), or null: asked before a reload to a new one starts anything. */
  reach?: ((argv: readonly string[], cwd: string, env: NodeJS.ProcessEnv) => string | null) | null;
  /** Sockets baton was handed by systemd socket activation, used for matching `listen` entries. */
  inherited?: InheritedSocket[];
  /** A stop kills whatever still runs after this long, drain deadlines notwithstanding (container grace period). */
  stopTimeoutMs?: number | null;
  /** A serving worker whose RSS goes over this is replaced: a fresh one first, then it drains (null: no limit). */
  maxMemoryBytes?: number | null;
}

/** What a reload may change: it applies to the new generation, and stays once that one serves. */
export type Reconfigurable = Pick<
  ServiceOptions,
  | 'argv'
  | 'cwd'
  | 'env'
  | 'workers'
  | 'readyMode'
  | 'readyTimeoutMs'
  | 'drainTimeoutMs'
  | 'warmupPaths'
  | 'warmupRequests'
  | 'warmupTimeMs'
  | 'drainSpreadMs'
  | 'maxSurge'
  | 'maxDraining'
  | 'maxMemoryBytes'
>;

/** What the supervisor tells observers (metrics): each generation made, each handoff step, refused reloads. */
/** What the supervisor shows a supervisor upgrade (upgrade/upgrade.ts) of itself, in the old image. */
export interface SupervisorInternals {
  options: ServiceOptions;
  listeners: readonly Listener[];
  control: Server | null;
  generations: readonly Generation[];
  serving: Generation | null;
  history: readonly HandoffRecord[];
  nextGeneration: number;
  nextHandoff: number;
  startedAt: number;
  roundRobin: RoundRobin | null;
  /** Why no upgrade may start now (stopping, a reload running or queued), or null. */
  busy: string | null;
  stopping: boolean;
}

/** A generation the old image ran, as far as the supervisor reads it (upgrade/state.ts has the whole record). */
export interface ResumedGeneration {
  number: number;
  argv: string[];
  cwd: string;
}

/** What the supervisor takes over in the new image, instead of start(). */
export interface Resumed {
  listeners: Listener[];
  /** Its own control socket, already bound; null for one of a group's services (the group serves it). */
  controlFd: number | null;
  startedAt: number;
  nextGeneration: number;
  nextHandoff: number;
  history: HandoffRecord[];
  serving: number | null;
  generations: ResumedGeneration[];
  /** Fill a generation the supervisor made for `s` (and tracks) with its adopted workers. */
  adopt(g: Generation, s: ResumedGeneration): void;
}

/**
 * A supervisor upgrade, given by the layer above (upgrade/upgrade.ts): it replaces this
 * process's image, so it never resolves; it throws when the upgrade is refused or fails.
 */
export type Upgrader = (
  sup: Supervisor,
  req: Extract<ControlRequest, { cmd: 'upgrade' }>,
  emit: (state: string, message: string) => void,
  conn: Socket | null,
) => Promise<never>;

export interface SupervisorEvents {
  generation: [Generation];
  handoff: [HandoffRecord, string];
  'reload-rejected': [string];
  /** A worker over --max-memory was replaced: its fresh copy is ready, it drains. */
  'memory-replaced': [Generation, Worker];
  /** A rollback handoff ended; `automatic`: probation or a canary did it, not a person. */
  rollback: [HandoffRecord, boolean];
  stopping: [];
  /** No handoff runs and none is queued. */
  idle: [];
}

/** Reload requests waiting for their handoff; those arriving during one are merged into the next. */
interface Ticket {
  argv: string[] | null;
  cwd: string | null;
  /** The requests' --env, merged in the order they came. */
  setEnv: Record<string, string>;
  settings: Partial<Reconfigurable> & Pick<ServiceOptions, 'setEnv'>;
  trigger: HandoffTrigger;
  /** This reload's probation and canary, over the service's. */
  probation: Partial<ProbationRules> & { canary?: number };
  /** A rollback with no standby: why. */
  reason?: string;
  waiters: Array<{ resolve(r: HandoffRecord): void; reject(e: Error): void }>;
  watchers: Set<(state: string, message: string) => void>;
}

const HISTORY = 50;
/** Quick deaths in a row after which a worker is reported as crash-looping. */
const CRASH_LOOP = 3;
const TRANSFER_TIMEOUT_MS = 5000;
/** How often each serving worker's RSS is compared with --max-memory. */
const MEMORY_CHECK_MS = 1000;
/** How long a canary is watched when neither the reload nor the service sets --probation. */
const CANARY_PROBATION_MS = 30_000;
export const PRELOAD_URL = new URL('../runtime/preload.js', import.meta.url).href;

export class Supervisor {
  private listeners: Listener[] = [];
  private control: Server | null = null;
  private roundRobin: RoundRobin | null = null;
  /** A new baton that holds our sockets and has not committed yet. */
  private readonly takeover = new TakeoverHost({ listeners: () => this.listeners, stopping: () => this.stopping !== null, handOver: () => this.handOver() });
  /** Set by the command line (upgrade/upgrade.ts); a supervisor made in a test may have none. */
  upgrader: Upgrader | null = null;
  /** Every generation not yet exited, oldest first. */
  private generations: Generation[] = [];
  private serving: Generation | null = null;
  private current: HandoffRecord | null = null;
  private pending: Ticket | null = null;
  private readonly history: HandoffRecord[] = [];
  /** The previous generation kept alive, not accepting, for a rollback; with the settings it ran with. */
  private standby: { g: Generation; opts: ServiceOptions; until: number; timer: NodeJS.Timeout | null } | null = null;
  /** What the generation before the serving one ran, for a rollback with no standby. */
  private previous: { argv: string[]; cwd: string; opts: ServiceOptions } | null = null;
  /** Ends the running probation (or canary) with a reason: `baton rollback` during one. */
  private abortProbation: ((reason: string) => void) | null = null;
  private nextGeneration = 1;
  private nextHandoff = 1;
  private stopping: Promise<void> | null = null;
  private memoryGuard: NodeJS.Timeout | null = null;
  /** A worker over --max-memory is being replaced: one at a time, so memory never doubles at once. */
  private replacing = false;
  /** Set again by an upgrade: the service's start, not this image's. */
  startedAt = Date.now();
  /** Resolves once a stop (signal, control request, failed start) has finished. */
  readonly stopped: Promise<void>;
  private markStopped!: () => void;
  readonly events = new EventEmitter<SupervisorEvents>();
  private readonly log: Log;
  /** For status: the variables whose value a generation changed from the one it replaced. */
  private readonly envChanged = new WeakMap<Generation, string[]>();

  constructor(private readonly opts: ServiceOptions) {
    this.stopped = new Promise((resolve) => (this.markStopped = resolve));
    this.log = opts.grouped ? serviceLog(opts.name) : processLog;
  }

  get name(): string {
    return this.opts.name;
  }

  get grouped(): boolean {
    return this.opts.grouped === true;
  }

  /** Open the listeners and the control socket, start generation 1. Throws if any of it fails. */
  async start(): Promise<void> {
    await prepareControlPath(this.opts.controlPath);
    this.open();
    try {
      this.control = await serveControl(this.opts.controlPath, (req, emit, client, conn) => this.handle(req, emit, client, conn));
    } catch (e) {
      this.close();
      throw e;
    }
    processLog.info('control socket ready', { path: this.opts.controlPath });
    await this.startFirst();
  }

  /** Open the listeners (and round-robin's accept loop on them). Throws, with nothing left open, if one cannot be had. */
  open(): void {
    this.listeners = openListeners(this.opts.listen, this.opts.backlog, this.opts.inherited, !this.grouped);
    for (const l of this.listeners) this.log.info(`listening on ${describe(l)}`, { name: l.name, fd: l.fd });
    this.startRoundRobin();
  }

  /** Give back what open() took, for a start that failed before any worker ran. */
  close(): void {
    this.roundRobin?.close();
    closeListeners(this.listeners);
  }

  /** Start generation 1 on the open listeners. Throws (the service stopped) if it does not get ready. */
  async startFirst(): Promise<void> {
    const rec = await this.reload({ argv: this.opts.argv, trigger: 'start' });
    if (rec.state !== 'done') {
      await this.stop();
      const out = rec.output.length ? `\n${rec.output.map((l) => `  | ${l}`).join('\n')}` : '';
      throw new Error(`generation 1 did not start: ${rec.error}${out}`);
    }
    this.guardMemory();
  }

  /** --max-memory: every second, the first serving worker over the limit is replaced (Generation.replace). */
  private guardMemory(): void {
    this.memoryGuard ??= setInterval(() => void this.checkMemory(), MEMORY_CHECK_MS).unref();
  }

  private async checkMemory(): Promise<void> {
    const max = this.opts.maxMemoryBytes ?? null;
    const g = this.serving;
    // A handoff replaces every worker anyway; a stop needs none.
    if (max === null || this.replacing || this.current || this.stopping || g?.state !== 'serving') return;
    const over = g.workers.map((w) => ({ w, rss: w.state === 'ready' ? (rssBytes(w.pid) ?? 0) : 0 })).find((x) => x.rss > max);
    if (!over) return;
    const { w, rss } = over;
    const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
    this.replacing = true;
    this.log.warn(`worker ${g.number}.${w.index} uses ${mib(rss)}, over --max-memory ${mib(max)}: replacing it (a fresh one first, then it drains)`, {
      pid: w.pid,
      rss,
    });
    try {
      if (await g.replace(w, this.opts.readyTimeoutMs)) {
        this.log.info(`worker ${g.number}.${w.index} replaced for memory; the old one drains`, { pid: w.pid });
        this.events.emit('memory-replaced', g, w);
      } else if (g.workers.includes(w)) {
        this.log.error(`worker ${g.number}.${w.index} could not be replaced: its fresh copy did not get ready; it serves on`, { pid: w.pid });
      }
    } finally {
      this.replacing = false;
    }
  }

  private startRoundRobin(): void {
    if (this.opts.distribution !== 'round-robin') return;
    // Adopted workers (supervisor upgrade) cannot be passed connections: see adopt.ts.
    this.roundRobin = new RoundRobin(() => this.generations.flatMap((g) => (g.accepting ? g.workers.filter((w) => w.state === 'ready' && !w.adopted) : [])));
    this.roundRobin.start(this.listeners, this.opts.backlog);
  }

  /** Supervisor upgrade, old image (src/upgrade/upgrade.ts): what is carried over to the new image. */
  get internals(): SupervisorInternals {
    return {
      options: this.opts,
      listeners: this.listeners,
      control: this.control,
      generations: this.generations,
      serving: this.serving,
      history: this.history,
      nextGeneration: this.nextGeneration,
      nextHandoff: this.nextHandoff,
      startedAt: this.startedAt,
      roundRobin: this.roundRobin,
      busy: this.stopping
        ? 'the supervisor is stopping'
        : this.current || this.pending
          ? 'a reload is in progress'
          : this.takeover.inProgress
            ? 'a takeover is in progress'
            : this.standbyBusy(),
      stopping: this.stopping !== null,
    };
  }

  /** Supervisor upgrade, new image (src/upgrade/upgrade.ts): take over what the old image ran, instead of start(). */
  async resume(r: Resumed): Promise<void> {
    this.listeners = r.listeners;
    for (const l of this.listeners) this.log.info(`listening on ${describe(l)} (taken over)`, { name: l.name, fd: l.fd });
    this.startedAt = r.startedAt;
    this.nextGeneration = r.nextGeneration;
    this.nextHandoff = r.nextHandoff;
    this.history.push(...r.history);
    for (const s of r.generations) {
      const g = new Generation(s.number, s.argv, s.cwd, this.template());
      this.track(g);
      r.adopt(g, s);
    }
    this.serving = this.generations.find((g) => g.number === r.serving) ?? null;
    // Slots whose worker died before the exec (or during it) get a new one now.
    if (this.serving?.state === 'serving') this.serving.resize(this.opts.workers);
    this.startRoundRobin();
    this.guardMemory();
    if (r.controlFd === null) return; // one of a group's services: the group serves control
    this.control = await serveControl({ fd: r.controlFd }, (req, emit, client, conn) => this.handle(req, emit, client, conn));
    // Bound by an earlier image, the path is not unlinked by close(): stop removes it as start's would.
    const path = this.opts.controlPath;
    this.control.once('close', () => rmSync(path, { force: true }));
  }

  get listenerList(): readonly Listener[] {
    return this.listeners;
  }

  /**
   * Ask for a handoff. Resolves with its record (state done or failed); rejects when stopping,
   * or when the settings read for it are invalid (nothing is started then).
   */
  async reload(req: {
    argv?: string[] | null;
    cwd?: string | null;
    env?: Record<string, string>;
    trigger: HandoffTrigger;
    watch?: (state: string, message: string) => void;
    probation?: Partial<ProbationRules> & { canary?: number };
  }): Promise<HandoffRecord> {
    if (req.probation?.canary !== undefined && this.opts.handoff === 'exclusive') {
      throw new Error(
        '--canary needs --handoff overlap: a canary accepts next to the serving generation, and exclusive mode never lets two versions accept at once',
      );
    }
    const refuse = (why: string): never => {
      const message = `reload failed: ${why}`;
      this.log.error(message);
      this.events.emit('reload-rejected', message);
      throw new Error(message);
    };
    let settings: Partial<Reconfigurable> = {};
    if (req.trigger !== 'start' && this.opts.configure) settings = await this.opts.configure().catch((e: Error) => refuse(e.message));
    if (this.stopping) throw new Error('the supervisor is stopping');
    // A new command (or working directory) that --user's user cannot reach: refused before anything starts.
    const argv = req.argv ?? settings.argv;
    const unreachable = argv && this.opts.reach?.(argv, (req.argv ? req.cwd : settings.cwd) ?? this.opts.cwd, settings.env ?? this.opts.env);
    if (unreachable) refuse(unreachable);
    const ticket: Ticket = this.pending ?? {
      argv: null,
      cwd: null,
      setEnv: {},
      settings,
      trigger: req.trigger,
      probation: {},
      waiters: [],
      watchers: new Set(),
    };
    ticket.settings = settings;
    Object.assign(ticket.setEnv, req.env);
    if (req.probation) ticket.probation = req.probation;
    if (req.argv) {
      ticket.argv = req.argv;
      ticket.cwd = req.cwd ?? null;
    }
    if (req.watch) ticket.watchers.add(req.watch);
    const done = new Promise<HandoffRecord>((resolve, reject) => ticket.waiters.push({ resolve, reject }));
    if (this.current) {
      if (!this.pending) this.log.info('reload requested during a handoff: queued, merged with any others', { during: this.current.id });
      this.pending = ticket;
      // Said at once, so the caller knows its request is in (a storm of them is merged).
      req.watch?.('queued', `handoff ${this.current.id} is running: queued, merged with the ${ticket.waiters.length - 1} other request(s) made meanwhile`);
    } else void this.runTicket(ticket);
    return done;
  }

  private async runTicket(ticket: Ticket): Promise<void> {
    this.pending = null;
    const rec = await this.handoff(ticket);
    // A scale request that arrived during the handoff applies to the generation that serves now.
    if (this.serving && this.serving.state === 'serving' && this.serving.target !== this.opts.workers) this.serving.resize(this.opts.workers);
    this.current = null;
    for (const w of ticket.waiters) w.resolve(rec);
    this.next();
  }

  /** The next queued reload, if any. */
  private next(): void {
    const queued = this.pending as Ticket | null;
    if (!queued) return void this.events.emit('idle');
    if (this.stopping) for (const w of queued.waiters) w.reject(new Error('the supervisor is stopping'));
    else void this.runTicket(queued);
  }

  private async handoff(ticket: Ticket): Promise<HandoffRecord> {
    const old = this.serving;
    // This handoff's options: the reload's settings over the current ones, kept only if it succeeds.
    // A rollback's settings are the previous generation's whole, its --env variables included.
    const s = ticket.trigger === 'rollback' ? { ...ticket.settings } : { ...ticket.settings, setEnv: { ...this.opts.setEnv, ...ticket.setEnv } };
    const o: ServiceOptions = { ...this.opts, ...s };
    const rules: ProbationRules = { probationMs: o.probationMs, maxErrorRate: o.maxErrorRate, minRequests: o.minRequests, ...ticket.probation };
    const canary = ticket.probation.canary ?? null;
    // A canary is judged by probation's rules: by the service's, else for 30 s.
    if (canary !== null && rules.probationMs === 0) rules.probationMs = CANARY_PROBATION_MS;
    const probation = old !== null && rules.probationMs > 0;
    const argv = ticket.argv ?? s.argv ?? old?.argv ?? this.opts.argv;
    const cwd = ticket.argv ? (ticket.cwd ?? this.opts.cwd) : s.argv ? o.cwd : (old?.cwd ?? this.opts.cwd);
    const next = new Generation(this.nextGeneration++, argv, cwd, { ...this.template(o), stats: probation });
    this.track(next);
    if (old) this.envChanged.set(next, changedNames(old.env, next.env));
    const draining = (): Generation[] => this.generations.filter((g) => g.state === 'draining');
    const rec = newRecord(
      this.nextHandoff++,
      ticket.trigger,
      old?.number ?? null,
      next.number,
      argv,
      draining().length >= o.maxDraining ? 'waiting' : 'starting',
    );
    if (ticket.reason) rec.reason = ticket.reason;
    this.remember(rec);
    // A rollback needs the old generation alive: kept for --keep-previous, and at least through probation.
    // Only a new version is worth undoing: not a restart of the same one (upgrade --restart-workers).
    // Nor a rolling reload: it exists to keep no more than N + K workers alive at once.
    const rolling = o.maxSurge !== null && o.maxSurge < o.workers && canary === null;
    const keepOld =
      old !== null && !rolling && (ticket.trigger === 'reload' || ticket.trigger === 'signal') && (o.keepPreviousMs > 0 || probation) && this.canKeep(old);
    const said = this.onChange(ticket.watchers);
    const onChange = (r: HandoffRecord, message: string): void => {
      // On probation the new generation is the one that serves (status, /healthz, metrics).
      if (r.state === 'probation') this.serving = next;
      said(r, message);
    };
    await runHandoff(rec, {
      old,
      next,
      workers: o.workers,
      readyTimeoutMs: o.readyTimeoutMs,
      drainTimeoutMs: o.drainTimeoutMs,
      transferTimeoutMs: TRANSFER_TIMEOUT_MS,
      maxSurge: canary === null ? o.maxSurge : null,
      exclusive: o.handoff === 'exclusive',
      drainSlot: (async () => {
        while (draining().length >= o.maxDraining) await Promise.race(draining().map((g) => g.whenExited()));
      })(),
      keepOld,
      canary,
      probation: probation ? (g) => this.watch(g, rules) : null,
      onChange,
      // Logged by track(), like every worker's; here only shown to whoever asked for the reload.
      onHint: (_r, text) => {
        for (const w of ticket.watchers) w('hint', text);
      },
    });
    const prior = { argv: old?.argv ?? [], cwd: old?.cwd ?? this.opts.cwd, opts: { ...this.opts } };
    if (rec.state === 'done') {
      this.serving = next;
      Object.assign(this.opts, s);
      if (old) {
        this.previous = prior;
        this.keep(old.toStandby ? old : null, prior.opts);
      }
    } else if (rec.reason !== null && next.state === 'serving' && old) {
      // Probation failed: the new generation serves, the old one waits in standby (or is gone).
      this.serving = next;
      this.previous = prior;
      this.keep(old.toStandby ? old : null, prior.opts);
      if (!this.stopping) await this.rollBack(`probation of generation ${next.number}: ${rec.reason}`, true, ticket.watchers);
    } else if (rec.reason !== null) {
      this.events.emit('rollback', rec, true); // a canary dropped
    }
    return rec;
  }

  private remember(rec: HandoffRecord): void {
    this.current = rec;
    this.history.push(rec);
    if (this.history.length > HISTORY) this.history.shift();
  }

  private onChange(watchers: Iterable<(state: string, message: string) => void>): (r: HandoffRecord, message: string) => void {
    return (r, message) => {
      (r.state === 'failed' ? this.log.error : this.log.info)(`handoff ${r.id}: ${message}`, { state: r.state });
      if (r.state === 'failed' && r.output.length) for (const l of r.output) this.log.error(`  | ${l}`);
      for (const w of watchers) w(r.state, message);
      this.events.emit('handoff', r, message);
    };
  }

  /** Only baton's runtime can stop accepting and start again; UDP sockets stop being read for good. */
  private canKeep(g: Generation): boolean {
    return g.workers.some((w) => w.canStandby) && !this.listeners.some((l) => l.kind === 'udp');
  }

  /** `g` is the standby from now on (null: none); the one it replaces leaves. Timed by --keep-previous. */
  private keep(g: Generation | null, opts: ServiceOptions): void {
    const was = this.standby;
    if (was && was.g !== g) {
      if (was.timer) clearTimeout(was.timer);
      this.log.info(`generation ${was.g.number} leaves standby: a newer generation replaces it`);
      void was.g.drain(this.opts.drainTimeoutMs);
    }
    this.standby = null;
    if (!g || this.stopping) return;
    const ms = this.opts.keepPreviousMs;
    if (ms <= 0) {
      // Kept only through probation.
      void g.drain(this.opts.drainTimeoutMs);
      return;
    }
    const standby = { g, opts, until: Date.now() + ms, timer: null as NodeJS.Timeout | null };
    standby.timer = setTimeout(() => {
      if (this.standby !== standby) return;
      this.standby = null;
      this.log.info(`generation ${g.number} leaves standby: --keep-previous (${ms} ms) is over`);
      void g.drain(this.opts.drainTimeoutMs);
    }, ms);
    standby.timer.unref();
    this.standby = standby;
    void g.whenExited().then(() => {
      if (this.standby !== standby) return;
      if (standby.timer) clearTimeout(standby.timer);
      this.standby = null;
    });
  }

  /** Why an upgrade cannot run now because of the standby, or null. */
  private standbyBusy(): string | null {
    const s = this.standby;
    if (!s) return null;
    const left = Math.max(0, Math.round((s.until - Date.now()) / 1000));
    return `generation ${s.g.number} is kept as a warm standby for rollback (${left} s left) and a supervisor upgrade does not carry it: retry with --drop-standby to end it first, or once it has ended`;
  }

  /** `baton upgrade --drop-standby`: the standby ends first, said as a progress step; resolves once it has exited. */
  async dropStandbyForUpgrade(emit: (state: string, message: string) => void): Promise<void> {
    const g = this.standby?.g;
    if (!g) return;
    emit('standby', `${this.grouped ? `${this.name}: ` : ''}generation ${g.number} leaves standby: an upgrade does not carry it`);
    this.dropStandby('a supervisor upgrade was asked for with --drop-standby');
    await g.whenExited();
  }

  /** End the standby now (its processes leave at once: they hold no connection). */
  dropStandby(why: string): void {
    const s = this.standby;
    if (!s) return;
    if (s.timer) clearTimeout(s.timer);
    this.standby = null;
    this.log.info(`generation ${s.g.number} leaves standby: ${why}`);
    void s.g.drain(this.opts.drainTimeoutMs);
  }

  /** Probation of a serving generation; `baton rollback` meanwhile ends it with its reason. */
  private async watch(g: Generation, rules: ProbationRules): Promise<string | null> {
    const p = watchProbation(g, rules);
    this.abortProbation = p.abort;
    try {
      return await p.verdict;
    } finally {
      this.abortProbation = null;
    }
  }

  /**
   * Undo the last handoff. The standby serves again at once and the serving generation
   * drains; with no standby, a reload to the previous command line, env and cwd.
   */
  async rollback(reason: string, watch?: (state: string, message: string) => void): Promise<HandoffRecord> {
    if (this.stopping) throw new Error('the supervisor is stopping');
    if (this.current) {
      if (this.abortProbation) {
        // The handoff on probation (or a canary) is the one undone; its rollback is this request's answer.
        const done = new Promise<HandoffRecord>((resolve) => {
          const on = (rec: HandoffRecord): void => {
            this.events.off('rollback', on);
            resolve(rec);
          };
          this.events.on('rollback', on);
        });
        this.abortProbation(reason);
        return done;
      }
      throw new Error(`handoff ${this.current.id} is ${this.current.state}: roll back once it is over`);
    }
    return this.rollBack(reason, false, watch ? [watch] : []);
  }

  /** The rollback handoff itself; `this.current` is set meanwhile. */
  private async rollBack(reason: string, automatic: boolean, watchers: Iterable<(state: string, message: string) => void>): Promise<HandoffRecord> {
    const requestedAt = Date.now();
    const wasCurrent = this.current;
    try {
      return await this.undo(reason, automatic, watchers, requestedAt);
    } finally {
      // Idle before: this request ran the rollback, and runs what was queued meanwhile.
      if (wasCurrent === null) {
        this.current = null;
        this.next();
      }
    }
  }

  private async undo(
    reason: string,
    automatic: boolean,
    watchers: Iterable<(state: string, message: string) => void>,
    requestedAt: number,
  ): Promise<HandoffRecord> {
    const standby = this.standby;
    const current = this.serving;
    if (!standby?.g.resumable) {
      const prev = this.previous;
      if (!prev) throw new Error('nothing to roll back to: this service has had one generation only');
      this.log.warn(`rollback (${reason}): no standby, starting the previous command line again`);
      const { argv, cwd, env, setEnv, workers } = prev.opts;
      const ticket: Ticket = {
        argv: prev.argv,
        cwd: prev.cwd,
        setEnv: {},
        settings: { argv, cwd, env, setEnv: setEnv ?? {}, workers },
        trigger: 'rollback',
        probation: { probationMs: 0 },
        reason,
        waiters: [],
        watchers: new Set(watchers),
      };
      const rec = await this.handoff(ticket);
      this.events.emit('rollback', rec, automatic);
      return rec;
    }
    if (standby.timer) clearTimeout(standby.timer);
    this.standby = null;
    const rec = newRecord(this.nextHandoff++, 'rollback', current?.number ?? null, standby.g.number, standby.g.argv, 'resuming', requestedAt);
    rec.reason = reason;
    this.log.warn(`rollback to generation ${standby.g.number}: ${reason}`);
    this.remember(rec);
    await runRollback(rec, {
      standby: standby.g,
      current,
      drainTimeoutMs: this.opts.drainTimeoutMs,
      transferTimeoutMs: TRANSFER_TIMEOUT_MS,
      exclusive: this.opts.handoff === 'exclusive',
      onChange: this.onChange(watchers),
    });
    if (rec.state === 'done') {
      if (current) this.previous = { argv: current.argv, cwd: current.cwd, opts: { ...this.opts } };
      this.serving = standby.g;
      Object.assign(this.opts, { argv: standby.opts.argv, cwd: standby.opts.cwd, env: standby.opts.env, setEnv: standby.opts.setEnv });
      // The size asked for last (baton scale) applies to whatever serves, the standby included.
      if (standby.g.target !== this.opts.workers) standby.g.resize(this.opts.workers);
    }
    this.events.emit('rollback', rec, automatic);
    return rec;
  }

  private template(o: ServiceOptions = this.opts): WorkerTemplate {
    return {
      env: { ...o.env, ...o.setEnv },
      listeners: this.listeners,
      backlog: o.backlog,
      readyMode: o.readyMode,
      distribution: o.distribution,
      handoff: o.handoff,
      threads: o.threads,
      drainTimeoutMs: o.drainTimeoutMs,
      warmup: warmupOf(o),
      drainSpreadMs: o.drainSpreadMs ?? 0,
      preloadUrl: PRELOAD_URL,
      ...this.opts.launch,
      onOutput: (w, line, stream) => this.log.worker(w.generation, w.index, line, stream),
    };
  }

  private track(g: Generation): void {
    this.generations.push(g);
    this.events.emit('generation', g);
    g.on('worker-start', (w: Worker) => {
      this.log.info(`worker ${g.number}.${w.index} ${w.adopted ? 'adopted' : 'started'}`, { pid: w.pid });
      w.once('ready', () => {
        const warm = w.warmup ? { warmupRequests: w.warmup.requests, warmupFailed: w.warmup.failed, warmupMs: w.warmup.ms } : {};
        this.log.info(`worker ${g.number}.${w.index} ready`, { pid: w.pid, ms: (w.readyAt ?? 0) - w.startedAt, ...warm });
        this.roundRobin?.flush();
      });
      w.once('draining', () => this.log.info(`worker ${g.number}.${w.index} draining`, { pid: w.pid }));
      w.on('hint', (text: string) => this.log.warn(text, { pid: w.pid }));
    });
    g.on('worker-exit', (w: Worker, unexpected: boolean) => {
      this.log.info(`worker ${g.number}.${w.index} exited`, { pid: w.pid, code: w.exit?.code, signal: w.exit?.signal });
      if (w.killedAtDeadline) {
        this.log.warn(`worker ${g.number}.${w.index} killed at the drain deadline`, { pid: w.pid, cut: w.cut });
      } else if (w.cut > 0) {
        this.log.warn(`worker ${g.number}.${w.index} cut ${w.cut} connection(s) at the drain deadline`, { pid: w.pid });
      } else if (unexpected) {
        this.log.warn(`worker ${g.number}.${w.index} ${w.describeExit()} while serving`, { pid: w.pid });
      }
    });
    g.on('respawn', (w: Worker, delay: number, streak: number) => {
      const fields = { delay_ms: delay, restarts: g.restarts[w.index] };
      if (streak >= CRASH_LOOP)
        this.log.warn(`worker ${g.number}.${w.index} is crash-looping (${streak} quick deaths in a row); restarting with backoff`, fields);
      else this.log.info(`restarting worker ${g.number}.${w.index}`, fields);
    });
    void g.whenExited().then(() => {
      this.generations = this.generations.filter((x) => x !== g);
      this.log.info(`generation ${g.number} exited`, { cut: g.cut, connections: formatEndings(g.ended) });
    });
  }

  /** Graceful stop: every generation drains, then the listeners close for good. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('stopping: draining every generation', { generations: this.generations.length });
      const pending = this.pending as Ticket | null;
      this.pending = null;
      for (const w of pending?.waiters ?? []) w.reject(new Error('the supervisor is stopping'));
      this.events.emit('stopping');
      clearInterval(this.memoryGuard ?? undefined);
      // Drained below with every generation; a supervisor that goes away (stop, takeover) never leaves one behind.
      if (this.standby) this.dropStandby('the supervisor stops (a takeover does not carry a standby either)');
      this.abortProbation?.('the supervisor is stopping');
      const all = [...this.generations];
      // With a stop timeout (a container's grace period) the drain ends a little before it,
      // so workers can still report what they cut; generations already draining from a
      // reload have later deadlines of their own, hence the hard kill at the timeout.
      const stopMs = this.opts.stopTimeoutMs ?? null;
      const drainMs = stopMs === null ? this.opts.drainTimeoutMs : Math.min(this.opts.drainTimeoutMs, stopMs - Math.min(1000, stopMs / 10));
      for (const g of all) void g.drain(drainMs);
      const hard =
        stopMs === null
          ? undefined
          : setTimeout(() => {
              this.log.warn(`stop timeout (${stopMs} ms) reached: killing every worker still running`);
              this.kill();
            }, stopMs);
      // The service is going away: refuse new connections now rather than queue them for nobody.
      this.roundRobin?.close();
      closeListeners(this.listeners);
      await Promise.all(all.map((g) => g.whenExited()));
      clearTimeout(hard);
      this.log.info('stopped');
      this.markStopped();
    })();
    return this.stopping;
  }

  /** After a takeover, the control socket was renamed onto the service's own path. */
  controlMoved(path: string): void {
    this.opts.controlPath = path;
  }

  /** Stop now: no drain. For a second Ctrl-C. */
  kill(): void {
    for (const g of this.generations) g.kill();
  }

  async closeControl(): Promise<void> {
    const c = this.control;
    this.control = null;
    await closeControl(c);
  }

  /** A control request for this service: from its own control socket, or routed by a ServiceGroup. */
  async handle(req: ControlRequest, emit: (state: string, message: string) => void, client: LogClient, conn: Socket): Promise<unknown> {
    if ('service' in req && req.service !== undefined && req.service !== this.opts.name) {
      throw new Error(`no service '${req.service}': this baton runs '${this.opts.name}'`);
    }
    switch (req.cmd) {
      case 'status':
        return this.status();
      case 'logs':
        return serveLogs(ring, req, client, this.stopped);
      case 'reload': {
        const probation: Partial<ProbationRules> & { canary?: number } = {};
        if (req.probationMs !== undefined) probation.probationMs = req.probationMs;
        if (req.maxErrorRate !== undefined) probation.maxErrorRate = req.maxErrorRate;
        if (req.canary !== undefined) probation.canary = req.canary;
        // Without --wait the answer comes once the new generation serves, before its probation ends.
        let serving: ((rec: HandoffRecord) => void) | null = null;
        const early = req.wait === 'probation' ? null : new Promise<HandoffRecord>((resolve) => (serving = resolve));
        const watch = (state: string, message: string): void => {
          emit(state, message);
          if ((state === 'probation' || state === 'canary') && serving) serving(this.current!);
        };
        const whole = this.reload({ argv: req.argv ?? null, cwd: req.cwd ?? null, env: req.env ?? {}, trigger: 'reload', watch, probation });
        const rec = early ? await Promise.race([whole, early]) : await whole;
        if (rec.state === 'failed') throw new ControlError(`reload failed: ${rec.error}`, rec);
        const old = rec.from === null ? undefined : this.generations.find((g) => g.number === rec.from);
        if (rec.state === 'canary') return rec; // the old generation serves on, untouched
        if (old) await reportDrain(old, emit, req.wait === 'drained');
        if (req.wait === 'drained' && rec.from !== null) {
          // A standby is drained too: it finished its work and holds nothing.
          if (old) await old.whenSettled();
          rec.cut = old?.cut ?? rec.cut;
        }
        return rec;
      }
      case 'scale':
        return this.scale(req.workers);
      case 'rollback': {
        const rec = await this.rollback(req.reason ?? 'requested on the control socket', emit);
        // A canary dropped is a rollback done: its record is the canary's handoff, failed by design.
        if (rec.state === 'failed' && rec.trigger === 'rollback') throw new ControlError(`rollback failed: ${rec.error}`, rec);
        return rec;
      }
      case 'stop':
        await this.stop();
        return { stopped: true };
      case 'upgrade':
        if (!this.upgrader) throw new ControlError('upgrade is not available in this process');
        if (req.dropStandby) await this.dropStandbyForUpgrade(emit);
        return this.upgrader(this, req, emit, conn);
      case 'takeover':
        this.takeover.offer(conn);
        return REPLIED;
      case 'takeover-commit':
        return this.takeover.commit(conn);
    }
  }

  /** The new baton serves: drain everything and free the control path. */
  private async handOver(): Promise<void> {
    this.disown();
    await this.stop();
    await this.closeControl();
  }

  /** After a takeover the sockets (and unix paths) are the new baton's: a stop closes ours, unlinks nothing. */
  disown(): void {
    for (const l of this.listeners) l.inherited = true;
  }

  /** Resize the serving generation (and every later one). Resolves once the new size is ready. */
  async scale(workers: number | string): Promise<{ target: number; ready: number; generation: number | null }> {
    if (this.stopping) throw new Error('the supervisor is stopping');
    const base = this.opts.workers;
    const target = typeof workers === 'number' ? workers : base + Number(workers);
    if (!Number.isInteger(target) || target < 1 || target > 1024) throw new Error(`cannot scale to ${target} workers: use 1-1024`);
    this.opts.workers = target;
    this.log.info(`scaling to ${target} worker(s)`, { from: base });
    // During a handoff the answer waits until it is over (and any reload queued behind it):
    // the size applies to whichever generation serves then, and is reported for that one.
    while (this.current) await new Promise<void>((resolve) => this.events.once('idle', resolve));
    if (this.stopping) throw new Error('the supervisor is stopping');
    const g = this.serving;
    if (!g) return { target, ready: 0, generation: null };
    g.resize(target);
    await g.whenSized(this.opts.readyTimeoutMs);
    return { target, ready: g.readyCount, generation: g.number };
  }

  status(): StatusReport {
    const now = Date.now();
    return {
      name: this.opts.name,
      pid: process.pid,
      version: VERSION,
      rssBytes: process.memoryUsage.rss(),
      uptimeMs: now - this.startedAt,
      state: this.stopping ? 'stopping' : this.current ? 'reloading' : 'running',
      control: this.opts.controlPath,
      workers: this.opts.workers,
      maxMemoryBytes: this.opts.maxMemoryBytes ?? null,
      listeners: this.listeners.map((l) => ({ name: l.name, address: describe(l), fd: l.fd, inode: inodeOf(l), inherited: l.inherited === true })),
      serving: this.serving?.number ?? null,
      handoff: this.current ? { id: this.current.id, state: this.current.state, from: this.current.from, to: this.current.to } : null,
      reloadQueued: this.pending !== null,
      draining: this.generations.filter((g) => g.state === 'draining').length,
      standby: this.standby ? { generation: this.standby.g.number, state: this.standby.g.state, leftMs: Math.max(0, this.standby.until - now) } : null,
      maxDraining: this.opts.maxDraining,
      generations: this.generations.map((g) => ({
        number: g.number,
        state: g.state,
        argv: g.argv,
        env: setNames(g.env),
        envChanged: this.envChanged.get(g) ?? null,
        target: g.target,
        ready: g.readyCount,
        startedAt: g.startedAt,
        readyAt: g.readyAt,
        ended: g.ended,
        workers: g.workers.map((w) => ({
          index: w.index,
          pid: w.pid,
          state: w.state,
          uptimeMs: now - w.startedAt,
          restarts: g.restarts[w.index] ?? 0,
          replaced: g.replaced[w.index] ?? 0,
          crashLoop: g.streakOf(w.index) >= CRASH_LOOP,
          connections: w.connections,
          connectionsByKind: w.connectionsByKind,
          rssBytes: w.state === 'exited' ? null : rssBytes(w.pid),
          status: w.statusText,
        })),
      })),
      history: this.history.map((r) => ({ ...r })),
    };
  }
}

export interface StatusReport {
  name: string;
  pid: number;
  /** The running baton's version (after `baton upgrade`, the new one's). */
  version: string;
  rssBytes: number;
  uptimeMs: number;
  state: 'running' | 'reloading' | 'stopping';
  control: string;
  workers: number;
  /** --max-memory in bytes, or null. */
  maxMemoryBytes: number | null;
  /** `inode` names the socket (as in /proc/<pid>/fd); `inherited`: from socket activation. */
  listeners: { name: string; address: string; fd: number; inode: number | null; inherited: boolean }[];
  serving: number | null;
  handoff: { id: number; state: string; from: number | null; to: number } | null;
  reloadQueued: boolean;
  draining: number;
  /** The previous generation kept for `baton rollback`: draining towards standby, or in it, and for how long still. */
  standby: { generation: number; state: string; leftMs: number } | null;
  maxDraining: number;
  generations: {
    number: number;
    state: string;
    argv: string[];
    /** The variables its workers get that baton's own environment lacks or has otherwise: names only, never values. */
    env: string[];
    /** Those whose value differs from the generation it replaced (null: none replaced, or not known after an upgrade). */
    envChanged: string[] | null;
    target: number;
    ready: number;
    startedAt: number;
    readyAt: number | null;
    /** How the connections its draining workers had ended, by kind. */
    ended: ConnEndings;
    /** `replaced`: how often the worker in this slot was replaced for going over --max-memory. */
    workers: {
      index: number;
      pid: number;
      state: string;
      uptimeMs: number;
      restarts: number;
      replaced: number;
      crashLoop: boolean;
      connections: number | null;
      connectionsByKind: Partial<Record<ConnKind, number>> | null;
      rssBytes: number | null;
      status: string | null;
    }[];
  }[];
  history: HandoffRecord[];
}

/** What the config file, --env and --env-file set: names whose value is not baton's own. */
function setNames(env: NodeJS.ProcessEnv): string[] {
  return Object.keys(env)
    .filter((k) => env[k] !== process.env[k])
    .sort();
}

function changedNames(before: NodeJS.ProcessEnv, after: NodeJS.ProcessEnv): string[] {
  return [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => before[k] !== after[k]).sort();
}

function warmupOf(o: ServiceOptions): Warmup | null {
  const w = { paths: o.warmupPaths ?? [], requests: o.warmupRequests ?? 0, timeMs: o.warmupTimeMs ?? 0 };
  return w.paths.length && w.requests > 0 && w.timeMs > 0 ? w : null;
}
