// The app of the comparison (bench/compare.ts, bench/warm.ts): `GET /?ms=20` answers after
// 20 ms, as an app waiting on a database would; the body names the version (generation or
// start time) and the pid, so the load generator can tell when a new version answers.
// CommonJS and no dependency: PM2's cluster mode, Node's cluster module, baton and a bare
// `node` all run it unchanged. In Node's cluster (bench/compare-cluster.cjs) a 'shutdown'
// message closes it, as a hand-written rolling restart would.
const http = require('node:http');

const version = process.env.BATON_GENERATION ?? process.env.APP_VERSION ?? String(Date.now());
const server = http.createServer((req, res) => {
  const q = req.url.indexOf('?ms=');
  const ms = q < 0 ? 0 : Number(req.url.slice(q + 4)) || 0;
  const reply = () => {
    res.setHeader('content-type', 'text/plain');
    res.end(`v=${version} pid=${process.pid}\n`);
  };
  if (ms > 0) setTimeout(reply, ms);
  else reply();
});
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`app listening on ${process.env.PORT ?? 3000} (pid ${process.pid})`);
  if (process.send) process.send('ready'); // PM2's wait_ready convention; baton passes it on
});
process.on('message', (m) => {
  if (m === 'shutdown') server.close(() => process.exit(0));
});
