// The config file: `baton.config.json`, or `.js` / `.mjs` exporting an object. It holds what
// `baton start` takes on its command line (same names, camelCase), the command, and env for
// the workers. Flags given on the command line win over the file. The file is read again on
// every reload, so editing it and reloading is a deploy; a file that does not validate fails
// that reload and changes nothing.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { z } from 'zod';
import { parseDuration } from './duration.js';
import { describe, parseListen, parseMetricsAddress, type ListenSpec, type MetricsAddress } from './listeners.js';
import { parseSignal } from './host.js';
import type { Reconfigurable } from './supervisor.js';
import { log, serviceLog as serviceLogFor } from './log.js';
import { ConfigError, findConfig } from './configfile.js';

export { ConfigError };



/** How a value was wrong, for every check of a key: `expected <what>, got <input>`. */
function expected(what: string): { error: (iss: { input?: unknown }) => string } {
  return { error: (iss) => `expected ${what}, got ${show(iss.input)}` };
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

/** A value parsed by one of the command line's own parsers, so both accept the same text. */
function parsed<T>(what: string, parse: (v: string) => T): z.ZodType<T, string> {
  return z.string(expected(what)).transform((v, ctx) => {
    try {
      return parse(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: `expected ${what}, got ${show(v)}` });
      return z.NEVER;
    }
  });
}

const count = (max: number, auto: boolean) => {
  const what = `a number from 1 to ${max}${auto ? ' or "auto"' : ''}`;
  const n = z.number(expected(what)).int(expected(what)).min(1, expected(what)).max(max, expected(what));
  return auto ? z.union([n, z.literal('auto').transform(() => availableParallelism())], expected(what)) : n;
};

const duration = parsed('a duration such as "30s", "500ms" or "2m"', parseDuration);

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const LISTENER = '"PORT", "HOST:PORT", "[IPV6]:PORT", "unix:/path" or { "name": …, "address": … }';

/**
 * One listener, parsed by `--listen`'s own parser (its "bad --listen 'x':" prefix names a flag
 * the file does not have). A relative unix path is meant from the file's directory.
 */
function listener(dir: string, address: string, name: string | undefined, ctx: z.RefinementCtx): ListenSpec {
  const text = address.replace(/^((?:[A-Za-z0-9_.-]+=)?unix:)(.+)$/, (_, prefix: string, path: string) => prefix + resolve(dir, path));
  try {
    const spec = parseListen(text);
    return name === undefined ? spec : { ...spec, name };
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message.replace(/^bad --listen '[^']*': /, ''), path: name === undefined ? [] : ['address'] });
    return z.NEVER;
  }
}

const listenEntry = (dir: string) =>
  z
    .union(
      [
        z.string(),
        z.number().int().min(0).max(65535),
        z.strictObject({
          name: z.string(expected('a name of letters, digits, "_", ".", "-"')).regex(NAME, expected('a name of letters, digits, "_", ".", "-" (at most 64)')).optional(),
          address: z.string(expected(`"PORT", "HOST:PORT", "[IPV6]:PORT" or "unix:/path"`)),
        }),
      ],
      expected(LISTENER),
    )
    .transform((v, ctx) => (typeof v === 'object' ? listener(dir, v.address, v.name, ctx) : listener(dir, String(v), undefined, ctx)));

/** Relative paths in the file (listeners, control, cwd) are meant from `dir`, the file's directory. */
const fieldsFor = (dir: string) => ({
  name: z.string(expected('a service name')).regex(NAME, expected('a service name of letters, digits, "_", ".", "-"')).optional(),
  control: z.string(expected('a path')).min(1, expected('a path')).transform((p) => resolve(dir, p)).optional(),
  listen: z.array(listenEntry(dir), expected(`a list of listeners: ${LISTENER}`)).min(1, expected('at least one listener')).optional(),
  workers: count(1024, true).optional(),
  threads: count(64, false).optional(),
  ready: z.enum(['listen', 'manual', 'notify'], expected('"listen", "manual" or "notify"')).optional(),
  readyAfter: duration.optional(),
  watchdog: duration.optional(),
  drainSignal: parsed('a signal such as "SIGTERM" or "SIGQUIT"', parseSignal).optional(),
  stopTimeout: duration.optional(),
  user: z.string(expected('a user name or uid')).min(1, expected('a user name or uid')).optional(),
  group: z.string(expected('a group name or gid')).min(1, expected('a group name or gid')).optional(),
  distribution: z.enum(['shared', 'round-robin'], expected('"shared" or "round-robin"')).optional(),
  handoff: z.enum(['overlap', 'exclusive'], expected('"overlap" or "exclusive"')).optional(),
  readyTimeout: duration.optional(),
  drainTimeout: duration.optional(),
  maxSurge: count(1024, true).optional(),
  maxDraining: count(1024, false).optional(),
  backlog: count(65535, false).optional(),
  logFormat: z.enum(['text', 'json'], expected('"text" or "json"')).optional(),
  metrics: parsed<MetricsAddress>('"HOST:PORT" or "PORT"', parseMetricsAddress).optional(),
  command: z
    .array(z.string(expected('a non-empty string')).min(1, expected('a non-empty string')), expected('a list of strings such as ["node", "app.js"]'))
    .min(1, expected('a list of strings such as ["node", "app.js"]'))
    .optional(),
  env: z.record(z.string(), z.string(expected('a string')), expected('an object of strings such as { "NODE_ENV": "production" }')).optional(),
  cwd: z.string(expected('a directory')).min(1, expected('a directory')).transform((p) => resolve(dir, p)).optional(),
});

/**
 * What each of several services (`services`) sets for itself; the same keys at the top of the
 * file are the default for every service. The rest (control socket, logs, metrics, user,
 * signals, stop timeout) belongs to the baton process and stays at the top.
 */
export const SERVICE_KEYS = ['listen', 'command', 'env', 'cwd', 'workers', 'threads', 'ready', 'distribution', 'handoff', 'readyTimeout', 'drainTimeout', 'maxSurge', 'maxDraining', 'backlog'] as const;

const schemaFor = (dir: string) => {
  const fields = fieldsFor(dir);
  const service = z.strictObject(Object.fromEntries(SERVICE_KEYS.map((k) => [k, fields[k]])) as Pick<typeof fields, (typeof SERVICE_KEYS)[number]>);
  return z.strictObject({
    ...fields,
    services: z
      .record(z.string().regex(NAME, 'expected a service name of letters, digits, "_", ".", "-"'), service, expected('an object of services such as { "api": { "listen": [8080], "command": ["node", "api.js"] } }'))
      .optional(),
  });
};

export type FileOptions = z.output<ReturnType<typeof schemaFor>>;
/** Every key a config file may have. */
export const CONFIG_KEYS: readonly string[] = Object.keys(schemaFor('/').shape);

/** `listen[0].address`, `env.NODE_ENV`. */
function where(path: PropertyKey[]): string {
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

function describeIssue(label: string, issue: z.core.$ZodIssue): string[] {
  const at = issue.path.length ? `${where(issue.path)}: ` : '';
  if (issue.code === 'unrecognized_keys') {
    const inService = issue.path.length === 2 && issue.path[0] === 'services';
    return issue.keys.map((k) => {
      const hint = issue.path.length ? '' : suggest(k);
      const why = inService
        ? CONFIG_KEYS.includes(k) ? ` ("${k}" is for the whole baton: set it at the top of the file)` : ` (a service has ${SERVICE_KEYS.map((x) => `"${x}"`).join(', ')})`
        : hint ? ` (did you mean "${hint}"?)` : issue.path.length ? ' (expected "name" and "address")' : '';
      return `${label}: ${at}unknown key "${k}"${why}`;
    });
  }
  if (issue.code === 'invalid_key') return [`${label}: services: "${String(issue.path.at(-1))}" is not a service name: use letters, digits, "_", ".", "-" (at most 64)`];
  if (issue.path.length === 0 && issue.code === 'invalid_type') return [`${label}: expected an object of settings, got ${show(issue.input)}`];
  return [`${label}: ${at}${issue.message}`];
}

/** Validate what a config file in `dir` holds; `label` names the file in every error. */
export function validateConfig(raw: unknown, label: string, dir: string): FileOptions {
  const r = schemaFor(dir).safeParse(raw, { reportInput: true });
  if (!r.success) throw new ConfigError(r.error.issues.flatMap((i) => describeIssue(label, i)).join('\n'));
  const services = Object.entries(r.data.services ?? {});
  if (!r.data.services) return r.data;
  const problems: string[] = [];
  if (services.length === 0) problems.push('services: expected at least one service');
  for (const key of ['listen', 'command'] as const) {
    if (r.data[key] !== undefined) problems.push(`${key}: with "services", each service has its own ${key}; move it into them`);
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
  return r.data;
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
  const target = z.object(schemaFor(dirname(path)).pick({ name: true, control: true }).shape);
  const r = target.safeParse(await load(path, label), { reportInput: true });
  if (r.success) return r.data;
  throw new ConfigError(r.error.issues.flatMap((i) => describeIssue(label, i)).join('\n'));
}

/** Keys that become ServiceOptions as they are, or under another name. */
const RELOADABLE = {
  workers: 'workers',
  ready: 'readyMode',
  readyTimeout: 'readyTimeoutMs',
  drainTimeout: 'drainTimeoutMs',
  maxSurge: 'maxSurge',
  maxDraining: 'maxDraining',
} as const satisfies Partial<Record<keyof FileOptions, keyof Reconfigurable>>;
/** Fixed for the life of the supervisor: the sockets, its name, its own outputs. */
const FIXED = ['name', 'control', 'listen', 'backlog', 'distribution', 'handoff', 'threads', 'readyAfter', 'watchdog', 'drainSignal', 'stopTimeout', 'user', 'group', 'logFormat', 'metrics'] as const;

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
  const cwdOf = (f: FileOptions): string => f.cwd ?? (commandGiven ? process.cwd() : dirname(path));
  const envOf = (f: FileOptions): NodeJS.ProcessEnv => ({ ...process.env, ...f.env });
  const services = first.services
    ? Object.keys(first.services).map((name) => serviceConfig(name, first, cmd, pinned, path, label, envOf))
    : null;
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

/**
 * A service of `first.services`: its keys over the top-level ones, the command line over both.
 * Read again at each of its reloads; a file that no longer has it fails that reload.
 */
function serviceConfig(name: string, first: FileOptions, cmd: Command, pinned: (key: string) => boolean, path: string, label: string, envOf: (f: FileOptions) => NodeJS.ProcessEnv): ServiceConfig {
  const own = (f: FileOptions): Layer => {
    const svc = f.services?.[name];
    if (!svc) throw new ConfigError(`${label}: service "${name}" is no longer in the file; it runs on as it is until baton restarts`);
    return svc;
  };
  const svc = own(first);
  const options: Record<string, unknown> = { ...cmd.opts() };
  for (const [key, value] of Object.entries(svc)) if (value !== undefined && !pinned(key)) options[key] = value;
  const cwdOf = (f: FileOptions): string => own(f).cwd ?? f.cwd ?? dirname(path);
  const serviceEnv = (f: FileOptions): NodeJS.ProcessEnv => ({ ...envOf(f), ...own(f).env });
  const slog = serviceLogFor(name);
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
      const fixed = (['listen', 'distribution', 'handoff', 'threads', 'backlog'] as const).filter((k) => !pinned(k) && JSON.stringify(now[k] ?? f[k]) !== JSON.stringify(svc[k] ?? first[k]));
      if (fixed.length) slog.warn(`${label}: ${fixed.join(', ')} changed; that takes effect when baton restarts`);
      const names = (o: FileOptions): string => Object.keys(o.services ?? {}).sort().join(', ');
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
