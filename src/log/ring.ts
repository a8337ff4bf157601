// The supervisor's memory of what was logged: the last LOG_RING_LINES lines of worker output
// and baton events, so `baton logs` can show what happened without a log file, and
// `baton logs -f` can follow along.
import type { ControlRequest, LogEntry, LogEvent } from '../common/protocol.js';

/** A line longer than this is cut in the ring (never in the live output): the ring's memory stays bounded. */
const MAX_LINE = 8192;

export class LogRing {
  private readonly slots: (LogEntry | undefined)[];
  private next = 0;
  private readonly followers = new Set<(e: LogEntry) => void>();

  constructor(readonly size: number) {
    this.slots = new Array<LogEntry | undefined>(size);
  }

  push(e: LogEntry): void {
    const entry = e.msg.length > MAX_LINE ? { ...e, msg: `${e.msg.slice(0, MAX_LINE)}…` } : e;
    this.slots[this.next++ % this.size] = entry;
    for (const f of this.followers) f(entry);
  }

  /** The last `n` entries that match, oldest first. */
  tail(n: number, match: (e: LogEntry) => boolean = () => true): LogEntry[] {
    const out: LogEntry[] = [];
    for (let i = this.next - 1; i >= Math.max(0, this.next - this.size) && out.length < n; i--) {
      const e = this.slots[i % this.size]!;
      if (match(e)) out.push(e);
    }
    return out.reverse();
  }

  /** Call `f` with every entry pushed from now on; returns the way to stop. */
  follow(f: (e: LogEntry) => void): () => void {
    this.followers.add(f);
    return () => this.followers.delete(f);
  }
}

/**
 * `[gen.worker] line` for worker output, `baton: message k=v` for baton's own events; with
 * several services in one baton, `[api 2.0] line` and `baton[api]: message`.
 */
export function formatEntry(e: LogEntry): string {
  const service = e.service === undefined ? '' : e.service;
  if (e.gen !== undefined) return `[${service && `${service} `}${e.gen}.${e.worker ?? '?'}] ${e.msg}`;
  const prefix = e.level === 'warn' ? 'warning: ' : e.level === 'error' ? 'error: ' : '';
  let s = `baton${service && `[${service}]`}: ${prefix}${e.msg}`;
  for (const [k, v] of Object.entries(e.fields ?? {})) {
    const text = String(v);
    s += ` ${k}=${/[\s"=]/.test(text) ? JSON.stringify(text) : text}`;
  }
  return s;
}

/** What a `logs` request is served on: events to its client, and the client's disconnect. */
export interface LogClient {
  /** False when the client reads too slowly and the line was not sent. */
  send(e: LogEvent): boolean;
  readonly signal: AbortSignal;
}

const DEFAULT_LINES = 100;

/**
 * Answer a `logs` request: the tail at once, or with `follow` the tail and then every new
 * line as an event until the client disconnects or `end` resolves (the supervisor stopped).
 */
export async function serveLogs(ring: LogRing, req: Extract<ControlRequest, { cmd: 'logs' }>, client: LogClient, end: Promise<void>): Promise<unknown> {
  // A service's lines are its own; baton's process-wide events (no service) belong to every one.
  const match = (e: LogEntry): boolean =>
    (req.generation === undefined || e.gen === req.generation) && (req.service === undefined || e.service === undefined || e.service === req.service);
  const tail = ring.tail(req.lines ?? DEFAULT_LINES, match);
  if (!req.follow) return { entries: tail };
  // A client that cannot keep up loses lines, not the supervisor's memory; it is told how many.
  let dropped = 0;
  const send = (entry: LogEntry): void => {
    if (dropped > 0) {
      const note: LogEntry = { at: Date.now(), level: 'warn', msg: `${dropped} line(s) not sent: this client read too slowly` };
      if (!client.send({ event: 'log', entry: note })) return void dropped++;
      dropped = 0;
    }
    if (!client.send({ event: 'log', entry })) dropped++;
  };
  for (const e of tail) send(e);
  const stop = ring.follow((e) => match(e) && send(e));
  try {
    await Promise.race([end, new Promise<void>((resolve) => client.signal.addEventListener('abort', () => resolve(), { once: true }))]);
  } finally {
    stop();
  }
  return { entries: [], ended: 'the supervisor stopped' };
}
