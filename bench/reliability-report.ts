// Renders the fault matrix (and the soak figures) into docs/reliability.md from the suite's
// own output, so the page shows what was run, not what was meant:
//
//   npm run build
//   BATON_RELIABILITY_OUT=/tmp/rel node --test --test-concurrency=2 dist/test/faults/*.test.js
//   node dist/bench/soak.js --reloads 200 --out /tmp/rel/soak.json      # optional
//   node dist/bench/reliability-report.js /tmp/rel [docs/reliability.md]
//
// Each fault case appends a JSON line to <dir>/faults.jsonl (test/faults/harness.ts record());
// the table goes between `<!-- matrix:begin -->` and `<!-- matrix:end -->`, the soak between
// `<!-- soak:begin -->` and `<!-- soak:end -->`. Without a page to edit, prints both.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { CaseResult } from '../test/faults/harness.js';

/** Rows in this order (the order of the issue); cases not listed follow. */
const ORDER = [
  'start-exit',
  'start-hang',
  'ready-then-crash',
  'crash-mid-handoff',
  'ignore-drain',
  'crash-draining',
  'sigkill',
  'sigstop',
  'oom',
  'supervisor-kill',
  'supervisor-kill-rr',
  'reload-storm',
  'stop-during-handoff',
  'reload-during-stop',
  'scale-during-handoff',
  'backlog-overflow',
  'hostile-control',
];

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function matrix(results: CaseResult[]): string {
  const last = new Map<string, CaseResult>();
  for (const r of results) last.set(r.id, r);
  const rank = (id: string): number => (ORDER.includes(id) ? ORDER.indexOf(id) : ORDER.length);
  const rows = [...last.values()].sort((a, b) => rank(a.id) - rank(b.id) || a.id.localeCompare(b.id));
  const lines = [
    '| case | fault | expected | observed | requests | failed |',
    '|---|---|---|---|--:|--:|',
    ...rows.map((r) => `| \`${r.id}\` | ${cell(r.fault)} | ${cell(r.expected)} | ${cell(r.observed)} | ${r.requests} | ${r.failed}${errors(r)} |`),
  ];
  const when = rows
    .map((r) => r.at)
    .filter(Boolean)
    .sort();
  return `${lines.join('\n')}\n\n${rows.length} cases, run ${when[0]?.slice(0, 10) ?? '?'}; "failed" counts every request of the case's load (and the test's own requests where it says so) that did not get a complete 200.\n`;
}

function errors(r: CaseResult): string {
  const e = Object.entries(r.errors ?? {});
  return e.length ? ` (${e.map(([k, n]) => `${k} ${n}`).join(', ')})` : '';
}

interface Soak {
  command: string;
  reloads: number;
  workers: number;
  warmup: number;
  seconds: number;
  requests: number;
  ok: number;
  failed: number;
  latencyMs: { p50: number; p99: number; max: number };
  atStart: { fds: number; rssMiB: number; processes: number };
  before: { fds: number; rssMiB: number; processes: number };
  after: { fds: number; rssMiB: number; processes: number };
  node: string;
  date: string;
}

export function soakTable(s: Soak): string {
  return [
    `\`${s.command}\` (${s.date.slice(0, 10)}, Node ${s.node}, ${s.workers} worker(s), 2 cores): ${s.reloads} reloads in ${s.seconds} s under mixed load (4 undici + 4 http.Agent keep-alive loops, 2 new-connection loops).`,
    '',
    '| supervisor | at start | before (after a warm-up of ' + s.warmup + ' reloads) | after ' + s.reloads + ' reloads |',
    '|---|--:|--:|--:|',
    `| open descriptors (/proc/<pid>/fd) | ${s.atStart.fds} | ${s.before.fds} | ${s.after.fds} |`,
    `| RSS (MiB) | ${s.atStart.rssMiB} | ${s.before.rssMiB} | ${s.after.rssMiB} |`,
    `| processes in its tree (itself included) | ${s.atStart.processes} | ${s.before.processes} | ${s.after.processes} |`,
    '',
    `Requests: ${s.requests} sent, ${s.ok} answered, **${s.failed} failed**; latency p50 ${s.latencyMs.p50.toFixed(1)} ms, p99 ${s.latencyMs.p99.toFixed(1)} ms, max ${s.latencyMs.max.toFixed(0)} ms.`,
    '',
  ].join('\n');
}

function replace(page: string, name: string, body: string): string {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const i = page.indexOf(begin);
  const j = page.indexOf(end);
  if (i < 0 || j < i) throw new Error(`the page has no ${begin} ... ${end} block`);
  return `${page.slice(0, i + begin.length)}\n${body}${page.slice(j)}`;
}

function main(): void {
  const [dir, page] = process.argv.slice(2);
  if (!dir) {
    console.error('usage: reliability-report <results dir> [docs/reliability.md]');
    process.exit(2);
  }
  const faults = join(dir, 'faults.jsonl');
  const results = existsSync(faults)
    ? readFileSync(faults, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as CaseResult)
    : [];
  const soakFile = join(dir, 'soak.json');
  const soak = existsSync(soakFile) ? soakTable(JSON.parse(readFileSync(soakFile, 'utf8')) as Soak) : null;
  if (!page) {
    console.log(matrix(results));
    if (soak) console.log(soak);
    return;
  }
  let text = readFileSync(page, 'utf8');
  if (results.length) text = replace(text, 'matrix', matrix(results));
  if (soak) text = replace(text, 'soak', soak);
  writeFileSync(page, text);
  console.log(`${page}: ${results.length ? `${new Set(results.map((r) => r.id)).size} cases` : 'matrix unchanged'}${soak ? ', soak figures' : ''}`);
}

function join(a: string, b: string): string {
  return `${a.replace(/\/$/, '')}/${b}`;
}

main();
