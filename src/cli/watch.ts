// `baton status --watch`: on a terminal the table is redrawn in place every interval, as `top`
// does (cursor home, each line cleared to its end, the rest of the screen cleared); elsewhere
// one table per interval, each under a time stamp, so a captured log reads in order.

import { formatDuration } from '../common/duration.js';
import type { GroupStatus } from '../supervisor/services.js';
import type { StatusReport } from '../supervisor/supervisor.js';
import { formatAnyStatus } from './report.js';

export interface WatchOptions {
  intervalMs: number;
  json: boolean;
  out: NodeJS.WriteStream;
}

const HOME = '\x1b[H';
const CLEAR_LINE = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';
const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';

/** Runs until the process is interrupted; a supervisor that stops answering is shown and retried. */
export async function watchStatus(fetch: () => Promise<StatusReport | GroupStatus>, o: WatchOptions): Promise<never> {
  const tty = o.out.isTTY === true && !o.json;
  if (tty) {
    o.out.write(HIDE_CURSOR + HOME + '\x1b[2J');
    const restore = (): never => {
      o.out.write(SHOW_CURSOR + '\n');
      process.exit(0);
    };
    process.once('SIGINT', restore);
    process.once('SIGTERM', restore);
  }
  for (;;) {
    const width = Math.min(100, o.out.columns || 100);
    const stamp = new Date().toISOString().slice(11, 19);
    let body: string;
    try {
      const s = await fetch();
      body = o.json ? JSON.stringify(s) : formatAnyStatus(s, width);
    } catch (e) {
      body = o.json ? JSON.stringify({ error: (e as Error).message }) : `baton: ${(e as Error).message} (retrying)`;
    }
    if (o.json) o.out.write(`${body}\n`);
    else if (tty) {
      const head = `every ${formatDuration(o.intervalMs)}: baton status`;
      // Never more lines than the screen has: a scroll would break the redraw in place.
      const lines = [`${head}${stamp.padStart(width - head.length)}`, '', ...body.split('\n')].slice(0, o.out.rows || undefined);
      o.out.write(HOME + lines.map((l) => l + CLEAR_LINE).join('\n') + CLEAR_BELOW);
    } else o.out.write(`--- ${stamp}\n${body}\n\n`);
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
}
