// What every "reloads under load lose nothing" test checks of its load and its handoffs.
import assert from 'node:assert/strict';
import type { LoadReport } from '../../bench/load.js';
import type { HandoffRecord } from '../../src/supervisor/handoff.js';

/** Not one request failed, and each client kind of mixedClients() was answered. */
export function assertNothingLost(r: LoadReport): void {
  assert.equal(r.failed, 0, `failed requests: ${JSON.stringify(r.errors)}`);
  for (const kind of ['undici', 'agent', 'fresh'] as const) assert.ok(r.byKind[kind].ok > 0, `no ${kind} request succeeded`);
}

/**
 * Nothing lost, and the load really crossed the handoffs: at least `minOk` answers, three
 * quarters of the generations answered some, and every handoff is done.
 */
export function assertReloadsCrossed(report: LoadReport, records: HandoffRecord[], minOk: number): void {
  assertNothingLost(report);
  assert.ok(report.ok > minOk, `too little load to prove anything: ${report.ok}`);
  const gens = Object.keys(report.bodies).filter((k) => k.startsWith('gen='));
  assert.ok(gens.length >= Math.floor((records.length * 3) / 4), `only ${gens.length} generations answered: ${gens.join(' ')}`);
  assert.deepEqual(
    records.map((r) => r.state),
    Array(records.length).fill('done'),
  );
}
