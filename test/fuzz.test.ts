// Property-based fuzzing of every parser that takes outside input: control-socket lines,
// --listen, durations, the config file. Fixed seed and bounded runs: the same inputs on
// every run, a few seconds in all. A failure prints the seed and the shrunk input.

import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { resolve } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { ConfigError, validateConfig } from '../src/cli/config.js';
import { describe as describeListener, parseListen } from '../src/common/address.js';
import { formatDuration, parseDuration } from '../src/common/duration.js';
import { type ControlEvent, type ControlReply, LOG_RING_LINES, type LogEvent } from '../src/common/protocol.js';
import { type ControlHandler, handleLine } from '../src/control/control.js';
import type { LogClient } from '../src/log/ring.js';

// BATON_FUZZ_SEED / BATON_FUZZ_RUNS: hunt with other inputs locally; the suite uses these.
const RUNS = { seed: Number(process.env.BATON_FUZZ_SEED ?? 20_240_601), numRuns: Number(process.env.BATON_FUZZ_RUNS ?? 500) };

/* ------------------------------------------------------------------ */
/* Control protocol                                                    */
/* ------------------------------------------------------------------ */

const absPath = fc.array(fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/), { minLength: 0, maxLength: 4 }).map((p) => `/${p.join('/')}`);
const word = fc.string({ minLength: 1, maxLength: 20 });
const id = fc.option(fc.integer(), { nil: undefined });

const serviceName = fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/);
const service = fc.option(serviceName, { nil: undefined });

/** Requests the protocol accepts, built independently of the valibot schema. */
const validRequest: fc.Arbitrary<Record<string, unknown>> = fc
  .oneof(
    fc.record(
      {
        id,
        cmd: fc.constant('reload'),
        service,
        argv: fc.array(word, { minLength: 1, maxLength: 5 }),
        cwd: absPath,
        wait: fc.constantFrom('serving', 'drained', 'probation'),
        probationMs: fc.integer({ min: 0, max: 86_400_000 }),
        maxErrorRate: fc.double({ min: 0, max: 1, noNaN: true }),
        canary: fc.integer({ min: 1, max: 1024 }),
      },
      { requiredKeys: ['cmd'] },
    ),
    fc.record({ id, cmd: fc.constant('rollback'), service, reason: fc.string({ maxLength: 500 }) }, { requiredKeys: ['cmd'] }),
    fc.record({ id, cmd: fc.constant('status'), service }, { requiredKeys: ['cmd'] }),
    fc.record(
      {
        id,
        cmd: fc.constant('scale'),
        service,
        workers: fc.oneof(
          fc.integer(),
          fc.tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 9999 })).map(([s, n]) => `${s}${n}`),
        ),
      },
      { requiredKeys: ['cmd', 'workers'] },
    ),
    fc.record({ id, cmd: fc.constantFrom('stop', 'takeover', 'takeover-commit') }, { requiredKeys: ['cmd'] }),
    fc.record({ id, cmd: fc.constant('upgrade'), exec: absPath, restartWorkers: fc.boolean(), dropStandby: fc.boolean() }, { requiredKeys: ['cmd'] }),
    fc.record(
      {
        id,
        cmd: fc.constant('logs'),
        service,
        lines: fc.integer({ min: 0, max: LOG_RING_LINES }),
        generation: fc.integer({ min: 1, max: 2 ** 31 }),
        follow: fc.boolean(),
      },
      { requiredKeys: ['cmd'] },
    ),
  )
  .map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)));

/*
 * The oracle: what docs/control-protocol.md says a request is, written out by hand (not the
 * valibot schema the supervisor uses). An object with a known `cmd`, an optional integer
 * `id`, the fields its command takes and no other key, each of the documented type.
 */
const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);
const isAbsolute = (x: unknown): boolean => typeof x === 'string' && x.startsWith('/') && x.length <= 4096;
const isServiceName = (x: unknown): boolean => typeof x === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(x);
const FIELDS: Record<string, Record<string, (x: unknown) => boolean>> = {
  reload: {
    service: isServiceName,
    // A command line: at least a program, no empty word.
    argv: (x) => Array.isArray(x) && x.length >= 1 && x.length <= 4096 && x.every((w) => typeof w === 'string' && w.length > 0),
    cwd: isAbsolute,
    wait: (x) => x === 'serving' || x === 'drained' || x === 'probation',
    probationMs: (x) => isInt(x) && x >= 0 && x <= 86_400_000,
    maxErrorRate: (x) => typeof x === 'number' && x >= 0 && x <= 1,
    canary: (x) => isInt(x) && x >= 1 && x <= 1024,
  },
  rollback: { service: isServiceName, reason: (x) => typeof x === 'string' && x.length <= 500 },
  status: { service: isServiceName },
  scale: { service: isServiceName, workers: (x) => isInt(x) || (typeof x === 'string' && /^[+-][0-9]{1,4}$/.test(x)) },
  stop: {},
  takeover: {},
  'takeover-commit': {},
  upgrade: { exec: isAbsolute, restartWorkers: (x) => typeof x === 'boolean', dropStandby: (x) => typeof x === 'boolean' },
  logs: { service: isServiceName, lines: (x) => isInt(x) && x >= 0 && x <= 2000, generation: (x) => isInt(x) && x >= 1, follow: (x) => typeof x === 'boolean' },
};
const REQUIRED: Record<string, string[]> = { scale: ['workers'] };

function documentedRequest(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false;
  const r = raw as Record<string, unknown>;
  if (typeof r.cmd !== 'string' || !Object.hasOwn(FIELDS, r.cmd)) return false;
  const fields = FIELDS[r.cmd]!;
  if ('id' in r && !isInt(r.id)) return false;
  for (const [k, v] of Object.entries(r)) {
    if (k === 'cmd' || k === 'id') continue;
    if (!Object.hasOwn(fields, k) || !fields[k]!(v)) return false;
  }
  return (REQUIRED[r.cmd] ?? []).every((k) => k in r);
}

/** A valid request made invalid in one way: an unknown key, a required one dropped, a field of the wrong type or out of range. */
const nearMiss: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc
    .tuple(validRequest, fc.string({ minLength: 1, maxLength: 10 }), fc.jsonValue({ maxDepth: 1 }))
    .filter(([r, k]) => k !== 'id' && k !== 'cmd' && !Object.hasOwn(FIELDS[r.cmd as string]!, k))
    .map(([r, k, v]) => ({ ...r, [k]: v })),
  validRequest.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'cmd'))),
  validRequest.filter((r) => r.cmd === 'scale').map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => k !== 'workers'))),
  fc
    .tuple(validRequest, fc.constantFrom<[string, unknown]>(['id', '1'], ['id', 1.5], ['id', null], ['cmd', 'Status'], ['cmd', 'reloads'], ['cmd', 7]))
    .map(([r, [k, v]]) => ({ ...r, [k]: v })),
  fc.constantFrom<Record<string, unknown>>(
    { cmd: 'reload', argv: [] },
    { cmd: 'reload', argv: [''] },
    { cmd: 'reload', argv: 'node' },
    { cmd: 'reload', cwd: 'relative/dir' },
    { cmd: 'reload', wait: 'ready' },
    { cmd: 'status', service: '' },
    { cmd: 'status', service: 'a b' },
    { cmd: 'status', service: 'x'.repeat(65) },
    { cmd: 'scale', workers: '3' },
    { cmd: 'scale', workers: '+12345' },
    { cmd: 'scale', workers: 1.5 },
    { cmd: 'scale', workers: null },
    { cmd: 'logs', lines: -1 },
    { cmd: 'logs', lines: LOG_RING_LINES + 1 },
    { cmd: 'logs', generation: 0 },
    { cmd: 'logs', follow: 'yes' },
    { cmd: 'upgrade', exec: 'dist/cli.js' },
    { cmd: 'upgrade', restartWorkers: 1 },
    { cmd: 'stop', service: 'web' },
    { cmd: 'takeover', argv: ['x'] },
  ),
);

/** Runs one line through the control socket's line handler; returns what was written and what reached the handler. */
async function run(line: string): Promise<{ replies: (ControlReply | ControlEvent | LogEvent)[]; handled: unknown[] }> {
  const replies: (ControlReply | ControlEvent | LogEvent)[] = [];
  const handled: unknown[] = [];
  const handler: ControlHandler = async (req) => {
    handled.push(req);
    return { echo: req.cmd };
  };
  const client: LogClient = { send: () => true, signal: new AbortController().signal };
  await handleLine(line, handler, (m) => replies.push(m), client, {} as Socket);
  return { replies, handled };
}

function oneReply(r: { replies: unknown[] }, line: string): ControlReply {
  assert.equal(r.replies.length, 1, `line ${JSON.stringify(line.slice(0, 200))}: ${r.replies.length} replies`);
  const reply = r.replies[0] as ControlReply;
  assert.equal(typeof reply.ok, 'boolean');
  // What goes back on the wire must serialize.
  JSON.stringify(reply);
  return reply;
}

test('control: any line gets exactly one reply; the handler sees only valid requests', async () => {
  const line = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    // Near misses: a valid request with a key changed, dropped or added.
    fc.tuple(validRequest, fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 })).map(([r, k, v]) => JSON.stringify({ ...r, [k]: v })),
    fc.tuple(validRequest, fc.nat()).map(([r, n]) => {
      const keys = Object.keys(r);
      const drop = keys[n % keys.length]!;
      return JSON.stringify(Object.fromEntries(Object.entries(r).filter(([k]) => k !== drop)));
    }),
    fc.nat({ max: 20_000 }).map((n) => '['.repeat(n)),
  );
  await fc.assert(
    fc.asyncProperty(line, async (l) => {
      const r = await run(l);
      const reply = oneReply(r, l);
      let raw: unknown;
      try {
        raw = JSON.parse(l);
      } catch {
        assert.equal(reply.ok, false);
        assert.equal(r.handled.length, 0);
        return;
      }
      const valid = documentedRequest(raw);
      assert.equal(r.handled.length, valid ? 1 : 0, `handled ${l.slice(0, 200)}`);
      assert.equal(reply.ok, valid, `${valid ? 'refused' : 'accepted'} ${l.slice(0, 200)}: ${JSON.stringify(reply).slice(0, 300)}`);
      if (!reply.ok) assert.ok(reply.error.length > 0 && reply.error.length < 2000, reply.error);
      const rawId = (raw as { id?: unknown } | null)?.id;
      if (typeof rawId === 'number') assert.equal(reply.id, rawId);
    }),
    RUNS,
  );
});

test('control: near misses of valid requests are refused with an error, and reach no handler', async () => {
  await fc.assert(
    fc.asyncProperty(nearMiss, async (req) => {
      assert.equal(documentedRequest(req), false, `the model accepts the near miss ${JSON.stringify(req)}`);
      const l = JSON.stringify(req);
      const r = await run(l);
      const reply = oneReply(r, l);
      assert.equal(reply.ok, false, `accepted ${l}`);
      assert.match(reply.error, /^invalid request/);
      assert.equal(r.handled.length, 0);
    }),
    RUNS,
  );
});

test('control: every valid request reaches the handler as sent', async () => {
  await fc.assert(
    fc.asyncProperty(validRequest, async (req) => {
      assert.ok(documentedRequest(req), `the model refuses ${JSON.stringify(req)}`);
      const l = JSON.stringify(req);
      const r = await run(l);
      const reply = oneReply(r, l);
      assert.equal(reply.ok, true, JSON.stringify(reply));
      assert.deepEqual(r.handled, [req]);
      assert.equal(reply.id, req.id);
    }),
    RUNS,
  );
});

/* ------------------------------------------------------------------ */
/* --listen                                                            */
/* ------------------------------------------------------------------ */

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
const port = fc.integer({ min: 0, max: 65535 });
const listenName = fc.option(fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/), { nil: undefined });

test('--listen: any text gives a well-formed listener or a "bad ..." error, nothing else', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.tuple(fc.constantFrom('', 'unix:', 'udp:', 'a=', '[::1]:', '127.0.0.1:', 'localhost:'), fc.string({ maxLength: 20 })).map(([p, s]) => p + s),
    fc.tuple(ipv4, fc.integer({ min: -10, max: 100_000 })).map(([h, p]) => `${h}:${p}`),
    fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 70_000 })).map(([h, p]) => `[${h}]:${p}`),
  );
  fc.assert(
    fc.property(text, (t) => {
      let spec: ReturnType<typeof parseListen>;
      try {
        spec = parseListen(t);
      } catch (e) {
        assert.ok(e instanceof Error);
        assert.match(e.message, /^bad (--listen|listener name) '/, e.message);
        return;
      }
      assert.match(spec.name, NAME);
      if (spec.kind === 'unix') assert.ok(spec.path.startsWith('/'));
      else {
        assert.ok(Number.isInteger(spec.port) && spec.port >= 0 && spec.port <= 65535);
        assert.ok(/^[\d.]+$/.test(spec.host) || spec.host.includes(':'), spec.host);
      }
      // What it describes parses back to the same listener.
      const again = parseListen(`${spec.name}=${describeListener(spec)}`);
      assert.deepEqual(again, spec);
    }),
    RUNS,
  );
});

test('--listen: generated addresses parse to what was meant', () => {
  const addr = fc.oneof(
    fc.record({ kind: fc.constantFrom('tcp' as const, 'udp' as const), host: ipv4, port }),
    fc.record({ kind: fc.constantFrom('tcp' as const, 'udp' as const), host: fc.ipV6(), port }),
    fc.record({ kind: fc.constant('unix' as const), path: absPath.filter((p) => p !== '/') }),
  );
  fc.assert(
    fc.property(addr, listenName, (a, name) => {
      const body = a.kind === 'unix' ? `unix:${a.path}` : `${a.kind === 'udp' ? 'udp:' : ''}${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
      const spec = parseListen(name === undefined ? body : `${name}=${body}`);
      assert.equal(spec.kind, a.kind);
      if (name !== undefined) assert.equal(spec.name, name);
      if (a.kind === 'unix') assert.equal(spec.kind === 'unix' && spec.path, resolve(a.path));
      else {
        assert.equal(spec.kind !== 'unix' && spec.port, a.port);
        assert.equal(spec.kind !== 'unix' && spec.host, a.host);
      }
    }),
    RUNS,
  );
});

/* ------------------------------------------------------------------ */
/* Durations                                                           */
/* ------------------------------------------------------------------ */

const UNIT = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

test('durations: any text gives whole milliseconds within a timer\'s range, or a "bad duration" error', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 30 }),
    fc
      .tuple(
        fc.oneof(fc.double({ noNaN: true }).map(String), fc.nat().map(String), fc.string({ maxLength: 6 })),
        fc.constantFrom('', 'ms', 's', 'm', 'h', 'd', ' s', 'S'),
      )
      .map(([n, u]) => n + u),
  );
  fc.assert(
    fc.property(text, (t) => {
      let ms: number;
      try {
        ms = parseDuration(t);
      } catch (e) {
        assert.ok(e instanceof Error);
        assert.match(e.message, /^bad duration '/);
        return;
      }
      assert.ok(Number.isSafeInteger(ms) && ms >= 0 && ms <= 2 ** 31 - 1, `${t} -> ${ms}`);
      assert.ok(/(ms|s|m|h)\s*$/.test(t), `accepted '${t}' without a unit`);
      assert.equal(typeof formatDuration(ms), 'string');
    }),
    RUNS,
  );
});

test('durations: N<unit> is N times the unit, bare numbers are refused', () => {
  fc.assert(
    fc.property(fc.nat({ max: 10_000_000 }), fc.constantFrom(...(Object.keys(UNIT) as (keyof typeof UNIT)[])), (n, unit) => {
      const want = n * UNIT[unit];
      if (want > 2 ** 31 - 1) assert.throws(() => parseDuration(`${n}${unit}`), /too long/);
      else assert.equal(parseDuration(`${n}${unit}`), want);
      assert.throws(() => parseDuration(String(n)), /bad duration/);
    }),
    RUNS,
  );
});

/* ------------------------------------------------------------------ */
/* Config file                                                         */
/* ------------------------------------------------------------------ */

const LABEL = 'baton.config.json';

/** Values for each key, valid and not, mixed with arbitrary JSON. */
const configValue = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  fc.constantFrom('30s', '500ms', '2m', 'auto', 'listen', 'manual', 'notify', 'shared', 'round-robin', 'text', 'json', 'SIGTERM', '8080', '127.0.0.1:9464'),
  fc.integer({ min: -5, max: 70_000 }),
  fc.array(
    fc.oneof(
      fc.constantFrom('8080', 'unix:app.sock', '[::1]:0', 'udp:5353', 'nowhere:1'),
      port,
      fc.record({ name: fc.string({ maxLength: 8 }), address: fc.constantFrom('8080', '0', 'x') }),
    ),
    { maxLength: 3 },
  ),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 8 }), fc.integer())),
);
const KEYS = [
  'name',
  'control',
  'listen',
  'workers',
  'ready',
  'readyAfter',
  'watchdog',
  'drainSignal',
  'stopTimeout',
  'user',
  'group',
  'distribution',
  'readyTimeout',
  'drainTimeout',
  'maxSurge',
  'maxDraining',
  'backlog',
  'logFormat',
  'metrics',
  'command',
  'env',
  'cwd',
  'wokers',
  'drain-timeout',
  '',
];

test('config: any JSON gives options or a ConfigError naming the file on every line, nothing else', () => {
  const raw = fc.oneof(fc.jsonValue({ maxDepth: 4 }), fc.dictionary(fc.constantFrom(...KEYS), configValue, { maxKeys: 6 }));
  fc.assert(
    fc.property(raw, (r) => {
      let out: ReturnType<typeof validateConfig>;
      try {
        out = validateConfig(r, LABEL, '/srv/app');
      } catch (e) {
        assert.ok(e instanceof ConfigError, `${(e as Error).name}: ${(e as Error).message}`);
        for (const line of e.message.split('\n')) assert.ok(line.startsWith(`${LABEL}: `), line);
        return;
      }
      assert.ok(out !== null && typeof out === 'object');
      for (const l of out.listen ?? []) assert.match(l.name, NAME);
      for (const k of ['readyTimeout', 'drainTimeout', 'readyAfter', 'watchdog', 'stopTimeout'] as const) {
        const v = out[k];
        if (v !== undefined) assert.ok(Number.isSafeInteger(v) && v >= 0);
      }
    }),
    RUNS,
  );
});

test('config: generated valid files are accepted, with the listeners and durations they name', () => {
  const valid = fc.record(
    {
      workers: fc.oneof(fc.integer({ min: 1, max: 1024 }), fc.constant('auto')),
      drainTimeout: fc.tuple(fc.integer({ min: 0, max: 3600 }), fc.constantFrom('ms', 's', 'm')).map(([n, u]) => `${n}${u}`),
      ready: fc.constantFrom('listen', 'manual', 'notify'),
      distribution: fc.constantFrom('shared', 'round-robin'),
      backlog: fc.integer({ min: 1, max: 65535 }),
      listen: fc.array(
        fc.tuple(ipv4, port).map(([h, p]) => `${h}:${p}`),
        { minLength: 1, maxLength: 3 },
      ),
      command: fc.array(word, { minLength: 1, maxLength: 3 }),
      env: fc.dictionary(fc.stringMatching(/^[A-Z_]{1,8}$/), fc.string({ maxLength: 10 }), { maxKeys: 3 }),
    },
    { requiredKeys: [] },
  );
  fc.assert(
    fc.property(valid, (v) => {
      const out = validateConfig(v, LABEL, '/srv/app');
      // Expected values worked out here from the generated text, not by baton's parsers.
      if (v.listen) {
        const want = v.listen.map((t) => {
          const [, host, port] = /^(.*):(\d+)$/.exec(t)!;
          return { name: `tcp-${port}`, kind: 'tcp', host, port: Number(port) };
        });
        assert.deepEqual(out.listen, want);
      }
      if (v.drainTimeout) {
        const [, n, unit] = /^(\d+)(ms|s|m)$/.exec(v.drainTimeout)!;
        assert.equal(out.drainTimeout, Number(n) * UNIT[unit as keyof typeof UNIT]);
      }
      if (v.command) assert.deepEqual(out.command, v.command);
    }),
    RUNS,
  );
});
