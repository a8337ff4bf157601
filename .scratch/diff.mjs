import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
const dir = process.argv[2];
const files = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).sort();
function count(file) {
  const s = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  const f = s.snapshot.meta.node_fields, nf = f.length;
  const ti = f.indexOf('type'), ni = f.indexOf('name'), si = f.indexOf('self_size');
  const types = s.snapshot.meta.node_types[0];
  const m = new Map(); let total = 0;
  for (let i = 0; i < s.nodes.length; i += nf) {
    const key = types[s.nodes[i + ti]] + ':' + s.strings[s.nodes[i + ni]].slice(0, 70).replace(/\n/g, ' ');
    const e = m.get(key) ?? [0, 0]; e[0]++; e[1] += s.nodes[i + si]; total += s.nodes[i + si]; m.set(key, e);
  }
  return [m, total];
}
const [a, ta] = count(files[0]), [b, tb] = count(files[1]);
console.log('total', ta, tb, tb - ta);
const diff = [...b].map(([k, [c, sz]]) => [k, c - (a.get(k)?.[0] ?? 0), sz - (a.get(k)?.[1] ?? 0)]).filter(([, dc, ds]) => ds > 0).sort((x, y) => y[2] - x[2]).slice(0, 30);
for (const d of diff) console.log(d.join('\t'));
