// Server-Sent Events at drain: a `text/event-stream` response never ends on its own, so the
// drain ends it cleanly (the terminating chunk), then the connection: an EventSource sees
// the stream end, waits its retry time and reconnects with Last-Event-ID, to the listener
// the new generation serves. Nothing of the app's output is touched.
import type { ServerResponse } from 'node:http';
import type * as net from 'node:net';
import { sentHeader } from '../../os/internals.js';
import { isEventStreamType } from './http2.js';

export function isEventStream(res: ServerResponse): boolean {
  if (!res.headersSent || res.writableEnded) return false;
  const type = res.getHeader('content-type');
  if (typeof type === 'string') return isEventStreamType(type);
  // writeHead(status, headers) sends headers getHeader() never sees: read what was sent.
  const sent = sentHeader(res);
  return sent !== null && /^content-type:[ \t]*text\/event-stream/im.test(sent);
}

/**
 * The response went out with keep-alive: close the connection right after its last chunk,
 * so the client's reconnect cannot land on this connection again.
 */
export function endEventStream(res: ServerResponse, sock: net.Socket): void {
  res.once('finish', () => sock.end());
  res.end();
}
