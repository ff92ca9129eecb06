// Content stored once: a file whose content the repository already holds (renamed, moved,
// copied, or stored by a backup of another host) points at it instead of being stored again;
// prune keeps what any kept backup points at; a full backup still extracts whole with tar.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { DEDUP_MIN_SIZE } from '../src/backup/content-index.ts';
import { forget, prune } from '../src/prune/prune.ts';
import { Repository } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import type { Readable } from 'node:stream';
import { DelegatingStore } from '../src/store/delegating.ts';
import { LocalStore } from '../src/store/local.ts';
import type { ByteRange, Store } from '../src/store/store.ts';
import { runVerify } from '../src/verify/verify.ts';
import { testBackends } from './helpers/store.ts';
import { diffTrees, pseudoRandom, tempDir } from './helpers/tree.ts';

const work = tempDir('dedup');
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** `n` files of random content, each of its own size from DEDUP_MIN_SIZE up, under `dir`; their total size. */
function bigFiles(dir: string, n: number, seed: number): number {
  fs.mkdirSync(dir, { recursive: true });
  let total = 0;
  for (let i = 0; i < n; i++) {
    const size = DEDUP_MIN_SIZE + i * 40_000 + seed;
    fs.writeFileSync(path.join(dir, `f${i}.bin`), pseudoRandom(size, seed * 100 + i));
    total += size;
  }
  return total;
}

async function restored(store: Store, id: string, keys?: { passphrase: string }): Promise<string> {
  const target = tempDir('dedup-restore');
  await runRestore({ store, snapshot: id, target, ...(keys ? { keys } : {}) });
  return target;
}

/** The archive keys an entry of `id` points into, by path. */
async function archiveOf(
  store: Store,
  id: string,
  keys?: { passphrase: string },
): Promise<Map<string, { key: string; header: number | undefined }>> {
  const repo = await Repository.open(store, keys);
  const m = await repo.loadManifest(id);
  const out = new Map<string, { key: string; header: number | undefined }>();
  try {
    for await (const e of m.entries())
      if (e.archive !== undefined && e.type === 'file') out.set(e.path, { key: m.archives[e.archive]!.key, header: e.header });
  } finally {
    await m.dispose();
  }
  return out;
}

for (const backend of testBackends('dedup', 'd')) {
  describe(`content stored once on ${backend.name}`, () => {
    test('a renamed directory and a copied file are pointed at, not stored again; the full still extracts with tar', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const src = path.join(work, `rename-${backend.name.split(' ')[0]}`);
        const big = bigFiles(path.join(src, 'photos'), 6, 1);
        fs.writeFileSync(path.join(src, 'small.txt'), 'small file, stored again when renamed\n');
        const first = await runBackup({ store, sources: [src] });
        assert.equal(first.kind, 'full');
        assert.equal(first.foundFiles, 0);

        fs.renameSync(path.join(src, 'photos'), path.join(src, 'pictures'));
        fs.renameSync(path.join(src, 'small.txt'), path.join(src, 'small-renamed.txt'));
        fs.copyFileSync(path.join(src, 'pictures/f2.bin'), path.join(src, 'copy-of-f2.bin'));
        const second = await runBackup({ store, sources: [src] });
        assert.equal(second.kind, 'incremental');
        assert.equal(second.newFiles, 8, '6 renamed, the small one and the copy');
        assert.equal(second.foundFiles, 7, 'every large one found; the small one is below the threshold');
        const f2 = fs.statSync(path.join(src, 'copy-of-f2.bin')).size;
        assert.equal(second.foundBytes, big + f2);
        assert.ok(second.bytesIn < 100, `only the small file's content is stored (${second.bytesIn} bytes)`);
        assert.ok(
          second.archiveBytes < (big + f2) / 100,
          `${second.archiveBytes} bytes of archive for ${big + f2} bytes renamed or copied`,
        );

        // The entries point into the first backup's archive, with no header (the tar header there is the old name's).
        const where = await archiveOf(store, second.id);
        const name = path.basename(src);
        for (const p of [`${name}/pictures/f0.bin`, `${name}/pictures/f5.bin`, `${name}/copy-of-f2.bin`]) {
          assert.equal(where.get(p)?.key, first.archiveKey, p);
          assert.equal(where.get(p)?.header, undefined, p);
        }
        assert.equal(where.get(`${name}/small-renamed.txt`)?.key, second.archiveKey);

        assert.deepEqual(diffTrees(src, path.join(await restored(store, second.id), name)), []);
        const v = await runVerify({ store, snapshot: second.id, deep: true });
        assert.equal(v.ok, true, JSON.stringify(v));

        if (backend.name === 'local') {
          // The full backup's archive alone extracts to its whole tree; the incremental's holds no member for found content.
          const dir = (store as LocalStore).root;
          const full = tempDir('dedup-tar-full');
          execFileSync('bash', ['-c', `zstd -dc "${path.join(dir, first.archiveKey)}" | tar -x -C "${full}"`]);
          assert.equal(fs.readdirSync(path.join(full, name, 'photos')).length, 6);
          const listed = execFileSync('bash', ['-c', `zstd -dc "${path.join(dir, second.archiveKey)}" | tar -t`], { encoding: 'utf8' });
          assert.match(listed, /small-renamed\.txt/);
          assert.doesNotMatch(listed, /pictures\/f0\.bin|copy-of-f2\.bin/);
        }

        // --full stores everything again, whatever the repository holds.
        const full = await runBackup({ store, sources: [src], full: true });
        assert.equal(full.kind, 'full');
        assert.equal(full.foundFiles, 0);
        assert.ok(full.bytesIn >= big + f2);
      } finally {
        await cleanup();
      }
    });

    test('another host’s first backup points at content one host stored; forgetting that host keeps it restorable', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const a = path.join(work, `host-a-${backend.name.split(' ')[0]}`);
        const b = path.join(work, `host-b-${backend.name.split(' ')[0]}`);
        const shared = bigFiles(path.join(a, 'dataset'), 4, 7);
        fs.writeFileSync(path.join(a, 'a-only.bin'), pseudoRandom(DEDUP_MIN_SIZE * 2, 99));
        fs.mkdirSync(b);
        execFileSync('cp', ['-a', path.join(a, 'dataset'), path.join(b, 'data-copy')]);
        fs.writeFileSync(path.join(b, 'b-only.bin'), pseudoRandom(DEDUP_MIN_SIZE * 3, 98));

        const fromA = await runBackup({ store, sources: [a], host: 'host-a' });
        const fromB = await runBackup({ store, sources: [b], host: 'host-b' });
        assert.equal(fromB.parent, undefined, 'the first backup of its group');
        assert.equal(fromB.kind, 'incremental', 'it points into another backup, so it is not a full one');
        assert.equal(fromB.foundFiles, 4);
        assert.equal(fromB.foundBytes, shared);
        assert.equal(fromB.bytesIn, DEDUP_MIN_SIZE * 3, 'only b-only.bin read into its archive');
        const whereB = await archiveOf(store, fromB.id);
        assert.equal(whereB.get(`${path.basename(b)}/data-copy/f0.bin`)?.key, fromA.archiveKey);

        const again = await runBackup({ store, sources: [b], host: 'host-b' });
        assert.equal(again.parent, fromB.id);
        assert.equal(again.bytesIn, 0);

        // Host A goes away: its backup, which first stored the shared files, is forgotten and pruned.
        const repo = await Repository.open(store);
        const f = await forget(repo, { policy: { last: 0 }, allowEmpty: true, filter: { hosts: ['host-a'] } });
        assert.deepEqual(f.removed, [fromA.id]);
        const p = await prune(repo, { graceMs: 0, forgotten: f.removed });
        assert.ok(
          !p.archives.deleted.some((o) => o.key === fromA.archiveKey),
          'the archive that holds the shared files stays: host B’s backups list it',
        );
        assert.ok(await store.head(fromA.archiveKey));
        for (const id of [fromB.id, again.id]) {
          const target = await restored(store, id);
          assert.deepEqual(diffTrees(b, path.join(target, path.basename(b))), [], id);
        }
      } finally {
        await cleanup();
      }
    });
  });
}

describe('content stored once in an encrypted repository', () => {
  test('found across hosts under the same key; restores byte-exact', async () => {
    const dir = tempDir('dedup-enc-repo');
    const store = new LocalStore(dir);
    const keys = { passphrase: 'dedup test' };
    await Repository.init(store, { encryption: { ...keys, kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } } });
    const a = path.join(work, 'enc-a');
    const b = path.join(work, 'enc-b');
    const shared = bigFiles(path.join(a, 'set'), 3, 3);
    fs.mkdirSync(b);
    execFileSync('cp', ['-a', path.join(a, 'set'), path.join(b, 'set')]);
    const fromA = await runBackup({ store, keys, sources: [a], host: 'a' });
    const fromB = await runBackup({ store, keys, sources: [b], host: 'b' });
    assert.equal(fromB.foundBytes, shared);
    assert.equal(fromB.bytesIn, 0);
    assert.equal((await archiveOf(store, fromB.id, keys)).get(`${path.basename(b)}/set/f1.bin`)?.key, fromA.archiveKey);
    const target = await restored(store, fromB.id, keys);
    assert.deepEqual(diffTrees(b, path.join(target, path.basename(b))), []);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

/** Counts whole-manifest downloads (a header is a ranged read). */
class ManifestGets extends DelegatingStore {
  readonly whole: string[] = [];
  override get(key: string, range?: ByteRange): Promise<Readable> {
    if (key.startsWith('snapshots/') && !range) this.whole.push(key);
    return super.get(key, range);
  }
}

describe('what a backup reads to find content', () => {
  test('other backups are downloaded only once a candidate comes; then found across groups', async () => {
    const store = new ManifestGets(new LocalStore(tempDir('dedup-lazy-repo')));
    const a = path.join(work, 'lazy-a');
    const b = path.join(work, 'lazy-b');
    bigFiles(path.join(a, 'set'), 2, 5);
    bigFiles(path.join(b, 'own'), 2, 6);
    const fromA = await runBackup({ store, sources: [a], host: 'a' });
    const first = await runBackup({ store, sources: [b], host: 'b' });
    assert.equal(first.foundFiles, 0, 'nothing of b is in a');
    assert.equal(first.kind, 'full');

    // Only a small file is new: the parent is read, as always, and no other backup.
    fs.writeFileSync(path.join(b, 'note.txt'), 'small');
    store.whole.length = 0;
    const small = await runBackup({ store, sources: [b], host: 'b' });
    assert.equal(small.parent, first.id);
    assert.deepEqual(store.whole, [`snapshots/${first.id}.ndjson.zst`]);

    // A large new file: a's backup is downloaded to look in it, and the file is found there.
    fs.copyFileSync(path.join(a, 'set/f1.bin'), path.join(b, 'from-a.bin'));
    store.whole.length = 0;
    const found = await runBackup({ store, sources: [b], host: 'b' });
    assert.deepEqual(store.whole.sort(), [`snapshots/${fromA.id}.ndjson.zst`, `snapshots/${small.id}.ndjson.zst`].sort());
    assert.equal(found.foundFiles, 1);
    assert.equal(found.bytesIn, 0);
    assert.equal((await archiveOf(store, found.id)).get(`${path.basename(b)}/from-a.bin`)?.key, fromA.archiveKey);
    const target = await restored(store, found.id);
    assert.deepEqual(diffTrees(b, path.join(target, path.basename(b))), []);
  });
});
