// `baton completion bash|zsh`: every command and option of the program is in it (as its own
// --help lists them), and bash, given the script, completes what a user types.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { CLI, runCli } from './helpers/baton.js';
import { cliSurface } from './helpers/surface.js';

/** The lines of a `case` branch `name)` in a generated script, up to its `;;`. */
function branch(script: string, name: string): string {
  const start = script.indexOf(`\n    ${name})\n`);
  assert.ok(start >= 0, `no branch for ${name}`);
  return script.slice(start, script.indexOf('\n      ;;', start));
}

test('the bash and zsh completions name every command and every option of the program', async () => {
  const surface = await cliSurface();
  for (const shell of ['bash', 'zsh']) {
    const r = await runCli(['completion', shell]);
    assert.equal(r.code, 0, r.stderr);
    for (const [command, flags] of surface) {
      const b = branch(r.stdout, command);
      // A flag as a word of its own: `--env` must not pass for being part of `--env-file`.
      for (const f of flags) assert.match(b, new RegExp(`(^|[\\s|,{'*"])${f}([\\s|,}\\['\\)"]|$)`), `${shell} completion, ${command}: ${f} is missing`);
    }
  }
  assert.equal((await runCli(['completion', 'fish'])).code, 2);
});

/** What bash completes for the words typed so far (the last one being completed). */
function complete(script: string, words: string[]): string[] {
  const line = ['baton', ...words];
  const out = execFileSync(
    'bash',
    ['-c', `${script}\nCOMP_WORDS=(${line.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${line.length - 1}; _baton; printf '%s\\n' "\${COMPREPLY[@]}"`],
    { encoding: 'utf8' },
  );
  return out.split('\n').filter(Boolean);
}

test('bash completes commands, options, their choices, and nothing inside a command line after --', async () => {
  const script = execFileSync(process.execPath, [CLI, 'completion', 'bash'], { encoding: 'utf8' });
  assert.deepEqual(complete(script, ['re']), ['reload']);
  assert.deepEqual(complete(script, ['status', '--wa']), ['--watch']);
  assert.deepEqual(complete(script, ['reload', 'api', '--env']), ['--env', '--env-file']);
  assert.deepEqual(complete(script, ['start', '--ready', '']), ['auto', 'listen', 'manual', 'notify']);
  assert.deepEqual(complete(script, ['completion', '']), ['bash', 'zsh']);
  assert.deepEqual(complete(script, ['reload', '--', 'node', '--j']), []);
});

test('zsh loads the completion and registers it for baton', { skip: spawnSync('zsh', ['--version']).error ? 'zsh is not installed' : false }, () => {
  const out = execFileSync(
    'zsh',
    ['-f', '-c', `autoload -U compinit && compinit -u -D && source <(${JSON.stringify(process.execPath)} ${CLI} completion zsh) && print -r -- $_comps[baton]`],
    { encoding: 'utf8' },
  );
  assert.equal(out.trim(), '_baton');
});
