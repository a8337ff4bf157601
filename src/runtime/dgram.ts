// UDP for unmodified Node apps: a `dgram` socket's `bind(port)` on a port baton holds a UDP
// socket for becomes `bind({ fd })` on that socket (fd 3, 4, … as described in
// BATON_UDP_LISTENERS), so the app reads the datagrams queued for the service. When the
// worker drains, its sockets stop reading but stay open to send the replies still due;
// what is queued in the kernel from then on is read by the new generation.
//
// Readiness does not wait for these sockets: the runtime counts the stream listeners of
// BATON_LISTENERS. Meanwhile datagrams wait in the socket's receive buffer (SO_RCVBUF).
import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import type { ENV_UDP, UdpListenerInfo } from '../common/protocol.js';
import { type BatonRuntime, RUNTIME_KEY } from '../common/protocol.js';

const UDP: typeof ENV_UDP = 'BATON_UDP_LISTENERS'; // checked against protocol.ts by tsc

interface Slot {
  info: UdpListenerInfo;
  socket: dgram.Socket | null;
}

const slots = parse(process.env[UDP]);
if (slots.length) patchBind(slots);

function parse(text: string | undefined): Slot[] {
  if (text === undefined) return [];
  try {
    const list = JSON.parse(text) as UdpListenerInfo[];
    if (!Array.isArray(list) || !list.every((l) => Number.isInteger(l?.fd) && Number.isInteger(l.port) && typeof l.host === 'string')) {
      throw new Error('not a list of UDP listeners');
    }
    return list.map((info) => ({ info, socket: null }));
  } catch (err) {
    process.stderr.write(`baton: ${UDP} is not valid (${(err as Error).message}); UDP sockets are bound directly\n`);
    return [];
  }
}

function patchBind(slots: Slot[]): void {
  const original = dgram.Socket.prototype.bind;
  let drainHooked = false;
  dgram.Socket.prototype.bind = function bind(this: dgram.Socket, ...args: unknown[]): dgram.Socket {
    const { port, address, cb } = readArgs(args);
    const slot = port ? find(slots, port, address) : undefined;
    if (!slot) {
      if (port) process.stderr.write(`baton: udp port ${port} is not one of baton's listeners; bound directly, it will not survive a reload\n`);
      return Reflect.apply(original, this, args) as dgram.Socket;
    }
    if (slot.socket) {
      // The first socket owns the fd and closes it with itself: there is no second copy.
      process.nextTick(() => this.emit('error', new Error(`baton: udp listener ${slot.info.name} is already bound in this process`)));
      return this;
    }
    slot.socket = this;
    if (!drainHooked) {
      drainHooked = true;
      // The runtime registered itself on globalThis before the app's code ran.
      (globalThis as { [RUNTIME_KEY]?: BatonRuntime })[RUNTIME_KEY]?.onDrain(() => stopReading(slots));
    }
    return bindAsync(this, () => Reflect.apply(original, this, cb ? [{ fd: slot.info.fd }, cb] : [{ fd: slot.info.fd }]));
  } as typeof original;
}

/**
 * bind({ fd }) emits 'listening' (and calls bind's callback) before it returns, where
 * bind(port) does so later, after its address lookup: apps that add their 'listening'
 * handler just after bind() would miss it. Held back to the next tick, as Node's own.
 */
function bindAsync(socket: dgram.Socket, bind: () => unknown): dgram.Socket {
  let listened = false;
  const own = socket as dgram.Socket & { emit: dgram.Socket['emit'] };
  own.emit = function emit(this: dgram.Socket, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'listening') return Reflect.apply(dgram.Socket.prototype.emit, this, [event, ...args]) as boolean;
    listened = true;
    return true;
  };
  try {
    bind();
  } finally {
    delete (own as { emit?: unknown }).emit;
  }
  if (listened) process.nextTick(() => socket.emit('listening'));
  return socket;
}

/** Reads bind()'s arguments the way Node does: (port, address, cb) or (options, cb). */
function readArgs(args: unknown[]): { port: number; address: string | undefined; cb: (() => void) | undefined } {
  const last = args[args.length - 1];
  const cb = typeof last === 'function' ? (last as () => void) : undefined;
  const a = args[0];
  if (a !== null && typeof a === 'object') {
    const o = a as { port?: unknown; address?: unknown; fd?: unknown };
    // bind({ fd }) is already what we would do: leave it alone.
    if (o.fd !== undefined) return { port: 0, address: undefined, cb };
    return { port: Number(o.port) || 0, address: typeof o.address === 'string' ? o.address : undefined, cb };
  }
  return { port: Number(a) || 0, address: typeof args[1] === 'string' ? args[1] : undefined, cb };
}

/** The listener on `port`: the one on the exact address if there are several. */
function find(slots: Slot[], port: number, address: string | undefined): Slot | undefined {
  const same = slots.filter((s) => s.info.port === port);
  return same.find((s) => address !== undefined && s.info.host === address) ?? same.find((s) => !s.socket) ?? same[0];
}

function stopReading(slots: Slot[]): void {
  // Loaded only now, as runtime/listen.ts does: the runtime's start-up stays free of it.
  const sys = createRequire(import.meta.url)('../os/internals.js') as typeof import('../os/internals.js');
  for (const s of slots) {
    if (!s.socket) continue;
    try {
      sys.stopReceiving(s.socket);
    } catch {
      // closed by the app already: nothing to stop
    }
  }
}
