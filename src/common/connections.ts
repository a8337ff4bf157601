// How a drain's connections ended, by what they carried (reported by the worker runtime in
// 'drained'): summed per generation, shown by status, logs, metrics and reload reports.
import type { ConnEnding, ConnEndings, ConnKind } from './protocol.js';

export const CONN_ENDINGS: readonly ConnEnding[] = ['finished', 'polite', 'cut'];

export function addEndings(into: ConnEndings, more: ConnEndings): ConnEndings {
  for (const [kind, by] of Object.entries(more) as [ConnKind, Record<ConnEnding, number>][]) {
    const to = (into[kind] ??= { finished: 0, polite: 0, cut: 0 });
    for (const how of CONN_ENDINGS) to[how] += by[how] ?? 0;
  }
  return into;
}

/** `h2 12 polite, ws 20 polite, http1 3 finished 1 cut`; '' when there were none. */
export function formatEndings(e: ConnEndings): string {
  return Object.entries(e)
    .map(
      ([kind, by]) =>
        `${kind} ${CONN_ENDINGS.filter((h) => by[h] > 0)
          .map((h) => `${by[h]} ${h}`)
          .join(' ')}`,
    )
    .filter((s) => /\d/.test(s))
    .join(', ');
}
