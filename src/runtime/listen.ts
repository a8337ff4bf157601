// Makes an unmodified app's `server.listen(port | path | options)` serve the listener baton
// passed in (fds 3, 4, ...) instead of binding a socket of its own. Patching
// net.Server.prototype.listen covers http, https, Express, Fastify, Koa: they all end there.
import { closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import { resolve } from 'node:path';
import type { ListenerInfo } from '../common/protocol.js';

/**
 * sys.js (libc through koffi) is needed only when an app closes a server it will listen
 * with again, and then synchronously, inside close(). Loaded there with require(): Node
 * 20.19+ and 22.12+ require() ES modules without top-level await, like sys.js. Importing
 * it up front would cost every worker ~4 ms of start-up (koffi itself, ~16 ms, is
 * loaded by sys.js on its first call either way). On an older Node the dup fails with a
 * warning and only a later listen() on that listener fails.
 */
function dup(fd: number): number {
  const sys = createRequire(import.meta.url)('../os/fds.js') as typeof import('../os/fds.js');
  return sys.dup(fd);
}

export interface ListenOptions {
  backlog: number;
  /**
   * Round-robin distribution: baton accepts and passes each connection over IPC
   * (deliver()); this process must never accept on the inherited sockets itself.
   */
  roundRobin: boolean;
  /**
   * Exclusive handoff: listen() reports success at once (so the app and readiness go on)
   * but the real listen on the inherited socket waits for accept(): until the old
   * generation has stopped accepting, connections stay in the kernel queue.
   */
  deferAccept: boolean;
}

export interface ListenHooks {
  /** A server of this process started listening: redirected, bound directly, or given a handle. */
  server(s: net.Server): void;
  /** `s` now serves baton's listener `l` (its 'listening' event has fired). */
  served(l: ListenerInfo, s: net.Server): void;
  warn(message: string): void;
  /**
   * Round-robin: whether some server waits for connections over IPC. It then has no
   * socket of its own to keep the process alive; the IPC channel must.
   */
  holdChannel(hold: boolean): void;
  /** True once the worker drains: a server closed then will not listen again. */
  draining(): boolean;
}

interface Slot {
  info: ListenerInfo;
  /** Round-robin: connections baton passed before a server listened on this listener. */
  pending: net.Socket[];
  /** A descriptor of the listener that no Node handle owns: what the next server gets. */
  spare: number | null;
  /** The server using the listener now; its handle owns the descriptor `held`. */
  server: net.Server | null;
  held: number;
}

type Request =
  | { kind: 'tcp'; port: number; host: string | undefined }
  | { kind: 'unix'; path: string }
  | { kind: 'fd'; fd: number }
  /** A handle, or arguments Node will reject: Node decides. */
  | { kind: 'other' };

type Callback = (...args: unknown[]) => void;

/** Servers that listen without a socket of their own (see listenVirtually). */
interface Virtual {
  open: boolean;
  onClose(): void;
}
const virtuals = new WeakMap<net.Server, Virtual>();

/** Patches listen() and close(); returns how round-robin connections reach the app's server. */
export function patchListen(
  listeners: ListenerInfo[],
  { backlog, roundRobin, deferAccept }: ListenOptions,
  hooks: ListenHooks,
): { deliver(listener: string, socket: net.Socket): void; release(): void; accept(only?: net.Server): void; park(): void; unpark(): void } {
  const slots: Slot[] = listeners.map((info) => ({ info, pending: [], spare: info.fd, server: null, held: -1 }));
  const origListen = net.Server.prototype.listen;
  const origClose = net.Server.prototype.close;
  let waiting = 0; // round-robin servers open
  let accepting = false; // exclusive handoff: told to accept
  const deferred: { server: net.Server; slot: Slot }[] = [];
  /** Standby: the servers that served each listener when it stopped accepting, to listen again with. */
  let parked: { server: net.Server; slot: Slot }[] | null = null;

  net.Server.prototype.listen = function listen(this: net.Server, ...args: unknown[]): net.Server {
    if (virtuals.get(this)?.open) {
      // What Node throws for a server with a handle; without one Node would bind for real.
      throw Object.assign(new Error('Listen method has been called more than once without closing.'), { code: 'ERR_SERVER_ALREADY_LISTEN' });
    }
    if (virtuals.get(this)?.open === false) {
      // Listening again after a virtual listen was closed: back to Node's own getters.
      virtuals.delete(this);
      delete (this as { listening?: boolean }).listening;
      delete (this as { address?: unknown }).address;
    }
    const { req, cb, signal } = parse(args);
    const slot =
      req.kind === 'tcp'
        ? findTcp(slots, req.port, req.host)
        : req.kind === 'unix'
          ? slots.find((s) => s.info.kind === 'unix' && samePath(s.info.path, req.path))
          : req.kind === 'fd'
            ? slots.find((s) => s.spare === req.fd && !s.server)
            : undefined;

    // listen({fd}) / listen(handle) pass through untouched; an app doing socket activation
    // itself with LISTEN_FDS still has its listener counted as served.
    if (req.kind === 'fd' || !slot || slot.server === this) {
      if ((req.kind === 'tcp' || req.kind === 'unix') && !slot) {
        const what = req.kind === 'tcp' ? `port ${req.port}` : req.path;
        hooks.warn(`baton: ${what} is not one of baton's listeners; bound directly, it will not survive a reload`);
      }
      const r = Reflect.apply(origListen, this, args) as net.Server;
      if (req.kind === 'fd' && slot) take(slot, this, req.fd);
      hooks.server(this);
      return r;
    }
    if (slot.server) {
      // A listener this process already serves. Fastify with host 'localhost' does this on
      // dual-stack hosts: after the first listen it binds a second server on
      // `[::1]:<same port>`. A real bind would hold the port outside baton (the next
      // generation's own secondary bind then fails, and IPv6 clients are refused once this
      // worker exits), so it succeeds without binding: the first server serves the traffic.
      const primary = slot.server;
      return listenVirtually(
        this,
        () => primary.address(),
        cb,
        () => {},
      );
    }
    if (roundRobin) return serveRoundRobin(this, slot, cb);

    if (deferAccept && !accepting) {
      const entry = { server: this, slot };
      // No socket of its own yet: the IPC channel keeps the process alive meanwhile.
      deferred.push(entry);
      hold();
      listenVirtually(
        this,
        () => addressOf(slot.info),
        cb,
        () => {
          deferred.splice(deferred.indexOf(entry), 1);
          hold();
          if (slot.server === this) slot.server = null;
        },
      );
      take(slot, this, -1);
      hooks.server(this);
      return this;
    }

    const fd = slot.spare;
    if (fd === null) {
      process.nextTick(() => this.emit('error', new Error(`baton: listener ${slot.info.name} was closed in this process and cannot be listened on again`)));
      return this;
    }
    if (slot.info.kind === 'unix') {
      // Node's address() is null for a unix socket it did not bind itself.
      const path = slot.info.path;
      this.address = function address(this: net.Server) {
        return slot.server === this ? path : net.Server.prototype.address.call(this);
      };
    }
    // Node 20 ignores `backlog` inside {fd} options and resets the shared socket's backlog
    // to 511; as the second argument it is applied.
    const opts = signal ? { fd, signal } : { fd };
    const r = Reflect.apply(origListen, this, cb ? [opts, backlog, cb] : [opts, backlog]) as net.Server;
    take(slot, this, fd);
    hooks.server(this);
    return r;
  } as net.Server['listen'];

  /** The IPC channel keeps the process alive while a server waits on it, or the process waits in standby. */
  function hold(): void {
    hooks.holdChannel(waiting > 0 || deferred.length > 0 || parked !== null);
  }

  /** Round-robin: `server` gets `slot`'s connections over IPC (deliver()), with no socket of its own. */
  function serveRoundRobin(server: net.Server, slot: Slot, cb: Callback | undefined): net.Server {
    waiting++;
    hold();
    listenVirtually(
      server,
      () => addressOf(slot.info),
      cb,
      () => {
        if (slot.server === server) slot.server = null;
        waiting--;
        hold();
      },
    );
    take(slot, server, -1);
    hooks.server(server);
    return server;
  }

  /** `server` serves `slot` from now on; with the descriptor `fd`, or none (-1: round-robin). */
  function take(slot: Slot, server: net.Server, fd: number): void {
    slot.server = server;
    if (fd >= 0) {
      slot.spare = null;
      slot.held = fd;
    }
    // Registered after the app's callback, so the app's own listen callback runs first.
    // (No 'error' listener: one would turn the app's unhandled listen errors into silence.)
    server.once('listening', () => {
      hooks.served(slot.info, server);
      for (const sock of slot.pending.splice(0)) server.emit('connection', sock);
    });
  }

  net.Server.prototype.close = function close(this: net.Server, ...args: unknown[]): net.Server {
    const v = virtuals.get(this);
    if (v?.open) {
      v.open = false;
      v.onClose();
      const done = args[0];
      if (typeof done === 'function') this.once('close', () => (done as Callback)());
      process.nextTick(() => this.emit('close'));
      return this;
    }
    const slot = slots.find((s) => s.server === this);
    if (slot) {
      slot.server = null;
      // The handle closes its descriptor right now. Keep a duplicate first, so that a
      // server the app opens later (apps that restart their server in place, tests) can
      // serve the listener again. Not when draining: the process is about to exit.
      if (this.listening && !hooks.draining()) {
        try {
          slot.spare = dup(slot.held);
        } catch (err) {
          hooks.warn(`baton: cannot keep listener ${slot.info.name} after close(): ${(err as Error).message}; listening on it again will fail`);
        }
      }
    }
    return Reflect.apply(origClose, this, args) as net.Server;
  } as net.Server['close'];

  /**
   * Exclusive handoff: do the listens deferred so far, for real; later ones are immediate.
   * `only`: just that server's, once it is warm (runtime/warmup.ts); later ones stay deferred.
   */
  function accept(only?: net.Server): void {
    if (!only) accepting = true;
    const real = only ? deferred.filter((d) => d.server === only) : deferred.splice(0);
    if (only) for (const d of real) deferred.splice(deferred.indexOf(d), 1);
    hold();
    for (const { server, slot } of real) {
      virtuals.delete(server);
      delete (server as { listening?: boolean }).listening;
      delete (server as { address?: unknown }).address;
      const fd = slot.spare;
      if (fd === null) continue;
      // The app already saw 'listening' (virtually); the real one must not surprise it again.
      const emit = server.emit;
      server.emit = function (this: net.Server, event: string | symbol, ...rest: unknown[]): boolean {
        if (event !== 'listening') return Reflect.apply(emit, this, [event, ...rest]) as boolean;
        server.emit = emit;
        return true;
      } as net.Server['emit'];
      Reflect.apply(origListen, server, [{ fd }, backlog]);
      slot.spare = null;
      slot.held = fd;
      slot.server = server;
      hooks.server(server); // a standby's server: tracked again for its next drain
    }
  }

  /**
   * Standby (called before the drain closes the servers): remember which server served
   * each listener. The close keeps a duplicate of the descriptor (hooks.draining() is false
   * for a standby), and the IPC channel keeps the process alive while nothing listens.
   */
  function park(): void {
    if (parked) return;
    parked = slots.flatMap((slot) => (slot.server ? [{ server: slot.server, slot }] : []));
    accepting = false;
    hold();
  }

  /** Rollback: the standby's servers listen again, as a deferred exclusive listen does. */
  function unpark(): void {
    const again = parked ?? [];
    parked = null;
    for (const entry of again) {
      if (entry.slot.server) continue; // the app listened again by itself
      if (roundRobin) serveRoundRobin(entry.server, entry.slot, undefined);
      else deferred.push(entry);
    }
    accept();
  }

  return {
    accept,
    park,
    unpark,
    // As Node's own cluster round-robin does in its workers: the accepted socket is given
    // to the server as if it had accepted it (http sets up its parser on 'connection').
    deliver(listener, socket) {
      const slot = slots.find((s) => s.info.name === listener);
      if (!slot) return void socket.destroy();
      if (slot.server?.listening) slot.server.emit('connection', socket);
      else slot.pending.push(socket); // ready() said before listen(), or between a close and a listen
    },
    // Draining: close the descriptors no server uses (a listener the app never listened on,
    // every one in round-robin mode, a spare kept after a close). Each keeps its socket in
    // LISTEN, queueing connections nobody here will accept; and once baton is gone, a
    // restarted baton could not bind the port until this process exits.
    release() {
      for (const slot of slots) {
        if (slot.spare === null) continue;
        try {
          closeSync(slot.spare);
        } catch {
          /* not open (the app closed it itself) */
        }
        slot.spare = null;
      }
    },
  };
}

/**
 * listen() without a socket of its own: the server reports listening and `address()`,
 * and close() just ends that (see the close patch). Used for a repeat listen on a listener
 * another server serves, and in round-robin mode, where connections come over IPC.
 */
function listenVirtually(server: net.Server, address: () => net.AddressInfo | string | null, cb: Callback | undefined, onClose: () => void): net.Server {
  const v: Virtual = { open: true, onClose };
  virtuals.set(server, v);
  Object.defineProperty(server, 'listening', { configurable: true, get: () => v.open });
  server.address = () => (v.open ? address() : null);
  if (cb) server.once('listening', cb);
  process.nextTick(() => server.emit('listening'));
  return server;
}

function addressOf(l: ListenerInfo): net.AddressInfo | string {
  return l.kind === 'unix' ? l.path : { address: l.host, family: net.isIPv6(l.host) ? 'IPv6' : 'IPv4', port: l.port };
}

/** Reads listen()'s arguments the way Node's normalizeArgs does. */
function parse(args: unknown[]): { req: Request; cb: Callback | undefined; signal: AbortSignal | undefined } {
  const last = args[args.length - 1];
  const cb = typeof last === 'function' ? (last as Callback) : undefined;
  const a = args[0];
  if (a !== null && typeof a === 'object') {
    const o = a as { _handle?: unknown; handle?: unknown; fd?: unknown; port?: unknown; host?: unknown; path?: unknown; signal?: unknown };
    const signal = o.signal instanceof AbortSignal ? o.signal : undefined;
    const host = typeof o.host === 'string' ? o.host : undefined;
    if (o._handle || o.handle) return { req: { kind: 'other' }, cb, signal };
    if (typeof o.fd === 'number' && o.fd >= 0) return { req: { kind: 'fd', fd: o.fd }, cb, signal };
    if (typeof o.port === 'number' || typeof o.port === 'string') return { req: tcp(o.port, host), cb, signal };
    if ('port' in o && o.port == null) return { req: tcp(0, host), cb, signal };
    if (typeof o.path === 'string' && o.path !== '') return { req: { kind: 'unix', path: o.path }, cb, signal };
    return { req: { kind: 'other' }, cb, signal };
  }
  // A string that is not a number is a unix socket path (Node's isPipeName).
  if (typeof a === 'string' && !(Number(a) >= 0)) return { req: { kind: 'unix', path: a }, cb, signal: undefined };
  if (typeof a === 'number' || typeof a === 'string') {
    return { req: tcp(a, typeof args[1] === 'string' ? args[1] : undefined), cb, signal: undefined };
  }
  return { req: tcp(0, undefined), cb, signal: undefined }; // listen(), listen(cb), listen(null): port 0
}

/** Port 0 stays a 'tcp' request: no listener has it, so it is bound directly, with the warning. */
function tcp(port: number | string, host: string | undefined): Request {
  const n = Number(port);
  if (!Number.isInteger(n) || n < 0 || n > 65535) return { kind: 'other' }; // Node throws
  return { kind: 'tcp', port: n, host };
}

/** The listener for a port; with several on that port, the one on the exact host, else a free one. */
function findTcp(slots: Slot[], port: number, host: string | undefined): Slot | undefined {
  const same = slots.filter((s) => s.info.kind === 'tcp' && s.info.port === port);
  const want = host === undefined ? undefined : normHost(host);
  return same.find((s) => want !== undefined && s.info.kind === 'tcp' && normHost(s.info.host) === want) ?? same.find((s) => !s.server) ?? same[0];
}

function normHost(h: string): string {
  return h.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

function samePath(a: string, b: string): boolean {
  // Abstract socket names (leading NUL) are not file paths.
  const abs = (p: string): string => (p.startsWith('\0') ? p : resolve(p));
  return abs(a) === abs(b);
}
