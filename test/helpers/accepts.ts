// The accept log of test/fixtures/accept-log.mjs: one line per accepted connection,
// `<generation> <monotonic ns> <thread>`, appended by every process and thread of every generation.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

export interface Span {
  first: bigint;
  last: bigint;
  n: number;
  threads: Set<string>;
}

/** First and last accept of each generation, on one monotonic clock. */
export function acceptSpans(log: string): Map<number, Span> {
  const span = new Map<number, Span>();
  for (const line of readFileSync(log, 'utf8').trim().split('\n')) {
    const [g, at, thread] = line.split(' ');
    const ns = BigInt(at!);
    const s = span.get(Number(g)) ?? { first: ns, last: ns, n: 0, threads: new Set<string>() };
    s.first = ns < s.first ? ns : s.first;
    s.last = ns > s.last ? ns : s.last;
    s.n++;
    s.threads.add(thread ?? '0');
    span.set(Number(g), s);
  }
  return span;
}

/** No two generations ever accepted at the same time: each one's last accept precedes the next one's first. */
export function assertNoOverlap(span: Map<number, Span>): number[] {
  const gens = [...span.keys()].sort((a, b) => a - b);
  for (let i = 1; i < gens.length; i++) {
    const prev = span.get(gens[i - 1]!)!;
    const cur = span.get(gens[i]!)!;
    assert.ok(prev.last < cur.first, `generation ${gens[i - 1]} accepted until ${prev.last}, after generation ${gens[i]} began at ${cur.first}`);
  }
  return gens;
}
