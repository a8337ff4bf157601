// The few internals the drain's protocol handling reads (src/os/internals.ts for Node's,
// src/runtime/protocols/ws.ts for ws's), checked against this Node and the installed ws: if one moves,
// this fails loudly instead of the drain quietly cutting connections at its deadline.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { test } from 'node:test';
import * as tls from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import { tcpOf } from '../src/os/internals.js';
import { isHttp2 } from '../src/runtime/protocols/http2.js';
import { isEventStream } from '../src/runtime/protocols/sse.js';
import { webSocketOf } from '../src/runtime/protocols/ws.js';
import { tempDir } from './helpers/baton.js';
import { makeCert } from './helpers/tls.js';

test("a server-side TLS socket's _parent is the TCP socket of its 'connection' event", async () => {
  const c = makeCert(tempDir('baton-cert-'));
  const { readFileSync } = await import('node:fs');
  const server = tls.createServer({ key: readFileSync(c.key), cert: readFileSync(c.cert) }, (s) => s.end());
  const raws: net.Socket[] = [];
  server.on('connection', (s: net.Socket) => raws.push(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const secure = once(server, 'secureConnection');
  const client = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', ca: c.ca, servername: 'localhost' });
  client.on('error', () => {});
  const [sock] = (await secure) as [tls.TLSSocket];
  assert.equal(tcpOf(sock), raws[0], `Node ${process.version} changed tlsSocket._parent: update tcpOf() in src/os/internals.ts`);
  assert.notEqual(tcpOf(sock), sock);
  client.destroy();
  server.close();
});

test('an event stream is recognised whether its type came by setHeader or by writeHead (res._header)', async () => {
  const seen: boolean[] = [];
  const server = http.createServer((req, res) => {
    if (req.url === '/set') res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.writeHead(200, req.url === '/head' ? { 'Content-Type': 'text/event-stream' } : req.url === '/plain' ? { 'content-type': 'text/plain' } : {});
    res.flushHeaders();
    seen.push(isEventStream(res));
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  for (const path of ['/set', '/head', '/plain']) {
    await new Promise<void>((resolve) => http.get({ port, path, host: '127.0.0.1' }, (r) => r.resume().on('end', resolve)));
  }
  assert.deepEqual(seen, [true, true, false]);
  server.closeAllConnections();
  server.close();
});

test("ws marks the socket it took over with its WebSocket, under a symbol described 'websocket'", async () => {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  const accepted = once(wss, 'connection');
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/`);
  const opened = once(client, 'open');
  const [ws, req] = (await accepted) as [WebSocket, http.IncomingMessage];
  await opened;
  assert.equal(webSocketOf(req.socket), ws);
  client.close();
  await once(client, 'close');
  wss.close();
  server.close();
});

test('HTTP/2 servers are told from http/https ones', () => {
  assert.equal(isHttp2(http2.createServer() as unknown as net.Server), true);
  assert.equal(isHttp2(http2.createSecureServer({}) as unknown as net.Server), true);
  assert.equal(isHttp2(http.createServer()), false);
});
