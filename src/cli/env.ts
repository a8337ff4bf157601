// `--env KEY=VALUE` and `--env-file <path>` (both repeatable) on `start` and `reload`: variables
// for the new generation, read here, by the caller (an env file the supervisor's user cannot
// read still works), and sent as values. The files first, in order, then each --env: an
// explicit value wins over a file's, as with `docker run`.
import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { type Command, InvalidArgumentError, Option } from 'commander';

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function parseAssignment(text: string): [string, string] {
  const eq = text.indexOf('=');
  const name = eq < 0 ? text : text.slice(0, eq);
  if (eq < 0 || !NAME.test(name)) throw new InvalidArgumentError(`bad --env '${text}': use KEY=VALUE, KEY of letters, digits and "_"`);
  const value = text.slice(eq + 1);
  if (value.includes('\0')) throw new InvalidArgumentError(`bad --env '${name}=…': a value cannot hold NUL`);
  return [name, value];
}

export function addEnvOptions(cmd: Command, applies: string): Command {
  return cmd
    .addOption(
      new Option('--env <KEY=VALUE>', `set a variable for ${applies}; repeatable`).argParser((v: string, prev: [string, string][] | undefined) => [
        ...(prev ?? []),
        parseAssignment(v),
      ]),
    )
    .addOption(
      new Option('--env-file <path>', `read variables for ${applies} from a file of KEY=VALUE lines (# comments, quotes); repeatable`).argParser(
        (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
      ),
    );
}

/**
 * The variables the command's options set, or null for none. Throws, naming the file, if
 * one cannot be read or holds a bad name. (A config file's `env` object is not `--env`.)
 */
export function envOf(cmd: Command): Record<string, string> | null {
  const o = {
    env: cmd.getOptionValueSource('env') === 'cli' ? (cmd.opts().env as [string, string][]) : undefined,
    envFile: cmd.opts().envFile as string[] | undefined,
  };
  if (!o.env?.length && !o.envFile?.length) return null;
  const out: Record<string, string> = {};
  for (const path of o.envFile ?? []) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw new Error(`--env-file ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    for (const [name, value] of Object.entries(parseEnv(text))) {
      if (!NAME.test(name)) throw new Error(`--env-file ${path}: bad variable name '${name}': use letters, digits and "_"`);
      out[name] = value ?? '';
    }
  }
  for (const [name, value] of o.env ?? []) out[name] = value;
  return out;
}
