// End-to-end through the library API: back up a tree with every entry type, restore it, compare
// byte for byte and metadata; extract the archive with GNU tar + zstd; restore single files by
// ranged reads; on the local store and on a real S3 server (Ceph RGW).
import assert from 'node:assert/strict';
import { DEFAULT_ZSTD_LEVEL } from '../src/archive/codec.ts';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { Repository } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import type { Store } from '../src/store/store.ts';
import { runVerify } from '../src/verify/verify.ts';
import { testBackends } from './helpers/store.ts';
import { diffTrees, makeTree, tempDir } from './helpers/tree.ts';

const work = tempDir('roundtrip');
const src = path.join(work, 'src');
makeTree(src);

const backends = testBackends('roundtrip', 'team-a/host1');

after(() => {
  // locked-dir is 0555: make it removable.
  fs.chmodSync(path.join(src, 'modes/locked-dir'), 0o755);
  fs.rmSync(work, { recursive: true, force: true });
});

for (const backend of backends) {
  describe(`backup and restore on ${backend.name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    let id: string;
    before(async () => {
      ({ store, cleanup } = await backend.open());
      const r = await runBackup({ store, sources: [src], tags: ['test'] });
      id = r.id;
      assert.equal(r.warnings.length, 0, r.warnings.join('\n'));
      assert.ok(r.files >= 18, `files ${r.files}`);
      assert.equal(r.hardlinks, 1);
      assert.equal(r.symlinks, 4);
      assert.ok(r.bytesStored < r.bytesIn, 'compressible content should shrink');
    });
    after(async () => {
      await store.close();
      await cleanup();
    });

    test('the backup is listed with its stats', async () => {
      const repo = await Repository.open(store);
      const ids = await repo.snapshotIds();
      assert.deepEqual(ids, [id]);
      const h = await repo.header(id);
      assert.equal(h.kind, 'full');
      assert.deepEqual(h.tags, ['test']);
      assert.equal(h.sources[0]!.path, src);
      assert.equal(h.sources[0]!.name, 'src');
      assert.ok(h.stats.bytesIn > 20 * 1024 * 1024);
      // The level used is recorded even when defaulted (the default may change between versions).
      assert.deepEqual([h.options.codec, h.options.level], ['zstd', DEFAULT_ZSTD_LEVEL]);
    });

    test('a full restore equals the source, content and metadata', async () => {
      const target = tempDir('restore');
      const r = await runRestore({ store, snapshot: 'latest', target });
      assert.equal(r.id, id);
      assert.deepEqual(diffTrees(src, path.join(target, 'src')), []);
      // The hard link pair is one inode again.
      const a = fs.statSync(path.join(target, 'src/links/original.txt'));
      const b = fs.statSync(path.join(target, 'src/links/second-name.txt'));
      assert.equal(a.ino, b.ino);
      assert.equal(a.nlink, 2);
      fs.chmodSync(path.join(target, 'src/modes/locked-dir'), 0o755);
      fs.rmSync(target, { recursive: true, force: true });
    });

    test('GNU tar + zstd extract the archive to the same tree', async () => {
      const repo = await Repository.open(store);
      const m = await repo.loadManifest(id);
      const key = m.archives[0]!.key;
      await m.dispose();
      const archiveFile = path.join(tempDir('tar'), 'archive.tar.zst');
      const body = await store.get(key);
      await fs.promises.writeFile(archiveFile, body);
      const out = tempDir('tar-out');
      const r = spawnSync('bash', ['-c', `zstd -dc "${archiveFile}" | tar -x -p -C "${out}"`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      // tar keeps whole-second mtimes (the manifest keeps the fraction), so compare without them.
      assert.deepEqual(diffTrees(src, path.join(out, 'src'), { mtimes: false }), []);
      fs.chmodSync(path.join(out, 'src/modes/locked-dir'), 0o755);
      fs.rmSync(out, { recursive: true, force: true });
    });

    test('one file restores with a ranged read of a small part of the archive', async () => {
      const target = tempDir('one');
      const r = await runRestore({ store, snapshot: id, target, include: ['src/docs/readme.md'] });
      assert.equal(r.files, 1);
      assert.equal(fs.readFileSync(path.join(target, 'src/docs/readme.md'), 'utf8'), '# readme\n'.repeat(1000));
      assert.equal(fs.statSync(path.join(target, 'src/docs/readme.md')).mtimeMs, fs.statSync(path.join(src, 'docs/readme.md')).mtimeMs);
      const repo = await Repository.open(store);
      const h = await repo.header(id);
      assert.ok(r.bytesFetched < h.stats.archiveBytes / 2, `fetched ${r.bytesFetched} of ${h.stats.archiveBytes}`);
      assert.ok(!fs.existsSync(path.join(target, 'src/data')), 'nothing else restored');
      fs.rmSync(target, { recursive: true, force: true });
    });

    test('a glob include restores a subtree and the hard link whose first name is outside it', async () => {
      const target = tempDir('glob');
      const r = await runRestore({ store, snapshot: id, target, include: ['src/unicode', '**/second-name.txt'] });
      assert.equal(fs.readFileSync(path.join(target, 'src/unicode/日本語/ファイル.txt'), 'utf8'), 'にほんご\n');
      assert.equal(fs.readFileSync(path.join(target, 'src/links/second-name.txt'), 'utf8'), 'shared content\n');
      assert.ok(!fs.existsSync(path.join(target, 'src/links/original.txt')));
      assert.equal(r.files, 5);
      fs.rmSync(target, { recursive: true, force: true });
    });

    test('verify and verify --deep pass', async () => {
      const shallow = await runVerify({ store, snapshot: id });
      assert.deepEqual(shallow.problems, []);
      assert.equal(shallow.ok, true);
      const deep = await runVerify({ store, snapshot: 'latest', deep: true });
      assert.deepEqual(deep.problems, []);
      assert.ok(deep.filesChecked >= 18);
    });
  });
}
