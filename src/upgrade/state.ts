// What one baton image hands the next across a supervisor upgrade (upgrade.ts): versioned
// JSON in an in-memory file whose fd survives the execve.
//
// Versions: `format` goes up whenever the meaning of anything in it changes. A baton reads
// every format from OLDEST_FORMAT to STATE_FORMAT (an older one is migrated up as it is
// read) and refuses a newer one: an older baton cannot know what a newer one's state
// means. The refusal happens in the pre-flight check, so a downgrade "by upgrade" is refused
// while the running supervisor carries on untouched.
//
// Format 1: one supervisor. Format 2: a list of services (one for `baton start -- cmd`,
// several for a config file's `services`) and the control socket they share; each service
// carries its own list of generations, each with a state, so a generation of another kind
// (a warm standby, say) is one more state there, in a later format.
import { fstatSync, ftruncateSync, readSync, writeSync } from 'node:fs';
import * as v from 'valibot';
import type { Listener } from '../common/address.js';
import type { LogEntry } from '../common/protocol.js';
import { VERSION } from '../common/version.js';
import type { HandoffRecord } from '../supervisor/handoff.js';
import type { ServiceOptions } from '../supervisor/supervisor.js';
import type { WorkerSnapshot } from '../supervisor/worker.js';

export const STATE_FORMAT = 2;
export const OLDEST_FORMAT = 1;

/** This build's version, for messages: "baton 0.1.0". */
export { VERSION };

const int = (min: number) => v.pipe(v.number(), v.integer(), v.minValue(min));
const fd = int(0);
const ms = int(0);
const count = int(0);

// Strict: a change to Listener that is not mirrored here fails the upgrade's pre-flight (and
// test/upgrade.test.ts) instead of silently dropping a field.
const listener = v.variant('kind', [
  v.strictObject({ name: v.string(), kind: v.literal('tcp'), host: v.string(), port: count, fd, inherited: v.optional(v.boolean()) }),
  v.strictObject({ name: v.string(), kind: v.literal('udp'), host: v.string(), port: count, fd, inherited: v.optional(v.boolean()) }),
  v.strictObject({ name: v.string(), kind: v.literal('unix'), path: v.string(), fd, inherited: v.optional(v.boolean()) }),
]) satisfies v.GenericSchema<unknown, Listener>;

const worker = v.strictObject({
  index: count,
  pid: int(1),
  /** Taken out of its slot by a scale-down or a rolling reload, still draining. */
  retired: v.boolean(),
  state: v.picklist(['starting', 'ready', 'draining']),
  startedAt: ms,
  readyAt: v.nullable(ms),
  drainStartedAt: v.nullable(ms),
  acceptingStopped: v.boolean(),
  hasRuntime: v.boolean(),
  connections: v.nullable(count),
  cut: count,
  statusText: v.nullable(v.string()),
  output: v.array(v.string()),
  /** This image's ends of the worker's IPC channel and output pipes (null: already closed). */
  fds: v.strictObject({ ipc: v.nullable(fd), stdout: v.nullable(fd), stderr: v.nullable(fd) }),
}) satisfies v.GenericSchema<unknown, WorkerSnapshot>;

const generation = v.strictObject({
  number: int(1),
  argv: v.pipe(v.array(v.string()), v.minLength(1)),
  cwd: v.string(),
  state: v.picklist(['starting', 'serving', 'draining']),
  target: count,
  startedAt: ms,
  readyAt: v.nullable(ms),
  drainStartedAt: v.nullable(ms),
  restarts: v.array(count),
  workers: v.array(worker),
});

const writtenBy = v.strictObject({ version: v.string(), entry: v.string(), pid: v.pipe(v.number(), v.integer()) });
const request = v.strictObject({
  /** Where the upgrade was asked for, so the new image can answer: the client's connection. */
  reply: v.nullable(v.strictObject({ fd, id: v.nullable(v.pipe(v.number(), v.integer())) })),
  restartWorkers: v.boolean(),
  requestedAt: ms,
});
/**
 * The supervisor's options as they are now (scale and reloads change them). Only the JSON
 * values: what is computed (the config file's re-reader) the new image rebuilds from the
 * same command line. Loose: options other features add are carried as they are.
 */
const options = v.looseObject({
  name: v.string(),
  controlPath: v.string(),
  argv: v.pipe(v.array(v.string()), v.minLength(1)),
  cwd: v.string(),
  workers: int(1),
  drainTimeoutMs: ms,
  readyTimeoutMs: ms,
});
const supervisor = v.strictObject({
  startedAt: ms,
  nextGeneration: int(1),
  nextHandoff: int(1),
  serving: v.nullable(v.pipe(v.number(), v.integer())),
});
/** The handoff records of `baton status`, as they are. */
const history = v.array(
  v.looseObject({
    id: v.pipe(v.number(), v.integer()),
    from: v.nullable(v.pipe(v.number(), v.integer())),
    to: v.pipe(v.number(), v.integer()),
    state: v.string(),
    drainedMs: v.nullable(ms),
  }),
);
/** What `baton logs` shows: the supervisor's ring of recent lines, oldest first. */
const logs = v.array(v.looseObject({ at: ms, level: v.picklist(['info', 'warn', 'error']), msg: v.string() }));

const stateV1 = v.strictObject({
  format: v.literal(1),
  writtenBy,
  writtenAt: ms,
  request,
  service: options,
  listeners: v.array(listener),
  control: v.strictObject({ path: v.string(), fd }),
  supervisor: v.strictObject({ ...supervisor.entries, upgrades: count }),
  leftovers: v.array(v.string()),
  history,
  generations: v.array(generation),
  logs,
});

/** One service: what one Supervisor runs. */
const service = v.strictObject({
  options,
  listeners: v.array(listener),
  supervisor,
  history,
  generations: v.array(generation),
});

const stateV2 = v.strictObject({
  format: v.literal(2),
  writtenBy,
  writtenAt: ms,
  request,
  /** The one control socket: the supervisor's own, or the one a group of services shares. */
  control: v.strictObject({ path: v.string(), fd }),
  /** Several services under one baton (a config file's `services`), or null for one supervisor. */
  group: v.nullable(v.strictObject({ name: v.string(), startedAt: ms })),
  /** Upgrades this baton has been through, this one included. */
  upgrades: count,
  /** Files of the old image that only the new one can remove (the notify sockets' directory). */
  leftovers: v.array(v.string()),
  services: v.pipe(v.array(service), v.minLength(1)),
  logs,
});

/** Format 1 (one supervisor, everything at the top) as format 2: a list of one service. */
function fromV1(s: v.InferOutput<typeof stateV1>): v.InferOutput<typeof stateV2> {
  const { upgrades, ...sup } = s.supervisor;
  return {
    format: 2,
    writtenBy: s.writtenBy,
    writtenAt: s.writtenAt,
    request: s.request,
    control: s.control,
    group: null,
    upgrades,
    leftovers: s.leftovers,
    services: [{ options: s.service, listeners: s.listeners, supervisor: sup, history: s.history, generations: s.generations }],
    logs: s.logs,
  };
}

export type ServiceState = Omit<v.InferOutput<typeof service>, 'options' | 'history'> & { options: ServiceOptions; history: HandoffRecord[] };
export type State = Omit<v.InferOutput<typeof stateV2>, 'services' | 'logs'> & { services: ServiceState[]; logs: LogEntry[] };
export type GenerationState = v.InferOutput<typeof generation>;

export class StateError extends Error {}

/** Parse and validate a state of any format this baton reads; `format`: the one it was written in. */
export function decodeState(text: string): { state: State; format: number } {
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
    throw new StateError(
      `the running supervisor's state is format ${format}, older than this baton understands (${reads}): upgrade through an intermediate version`,
    );
  }
  const r = format === 1 ? v.safeParse(stateV1, raw) : v.safeParse(stateV2, raw);
  if (!r.success) {
    const issue = r.issues[0];
    throw new StateError(`invalid baton state (format ${format}) at '${v.getDotPath(issue) ?? ''}': ${issue.message}`);
  }
  return { state: (r.output.format === 1 ? fromV1(r.output) : r.output) as unknown as State, format };
}

/** Replace the file's content with the state (positional writes: the fd's offset is shared with readers). */
export function writeState(fd: number, state: State): void {
  const buf = Buffer.from(JSON.stringify(state));
  ftruncateSync(fd, 0);
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off, off);
}

export function readState(fd: number): { state: State; format: number } {
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
