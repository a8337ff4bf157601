// Supervisor upgrade: a new baton takes over the running service in place. The old image
// checks the new entry point, then execve's into it (same pid: systemd and a container's
// PID 1 see nothing), keeping open every fd that matters: stdio, the listeners, the control
// socket, the state, and each worker's IPC channel and output pipes. The new image runs
// `baton start` with the same command line plus the state's fd, and carries on from the
// state instead of starting: by default it adopts the running workers (the app is not
// even restarted, see adopt.ts); with --restart-workers it then hands over to a fresh
// generation, as a reload does. A baton running several services (a config file's
// `services`) is upgraded the same way, every service at once: they share the process and
// its control socket. See docs/upgrade.md.
//
// If anything fails before the exec (the check, or the execve itself), the old image keeps
// running as if nothing had happened and the request gets the reason.
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ControlEvent, ControlReply } from '../common/protocol.js';
import { log, ring } from '../log/log.js';
import { closeFd, isCloexec, memfd, setCloexec } from '../os/fds.js';
import { handleFd } from '../os/internals.js';
import { execve } from '../os/process.js';
import { AdoptedProcess, processFds } from '../supervisor/adopt.js';
import type { HandoffRecord } from '../supervisor/handoff.js';
import { notifyDirectory } from '../supervisor/notify.js';
import type { GroupReload, ServiceGroup } from '../supervisor/services.js';
import type { ServiceOptions, Supervisor } from '../supervisor/supervisor.js';
import { type GenerationState, readState, type ServiceState, STATE_FORMAT, type State, VERSION, writeState } from './state.js';

/** The entry point of this baton: what `baton upgrade` runs when not told otherwise. */
export const DEFAULT_ENTRY = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/** Hidden options of `baton start`: run as the new image of an upgrade, or only check that it could. */
export const STATE_FLAG = '--upgrade-state-fd';
export const CHECK_FLAG = '--upgrade-check';
/** The line a successful check prints. */
export const CHECK_OK = 'baton upgrade check: ok';

/** How long the new entry point may take to load and check the state. */
const CHECK_TIMEOUT_MS = 30_000;
/** Lines of the check's output kept for the reason of a refusal. */
const CHECK_LINES = 20;
/** Round-robin: how long connections already accepted may take to reach a worker before the exec. */
const HANDOVER_TIMEOUT_MS = 5000;

/**
 * The environment baton was started with, before anything took its own variables out of it
 * (host.ts removes NOTIFY_SOCKET, LISTEN_FDS, ...): the new image must find them again.
 * Captured when this module loads, before the start action runs.
 */
const BIRTH_ENV: NodeJS.ProcessEnv = { ...process.env };

/** What is upgraded: one supervisor, or several services sharing the process and its control socket. */
export type Upgradable = Supervisor | ServiceGroup;

const isGroup = (t: Upgradable): t is ServiceGroup => 'services' in t;
const servicesOf = (t: Upgradable): readonly Supervisor[] => (isGroup(t) ? t.services : [t]);

export interface UpgradeRequest {
  id?: number | undefined;
  exec?: string | undefined;
  restartWorkers?: boolean | undefined;
}

export interface UpgradeResult {
  pid: number;
  version: string;
  entry: string;
  from: State['writtenBy'];
  /** Request -> the new image took over (and, with --restart-workers, the handoff ended). */
  ms: number;
  adopted: number;
  upgrades: number;
  /** --restart-workers, one supervisor: the handoff to the fresh generation. */
  handoff: HandoffRecord | null;
  /** --restart-workers, several services: each one's handoff. */
  reloads: GroupReload | null;
}

type Emit = (state: string, message: string) => void;

let upgrading = false;
/** Upgrades this supervisor went through: carried in the state from image to image. */
let upgrades = 0;

/**
 * Old image: check `req.exec`, then become it. Never resolves: on success this process runs
 * the new image; on failure it throws, and nothing has changed.
 */
export async function upgrade(sup: Upgradable, req: UpgradeRequest, emit: Emit, conn: Socket | null): Promise<never> {
  if (upgrading) throw new Error('upgrade refused: another upgrade is in progress');
  refuse(sup, req);
  const entry = resolve(req.exec ?? DEFAULT_ENTRY);
  if (!existsSync(entry)) throw new Error(`upgrade refused: ${entry}: no such file; the running supervisor carries on`);
  const requestedAt = Date.now();
  upgrading = true;
  const mem = memfd('baton-upgrade-state');
  try {
    writeState(mem, snapshot(sup, req, conn, requestedAt));
    emit('checking', `checking ${entry} with this supervisor's state (format ${STATE_FORMAT})`);
    await check(entry, mem);
    emit('exec', `check passed; pid ${process.pid} becomes ${entry}`);
    // The event must be out before the exec: a line cut in half would garble the reply.
    if (conn) await flushed(conn);
    // Round-robin: a connection accepted here but not yet passed on would close with this image.
    const dealing = servicesOf(sup)
      .map((s) => s.internals)
      .filter((i) => i.roundRobin !== null);
    try {
      const handed = await Promise.all(dealing.map((i) => i.roundRobin!.handOver(HANDOVER_TIMEOUT_MS)));
      if (handed.includes(false)) {
        throw new Error(
          `upgrade refused: connections accepted in round-robin mode found no ready worker within ${HANDOVER_TIMEOUT_MS} ms; the running supervisor carries on`,
        );
      }
      refuse(sup, req); // a reload or a stop may have begun meanwhile
      become(sup, req, conn, requestedAt, entry, mem);
    } catch (e) {
      // A stop closes the listeners: there is nothing to accept on any more.
      for (const i of dealing) if (!i.stopping) i.roundRobin!.start(i.listeners, i.options.backlog);
      throw e;
    }
  } finally {
    upgrading = false;
    closeFd(mem);
  }
}

/** SIGUSR2: upgrade to this package's entry point (usually just installed over the old one). */
export function upgradeOnSignal(sup: Upgradable): void {
  log.info('SIGUSR2: upgrade');
  upgrade(sup, {}, (_state, message) => log.info(`upgrade: ${message}`), null).catch((e: Error) => log.error(e.message));
}

function refuse(t: Upgradable, req: UpgradeRequest): void {
  const no = (why: string): never => {
    throw new Error(`upgrade refused: ${why}; the running supervisor carries on`);
  };
  if (isGroup(t) && t.internals.busy) no(t.internals.busy);
  if (process.argv[2] !== 'start') no('this supervisor was not started by `baton start`, whose command line the new image runs again');
  for (const s of servicesOf(t)) {
    const { busy, options } = s.internals;
    const label = isGroup(t) ? `service ${s.name}: ` : '';
    if (busy) no(`${label}${busy}`);
    if (req.restartWorkers) continue;
    if (options.distribution === 'round-robin') {
      no(
        `${label}with --distribution round-robin the supervisor passes connections to workers over their IPC channel, which a new image can only reach as a plain stream; use baton upgrade --restart-workers`,
      );
    }
    const notify = options.launch?.notify;
    if (options.readyMode === 'notify' || notify?.watchdogMs != null || notify?.readyAfterMs != null) {
      no(
        `${label}with --ready notify, --ready-after or --watchdog baton watches each worker through a NOTIFY_SOCKET of its own, which a new image does not take over; use baton upgrade --restart-workers`,
      );
    }
  }
}

/** The arguments of the `baton start` this supervisor runs with, without an upgrade's own. */
function startArgs(): string[] {
  const args = process.argv.slice(3);
  return args[0]?.startsWith(`${STATE_FLAG}=`) ? args.slice(1) : args;
}

/** Run the new entry point in check mode on the state; resolves if it loads and accepts it. */
function check(entry: string, mem: number): Promise<void> {
  return new Promise((resolveCheck, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, entry, 'start', `${CHECK_FLAG}=3`, ...startArgs()], {
      cwd: process.cwd(),
      env: BIRTH_ENV,
      stdio: ['ignore', 'pipe', 'pipe', mem],
    });
    const lines: string[] = [];
    let stdout = '';
    const keep = (d: Buffer): void => {
      lines.push(
        ...d
          .toString('utf8')
          .split('\n')
          .filter((l) => l.trim()),
      );
      lines.splice(0, Math.max(0, lines.length - CHECK_LINES));
    };
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
      keep(d);
    });
    child.stderr!.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), CHECK_TIMEOUT_MS);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`upgrade refused: cannot run ${entry}: ${e.message}; the running supervisor carries on`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      // Its own log lines may come first (stdout with --log-format json).
      if (code === 0 && stdout.split('\n').some((l) => l.startsWith(CHECK_OK))) return resolveCheck();
      const how = signal === 'SIGKILL' ? `did not answer within ${CHECK_TIMEOUT_MS} ms` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const out = lines.length ? `:\n${lines.map((l) => `  | ${l}`).join('\n')}` : '';
      reject(new Error(`upgrade refused: the new baton (${entry}) failed its check: it ${how}; the running supervisor carries on${out}`));
    });
  });
}

/** The state as it is now. Synchronous from here to the execve: no worker can come or go unseen. */
function snapshot(t: Upgradable, req: UpgradeRequest, conn: Socket | null, requestedAt: number): State {
  const g = isGroup(t) ? t.internals : null;
  const control = g ? g.control : (t as Supervisor).internals.control;
  if (!control) throw new Error('upgrade refused: the control socket is not open');
  return {
    format: STATE_FORMAT,
    writtenBy: { version: VERSION, entry: process.argv[1] ?? DEFAULT_ENTRY, pid: process.pid },
    writtenAt: Date.now(),
    // A client that left needs no answer.
    request: { reply: conn && !conn.destroyed ? { fd: handleFd(conn), id: req.id ?? null } : null, restartWorkers: req.restartWorkers === true, requestedAt },
    control: { path: g ? g.controlPath : (t as Supervisor).internals.options.controlPath, fd: handleFd(control) },
    group: g ? { name: (t as ServiceGroup).name, startedAt: g.startedAt } : null,
    upgrades: upgrades + 1,
    leftovers: [notifyDirectory()].filter((d) => d !== null),
    services: servicesOf(t).map(serviceSnapshot),
    logs: ring.tail(ring.size),
  };
}

function serviceSnapshot(sup: Supervisor): ServiceState {
  const i = sup.internals;
  return {
    // JSON only: what is computed (the config file's re-reader) the new image makes itself.
    options: JSON.parse(JSON.stringify(i.options)) as ServiceOptions,
    listeners: i.listeners.map((l) => ({ ...l })),
    supervisor: {
      startedAt: i.startedAt,
      nextGeneration: i.nextGeneration,
      nextHandoff: i.nextHandoff,
      serving: i.serving?.number ?? null,
    },
    history: [...i.history],
    // A draining generation whose workers are all gone only waits for its exit to be noticed.
    generations: i.generations
      .filter((g) => g.state !== 'exited' && (g.state !== 'draining' || g.live.length > 0))
      .map((g) => ({
        number: g.number,
        argv: g.argv,
        cwd: g.cwd,
        state: g.state as GenerationState['state'],
        target: g.target,
        startedAt: g.startedAt,
        readyAt: g.readyAt,
        drainStartedAt: g.drainStartedAt,
        restarts: Array.from(g.restarts, (n) => n ?? 0),
        workers: g.live.map((w) => ({ ...w.snapshot(), retired: !g.workers.includes(w), fds: processFds(w.process) })),
      })),
  };
}

/** Every fd the new image takes over, the state's own and stdio aside. */
function carriedFds(s: State): number[] {
  const fds = [s.control.fd];
  if (s.request.reply) fds.push(s.request.reply.fd);
  for (const svc of s.services) {
    fds.push(...svc.listeners.map((l) => l.fd));
    for (const g of svc.generations) for (const w of g.workers) for (const fd of Object.values(w.fds)) if (fd !== null) fds.push(fd);
  }
  return fds;
}

/** Write the final state and execve into the new image. Returns only by throwing, with every fd's flag as it was. */
function become(sup: Upgradable, req: UpgradeRequest, conn: Socket | null, requestedAt: number, entry: string, mem: number): never {
  const state = snapshot(sup, req, conn, requestedAt);
  writeState(mem, state);
  // Node sets FD_CLOEXEC on 0-2 too: cleared, or the new image's output would go nowhere.
  const fds = [...new Set([0, 1, 2, mem, ...carriedFds(state)])];
  const argv = [process.execPath, ...process.execArgv, entry, 'start', `${STATE_FLAG}=${mem}`, ...startArgs()];
  try {
    return inheriting(fds, () => {
      log.info(`upgrade: execve ${entry}`, { pid: process.pid, workers: workerCount(state) });
      return execve(process.execPath, argv, BIRTH_ENV);
    });
  } catch (e) {
    throw new Error(`upgrade failed: ${(e as Error).message}; the running supervisor carries on`);
  }
}

/** Run `exec` with FD_CLOEXEC cleared on `fds`; should it return by throwing, every flag is put back as it was. */
export function inheriting(fds: readonly number[], exec: () => never): never {
  const was = fds.map((fd) => [fd, isCloexec(fd)] as const);
  try {
    for (const fd of fds) setCloexec(fd, false);
    return exec();
  } catch (e) {
    for (const [fd, on] of was) setCloexec(fd, on);
    throw e;
  }
}

function workerCount(s: State): number {
  return s.services.reduce((n, svc) => n + svc.generations.reduce((m, g) => m + g.workers.length, 0), 0);
}

function flushed(conn: Socket): Promise<void> {
  if (conn.writableLength === 0 || conn.destroyed) return Promise.resolve();
  return new Promise((res) => conn.write('', () => res()));
}

/* ------------------------------------------------------------------ */
/* New image                                                           */
/* ------------------------------------------------------------------ */

/**
 * Why the state cannot be taken over by what this command line starts (one supervisor, or
 * the services its config file defines now), or null. The new image runs the same command
 * line, but the config file may have been edited since.
 */
export function mismatch(state: State, names: readonly string[] | null): string | null {
  const running = state.group ? `several services (${state.services.map((s) => s.options.name).join(', ')})` : 'one supervisor';
  const starting = names ? `several services (${names.join(', ')})` : 'one supervisor';
  const same = names ? state.group !== null && names.join('\0') === state.services.map((s) => s.options.name).join('\0') : state.group === null;
  if (same) return null;
  return `the running baton runs ${running}, and its command line with the config file as it is now starts ${starting}: an upgrade carries every service as it is; to change the set of services, start a new baton with --takeover`;
}

/**
 * New image, in place of `start()`: take over what the old image ran, answer whoever
 * asked for the upgrade, and with --restart-workers hand over to fresh generations.
 */
export async function resume(t: Upgradable, stateFd: number): Promise<void> {
  const { state } = readState(stateFd);
  closeFd(stateFd);
  const services = servicesOf(t);
  const wrong = mismatch(state, isGroup(t) ? services.map((s) => s.name) : null);
  if (wrong) throw new Error(`upgrade: ${wrong}`);
  for (const e of state.logs) ring.push(e);
  // They were left open for this image only: workers spawned from now on must not inherit them.
  for (const fd of carriedFds(state)) setCloexec(fd, true);
  upgrades = state.upgrades;
  // Adopted workers keep their NOTIFY_SOCKET path, but its socket closed with the old image.
  for (const path of state.leftovers) rmSync(path, { recursive: true, force: true });
  let adopted = 0;
  for (const [i, sup] of services.entries()) {
    const s = state.services[i]!;
    const options = sup.internals.options;
    // What changed at run time (scale, reloads) wins over the command line it was started with.
    Object.assign(options, s.options);
    await sup.resume({
      listeners: s.listeners,
      controlFd: isGroup(t) ? null : state.control.fd,
      startedAt: s.supervisor.startedAt,
      nextGeneration: s.supervisor.nextGeneration,
      nextHandoff: s.supervisor.nextHandoff,
      history: s.history,
      serving: s.supervisor.serving,
      generations: s.generations,
      adopt: (g, gs: GenerationState) => {
        Object.assign(g, { state: gs.state, target: gs.target, startedAt: gs.startedAt, readyAt: gs.readyAt, drainStartedAt: gs.drainStartedAt });
        for (const [k, n] of gs.restarts.entries()) g.restarts[k] = n;
        // Retired ones first: see Generation.adopt.
        for (const ws of [...gs.workers].sort((x, y) => Number(y.retired) - Number(x.retired))) {
          g.adopt(ws.index, new AdoptedProcess(ws.pid, ws.fds), ws.retired).resume(ws, options.drainTimeoutMs);
          adopted++;
        }
      },
    });
    followDrains(sup, s.history);
  }
  if (isGroup(t)) await t.resume(state.control.fd, state.group!.startedAt);
  log.info(`upgraded in place to baton ${VERSION} (${process.argv[1]}) from baton ${state.writtenBy.version}`, {
    pid: process.pid,
    adopted,
    ms: Date.now() - state.request.requestedAt,
  });
  const reply = state.request.reply ? answerOn(state.request.reply) : null;
  const result: UpgradeResult = {
    pid: process.pid,
    version: VERSION,
    entry: process.argv[1] ?? DEFAULT_ENTRY,
    from: state.writtenBy,
    ms: 0,
    adopted,
    upgrades,
    handoff: null,
    reloads: null,
  };
  if (state.request.restartWorkers) {
    reply?.event('restarting', `took over ${adopted} worker(s); starting a fresh generation`);
    const failed = (why: string, detail?: unknown): void =>
      reply?.fail(`upgraded to baton ${VERSION}, but restarting the workers failed: ${why}; the adopted workers serve on`, detail);
    if (isGroup(t)) {
      const results = await t.reloadAll('upgrade', (service, s, m) => reply?.event(s, `${service}: ${m}`));
      const bad = results.filter((r) => r.error !== null);
      if (bad.length) return failed(bad.map((r) => `${r.service} (${r.error})`).join(', '), results);
      result.reloads = results;
    } else {
      const rec = await t.reload({ trigger: 'upgrade', watch: (s, m) => reply?.event(s, m) }).catch((e: Error) => e);
      if (rec instanceof Error || rec.state === 'failed')
        return failed(rec instanceof Error ? rec.message : (rec.error ?? 'unknown error'), rec instanceof Error ? undefined : rec);
      result.handoff = rec;
    }
  }
  result.ms = Date.now() - state.request.requestedAt;
  reply?.ok(result);
}

/** The old image filled in `drainedMs` once an old generation exited: now this one does. */
function followDrains(sup: Supervisor, history: HandoffRecord[]): void {
  for (const rec of history) {
    if (rec.drainedMs !== null || rec.state !== 'done' || rec.from === null) continue;
    const g = sup.internals.generations.find((x) => x.number === rec.from);
    void g?.whenExited().then(() => {
      rec.drainedMs = Date.now() - rec.requestedAt;
      rec.cut = g.cut;
    });
  }
}

/** The control connection the upgrade was asked on, carried across the exec: answered here. */
function answerOn(to: { fd: number; id: number | null }): { event: Emit; ok(result: UpgradeResult): void; fail(error: string, detail?: unknown): void } {
  // Half-open allowed: a client that shut its side after asking (socat, `nc -N`) still gets the answer.
  const sock = new Socket({ fd: to.fd, readable: true, writable: true, allowHalfOpen: true });
  sock.on('error', () => sock.destroy());
  sock.resume(); // nothing more is expected from the client; read to notice it leaving
  const id = to.id ?? undefined;
  const write = (m: ControlEvent | ControlReply): void => {
    if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(m) + '\n');
  };
  return {
    event: (state, message) => write({ id, event: 'progress', state, message, at: Date.now() }),
    ok: (result) => {
      write({ id, ok: true, result });
      sock.end();
    },
    fail: (error, detail) => {
      write({ id, ok: false, error, detail });
      sock.end();
    },
  };
}

/** `baton start --upgrade-check=N`: the new entry point loads everything and reads the state, then exits. */
export async function checkState(fd: number, names: readonly string[] | null): Promise<never> {
  try {
    const { state: s, format } = readState(fd);
    const wrong = mismatch(s, names);
    if (wrong) throw new Error(wrong);
    isCloexec(fd); // loads koffi: the new image needs it at once
    await import('../runtime/runtime.js'); // what new workers preload
    const listeners = s.services.reduce((n, svc) => n + svc.listeners.length, 0);
    process.stdout.write(
      `${CHECK_OK}: baton ${VERSION}, state format ${format}, ${s.services.length} service(s), ${listeners} listener(s), ${workerCount(s)} worker(s)\n`,
    );
    process.exit(0);
  } catch (e) {
    process.stderr.write(`baton: ${(e as Error).message}\n`);
    process.exit(1);
  }
}
