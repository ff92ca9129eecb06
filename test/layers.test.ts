// The layer check (scripts/layers.ts) on src/, and on small trees that break each rule, so a
// check that passes everything would fail here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { importGraph, importsOf, LAYERS, layerProblems, moduleOf } from '../scripts/layers.ts';
import { tempDir } from './helpers/tree.ts';

const SRC = path.join(import.meta.dirname, '..', 'src');

/** A src/ tree of these files (path → text) in a new temporary directory. */
function srcTree(files: Record<string, string>): string {
  const dir = tempDir('layers-src');
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

test('src/ keeps its layers: nothing imports cli from below, no folder cycle, no import upward', () => {
  const edges = importGraph(SRC);
  assert.ok(edges.length > 300, `${edges.length} imports found: the parser misses most of them`);
  assert.deepEqual(layerProblems(edges), []);
});

test('every folder and top-level file of src/ has its place in exactly one layer', () => {
  const modules = fs
    .readdirSync(SRC, { withFileTypes: true })
    .filter((d) => d.isDirectory() || d.name.endsWith('.ts'))
    .map((d) => moduleOf(d.isDirectory() ? `${d.name}/x.ts` : d.name))
    .sort();
  const placed = LAYERS.flat();
  assert.equal(new Set(placed).size, placed.length, 'a module is in two layers');
  assert.deepEqual([...placed].sort(), modules);
});

test('finds every kind of import, and none in comments', () => {
  const text = [
    "import { a } from './a.ts';",
    "import type { B } from '../b/b.ts';",
    'import {',
    '  c,',
    '  d,',
    "} from './cd.ts';",
    "export { e } from './e.ts';",
    "import './side-effect.ts';",
    "const f = await import('./f.ts');",
    "import { z } from 'zod';",
    "// import { no } from './commented.ts';",
    "/* import { no } from './block.ts'; */",
    "const url = 'http://example.com/'; // import('./after-string.ts')",
  ].join('\n');
  assert.deepEqual(
    importsOf(text).sort((x, y) => x.line - y.line),
    [
      { spec: './a.ts', line: 1 },
      { spec: '../b/b.ts', line: 2 },
      { spec: './cd.ts', line: 3 },
      { spec: './e.ts', line: 7 },
      { spec: './side-effect.ts', line: 8 },
      { spec: './f.ts', line: 9 },
    ],
  );
});

test('fails an import of cli from below, an import upward, a folder cycle and an unplaced folder', () => {
  const dir = srcTree({
    'errors.ts': 'export class E {}\n',
    'store/store.ts': "import { E } from '../errors.ts';\nconst lazy = () => import('../cli/format.ts');\n",
    'cli/format.ts': 'export const fmt = 1;\n',
    'crypto/keys.ts': "import type { Repo } from '../repo/repo.ts';\n",
    'repo/repo.ts': "import { key } from '../crypto/keys.ts';\n",
    'backup/run.ts': "import { Repo } from '../repo/repo.ts';\n",
    'backup/history.ts': "import { h } from '../monitor/history.ts';\n",
    'monitor/history.ts': "import { run } from '../backup/run.ts';\n",
    'extra/thing.ts': "import { E } from '../errors.ts';\n",
  });
  const layers = [['errors'], ['store'], ['crypto'], ['repo'], ['monitor'], ['backup'], ['cli']];
  assert.deepEqual(layerProblems(importGraph(dir), layers), [
    'src/crypto/keys.ts:1 imports src/repo/repo.ts: crypto (layer 2) may not import repo (layer 3, above it)',
    'src/monitor/history.ts:1 imports src/backup/run.ts: monitor (layer 4) may not import backup (layer 5, above it)',
    'src/store/store.ts:2 imports src/cli/format.ts: nothing outside cli may import cli',
    'src/extra is in no layer: add it to LAYERS in scripts/layers.ts',
    'folder cycle: crypto -> repo (src/crypto/keys.ts:1), repo -> crypto (src/repo/repo.ts:1)',
    'folder cycle: backup -> monitor (src/backup/history.ts:1), monitor -> backup (src/monitor/history.ts:1)',
  ]);
  // The same tree without its faults passes.
  for (const f of ['crypto/keys.ts', 'monitor/history.ts', 'extra/thing.ts']) fs.rmSync(path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'store/store.ts'), "import { E } from '../errors.ts';\n");
  assert.deepEqual(layerProblems(importGraph(dir), layers), []);
});
