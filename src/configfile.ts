// Where `baton start` and the other commands look for a config file. Apart from config.ts,
// which validates it with zod: that module (~12 MB with zod) is loaded only when there is a
// file to read.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const CONFIG_NAMES = ['baton.config.json', 'baton.config.js', 'baton.config.mjs'] as const;

export class ConfigError extends Error {}

/** The one config file in `dir`, or null; two of them would leave the choice to a guess. */
export function findConfig(dir: string): string | null {
  const found = CONFIG_NAMES.map((n) => join(dir, n)).filter((p) => existsSync(p));
  if (found.length > 1) throw new ConfigError(`several config files in ${dir} (${found.map((p) => p.slice(dir.length + 1)).join(', ')}): keep one, or choose with --config`);
  return found[0] ?? null;
}
