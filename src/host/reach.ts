// --user: before anything starts, whether that user can reach what a worker needs: baton's
// runtime (every worker preloads it), the program, the script it is
// given, and the directory it runs in. One line names the first thing in the way, instead
// of each worker dying with ERR_MODULE_NOT_FOUND or EACCES after baton has bound everything.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { blocked, findCommand, type Identity } from '../os/access.js';
import { PRELOAD_URL } from '../supervisor/supervisor.js';

/** Why the workers cannot run `argv`: one line, or null. */
export type ReachCheck = (argv: readonly string[], cwd: string, env: NodeJS.ProcessEnv) => string | null;

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Where a bare import of `name` from `from` finds its package.json (Node's node_modules walk), or null. */
function packageJson(name: string, from: string): string | null {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const p = join(dir, 'node_modules', name, 'package.json');
    if (existsSync(p)) return p;
    if (dirname(dir) === dir) return null;
  }
}

/**
 * The files a worker loads before the app: the preload, and baton's dependencies (the
 * runtime imports valibot and koffi; the others sit next to them, where npm puts them).
 */
function runtimeFiles(preload: string): string[] {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', PRELOAD_URL), 'utf8')) as { dependencies?: Record<string, string> };
  return [preload, ...Object.keys(pkg.dependencies ?? {}).flatMap((d) => packageJson(d, preload) ?? [])];
}

export function reachCheck(user: string, who: Identity): ReachCheck | null {
  if (who.uid === 0) return null;
  const preload = fileURLToPath(PRELOAD_URL);
  const runtime = runtimeFiles(preload);
  const as = `--user ${user}`;
  return (argv, cwd, env) => {
    for (const file of runtime) {
      const why = blocked(file, who, 'read');
      if (why) return `${as} cannot reach baton's runtime ${preload}: ${why}; install baton where ${user} can reach it`;
    }
    const why = blocked(cwd, who, 'exec');
    if (why) return `${as} cannot enter the working directory ${cwd}: ${why}`;
    const program = argv[0] === undefined ? null : findCommand(argv[0], env.PATH, cwd);
    const notRun = program && blocked(program, who, 'exec');
    if (notRun) return `${as} cannot run ${argv[0]} (${program}): ${notRun}`;
    // The script an interpreter is given: by convention the first argument that is a file.
    const script = argv.slice(1).find((a) => !a.startsWith('-') && isFile(resolve(cwd, a)));
    const notRead = script !== undefined && blocked(resolve(cwd, script), who, 'read');
    if (notRead) return `${as} cannot read ${script}: ${notRead}`;
    return null;
  };
}
