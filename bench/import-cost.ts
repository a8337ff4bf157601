// What loading a runtime module costs a worker at start-up: N fresh processes per module,
// alternating, each timing one dynamic import. Compare two checkouts side by side:
//   node dist/bench/import-cost.js /path/a/dist/src/runtime/drain.js /path/b/dist/src/runtime/drain.js
import { execFileSync } from 'node:child_process';

const RUNS = Number(process.env.RUNS ?? 30);
const modules = process.argv.slice(2);
if (modules.length === 0) {
  process.stderr.write('usage: node dist/bench/import-cost.js MODULE.js [MODULE.js ...]\n');
  process.exit(2);
}
const probe = 'const t = performance.now(); await import(process.argv[1]); console.log(performance.now() - t);';
const times = new Map<string, number[]>(modules.map((m) => [m, []]));
for (let i = 0; i < RUNS; i++) {
  for (const m of modules) times.get(m)!.push(Number(execFileSync(process.execPath, ['--input-type=module', '-e', probe, m], { encoding: 'utf8' })));
}
for (const [m, t] of times) {
  t.sort((a, b) => a - b);
  console.log(`${m}: min ${t[0]!.toFixed(2)} ms, median ${t[Math.floor(t.length / 2)]!.toFixed(2)} ms over ${RUNS} runs`);
}
