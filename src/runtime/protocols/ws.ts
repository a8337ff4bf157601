// WebSockets at drain, for unmodified apps on `ws` (and socket.io / engine.io, which run
// on it). No module loader hook: `ws` marks every socket it took over with its WebSocket
// object, under a symbol whose description is 'websocket' (ws/lib/websocket.js setSocket,
// since ws 5 through 8.x), so the drain finds it on the upgraded socket it already tracks.
// That covers CommonJS and ESM apps, bundled copies of ws and several versions in one app,
// at zero start-up cost. test/protocols.test.ts checks the contract with the installed ws.
import type * as net from 'node:net';

/** What the drain uses of ws's WebSocket. */
export interface WebSocketLike {
  readyState: number;
  close(code?: number, reason?: string): void;
}

const OPEN = 1;
/** RFC 6455 §7.4.1 via the IANA registry: "Service Restart", the client should reconnect. */
export const SERVICE_RESTART = 1012;

export function webSocketOf(sock: net.Socket): WebSocketLike | null {
  for (const sym of Object.getOwnPropertySymbols(sock)) {
    if (sym.description !== 'websocket') continue;
    const ws = (sock as unknown as Record<symbol, unknown>)[sym] as Partial<WebSocketLike> | undefined;
    if (ws && typeof ws.close === 'function' && typeof ws.readyState === 'number') return ws as WebSocketLike;
  }
  return null;
}

/**
 * Closes an open WebSocket with 1012. ws sends the close frame after everything the app
 * already queued, so messages received so far and answered synchronously go out first;
 * it ends the TCP connection once the client's close frame is back.
 */
export function closeWebSocket(ws: WebSocketLike): boolean {
  if (ws.readyState !== OPEN) return false;
  ws.close(SERVICE_RESTART, 'service restart');
  return true;
}
