// diff between two backups, from their manifests: the tree order it merges in is the order the
// real walk writes (names chosen to trip a naive string comparison); on randomly changed trees
// its added/removed/changed entries and what changed agree with an independent comparison of
// the two trees as the file system showed them; every kind of change is named (type, content
// at the same size, symlink target, mode, owner, mtime, xattrs); no archive is read; ID^ and
// the CLI's text and --json forms.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import type { Entry } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { type ChangeAspect, changedAspects, compareTreePaths, type DiffChange, runDiff } from '../src/restore/diff.ts';
import { LocalStore } from '../src/store/local.ts';
import { isolatedEnv, json, prng, runCli, snapshotTree, type TreeItem, tempDir } from './helpers/tree.ts';

const work = tempDir('diff');
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** Names whose tree order differs from plain string order ("a/…" before "a.txt", "/" > "."). */
const NAMES = ['a', 'a.txt', 'a-b', 'a b', 'a0', 'B', 'b', 'é', 'z.d', 'Z'];

async function collect(store: LocalStore, from: string, to: string): Promise<{ changes: DiffChange[]; summary: any }> {
  const changes: DiffChange[] = [];
  const r = await runDiff({ store, from, to, onChange: (c) => void changes.push(c) });
  return { changes, summary: r.summary };
}

const pathOf = (c: DiffChange) => (c.change === 'changed' ? c.after.path : c.entry.path);

describe('tree order', () => {
  test('compareTreePaths: a directory before its contents, components compared by code unit', () => {
    const ordered = ['a', 'a/b', 'a/b/c', 'a/c', 'a b', 'a-b', 'a.txt', 'a0', 'aa'];
    for (let i = 0; i < ordered.length; i++) {
      assert.equal(compareTreePaths(ordered[i]!, ordered[i]!), 0);
      for (let j = i + 1; j < ordered.length; j++) {
        assert.ok(compareTreePaths(ordered[i]!, ordered[j]!) < 0, `${ordered[i]} < ${ordered[j]}`);
        assert.ok(compareTreePaths(ordered[j]!, ordered[i]!) > 0, `${ordered[j]} > ${ordered[i]}`);
      }
    }
  });

  test('is the order the real walk writes into a manifest', async () => {
    const src = path.join(work, 'order', 'data');
    for (const a of NAMES) {
      fs.mkdirSync(path.join(src, a, 'sub'), { recursive: true });
      for (const b of NAMES) fs.writeFileSync(path.join(src, a, b === 'sub' ? 'x' : `${b}`), b);
      fs.writeFileSync(path.join(src, `${a}.file`), a);
    }
    const store = new LocalStore(path.join(work, 'order', 'repo'));
    const r = await runBackup({ store, sources: [src] });
    const m = await (await Repository.open(store)).loadManifest(r.id);
    const paths: string[] = [];
    for await (const e of m.entries()) paths.push(e.path);
    await m.dispose();
    assert.ok(paths.length > 100);
    for (let i = 1; i < paths.length; i++) assert.ok(compareTreePaths(paths[i - 1]!, paths[i]!) < 0, `${paths[i - 1]} then ${paths[i]}`);
  });
});

/** A random tree of nested directories, files and symlinks with the tricky names. */
function randomTree(root: string, rand: () => number, depth = 0): void {
  fs.mkdirSync(root, { recursive: true });
  for (const n of NAMES) {
    const p = path.join(root, n);
    const x = rand();
    if (x < 0.25 && depth < 3) randomTree(p, rand, depth + 1);
    else if (x < 0.75) fs.writeFileSync(p, `content of ${p} ${Math.floor(rand() * 1000)}\n`.repeat(1 + Math.floor(rand() * 20)));
    else if (x < 0.85) fs.symlinkSync(`target-${Math.floor(rand() * 5)}`, p);
  }
}

/** Random changes of every kind a diff reports without root: add, remove, rewrite, chmod, touch, retarget, retype. */
function mutate(root: string, rand: () => number): void {
  const all = [...snapshotTree(root).keys()];
  for (const rel of all) {
    const p = path.join(root, rel);
    if (!fs.existsSync(path.dirname(p))) continue; // its directory was removed already
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue;
    }
    const x = rand();
    if (x < 0.05) fs.rmSync(p, { recursive: true, force: true });
    else if (x < 0.1 && st.isFile())
      fs.writeFileSync(p, fs.readFileSync(p).reverse()); // same size, new content
    else if (x < 0.15 && st.isFile()) fs.appendFileSync(p, 'more\n');
    else if (x < 0.2 && !st.isSymbolicLink()) fs.chmodSync(p, (st.mode & 0o7777) ^ 0o020);
    else if (x < 0.25 && !st.isSymbolicLink()) fs.utimesSync(p, 1_600_000_000 + Math.floor(rand() * 1e6), 1_600_000_000);
    else if (x < 0.3 && st.isSymbolicLink()) {
      fs.rmSync(p);
      fs.symlinkSync('elsewhere', p);
    } else if (x < 0.33 && st.isFile()) {
      fs.rmSync(p);
      fs.mkdirSync(p);
      fs.writeFileSync(path.join(p, 'inside'), 'new\n');
    } else if (x < 0.4 && st.isDirectory()) fs.writeFileSync(path.join(p, `new-${Math.floor(rand() * 100)}`), 'added\n');
  }
}

/** What the two trees differ in, computed from the file system's own view (not from manifests). */
function expected(before: Map<string, TreeItem>, afterTree: Map<string, TreeItem>, name: string) {
  const out = new Map<string, string>();
  for (const [k, a] of before) {
    const b = afterTree.get(k);
    if (!b) out.set(`${name}/${k}`, 'removed');
    else if (a.type !== b.type) out.set(`${name}/${k}`, 'type');
    else {
      const what: ChangeAspect[] = [];
      if (a.type === 'file' && (a.size !== b.size || a.sha256 !== b.sha256)) what.push('content');
      if (a.type === 'symlink' && a.target !== b.target) what.push('target');
      if (a.type !== 'symlink' && a.mode !== b.mode) what.push('mode');
      if (a.mtimeMs !== b.mtimeMs) what.push('times');
      if (what.length) out.set(`${name}/${k}`, what.join(','));
    }
  }
  for (const k of afterTree.keys()) if (!before.has(k)) out.set(`${name}/${k}`, 'added');
  return out;
}

describe('diff of randomly changed trees', () => {
  for (const seed of [1, 2, 3]) {
    test(`seed ${seed}: the same differences as the trees themselves, in tree order`, async () => {
      const src = path.join(work, `random-${seed}`, 'tree');
      const rand = prng(seed);
      randomTree(src, rand);
      const store = new LocalStore(path.join(work, `random-${seed}`, 'repo'));
      const before = snapshotTree(src);
      const rootBefore = fs.lstatSync(src).mtimeMs;
      const first = await runBackup({ store, sources: [src] });
      mutate(src, rand);
      const afterTree = snapshotTree(src);
      const rootAfter = fs.lstatSync(src).mtimeMs;
      const second = await runBackup({ store, sources: [src] });

      const { changes, summary } = await collect(store, first.id, second.id);
      const got = new Map(changes.map((c) => [pathOf(c), c.change === 'changed' ? c.what.join(',') : c.change]));
      const want = expected(before, afterTree, 'tree');
      if (rootAfter !== rootBefore) want.set('tree', 'times'); // the source directory itself
      assert.ok(want.size > 10, `seed ${seed} changed too little: ${want.size}`);
      assert.deepEqual(got, want);
      for (let i = 1; i < changes.length; i++) assert.ok(compareTreePaths(pathOf(changes[i - 1]!), pathOf(changes[i]!)) < 0);
      assert.equal(summary.added + summary.removed + summary.changed, changes.length);
      assert.equal(summary.added + summary.changed + summary.unchanged, afterTree.size + 1); // + the source's own entry
      const bytes = (t: Map<string, TreeItem>) => [...t.values()].reduce((s, x) => s + x.size, 0);
      assert.equal(summary.bytesBefore, bytes(before));
      assert.equal(summary.bytesAfter, bytes(afterTree));
      // The same backups the other way round: added and removed swap.
      const back = await collect(store, second.id, first.id);
      assert.equal(back.summary.added, summary.removed);
      assert.equal(back.summary.removed, summary.added);
    });
  }
});

describe('every kind of change, and the CLI', () => {
  const root = path.join(work, 'kinds');
  const src = path.join(root, 'data');
  const repo = path.join(root, 'repo');
  const env = isolatedEnv(path.join(root, 'home'));
  const cli = (...args: string[]) => runCli([...args, '--repo', repo], { env });
  const ids: string[] = [];

  test('owner and xattrs changes are named (entries as the manifest holds them)', () => {
    const base: Entry = { path: 'd/f', type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtime: 1, ctime: 1, ino: 1, size: 3, sha256: 'aa' };
    assert.deepEqual(changedAspects(base, { ...base, uid: 0 }), ['owner']);
    assert.deepEqual(changedAspects(base, { ...base, gid: 5 }), ['owner']);
    assert.deepEqual(changedAspects(base, { ...base, xattrs: { 'user.a': 'eA==' } }), ['xattrs']);
    assert.deepEqual(changedAspects({ ...base, xattrs: { 'user.a': 'eA==' } }, { ...base, xattrs: { 'user.a': 'eQ==' } }), ['xattrs']);
    assert.deepEqual(changedAspects({ ...base, xattrs: { 'user.a': 'eA==' } }, { ...base, xattrs: { 'user.a': 'eA==' } }), []);
    assert.deepEqual(changedAspects(base, { ...base, ctime: 99, ino: 7 }), [], 'ctime and inode are not restorable: not a change');
    assert.deepEqual(changedAspects(base, { ...base, type: 'symlink', target: 'x' }), ['type']);
    assert.deepEqual(changedAspects(base, { ...base, sha256: 'bb', mode: 0o600, mtime: 2 }), ['content', 'mode', 'times']);
  });

  test('text and --json name each change; ID^ is the parent; no archive is read', async () => {
    fs.mkdirSync(path.join(src, 'docs'), { recursive: true });
    fs.writeFileSync(path.join(src, 'docs', 'same-size.txt'), 'abcdef\n');
    fs.writeFileSync(path.join(src, 'docs', 'grows.txt'), 'x\n');
    fs.writeFileSync(path.join(src, 'docs', 'gone.txt'), 'bye\n');
    fs.writeFileSync(path.join(src, 'script.sh'), 'echo\n');
    fs.writeFileSync(path.join(src, 'tagged.txt'), 't\n');
    fs.symlinkSync('docs/grows.txt', path.join(src, 'link'));
    fs.writeFileSync(path.join(src, 'becomes-dir'), 'f\n');
    for (let round = 0; round < 2; round++) {
      if (round === 1) {
        fs.writeFileSync(path.join(src, 'docs', 'same-size.txt'), 'fedcba\n');
        fs.appendFileSync(path.join(src, 'docs', 'grows.txt'), 'more content\n');
        fs.rmSync(path.join(src, 'docs', 'gone.txt'));
        fs.writeFileSync(path.join(src, 'docs', 'new.txt'), 'hello\n');
        fs.chmodSync(path.join(src, 'script.sh'), 0o755);
        execFileSync('setfattr', ['-n', 'user.note', '-v', 'reviewed', path.join(src, 'tagged.txt')]);
        fs.rmSync(path.join(src, 'link'));
        fs.symlinkSync('docs/new.txt', path.join(src, 'link'));
        fs.rmSync(path.join(src, 'becomes-dir'));
        fs.mkdirSync(path.join(src, 'becomes-dir'));
      }
      const r = await cli('backup', src, '--json');
      assert.equal(r.code, 0, r.stderr);
      ids.push(json(r.stdout).id);
    }
    // Only manifests are needed: with every archive gone, diff still answers.
    fs.rmSync(path.join(repo, 'archives'), { recursive: true });
    const short = ids[1]!.slice(-8);
    const r = await cli('diff', `${short}^`, short, '--json');
    assert.equal(r.code, 0, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.from.id, ids[0]);
    assert.equal(doc.to.id, ids[1]);
    const by = new Map(doc.changes.map((c: any) => [c.change === 'changed' ? c.after.path : c.path, c]));
    const what = (p: string) => (by.get(p) as any)?.what;
    assert.deepEqual(what('data/docs/same-size.txt'), ['content', 'times']);
    assert.deepEqual(what('data/docs/grows.txt'), ['content', 'times']);
    assert.equal((by.get('data/docs/gone.txt') as any).change, 'removed');
    assert.equal((by.get('data/docs/new.txt') as any).change, 'added');
    assert.equal((by.get('data/docs/new.txt') as any).size, 6);
    assert.deepEqual(what('data/script.sh'), ['mode']);
    assert.deepEqual(what('data/tagged.txt'), ['xattrs']);
    assert.deepEqual(what('data/link'), ['target', 'times']); // a new symlink: new mtime too
    assert.deepEqual(what('data/becomes-dir'), ['type']);
    assert.equal(doc.summary.added, 1);
    assert.equal(doc.summary.removed, 1);
    assert.equal(doc.summary.byAspect.type, 1);
    assert.equal(doc.summary.byAspect.xattrs, 1);

    const text = await cli('diff', `${short}^`, short);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^M {2}data\/docs\/grows\.txt {2}\(content 2 B → 15 B; mtime\)$/m);
    assert.match(text.stdout, /^M {2}data\/docs\/same-size\.txt {2}\(content \(7 B\); mtime\)$/m);
    assert.match(text.stdout, /^- {2}data\/docs\/gone\.txt {2}\(file, 4 B\)$/m);
    assert.match(text.stdout, /^\+ {2}data\/docs\/new\.txt {2}\(file, 6 B\)$/m);
    assert.match(text.stdout, /^M {2}data\/script\.sh {2}\(mode -rw-r--r-- → -rwxr-xr-x\)$/m);
    assert.match(text.stdout, /^M {2}data\/link {2}\(target docs\/grows\.txt → docs\/new\.txt; mtime\)$/m);
    assert.match(text.stdout, /^M {2}data\/becomes-dir\/ {2}\(type file → dir\)$/m);
    assert.match(text.stderr, new RegExp(`^diff ${ids[0]!.slice(-8)} \\(.* UTC, .*\\) → ${short} `, 'm'));
    assert.match(
      text.stderr,
      /^1 added \(6 B\), 1 removed \(4 B\), \d+ changed \(type 1, content 2, target 1, mode 1, times \d+, xattrs 1\)/m,
    );

    // A path limits the comparison; the same backup against itself has nothing to say.
    const docs = json((await cli('diff', ids[0]!, ids[1]!, 'data/docs', '--json')).stdout);
    assert.ok(docs.changes.every((c: any) => (c.change === 'changed' ? c.after.path : c.path).startsWith('data/docs')));
    assert.equal(docs.summary.removed, 1);
    const self = json((await cli('diff', short, short, '--json')).stdout);
    assert.deepEqual(self.changes, []);
  });

  test('bad references are clear errors', async () => {
    const r = await cli('diff', 'nonesuch', 'latest');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no backup "nonesuch"/);
    const first = await cli('diff', `${ids[0]}^`, ids[0]!);
    assert.equal(first.code, 1);
    assert.match(first.stderr, /has no earlier backup of .*: .*\/data/);
    const missing = await cli('diff', 'latest');
    assert.equal(missing.code, 2);
  });
});
