// HTTP/2 load from real clients, bounded in streams and time, counting every stream:
// Node's own http2 client and nghttp2's h2load.
//
// Node's client is used the way an HTTP/2 client pool (a browser, curl, Go's transport)
// uses a connection: a new session once the server said GOAWAY, and a stream refused
// with REFUSED_STREAM sent again. RFC 9113 §8.7 guarantees such a stream was not
// processed; nghttp2 clients refuse streams themselves that they had queued but not yet
// sent when a GOAWAY arrived, whatever its last stream id. Each retry is counted.
import { spawn } from 'node:child_process';
import * as http2 from 'node:http2';

export interface H2Report {
  started: number;
  done: number;
  failed: number;
  /** streams refused (never processed) and sent again */
  refused: number;
  errors: Record<string, number>;
  /** ok streams by the body's first token, e.g. 'gen=2' */
  bodies: Record<string, number>;
  sessions: number;
  /** the longest ok stream, ms */
  maxStreamMs: number;
}

export interface H2LoadOptions {
  url: string;
  ca?: string;
  /** concurrent sessions, each with `streams` concurrent request loops */
  sessions: number;
  streams: number;
  path: () => string;
  maxStreams: number;
  maxMs: number;
}

export function nodeH2Load(o: H2LoadOptions): { stop(): Promise<H2Report> } {
  const r: H2Report = { started: 0, done: 0, failed: 0, refused: 0, errors: {}, bodies: {}, sessions: 0, maxStreamMs: 0 };
  const until = Date.now() + o.maxMs;
  let stopping = false;
  const open = new Set<http2.ClientHttp2Session>();
  const fail = (why: string): void => {
    r.failed++;
    r.errors[why] = (r.errors[why] ?? 0) + 1;
  };
  const slot = (): (() => http2.ClientHttp2Session) => {
    let s: http2.ClientHttp2Session | null = null;
    return () => {
      if (!s || s.closed || s.destroyed) {
        const sess = http2.connect(o.url, o.ca ? { ca: o.ca } : {});
        sess.on('error', () => {}); // every stream on it reports its own failure
        sess.once('close', () => open.delete(sess));
        open.add(sess);
        r.sessions++;
        s = sess;
      }
      return s;
    };
  };
  const one = (get: () => http2.ClientHttp2Session, retries = 3): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      let st: http2.ClientHttp2Stream;
      if (retries === 3) r.started++;
      try {
        st = get().request({ ':path': o.path() });
      } catch (err) {
        fail((err as NodeJS.ErrnoException).code ?? 'throw');
        return resolve();
      }
      let status = 0;
      let body = '';
      let settled = false;
      const settle = (ok: boolean, why = ''): void => {
        if (settled) return;
        settled = true;
        if (ok) {
          r.done++;
          const key = body.split(' ')[0]!;
          r.bodies[key] = (r.bodies[key] ?? 0) + 1;
          r.maxStreamMs = Math.max(r.maxStreamMs, performance.now() - t0);
        } else fail(why);
        resolve();
      };
      st.setEncoding('utf8');
      st.on('response', (h) => (status = Number(h[':status'])));
      st.on('data', (d: string) => (body += d));
      st.on('end', () => settle(status === 200 && body.startsWith('gen='), `status ${status}`));
      st.on('error', (err: NodeJS.ErrnoException) => {
        if (!settled && st.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM && retries > 0) {
          settled = true;
          r.refused++;
          return void one(get, retries - 1).then(resolve);
        }
        settle(false, err.code === 'ERR_HTTP2_STREAM_ERROR' ? err.message : (err.code ?? err.message));
      });
      st.on('close', () => settle(false, `closed, rst ${st.rstCode}`));
    });
  const loops: Promise<void>[] = [];
  for (let i = 0; i < o.sessions; i++) {
    const get = slot();
    for (let j = 0; j < o.streams; j++) {
      loops.push(
        (async () => {
          while (!stopping && r.started < o.maxStreams && Date.now() < until) await one(get);
        })(),
      );
    }
  }
  return {
    async stop() {
      stopping = true;
      await Promise.all(loops);
      for (const s of open) s.close();
      return r;
    },
  };
}

export interface H2loadResult {
  total: number;
  started: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  output: string;
}

/** Runs `h2load` to completion (bounded by `timeoutMs`) and reads its request counts. */
export function h2load(args: string[], timeoutMs: number): Promise<H2loadResult> {
  return new Promise((resolve, reject) => {
    const p = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d) => (output += d));
    p.stderr.on('data', (d) => (output += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('exit', () => {
      clearTimeout(t);
      const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(output);
      if (!m) return reject(new Error(`h2load printed no request counts:\n${output}`));
      const [total, started, done, succeeded, failed, errored, timeout] = m.slice(1).map(Number) as number[];
      resolve({ total: total!, started: started!, done: done!, succeeded: succeeded!, failed: failed!, errored: errored!, timeout: timeout!, output });
    });
  });
}
