#!/usr/bin/env node
// Lines per function in src/ (from the line that declares it to its closing brace), the longest
// first: `node scripts/function-sizes.mjs [--min N] [--max N] [--except NAME,…] [DIR...]`.
//
// It reads the code's layout, not its grammar (no TypeScript parser): a function starts on a
// line that declares one (a function declaration, a class method, a `const x = (…) => {` or
// `function` expression) and ends at the first later line at the same indentation that is only a
// closing brace (with `)`, `;` or `,` after it). That holds for code formatted the way this
// repository is. Inner functions are listed on their own as well as inside their outer one.
// --max N: list only those over N lines and exit 1 if there are any (for a check).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const [, v] = args.splice(i, 2);
  return v;
};
const flag = (name) => {
  const v = option(name);
  return v === undefined ? undefined : Number(v);
};
// --except NAME[,NAME]: functions the limit does not apply to (declarative tables such as the
// commander program, which grows by one line per flag).
const except = new Set((option('--except') ?? '').split(',').filter(Boolean));
const max = flag('--max');
const min = flag('--min') ?? max ?? 100;
const dirs = args.length ? args : [path.join(root, 'src')];

const DECLARATION = /^(\s*)(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*\*?\s*([\w$]+)/;
const ASSIGNED =
  /^(\s*)(?:export\s+)?(?:const|let|var)\s+([\w$]+)\s*(?::[^=]+)?=\s*\(?\s*(?:async\s+)?(?:function\b|(?:\([^)]*\)?|[\w$]+)\s*(?::\s*[^=]+)?(?:=>|$))/;
const METHOD = /^(\s*)(?:(?:public|private|protected|static|override|readonly|async|get|set)\s+)*\*?([\w$]+)\s*(?:<[^>]*>)?\(/;
const CLASS = /^(\s*)(?:export\s+)?(?:default\s+)?(?:abstract\s+)?class\s+[\w$]+/;
const KEYWORDS = new Set(['if', 'for', 'while', 'switch', 'catch', 'return', 'await', 'new', 'throw', 'typeof', 'function', 'super']);
const CLOSING = /^\s*\}[\s;,)(]*$/;

/** Every function of one file: { name, line, lines }. */
export function functionsOf(text) {
  const lines = text.split('\n');
  // Lines that begin inside a template literal (help texts): their indentation means nothing.
  const inTemplate = [];
  let open = false;
  for (const l of lines) {
    inTemplate.push(open);
    const ticks = (l.replace(/\\./g, '').match(/`/g) ?? []).length;
    if (ticks % 2 === 1) open = !open;
  }
  const indentOf = (l) => l.length - l.trimStart().length;
  const found = [];
  const classes = []; // indentation of the class bodies we are in
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '' || inTemplate[i]) continue;
    const indent = indentOf(line);
    while (classes.length && indent <= classes.at(-1) && !/^\s*\}/.test(line)) classes.pop();
    if (classes.length && indent === classes.at(-1) && CLOSING.test(line)) classes.pop();
    const c = CLASS.exec(line);
    if (c) {
      classes.push(indent);
      continue;
    }
    let m = DECLARATION.exec(line) ?? ASSIGNED.exec(line);
    if (!m && classes.length && indent === classes.at(-1) + 2) {
      m = METHOD.exec(line);
      if (m && KEYWORDS.has(m[2])) m = null;
    }
    if (!m) continue;
    // A one-line function, or a declaration without a body (an overload, a type): not counted.
    let end = -1;
    for (let j = i + 1; j < lines.length; j++) {
      const l = lines[j];
      if (l.trim() === '' || inTemplate[j]) continue;
      const d = indentOf(l);
      if (d < indent) break;
      if (d === indent) {
        if (CLOSING.test(l)) end = j;
        if (!/^\s*[)}\]]/.test(l) || CLOSING.test(l)) break;
      }
    }
    if (end > i) found.push({ name: m[2], line: i + 1, lines: end - i + 1 });
  }
  return found;
}

function* files(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else if (/\.(ts|mts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts')) yield p;
  }
}

const all = [];
for (const d of dirs)
  for (const f of files(d)) for (const fn of functionsOf(fs.readFileSync(f, 'utf8'))) all.push({ ...fn, file: path.relative(root, f) });
const long = all.filter((f) => f.lines > min && !except.has(f.name)).sort((a, b) => b.lines - a.lines);
for (const f of long) console.log(`${String(f.lines).padStart(5)}  ${f.name}  ${f.file}:${f.line}`);
if (max !== undefined && long.length > 0) {
  console.error(`${long.length} function(s) over ${max} lines`);
  process.exit(1);
}
