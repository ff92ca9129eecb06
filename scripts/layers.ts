// The layer check over src/'s import graph (run by test/layers.test.ts; by hand:
// `npx node scripts/layers.ts` prints the folder graph and any violation).
//
// Each folder of src/ (and each top-level file, by its name) is a module; LAYERS orders them
// from the bottom up. A module may import from its own layer and the layers below it, never
// from above; no two modules may import each other, directly or round a longer cycle; and
// nothing outside cli imports cli. Every import counts: `import … from`, `import type`,
// `export … from`, bare `import '…'` and dynamic `import('…')`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The modules of src/, bottom layer first. A new folder goes into the lowest layer it fits. */
export const LAYERS: readonly (readonly string[])[] = [
  // Shared helpers with no knowledge of backups: errors and exit codes, bounded concurrency,
  // the version, parsing sizes and durations, formatting them, checking stored JSON's shape.
  ['errors', 'concurrency', 'version', 'size', 'format', 'schema'],
  // Objects in a bucket or a directory, and their optional features.
  ['store'],
  // Keys, key files, KMS and the AEAD every sealed object uses.
  ['crypto'],
  // Tar, compression codecs, frames, reading stored archives.
  ['archive'],
  // The repository: config, manifests, locks, the layout of keys.
  ['repo'],
  // Policies and run history, read and written through the repository.
  ['retention', 'monitor'],
  // Settings, each declared once with its flag and environment variable, and the config file.
  ['config'],
  // Operations on a repository, lowest first where one uses another.
  ['prune', 'restore'],
  ['verify'],
  ['backup'],
  ['cost'],
  // Telling about a run: notification channels, then metrics (which deliver the same way),
  // then the report after a run that sends both.
  ['notify'],
  ['metrics', 'log'],
  ['run'],
  // Long-running services.
  ['schedule', 'dashboard'],
  // The command line, on top of everything.
  ['cli'],
];

/** One import: the importing file, the imported file, both relative to src/. */
export interface ImportEdge {
  from: string;
  to: string;
  /** 1-based line of the import in `from`. */
  line: number;
}

/** The module a file of src/ belongs to: its top folder, or its own name for a top-level file. */
export function moduleOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.[cm]?[jt]s$/, '');
}

/**
 * The relative imports of one source text, with their lines. Comments are blanked first
 * (keeping line breaks), so an import shown in a comment does not count.
 */
export function importsOf(text: string): { spec: string; line: number }[] {
  const code = blankComments(text);
  const out: { spec: string; line: number }[] = [];
  const patterns = [
    // import x from '…', import { a, b } from '…', import type …, export … from '…' (multi-line too)
    /\b(?:import|export)\b[^'"`;]*?\bfrom\s*(['"])([^'"]+)\1/g,
    // import '…' (side effects only)
    /\bimport\s*(['"])([^'"]+)\1/g,
    // import('…')
    /\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g,
  ];
  for (const re of patterns) {
    for (const m of code.matchAll(re)) {
      const spec = m[2]!;
      if (!spec.startsWith('./') && !spec.startsWith('../')) continue;
      out.push({ spec, line: code.slice(0, m.index).split('\n').length });
    }
  }
  return out;
}

/** Block and line comments replaced by spaces (line breaks kept); strings left alone. */
function blankComments(text: string): string {
  let out = '';
  let i = 0;
  let quote: string | undefined;
  while (i < text.length) {
    const c = text[i]!;
    if (quote) {
      out += c;
      if (c === '\\') {
        out += text[i + 1] ?? '';
        i += 2;
        continue;
      }
      if (c === quote || (c === '\n' && quote !== '`')) quote = undefined;
      i++;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end === -1 ? text.length : end + 2;
      out += text.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else if (c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      const stop = end === -1 ? text.length : end;
      out += ' '.repeat(stop - i);
      i = stop;
    } else {
      if (c === "'" || c === '"' || c === '`') quote = c;
      out += c;
      i++;
    }
  }
  return out;
}

/** Every relative import of every .ts file under srcDir; targets outside srcDir are kept as "../…". */
export function importGraph(srcDir: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  const files = (fs.readdirSync(srcDir, { recursive: true }) as string[])
    .map((f) => f.split(path.sep).join('/'))
    .filter((f) => /\.[cm]?ts$/.test(f) && !f.endsWith('.d.ts'))
    .sort();
  for (const file of files) {
    for (const { spec, line } of importsOf(fs.readFileSync(path.join(srcDir, file), 'utf8'))) {
      const to = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      edges.push({ from: file, to, line });
    }
  }
  return edges;
}

/** What is wrong with the graph under the layers, one sentence each; [] when nothing is. */
export function layerProblems(edges: readonly ImportEdge[], layers: readonly (readonly string[])[] = LAYERS): string[] {
  const problems: string[] = [];
  const layerOf = new Map<string, number>();
  for (const [i, mods] of layers.entries()) for (const m of mods) layerOf.set(m, i);
  const unplaced = new Set<string>();
  const folderEdges = new Map<string, Map<string, ImportEdge>>();
  const where = (e: ImportEdge) => `src/${e.from}:${e.line}`;
  for (const e of edges) {
    if (e.to.startsWith('../')) {
      problems.push(`${where(e)} imports ${e.to}, outside src/`);
      continue;
    }
    const a = moduleOf(e.from);
    const b = moduleOf(e.to);
    for (const m of [a, b]) if (!layerOf.has(m)) unplaced.add(m);
    if (a === b) continue;
    if (!folderEdges.has(a)) folderEdges.set(a, new Map());
    if (!folderEdges.get(a)!.has(b)) folderEdges.get(a)!.set(b, e);
    if (b === 'cli') {
      problems.push(`${where(e)} imports src/${e.to}: nothing outside cli may import cli`);
      continue;
    }
    const la = layerOf.get(a);
    const lb = layerOf.get(b);
    if (la !== undefined && lb !== undefined && lb > la) {
      problems.push(`${where(e)} imports src/${e.to}: ${a} (layer ${la}) may not import ${b} (layer ${lb}, above it)`);
    }
  }
  for (const m of [...unplaced].sort()) problems.push(`src/${m} is in no layer: add it to LAYERS in scripts/layers.ts`);
  for (const cycle of folderCycles(folderEdges)) {
    const steps = cycle.map((m, i) => {
      const e = folderEdges.get(m)!.get(cycle[(i + 1) % cycle.length]!)!;
      return `${m} -> ${moduleOf(e.to)} (${where(e)})`;
    });
    problems.push(`folder cycle: ${steps.join(', ')}`);
  }
  return problems;
}

/** One cycle through each strongly connected group of two or more modules (Tarjan). */
function folderCycles(graph: Map<string, Map<string, ImportEdge>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1) groups.push(group);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  // A cycle inside each group: walk from its first module, within the group, back to it.
  return groups.map((group) => {
    const inGroup = new Set(group);
    const start = [...group].sort()[0]!;
    const path = [start];
    const seen = new Set([start]);
    const dfs = (v: string): boolean => {
      for (const w of graph.get(v)?.keys() ?? []) {
        if (w === start) return true;
        if (!inGroup.has(w) || seen.has(w)) continue;
        seen.add(w);
        path.push(w);
        if (dfs(w)) return true;
        path.pop();
      }
      return false;
    };
    dfs(start);
    return path;
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const srcDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src');
  const edges = importGraph(srcDir);
  const byModule = new Map<string, Set<string>>();
  for (const e of edges) {
    const a = moduleOf(e.from);
    const b = moduleOf(e.to);
    if (a !== b) byModule.set(a, (byModule.get(a) ?? new Set()).add(b));
  }
  LAYERS.forEach((mods, i) => {
    for (const m of mods) console.log(`${String(i).padStart(2)} ${m.padEnd(12)} -> ${[...(byModule.get(m) ?? [])].sort().join(', ')}`);
  });
  const problems = layerProblems(edges);
  for (const p of problems) console.error(p);
  process.exit(problems.length ? 1 : 0);
}
