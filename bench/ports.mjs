// The example app on every port in PORTS (comma-separated; else PORT), for the benchmarks
// that vary the number of listeners. Says "listening" once every server listens.
import http from 'node:http';

const ports = (process.env.PORTS ?? process.env.PORT ?? '3000').split(',');
let left = ports.length;
for (const port of ports) {
  http
    .createServer((_req, res) => res.end(`gen=${process.env.BATON_GENERATION ?? '-'} pid=${process.pid}\n`))
    .listen(Number(port), '127.0.0.1', () => --left === 0 && console.log(`listening on ${ports.length} port(s) (pid ${process.pid})`));
}
