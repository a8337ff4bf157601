// The workers that run one version (one command line + env), numbered for the life of
// the service. A generation starts, becomes ready (or fails), serves, drains, exits.
import { EventEmitter } from 'node:events';
import { addEndings } from '../common/connections.js';
import type { ConnEndings } from '../common/protocol.js';
import type { WorkerProcess } from './adopt.js';
import { Worker, type WorkerOptions, type WorkerState } from './worker.js';

/** standby: drained, every worker alive and not accepting, kept for a rollback (--keep-previous). */
export type GenerationState = 'starting' | 'serving' | 'draining' | 'standby' | 'exited';

export type WorkerTemplate = Omit<WorkerOptions, 'generation' | 'index' | 'argv' | 'cwd'>;

export class StartError extends Error {
  constructor(
    message: string,
    /** Last lines of the worker that failed, for the operator. */
    readonly output: string[],
  ) {
    super(message);
  }
}

/** Restart delays for a serving worker that keeps dying: 100 ms, 200 ms, ... 30 s. */
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 30_000;
/** A worker that stayed up this long is healthy again: its next crash restarts at once. */
const HEALTHY_AFTER_MS = 30_000;

/**
 * Events: 'worker-exit' (Worker, unexpected: boolean), 'worker-standby' (Worker), 'standby', 'exited'.
 */
export class Generation extends EventEmitter {
  state: GenerationState = 'starting';
  /** The worker in each slot (index 0..target-1), newest occupant. */
  readonly workers: Worker[] = [];
  /** Workers taken out of their slot by a scale-down, still draining. */
  private readonly retired: Worker[] = [];
  /** Slots this generation should fill while it serves. */
  target = 0;
  /** Its workers may accept (overlap mode: from the start; exclusive: once the old generation stopped). */
  accepting: boolean;
  startedAt = Date.now();
  readyAt: number | null = null;
  drainStartedAt: number | null = null;
  /** Draining towards standby (state draining), or in it: a rollback may make it serve again. */
  toStandby = false;
  exitedAt: number | null = null;
  /** Restarts per worker index, for status. */
  readonly restarts: number[] = [];
  /** Replacements per worker index of a worker over --max-memory (replace()), for status. */
  readonly replaced: number[] = [];
  /** Quick deaths in a row per worker index, for the backoff. */
  private readonly streak: number[] = [];
  private readonly respawnTimers = new Map<number, NodeJS.Timeout>();
  private cutByReplaced = 0;
  private readonly endedByReplaced: ConnEndings = {};
  private exitedWaiters: Array<() => void> = [];

  constructor(
    readonly number: number,
    readonly argv: string[],
    readonly cwd: string,
    private readonly template: WorkerTemplate,
  ) {
    super();
    this.accepting = template.handoff === 'overlap';
  }

  /** The environment its workers start with (before baton's own variables). */
  get env(): NodeJS.ProcessEnv {
    return this.template.env;
  }

  /** Start `count` workers at once; resolves when all are ready, rejects on the first that dies or at the timeout. */
  async start(count: number, readyTimeoutMs: number): Promise<void> {
    await this.startSlots(
      Array.from({ length: count }, (_, i) => i),
      readyTimeoutMs,
    );
    this.markServing(count);
  }

  /** A rolling start is over: the generation serves with `count` slots. */
  markServing(count: number): void {
    // Stopped while starting (supervisor stop): ready or not, it must not serve.
    if (this.state !== 'starting') throw new StartError(`generation ${this.number} was stopped while starting`, []);
    this.target = count;
    this.state = 'serving';
    this.readyAt = Date.now();
  }

  /** Start workers in the given slots; resolves when they are all ready. */
  startSlots(indices: number[], readyTimeoutMs: number): Promise<void> {
    if (this.state !== 'starting') return Promise.reject(new StartError(`generation ${this.number} was stopped while starting`, []));
    return new Promise<void>((resolve, reject) => {
      const started: Worker[] = [];
      let pending = indices.length;
      const fail = (err: StartError): void => {
        clearTimeout(timer);
        pending = -1;
        reject(err);
      };
      const timer = setTimeout(() => {
        const late = started.filter((w) => w.state === 'starting');
        const w = late[0];
        fail(
          new StartError(
            `${late.length + indices.length - started.length} of ${indices.length} new worker(s) of generation ${this.number} not ready after ${readyTimeoutMs} ms` +
              (w && !w.hasRuntime
                ? " (it said nothing: neither baton's Node.js runtime nor READY=1 on NOTIFY_SOCKET; for a program that says nothing use --ready-after)"
                : ''),
            w?.output.slice(-20) ?? [],
          ),
        );
      }, readyTimeoutMs);
      // One spawn per turn of the event loop. A spawn blocks this process for the fork and
      // until the child has exec'd: ~2 ms on an idle machine, 10-35 ms on a busy 2-core one,
      // longer with every worker already starting. A pool spawned in one go froze the
      // supervisor for all of them at once (round-robin dispatch, IPC, control socket).
      const spawnNext = (k: number): void => {
        if (pending <= 0) return;
        if (this.state !== 'starting') return fail(new StartError(`generation ${this.number} was stopped while starting`, []));
        let w: Worker;
        try {
          w = this.spawn(indices[k]!);
        } catch (e) {
          // Out of a later turn a throw would end the supervisor: it fails the start instead.
          return fail(new StartError(`worker ${indices[k]} of generation ${this.number} could not be started: ${(e as Error).message}`, []));
        }
        started.push(w);
        if (k + 1 < indices.length) setImmediate(spawnNext, k + 1);
        w.once('ready', () => {
          if (pending > 0 && --pending === 0) {
            clearTimeout(timer);
            resolve();
          }
        });
        w.once('exit', () => {
          if (pending > 0 && w.readyAt === null) {
            // Drained by a stop while it started: baton ended it, not a fault of its own.
            if (this.state !== 'starting') fail(new StartError(`generation ${this.number} was stopped while starting`, []));
            else fail(new StartError(`worker ${w.index} of generation ${this.number} ${w.describeExit()} before it was ready`, w.output.slice(-20)));
          }
        });
      };
      if (indices.length) spawnNext(0);
    });
  }

  /** Take workers out of their slots and drain them (rolling handoff); resolves once they have exited. */
  async retire(indices: number[], timeoutMs: number): Promise<void> {
    const ws = this.workers.filter((w) => indices.includes(w.index));
    for (const w of ws) {
      this.workers.splice(this.workers.indexOf(w), 1);
      this.retired.push(w);
      w.drain(timeoutMs);
    }
    await Promise.all(ws.map((w) => w.whenExited()));
  }

  /**
   * Replace a serving worker without a gap (--max-memory): a fresh one starts in its slot
   * while the old one serves on; once the fresh one is ready the old one drains, as in a
   * reload. Resolves true then; false, with the old one back in its slot as it was, if the
   * fresh one does not get ready within `readyTimeoutMs` (it is stopped).
   */
  async replace(w: Worker, readyTimeoutMs: number): Promise<boolean> {
    if (this.state !== 'serving' || w.state !== 'ready' || !this.workers.includes(w)) return false;
    this.retired.push(...this.workers.splice(this.workers.indexOf(w), 1));
    const fresh = this.spawn(w.index);
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), readyTimeoutMs);
      const settle = (ok: boolean) => (): void => {
        clearTimeout(timer);
        resolve(ok);
      };
      fresh.once('ready', settle(true));
      fresh.once('exit', settle(false));
    });
    if (ready) {
      this.replaced[w.index] = (this.replaced[w.index] ?? 0) + 1;
      w.drain(this.template.drainTimeoutMs);
      return true;
    }
    const slot = this.workers.indexOf(fresh);
    // The old one died meanwhile, or a reload took over: the slot is handled as it would be.
    if (slot < 0 || (w.state as WorkerState) === 'exited' || this.state !== 'serving') return false;
    // A fresh one that died was taken for a crash: no respawn, the old one serves on.
    clearTimeout(this.respawnTimers.get(w.index));
    this.respawnTimers.delete(w.index);
    this.workers[slot] = w;
    this.retired.splice(this.retired.indexOf(w), 1, fresh);
    fresh.kill();
    this.emit('change');
    return false;
  }

  /** Stop accepting and finish; resolves once every worker has stopped accepting. */
  drain(timeoutMs: number): Promise<void> {
    if (this.toStandby) {
      // A standby (or one on its way) leaves for good.
      this.toStandby = false;
      this.state = 'draining';
      for (const w of this.live) w.drain(timeoutMs);
      this.checkExited();
    } else if (this.state !== 'draining' && this.state !== 'exited') {
      this.state = 'draining';
      this.drainStartedAt = Date.now();
      for (const t of this.respawnTimers.values()) clearTimeout(t);
      this.respawnTimers.clear();
      for (const w of this.live) w.drain(timeoutMs);
      this.checkExited();
    }
    return Promise.all(this.live.map((w) => w.whenAcceptingStopped())).then(() => undefined);
  }

  /**
   * Stop accepting and finish in-flight work as drain() does, then stay alive not accepting
   * (state standby) until resumeAccepting() or drain(). Workers that cannot (no baton
   * runtime, --threads) drain for good. Resolves once every worker has stopped accepting.
   */
  drainToStandby(timeoutMs: number): Promise<void> {
    if (this.state === 'serving' || this.state === 'starting') {
      this.state = 'draining';
      this.toStandby = true;
      this.drainStartedAt = Date.now();
      for (const t of this.respawnTimers.values()) clearTimeout(t);
      this.respawnTimers.clear();
      for (const w of this.workers) {
        w.drainToStandby(timeoutMs);
        w.once('standby', () => {
          this.emit('worker-standby', w);
          this.checkExited();
        });
      }
      for (const w of this.retired) w.drain(timeoutMs);
      this.checkExited();
    }
    return Promise.all(this.live.map((w) => w.whenAcceptingStopped())).then(() => undefined);
  }

  /** Whether a rollback can make this generation serve at once: some worker kept for it. */
  get resumable(): boolean {
    return this.toStandby && this.workers.some((w) => w.toStandby && w.state !== 'exited');
  }

  /**
   * Rollback: the standby workers accept again, at once (no bind, no start-up); slots whose
   * worker is gone get a fresh one. Resolves once the kept ones confirmed.
   */
  resumeAccepting(): Promise<void> {
    if (!this.toStandby) return Promise.resolve();
    this.toStandby = false;
    this.state = 'serving';
    this.accepting = true;
    this.drainStartedAt = null;
    const acked = this.workers.filter((w) => w.toStandby && w.state !== 'exited').map((w) => w.resumeAccepting());
    this.resize(this.target);
    this.emit('change');
    return Promise.all(acked).then(() => undefined);
  }

  /**
   * Change the number of workers of a serving generation, without a reload: new slots get
   * a fresh worker, surplus ones drain exactly as in a handoff (nothing in flight is cut).
   */
  resize(count: number): void {
    if (this.state !== 'serving') return;
    this.target = count;
    for (const [index, t] of this.respawnTimers) {
      if (index < count) continue;
      clearTimeout(t);
      this.respawnTimers.delete(index);
    }
    void this.retire(
      this.workers.filter((w) => w.index >= count).map((w) => w.index),
      this.template.drainTimeoutMs,
    );
    for (let i = 0; i < count; i++) {
      const occupant = this.workers.find((w) => w.index === i);
      if ((!occupant || occupant.state === 'exited') && !this.respawnTimers.has(i)) this.spawn(i);
    }
  }

  /** Resolves when every slot holds a ready worker and no retired one accepts, or at the timeout. */
  whenSized(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const settled = (): boolean => this.state !== 'serving' || (this.readyCount === this.target && this.workers.length === this.target);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!settled() && Date.now() < deadline) return;
        this.off('change', check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(check, timeoutMs + 1);
      this.on('change', check);
      void Promise.all(this.retired.map((w) => w.whenAcceptingStopped())).then(check);
    });
  }

  /** Quick deaths in a row of the worker in slot `index` (0 once it stays up). */
  streakOf(index: number): number {
    const w = this.workers.find((x) => x.index === index);
    if (w && w.state === 'ready' && Date.now() - w.startedAt >= HEALTHY_AFTER_MS) return 0;
    return this.streak[index] ?? 0;
  }

  /**
   * Exclusive handoff: let every worker accept now (and any that becomes ready later);
   * resolves once the ready ones confirmed.
   */
  startAccepting(): Promise<void> {
    this.accepting = true;
    return Promise.all(this.workers.filter((w) => w.state === 'ready').map((w) => w.accept())).then(() => undefined);
  }

  /** Workers of this generation that are ready to serve. */
  get readyCount(): number {
    return this.workers.filter((w) => w.state === 'ready').length;
  }

  /** Resolves once this generation has exited, or finished its work and waits in standby. */
  whenSettled(): Promise<void> {
    if (this.state === 'standby' || this.state === 'exited') return Promise.resolve();
    return new Promise((res) => {
      const done = (): void => {
        this.off('standby', done);
        res();
      };
      this.on('standby', done);
      void this.whenExited().then(done);
    });
  }

  whenExited(): Promise<void> {
    if (this.state === 'exited') return Promise.resolve();
    return new Promise((res) => this.exitedWaiters.push(res));
  }

  /** Immediate stop (supervisor shutting down hard). */
  kill(): void {
    for (const w of this.live) w.kill();
  }

  get live(): Worker[] {
    return [...this.workers, ...this.retired].filter((w) => w.state !== 'exited');
  }

  /** How the connections of every drain of this generation ended, by kind. */
  get ended(): ConnEndings {
    const sum = addEndings({}, this.endedByReplaced);
    for (const w of [...this.workers, ...this.retired]) addEndings(sum, w.ended);
    return sum;
  }

  /** Connections cut at drain deadlines, summed over every worker this generation had. */
  get cut(): number {
    return this.cutByReplaced + [...this.workers, ...this.retired].reduce((n, w) => n + w.cut, 0);
  }

  /**
   * Supervisor upgrade: take over a worker the previous baton image ran (src/upgrade/upgrade.ts), in
   * its slot or among the retired; from here on it is handled like any other. Retired ones
   * first: their slot may have a newer occupant, which must not be replaced.
   */
  adopt(index: number, process: WorkerProcess, retired: boolean): Worker {
    const w = this.spawn(index, process);
    if (retired) this.retired.push(...this.workers.splice(this.workers.indexOf(w), 1));
    return w;
  }

  private spawn(index: number, adopted?: WorkerProcess): Worker {
    const w = new Worker({ ...this.template, argv: this.argv, cwd: this.cwd, generation: this.number, index, adopted });
    const slot = this.workers.findIndex((x) => x.index === index);
    if (slot >= 0) this.cutByReplaced += this.workers[slot]!.cut;
    if (slot >= 0) addEndings(this.endedByReplaced, this.workers[slot]!.ended);
    if (slot >= 0) this.workers[slot] = w;
    else this.workers.splice(this.workers.filter((x) => x.index < index).length, 0, w);
    this.restarts[index] ??= 0;
    this.emit('worker-start', w);
    w.once('exit', () => this.onWorkerExit(w));
    w.once('ready', () => {
      // A worker replaced or added while the generation accepts: same version, no wait.
      if (this.accepting) void w.accept();
      this.emit('change');
    });
    return w;
  }

  private onWorkerExit(w: Worker): void {
    const unexpected = this.state === 'serving' && w.drainStartedAt === null && this.workers.includes(w);
    this.emit('worker-exit', w, unexpected);
    this.emit('change');
    if (unexpected) this.scheduleRespawn(w);
    this.checkExited();
  }

  /** Serving worker died: replace it, waiting longer after each quick death. */
  private scheduleRespawn(w: Worker): void {
    const lived = (w.exitedAt ?? Date.now()) - w.startedAt;
    const n = lived >= HEALTHY_AFTER_MS ? 0 : (this.streak[w.index] ?? 0);
    const delay = n === 0 ? 0 : Math.min(BACKOFF_FIRST_MS * 2 ** (n - 1), BACKOFF_MAX_MS);
    this.streak[w.index] = n + 1;
    this.restarts[w.index] = (this.restarts[w.index] ?? 0) + 1;
    this.emit('respawn', w, delay, n + 1);
    const t = setTimeout(() => {
      this.respawnTimers.delete(w.index);
      if (this.state === 'serving' && w.index < this.target) this.spawn(w.index);
    }, delay);
    this.respawnTimers.set(w.index, t);
  }

  private checkExited(): void {
    if (this.state === 'draining' && this.toStandby && this.live.length > 0 && this.live.every((w) => w.state === 'standby')) {
      this.state = 'standby';
      this.emit('standby');
    }
    if ((this.state !== 'draining' && this.state !== 'standby') || this.live.length > 0) return;
    this.state = 'exited';
    this.exitedAt = Date.now();
    for (const f of this.exitedWaiters.splice(0)) f();
    this.emit('exited');
  }
}
