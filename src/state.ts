// What one baton image hands the next across a supervisor upgrade (upgrade.ts): versioned
// JSON in an in-memory file whose fd survives the execve.
//
// Versions: `format` goes up whenever the meaning of anything in it changes. A baton reads
// every format from OLDEST_FORMAT to STATE_FORMAT (an older one is migrated up as it is
// read) and refuses a newer one: an older baton cannot know what a newer one's state
// means. The refusal happens in the pre-flight check, so a downgrade "by upgrade" is refused
// while the running supervisor carries on untouched.
import { fstatSync, ftruncateSync, readFileSync, readSync, writeSync } from 'node:fs';
import { z } from 'zod';
import type { Listener } from './listeners.js';
import type { HandoffRecord } from './handoff.js';
import type { ServiceOptions } from './supervisor.js';
import type { LogEntry } from './protocol.js';

export const STATE_FORMAT = 1;
export const OLDEST_FORMAT = 1;

/** This build's version, for messages: "baton 0.1.0". */
export const VERSION = ((): string => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

const fd = z.number().int().min(0);
const ms = z.number().int().min(0);
const count = z.number().int().min(0);

// Strict: a change to Listener that is not mirrored here fails the upgrade's pre-flight (and
// test/upgrade.test.ts) instead of silently dropping a field.
const listener = z.discriminatedUnion('kind', [
  z.strictObject({ name: z.string(), kind: z.literal('tcp'), host: z.string(), port: count, fd, inherited: z.boolean().optional() }),
  z.strictObject({ name: z.string(), kind: z.literal('udp'), host: z.string(), port: count, fd, inherited: z.boolean().optional() }),
  z.strictObject({ name: z.string(), kind: z.literal('unix'), path: z.string(), fd, inherited: z.boolean().optional() }),
]) satisfies z.ZodType<Listener>;

const worker = z.strictObject({
  index: count,
  pid: z.number().int().min(1),
  /** Taken out of its slot by a scale-down or a rolling reload, still draining. */
  retired: z.boolean(),
  state: z.enum(['starting', 'ready', 'draining']),
  startedAt: ms,
  readyAt: ms.nullable(),
  drainStartedAt: ms.nullable(),
  acceptingStopped: z.boolean(),
  hasRuntime: z.boolean(),
  connections: count.nullable(),
  cut: count,
  statusText: z.string().nullable(),
  output: z.array(z.string()),
  /** This image's ends of the worker's IPC channel and output pipes (null: already closed). */
  fds: z.strictObject({ ipc: fd.nullable(), stdout: fd.nullable(), stderr: fd.nullable() }),
});

const generation = z.strictObject({
  number: z.number().int().min(1),
  argv: z.array(z.string()).min(1),
  cwd: z.string(),
  state: z.enum(['starting', 'serving', 'draining']),
  target: count,
  startedAt: ms,
  readyAt: ms.nullable(),
  drainStartedAt: ms.nullable(),
  restarts: z.array(count),
  workers: z.array(worker),
});

const stateV1 = z.strictObject({
  format: z.literal(1),
  writtenBy: z.strictObject({ version: z.string(), entry: z.string(), pid: z.number().int() }),
  writtenAt: ms,
  request: z.strictObject({
    /** Where the upgrade was asked for, so the new image can answer: the client's connection. */
    reply: z.strictObject({ fd, id: z.number().int().nullable() }).nullable(),
    restartWorkers: z.boolean(),
    requestedAt: ms,
  }),
  /**
   * The supervisor's options as they are now (scale and reloads change them). Only the JSON
   * values: what is computed (the config file's re-reader) the new image rebuilds from the
   * same command line. Loose: options other features add are carried as they are.
   */
  service: z.looseObject({
    name: z.string(),
    controlPath: z.string(),
    argv: z.array(z.string()).min(1),
    cwd: z.string(),
    workers: z.number().int().min(1),
    drainTimeoutMs: ms,
    readyTimeoutMs: ms,
  }),
  listeners: z.array(listener),
  control: z.strictObject({ path: z.string(), fd }),
  supervisor: z.strictObject({
    startedAt: ms,
    nextGeneration: z.number().int().min(1),
    nextHandoff: z.number().int().min(1),
    serving: z.number().int().nullable(),
    /** Upgrades this supervisor has been through, this one included. */
    upgrades: count,
  }),
  /** Files of the old image that only the new one can remove (the notify sockets' directory). */
  leftovers: z.array(z.string()),
  /** The handoff records of `baton status`, as they are. */
  history: z.array(z.looseObject({ id: z.number().int(), from: z.number().int().nullable(), to: z.number().int(), state: z.string(), drainedMs: ms.nullable() })),
  generations: z.array(generation),
  /** What `baton logs` shows: the supervisor's ring of recent lines, oldest first. */
  logs: z.array(z.looseObject({ at: ms, level: z.enum(['info', 'warn', 'error']), msg: z.string() })),
});

export type State = Omit<z.infer<typeof stateV1>, 'service' | 'history' | 'logs'> & { service: ServiceOptions; history: HandoffRecord[]; logs: LogEntry[] };
export type GenerationState = z.infer<typeof generation>;
export type WorkerSnapshot = z.infer<typeof worker>;

export class StateError extends Error {}

/** Parse and validate a state of any format this baton reads. */
export function decodeState(text: string): State {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new StateError('not a baton state: it is not JSON');
  }
  const format = (raw as { format?: unknown } | null)?.format;
  if (typeof format !== 'number' || !Number.isInteger(format)) throw new StateError('not a baton state: it has no format number');
  const reads = `baton ${VERSION} reads state formats ${OLDEST_FORMAT} to ${STATE_FORMAT}`;
  if (format > STATE_FORMAT) {
    throw new StateError(
      `the running supervisor's state is format ${format}, newer than this baton understands (${reads}): ` +
        'a supervisor cannot be upgraded to an older baton; to go back, stop the service and start it with the older one',
    );
  }
  if (format < OLDEST_FORMAT) {
    throw new StateError(`the running supervisor's state is format ${format}, older than this baton understands (${reads}): upgrade through an intermediate version`);
  }
  const r = stateV1.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new StateError(`invalid baton state (format ${format}) at '${issue.path.join('.')}': ${issue.message}`);
  }
  return r.data as unknown as State;
}

/** Replace the file's content with the state (positional writes: the fd's offset is shared with readers). */
export function writeState(fd: number, state: State): void {
  const buf = Buffer.from(JSON.stringify(state));
  ftruncateSync(fd, 0);
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off, off);
}

export function readState(fd: number): State {
  const size = fstatSync(fd).size;
  const buf = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const n = readSync(fd, buf, off, size - off, off);
    if (n === 0) break;
    off += n;
  }
  return decodeState(buf.toString('utf8', 0, off));
}
