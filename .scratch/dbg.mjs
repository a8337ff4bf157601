import { startBaton } from '/work/main/dist/test/helpers/baton.js';
import { faulty } from '/work/main/dist/test/faults/harness.js';
import { request } from 'undici';
const b = await startBaton({ argv: faulty('--tag=v1'), args: ['--workers', '2', '--max-surge', '1', '--drain-timeout', '20s'] });
const port = await b.port();
const slow = [];
for (let i = 0; i < 30 && !(/\[1\.0\] slow-start/.test(b.out) && /\[1\.1\] slow-start/.test(b.out)); i++) {
  slow.push(request(`http://127.0.0.1:${port}/slow?ms=6000`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })));
  await b.waitFor(new RegExp(`(slow-start[\\s\\S]*){${i + 1}}`));
}
const r = await b.reload(faulty('--tag=v2', '--crash-after-ready=300', `--marker=/tmp/mk${Date.now()}`, '--block-before-crash=3000')).catch(e=>e.message);
console.log(r);
await new Promise(r=>setTimeout(r,1000));
console.log(b.out);
await b.dispose();
