// Least privilege: baton binds as root (privileged ports too) and runs its workers as
// another user; only the control socket's owner may control it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, copyFileSync, cpSync, existsSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { type TestContext, test } from 'node:test';
import { request } from 'undici';
import { closeFd } from '../src/os/fds.js';
import { lookupUser } from '../src/os/process.js';
import { openTcpListener } from '../src/os/sockets.js';
import { Baton, CLI, ROOT, runCli, startBaton, tempDir, worldReadableCopy } from './helpers/baton.js';
import { Proc } from './helpers/ops.js';
import { anyOf, notRoot } from './helpers/prereq.js';

const nobody = process.getuid?.() === 0 ? lookupUser('nobody') : null;
const skip = anyOf(notRoot(), !nobody && 'needs a user named nobody');

/** A free port below 1024, found by binding it (and letting it go). */
function privilegedPort(): number {
  for (let port = 1023; port >= 900; port--) {
    try {
      closeFd(openTcpListener('127.0.0.1', port, 1));
      return port;
    } catch {
      // taken: try the next
    }
  }
  throw new Error('no free port between 900 and 1023');
}

function ids(pid: number): { uid: string; gid: string; groups: string } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): string => new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(text)![1]!.trim();
  return { uid: field('Uid'), gid: field('Gid'), groups: field('Groups') };
}

/** A directory only root can enter, holding a copy of `file`; removed after the test. */
function closedCopy(t: TestContext, file: string): { dir: string; file: string } {
  const dir = tempDir('baton-closed-');
  chmodSync(dir, 0o700);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(file, join(dir, basename(file)));
  return { dir, file: join(dir, basename(file)) };
}

test('--user nobody on a port below 1024: baton binds it, workers run as nobody and serve', { timeout: 60_000, skip }, async (t) => {
  const port = privilegedPort();
  const c = worldReadableCopy();
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  const b = await startBaton({
    cli: c.cli,
    cwd: c.dir,
    argv: [c.node, join(c.examples, 'hello/v1.js')],
    listen: [`127.0.0.1:${port}`],
    args: ['--user', 'nobody'],
  });
  t.after(() => b.dispose());
  const u = nobody!;
  const all = (n: number): string => `${n}\t${n}\t${n}\t${n}`;
  for (let gen = 1; gen <= 2; gen++) {
    const w = (await b.status()).generations.find((g) => g.number === gen)!.workers[0]!;
    // No supplementary group of root's either (libuv drops them when it changes the uid).
    assert.deepEqual(ids(w.pid), { uid: all(u.uid), gid: all(u.gid), groups: '' }, `generation ${gen}'s worker`);
    // The worker's own notify socket is its user's, and no one else's.
    const env = readFileSync(`/proc/${w.pid}/environ`, 'utf8').split('\0');
    const notify = env.find((e) => e.startsWith('NOTIFY_SOCKET='))!.slice('NOTIFY_SOCKET='.length);
    const st = statSync(notify);
    assert.deepEqual({ uid: st.uid, mode: st.mode & 0o777 }, { uid: u.uid, mode: 0o600 });
    assert.ok(env.includes(`HOME=${u.home}`) && env.includes('USER=nobody'), "HOME and USER are not the worker user's");
    const r = await request(`http://127.0.0.1:${port}/`, { reset: true });
    assert.match(await r.body.text(), new RegExp(`^gen=${gen} v1`));
    if (gen === 1) assert.ok((await b.reload()).ok);
  }
  assert.equal(ids(b.proc.pid!).uid, all(0), 'baton itself stays root');
  // A reload to a program nobody cannot read is refused before anything starts; generation 2 serves on.
  const closed = closedCopy(t, join(c.examples, 'hello/v1.js'));
  const r = await b.request({ cmd: 'reload', argv: [c.node, closed.file], cwd: c.dir });
  assert.deepEqual(
    { ok: r.ok, error: !r.ok && r.error },
    { ok: false, error: `reload failed: --user nobody cannot read ${closed.file}: directory ${closed.dir} is not searchable (drwx------ uid 0 gid 0)` },
  );
  const s = await b.status();
  assert.equal(s.serving, 2);
  assert.deepEqual(
    s.generations.map((g) => g.number).filter((n) => n > 2),
    [],
    'a generation was started',
  );
});

test('--user nobody with baton, or the program, under a 0700 directory: one line naming it, and nothing starts', { timeout: 30_000, skip }, async (t) => {
  const c = worldReadableCopy();
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  // baton installed where only root can enter: a copy of this build in a 0700 directory.
  const closed = closedCopy(t, join(ROOT, 'package.json'));
  cpSync(join(ROOT, 'dist/src'), join(closed.dir, 'dist/src'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(closed.dir, 'node_modules'));
  const program = closedCopy(t, join(c.examples, 'hello/v1.js'));
  const cases = [
    {
      cli: join(closed.dir, relative(ROOT, CLI)),
      argv: [c.node, join(c.examples, 'hello/v1.js')],
      says: `cannot reach baton's runtime ${join(closed.dir, 'dist/src/runtime/preload.js')}: directory ${closed.dir} is not searchable`,
    },
    { cli: c.cli, argv: [c.node, program.file], says: `cannot read ${program.file}: directory ${program.dir} is not searchable` },
  ];
  for (const { cli, argv, says } of cases) {
    const b = new Baton({ cli, cwd: c.dir, argv, args: ['--user', 'nobody'] });
    t.after(() => b.dispose());
    assert.equal(await b.exited, 1, b.out);
    const lines = b.out.trimEnd().split('\n');
    assert.equal(lines.length, 1, `more than one line:\n${b.out}`);
    assert.ok(lines[0]!.startsWith('baton: --user nobody ') && lines[0]!.includes(says), lines[0]);
    assert.ok(!existsSync(b.control), 'the control socket was opened');
  }
});

/** Sends a status request to `path` as the user nobody; resolves with what it printed. */
async function controlAsNobody(node: string, path: string): Promise<string> {
  const script = `
    const s = require('net').createConnection(process.argv[1]);
    s.on('connect', () => s.write(JSON.stringify({ cmd: 'status' }) + '\\n'));
    s.on('data', (d) => { process.stdout.write(String(d)); s.end(); });
    s.on('error', (e) => process.stdout.write('error ' + e.code));`;
  const p = spawn(node, ['-e', script, path], { uid: nobody!.uid, gid: nobody!.gid, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await once(p, 'exit');
  return out;
}

test('the control socket refuses another user: by its file mode, and by the peer check past it', { timeout: 30_000, skip }, async (t) => {
  const c = worldReadableCopy(); // a node binary nobody can run
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  const b = await startBaton({ argv: ['node', join(ROOT, 'examples/hello/v1.js')] });
  t.after(() => b.dispose());
  assert.equal(await controlAsNobody(c.node, b.control), 'error EACCES');
  // Were the directory and the socket opened up, the peer's uid still decides.
  chmodSync(b.dir, 0o755);
  chmodSync(b.control, 0o777);
  const reply = JSON.parse(await controlAsNobody(c.node, b.control)) as { ok: boolean; error: string };
  assert.deepEqual(reply, { ok: false, error: `permission denied: uid ${nobody!.uid} is neither the owner (uid 0) nor root` });
  assert.equal((await b.status()).serving, 1);
});

test('root may control a supervisor that runs as another user, as `sudo baton reload` does for a User= unit', { timeout: 30_000, skip }, async (t) => {
  const c = worldReadableCopy(); // baton itself runs as nobody here
  t.after(() => rmSync(c.dir, { recursive: true, force: true }));
  const dir = tempDir();
  chownSync(dir, nobody!.uid, nobody!.gid);
  const control = join(dir, 'ctl.sock');
  const args = [c.cli, 'start', '--control', control, '--listen', '127.0.0.1:0', '--', c.node, join(c.examples, 'hello/v1.js')];
  const p = new Proc(spawn(c.node, args, { cwd: c.dir, uid: nobody!.uid, gid: nobody!.gid, stdio: ['ignore', 'pipe', 'pipe'], detached: true }));
  t.after(() => p.kill());
  await p.waitFor(/handoff 1: generation 1 serves/);
  assert.equal(statSync(control).uid, nobody!.uid);
  const r = await runCli(['reload', '--json', '--control', control]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).state, 'done');
  assert.equal((await runCli(['stop', '--control', control])).code, 0);
  assert.equal(await p.exited, 0);
});
