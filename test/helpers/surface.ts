// The program's command-line surface as its own `--help` shows it: the commands, and the flags
// (`-x`, `--long`) of each. What the docs and the shell completion are checked against.
import assert from 'node:assert/strict';
import { runCli } from './baton.js';

export async function cliSurface(): Promise<Map<string, string[]>> {
  const top = await runCli(['--help']);
  assert.equal(top.code, 0, top.stderr);
  const commands = [...top.stdout.split('Commands:')[1]!.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
  assert.ok(commands.includes('start') && commands.includes('reload'), top.stdout);
  const surface = new Map<string, string[]>();
  for (const c of commands) {
    const help = await runCli([c, '--help']);
    assert.equal(help.code, 0, help.stderr);
    // Option lines start with two spaces and a dash; descriptions may mention other flags, not these.
    const flags = [...help.stdout.split('Options:')[1]!.matchAll(/^ {2}(-\w)?(?:, )?(--[a-z][a-z-]*)?/gm)].flatMap((m) =>
      [m[1], m[2]].filter((f): f is string => !!f),
    );
    surface.set(
      c,
      flags.filter((f) => f !== '-h' && f !== '--help'),
    );
  }
  // The parse must see options at all: start has many.
  assert.ok((surface.get('start') ?? []).length > 5, `no options parsed for start`);
  return surface;
}
