// Where control sockets live. A supervisor started with `--name api` (no --control) creates
// `api.sock` in the first of:
//   $RUNTIME_DIRECTORY           systemd's RuntimeDirectory= (a system unit: /run/<dir>)
//   $XDG_RUNTIME_DIR/baton       a login session, or a user unit without RuntimeDirectory=
//   /tmp/baton-<uid>             anything else
// A client looks in each of those, and also one level down in the base directories
// ($XDG_RUNTIME_DIR/baton/api/api.sock, /run/baton/api/api.sock), which is where a unit with
// `RuntimeDirectory=baton/api` puts it: so `baton reload --name api` finds a system service
// from any shell, under `sudo` or `sudo -u`, without --control.
import { lstatSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** Where system units put their control directories (`RuntimeDirectory=baton/NAME`). */
export const SYSTEM_DIR = '/run/baton';

function checkName(name: string): void {
  if (!NAME.test(name)) throw new Error(`bad service name '${name}': use letters, digits, '_', '.', '-'`);
}

/** systemd sets RUNTIME_DIRECTORY to the unit's runtime directories, colon-separated: the first. */
function runtimeDirectory(env: NodeJS.ProcessEnv): string | null {
  return env.RUNTIME_DIRECTORY?.split(':').find((d) => d.startsWith('/')) ?? null;
}

/** The directories a user's own supervisors use, in order of preference (without RUNTIME_DIRECTORY). */
function userDirs(env: NodeJS.ProcessEnv): string[] {
  const uid = process.getuid?.() ?? 0;
  return [env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'baton') : null, join(tmpdir(), `baton-${uid}`)].filter((d): d is string => d !== null);
}

/** Where a supervisor creates its control socket when only `--name` is given. */
export function controlPathFor(name: string, env: NodeJS.ProcessEnv = process.env): string {
  checkName(name);
  const rd = runtimeDirectory(env);
  return join(rd ?? userDirs(env)[0]!, `${name}.sock`);
}

function isSocket(path: string): boolean {
  try {
    return lstatSync(path).isSocket();
  } catch {
    return false;
  }
}

/** Base directories searched: a supervisor's own socket may sit in them or one level down. */
function baseDirs(env: NodeJS.ProcessEnv): string[] {
  return [...userDirs(env), SYSTEM_DIR];
}

/**
 * The control socket of the supervisor named `name`, as a client finds it: the first that
 * exists of the places above; if none does, where a supervisor started here would put it
 * (so the error names the expected path).
 */
export function findControl(name: string, env: NodeJS.ProcessEnv = process.env): string {
  checkName(name);
  const rd = runtimeDirectory(env);
  const candidates = [...(rd ? [join(rd, `${name}.sock`)] : []), ...baseDirs(env).flatMap((d) => [join(d, `${name}.sock`), join(d, name, `${name}.sock`)])];
  return candidates.find(isSocket) ?? controlPathFor(name, env);
}

/** The sockets `*.sock` in `dir`, and with `below` in its subdirectories too. */
function socketsIn(dir: string, below: boolean): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isSocket() && e.name.endsWith('.sock') ? [join(dir, e.name)] : below && e.isDirectory() ? socketsIn(join(dir, e.name), false) : [],
    );
  } catch {
    return [];
  }
}

/** Every control socket in the places a client searches (whether or not anyone answers on it), each once. */
export function controlSockets(env: NodeJS.ProcessEnv = process.env): string[] {
  const rd = runtimeDirectory(env);
  return [...new Set([...(rd ? socketsIn(rd, false) : []), ...baseDirs(env).flatMap((d) => socketsIn(d, true))])];
}
