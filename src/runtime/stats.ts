// Probation (--probation): how many HTTP responses this worker answered, and how many of
// them were 5xx, reported to baton as running totals. Only in a generation under probation
// or a canary (BATON_STATS=1): one 'finish' listener per response is not free.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as net from 'node:net';
import type { FromWorker } from '../common/protocol.js';

/** Totals go out at most this often, and only when they changed. */
const REPORT_EVERY_MS = 100;

export class Stats {
  private requests = 0;
  private errors = 0;
  private sent = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly seen = new WeakSet<net.Server>();

  constructor(private readonly send: (msg: FromWorker) => void) {}

  track(server: net.Server): void {
    if (this.seen.has(server) || typeof (server as { keepAliveTimeout?: unknown }).keepAliveTimeout !== 'number') return; // http and https only
    this.seen.add(server);
    server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
      res.once('finish', () => this.count(res.statusCode));
    });
  }

  private count(status: number): void {
    this.requests++;
    if (status >= 500) this.errors++;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      if (this.sent === this.requests) return;
      this.sent = this.requests;
      this.send({ baton: 1, type: 'stats', requests: this.requests, errors: this.errors });
    }, REPORT_EVERY_MS).unref();
  }
}
