// Loaded into a supervisor by the benchmarks (node --import): how long its event loop was
// blocked, the stall that every worker IPC message, control request and round-robin
// connection waits out. On SIGWINCH (unused by baton) the figures since the previous one go
// to LOOP_DELAY_OUT as JSON (ms), and the count starts afresh.

import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const h = monitorEventLoopDelay({ resolution: 2 });
h.enable();
process.on('SIGWINCH', () => {
  const ms = (ns) => ns / 1e6;
  writeFileSync(process.env.LOOP_DELAY_OUT, JSON.stringify({ max: ms(h.max), p99: ms(h.percentile(99)) }));
  h.reset();
});
