// Human-readable renderings of what the supervisor reports: the status table and a
// reload's outcome. Kept within 100 columns.
import type { HandoffRecord } from './handoff.js';
import type { StatusReport } from './supervisor.js';
import { formatDuration } from './duration.js';

const WIDTH = 100;

function clip(s: string, n = WIDTH): string {
  return s.length <= n ? s : s.slice(0, n - 1) + '…';
}

function pad(s: string, n: number): string {
  return s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length);
}

export function formatStatus(s: StatusReport): string {
  const out: string[] = [];
  out.push(clip(`${s.name}  pid ${s.pid}  ${s.state}  up ${formatDuration(s.uptimeMs)}  ${s.workers} worker(s) per generation`));
  out.push(clip(`control  ${s.control}`));
  for (const l of s.listeners) out.push(clip(`listen   ${pad(l.name, 16)} ${l.address}`));
  if (s.handoff) out.push(clip(`handoff  #${s.handoff.id} ${s.handoff.state}: generation ${s.handoff.from ?? '-'} -> ${s.handoff.to}${s.reloadQueued ? ' (another reload queued)' : ''}`));
  out.push('');
  out.push(`${pad('GEN', 5)}${pad('STATE', 10)}${pad('WORKER', 8)}${pad('PID', 9)}${pad('STATE', 10)}${pad('UPTIME', 10)}${pad('RESTARTS', 10)}CONNS`);
  for (const g of s.generations) {
    const label = g.number === s.serving ? `${g.state}*` : g.state;
    out.push(clip(`${pad(String(g.number), 5)}${pad(label, 10)}${g.argv.join(' ')}`));
    for (const w of g.workers) {
      out.push(
        `${pad('', 15)}${pad(String(w.index), 8)}${pad(String(w.pid), 9)}${pad(w.state, 10)}` +
          `${pad(formatDuration(w.uptimeMs), 10)}${pad(String(w.restarts), 10)}${w.connections ?? '-'}`,
      );
    }
  }
  if (s.history.length) {
    out.push('');
    out.push('RELOADS');
    for (const r of s.history.slice(-10)) out.push(clip(formatRecord(r)));
  }
  return out.join('\n');
}

export function formatRecord(r: HandoffRecord): string {
  const when = new Date(r.requestedAt).toISOString().slice(11, 19);
  const head = `#${r.id} ${when} ${pad(r.trigger, 7)} gen ${r.from ?? '-'} -> ${r.to}  ${r.state}`;
  if (r.state === 'failed') return `${head}: ${r.error}`;
  const parts = [
    r.readyMs !== null ? `ready ${formatDuration(r.readyMs)}` : null,
    r.transferMs !== null ? `transfer ${formatDuration(r.transferMs)}` : null,
    r.totalMs !== null ? `total ${formatDuration(r.totalMs)}` : null,
    r.drainedMs !== null ? `old exited ${formatDuration(r.drainedMs)}` : null,
    r.cut ? `${r.cut} cut` : null,
  ].filter(Boolean);
  return `${head}  ${parts.join(', ')}`;
}
