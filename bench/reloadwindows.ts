// Reloads under load, several servers side by side, interleaved: in each round every target
// in turn (the order reversed every other round) gets the same load for a slice of time,
// with one reload in its middle; the others sit idle meanwhile. So the machine's noise
// (other work on its 2 cores) hits every target alike, which running them one after the
// other would not (see docs/benchmarks.md, "Side by side, interleaved").
//
// A slice: the load starts (its first SETTLE_MS are left out: new connections, a server
// idle until then); LEAD_MS after the start the reload is asked for; once the tool calls
// it done, AFTER_MS follow (the "1 s after a reload"), then TAIL_MS more. Latency of ok
// requests by the time they started: during the reload (request -> done), in the second
// after it, and outside (everything else after the settle). Failed requests by client kind.
import { loadavg } from 'node:os';
import { type ClientKind, percentile, type Sample, startLoad } from './load.js';
import type { Target } from './targets.js';

export const AFTER_MS = 1000;

/** The command line of a run in reload windows (bench/warm.ts, bench/compare.ts), for parseArgs. */
export const WINDOW_ARGS = {
  rounds: { type: 'string', default: '6' },
  lead: { type: 'string', default: '2500' },
  'keep-alive': { type: 'string', default: '64' },
  fresh: { type: 'string', default: '8' },
} as const;

/** What parseArgs read of WINDOW_ARGS. */
export function windowArgs(v: {
  rounds?: string;
  lead?: string;
  'keep-alive'?: string;
  fresh?: string;
}): Pick<WindowsOptions, 'rounds' | 'leadMs' | 'keepAlive' | 'fresh'> {
  return { rounds: Number(v.rounds), leadMs: Number(v.lead), keepAlive: Number(v['keep-alive']), fresh: Number(v.fresh) };
}
const SETTLE_MS = 700;
const TAIL_MS = 1000;

export interface WindowsOptions {
  rounds: number;
  /** From the start of a slice's load to the reload request. */
  leadMs: number;
  keepAlive: number;
  fresh: number;
  path: string;
  /** Called once per target and round, after its slice (progress). */
  log?: (line: string) => void;
  /** Run at the start of every round, no load on (e.g. a bare start-up to compare with). */
  between?: () => Promise<void>;
}

export const KINDS: { kind: ClientKind; name: string }[] = [
  { kind: 'undici', name: 'keep-alive' },
  { kind: 'fresh', name: 'new connection' },
];

export interface TargetResult {
  target: Target;
  requests: Record<ClientKind, number>;
  failed: Record<ClientKind, number>;
  errors: Record<string, number>;
  /** Latencies (ms) by client kind and window. */
  outside: Record<ClientKind, number[]>;
  during: Record<ClientKind, number[]>;
  after: Record<ClientKind, number[]>;
  /** Reload request -> the tool said done, ms, one per reload. */
  reloadMs: number[];
  /** Reload request -> the first answer of the new version, ms. */
  firstNewMs: number[];
  details: string[];
  /** 1-min load average when each of its slices began. */
  loads: number[];
  /** Targets with loops(): per reload, the supervisor's longest event-loop block, and the workers' (read after stop). */
  loops: { supervisor: number; workers: () => { old: number; next: number } }[];
}

const empty = (): Record<ClientKind, number[]> => ({ undici: [], agent: [], fresh: [] });
const zero = (): Record<ClientKind, number> => ({ undici: 0, agent: 0, fresh: 0 });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function reloadWindows(targets: Target[], o: WindowsOptions): Promise<TargetResult[]> {
  const results = targets.map(
    (target): TargetResult => ({
      target,
      requests: zero(),
      failed: zero(),
      errors: {},
      outside: empty(),
      during: empty(),
      after: empty(),
      reloadMs: [],
      firstNewMs: [],
      details: [],
      loads: [],
      loops: [],
    }),
  );
  for (let round = 0; round < o.rounds; round++) {
    await o.between?.();
    const order = round % 2 === 0 ? results : [...results].reverse();
    for (const r of order) {
      await slice(r, o);
      o.log?.(
        `round ${round + 1}/${o.rounds} ${r.target.name}: reload ${Math.round(r.reloadMs.at(-1)!)} ms, first new answer ${Math.round(r.firstNewMs.at(-1) ?? NaN)} ms, failed ${r.failed.undici + r.failed.fresh}`,
      );
    }
  }
  for (const r of results) for (const w of [r.outside, r.during, r.after]) for (const xs of Object.values(w)) xs.sort((a, b) => a - b);
  return results;
}

async function slice(r: TargetResult, o: WindowsOptions): Promise<void> {
  r.loads.push(loadavg()[0]!);
  const versionOf = (body: string): string => /^v=(\S+)/.exec(body)?.[1] ?? '';
  const seen = new Set<string>();
  let asked = Infinity;
  let firstNew = NaN;
  const load = startLoad({
    target: { host: '127.0.0.1', port: r.target.port },
    clients: [
      { kind: 'undici', concurrency: o.keepAlive },
      { kind: 'fresh', concurrency: o.fresh },
    ],
    path: o.path,
    maxRequests: 5_000_000,
    maxDurationMs: o.leadMs + 120_000,
    onOk: (_kind, body, t) => {
      const v = versionOf(body);
      if (t < asked) seen.add(v);
      else if (Number.isNaN(firstNew) && !seen.has(v)) firstNew = t;
    },
  });
  const now = (): number => performance.now() - load.startedAt;
  let from = 0;
  let done = 0;
  try {
    await sleep(o.leadMs);
    from = now();
    asked = from;
    await r.target.reload();
    done = now();
    const wallDone = Date.now();
    await sleep(AFTER_MS + TAIL_MS);
    // Workers: from the transfer on (a new worker's start-up blocks its loop by design: it loads the app).
    if (r.target.loops) r.loops.push(await r.target.loops(wallDone - 50, wallDone + AFTER_MS));
  } catch (e) {
    await load.stop();
    throw e;
  }
  const report = await load.stop();
  r.reloadMs.push(done - from);
  r.firstNewMs.push(firstNew - from);
  const d = r.target.details?.();
  if (d) r.details.push(d);
  for (const { kind } of KINDS) {
    r.requests[kind] += report.byKind[kind].requests;
    r.failed[kind] += report.byKind[kind].failed;
  }
  for (const [e, n] of Object.entries(report.errors)) r.errors[e] = (r.errors[e] ?? 0) + n;
  const put = (s: Sample): void => {
    if (s.t < SETTLE_MS) return;
    const w = s.t >= from && s.t < done ? r.during : s.t >= done && s.t < done + AFTER_MS ? r.after : r.outside;
    w[s.kind].push(s.ms);
  };
  for (const s of report.samples) put(s);
}

/** p99 of an ascending list; NaN (shown as —) when nothing was measured. */
export const p99 = (sorted: number[]): number => (sorted.length ? percentile(sorted, 99) : NaN);
