// Bounded HTTPS/1.1 load from real clients, every request counted, no retries: https.Agent
// with keep-alive, a new TLS connection per request (agent: false), and undici's Pool.
import * as https from 'node:https';
import { Pool } from 'undici';

export interface HttpsReport {
  ok: number;
  failed: number;
  errors: Record<string, number>;
  bodies: Record<string, number>;
  byKind: Record<string, number>;
}

export function httpsLoad(o: { port: number; ca: string; perKind: number; maxRequests: number; maxMs: number }): { stop(): Promise<HttpsReport> } {
  const r: HttpsReport = { ok: 0, failed: 0, errors: {}, bodies: {}, byKind: {} };
  const until = Date.now() + o.maxMs;
  let started = 0;
  let stopping = false;
  const agent = new https.Agent({ keepAlive: true, ca: o.ca });
  const pool = new Pool(`https://127.0.0.1:${o.port}`, { connect: { ca: o.ca }, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const record = (kind: string, status: number, body: string): void => {
    if (status === 200 && body.startsWith('gen=')) {
      r.ok++;
      r.byKind[kind] = (r.byKind[kind] ?? 0) + 1;
      const key = body.split(' ')[0]!;
      r.bodies[key] = (r.bodies[key] ?? 0) + 1;
    } else fail(`status ${status}`);
  };
  const fail = (why: string): void => {
    r.failed++;
    r.errors[why] = (r.errors[why] ?? 0) + 1;
  };
  const viaNode = (kind: string, a: https.Agent | false): Promise<void> =>
    new Promise((resolve) => {
      const req = https.get({ host: '127.0.0.1', port: o.port, path: '/', agent: a, ca: o.ca, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          record(kind, res.statusCode ?? 0, body);
          resolve();
        });
        res.on('error', (err: NodeJS.ErrnoException) => {
          fail(err.code ?? err.message);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => {
        fail(err.code ?? err.message);
        resolve();
      });
    });
  const viaUndici = async (): Promise<void> => {
    try {
      const res = await pool.request({ path: '/', method: 'GET' });
      record('undici', res.statusCode, await res.body.text());
    } catch (err) {
      fail((err as NodeJS.ErrnoException).code ?? String(err));
    }
  };
  const kinds: [string, () => Promise<void>][] = [
    ['agent', () => viaNode('agent', agent)],
    ['fresh', () => viaNode('fresh', false)],
    ['undici', viaUndici],
  ];
  const loops = kinds.flatMap(([, fn]) =>
    Array.from({ length: o.perKind }, async () => {
      while (!stopping && started < o.maxRequests && Date.now() < until) {
        started++;
        await fn();
      }
    }),
  );
  return {
    async stop() {
      stopping = true;
      await Promise.all(loops);
      agent.destroy();
      await pool.close();
      return r;
    },
  };
}
