// `--distribution round-robin`: the supervisor accepts every connection itself and hands it
// to the next ready worker over IPC, so the spread is even by construction (Node cluster's
// default, done across generations). Draining workers are never chosen; a connection that
// arrives while no worker is ready waits here, paused, like it would in the kernel queue.
import * as net from 'node:net';
import * as sys from './sys.js';
import type { Listener } from './listeners.js';
import type { Worker } from './worker.js';

export class RoundRobin {
  private readonly servers: net.Server[] = [];
  private readonly waiting: { listener: string; socket: net.Socket }[] = [];
  private turn = 0;
  /** Connections given to a worker whose send has not completed yet. */
  private sending = 0;
  private onIdle: (() => void)[] = [];

  constructor(private readonly candidates: () => Worker[]) {}

  /** Start accepting on every listener (on a duplicate fd: the supervisor's own stays untouched). */
  start(listeners: readonly Listener[], backlog: number): void {
    // UDP has no connections to deal out: workers read those sockets themselves.
    for (const l of listeners.filter((x) => x.kind !== 'udp')) {
      const server = net.createServer({ pauseOnConnect: true }, (socket) => this.dispatch(l.name, socket));
      server.listen({ fd: sys.dup(l.fd) }, backlog);
      this.servers.push(server);
    }
  }

  /** A worker became ready: hand it what waited. */
  flush(): void {
    while (this.waiting.length && this.candidates().length) {
      const { listener, socket } = this.waiting.shift()!;
      this.dispatch(listener, socket);
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
    for (const { socket } of this.waiting.splice(0)) socket.destroy();
  }

  private dispatch(listener: string, socket: net.Socket, tried = 0): void {
    const ws = this.candidates();
    if (ws.length === 0 || tried >= ws.length) {
      this.waiting.push({ listener, socket });
      return;
    }
    const w = ws[this.turn++ % ws.length]!;
    this.sending++;
    w.sendConnection(listener, socket, (ok) => {
      this.sending--;
      if (!ok) this.dispatch(listener, socket, tried + 1);
      if (this.idle) for (const f of this.onIdle.splice(0)) f();
    });
  }
}
