// The documentation is checked against the program: every command and option that
// `--help` lists is in docs/cli.md (in that command's section), every config key in
// docs/config.md, every control request in docs/control-protocol.md, and every page is
// linked from the index with no link to a page that does not exist.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { CONFIG_KEYS } from '../src/cli/config.js';
import { ControlRequest } from '../src/common/protocol.js';
import { FIXTURES, ROOT, startBaton } from './helpers/baton.js';
import { cliSurface } from './helpers/surface.js';

const DOCS = join(ROOT, 'docs');
const read = (page: string): string => readFileSync(join(DOCS, page), 'utf8');

/** The part of cli.md under `## baton <command>`, up to the next `## `. */
function section(md: string, command: string): string {
  const start = md.indexOf(`\n## baton ${command}\n`);
  assert.ok(start >= 0, `docs/cli.md has no "## baton ${command}" section`);
  const end = md.indexOf('\n## ', start + 1);
  return md.slice(start, end < 0 ? undefined : end);
}

test("docs/cli.md documents every command and every option of the CLI's own --help", async () => {
  const md = read('cli.md');
  const shared = section(md, 'start').includes('[Finding the service]') ? md.slice(md.indexOf('## Finding the service'), md.indexOf('\n## baton ')) : '';
  for (const [command, flags] of await cliSurface()) {
    // Every word inside `code` in the section: `-l, --listen <spec>` documents -l and --listen.
    const named = new Set(
      [
        ...section(md, command)
          .replace(/```[^]*?```/g, '')
          .matchAll(/`([^`]+)`/g),
      ].flatMap((m) => m[1]!.split(/[\s,]+/)),
    );
    for (const flag of flags) {
      assert.ok(named.has(flag), `docs/cli.md, "baton ${command}": ${flag} is not documented`);
      // The options every command shares are described once, and named in each section.
      if (['--name', '--control', '--config'].includes(flag))
        assert.match(shared, new RegExp(`\`${flag} `), `${flag} is not described under "Finding the service"`);
    }
  }
});

test('docs/config.md documents every config key; docs/control-protocol.md every request', () => {
  const config = read('config.md');
  for (const key of CONFIG_KEYS) assert.match(config, new RegExp(`^\\| \`${key}\` \\|`, 'm'), `config key ${key} is not in the table of docs/config.md`);
  const protocol = read('control-protocol.md');
  for (const option of ControlRequest.options) {
    const cmd = option.entries.cmd.literal;
    assert.match(protocol, new RegExp(`^\\| \`${cmd}\` \\|`, 'm'), `request ${cmd} is not in docs/control-protocol.md`);
  }
});

test('the docs index links every page, and no link in docs/ points to a missing file', () => {
  const index = read('README.md');
  const pages = readdirSync(DOCS).filter((f) => f.endsWith('.md') && f !== 'README.md');
  assert.ok(pages.length >= 8, pages.join(' '));
  for (const p of pages) assert.ok(index.includes(`](${p})`), `docs/README.md does not link ${p}`);
  for (const p of [...pages, 'README.md']) {
    for (const [, target] of read(p).matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      assert.ok(existsSync(resolve(dirname(join(DOCS, p)), target!)), `docs/${p} links ${target}, which does not exist`);
    }
  }
});

test('every install line and SDK import in README, docs/ and examples/ names this package', () => {
  const name = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string }).name;
  const pages = [
    join(ROOT, 'README.md'),
    ...readdirSync(DOCS)
      .filter((f) => f.endsWith('.md'))
      .map((f) => join(DOCS, f)),
    ...readdirSync(join(ROOT, 'examples'))
      .map((d) => join(ROOT, 'examples', d, 'README.md'))
      .filter((f) => existsSync(f)),
  ];
  let installs = 0;
  for (const page of pages) {
    const text = readFileSync(page, 'utf8');
    // `npm install [-g|--global] <pkg>[@tag]`, `npm i <pkg>`, `import … from '<pkg>'`
    for (const m of text.matchAll(/\bnpm (?:install|i)\b((?: +-{1,2}[a-z-]+)*) +([@a-z0-9][\w./@-]*)|\bfrom '([^'./][^']*)'/g)) {
      const pkg = (m[2] ?? m[3]!).replace(/(?<=.)@[^/]*$/, '');
      if (m[3] && pkg.startsWith('node:')) continue;
      installs++;
      assert.equal(pkg, name, `${page}: "${m[0]}" does not name the package ${name}`);
    }
  }
  assert.ok(installs >= 4, `only ${installs} install lines and imports found`);
});

test('the control protocol as the docs use it: a shell client that half-closes still gets every answer', async (t) => {
  const b = await startBaton({ argv: ['node', join(FIXTURES, 'ops.mjs')] });
  t.after(() => b.dispose());
  // What `echo '…' | socat - UNIX-CONNECT:…` does: write the requests, shut the write side, read to the end.
  const lines = await new Promise<string[]>((resolve, reject) => {
    const s = createConnection(b.control);
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (buf += d));
    s.on('end', () => resolve(buf.trim().split('\n')));
    s.on('error', reject);
    s.end('{"id":1,"cmd":"reload"}\n{"id":2,"cmd":"logs","lines":1}\n');
  });
  const msgs = lines.map((l) => JSON.parse(l) as { id?: number; ok?: boolean; event?: string; result?: { state?: string } });
  assert.ok(msgs.some((m) => m.id === 1 && m.event === 'progress'));
  assert.equal(msgs.find((m) => m.id === 1 && 'ok' in m)?.result?.state, 'done', 'the reload answer came after the client shut its side');
  assert.equal(msgs.find((m) => m.id === 2 && 'ok' in m)?.ok, true);
});
