// baton's own events and the workers' output, as the supervisor emits them:
//  - text (default): `baton: <message> key=value ...` on stderr; worker lines with a
//    `[gen.worker]` prefix on the stream they came from; each line after an ISO 8601 time,
//    unless the stream goes to journald;
//  - json (`--log-format json`): one pino JSON object per line on stdout, worker lines with
//    `gen`, `worker`, `stream` and `msg`, baton's events with their fields.
// Every line also goes to a bounded ring, which `baton logs` reads over the control socket.

import { fstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import { LOG_RING_LINES, type LogEntry } from '../common/protocol.js';
import { formatEntry, LogRing } from './ring.js';

export type Fields = Record<string, string | number | boolean | null | undefined>;
export type LogFormat = 'text' | 'json';

export const ring = new LogRing(LOG_RING_LINES);

let json: Logger | null = null;

export function setLogFormat(format: LogFormat): void {
  if (format === 'text') {
    json = null;
    return;
  }
  // Loaded only when asked for: every CLI command imports this module, few need pino.
  const pino = createRequire(import.meta.url)('pino') as typeof import('pino');
  // Synchronous: a line written just before process.exit must not be lost.
  json = pino.pino({ base: undefined, formatters: { level: (label) => ({ level: label }) } }, pino.destination({ dest: 1, sync: true }));
}

function defined(fields: Fields | undefined): LogEntry['fields'] {
  if (!fields) return undefined;
  const out: NonNullable<LogEntry['fields']> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v;
  return out;
}

function emit(e: LogEntry): void {
  ring.push(e);
  if (json) {
    const { service, gen, worker, stream, fields } = e;
    const scope = service === undefined ? {} : { service };
    json[e.level](gen === undefined ? { ...scope, ...fields } : { ...scope, gen, worker, stream }, e.msg);
  } else {
    const fd = e.stream === 'stdout' ? 1 : 2;
    (fd === 1 ? process.stdout : process.stderr).write(`${stamped(fd) ? `${new Date(e.at).toISOString()} ` : ''}${formatEntry(e)}\n`);
  }
}

const stamps = new Map<1 | 2, boolean>();

/**
 * Text lines start with an ISO 8601 time, except on a stream connected to journald, which
 * stamps every line itself: systemd names that stream in JOURNAL_STREAM (`device:inode`).
 */
function stamped(fd: 1 | 2): boolean {
  let s = stamps.get(fd);
  if (s === undefined) {
    s = true;
    const journal = process.env.JOURNAL_STREAM;
    if (journal) {
      try {
        const st = fstatSync(fd);
        s = journal !== `${st.dev}:${st.ino}`;
      } catch {
        /* not an open descriptor: nothing reads it anyway */
      }
    }
    stamps.set(fd, s);
  }
  return s;
}

export interface Log {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  worker(gen: number, index: number, text: string, stream: 'stdout' | 'stderr'): void;
}

/** A log whose every line names `service` (one of several in one baton), or none. */
export function serviceLog(service?: string): Log {
  const scope = service === undefined ? {} : { service };
  const event = (level: LogEntry['level'], msg: string, fields?: Fields): void => emit({ at: Date.now(), level, msg, ...scope, fields: defined(fields) });
  return {
    info: (msg, fields) => event('info', msg, fields),
    warn: (msg, fields) => event('warn', msg, fields),
    error: (msg, fields) => event('error', msg, fields),
    worker: (gen, index, text, stream) => emit({ at: Date.now(), level: 'info', msg: text, ...scope, gen, worker: index, stream }),
  };
}

export const log = serviceLog();
