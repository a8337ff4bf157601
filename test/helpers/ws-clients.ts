// WebSocket clients as apps write them: ws and socket.io-client, each sending a numbered
// message every `everyMs`, reconnecting when the server closes, and sending again what
// was not answered when a connection closed (a message crossing the server's close frame
// cannot be answered on that connection: RFC 6455 §5.5.1). Bounded in messages and time.

import { io as ioClient, type Socket } from 'socket.io-client';
import WebSocket from 'ws';

export interface WsReport {
  sent: number;
  answered: number;
  /** never answered at the end */
  lost: number;
  /** sent again on the next connection */
  resent: number;
  closes: Record<string, number>;
  abnormal: number;
  /** the version that gave each client its last answer */
  lastGen: string[];
  connections: number;
}

interface Client {
  pending: Map<number, string>;
  last: string;
  stop(): void;
}

export interface WsLoad {
  /** Resolves once every client got an answer from `gen` (bounded by `timeoutMs`). */
  allOn(gen: string, timeoutMs: number): Promise<boolean>;
  stop(): Promise<WsReport>;
}

const ABNORMAL_OK = new Set([1000, 1001, 1012]);

export function wsLoad(kind: 'ws' | 'socket.io', o: { port: number; clients: number; everyMs: number; maxMessages: number; maxMs: number }): WsLoad {
  const r: WsReport = { sent: 0, answered: 0, lost: 0, resent: 0, closes: {}, abnormal: 0, lastGen: [], connections: 0 };
  const until = Date.now() + o.maxMs;
  let seq = 0;
  const clients: Client[] = [];
  const answer = (c: Client, text: string): void => {
    const [gen, id] = text.split(' ');
    if (!c.pending.delete(Number(id))) return;
    r.answered++;
    c.last = gen!;
  };
  let halted = false;
  const more = (): boolean => !halted && r.sent < o.maxMessages && Date.now() < until;

  for (let i = 0; i < o.clients; i++) {
    const c: Client = { pending: new Map(), last: '', stop: () => {} };
    clients.push(c);
    if (kind === 'ws') {
      let ws: WebSocket;
      let stopped = false;
      const connect = (): void => {
        r.connections++;
        ws = new WebSocket(`ws://127.0.0.1:${o.port}/`);
        ws.on('open', () => {
          for (const [id] of c.pending) {
            r.resent++;
            ws.send(String(id));
          }
        });
        ws.on('message', (d) => answer(c, d.toString()));
        ws.on('error', () => {});
        ws.on('close', (code) => {
          r.closes[code] = (r.closes[code] ?? 0) + 1;
          if (!ABNORMAL_OK.has(code)) r.abnormal++;
          if (!stopped) connect();
        });
      };
      connect();
      const timer = setInterval(() => {
        if (!more() || ws.readyState !== WebSocket.OPEN) return;
        const id = ++seq;
        r.sent++;
        c.pending.set(id, '');
        ws.send(String(id));
      }, o.everyMs);
      c.stop = () => {
        stopped = true;
        clearInterval(timer);
        ws.close(1000);
      };
    } else {
      // Websocket transport only: the polling transport's held requests are plain HTTP/1.1.
      const s: Socket = ioClient(`http://127.0.0.1:${o.port}`, { transports: ['websocket'], reconnectionDelay: 50, reconnectionDelayMax: 200 });
      r.connections++;
      s.on('disconnect', (reason) => {
        r.closes[reason] = (r.closes[reason] ?? 0) + 1;
        if (reason !== 'transport close' && reason !== 'io client disconnect') r.abnormal++;
      });
      s.io.on('reconnect', () => {
        r.connections++;
        for (const [id] of c.pending) {
          r.resent++;
          emit(id);
        }
      });
      const emit = (id: number): void => {
        s.emit('msg', String(id), (text: string) => answer(c, text));
      };
      const timer = setInterval(() => {
        if (!more() || !s.connected) return;
        const id = ++seq;
        r.sent++;
        c.pending.set(id, '');
        emit(id);
      }, o.everyMs);
      c.stop = () => {
        clearInterval(timer);
        s.disconnect();
      };
    }
  }
  return {
    async allOn(gen, timeoutMs) {
      const end = Date.now() + timeoutMs;
      while (Date.now() < end) {
        if (clients.every((c) => c.last === gen)) return true;
        await new Promise((res) => setTimeout(res, 20));
      }
      return false;
    },
    async stop() {
      // Let answers to what is pending arrive (bounded), then stop.
      halted = true;
      const end = Date.now() + 3000;
      while (Date.now() < end && clients.some((c) => c.pending.size > 0)) await new Promise((res) => setTimeout(res, 20));
      for (const c of clients) c.stop();
      r.lost = clients.reduce((n, c) => n + c.pending.size, 0);
      r.lastGen = clients.map((c) => c.last);
      return r;
    },
  };
}
