// The suite's reporter (package.json's test script): node's own default reporter, unchanged
// (spec on a terminal, and from Node 23 everywhere; tap otherwise), followed by the list of
// the tests that were skipped and why, so a skip for a missing prerequisite is never silent.
// With BATON_NO_SKIPS=1 (CI) a skipped test fails the run.

import { relative } from 'node:path';
import { Readable } from 'node:stream';
import { spec, type TestEvent, tap } from 'node:test/reporters';

const SPEC_BY_DEFAULT = Number(process.versions.node.split('.')[0]) >= 23;

export default async function* skipReporter(source: AsyncIterable<TestEvent>): AsyncGenerator<string, void> {
  const skipped: string[] = [];
  async function* noting(): AsyncGenerator<TestEvent, void> {
    for await (const ev of source) {
      if ((ev.type === 'test:pass' || ev.type === 'test:fail') && ev.data.skip !== undefined && ev.data.skip !== false) {
        const where = ev.data.file ? relative(process.cwd(), ev.data.file) : '?';
        skipped.push(`${where}: ${ev.data.name} — ${ev.data.skip === true ? '(no reason given)' : ev.data.skip}`);
      }
      yield ev;
    }
  }
  const inner: AsyncIterable<unknown> = process.stdout.isTTY || SPEC_BY_DEFAULT ? Readable.from(noting()).pipe(new spec()) : tap(noting());
  for await (const chunk of inner) yield String(chunk);
  const strict = process.env.BATON_NO_SKIPS === '1';
  if (skipped.length === 0) yield '\nskipped: none\n';
  else {
    yield `\nskipped: ${skipped.length} test(s)${strict ? ' — BATON_NO_SKIPS=1: every test must run here' : ''}\n${skipped.map((s) => `  ${s}\n`).join('')}`;
    if (strict) process.exitCode = 1;
  }
}
