// baton's own events, one line each on stderr: `baton: <message> key=value ...`.
// Worker output is re-emitted by the supervisor with a `[gen.worker]` prefix.
export type Fields = Record<string, string | number | boolean | null | undefined>;

function line(msg: string, fields?: Fields): string {
  let s = `baton: ${msg}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      const text = String(v);
      s += ` ${k}=${/[\s"=]/.test(text) ? JSON.stringify(text) : text}`;
    }
  }
  return s + '\n';
}

export const log = {
  info(msg: string, fields?: Fields): void {
    process.stderr.write(line(msg, fields));
  },
  warn(msg: string, fields?: Fields): void {
    process.stderr.write(line(`warning: ${msg}`, fields));
  },
  error(msg: string, fields?: Fields): void {
    process.stderr.write(line(`error: ${msg}`, fields));
  },
  worker(gen: number, index: number, text: string, stream: 'stdout' | 'stderr'): void {
    (stream === 'stdout' ? process.stdout : process.stderr).write(`[${gen}.${index}] ${text}\n`);
  },
};
