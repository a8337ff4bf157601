// hello v1: a plain Node.js http server with no dependency. It knows nothing about baton:
// run it bare with `node examples/hello/v1.js`, or under baton, which hands it the listener.
import http from 'node:http';

const port = process.env.PORT || 3000; // a number, or a unix socket path
const gen = process.env.BATON_GENERATION ?? '-';

const server = http.createServer((_req, res) => {
  // The body starts with gen=N so a load generator can count answers by generation.
  res.setHeader('content-type', 'text/plain');
  res.end(`gen=${gen} v1 pid=${process.pid}\n`);
});

server.listen(port, () => {
  console.log(`hello v1 listening on ${port} (pid ${process.pid}, gen ${gen})`);
});
