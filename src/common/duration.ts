// Durations on the command line and in config: "500ms", "30s", "2m", "1h", "1.5s".
// A bare number is refused: "30" could mean seconds (systemd, nginx) or milliseconds (Node),
// and guessing wrong turns a 30 s drain into a 30 ms one.
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/.exec(text);
  if (!m) throw new Error(`bad duration '${text}': use a number with a unit, e.g. 500ms, 30s, 2m`);
  const ms = Math.round(Number(m[1]) * UNITS[m[2]!]!);
  if (!Number.isSafeInteger(ms) || ms > 2 ** 31 - 1) throw new Error(`bad duration '${text}': too long`);
  return ms;
}

/** A duration, or 0 for off (no unit needed: 0 is 0 in any). */
export function parseOffDuration(text: string): number {
  return text.trim() === '0' ? 0 : parseDuration(text);
}

/** A share such as an error rate: "5%" or "0.05". */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(text.trim());
  const r = m ? Number(m[1]) / (m[2] ? 100 : 1) : Number.NaN;
  if (!(r >= 0 && r <= 1)) throw new Error(`bad rate '${text}': use a percentage such as 5% (or 0.05)`);
  return r;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
