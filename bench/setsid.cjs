// Preloaded (`node --require`) into the workers of PM2 and of Node's cluster in the
// comparison: each moves to a session of its own, as baton starts its workers, so that the
// kernel's autogroup scheduling gives every one of them the same share of the CPU
// (docs/benchmarks.md, "Every server in a session of its own").
const cluster = require('node:cluster');
if (!cluster.isPrimary) require('koffi').load('libc.so.6').func('int setsid()')();
