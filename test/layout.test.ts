// The tree is the architecture: src/ is folders that are layers, and every import points
// down (or sideways within a folder), never up and never in a circle, type-only imports
// included. Read from the TypeScript sources (the compiled JavaScript has lost its
// type-only imports), with TypeScript's own import scanner.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SRC = join(ROOT, 'src');

/** Bottom to top: a module may import its own folder and the folders listed before it. */
const LAYERS = ['common', 'log', 'os', 'control', 'supervisor', 'upgrade', 'host', 'cli'] as const;
/** Folders outside the supervisor's stack: what each may import. */
const APART: Record<string, readonly string[]> = {
  // The worker runtime runs inside the app: the shared protocol, and the os modules for
  // the few fd calls it makes (loaded lazily there).
  runtime: ['common', 'os'],
};
/** The entry files at the top of src/ and what they may import. */
const ENTRIES: Record<string, readonly string[]> = { 'sdk.ts': ['common'] };
/** Beyond the order: the upgrade's pre-flight loads the runtime new workers will preload. */
const ALSO: Record<string, readonly string[]> = { upgrade: ['runtime'] };

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** file -> the project files it imports (static, dynamic, type-only, require()). */
function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const specs = ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
    // createRequire(import.meta.url)('../x.js') is how the runtime loads modules lazily.
    for (const m of text.matchAll(/createRequire\([^)]*\)\(\s*'(\.[^']+)'\s*\)/g)) specs.push(m[1]!);
    graph.set(
      file,
      specs.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s).replace(/\.js$/, '.ts')),
    );
  }
  return graph;
}

function folderOf(file: string): string {
  const rel = relative(SRC, file);
  return rel.includes('/') ? rel.split('/')[0]! : rel;
}

function allowed(from: string): readonly string[] {
  if (from in ENTRIES) return ENTRIES[from]!;
  if (from in APART) return [from, ...APART[from]!];
  const i = (LAYERS as readonly string[]).indexOf(from);
  assert.ok(i >= 0, `src/${from} is neither a layer nor listed apart: add it to LAYERS or APART in test/layout.test.ts`);
  return [...LAYERS.slice(0, i + 1), ...(ALSO[from] ?? [])];
}

/** Every import between folders that breaks the order, as "from -> to" lines. */
export function upwardImports(graph: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [file, deps] of graph) {
    const from = folderOf(file);
    for (const dep of deps) {
      if (!dep.startsWith(SRC)) {
        bad.push(`${relative(ROOT, file)} -> ${relative(ROOT, dep)} (outside src/)`);
        continue;
      }
      const to = folderOf(dep);
      if (!allowed(from).includes(to)) bad.push(`${relative(ROOT, file)} -> ${relative(ROOT, dep)}`);
    }
  }
  return bad;
}

/** One cycle per strongly connected part of the graph (Tarjan), as "a -> b -> a". */
export function cycles(graph: Map<string, string[]>): string[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const part: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      part.push(w);
    } while (w !== v);
    const self = (graph.get(v) ?? []).includes(v);
    if (part.length > 1 || self)
      found.push(
        `cycle among ${part
          .reverse()
          .map((f) => relative(ROOT, f))
          .join(', ')}`,
      );
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

test('src/ holds only folders and its entry files', () => {
  const loose = readdirSync(SRC).filter((n) => !statSync(join(SRC, n)).isDirectory() && !(n in ENTRIES));
  assert.deepEqual(loose, []);
});

test('every import points down the layers or sideways, never up', () => {
  assert.deepEqual(upwardImports(importGraph(sources(SRC))), []);
});

test('no import cycles, type-only imports included', () => {
  assert.deepEqual(cycles(importGraph(sources(SRC))), []);
});

test('the checks see what they look for: a planted cycle and an upward import are caught', () => {
  const a = join(SRC, 'common', 'a.ts');
  const b = join(SRC, 'common', 'b.ts');
  const low = join(SRC, 'os', 'low.ts');
  const graph = new Map([
    [a, [b]],
    [b, [a]],
    [low, [join(SRC, 'cli', 'main.ts')]],
  ]);
  assert.deepEqual(cycles(graph), ['cycle among src/common/a.ts, src/common/b.ts']);
  assert.deepEqual(upwardImports(graph), ['src/os/low.ts -> src/cli/main.ts']);
});
