// `--metrics`: /metrics must parse as Prometheus text and its counters must move with what
// happens (a reload, a failed reload, a refused config, a crash, a cut at the drain
// deadline); /healthz must say 503 before the first generation serves and while stopping.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { controlRequest } from '../src/control/control.js';
import type { StatusReport } from '../src/supervisor/supervisor.js';
import { EXAMPLES, FIXTURES, tempDir } from './helpers/baton.js';
import { cli, configDir, type Proc } from './helpers/ops.js';

type Samples = Map<string, number>;

/**
 * The Prometheus text exposition format (version 0.0.4), strictly: every sample belongs to
 * a family declared by `# TYPE` (histograms add _bucket/_sum/_count, summaries _sum/_count),
 * names and labels are well formed, values are numbers. Keys are `name{a="x",b="y"}`.
 */
function parseProm(text: string): { samples: Samples; types: Map<string, string> } {
  const types = new Map<string, string>();
  const samples: Samples = new Map();
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sampleRe = new RegExp(`^(${NAME})(?:\\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\.)*",?)*)\\})? (\\S+)(?: -?\\d+)?$`);
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  for (const line of text.split('\n').slice(0, -1)) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      assert.match(meta[2]!, new RegExp(`^${NAME}$`), line);
      if (meta[1] === 'TYPE') {
        assert.match(meta[3]!, /^(counter|gauge|histogram|summary|untyped)$/, line);
        assert.ok(!types.has(meta[2]!), `TYPE given twice: ${line}`);
        types.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    assert.ok(!line.startsWith('#'), `stray comment: ${line}`);
    const m = sampleRe.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const [, name, labels, value] = m;
    const family = [name!, name!.replace(/_(bucket|sum|count)$/, '')].find((n) => types.has(n));
    assert.ok(family, `no TYPE for ${name}`);
    if (family !== name) assert.match(types.get(family)!, /^(histogram|summary)$/, line);
    assert.ok(/^(NaN|[+-]Inf|[+-]?\d+(\.\d+)?([eE][+-]?\d+)?)$/.test(value!), `bad value: ${line}`);
    const labelList = labels ? [...labels.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}="${l[2]}"`).sort() : [];
    const key = labelList.length ? `${name}{${labelList.join(',')}}` : name!;
    assert.ok(!samples.has(key), `sample given twice: ${key}`);
    samples.set(key, Number(value!.replace('Inf', 'Infinity')));
  }
  return { samples, types };
}

async function get(url: string): Promise<{ status: number; body: string; type: string }> {
  const r = await request(url);
  return { status: r.statusCode, body: await r.body.text(), type: String(r.headers['content-type']) };
}

async function status(control: string): Promise<StatusReport> {
  const r = await controlRequest(control, { cmd: 'status' });
  assert.ok(r.ok);
  return r.result as StatusReport;
}

async function metricsUrl(b: Proc): Promise<string> {
  return `http://127.0.0.1:${(await b.waitFor(/metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/))[1]}`;
}

test('/metrics parses as Prometheus text; counters move across reloads, failures, a crash and a cut', async (t) => {
  const ops = ['node', join(FIXTURES, 'ops.mjs')];
  const settings = { control: './ctl.sock', listen: ['127.0.0.1:0'], command: ops, drainTimeout: '1s', metrics: '127.0.0.1:0' };
  const c = configDir(JSON.stringify(settings));
  const b = cli(['start'], { cwd: c.dir });
  t.after(() => b.kill());
  const base = await metricsUrl(b);
  await b.waitFor(/handoff 1: generation 1 serves/);
  const control = join(c.dir, 'ctl.sock');
  const scrape = async (): Promise<Samples> => {
    const r = await get(`${base}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    return parseProm(r.body).samples;
  };

  const first = await get(`${base}/metrics`);
  const { samples: m0, types } = parseProm(first.body);
  assert.equal(types.get('baton_reloads_total'), 'counter');
  assert.equal(types.get('baton_handoff_phase_seconds'), 'histogram');
  assert.equal(types.get('baton_workers'), 'gauge');
  assert.equal(m0.get('baton_reloads_total{result="done"}'), 0, 'generation 1 is a start, not a reload');
  assert.equal(m0.get('baton_reloads_total{result="failed"}'), 0);
  assert.equal(m0.get('baton_reloads_total{result="rejected"}'), 0);
  assert.equal(m0.get('baton_workers{state="ready"}'), 1);
  assert.equal(m0.get('baton_workers_target'), 1);
  assert.equal(m0.get('baton_serving_generation'), 1);
  assert.equal(m0.get('baton_worker_restarts_total'), 0);
  assert.equal(m0.get('baton_connections_cut_total'), 0);
  assert.ok(m0.get('baton_process_resident_memory_bytes')! > 10e6, 'supervisor RSS');
  assert.ok(m0.get('baton_process_open_fds')! > 3, 'supervisor open fds');

  assert.ok((await controlRequest(control, { cmd: 'reload' })).ok);
  const m1 = await scrape();
  assert.equal(m1.get('baton_reloads_total{result="done"}'), 1);
  assert.equal(m1.get('baton_handoff_phase_seconds_count{phase="starting"}'), 1);
  assert.equal(m1.get('baton_handoff_phase_seconds_count{phase="transferring"}'), 1);
  assert.equal(m1.get('baton_handoff_phase_seconds_bucket{le="+Inf",phase="starting"}'), 1);
  assert.ok(m1.get('baton_handoff_phase_seconds_sum{phase="starting"}')! > 0);
  assert.equal(m1.get('baton_serving_generation'), 2);

  const failed = await controlRequest(control, { cmd: 'reload', argv: ['node', join(EXAMPLES, 'hello/broken.js')], cwd: c.dir });
  assert.equal(failed.ok, false);
  c.write(JSON.stringify({ ...settings, workers: 'lots' }));
  const rejected = await controlRequest(control, { cmd: 'reload' });
  assert.ok(!rejected.ok);
  assert.match(rejected.error, /workers: expected a number/);
  c.write(JSON.stringify(settings));
  const m2 = await scrape();
  assert.equal(m2.get('baton_reloads_total{result="done"}'), 1);
  assert.equal(m2.get('baton_reloads_total{result="failed"}'), 1);
  assert.equal(m2.get('baton_reloads_total{result="rejected"}'), 1);
  assert.equal(m2.get('baton_handoff_phase_seconds_count{phase="rolling-back"}'), 1);
  assert.equal(m2.get('baton_serving_generation'), 2);

  // A worker that dies while serving is restarted, and counted.
  const s = await status(control);
  const port = Number(s.listeners[0]!.address.split(':')[1]);
  process.kill(s.generations.find((g) => g.number === 2)!.workers[0]!.pid, 'SIGKILL');
  await b.waitFor(/restarting worker 2\.0/);
  // A request still running at the old generation's drain deadline (1 s) is cut, and counted.
  const slow = request(`http://127.0.0.1:${port}/slow?ms=10000`).then(
    () => 'answered',
    () => 'cut',
  );
  await b.waitFor(/\[2\.0\] slow request started/);
  const drained = await controlRequest(control, { cmd: 'reload', wait: 'drained' });
  assert.ok(drained.ok);
  assert.equal(await slow, 'cut');
  const m3 = await scrape();
  assert.equal(m3.get('baton_worker_restarts_total'), 1);
  assert.equal(m3.get('baton_connections_cut_total'), 1);
  assert.equal(m3.get('baton_reloads_total{result="done"}'), 2);
  assert.equal(m3.get('baton_workers{state="ready"}'), 1);
  assert.equal(m3.get('baton_workers{state="draining"}'), 0);

  assert.equal((await get(`${base}/nothing`)).status, 404);
});

test('/healthz: 503 until the first generation serves, 200 while it serves, 503 while stopping', async (t) => {
  const gate = join(tempDir(), 'gate');
  const b = cli([
    'start',
    '--control',
    join(tempDir(), 'ctl.sock'),
    '--listen',
    '127.0.0.1:0',
    '--metrics',
    '0',
    '--ready',
    'manual',
    '--drain-timeout',
    '10s',
    '--',
    'node',
    join(FIXTURES, 'ops.mjs'),
    gate,
  ]);
  t.after(() => b.kill());
  const base = await metricsUrl(b);
  await b.waitFor(/\[1\.0\] ops listening gen=1/);
  assert.deepEqual(await get(`${base}/healthz`).then((r) => [r.status, r.body]), [503, 'starting\n']);
  writeFileSync(gate, '');
  await b.waitFor(/handoff 1: generation 1 serves/);
  assert.deepEqual(await get(`${base}/healthz`).then((r) => [r.status, r.body]), [200, 'serving generation 1\n']);
  // A request in flight holds the stop open while the probe is asked.
  const port = Number((await b.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const slow = request(`http://127.0.0.1:${port}/slow?ms=1500`).then((r) => r.body.text());
  await b.waitFor(/slow request started/);
  b.proc.kill('SIGTERM');
  await b.waitFor(/SIGTERM: stopping gracefully/);
  assert.deepEqual(await get(`${base}/healthz`).then((r) => [r.status, r.body]), [503, 'stopping\n']);
  assert.match(await slow, /^gen=1 slow done/);
  assert.equal(await b.exited, 0);
});
