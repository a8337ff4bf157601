// `--metrics HOST:PORT`: Prometheus text on /metrics and a health answer on /healthz, served
// by the supervisor. Counters follow the supervisor's events; gauges are read from its status
// at scrape time, so they can never drift from what `baton status` shows.
import { createServer, type Server } from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricsAddress } from '../common/address.js';
import { CONN_ENDINGS } from '../common/connections.js';
import type { ConnEndings } from '../common/protocol.js';
import { log } from '../log/log.js';
import { type HandoffRecord, phaseDurations } from '../supervisor/handoff.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { WorkerState } from '../supervisor/worker.js';

const RESULTS = ['done', 'failed', 'rejected'] as const;
const WORKER_STATES: readonly WorkerState[] = ['starting', 'ready', 'draining', 'standby'];
/** From a fast reload of a plain app (~0.2 s) to a slow framework start or a long drain wait. */
const PHASE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * One registry for every service of this baton. With several (a config file's `services`),
 * every series carries a `service` label; with one, none, as before there were several.
 */
export function createMetrics(sups: readonly Supervisor[]): Registry {
  const grouped = sups.some((s) => s.grouped);
  const by = (sup: Supervisor, labels: Record<string, string> = {}): Record<string, string> => (grouped ? { service: sup.name, ...labels } : labels);
  const names = (...l: string[]): string[] => (grouped ? ['service', ...l] : l);
  const registers = [new Registry()];
  const [register] = registers as [Registry];
  // The supervisor process itself: RSS, open fds, CPU, event loop lag, as baton_process_* / baton_nodejs_*.
  collectDefaultMetrics({ register, prefix: 'baton_' });

  const reloads = new Counter({
    name: 'baton_reloads_total',
    help: 'Reloads by result: done, failed (the new generation did not start; the old one serves on), rejected (invalid config file; nothing started)',
    labelNames: names('result'),
    registers,
  });
  for (const sup of sups) for (const result of RESULTS) reloads.inc(by(sup, { result }), 0);
  const rollbacks = new Counter({
    name: 'baton_rollbacks_total',
    help: 'Rollbacks (a standby serving again, a canary dropped, or the previous command line reloaded) by cause: automatic (probation, canary) or requested (baton rollback)',
    labelNames: names('cause'),
    registers,
  });
  for (const sup of sups) for (const cause of ['automatic', 'requested']) rollbacks.inc(by(sup, { cause }), 0);
  const phases = new Histogram({
    name: 'baton_handoff_phase_seconds',
    help: 'Time reloads spent in each handoff state (waiting, starting, transferring, rolling-back)',
    labelNames: names('phase'),
    buckets: PHASE_BUCKETS,
    registers,
  });
  const restarts = new Counter({
    name: 'baton_worker_restarts_total',
    help: 'Workers restarted after they died while serving',
    labelNames: names(),
    registers,
  });
  const replaced = new Counter({
    name: 'baton_worker_memory_replacements_total',
    help: 'Workers replaced for going over --max-memory (a fresh one first, then the old one drained)',
    labelNames: names(),
    registers,
  });
  const cut = new Counter({
    name: 'baton_connections_cut_total',
    help: 'Connections still open when a draining worker reached its drain deadline',
    labelNames: names(),
    registers,
  });
  const drained = new Counter({
    name: 'baton_drain_connections_total',
    help: 'Connections of draining workers by what they carried (http1, h2, ws, sse, tls-handshake, tcp) and how they ended: finished, polite (GOAWAY, WebSocket close 1012, event stream ended, Connection: close), cut (at the drain deadline)',
    labelNames: names('kind', 'ended'),
    registers,
  });
  new Gauge({
    name: 'baton_workers',
    help: 'Workers of every generation still running, by state',
    labelNames: names('state'),
    registers,
    collect() {
      for (const sup of sups) {
        const counts = new Map<string, number>(WORKER_STATES.map((s) => [s, 0]));
        for (const g of sup.status().generations) for (const w of g.workers) if (counts.has(w.state)) counts.set(w.state, counts.get(w.state)! + 1);
        for (const [state, n] of counts) this.set(by(sup, { state }), n);
      }
    },
  });
  new Gauge({
    name: 'baton_workers_target',
    help: 'Workers each generation should have (--workers, baton scale)',
    labelNames: names(),
    registers,
    collect() {
      for (const sup of sups) this.set(by(sup), sup.status().workers);
    },
  });
  new Gauge({
    name: 'baton_serving_generation',
    help: 'Number of the generation that serves (0 before the first is ready)',
    labelNames: names(),
    registers,
    collect() {
      for (const sup of sups) this.set(by(sup), sup.status().serving ?? 0);
    },
  });

  // A record reports more steps after it ended (the old generation exiting): count each once.
  const ended = new WeakSet<HandoffRecord>();
  for (const sup of sups) {
    sup.events.on('handoff', (rec) => {
      if (rec.trigger === 'start' || (rec.state !== 'done' && rec.state !== 'failed') || ended.has(rec)) return;
      ended.add(rec);
      reloads.inc(by(sup, { result: rec.state }));
      for (const [phase, ms] of Object.entries(phaseDurations(rec))) phases.observe(by(sup, { phase }), ms / 1000);
    });
    sup.events.on('reload-rejected', () => reloads.inc(by(sup, { result: 'rejected' })));
    sup.events.on('memory-replaced', () => replaced.inc(by(sup)));
    sup.events.on('rollback', (_rec, automatic) => rollbacks.inc(by(sup, { cause: automatic ? 'automatic' : 'requested' })));
    sup.events.on('generation', (g) => {
      g.on('respawn', () => restarts.inc(by(sup)));
      // A worker cuts at a drain deadline on its way to standby, or to exit: each counted once.
      const counted = new WeakMap<object, number>();
      const count = (w: { cut: number }): void => {
        const n = w.cut - (counted.get(w) ?? 0);
        counted.set(w, w.cut);
        if (n > 0) cut.inc(by(sup), n);
      };
      g.on('worker-standby', count);
      g.on('worker-exit', (w: { cut: number; ended: ConnEndings }) => {
        count(w);
        for (const [kind, n] of Object.entries(w.ended)) for (const how of CONN_ENDINGS) if (n[how] > 0) drained.inc(by(sup, { kind, ended: how }), n[how]);
      });
    });
  }
  return register;
}

/**
 * /healthz is 200 once a generation serves and 503 before that or while stopping: a load
 * balancer sends nothing to a service that is going away or not up yet. With several
 * services, 200 only when every one serves.
 */
function health(sups: readonly Supervisor[]): { code: number; text: string } {
  const lines = sups.map((sup) => {
    const s = sup.status();
    const prefix = sup.grouped ? `${sup.name}: ` : '';
    if (s.state === 'stopping') return { ok: false, text: `${prefix}stopping` };
    if (s.serving === null) return { ok: false, text: `${prefix}starting` };
    return { ok: true, text: `${prefix}serving generation ${s.serving}` };
  });
  return { code: lines.every((l) => l.ok) ? 200 : 503, text: lines.map((l) => l.text).join('\n') };
}

/** Serve /metrics and /healthz; resolves once listening (rejects if the address cannot be had). */
export async function serveMetrics(sups: readonly Supervisor[], addr: MetricsAddress): Promise<Server> {
  const register = createMetrics(sups);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      register.metrics().then(
        (body) => res.writeHead(200, { 'content-type': register.contentType }).end(body),
        (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
      );
    } else if (path === '/healthz') {
      const h = health(sups);
      res.writeHead(h.code, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(`${h.text}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('baton serves /metrics and /healthz\n');
    }
  });
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(`cannot serve metrics on ${host}:${addr.port}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message} (${e.code})`)),
    );
    server.listen(addr.port, addr.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  log.info(`metrics on http://${host}:${port}/metrics, health on /healthz`);
  return server;
}
