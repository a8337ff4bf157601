// `npm run build && node dist/bench/notify.js [--messages 400] [--rounds 3]`
//
// How fast a datagram sent to NOTIFY_SOCKET reaches baton's callback, for the two ways of
// reading a unix datagram socket without a native addon and without blocking:
//   sigio: src/os/notify.ts (O_ASYNC: the kernel raises SIGIO, libuv runs the handler, which
//          reads with recv(MSG_DONTWAIT) until EAGAIN): what baton uses;
//   pipe:  the same fd wrapped in Node's internal Pipe handle, so that libuv polls it and
//          read()s each datagram (internals, and an empty datagram reads as end-of-file).
// A Python sender (as sd_notify clients are) stamps each datagram with CLOCK_MONOTONIC, the
// clock process.hrtime reads; one every 2 ms. The rounds alternate sigio, pipe, pipe, sigio,
// ... so load elsewhere on the machine hits both alike. Reports p50 and p99 in µs.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { c } from '../src/os/libc.js';
import { bindNotifySocket } from '../src/os/notify.js';

type Way = 'sigio' | 'pipe';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '400' }, rounds: { type: 'string', default: '3' } } });
const MESSAGES = Number(values.messages);
const ROUNDS = Number(values.rounds);
const PYTHON = 'python3';

/** Receives MESSAGES stamped datagrams at `path` the given way; resolves with the latencies in µs. */
async function measure(way: Way, path: string): Promise<number[]> {
  const lat: number[] = [];
  let done: () => void = () => {};
  const all = new Promise<void>((r) => (done = r));
  const onText = (text: string): void => {
    lat.push(Number(process.hrtime.bigint() - BigInt(text)) / 1000);
    if (lat.length === MESSAGES) done();
  };
  let close: () => void;
  if (way === 'sigio') {
    const r = bindNotifySocket(path, onText);
    close = () => r.close();
  } else {
    const r = bindNotifySocket(path, () => {});
    r.close();
    rmSync(path, { force: true });
    close = pipeReceiver(path, onText);
  }
  const sender = spawn(
    PYTHON,
    [
      '-c',
      [
        'import socket, sys, time',
        's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
        `for i in range(${MESSAGES}):`,
        `    s.sendto(str(time.monotonic_ns()).encode(), ${JSON.stringify(path)}); time.sleep(0.002)`,
      ].join('\n'),
    ],
    { stdio: 'inherit' },
  );
  const keepAlive = setTimeout(() => {}, 60_000);
  await Promise.all([all, once(sender, 'exit')]);
  clearTimeout(keepAlive);
  close();
  rmSync(path, { force: true });
  return lat;
}

/** The alternative: Node's internal Pipe handle opened on a datagram socket made with libc. */
function pipeReceiver(path: string, onText: (text: string) => void): () => void {
  const addr = Buffer.alloc(2 + Buffer.byteLength(path) + 1);
  addr.writeUInt16LE(1, 0);
  addr.write(path, 2);
  const fd = c().socket(1, 2 | 0o4000 | 0o2000000, 0);
  if (fd < 0 || c().bind(fd, addr, addr.length) !== 0) throw new Error('cannot bind the pipe-way socket');
  const { Pipe } = (process as unknown as { binding(name: string): { Pipe: new (type: number) => { open(fd: number): number } } }).binding('pipe_wrap');
  const handle = new Pipe(0); // PipeConstants.SOCKET
  if (handle.open(fd) !== 0) throw new Error('Pipe.open failed');
  const s = new net.Socket({ handle, readable: true, writable: false } as net.SocketConstructorOpts);
  s.on('data', (d: Buffer) => onText(d.toString()));
  return () => s.destroy();
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
}

const dir = mkdtempSync(join(tmpdir(), 'baton-bench-notify-'));
const results: Record<Way, number[]> = { sigio: [], pipe: [] };
try {
  for (let round = 0; round < ROUNDS; round++) {
    const order: Way[] = round % 2 === 0 ? ['sigio', 'pipe'] : ['pipe', 'sigio'];
    for (const way of order) results[way].push(...(await measure(way, join(dir, `${way}.sock`))));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
for (const way of ['sigio', 'pipe'] as const) {
  const l = results[way];
  console.log(`${way.padEnd(6)} ${l.length} datagrams  p50 ${pct(l, 0.5).toFixed(0)} µs  p99 ${pct(l, 0.99).toFixed(0)} µs`);
}
