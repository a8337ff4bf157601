// The config file: `baton.config.json`, or `.js` / `.mjs` exporting an object. It holds what
// `baton start` takes on its command line (same names, camelCase), the command, and env for
// the workers. Flags given on the command line win over the file. The file is read again on
// every reload, so editing it and reloading is a deploy; a file that does not validate fails
// that reload and changes nothing. Relative paths in the file (cwd, control, unix listeners)
// are meant from the file's directory; without `cwd`, the command runs where `baton start`
// was run, as it would typed in that shell, wherever the file is.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import * as v from 'valibot';
import { describe, type ListenSpec, type MetricsAddress, parseListen, parseMetricsAddress } from '../common/address.js';
import { parseDuration, parseOffDuration, parseRate } from '../common/duration.js';
import { parseSize } from '../common/size.js';
import { parseSignal } from '../host/host.js';
import { log, serviceLog } from '../log/log.js';
import type { Reconfigurable } from '../supervisor/supervisor.js';
import { readEnvFile } from './env.js';

export const CONFIG_NAMES = ['baton.config.json', 'baton.config.js', 'baton.config.mjs'] as const;

export class ConfigError extends Error {}

/** How a value was wrong, for every check of a key: `expected <what>, got <input>`. */
function expected(what: string): (issue: { input: unknown }) => string {
  return (issue) => `expected ${what}, got ${show(issue.input)}`;
}

function show(x: unknown): string {
  if (x === undefined) return 'nothing';
  if (Array.isArray(x)) return 'a list';
  const text = JSON.stringify(x) ?? String(x);
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * `schema` for a plain object, else the error `expected <what>`: valibot takes arrays for
 * objects and records. (Typed as `schema`: it fails before it could output anything.)
 */
function plain<S extends v.GenericSchema>(schema: S, what: string) {
  const refused = v.never(expected(what)) as unknown as S;
  return v.lazy((input) => (isPlainObject(input) ? schema : refused));
}

/** An object of known keys; unknown ones are found by unknownKeys(), all at once. */
function object<E extends v.ObjectEntries>(entries: E, what: string) {
  return plain(v.object(entries, expected(what)), what);
}

/** A value parsed by one of the command line's own parsers, so both accept the same text. */
function parsed<T>(what: string, parse: (text: string) => T) {
  return v.pipe(
    v.string(expected(what)),
    v.rawTransform<string, T>(({ dataset, addIssue, NEVER }) => {
      try {
        return parse(dataset.value);
      } catch {
        addIssue({ message: `expected ${what}, got ${show(dataset.value)}` });
        return NEVER;
      }
    }),
  );
}

const count = (max: number, auto: boolean) => {
  const what = `a number from 1 to ${max}${auto ? ' or "auto"' : ''}`;
  const n = v.pipe(v.number(expected(what)), v.integer(expected(what)), v.minValue(1, expected(what)), v.maxValue(max, expected(what)));
  if (!auto) return n;
  const cpus = v.pipe(
    v.literal('auto'),
    v.transform(() => availableParallelism()),
  );
  return v.lazy((input) => (input === 'auto' ? cpus : n));
};

const duration = parsed('a duration such as "30s", "500ms" or "2m"', parseDuration);
const offDuration = v.union(
  [v.literal(0), parsed('a duration such as "5m", or 0 for off', parseOffDuration)],
  expected('a duration such as "5m", or 0 for off'),
);

/**
 * `--warmup`: the paths a new worker asks its own server for before it is ready, comma
 * separated (`/,/api/items`), or `off`.
 */
export function parseWarmupPaths(text: string): string[] {
  if (text === 'off' || text === '') return [];
  const paths = text.split(',').map((p) => p.trim());
  const bad = paths.find((p) => !p.startsWith('/') || /\s/.test(p));
  if (bad !== undefined) throw new Error(`bad --warmup '${text}': paths start with "/" and hold no spaces (e.g. "/,/api/items"), or "off"`);
  return paths;
}

const WARMUP = 'paths such as "/,/api/items", a list of them, or "off"';
const warmupText = parsed(WARMUP, parseWarmupPaths);
const warmupList = v.pipe(
  v.array(v.string(expected(WARMUP)), expected(WARMUP)),
  v.transform((ps: string[]) => ps.join(',')),
  v.rawTransform<string, string[]>(({ dataset, addIssue, NEVER }) => {
    try {
      return parseWarmupPaths(dataset.value);
    } catch {
      addIssue({ message: `expected ${WARMUP}, got ${show(dataset.value)}` });
      return NEVER;
    }
  }),
);

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const LISTENER = '"PORT", "HOST:PORT", "[IPV6]:PORT", "unix:/path" or { "name": …, "address": … }';

/**
 * One listener, parsed by `--listen`'s own parser (its "bad --listen 'x':" prefix names a flag
 * the file does not have). A relative unix path is meant from the file's directory.
 */
function listener(dir: string, named: boolean) {
  return v.rawTransform<{ address: string; name?: string | undefined }, ListenSpec>(({ dataset, addIssue, NEVER }) => {
    const { address, name } = dataset.value;
    const text = address.replace(/^((?:[A-Za-z0-9_.-]+=)?unix:)(.+)$/, (_, prefix: string, path: string) => prefix + resolve(dir, path));
    try {
      const spec = parseListen(text);
      return name === undefined ? spec : { ...spec, name };
    } catch (e) {
      const message = (e as Error).message.replace(/^bad --listen '[^']*': /, '');
      addIssue(named ? { message, path: [{ type: 'object', origin: 'value', input: dataset.value, key: 'address', value: address }] } : { message });
      return NEVER;
    }
  });
}

/** A string or port number, or `{ name, address }`: chosen by what the entry is, so its errors are that form's. */
const listenEntry = (dir: string) => {
  const text = v.pipe(
    v.string(expected(LISTENER)),
    v.transform((address) => ({ address })),
    listener(dir, false),
  );
  const port = v.pipe(
    v.number(expected(LISTENER)),
    v.integer(expected(LISTENER)),
    v.minValue(0, expected(LISTENER)),
    v.maxValue(65535, expected(LISTENER)),
    v.transform((p) => ({ address: String(p) })),
    listener(dir, false),
  );
  const named = v.pipe(
    object(
      {
        name: v.optional(
          v.pipe(
            v.string(expected('a name of letters, digits, "_", ".", "-"')),
            v.regex(NAME, expected('a name of letters, digits, "_", ".", "-" (at most 64)')),
          ),
        ),
        address: v.string(expected(`"PORT", "HOST:PORT", "[IPV6]:PORT" or "unix:/path"`)),
      },
      LISTENER,
    ),
    listener(dir, true),
  );
  return v.lazy((input) => (isPlainObject(input) ? named : typeof input === 'number' ? port : text));
};

const path = (what: string, dir: string) =>
  v.pipe(
    v.string(expected(what)),
    v.minLength(1, expected(what)),
    v.transform((p) => resolve(dir, p)),
  );
const text = (what: string) => v.pipe(v.string(expected(what)), v.minLength(1, expected(what)));
const oneOf = <const T extends string[]>(options: T) =>
  v.picklist(
    options,
    expected(
      options
        .map((o) => `"${o}"`)
        .join(options.length > 2 ? ', ' : ' or ')
        .replace(/, ([^,]*)$/, ' or $1'),
    ),
  );

/**
 * `envFile`: a path or a list of them, read (each time the file is) into the variables they
 * set, the later files over the earlier; `env` goes over them.
 */
const envFiles = (dir: string) => {
  const what = 'a path or a list of paths of env files';
  const one = v.pipe(v.string(expected(what)), v.minLength(1, expected(what)));
  return v.pipe(
    v.union([one, v.array(one, expected(what))], expected(what)),
    v.rawTransform<string | string[], Record<string, string>>(({ dataset, addIssue, NEVER }) => {
      const out: Record<string, string> = {};
      for (const p of [dataset.value].flat()) {
        try {
          Object.assign(out, readEnvFile(resolve(dir, p)));
        } catch (e) {
          addIssue({ message: `${p}: ${(e as Error).message}` });
          return NEVER;
        }
      }
      return out;
    }),
  );
};

/** Relative paths in the file (listeners, control, cwd, envFile) are meant from `dir`, the file's directory. */
const fieldsFor = (dir: string) => ({
  name: v.optional(v.pipe(v.string(expected('a service name')), v.regex(NAME, expected('a service name of letters, digits, "_", ".", "-"')))),
  control: v.optional(path('a path', dir)),
  listen: v.optional(v.pipe(v.array(listenEntry(dir), expected(`a list of listeners: ${LISTENER}`)), v.minLength(1, expected('at least one listener')))),
  workers: v.optional(count(1024, true)),
  threads: v.optional(count(64, false)),
  ready: v.optional(oneOf(['auto', 'listen', 'manual', 'notify'])),
  readyAfter: v.optional(duration),
  watchdog: v.optional(duration),
  drainSignal: v.optional(parsed('a signal such as "SIGTERM" or "SIGQUIT"', parseSignal)),
  stopTimeout: v.optional(duration),
  user: v.optional(text('a user name or uid')),
  group: v.optional(text('a group name or gid')),
  distribution: v.optional(oneOf(['shared', 'round-robin'])),
  handoff: v.optional(oneOf(['overlap', 'exclusive'])),
  readyTimeout: v.optional(duration),
  drainTimeout: v.optional(duration),
  warmup: v.optional(v.lazy((input) => (Array.isArray(input) ? warmupList : warmupText))),
  warmupRequests: v.optional(
    v.pipe(
      v.number(expected('a number from 0 to 100000')),
      v.integer(expected('a number from 0 to 100000')),
      v.minValue(0, expected('a number from 0 to 100000')),
      v.maxValue(100_000, expected('a number from 0 to 100000')),
    ),
  ),
  warmupTime: v.optional(duration),
  drainSpread: v.optional(duration),
  maxSurge: v.optional(count(1024, true)),
  maxDraining: v.optional(count(1024, false)),
  maxMemory: v.optional(parsed('a size such as "512M" or "1G"', parseSize)),
  keepPrevious: v.optional(offDuration),
  probation: v.optional(offDuration),
  maxErrorRate: v.optional(parsed('a share such as "5%"', parseRate)),
  minRequests: v.optional(count(1_000_000, false)),
  backlog: v.optional(count(65535, false)),
  logFormat: v.optional(oneOf(['text', 'json'])),
  metrics: v.optional(parsed<MetricsAddress>('"HOST:PORT" or "PORT"', parseMetricsAddress)),
  command: v.optional(
    v.pipe(
      v.array(text('a non-empty string'), expected('a list of strings such as ["node", "app.js"]')),
      v.minLength(1, expected('a list of strings such as ["node", "app.js"]')),
    ),
  ),
  env: v.optional(plain(v.record(v.string(), v.string(expected('a string'))), 'an object of strings such as { "NODE_ENV": "production" }')),
  envFile: v.optional(envFiles(dir)),
  cwd: v.optional(path('a directory', dir)),
});

/**
 * What each of several services (`services`) sets for itself; the same keys at the top of the
 * file are the default for every service. The rest (control socket, logs, metrics, user,
 * signals, stop timeout) belongs to the baton process and stays at the top.
 */
export const SERVICE_KEYS = [
  'listen',
  'command',
  'env',
  'envFile',
  'cwd',
  'workers',
  'threads',
  'ready',
  'distribution',
  'handoff',
  'readyTimeout',
  'drainTimeout',
  'warmup',
  'warmupRequests',
  'warmupTime',
  'drainSpread',
  'maxSurge',
  'maxDraining',
  'maxMemory',
  'keepPrevious',
  'probation',
  'maxErrorRate',
  'minRequests',
  'backlog',
] as const;

const SERVICES = 'an object of services such as { "api": { "listen": [8080], "command": ["node", "api.js"] } }';

const schemaFor = (dir: string) => {
  const fields = fieldsFor(dir);
  const service = object(
    Object.fromEntries(SERVICE_KEYS.map((k) => [k, fields[k]])) as Pick<typeof fields, (typeof SERVICE_KEYS)[number]>,
    'an object of settings',
  );
  const services = v.record(v.pipe(v.string(), v.regex(NAME)), service);
  return object(
    {
      ...fields,
      services: v.optional(plain(services, SERVICES)),
    },
    'an object of settings',
  );
};

export type FileOptions = v.InferOutput<ReturnType<typeof schemaFor>>;
/** Every key a config file may have. */
export const CONFIG_KEYS: readonly string[] = Object.keys(fieldsFor('/')).concat('services');

/** `listen[0].address`, `env.NODE_ENV`. */
function where(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

/** A near miss of a known key: kebab-case for the camelCase name, or one typo away. */
function suggest(key: string): string | undefined {
  const camel = key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  if (CONFIG_KEYS.includes(camel)) return camel;
  return CONFIG_KEYS.find((k) => distance(k.toLowerCase(), key.toLowerCase()) <= 2);
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * Every key the file has that it may not: at the top, in each service, in each listener
 * object. Found here rather than by the schema, which stops at the first one.
 */
function unknownKeys(raw: unknown): string[] {
  if (!isPlainObject(raw)) return [];
  const out: string[] = [];
  const check = (obj: unknown, known: readonly string[], at: string, why: (k: string) => string): void => {
    if (!isPlainObject(obj)) return;
    for (const k of Object.keys(obj)) if (!known.includes(k)) out.push(`${at}unknown key "${k}"${why(k)}`);
  };
  const listeners = (list: unknown, at: string): void => {
    if (Array.isArray(list))
      for (const [i, l] of list.entries()) check(l, ['name', 'address'], `${at}listen[${i}]: `, () => ' (expected "name" and "address")');
  };
  check(raw, CONFIG_KEYS, '', (k) => {
    const hint = suggest(k);
    return hint ? ` (did you mean "${hint}"?)` : '';
  });
  listeners(raw.listen, '');
  if (isPlainObject(raw.services)) {
    for (const [name, svc] of Object.entries(raw.services)) {
      check(svc, SERVICE_KEYS, `services.${name}: `, (k) =>
        CONFIG_KEYS.includes(k)
          ? ` ("${k}" is for the whole baton: set it at the top of the file)`
          : ` (a service has ${SERVICE_KEYS.map((x) => `"${x}"`).join(', ')})`,
      );
      if (isPlainObject(svc)) listeners(svc.listen, `services.${name}.`);
    }
  }
  return out;
}

function describeIssue(issue: v.BaseIssue<unknown>): string {
  const path = (issue.path ?? []).map((p) => p.key as PropertyKey);
  const last = issue.path?.at(-1);
  // A services key that is no service name.
  if (last?.origin === 'key') return `services: "${String(last.key)}" is not a service name: use letters, digits, "_", ".", "-" (at most 64)`;
  return `${path.length ? `${where(path)}: ` : ''}${issue.message}`;
}

function problemsOf(raw: unknown, schema: v.GenericSchema): { problems: string[]; output: unknown } {
  if (!isPlainObject(raw)) return { problems: [`expected an object of settings, got ${show(raw)}`], output: null };
  const r = v.safeParse(schema, raw);
  return { problems: [...unknownKeys(raw), ...(r.success ? [] : r.issues.map(describeIssue))], output: r.output };
}

/** Validate what a config file in `dir` holds; `label` names the file in every error. */
export function validateConfig(raw: unknown, label: string, dir: string): FileOptions {
  const { problems, output } = problemsOf(raw, schemaFor(dir));
  if (problems.length) throw new ConfigError(problems.map((p) => `${label}: ${p}`).join('\n'));
  const data = output as FileOptions;
  if (!data.services) return data;
  const services = Object.entries(data.services);
  if (services.length === 0) problems.push('services: expected at least one service');
  for (const key of ['listen', 'command'] as const) {
    if (data[key] !== undefined) problems.push(`${key}: with "services", each service has its own ${key}; move it into them`);
  }
  const owner = new Map<string, string>();
  for (const [name, svc] of services) {
    if (!svc.listen) problems.push(`services.${name}: missing "listen"`);
    if (!svc.command) problems.push(`services.${name}: missing "command"`);
    for (const l of svc.listen ?? []) {
      if (l.kind !== 'unix' && l.port === 0) continue; // a port of the kernel's choosing: one each
      const key = describe(l);
      const other = owner.get(key);
      if (other !== undefined) problems.push(`services.${name}: ${key} is also ${other}'s: a socket belongs to one service`);
      owner.set(key, name);
    }
  }
  if (problems.length) throw new ConfigError(problems.map((p) => `${label}: ${p}`).join('\n'));
  return data;
}

/** The one config file in `dir`, or null; two of them would leave the choice to a guess. */
export function findConfig(dir: string): string | null {
  const found = CONFIG_NAMES.map((n) => join(dir, n)).filter((p) => existsSync(p));
  if (found.length > 1)
    throw new ConfigError(`several config files in ${dir} (${found.map((p) => p.slice(dir.length + 1)).join(', ')}): keep one, or choose with --config`);
  return found[0] ?? null;
}

let loads = 0;

async function load(path: string, label: string): Promise<unknown> {
  if (path.endsWith('.json')) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new ConfigError(`${label}: cannot read: ${(e as Error).message}`);
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`${label}: not valid JSON: ${(e as Error).message}`);
    }
  }
  if (!existsSync(path)) throw new ConfigError(`${label}: no such file`);
  // Read again on every reload: a CommonJS file sits in require's cache, an ES module in the
  // loader's, which only a new URL gets past.
  delete createRequire(path).cache[path];
  try {
    const mod = (await import(`${pathToFileURL(path).href}?load=${++loads}`)) as { default?: unknown };
    return mod.default;
  } catch (e) {
    throw new ConfigError(`${label}: cannot load: ${(e as Error).message}`);
  }
}

/** Read and validate a config file. Relative paths in it are meant from its own directory. */
export async function readConfig(path: string, label = path): Promise<FileOptions> {
  return validateConfig(await load(path, label), label, dirname(path));
}

/**
 * The service the other commands (reload, status, ...) talk to when neither --name nor
 * --control is given: the config file's `name` / `control`. The rest of the file is not
 * validated here: an edited file that is wrong must still reach the supervisor, which
 * refuses the reload with the reason.
 */
export async function targetOf(configPath: string | undefined): Promise<{ name?: string; control?: string }> {
  const path = configPath ? resolve(configPath) : findConfig(process.cwd());
  if (!path) return {};
  const label = configPath ?? path.slice(process.cwd().length + 1);
  const fields = fieldsFor(dirname(path));
  const raw = await load(path, label);
  const r = v.safeParse(v.object({ name: fields.name, control: fields.control }), isPlainObject(raw) ? raw : {});
  if (r.success) return r.output;
  throw new ConfigError(r.issues.map((i) => `${label}: ${describeIssue(i)}`).join('\n'));
}

/** Keys that become ServiceOptions as they are, or under another name. */
const RELOADABLE = {
  workers: 'workers',
  ready: 'readyMode',
  readyTimeout: 'readyTimeoutMs',
  drainTimeout: 'drainTimeoutMs',
  warmup: 'warmupPaths',
  warmupRequests: 'warmupRequests',
  warmupTime: 'warmupTimeMs',
  drainSpread: 'drainSpreadMs',
  maxSurge: 'maxSurge',
  maxDraining: 'maxDraining',
  maxMemory: 'maxMemoryBytes',
} as const satisfies Partial<Record<keyof FileOptions, keyof Reconfigurable>>;
/** Fixed for the life of the supervisor: the sockets, its name, its own outputs. */
const FIXED = [
  'name',
  'control',
  'listen',
  'backlog',
  'distribution',
  'handoff',
  'threads',
  'readyAfter',
  'watchdog',
  'drainSignal',
  'stopTimeout',
  'user',
  'group',
  'logFormat',
  'metrics',
  'keepPrevious',
  'probation',
  'maxErrorRate',
  'minRequests',
] as const;

/** One of a file's `services`: its settings as `baton start` would have them, and how to read them again. */
export interface ServiceConfig {
  name: string;
  /** The start command's options, with this service's own values over the file's top-level ones. */
  options: Record<string, unknown>;
  command: string[];
  cwd: string;
  readonly env: NodeJS.ProcessEnv;
  reread(): Promise<Partial<Reconfigurable>>;
}

export interface StartConfig {
  /** The file defines several services (then `command` is null: each has its own). */
  services: ServiceConfig[] | null;
  /** The command from the file, unless one was given after `--`. */
  command: string[] | null;
  cwd: string;
  /** The workers' environment: baton's own, with the file's `env` over it. */
  readonly env: NodeJS.ProcessEnv;
  /** Read the file again: what a reload applies. Keys given on the command line keep their value. */
  reread(): Promise<Partial<Reconfigurable>>;
}

/**
 * Find the config file of `baton start` (`--config`, else `./baton.config.*`) and fill in
 * every option the command line left at its default. Returns null when there is no file.
 */
export async function applyConfigFile(cmd: Command, commandGiven: boolean): Promise<StartConfig | null> {
  const given = cmd.opts().config as string | undefined;
  const path = given ? resolve(given) : findConfig(process.cwd());
  if (!path) return null;
  const label = given ?? path.slice(process.cwd().length + 1);
  const first = await readConfig(path, label);
  const pinned = (key: string): boolean => cmd.getOptionValueSource(key) === 'cli';
  for (const [key, value] of Object.entries(first)) {
    if (value !== undefined && cmd.options.some((o) => o.attributeName() === key) && !pinned(key)) {
      cmd.setOptionValueWithSource(key, value, 'config');
    }
  }
  // Where `baton start` ran: `command` runs from there unless the file says `cwd`.
  const startDir = process.cwd();
  const cwdOf = (f: FileOptions): string => f.cwd ?? startDir;
  const envOf = (f: FileOptions): NodeJS.ProcessEnv => ({ ...process.env, ...f.envFile, ...f.env });
  const services = first.services ? Object.keys(first.services).map((name) => serviceConfig(name, first, cmd, pinned, label, envOf, startDir, path)) : null;
  return {
    services,
    command: commandGiven ? null : (first.command ?? null),
    cwd: cwdOf(first),
    // Read when the supervisor is made: by then baton's own systemd variables are out of process.env.
    get env() {
      return envOf(first);
    },
    async reread() {
      const f = await readConfig(path, label);
      const changed = FIXED.filter((k) => !pinned(k) && JSON.stringify(f[k]) !== JSON.stringify(first[k]));
      if (changed.length) log.warn(`${label}: ${changed.join(', ')} changed; that takes effect when baton restarts`);
      overridden(f, first, pinned, label, log);
      if (commandGiven && f.command && JSON.stringify(f.command) !== JSON.stringify(first.command)) {
        log.warn(
          `${label}: command changed in the file, but baton was started with a command after --, which wins; name the new one with baton reload -- <command>, or start baton without one`,
        );
      }
      const s: Partial<Reconfigurable> = { env: envOf(f) };
      if (!commandGiven && f.command) Object.assign(s, { argv: f.command, cwd: cwdOf(f) });
      for (const [key, opt] of Object.entries(RELOADABLE) as [keyof typeof RELOADABLE, keyof Reconfigurable][]) {
        if (f[key] !== undefined && !pinned(key)) Object.assign(s, { [opt]: f[key] });
      }
      return s;
    },
  };
}

type Layer = NonNullable<FileOptions['services']>[string];

/** `--workers` for `workers`: the flag a key of the file is given by. */
const flagOf = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/**
 * Keys the file changed since baton started whose flag was given on the command line: the
 * flag wins, as it did at the start, but an edit that changes nothing must not go unnoticed.
 */
function overridden(
  now: Partial<Record<string, unknown>>,
  then: Partial<Record<string, unknown>>,
  pinned: (key: string) => boolean,
  label: string,
  to: { warn(m: string): void },
): void {
  const keys = new Set([...Object.keys(now), ...Object.keys(then)]);
  for (const k of keys) {
    if (k === 'services' || !pinned(k) || JSON.stringify(now[k]) === JSON.stringify(then[k])) continue;
    to.warn(`${label}: ${k} changed in the file, but ${flagOf(k)} given to baton start wins; start baton without ${flagOf(k)} for the file to count`);
  }
}

/**
 * A service of `first.services`: its keys over the top-level ones, the command line over both.
 * Read again at each of its reloads; a file that no longer has it fails that reload.
 */
function serviceConfig(
  name: string,
  first: FileOptions,
  cmd: Command,
  pinned: (key: string) => boolean,
  label: string,
  envOf: (f: FileOptions) => NodeJS.ProcessEnv,
  startDir: string,
  path: string,
): ServiceConfig {
  const own = (f: FileOptions): Layer => {
    const svc = f.services?.[name];
    if (!svc) throw new ConfigError(`${label}: service "${name}" is no longer in the file; it runs on as it is until baton restarts`);
    return svc;
  };
  const svc = own(first);
  const options: Record<string, unknown> = { ...cmd.opts() };
  for (const [key, value] of Object.entries(svc)) if (value !== undefined && !pinned(key)) options[key] = value;
  const cwdOf = (f: FileOptions): string => own(f).cwd ?? f.cwd ?? startDir;
  const serviceEnv = (f: FileOptions): NodeJS.ProcessEnv => ({ ...envOf(f), ...own(f).envFile, ...own(f).env });
  const slog = serviceLog(name);
  return {
    name,
    options,
    command: svc.command!,
    cwd: cwdOf(first),
    get env() {
      return serviceEnv(first);
    },
    async reread() {
      const f = await readConfig(path, label);
      const now = own(f);
      const fixed = (['listen', 'distribution', 'handoff', 'threads', 'backlog'] as const).filter(
        (k) => !pinned(k) && JSON.stringify(now[k] ?? f[k]) !== JSON.stringify(svc[k] ?? first[k]),
      );
      if (fixed.length) slog.warn(`${label}: ${fixed.join(', ')} changed; that takes effect when baton restarts`);
      overridden({ ...f, ...now }, { ...first, ...svc }, pinned, label, slog);
      const names = (o: FileOptions): string =>
        Object.keys(o.services ?? {})
          .sort()
          .join(', ');
      if (names(f) !== names(first)) slog.warn(`${label}: the services are now ${names(f)}; baton runs ${names(first)} until it restarts`);
      const s: Partial<Reconfigurable> = { env: serviceEnv(f), argv: now.command!, cwd: cwdOf(f) };
      for (const [key, opt] of Object.entries(RELOADABLE) as [keyof typeof RELOADABLE, keyof Reconfigurable][]) {
        const value = now[key] ?? f[key];
        if (value !== undefined && !pinned(key)) Object.assign(s, { [opt]: value });
      }
      return s;
    },
  };
}
