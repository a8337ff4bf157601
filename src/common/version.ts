// This build's version ("0.1.0"), from the package.json it was installed with: what
// `baton --version` prints, `status` reports, and an upgrade compares.
import { readFileSync } from 'node:fs';

export const VERSION = ((): string => {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();
