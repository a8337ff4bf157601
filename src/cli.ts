#!/usr/bin/env node
// baton's command line: `start` runs a supervisor in the foreground; every other command
// talks to a running one over its control socket.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { availableParallelism } from 'node:os';
import { parseListen, type ListenSpec } from './listeners.js';
import { parseDuration } from './duration.js';
import { controlPathFor, controlRequest } from './control.js';
import { Supervisor, type StatusReport } from './supervisor.js';
import { formatRecord, formatStatus } from './report.js';
import type { ControlReply, ControlRequest } from './protocol.js';
import type { HandoffRecord } from './handoff.js';
import { log } from './log.js';

/** Exit codes: 0 success, 1 the operation failed, 2 the command line was wrong. */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

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

function parseBacklog(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new Error(`bad backlog '${v}': use 1-65535`);
  return Number(v);
}

function controlPath(o: { control?: string; name: string }): string {
  return o.control ?? controlPathFor(o.name);
}

function addTarget(cmd: Command): Command {
  return cmd
    .addOption(new Option('--name <name>', 'service name; finds the control socket').default('baton'))
    .addOption(new Option('--control <path>', 'control socket path (overrides --name)'));
}

/** Send one request and print errors the same way for every command. */
async function call(o: { control?: string; name: string }, req: ControlRequest, onEvent?: (state: string, message: string) => void): Promise<ControlReply> {
  try {
    return await controlRequest(controlPath(o), req, (e) => onEvent?.(e.state, e.message));
  } catch (e) {
    console.error(`baton: ${(e as Error).message}`);
    process.exit(EXIT_FAILED);
  }
}

const program = new Command('baton')
  .description('Replace a running server with a new version without losing a connection')
  .enablePositionalOptions()
  .exitOverride()
  .showSuggestionAfterError();

addTarget(
  program
    .command('start')
    .description('run a supervisor in the foreground: baton start --listen 8080 -- node app.js')
    .passThroughOptions()
    .argument('[command...]', 'the program to run, after --')
    .addOption(
      new Option('-l, --listen <spec>', 'PORT, HOST:PORT, [IPV6]:PORT or unix:/path; name=SPEC names it; repeatable')
        .argParser((v: string, prev: ListenSpec[] | undefined) => [...(prev ?? []), arg(parseListen)(v)]),
    )
    .addOption(new Option('-w, --workers <n>', 'workers per generation, or auto (one per CPU)').argParser(arg(parseWorkers)).default(1))
    .addOption(new Option('--ready <mode>', 'when a worker is ready: listen (all listeners served) or manual (the app calls ready())').choices(['listen', 'manual']).default('listen'))
    .addOption(new Option('--distribution <mode>', 'shared: workers accept from the kernel queue; round-robin: baton accepts and deals connections out evenly').choices(['shared', 'round-robin']).default('shared'))
    .addOption(new Option('--ready-timeout <duration>', 'how long a new generation may take to be ready').argParser(arg(parseDuration)).default(30_000, '30s'))
    .addOption(new Option('--drain-timeout <duration>', 'how long an old generation may take to finish').argParser(arg(parseDuration)).default(30_000, '30s'))
    .addOption(new Option('--max-surge <n>', 'rolling reload: replace at most n workers at a time (default: all at once)').argParser(arg(parseWorkers)))
    .addOption(new Option('--max-draining <n>', 'a reload waits while n old generations are still draining').argParser(arg(parseWorkers)).default(4))
    .addOption(new Option('--backlog <n>', 'listen backlog (capped by net.core.somaxconn)').argParser(arg(parseBacklog)).default(4096)),
).action(async (command: string[], o) => {
  if (command.length === 0) usage('missing command: baton start --listen 8080 -- node app.js');
  if (!o.listen?.length) usage('missing --listen: baton start --listen 8080 -- node app.js');
  const sup = new Supervisor({
    name: o.name,
    controlPath: controlPath(o),
    listen: o.listen,
    argv: command,
    cwd: process.cwd(),
    env: process.env,
    workers: o.workers,
    backlog: o.backlog,
    readyMode: o.ready,
    distribution: o.distribution,
    readyTimeoutMs: o.readyTimeout,
    drainTimeoutMs: o.drainTimeout,
    maxSurge: o.maxSurge ?? null,
    maxDraining: o.maxDraining,
  });
  let interrupts = 0;
  const stop = (sig: string): void => {
    if (++interrupts > 1) {
      log.warn(`${sig} again: killing every worker now`);
      sup.kill();
      return;
    }
    log.info(`${sig}: stopping gracefully (send it again to kill at once)`);
    void sup.stop();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    log.info('SIGHUP: reload');
    sup.reload({ trigger: 'signal' }).catch(() => undefined);
  });
  // nginx/unicorn convention: TTIN adds a worker, TTOU removes one.
  process.on('SIGTTIN', () => void sup.scale('+1').catch((e: Error) => log.error(e.message)));
  process.on('SIGTTOU', () => void sup.scale('-1').catch((e: Error) => log.error(e.message)));
  try {
    await sup.start();
  } catch (e) {
    log.error((e as Error).message);
    await sup.closeControl();
    process.exit(EXIT_FAILED);
  }
  await sup.stopped;
  await sup.closeControl();
  process.exit(0);
});

addTarget(
  program
    .command('reload')
    .description('start a new generation and hand the service over to it: baton reload [-- new command]')
    .passThroughOptions()
    .argument('[command...]', 'a new command line, after --')
    .option('--wait-drained', 'return only once the old generation has exited')
    .option('-q, --quiet', 'print only the result'),
).action(async (command: string[], o) => {
  const req: ControlRequest = { cmd: 'reload', wait: o.waitDrained ? 'drained' : 'serving' };
  if (command.length) Object.assign(req, { argv: command, cwd: process.cwd() });
  const reply = await call(o, req, (state, message) => {
    if (!o.quiet) console.log(`[${state}] ${message}`);
  });
  if (reply.ok) {
    console.log(`reloaded: ${formatRecord(reply.result as HandoffRecord)}`);
    return;
  }
  console.error(`baton: ${reply.error}`);
  const rec = reply.detail as HandoffRecord | undefined;
  if (rec?.output?.length) {
    console.error(`last output of the failing worker:`);
    for (const l of rec.output) console.error(`  | ${l}`);
  }
  process.exit(EXIT_FAILED);
});

addTarget(program.command('status').description('show generations, workers and recent reloads').option('--json', 'machine-readable')).action(async (o) => {
  const reply = await call(o, { cmd: 'status' });
  if (!reply.ok) {
    console.error(`baton: ${reply.error}`);
    process.exit(EXIT_FAILED);
  }
  console.log(o.json ? JSON.stringify(reply.result, null, 2) : formatStatus(reply.result as StatusReport));
});

addTarget(
  program
    .command('scale')
    .description('resize the pool without a reload: baton scale 4 | +1 | -1')
    .argument('<workers>', 'a count, or +N / -N')
    .option('-q, --quiet', 'print nothing on success'),
).action(async (workers: string, o) => {
  if (!/^([+-]?\d{1,4})$/.test(workers)) usage(`bad worker count '${workers}': use a number, +N or -N`);
  const reply = await call(o, { cmd: 'scale', workers: /^[+-]/.test(workers) ? workers : Number(workers) });
  if (!reply.ok) {
    console.error(`baton: ${reply.error}`);
    process.exit(EXIT_FAILED);
  }
  const r = reply.result as { target: number; ready: number; generation: number | null };
  if (!o.quiet) console.log(`scaled: ${r.ready} of ${r.target} worker(s) ready in generation ${r.generation ?? '-'}`);
  if (r.ready !== r.target) process.exit(EXIT_FAILED);
});

addTarget(program.command('stop').description('drain every generation and stop the supervisor')).action(async (o) => {
  const reply = await call(o, { cmd: 'stop' });
  if (!reply.ok) {
    console.error(`baton: ${reply.error}`);
    process.exit(EXIT_FAILED);
  }
  console.log('stopped');
});

function usage(message: string): never {
  console.error(`error: ${message}`);
  process.exit(EXIT_USAGE);
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : EXIT_USAGE);
  throw e;
}
