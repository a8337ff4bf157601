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
    w.sendConnection(listener, socket, (ok) => {
      if (!ok) this.dispatch(listener, socket, tried + 1);
    });
  }
}
