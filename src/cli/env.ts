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

/** The variables of an env file (`--env-file`, the config file's `envFile`); throws saying what is wrong, without the path. */
export function readEnvFile(path: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message);
  }
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parseEnv(text))) {
    if (!NAME.test(name)) throw new Error(`bad variable name '${name}': use letters, digits and "_"`);
    out[name] = value ?? '';
  }
  return out;
}

/**
 * The variables the command's options set, or null for none. Throws, naming the file, if
 * one cannot be read or holds a bad name. (Only the command line's: the config file's `env`
 * and `envFile` come in as the workers' base environment, config.ts.)
 */
export function envOf(cmd: Command): Record<string, string> | null {
  const given = (key: string): unknown => (cmd.getOptionValueSource(key) === 'cli' ? cmd.opts()[key] : undefined);
  const env = given('env') as [string, string][] | undefined;
  const files = given('envFile') as string[] | undefined;
  if (!env?.length && !files?.length) return null;
  const out: Record<string, string> = {};
  for (const path of files ?? []) {
    try {
      Object.assign(out, readEnvFile(path));
    } catch (e) {
      throw new Error(`--env-file ${path}: ${(e as Error).message}`);
    }
  }
  for (const [name, value] of env ?? []) out[name] = value;
  return out;
}
