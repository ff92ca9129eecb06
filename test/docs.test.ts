// The documentation against the repository: relative links and anchors between README.md and
// docs/ resolve, the README stays a short entry page with a table of contents, the source layout
// names every folder of src/, docs/cli.md documents every command and flag the CLI's own --help
// lists (the built CLI, as a user runs it), and docs/configuration.md every key of the config
// schema and every environment variable the config reads.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigSchema } from '../src/config/config.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const read = (rel: string) => readFileSync(join(root, rel), 'utf8');
const DOCS = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

/** The text outside fenced code blocks, line by line (headings and links inside code are not real). */
function proseLines(md: string): string[] {
  const out: string[] = [];
  let fence: string | undefined;
  for (const line of md.split('\n')) {
    const m = /^\s*(```+|~~~+)/.exec(line);
    if (m) {
      if (fence === undefined) fence = m[1]![0]!.repeat(m[1]!.length);
      else if (m[1]!.startsWith(fence)) fence = undefined;
      out.push('');
      continue;
    }
    out.push(fence === undefined ? line : '');
  }
  return out;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function headings(md: string): { level: number; text: string }[] {
  return proseLines(md).flatMap((l) => {
    const m = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(l);
    return m ? [{ level: m[1]!.length, text: m[2]! }] : [];
  });
}

/** The anchors a Markdown file defines, duplicates numbered as GitHub numbers them. */
function anchors(md: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const h of headings(md)) {
    const base = slug(h.text);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Relative link targets in a Markdown file (inline code and code blocks left out). */
function links(md: string): string[] {
  const text = proseLines(md)
    .join('\n')
    .replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!).filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t));
}

/** Every broken relative link or anchor of `file` (relative to the repository root), as "file: target (why)". */
function brokenLinks(file: string, md: string, readDoc: (rel: string) => string | undefined): string[] {
  const problems: string[] = [];
  for (const target of links(md)) {
    const hash = target.indexOf('#');
    const pathPart = hash < 0 ? target : target.slice(0, hash);
    const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
    const rel = pathPart === '' ? file : relative(root, join(root, dirname(file), decodeURIComponent(pathPart)));
    const doc = readDoc(rel);
    if (doc === undefined) {
      problems.push(`${file}: ${target} (no file ${rel})`);
      continue;
    }
    if (anchor !== undefined && rel.endsWith('.md') && !anchors(doc).has(anchor))
      problems.push(`${file}: ${target} (no heading #${anchor} in ${rel})`);
  }
  return problems;
}

function readRepoFile(rel: string): string | undefined {
  const abs = join(root, rel);
  if (!existsSync(abs)) return undefined;
  return statSync(abs).isDirectory() ? '' : readFileSync(abs, 'utf8');
}

describe('links between README.md and docs/', () => {
  test('the checker finds a missing file, a missing anchor, and accepts what exists (self-test)', () => {
    const fake: Record<string, string> = {
      'docs/a.md': '# Title\n\n## Keys: `s3backup key`, and more\n\n```sh\n# not a heading\n```\n\n## Title\n',
    };
    const readFake = (rel: string) => fake[rel];
    const md =
      '[ok](a.md) [ok](a.md#keys-s3backup-key-and-more) [ok](a.md#title-1) [ok](#title) ' +
      '[bad](b.md) [bad](a.md#not-a-heading) [bad](a.md#nope) `[code](c.md)` [web](https://example.com/x#y)';
    assert.deepEqual(brokenLinks('docs/a.md', md, readFake), [
      'docs/a.md: b.md (no file docs/b.md)',
      'docs/a.md: a.md#not-a-heading (no heading #not-a-heading in docs/a.md)',
      'docs/a.md: a.md#nope (no heading #nope in docs/a.md)',
    ]);
  });

  test('every relative link and anchor resolves', () => {
    const problems = DOCS.flatMap((f) => brokenLinks(f, read(f), readRepoFile));
    assert.deepEqual(problems, []);
  });

  test('the docs link to each other: every file under docs/ is reachable from the README', () => {
    const reached = new Set<string>(['README.md']);
    const queue = ['README.md'];
    while (queue.length > 0) {
      const file = queue.shift()!;
      for (const t of links(read(file))) {
        const p = t.split('#')[0]!;
        if (p === '') continue;
        const rel = relative(root, join(root, dirname(file), decodeURIComponent(p)));
        if (!reached.has(rel) && rel.endsWith('.md') && existsSync(join(root, rel))) {
          reached.add(rel);
          queue.push(rel);
        }
      }
    }
    assert.deepEqual(
      DOCS.filter((f) => !reached.has(f)),
      [],
    );
  });
});

describe('README.md', () => {
  const readme = read('README.md');

  test('stays an entry page: at most 12 KB', () => {
    assert.ok(Buffer.byteLength(readme) <= 12 * 1024, `README.md is ${Buffer.byteLength(readme)} bytes; move reference material to docs/`);
  });

  test('has a table of contents linking every ## section', () => {
    const sections = headings(readme)
      .filter((h) => h.level === 2 && h.text !== 'Contents')
      .map((h) => slug(h.text));
    const toc = /\n## Contents\n([\s\S]*?)\n## /.exec(readme);
    assert.ok(toc, 'README.md needs a "## Contents" section');
    const listed = [...toc[1]!.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]!);
    assert.deepEqual(listed, sections);
  });

  test('keeps the sections the CLI\'s hints name (see README "…")', () => {
    const named = new Set<string>();
    const walk = (d: string): void => {
      for (const e of readdirSync(join(root, d), { withFileTypes: true })) {
        const rel = `${d}/${e.name}`;
        if (e.isDirectory()) walk(rel);
        else if (e.name.endsWith('.ts')) for (const m of read(rel).matchAll(/see README "([^"]+)"/g)) named.add(m[1]!);
      }
    };
    walk('src');
    assert.ok(named.size > 0, 'expected hints in src/ that name README sections');
    const titles = new Set(headings(readme).map((h) => h.text));
    for (const n of named) assert.ok(titles.has(n), `a hint in src/ says: see README "${n}", and README.md has no such section`);
  });
});

describe('docs/architecture.md', () => {
  test('its source layout lists every folder and top-level file of src/', () => {
    const layout = /\n## Source layout\n([\s\S]*?)\n## /.exec(read('docs/architecture.md'));
    assert.ok(layout, 'docs/architecture.md needs a "## Source layout" section');
    const entries = readdirSync(join(root, 'src'), { withFileTypes: true }).map((e) =>
      e.isDirectory() ? `src/${e.name}/` : `src/${e.name}`,
    );
    assert.ok(entries.length >= 15, `expected the folders of src/, found ${entries.length}`);
    const listed = new Set([...layout[1]!.matchAll(/^(src\/\S+)/gm)].map((m) => m[1]!));
    assert.deepEqual(
      entries.filter((e) => !listed.has(e)),
      [],
    );
    assert.deepEqual(
      [...listed].filter((e) => !entries.includes(e)),
      [],
      'the layout lists something src/ does not have',
    );
  });
});

const helpTexts = new Map<string, string>();
/** The command's --help from the built CLI. */
function help(args: string[]): string {
  const key = args.join(' ');
  const known = helpTexts.get(key);
  if (known !== undefined) return known;
  const r = spawnSync(process.execPath, [join(root, 'bin/s3backup.js'), ...args, '--help'], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  assert.equal(r.status, 0, `s3backup ${key} --help: ${r.stderr}`);
  helpTexts.set(key, r.stdout);
  return r.stdout;
}

/** Long flags (`--name`) of the Options block of a --help text. */
function flagsOf(helpText: string): string[] {
  const block = /\nOptions:\n([\s\S]*?)(?:\n\n|$)/.exec(helpText);
  if (!block) return [];
  return [...block[1]!.matchAll(/^ {2}(?:-[A-Za-z], )?(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1]!);
}

/** Command names listed under Commands: in a --help text (aliases and `help` left out). */
function commandsOf(helpText: string): string[] {
  const block = /\nCommands:\n([\s\S]*?)(?:\n\n|$)/.exec(helpText);
  if (!block) return [];
  return [...block[1]!.matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
}

/** The text of the `##` section of cli.md whose heading names `command` (exactly, or as a phrase). */
function sectionOf(md: string, command: string): string | undefined {
  const parts = md.split(/\n(?=## )/);
  const title = (p: string) => /^## (.*)/.exec(p)?.[1]?.replace(/`/g, '') ?? '';
  const exact = parts.find((p) => title(p) === command);
  return exact ?? parts.find((p) => new RegExp(`(^|[ ,])${command}($|[ ,])`).test(title(p)));
}

describe("docs/cli.md against the CLI's --help", () => {
  const cli = read('docs/cli.md');
  const top = help([]);
  const commands = commandsOf(top).flatMap((c) => {
    const sub = commandsOf(help([c]));
    return sub.length > 0 ? sub.map((s) => [c, s]) : [[c]];
  });

  test('the CLI lists its commands (self-test of the parsing)', () => {
    assert.ok(commands.length >= 18, `expected the commands of s3backup --help, found ${commands.map((c) => c.join(' ')).join(', ')}`);
    assert.ok(commands.some((c) => c.join(' ') === 'key add'));
    assert.ok(flagsOf(help(['backup'])).includes('--archive-size'));
  });

  const common = new Set(flagsOf(help(['list'])).filter((f) => flagsOf(help(['prune'])).includes(f)));
  const everyCommand = sectionOf(cli, 'Options every command takes');

  test('the options every command takes are in "Options every command takes"', () => {
    assert.ok(everyCommand, 'docs/cli.md needs a "## Options every command takes" section');
    assert.ok(common.size >= 10, `expected the shared options, found ${[...common].join(' ')}`);
    for (const f of [...common, ...flagsOf(top)])
      assert.ok(everyCommand.includes(`\`${f}`) || everyCommand.includes(`, ${f}`), `docs/cli.md: ${f} (every command) is not documented`);
  });

  for (const c of commands) {
    const name = c.join(' ');
    test(`s3backup ${name}: a section, and every flag of its --help`, () => {
      const section = sectionOf(cli, name);
      assert.ok(section, `docs/cli.md has no "## ${name}" section`);
      const own = flagsOf(help(c)).filter((f) => !common.has(f));
      for (const f of own) assert.match(section, new RegExp(`${f}(?![a-z0-9-])`), `docs/cli.md "## ${name}": ${f} is not documented`);
    });
  }
});

/** The keys of an object schema (through optional wrappers), or none for any other schema. */
function objectKeys(schema: z.ZodType): string[] {
  let s: z.ZodType = schema;
  while (s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

describe('docs/configuration.md against the config schema', () => {
  const doc = read('docs/configuration.md');
  const table = /\n## Every key\n([\s\S]*?)\n## /.exec(doc)?.[1] ?? '';
  const documented = new Set([...table.matchAll(/`([a-zA-Z.]+)`/g)].map((m) => m[1]!));

  test('"Every key" lists every key of ConfigSchema, sections key by key', () => {
    assert.ok(table.length > 0, 'docs/configuration.md needs a "## Every key" section');
    const keys = Object.entries(ConfigSchema.shape).flatMap(([k, v]) => {
      const inner = objectKeys(v as z.ZodType);
      // The anomaly detector's thresholds are listed in docs/anomaly-detection.md (checked below).
      return inner.length === 0 ? [k] : k === 'anomaly' ? ['anomaly.enabled'] : inner.map((i) => `${k}.${i}`);
    });
    assert.ok(keys.length > 40, `expected the config keys, found ${keys.length}`);
    const keepKeys = keys.filter((k) => k.startsWith('keep.')).map((k) => k.slice('keep.'.length));
    for (const k of keys) {
      if (k.startsWith('keep.')) continue;
      assert.ok(documented.has(k), `docs/configuration.md "Every key": ${k} is not listed`);
    }
    const keepRow = table.split('\n').find((l) => l.startsWith('| `keep` |')) ?? '';
    for (const k of keepKeys) assert.match(keepRow, new RegExp(`\\b${k}\\b`), `docs/configuration.md "Every key": keep.${k} is not listed`);
  });

  test('docs/anomaly-detection.md lists every key of anomaly:', () => {
    const section = /\n## Configuration\n([\s\S]*?)\n## /.exec(read('docs/anomaly-detection.md'))?.[1] ?? '';
    const keys = objectKeys(ConfigSchema.shape.anomaly as z.ZodType);
    assert.ok(keys.length > 10, `expected the detector's thresholds, found ${keys.length}`);
    for (const k of keys)
      assert.match(section, new RegExp(`^\\s*${k}:`, 'm'), `docs/anomaly-detection.md "Configuration": anomaly.${k} is not listed`);
  });

  test('"Environment variables" names every variable the settings read', () => {
    const env = /\n## Environment variables\n([\s\S]*?)\n## /.exec(doc)?.[1] ?? '';
    const names: string[] = [];
    // Variables the settings declare (`env: 'NAME'`) or config.ts reads itself (`env.NAME`).
    for (const f of readdirSync(join(root, 'src/config')).filter((n) => n.endsWith('.ts'))) {
      for (const m of read(`src/config/${f}`).matchAll(/\benv(?:\.|: ')([A-Z][A-Z0-9_]+)/g)) names.push(m[1]!);
    }
    assert.ok(new Set(names).size > 15, `expected the environment variables, found ${names.length}`);
    for (const v of names) assert.match(env, new RegExp(`\`${v}\``), `docs/configuration.md "Environment variables": ${v} is not listed`);
  });
});
