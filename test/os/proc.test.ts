// Contract tests for src/os/proc.ts: the connections a process holds on baton's listeners,
// as the kernel's tables show them.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as net from 'node:net';
import { test } from 'node:test';
import { heldConnections, heldTcp } from '../../src/os/proc.js';

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
/** A /proc/net/tcp row: 127.0.0.1:local -> 127.0.0.1:remote, state, bytes unread, inode. */
function row(sl: number, local: number, remote: number, st: string, rx: number, inode: string): string {
  const addr = (port: number): string => `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return `  ${sl}: ${addr(local)} ${addr(remote)} ${st} 00000000:${rx.toString(16).padStart(8, '0')} 00:00000000 00000000  1000        0 ${inode} 1 0000000000000000 20 4 0 10 -1`;
}

test('heldTcp: each socket once, though a read shows its row twice (the later one counts)', () => {
  const mine = new Set(['11', '12', '13', '14', '16']);
  const ports = new Set([3000]);
  const table = [
    HEADER,
    row(0, 3000, 40001, '01', 0, '11'), // established
    row(1, 3000, 40001, '01', 0, '11'), // printed twice in one read
    row(2, 3000, 40002, '08', 24, '12'), // the client closed, its request unread: held
    row(3, 3000, 40003, '08', 0, '13'), // the client closed with nothing pending: not held
    row(4, 3001, 40004, '01', 0, '14'), // another port
    row(5, 3000, 40006, '01', 0, '99'), // not this process's socket
    row(6, 3000, 40007, '01', 0, '16'), // established, then shown again closed with nothing pending
    row(7, 3000, 40007, '08', 0, '16'),
  ];
  assert.equal(heldTcp(table, mine, ports), 2, '11 (once) and 12');
});

test('heldConnections: the accepted connections this process holds on the port, not its client ends; a client that closed with nothing pending is not held', async (t) => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const accepted: net.Socket[] = [];
  server.on('connection', (s) => accepted.push(s));
  const clients = Array.from({ length: 3 }, () => net.connect(port, '127.0.0.1'));
  t.after(() => {
    for (const s of [...clients, ...accepted]) s.destroy();
    server.close();
  });
  await Promise.all(clients.map((c) => once(c, 'connect')));
  while (accepted.length < 3) await once(server, 'connection');
  const listeners = [{ kind: 'tcp' as const, name: 'web', host: '127.0.0.1', port, fd: -1 }];
  assert.equal(heldConnections(process.pid, listeners), 3);
  // One client ends its side with nothing unsent: the accepted end reads the FIN.
  clients[0]!.end();
  await once(accepted[0]!, 'end');
  assert.equal(heldConnections(process.pid, listeners), 2);
  assert.equal(heldConnections(process.pid, [{ ...listeners[0]!, port: port === 65535 ? 1 : port + 1 }]), 0, 'another port');
});
