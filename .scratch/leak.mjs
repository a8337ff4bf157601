import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlRequest } from '/work/main/dist/src/control.js';
const ROOT = '/work/main/';
const dir = mkdtempSync(join(tmpdir(), 'leak-'));
const control = join(dir, 'ctl.sock');
const V1 = ['node', ROOT + 'examples/hello/v1.js'], V2 = ['node', ROOT + 'examples/hello/v2.js'];
const sup = spawn(process.execPath, ['--heapsnapshot-signal=SIGPWR', ROOT + 'dist/src/cli.js', 'start', '--control', control, '--listen', '127.0.0.1:0', '--', ...V1], { cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (;;) { const s = await controlRequest(control, { cmd: 'status' }).catch(() => null); if (s?.ok && s.result.serving === 1) break; await sleep(100); }
const reload = async (i) => { const r = await controlRequest(control, { cmd: 'reload', argv: i % 2 ? V1 : V2, cwd: ROOT }); if (!r.ok) throw new Error(r.error); };
const settle = async () => { while ((await controlRequest(control, { cmd: 'status' })).result.generations.length > 1) await sleep(100); };
const snap = async () => { const before = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).length; sup.kill('SIGPWR'); while (readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).length === before) await sleep(200); await sleep(2000); };
let n = 0;
const N1 = Number(process.argv[2] ?? 60), N2 = Number(process.argv[3] ?? 200);
for (; n < N1; n++) await reload(n);
await settle(); await snap();
for (let i = 0; i < N2; i++, n++) await reload(n);
await settle(); await snap();
const files = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).sort();
function count(file) {
  const s = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  const f = s.snapshot.meta.node_fields, nf = f.length;
  const ti = f.indexOf('type'), ni = f.indexOf('name'), si = f.indexOf('self_size');
  const types = s.snapshot.meta.node_types[0];
  const m = new Map();
  for (let i = 0; i < s.nodes.length; i += nf) {
    const key = types[s.nodes[i + ti]] + ':' + s.strings[s.nodes[i + ni]].slice(0, 60);
    const e = m.get(key) ?? [0, 0]; e[0]++; e[1] += s.nodes[i + si]; m.set(key, e);
  }
  return m;
}
const a = count(files[0]), b = count(files[1]);
const diff = [...b].map(([k, [c, sz]]) => [k, c - (a.get(k)?.[0] ?? 0), sz - (a.get(k)?.[1] ?? 0)]).filter(([, dc]) => dc > 0).sort((x, y) => y[2] - x[2]).slice(0, 40);
for (const d of diff) console.log(d.join('\t'));
await controlRequest(control, { cmd: 'stop' });
console.log('dir', dir);
