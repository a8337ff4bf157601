// Sizes on the command line and in config: "512M", "1.5G", "300MiB", "64K". Units are
// powers of 1024, as in systemd's MemoryMax= and PM2's max_memory_restart. A bare number is
// refused: "512" would be half a kilobyte, which nobody means.
const UNITS: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt])(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new Error(`bad size '${text}': use a number with a unit, e.g. 512M, 1.5G, 300MiB`);
  const bytes = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes) || bytes < 1024 * 1024) throw new Error(`bad size '${text}': use at least 1M`);
  return bytes;
}
