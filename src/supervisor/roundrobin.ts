// `--distribution round-robin`: the supervisor accepts every connection itself and hands it
// to the next ready worker over IPC, so the spread is even by construction (Node cluster's
// default, done across generations). Draining workers are never chosen; a connection that
// arrives while no worker is ready waits here, unread, like it would in the kernel queue.
// Connections stay libuv's raw handles from accept to the worker: no net.Socket is made here.
import * as net from 'node:net';
import type { Listener } from '../common/address.js';
import { log } from '../log/log.js';
import { dup } from '../os/fds.js';
import { onRawConnection, type RawConnection } from '../os/internals.js';
import type { Worker } from './worker.js';

export class RoundRobin {
  private readonly servers: net.Server[] = [];
  private readonly waiting: { listener: string; conn: RawConnection }[] = [];
  private turn = 0;
  /** Connections given to a worker whose send has not completed yet. */
  private sending = 0;
  private onIdle: (() => void)[] = [];

  constructor(private readonly candidates: () => Worker[]) {}

  /** Start accepting on every listener (on a duplicate fd: the supervisor's own stays untouched). */
  start(listeners: readonly Listener[], backlog: number): void {
    // UDP has no connections to deal out: workers read those sockets themselves.
    for (const l of listeners.filter((x) => x.kind !== 'udp')) {
      const server = net.createServer();
      server.listen({ fd: dup(l.fd) }, backlog);
      // An accept that fails (EMFILE and the like) is logged, at most once a second.
      onRawConnection(
        server,
        (conn) => this.dispatch(l.name, conn),
        (e) => this.acceptFailed(e),
      );
      this.servers.push(server);
    }
  }

  /** A worker became ready: hand it what waited. */
  flush(): void {
    while (this.waiting.length && this.candidates().length) {
      const { listener, conn } = this.waiting.shift()!;
      this.dispatch(listener, conn);
    }
  }

  /**
   * Supervisor upgrade: stop accepting (the kernel queues what comes meanwhile) and resolve
   * true once every connection accepted here is in a worker's hands; false after timeoutMs.
   * start() again resumes, should the upgrade not happen.
   */
  handOver(timeoutMs: number): Promise<boolean> {
    for (const s of this.servers.splice(0)) s.close();
    if (this.idle) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.onIdle.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private get idle(): boolean {
    return this.waiting.length === 0 && this.sending === 0;
  }

  /** Stop accepting (stop of the service); connections still waiting are closed. */
  close(): void {
    for (const s of this.servers) s.close();
    for (const { conn } of this.waiting.splice(0)) conn.close();
  }

  private lastAcceptError = 0;

  private acceptFailed(e: Error): void {
    if (Date.now() - this.lastAcceptError < 1000) return;
    this.lastAcceptError = Date.now();
    log.warn(`round-robin: ${e.message}`);
  }

  private dispatch(listener: string, conn: RawConnection, tried = 0): void {
    const ws = this.candidates();
    if (ws.length === 0 || tried >= ws.length) {
      this.waiting.push({ listener, conn });
      return;
    }
    const w = ws[this.turn++ % ws.length]!;
    this.sending++;
    w.sendConnection(listener, conn, (ok) => {
      this.sending--;
      // Sent: the worker holds its own descriptor for it now.
      if (ok) conn.close();
      else this.dispatch(listener, conn, tried + 1);
      if (this.idle) for (const f of this.onIdle.splice(0)) f();
    });
  }
}
