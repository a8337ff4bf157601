// Human-readable renderings of what the supervisor reports: the status table and a
// reload's outcome. Kept within 100 columns (or a narrower terminal's width).

import { formatEndings } from '../common/connections.js';
import { formatDuration } from '../common/duration.js';
import { type HandoffRecord, phaseDurations } from '../supervisor/handoff.js';
import type { GroupStatus } from '../supervisor/services.js';
import type { StatusReport } from '../supervisor/supervisor.js';

const WIDTH = 100;

function clip(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + '…';
}

function pad(s: string, n: number): string {
  return s.length >= n ? s.slice(0, n) : s + ' '.repeat(n - s.length);
}

function formatBytes(n: number | null): string {
  if (n === null) return '-';
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

const COLUMNS: [string, number][] = [
  ['GEN', 5],
  ['STATE', 10],
  ['WORKER', 8],
  ['PID', 9],
  ['STATE', 10],
  ['UPTIME', 10],
  ['RESTARTS', 10],
  ['RSS', 11],
  ['CONNS', 6],
];

function row(cells: string[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : pad(c, COLUMNS[i]![1]))).join('');
}

export function formatStatus(s: StatusReport, width = WIDTH): string {
  const out: string[] = [];
  const serving = s.generations.find((g) => g.number === s.serving);
  const ready = serving ? `${serving.ready}/${s.workers} ready` : `0/${s.workers} ready`;
  out.push(
    `${s.name}  pid ${s.pid}  baton ${s.version ?? '?'}  ${s.state}  up ${formatDuration(s.uptimeMs)}  rss ${formatBytes(s.rssBytes)}  workers ${ready}`,
  );
  out.push(`control  ${s.control}`);
  if (s.maxMemoryBytes !== null) out.push(`limits   max-memory ${formatBytes(s.maxMemoryBytes)} per worker`);
  for (const l of s.listeners) out.push(`listen   ${pad(l.name, 16)} ${l.address}${l.inherited ? '  (socket activation)' : ''}`);
  if (s.standby)
    out.push(
      `standby  generation ${s.standby.generation} (${s.standby.state}), ${formatDuration(s.standby.leftMs)} left: \`baton rollback\` serves it again at once`,
    );
  if (s.handoff)
    out.push(
      `handoff  #${s.handoff.id} ${s.handoff.state}: generation ${s.handoff.from ?? '-'} -> ${s.handoff.to}${s.reloadQueued ? ' (another reload queued)' : ''}`,
    );
  out.push('');
  out.push(row(COLUMNS.map(([h]) => h)));
  for (const g of s.generations) {
    const label =
      g.number === s.serving
        ? `${g.state}*`
        : g.number === s.standby?.generation && g.state === 'standby'
          ? `standby ${formatDuration(s.standby.leftMs)}`
          : g.state;
    // Ready out of the slots it should fill: a shortfall shows at a glance.
    out.push(row([String(g.number), label, `${g.ready}/${g.target || g.workers.length}`, g.argv.join(' ')]));
    // Names only: values may be secrets. (A supervisor older than this CLI sends none.)
    if (g.env?.length) out.push(`${' '.repeat(15)}env: ${g.env.join(' ')}${g.envChanged?.length ? `  (changed: ${g.envChanged.join(' ')})` : ''}`);
    for (const w of g.workers) {
      out.push(
        row([
          '',
          '',
          String(w.index),
          String(w.pid),
          w.state,
          formatDuration(w.uptimeMs),
          // Replacements for memory are not crashes: shown apart, e.g. "0, 2 mem".
          `${w.restarts}${w.replaced ? `, ${w.replaced} mem` : ''}${w.crashLoop ? ' looping' : ''}`,
          formatBytes(w.rssBytes),
          String(w.connections ?? '-') + byKind(w.connectionsByKind),
        ]),
      );
      // What a notify-speaking worker said of itself (STATUS=).
      if (w.status) out.push(`${' '.repeat(15)}status: ${w.status}`);
    }
  }
  if (s.history.length) {
    out.push('');
    out.push('RELOADS');
    for (const r of s.history.slice(-10)) {
      out.push(formatRecord(r));
      if (r.error) out.push(`    ${r.error}`);
    }
  }
  return out.map((l) => clip(l, width)).join('\n');
}

/** A baton running several services: a line for the process, then each service's own table. */
export function formatGroup(s: GroupStatus, width = WIDTH): string {
  const out = [
    clip(
      `${s.name}  pid ${s.pid}  baton ${s.version ?? '?'}  up ${formatDuration(s.uptimeMs)}  rss ${formatBytes(s.rssBytes)}  services ${s.services.map((x) => x.name).join(', ')}`,
      width,
    ),
    clip(`control  ${s.control}`, width),
  ];
  for (const svc of s.services)
    out.push('', clip(`== service ${svc.name} ${'='.repeat(Math.max(0, width - svc.name.length - 12))}`, width), formatStatus(svc, width));
  return out.join('\n');
}

/** Either kind of status answer. */
export function formatAnyStatus(s: StatusReport | GroupStatus, width = WIDTH): string {
  return 'services' in s ? formatGroup(s, width) : formatStatus(s, width);
}

/** `starting 312 ms, transferring 5 ms`: where the time of a handoff went. */
export function formatPhases(r: HandoffRecord): string {
  return Object.entries(phaseDurations(r))
    .map(([state, ms]) => `${state} ${formatDuration(ms)}`)
    .join(', ');
}

export function formatRecord(r: HandoffRecord, now = Date.now()): string {
  const when = new Date(r.requestedAt).toISOString().slice(11, 19);
  const head = `#${r.id} ${when} ${pad(r.trigger, 7)} gen ${r.from ?? '-'} -> ${r.to}  `;
  const ended = r.totalMs !== null;
  const parts = [
    ended ? `${r.state} in ${formatDuration(r.totalMs!)}` : `${r.state} for ${formatDuration(now - r.requestedAt)}`,
    formatPhases(r),
    r.resumeMs !== null ? `standby accepting in ${formatDuration(r.resumeMs)}` : null,
    r.drainedMs !== null ? `old ${r.oldStandby ? 'in standby' : 'exited'} ${formatDuration(r.drainedMs)}` : null,
    r.reason ? `(${r.reason})` : null,
    r.cut ? `${r.cut} cut` : null,
    r.ended && formatEndings(r.ended) ? `connections: ${formatEndings(r.ended)}` : null,
  ].filter(Boolean);
  return head + parts.join('  ');
}

/** ` (h2 8, ws 4)`: what a draining worker's connections carry. */
function byKind(k: Partial<Record<string, number>> | null | undefined): string {
  const parts = Object.entries(k ?? {})
    .filter(([, n]) => n)
    .map(([kind, n]) => `${kind} ${n}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}
