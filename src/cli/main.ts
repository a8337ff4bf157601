#!/usr/bin/env node
import { rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve as pathResolve } from 'node:path';
// baton's command line: `start` runs a supervisor in the foreground; every other command
// talks to a running one over its control socket.
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { type ListenSpec, parseListen, parseMetricsAddress } from '../common/address.js';
import { parseDuration, parseOffDuration, parseRate } from '../common/duration.js';
import { type ControlReply, type ControlRequest, LOG_RING_LINES, type LogEntry } from '../common/protocol.js';
import { parseSize } from '../common/size.js';
import { VERSION } from '../common/version.js';
import { controlRequest } from '../control/control.js';
import { controlPathFor, findControl } from '../control/paths.js';
import { type Host, parseSignal, prepareHost } from '../host/host.js';
import { log, setLogFormat } from '../log/log.js';
import { formatEntry } from '../log/ring.js';
import { specsFromInherited } from '../os/activation.js';
import type { HandoffRecord } from '../supervisor/handoff.js';
import { type GroupReload, type GroupStatus, ServiceGroup } from '../supervisor/services.js';
import { type ServiceOptions, type StatusReport, Supervisor } from '../supervisor/supervisor.js';
import { requestTakeover, type Takeover } from '../supervisor/takeover.js';
import { CHECK_FLAG, checkState, DEFAULT_ENTRY, resume, STATE_FLAG, type UpgradeResult, upgrade, upgradeOnSignal } from '../upgrade/upgrade.js';
import { completionScript } from './completion.js';
import { applyConfigFile, parseWarmupPaths, type ServiceConfig, targetOf } from './config.js';
import { addEnvOptions, envOf } from './env.js';
import { jsonOutput, printJson, printJsonError, wantsJson } from './json.js';
import { formatList, listSupervisors } from './ls.js';
import { ReloadView } from './progress.js';
import { formatAnyStatus, formatRecord } from './report.js';
import { watchStatus } from './watch.js';

/** Exit codes: 0 success, 1 the operation failed, 2 the command line was wrong. */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/**
 * The warm hand-over (issue 17, bench/warm.ts, docs/benchmarks.md#warm-hand-over): the
 * spread drain is what kept the second after a reload within 1.1x of any other, so it is on;
 * the warm-up did not add to it, costs reload time and sends the app requests it never
 * asked for, so it waits to be chosen (`--warmup /`), with these amounts.
 */
const DEFAULT_WARMUP_PATHS: string[] = [];
const DEFAULT_WARMUP_REQUESTS = 50;
const DEFAULT_WARMUP_TIME_MS = 500;
const DEFAULT_DRAIN_SPREAD_MS = 1000;

function arg<T>(parse: (v: string) => T): (v: string) => T {
  return (v) => {
    try {
      return parse(v);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

function parseWorkers(v: string): number {
  if (v === 'auto') return availableParallelism();
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1024) throw new Error(`bad worker count '${v}': use 1-1024 or auto`);
  return Number(v);
}

function parseThreads(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 64) throw new Error(`bad thread count '${v}': use 1-64`);
  return Number(v);
}

function parseWarmupRequests(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 100_000) throw new Error(`bad warm-up request count '${v}': use 0-100000`);
  return Number(v);
}

function durationOrZero(v: string): number {
  return v === '0' ? 0 : parseDuration(v);
}

function parseFd(v: string): number {
  if (!/^\d{1,9}$/.test(v)) throw new Error(`bad fd '${v}'`);
  return Number(v);
}

function parseBacklog(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new Error(`bad backlog '${v}': use 1-65535`);
  return Number(v);
}

interface Target {
  control?: string;
  name?: string;
  config?: string;
}

function controlPath(o: Target): string {
  return o.control ?? controlPathFor(o.name ?? 'baton');
}

function addTarget(cmd: Command): Command {
  return cmd
    .addOption(new Option('--name <name>', "service name; finds the control socket (default: the config file's, else baton)"))
    .addOption(new Option('--control <path>', 'control socket path (overrides --name)'))
    .addOption(new Option('--config <path>', 'config file (default: ./baton.config.json, .js or .mjs if there is one)'));
}

/** Without --name or --control, the service is the one the config file names. A client searches for a name's socket (paths.ts). */
async function targetPath(o: Target): Promise<string> {
  const t = o.control || o.name ? o : await targetOf(o.config);
  return t.control ?? findControl(t.name ?? 'baton');
}

/** Send one request and print errors the same way for every command. */
async function call(o: Target, req: ControlRequest, onEvent?: (state: string, message: string) => void, onLog?: (e: LogEntry) => void): Promise<ControlReply> {
  try {
    return await controlRequest(await targetPath(o), req, (e) => onEvent?.(e.state, e.message), onLog);
  } catch (e) {
    fail((e as Error).message);
  }
}

/** A reply that is an error: said (in JSON with --json, with the protocol's detail), then exit 1. */
function failed(reply: ControlReply & { ok: false }): never {
  if (jsonOutput()) {
    printJsonError(reply.error, reply.detail);
    process.exit(EXIT_FAILED);
  }
  fail(reply.error);
}

const program = new Command('baton')
  .description('Replace a running server with a new version without losing a connection')
  .version(VERSION, '-V, --version', "print baton's version")
  .enablePositionalOptions()
  .exitOverride()
  // With --json, commander's own errors are printed as JSON (below), not as text.
  .configureOutput({ outputError: (text, write) => jsonOutput() || write(text) })
  .showSuggestionAfterError();

addTarget(
  addEnvOptions(
    program
      .command('start')
      .description('run a supervisor in the foreground: baton start --listen 8080 -- node app.js')
      .passThroughOptions()
      .argument('[command...]', 'the program to run, after --')
      .addOption(
        new Option('-l, --listen <spec>', 'PORT, HOST:PORT, [IPV6]:PORT, unix:/path or udp:HOST:PORT; name=SPEC names it; repeatable').argParser(
          (v: string, prev: ListenSpec[] | undefined) => [...(prev ?? []), arg(parseListen)(v)],
        ),
      )
      .addOption(new Option('-w, --workers <n>', 'workers per generation, or auto (one per CPU)').argParser(arg(parseWorkers)).default(1))
      .addOption(
        new Option('--threads <n>', 'copies of a Node.js app per worker, as worker_threads, each serving the listeners (1-64)')
          .argParser(arg(parseThreads))
          .default(1),
      )
      .addOption(
        new Option(
          '--ready <mode>',
          "when a worker is ready: auto (whichever first of listen and notify), or strictly listen (baton's Node.js runtime serves all listeners), manual (the app calls ready()) or notify (it sends READY=1 to NOTIFY_SOCKET)",
        )
          .choices(['auto', 'listen', 'manual', 'notify'])
          .default('auto'),
      )
      .addOption(
        new Option('--ready-after <duration>', 'also ready once a worker has stayed up this long (for programs that say nothing)').argParser(
          arg(parseDuration),
        ),
      )
      .addOption(
        new Option('--watchdog <duration>', 'restart a ready worker that sends no WATCHDOG=1 for this long (sets WATCHDOG_USEC)').argParser(arg(parseDuration)),
      )
      .addOption(
        new Option('--drain-signal <signal>', 'how a worker without the baton runtime is told to drain; SIGKILL follows at the drain timeout')
          .argParser(arg(parseSignal))
          .default('SIGTERM'),
      )
      .addOption(
        new Option('--stop-timeout <duration>', "a stop ends within this, killing what still runs (set it below a container's grace period)").argParser(
          arg(parseDuration),
        ),
      )
      .addOption(new Option('--user <user>', 'run workers as this user (name or uid); baton binds first, as root'))
      .addOption(new Option('--group <group>', "run workers with this group (default: the user's)"))
      .addOption(
        new Option('--handoff <mode>', 'overlap: new workers accept as soon as ready; exclusive: only once every old one stopped accepting')
          .choices(['overlap', 'exclusive'])
          .default('overlap'),
      )
      .addOption(
        new Option('--distribution <mode>', 'shared: workers accept from the kernel queue; round-robin: baton accepts and deals connections out evenly')
          .choices(['shared', 'round-robin'])
          .default('shared'),
      )
      .addOption(
        new Option('--ready-timeout <duration>', 'how long a new generation may take to be ready').argParser(arg(parseDuration)).default(30_000, '30s'),
      )
      .addOption(new Option('--drain-timeout <duration>', 'how long an old generation may take to finish').argParser(arg(parseDuration)).default(30_000, '30s'))
      .addOption(
        new Option(
          '--warmup <paths>',
          'before a new Node.js worker is ready, it sends requests for these paths (comma separated) to its own server, in-process; off: none',
        )
          .argParser(arg(parseWarmupPaths))
          .default(DEFAULT_WARMUP_PATHS, DEFAULT_WARMUP_PATHS.join(',') || 'off'),
      )
      .addOption(
        new Option('--warmup-requests <n>', 'warm-up requests in all, over the paths in turn (0: none)')
          .argParser(arg(parseWarmupRequests))
          .default(DEFAULT_WARMUP_REQUESTS),
      )
      .addOption(
        new Option('--warmup-time <duration>', 'the warm-up ends after this at the latest; the worker is ready then regardless')
          .argParser(arg(parseDuration))
          .default(DEFAULT_WARMUP_TIME_MS, `${DEFAULT_WARMUP_TIME_MS}ms`),
      )
      .addOption(
        new Option('--drain-spread <duration>', 'an old Node.js worker tells its keep-alive connections to close over this long, not all at once (0: at once)')
          .argParser(arg(durationOrZero))
          .default(DEFAULT_DRAIN_SPREAD_MS, `${DEFAULT_DRAIN_SPREAD_MS / 1000}s`),
      )
      .addOption(new Option('--max-surge <n>', 'rolling reload: replace at most n workers at a time (default: all at once)').argParser(arg(parseWorkers)))
      .addOption(
        new Option('--max-memory <size>', 'replace a worker whose memory (RSS) goes over this, e.g. 512M or 1G: a fresh one starts, then it drains').argParser(
          arg(parseSize),
        ),
      )
      .addOption(new Option('--max-draining <n>', 'a reload waits while n old generations are still draining').argParser(arg(parseWorkers)).default(4))
      .addOption(new Option('--backlog <n>', 'listen backlog (capped by net.core.somaxconn)').argParser(arg(parseBacklog)).default(4096))
      .addOption(
        new Option(
          '--keep-previous <duration>',
          'after a reload, keep the old generation alive, not accepting, this long for an instant `baton rollback` (0: off)',
        )
          .argParser(arg(parseOffDuration))
          .default(300_000, '5m'),
      )
      .addOption(
        new Option('--probation <duration>', 'after a reload, roll back by itself if a new worker dies or too many answers are 5xx within this (0: off)')
          .argParser(arg(parseOffDuration))
          .default(0, '0'),
      )
      .addOption(new Option('--max-error-rate <rate>', 'probation: highest share of 5xx answers, e.g. 5%').argParser(arg(parseRate)).default(0.05, '5%'))
      .addOption(new Option('--min-requests <n>', 'probation: answers needed before the error rate counts').argParser(arg(parseCount(1_000_000))).default(20))
      .addOption(
        new Option('--log-format <format>', 'text: prefixed lines; json: one JSON object per line (pino) on stdout').choices(['text', 'json']).default('text'),
      )
      .addOption(
        new Option('--takeover', 'take the listening sockets over from the supervisor running at --control/--name; it drains and exits once this one serves'),
      )
      .addOption(
        new Option('--metrics <address>', 'serve Prometheus /metrics and /healthz on HOST:PORT (PORT alone: 127.0.0.1)').argParser(arg(parseMetricsAddress)),
      )
      // `baton upgrade` runs the new baton with this same command line and one of these (upgrade.ts).
      .addOption(new Option(`${STATE_FLAG} <fd>`, 'take over a running service from the state at fd').hideHelp().argParser(arg(parseFd)))
      .addOption(new Option(`${CHECK_FLAG} <fd>`, 'only check that the state at fd can be taken over').hideHelp().argParser(arg(parseFd))),
    "the workers (over the config file's env; a reload keeps them)",
  ),
).action(async (given: string[], o, cmd: Command) => {
  // The config file fills in what the command line left out, so the host sees its settings too.
  const file = await applyConfigFile(cmd, given.length > 0).catch((e: Error) => usage(e.message));
  // Then: it takes baton's own systemd variables out of the environment workers get.
  const host = await Promise.resolve()
    .then(() => prepareHost(o))
    .catch((e: Error) => usage(e.message));
  setLogFormat(o.logFormat);
  const setEnv = envOrUsage(cmd);
  if (file?.services) return startServices(o, file.services, given, host, setEnv);
  const command = given.length ? given : (file?.command ?? []);
  if (command.length === 0) usage('missing command: baton start --listen 8080 -- node app.js');
  const unreachable = host.service.reach?.(command, file?.cwd ?? process.cwd(), { ...(file?.env ?? process.env), ...setEnv });
  if (unreachable) fail(unreachable);
  const takeover = await takeOver(o, host);
  if (!o.listen?.length && !host.inherited.length) usage('missing --listen: baton start --listen 8080 -- node app.js');
  const conflict = conflictOf(o);
  if (conflict) usage(conflict);
  const sup = new Supervisor({
    ...serviceOptions(o, host),
    name: o.name ?? 'baton',
    controlPath: takeover?.controlPath ?? controlPath(o),
    listen: o.listen?.length ? o.listen : specsFromInherited(host.inherited),
    argv: command,
    cwd: file?.cwd ?? process.cwd(),
    env: file?.env ?? process.env,
    setEnv,
    configure: file?.reread,
  });
  sup.upgrader = upgrade;
  if (o.upgradeCheck !== undefined) await checkState(o.upgradeCheck, null);
  host.follow(sup);
  onSignals({
    stop: () => void sup.stop(),
    kill: () => sup.kill(),
    reload: () => void sup.reload({ trigger: 'signal' }).catch(() => undefined),
    // nginx/unicorn convention: TTIN adds a worker, TTOU removes one.
    scale: (by) => void sup.scale(by).catch((e: Error) => log.error(e.message)),
    upgrade: () => upgradeOnSignal(sup),
  });
  return serve(sup, takeover, controlPath(o), async () => {
    // Before generation 1: /healthz answers 503 while it starts. Loaded only when asked for.
    if (o.metrics) await (await import('../host/metrics.js')).serveMetrics([sup], o.metrics);
    await (o.upgradeStateFd === undefined ? sup.start() : resume(sup, o.upgradeStateFd));
  });
});

/** What a combination of start options cannot do, or null. */
function conflictOf(o: Record<string, unknown>): string | null {
  // A rolling reload runs both versions side by side by design.
  if (o.handoff === 'exclusive' && o.maxSurge) return '--max-surge cannot be combined with --handoff exclusive';
  // The threads are started by baton's Node runtime inside the worker (runtime/threads.ts).
  if ((o.threads as number) > 1 && o.ready === 'notify')
    return "--threads needs baton's Node.js runtime in the worker, and --ready notify is for programs without it: use --ready listen or manual";
  if ((o.threads as number) > 1 && o.distribution === 'round-robin')
    return "--threads cannot be combined with --distribution round-robin: baton passes connections over a worker's IPC channel, which only its main thread has";
  return null;
}

/** The per-service options of `baton start` (or of one of a config file's services); commander types them loosely. */
/**
 * With --takeover, before anything binds: the running baton's sockets (it may run one
 * service or several) become this one's inherited sockets.
 */
async function takeOver(o: Target & { takeover?: boolean }, host: Host): Promise<Takeover | null> {
  if (!o.takeover) return null;
  const takeover = await Promise.resolve()
    .then(() => requestTakeover(controlPath(o)))
    .catch((e: Error) => fail(e.message));
  host.inherited.push(...takeover.sockets);
  return takeover;
}

// biome-ignore lint/suspicious/noExplicitAny: commander's parsed options are untyped
function serviceOptions(o: Record<string, any>, host: Host): Omit<ServiceOptions, 'name' | 'controlPath' | 'listen' | 'argv' | 'cwd' | 'env'> {
  return {
    workers: o.workers,
    backlog: o.backlog,
    readyMode: o.ready,
    distribution: o.distribution,
    handoff: o.handoff,
    threads: o.threads,
    readyTimeoutMs: o.readyTimeout,
    drainTimeoutMs: o.drainTimeout,
    warmupPaths: o.warmup,
    warmupRequests: o.warmupRequests,
    warmupTimeMs: o.warmupTime,
    drainSpreadMs: o.drainSpread,
    maxSurge: o.maxSurge ?? null,
    maxDraining: o.maxDraining,
    maxMemoryBytes: o.maxMemory ?? null,
    keepPreviousMs: o.keepPrevious ?? 300_000,
    probationMs: o.probation ?? 0,
    maxErrorRate: o.maxErrorRate ?? 0.05,
    minRequests: o.minRequests ?? 20,
    ...host.service,
  };
}

interface SignalActions {
  stop(): void;
  kill(): void;
  reload(): void;
  scale(by: '+1' | '-1'): void;
  upgrade(): void;
}

function onSignals(a: SignalActions): void {
  let interrupts = 0;
  const stop = (sig: string): void => {
    if (++interrupts > 1) {
      log.warn(`${sig} again: killing every worker now`);
      a.kill();
      return;
    }
    log.info(`${sig}: stopping gracefully (send it again to kill at once)`);
    a.stop();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reload');
    a.reload();
  });
  process.on('SIGTTIN', () => a.scale('+1'));
  process.on('SIGTTOU', () => a.scale('-1'));
  process.on('SIGUSR2', () => a.upgrade());
}

/** `baton start` with a config file that defines several services: one supervisor each, one control socket. */
// biome-ignore lint/suspicious/noExplicitAny: commander's parsed options are untyped
async function startServices(o: Record<string, any>, services: ServiceConfig[], given: string[], host: Host, setEnv: Record<string, string>): Promise<never> {
  const only = (what: string): never => usage(`${what}: the config file defines services, each with its own; change them there`);
  if (given.length) only('a command after --');
  if (o.listen?.length) only('--listen');
  for (const svc of services) {
    const conflict = conflictOf(svc.options);
    if (conflict)
      usage(`service ${svc.name}: ${conflict.replace(/--([a-z-]+)/g, (_, k: string) => `"${k.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())}"`)}`);
    const unreachable = host.service.reach?.(svc.command, svc.cwd, svc.env);
    if (unreachable) fail(`service ${svc.name}: ${unreachable}`);
  }
  const takeover = await takeOver(o, host);
  const group = new ServiceGroup(
    o.name ?? 'baton',
    takeover?.controlPath ?? controlPath(o),
    services.map(
      (svc) =>
        new Supervisor({
          ...serviceOptions(svc.options, host),
          name: svc.name,
          grouped: true,
          controlPath: controlPath(o),
          listen: svc.options.listen as ListenSpec[],
          argv: svc.command,
          cwd: svc.cwd,
          env: svc.env,
          setEnv,
          configure: svc.reread,
        }),
    ),
    host.inherited,
  );
  group.upgrader = upgrade;
  if (o.upgradeCheck !== undefined)
    await checkState(
      o.upgradeCheck,
      services.map((s) => s.name),
    );
  host.followGroup(group);
  onSignals({
    stop: () => void group.stop(),
    kill: () => group.kill(),
    reload: () => void group.reloadAll('signal'),
    scale: () => log.warn('SIGTTIN/SIGTTOU: this baton runs several services; name one: baton scale <service> +1'),
    upgrade: () => upgradeOnSignal(group),
  });
  return serve(group, takeover, controlPath(o), async () => {
    if (o.metrics) await (await import('../host/metrics.js')).serveMetrics(group.services, o.metrics);
    await (o.upgradeStateFd === undefined ? group.start() : resume(group, o.upgradeStateFd));
  });
}

/** What `baton start` keeps in the foreground: one supervisor, or a group of them. */
interface Foreground {
  readonly stopped: Promise<void>;
  controlMoved(path: string): void;
  closeControl(): Promise<void>;
}

/** Start, finish a takeover if this is one, serve until stopped, and exit (1 if the start failed). */
async function serve(fg: Foreground, takeover: Takeover | null, path: string, start: () => Promise<void>): Promise<never> {
  try {
    await start();
    if (takeover) {
      await takeover.commit();
      fg.controlMoved(path);
      log.info(`takeover done: supervisor ${takeover.oldPid} exited; control socket ${path}`);
    }
  } catch (e) {
    takeover?.abort();
    log.error((e as Error).message);
    await fg.closeControl();
    process.exit(EXIT_FAILED);
  }
  await fg.stopped;
  await fg.closeControl();
  // Node unlinks the path it bound; after a takeover that was the temporary one.
  if (takeover) rmSync(path, { force: true });
  process.exit(0);
}

/**
 * Operands before `--` name a service; after it comes a new command line. Commander parses
 * options anywhere before `--` and gives every operand in one list, without the `--`: the
 * last ones are those that followed the first `--` of the command line.
 */
function serviceAndCommand(operands: string[], usageLine: string): { service?: string; command: string[] } {
  const args = process.argv.slice(2);
  const dd = args.indexOf('--');
  const after = dd < 0 ? 0 : args.length - dd - 1;
  const before = operands.slice(0, operands.length - after);
  if (before.length > 1) usage(`put the new command line after --: ${usageLine}`);
  return { service: before[0], command: operands.slice(before.length) };
}

addTarget(
  addEnvOptions(
    program
      .command('reload')
      .description('start a new generation and hand the service over to it: baton reload [service] [-- new command]')
      .argument('[service]', 'which service, when the config file defines several (default: all of them)')
      .argument('[command...]', 'a new command line, after --')
      .option('--wait-drained', 'return only once the old generation has exited')
      .option('--wait', 'return once probation is over: exit 0 if the new version was kept, non-zero if it was rolled back')
      .addOption(
        new Option('--probation <duration>', "watch the new version this long; roll back on a death or too many 5xx (default: the service's)").argParser(
          arg(parseOffDuration),
        ),
      )
      .addOption(new Option('--max-error-rate <rate>', 'probation: highest share of 5xx answers, e.g. 5%').argParser(arg(parseRate)))
      .addOption(
        new Option('--canary <n>', 'start n workers of the new version next to the serving ones; after probation, promote or drop them').argParser(
          arg(parseWorkers),
        ),
      )
      .option('-q, --quiet', 'print only the result')
      .option('--json', 'print the handoff record as JSON, and nothing else'),
    'the new generation (and the later ones)',
  ),
).action(async (first: string | undefined, rest: string[], o, cmd: Command) => {
  const { service, command } = serviceAndCommand(first === undefined ? rest : [first, ...rest], 'baton reload [service] -- node app.js');
  const req: ControlRequest = { cmd: 'reload', wait: o.waitDrained ? 'drained' : o.wait ? 'probation' : 'serving' };
  if (o.probation !== undefined) req.probationMs = o.probation;
  if (o.maxErrorRate !== undefined) req.maxErrorRate = o.maxErrorRate;
  if (o.canary !== undefined) req.canary = o.canary;
  if (service !== undefined) req.service = service;
  if (command.length) Object.assign(req, { argv: command, cwd: process.cwd() });
  const env = envOrUsage(cmd);
  if (Object.keys(env).length) req.env = env;
  const view = o.quiet || o.json ? null : new ReloadView(process.stdout);
  const reply = await call(o, req, (state, message) => view?.step(state, message));
  view?.end();
  if (o.json) return reply.ok ? printJson(reply.result) : failed(reply);
  if (reply.ok) {
    if (Array.isArray(reply.result)) for (const r of reply.result as GroupReload) console.log(`${r.service}: reloaded: ${formatRecord(r.record!)}`);
    else console.log(`reloaded: ${formatRecord(reply.result as HandoffRecord)}`);
    return;
  }
  console.error(`baton: ${reply.error}`);
  // Several services: each one's result; one record: the failing worker's last words.
  const results = Array.isArray(reply.detail)
    ? (reply.detail as GroupReload)
    : [{ service: null, record: (reply.detail as HandoffRecord | undefined) ?? null, error: reply.error }];
  for (const r of results) {
    const label = r.service === null ? '' : `${r.service}: `;
    if (r.service !== null) console.error(r.error === null ? `${label}reloaded: ${formatRecord(r.record!)}` : `${label}failed: ${r.error}`);
    if (r.error !== null && r.record?.output?.length) {
      console.error(`${label}last output of the failing worker:`);
      for (const l of r.record.output) console.error(`  | ${l}`);
    }
  }
  process.exit(EXIT_FAILED);
});

addTarget(
  program
    .command('rollback')
    .description('serve the previous version again: its standby at once (--keep-previous), else a reload to the previous command line')
    .argument('[service]', 'which service, when the config file defines several')
    .option('--reason <text>', 'recorded in the history and the log', 'requested by baton rollback')
    .option('-q, --quiet', 'print only the result')
    .option('--json', 'print the handoff record as JSON, and nothing else'),
).action(async (service: string | undefined, o) => {
  const req: ControlRequest = { cmd: 'rollback', reason: o.reason };
  if (service !== undefined) req.service = service;
  const view = o.quiet || o.json ? null : new ReloadView(process.stdout);
  const reply = await call(o, req, (state, message) => view?.step(state, message));
  view?.end();
  if (o.json) return reply.ok ? printJson(reply.result) : failed(reply);
  if (reply.ok) return void console.log(`rolled back: ${formatRecord(reply.result as HandoffRecord)}`);
  console.error(`baton: ${reply.error}`);
  process.exit(EXIT_FAILED);
});

addTarget(
  program
    .command('status')
    .description('show generations, workers and recent reloads')
    .argument('[service]', 'only this service, when the config file defines several')
    .option('--json', 'machine-readable')
    .option('--watch', 'refresh in place on a terminal, as top does (elsewhere: one table per interval)')
    .addOption(new Option('--interval <duration>', 'how often --watch refreshes').argParser(arg(parseDuration)).default(1000, '1s')),
).action(async (service: string | undefined, o) => {
  const req: ControlRequest = service === undefined ? { cmd: 'status' } : { cmd: 'status', service };
  if (o.watch) {
    await watchStatus(
      async () => {
        const r = await controlRequest(await targetPath(o), req);
        if (!r.ok) throw new Error(r.error);
        return r.result as StatusReport | GroupStatus;
      },
      { intervalMs: o.interval, json: o.json === true, out: process.stdout },
    );
  }
  const reply = await call(o, req);
  if (!reply.ok) failed(reply);
  if (o.json) printJson(reply.result);
  else console.log(formatAnyStatus(reply.result as StatusReport | GroupStatus));
});

addTarget(
  program
    .command('scale')
    .description('resize the pool without a reload: baton scale [service] 4 | +1 | -1')
    .usage('[options] [service] <workers>')
    .argument('[service]', 'which service, when the config file defines several')
    .argument('[workers]', 'a count, or +N / -N')
    .option('-q, --quiet', 'print nothing on success')
    .option('--json', 'print the result as JSON: { target, ready, generation }'),
).action(async (first: string | undefined, second: string | undefined, o) => {
  // Commander fills operands left to right: `baton scale 4` puts the count in the first.
  const [service, workers] = second === undefined ? [undefined, first] : [first, second];
  if (workers === undefined) usage('missing worker count: baton scale [service] 4 | +1 | -1');
  if (!/^([+-]?\d{1,4})$/.test(workers)) usage(`bad worker count '${workers}': use a number, +N or -N`);
  const req: ControlRequest = { cmd: 'scale', workers: /^[+-]/.test(workers) ? workers : Number(workers) };
  if (service !== undefined) req.service = service;
  const reply = await call(o, req);
  if (!reply.ok) failed(reply);
  const r = reply.result as { target: number; ready: number; generation: number | null };
  if (o.json) printJson(r);
  else if (!o.quiet)
    console.log(`scaled${service === undefined ? '' : ` ${service}`}: ${r.ready} of ${r.target} worker(s) ready in generation ${r.generation ?? '-'}`);
  if (r.ready !== r.target) process.exit(EXIT_FAILED);
});

addTarget(
  program
    .command('upgrade')
    .description('replace the running supervisor by a new baton: same pid, ports open, workers carry on (SIGUSR2 does the same)')
    .option('--exec <path>', `the new baton's entry point (default: ${DEFAULT_ENTRY})`)
    .option('--restart-workers', 'also replace the workers: a fresh generation takes over, as in a reload')
    .option('--drop-standby', 'end the warm standby kept for rollback first (an upgrade does not carry it)')
    .option('-q, --quiet', 'print only the result')
    .option('--json', 'print the result as JSON, and nothing else'),
).action(async (o) => {
  const req: ControlRequest = { cmd: 'upgrade', exec: pathResolve(o.exec ?? DEFAULT_ENTRY), restartWorkers: o.restartWorkers === true };
  if (o.dropStandby) req.dropStandby = true;
  const reply = await call(o, req, (state, message) => {
    if (!o.quiet && !o.json) console.log(`[${state}] ${message}`);
  });
  if (o.json) return reply.ok ? printJson(reply.result) : failed(reply);
  if (reply.ok) {
    const r = reply.result as UpgradeResult;
    const how = r.handoff ? `; workers replaced: ${formatRecord(r.handoff)}` : r.reloads ? '; workers replaced' : `; ${r.adopted} worker(s) carry on`;
    console.log(`upgraded: pid ${r.pid} now runs baton ${r.version} (was ${r.from.version}) in ${r.ms} ms${how}`);
    for (const x of r.reloads ?? []) console.log(`${x.service}: ${formatRecord(x.record!)}`);
    return;
  }
  console.error(`baton: ${reply.error}`);
  process.exit(EXIT_FAILED);
});

addTarget(
  program.command('stop').description('drain every generation and stop the supervisor').option('--json', 'print the result as JSON: { "stopped": true }'),
).action(async (o) => {
  const reply = await call(o, { cmd: 'stop' });
  if (!reply.ok) failed(reply);
  if (o.json) printJson(reply.result);
  else console.log('stopped');
});

function parseCount(max: number): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v) || Number(v) > max) throw new Error(`bad number '${v}': use 0-${max}`);
    return Number(v);
  };
}

addTarget(
  program
    .command('logs')
    .description('show worker output and baton events kept by the supervisor (the last ' + LOG_RING_LINES + ' lines)')
    .option('-f, --follow', 'keep printing new lines as they come, until interrupted')
    .addOption(new Option('-n, --lines <n>', 'how many of the last lines to show').argParser(arg(parseCount(LOG_RING_LINES))).default(100))
    .addOption(new Option('--gen <n>', 'only the output of generation n').argParser(arg(parseCount(2 ** 31))))
    .argument('[service]', "only this service's lines (and baton's own), when the config file defines several")
    .option('--json', 'one JSON object per line (JSON Lines), errors too'),
).action(async (service: string | undefined, o) => {
  const print = (e: LogEntry): void => {
    process.stdout.write(`${o.json ? JSON.stringify(e) : `${new Date(e.at).toISOString().slice(11, 23)} ${formatEntry(e)}`}\n`);
  };
  const req: ControlRequest = { cmd: 'logs', lines: o.lines, follow: o.follow === true };
  if (o.gen !== undefined) req.generation = o.gen;
  if (service !== undefined) req.service = service;
  const reply = await call(o, req, undefined, print);
  if (!reply.ok) failed(reply);
  for (const e of (reply.result as { entries: LogEntry[] }).entries) print(e);
});

program
  .command('ls')
  .description('list the supervisors this user can reach: name, pid, version, uptime, services, generation serving, control socket')
  .option('--json', 'print the list as JSON')
  .action(async (o) => {
    const list = await listSupervisors();
    if (o.json) printJson(list);
    else console.log(formatList(list));
    // A socket that never answered is not waited for.
    process.exit(0);
  });

program
  .command('completion')
  .description('print shell completion: source <(baton completion bash), or zsh')
  .addArgument(new Argument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
  .action((shell: 'bash' | 'zsh') => {
    process.stdout.write(completionScript(program, shell));
  });

function envOrUsage(cmd: Command): Record<string, string> {
  try {
    return envOf(cmd) ?? {};
  } catch (e) {
    usage((e as Error).message);
  }
}

function fail(message: string): never {
  if (jsonOutput()) printJsonError(message);
  else console.error(`baton: ${message}`);
  process.exit(EXIT_FAILED);
}

function usage(message: string): never {
  if (jsonOutput()) printJsonError(message);
  else console.error(`error: ${message}`);
  process.exit(EXIT_USAGE);
}

wantsJson(process.argv.slice(2));
try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (!(e instanceof CommanderError)) throw e;
  // --help and --version end here too, with exit code 0.
  if (e.exitCode !== 0 && jsonOutput()) printJsonError(e.message.replace(/^error: /, ''));
  process.exit(e.exitCode === 0 ? 0 : EXIT_USAGE);
}
