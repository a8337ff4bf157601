// hello v2: the next release of v1.js. Same answer with "v2", plus a new /version route.
import http from 'node:http';

const port = process.env.PORT || 3000; // a number, or a unix socket path
const gen = process.env.BATON_GENERATION ?? '-';
const version = '2.0.0';

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/plain');
  if (req.url === '/version') {
    res.end(`gen=${gen} version=${version} pid=${process.pid}\n`);
    return;
  }
  res.end(`gen=${gen} v2 pid=${process.pid}\n`);
});

server.listen(port, () => {
  console.log(`hello v2 listening on ${port} (pid ${process.pid}, gen ${gen})`);
});
