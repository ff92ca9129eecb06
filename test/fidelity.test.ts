// What the backup holds is exactly what the disk holds: the hostile tree (test/helpers/hostile-
// tree.ts: names that are not UTF-8, symlink targets likewise, newlines, tabs, backslashes,
// leading dashes, a hard link, a sparse file, odd owners and modes, files deleted while the walk
// runs) backed up and restored through the CLI on the local store and on Ceph, compared byte for
// byte and attribute for attribute with the source; the archive extracted by GNU tar compared the
// same way; and ls, cat, --include and --exclude naming such entries by their bytes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { walkTestHooks } from '../src/backup/walk.ts';
import { SEGMENTED_MANIFEST_VERSION } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import { getBuffer, type Store } from '../src/store/store.ts';
import { bytes, byteTree, compareByteTrees, type HostileTree, makeHostileTree } from './helpers/hostile-tree.ts';
import { testBackends } from './helpers/store.ts';
import { isolatedEnv, json, ROOT, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('fidelity');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const MiB = 1 << 20;
/** What a restored file may hold on disk beyond what its source holds (extent metadata). */
const SPARSE_SLACK = 64 * 1024;

/** The warnings the vanished entries must get (and nothing else is warned about). */
function vanishedWarnings(tree: HostileTree): RegExp[] {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return [
    ...tree.vanished.listed.map(
      (p) => new RegExp(`^${esc(p)}: not backed up: it vanished after its directory was listed \\(deleted or renamed meanwhile\\)$`),
    ),
    ...tree.vanished.statted.map((p) => new RegExp(`^${esc(p)}: unreadable, not backed up: .*no such file`, 'i')),
  ];
}

function hooksPreload(tree: HostileTree, dir: string): NodeJS.ProcessEnv {
  const file = path.join(dir, 'hooks.mjs');
  const dist = (p: string) => pathToFileURL(path.join(ROOT, 'dist', p)).href;
  fs.writeFileSync(file, tree.preloadSource(dist('backup/walk.js'), dist('archive/names.js')));
  return { NODE_OPTIONS: `--import=${pathToFileURL(file).href}` };
}

for (const backend of testBackends('fidelity', 'host/fidelity')) {
  describe(`the hostile tree, backed up and restored on ${backend.name}`, () => {
    const base = path.join(work, backend.name.replace(/\W+/g, '-'));
    const home = path.join(base, 'home');
    let repo: Awaited<ReturnType<typeof backend.open>>;
    let tree: HostileTree;
    let env: NodeJS.ProcessEnv;
    let id: string;

    before(async () => {
      fs.mkdirSync(home, { recursive: true });
      repo = await backend.open();
      tree = makeHostileTree(path.join(base, 'src'));
      env = { ...isolatedEnv(home), ...repo.cliEnv };
    });
    after(async () => {
      await repo?.cleanup();
    });

    const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
      runCli([...args, '--repo', repo.repoArg], { env: { ...env, ...extra }, cwd: base });

    test('the source is what the generator promises: names that are not UTF-8, a sparse file', () => {
      const t = byteTree(tree.root);
      const keys = [...t.keys()];
      assert.ok(
        keys.some((k) => k.startsWith('bad-\\xff\\xfe [')),
        keys.join('\n'),
      );
      assert.ok(keys.some((k) => k.startsWith('dir-\\xc3(/sub-\\x80/deep.txt [')));
      const sparse = [...t.entries()].find(([k]) => k.startsWith('sparse-\\xe9.img'))![1];
      assert.equal(sparse.size, 16 * MiB);
      assert.ok(sparse.allocated < 2 * MiB, `the sparse source holds ${sparse.allocated} bytes on disk`);
    });

    test('backup (CLI): every entry is stored but the two deleted during the walk, which are named; exit 3', async () => {
      const r = await cli(['backup', tree.root, '--json'], hooksPreload(tree, base));
      assert.equal(r.code, 3, r.stderr);
      const doc = json(r.stdout);
      id = doc.id;
      const patterns = vanishedWarnings(tree);
      assert.equal(doc.warnings.length, patterns.length, doc.warnings.join('\n'));
      for (const p of patterns)
        assert.ok(
          doc.warnings.some((w: string) => p.test(w)),
          `${p} in\n${doc.warnings.join('\n')}`,
        );
      assert.equal(doc.skipped, 2);
      assert.ok(!fs.existsSync(path.join(tree.root, 'vanishing', 'gone-after-listing')), 'the hook deleted it');
      // 23 files (the hard link's second name is not one), 6 dirs, 4 symlinks, 1 hard link.
      assert.deepEqual([doc.files, doc.dirs, doc.symlinks, doc.hardlinks], [23, 6, 4, 1]);
      // A version 3 manifest (older versions wrote 2 for names that are not UTF-8).
      const h = await (await Repository.open(repo.store)).header(id);
      assert.equal(h.version, SEGMENTED_MANIFEST_VERSION);
      assert.equal(h.stats.skipped, 2);
    });

    test('restore (CLI): byte for byte, attribute for attribute, hard link and holes kept', async () => {
      const target = path.join(base, 'restored');
      const r = await cli(['restore', id, '--target', target, '--json']);
      // The file deleted after its lstat is in the manifest without content: restore names it.
      assert.equal(r.code, 3, r.stderr);
      const doc = json(r.stdout);
      assert.deepEqual(doc.skipped, tree.vanished.statted);
      assert.deepEqual(
        doc.skippedBase64.map((b: string) => Buffer.from(b, 'base64').toString('latin1')),
        [bytes('src/vanishing/gone-after-stat-', [0xff]).toString('latin1')],
      );
      assert.deepEqual(compareByteTrees(tree.root, path.join(target, 'src'), { symlinkTimes: true, sparseSlack: SPARSE_SLACK }), []);
    });

    test('GNU tar extracts the archive to the same tree (times to the second)', async () => {
      const manifest = await (await Repository.open(repo.store)).loadManifest(id);
      const keys = manifest.archives.map((a) => a.key);
      await manifest.dispose();
      assert.equal(keys.length, 1);
      const archive = path.join(base, 'archive.tar.zst');
      fs.writeFileSync(archive, await getBuffer(repo.store as Store, keys[0]!));
      const out = path.join(base, 'tar-x');
      fs.mkdirSync(out);
      // Every extended attribute too (GNU tar restores user.* only unless told).
      const x = spawnSync('sh', ['-c', `zstd -dc '${archive}' | tar --xattrs --xattrs-include='*' -x -C '${out}'`], { encoding: 'utf8' });
      assert.equal(x.status, 0, x.stderr);
      // GNU tar does not know hdrcharset (what says the names are bytes): it says so, and uses them as they are.
      for (const line of x.stderr.split('\n').filter(Boolean)) assert.match(line, /Ignoring unknown extended header keyword 'hdrcharset'/);
      assert.ok(x.stderr.includes('hdrcharset'), 'names that are not UTF-8 come with hdrcharset=BINARY');
      assert.deepEqual(compareByteTrees(tree.root, path.join(out, 'src'), { wholeSeconds: true }), []);
    });

    if (backend.name !== 'local') return;

    test('ls shows bad bytes as \\xHH, --json adds the exact bytes; cat, --include and --exclude take \\xHH', async () => {
      const ls = await cli(['ls', id]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /^-rw-r--r-- .* src\/bad-\\xff\\xfe$/m);
      assert.match(ls.stdout, /^lrwxrwxrwx .* src\/link-\\xff -> bad-\\xff\\xfe$/m);
      assert.match(ls.stdout, / "src\/new\\nline"$/m);
      assert.deepEqual(
        ls.stdout
          .split('\n')
          .filter((l) => l.includes('\uFFFD'))
          .map((l) => l.replace(/^.* src\//, '')),
        ['real-\uFFFD.txt'],
        'no replacement character but the one a name holds itself',
      );

      const lsJson = await cli(['ls', id, '--json']);
      const entries: { path: string; pathBase64?: string; target?: string; targetBase64?: string }[] = json(lsJson.stdout).entries;
      const exact = (e: { path: string; pathBase64?: string }) =>
        e.pathBase64 ? Buffer.from(e.pathBase64, 'base64') : Buffer.from(e.path);
      const bad = entries.find((e) => exact(e).equals(bytes('src/bad-', [0xff, 0xfe])))!;
      assert.equal(bad.path, 'src/bad-\\xff\\xfe');
      const literal = entries.find((e) => e.path === 'src/\\xff' && !e.pathBase64);
      assert.ok(literal, 'the name made of the characters "\\xff" is exact in path, without pathBase64');
      const link = entries.find((e) => e.path === 'src/link-dangling')!;
      assert.equal(link.target, 'target-\\xe9');
      assert.ok(Buffer.from(link.targetBase64!, 'base64').equals(bytes('target-', [0xe9])));
      // Every exact path of the listing is a path of the source (bar the vanished ones).
      const sourcePaths = new Set([...byteTree(tree.root).keys()].map((k) => /\[([0-9a-f]*)\]$/.exec(k)![1]));
      for (const e of entries) {
        const rel = exact(e).subarray(4); // after "src/"
        if (e.path === 'src' || e.path === 'src/vanishing/gone-after-stat-\\xff') continue;
        assert.ok(sourcePaths.has(rel.toString('hex')), `${e.path} is in the source`);
      }

      const cat = await cli(['cat', id, 'src/dir-\\xc3(/inner-\\xfc.txt']);
      assert.equal(cat.code, 0, cat.stderr);
      const catRaw = spawnSync(
        process.execPath,
        [path.join(ROOT, 'bin', 's3backup.js'), 'cat', id, 'src/bad-\\xff\\xfe', '--repo', repo.repoArg],
        { env: { ...process.env, ...env } },
      );
      assert.equal(catRaw.status, 0, String(catRaw.stderr));
      assert.ok(catRaw.stdout.equals(fs.readFileSync(bytes(tree.root, '/bad-', [0xff, 0xfe]))));
      const catLiteral = spawnSync(
        process.execPath,
        [path.join(ROOT, 'bin', 's3backup.js'), 'cat', id, 'src/\\\\xff', '--repo', repo.repoArg],
        { env: { ...process.env, ...env } },
      );
      assert.equal(String(catLiteral.stdout), 'the four characters backslash, x, f, f\n', String(catLiteral.stderr));

      // --include by \xHH: that directory and what is below it, nothing else.
      const some = path.join(base, 'some');
      const inc = await cli(['restore', id, '--target', some, '--include', 'src/dir-\\xc3(']);
      assert.equal(inc.code, 0, inc.stderr);
      assert.deepEqual(
        [...byteTree(some).keys()],
        [
          'src [737263]',
          'src/dir-\\xc3( [7372632f6469722dc328]',
          'src/dir-\\xc3(/inner-\\xfc.txt [7372632f6469722dc3282f696e6e65722dfc2e747874]',
          'src/dir-\\xc3(/sub-\\x80 [7372632f6469722dc3282f7375622d80]',
          'src/dir-\\xc3(/sub-\\x80/deep.txt [7372632f6469722dc3282f7375622d802f646565702e747874]',
        ],
      );
      // A glob's ? matches one such byte.
      const q = path.join(base, 'q');
      const glob = await cli(['restore', id, '--target', q, '--include', 'src/bad-??']);
      assert.equal(glob.code, 0, glob.stderr);
      assert.ok(fs.readFileSync(bytes(q, '/src/bad-', [0xff, 0xfe])).equals(fs.readFileSync(bytes(tree.root, '/bad-', [0xff, 0xfe]))));

      // --exclude by \xHH, and by a glob: those entries are not in the next backup.
      const ex = await cli(['backup', tree.root, '--json', '--exclude', 'bad-\\xff\\xfe', '--exclude', 'dir-?[(]', '--full']);
      assert.equal(ex.code, 0, ex.stderr);
      const listed = json((await cli(['ls', json(ex.stdout).id, '--json'])).stdout).entries.map((e: { path: string }) => e.path);
      assert.ok(!listed.includes('src/bad-\\xff\\xfe') && !listed.some((p: string) => p.startsWith('src/dir-\\xc3(')), listed.join('\n'));
      assert.ok(listed.includes('src/caf\\xe9.txt') && listed.includes('src/hard-\\xfe'));
    });

    test('library: the walk hooks in this process; entries hold each byte that is not UTF-8 as U+DC80 + byte', async () => {
      const src2 = path.join(base, 'lib', 'src');
      const t2 = makeHostileTree(src2);
      const store = new LocalStore(path.join(base, 'lib-repo'));
      walkTestHooks.listed = t2.hooks.listed;
      walkTestHooks.statted = t2.hooks.statted;
      let r;
      try {
        r = await runBackup({ store, sources: [src2] });
      } finally {
        walkTestHooks.listed = undefined;
        walkTestHooks.statted = undefined;
      }
      assert.equal(r.skipped, 2, r.warnings.join('\n'));
      const m = await (await Repository.open(store)).loadManifest(r.id);
      const byPath = new Map<string, { target?: string; type: string }>();
      for await (const e of m.entries()) byPath.set(e.path, e);
      await m.dispose();
      assert.equal(m.header.version, SEGMENTED_MANIFEST_VERSION);
      assert.equal(byPath.get('src/bad-\udcff\udcfe')?.type, 'file');
      assert.equal(byPath.get('src/link-\udcff')?.target, 'bad-\udcff\udcfe');
      assert.equal(byPath.get('src/hard-\udcfe')?.type, 'hardlink');
      assert.equal(byPath.get('src/caf\udce9.txt')?.type, 'file');
      assert.equal(byPath.get('src/real-\uFFFD.txt')?.type, 'file', 'U+FFFD in valid UTF-8 is itself');
      assert.ok(!byPath.has('src/vanishing/gone-after-listing'));

      // Damage every frame of its archive: verify --deep --json names each file it loses, a
      // name that is not UTF-8 by its display form and, exactly, in whereBase64.
      const archiveFile = path.join(base, 'lib-repo', r.archiveKey);
      const stored = fs.readFileSync(archiveFile);
      for (let i = 64; i < stored.length; i += 4096) stored[i]! ^= 0xff;
      fs.writeFileSync(archiveFile, stored);
      const v = await runCli(['verify', r.id, '--deep', '--json', '--repo', path.join(base, 'lib-repo')], {
        env: isolatedEnv(home),
        cwd: base,
      });
      assert.equal(v.code, 1, v.stderr);
      assert.ok(!/\\udc[89a-f]/i.test(v.stdout), 'no lone surrogate escapes in the JSON');
      const problems: { where: string; whereBase64?: string; problem: string }[] = json(v.stdout).problems;
      const lost = problems.find((p) => p.whereBase64 && Buffer.from(p.whereBase64, 'base64').equals(bytes('src/bad-', [0xff, 0xfe])));
      assert.ok(lost, JSON.stringify(problems.slice(0, 5)));
      assert.equal(lost.where, 'src/bad-\\xff\\xfe');
      assert.ok(
        problems.some((p) => p.where === 'src/real-\uFFFD.txt' && !p.whereBase64),
        'a UTF-8 name is exact in where alone',
      );
    });
  });
}
