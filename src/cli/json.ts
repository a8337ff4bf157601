// `--json`: every command that reports a result prints one JSON document on stdout: on
// success the control protocol's own result, as the supervisor sent it; on failure
// `{ "error": message, "detail"?: … }` (the protocol's detail, e.g. a failed reload's record),
// with the same non-zero exit code as in text. Nothing else goes to stdout meanwhile.

let enabled = false;

/**
 * Whether the command line asks for JSON: `--json` before any `--` (after it, it belongs to
 * the new command line). Decided before parsing, so that a wrong command line is answered
 * in JSON too.
 */
export function wantsJson(args: readonly string[]): boolean {
  const dd = args.indexOf('--');
  enabled = (dd < 0 ? args : args.slice(0, dd)).includes('--json');
  return enabled;
}

export function jsonOutput(): boolean {
  return enabled;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** On one line, so that it also ends a JSON Lines stream (`logs --json`) as one more line. */
export function printJsonError(error: string, detail?: unknown): void {
  process.stdout.write(`${JSON.stringify(detail === undefined ? { error } : { error, detail })}\n`);
}
