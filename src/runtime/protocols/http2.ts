// HTTP/2 at drain: what nginx, HAProxy and Envoy do when they shut down gracefully, in two
// steps so that no stream is refused (RFC 9113 §6.8):
//  1. a GOAWAY naming the highest possible stream id: "open no new streams here", while
//     streams the client sent before it saw this frame are still accepted;
//  2. one round trip later (a PING and its ACK), the final GOAWAY with the last stream
//     processed, through session.close(): the session ends once its streams are done, and
//     the client opens its next session on the new generation.
import type { Http2Server, Http2Session, ServerHttp2Stream } from 'node:http2';
import type * as net from 'node:net';

const MAX_STREAM_ID = 2 ** 31 - 1;
/** http2.constants.NGHTTP2_NO_ERROR; a literal, so that apps without HTTP/2 never load node:http2. */
const NO_ERROR = 0;
/** If the PING is never answered, close anyway: the client had its chance to see step 1. */
const PING_FALLBACK_MS = 300;

/** http2.createServer / createSecureServer, or a subclass (Node does not export the classes). */
export function isHttp2(s: net.Server): s is net.Server & Http2Server {
  for (let p: unknown = Object.getPrototypeOf(s); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    const name = (p as { constructor?: { name?: string } }).constructor?.name;
    if (name === 'Http2Server' || name === 'Http2SecureServer') return true;
  }
  return false;
}

export class Http2Sessions {
  private readonly sessions = new Set<Http2Session>();
  private readonly streams = new Set<ServerHttp2Stream>();
  private draining = false;

  track(server: Http2Server): void {
    server.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      // A session that starts while we drain (its connection was accepted before) gets the
      // same two steps once its first requests are in: a client queues requests until the
      // session is up, and one that sees GOAWAY first refuses them itself.
      if (this.draining) session.once('stream', () => setImmediate(goaway, session));
    });
    server.on('stream', (stream: ServerHttp2Stream) => {
      this.streams.add(stream);
      stream.once('close', () => this.streams.delete(stream));
    });
  }

  drain(): void {
    this.draining = true;
    for (const s of this.sessions) goaway(s);
  }

  /** A standby serves again (rollback): new sessions are served as usual. */
  resume(): void {
    this.draining = false;
  }

  /** Streams whose response is an event stream: what to end so EventSource clients reconnect. */
  *eventStreams(): Iterable<ServerHttp2Stream> {
    for (const st of this.streams) {
      const type = st.headersSent ? st.sentHeaders['content-type'] : undefined;
      if (typeof type === 'string' && isEventStreamType(type)) yield st;
    }
  }
}

function goaway(session: Http2Session): void {
  if (session.closed || session.destroyed) return;
  session.goaway(NO_ERROR, MAX_STREAM_ID);
  let done = false;
  const close = (): void => {
    if (done) return;
    done = true;
    if (!session.closed && !session.destroyed) session.close();
  };
  if (!session.ping(close)) close();
  setTimeout(close, PING_FALLBACK_MS).unref();
}

export function isEventStreamType(type: string): boolean {
  return type.trimStart().toLowerCase().startsWith('text/event-stream');
}
