// What a backup keeps in memory while entries wait for their file's digest (ManifestQueue), on
// the real file system and a local repository: past a bound the frame being filled is cut
// short so that the digests come back and the waiting entries go on; a layer's unchanged
// entries do not wait at all. The backups restore byte for byte either way.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { Repository } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { diffTrees, tempDir } from './helpers/tree.ts';

const work = tempDir('backup-memory');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const DIRS = 12;
const LINKS = 300;
/** ~1 KiB of content per directory: a whole backup's content fits in one 4 MiB frame. */
const FILE_BYTES = 1000;
/** Below what one directory's links take as waiting entries (~300 × 270 bytes), far below the default. */
const SMALL_BOUND = 32 << 10;

/**
 * Directories each holding one small file and, after it in tree order, 300 symlinks: every
 * symlink's entry waits behind the file's digest, which comes once its frame is handed over.
 */
function makeTree(root: string): void {
  for (let d = 0; d < DIRS; d++) {
    const dir = path.join(root, `d${String(d).padStart(2, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'a.txt'), `directory ${d}\n`.padEnd(FILE_BYTES, '.'));
    for (let l = 0; l < LINKS; l++) fs.symlinkSync(`a.txt`, path.join(dir, `l${String(l).padStart(3, '0')}`));
  }
}

/** The number of frames in the backup's own archive, and whether it restores as the tree is. */
async function framesAndRestore(store: LocalStore, id: string, archiveKey: string, src: string): Promise<number> {
  const repo = await Repository.open(store);
  const m = await repo.loadManifest(id);
  let frames: number;
  try {
    const own = m.archives.find((a) => a.key === archiveKey);
    assert.ok(own, `the backup's archive ${archiveKey} is on its archives line`);
    frames = own.frames.length;
  } finally {
    await m.dispose();
  }
  const target = tempDir('backup-memory-restore');
  try {
    await runRestore({ store, snapshot: id, target });
    assert.deepEqual(diffTrees(src, path.join(target, path.basename(src))), []);
  } finally {
    fs.rmSync(target, { recursive: true, force: true });
  }
  return frames;
}

describe('entries waiting for a digest are bounded by bytes', () => {
  test('past the bound the frame is cut short, once per run of waiting entries; the backup restores exactly', async () => {
    const src = path.join(work, 'cut');
    makeTree(src);
    const bounded = new LocalStore(path.join(work, 'repo-bounded'));
    const plain = new LocalStore(path.join(work, 'repo-plain'));
    try {
      const b = await runBackup({ store: bounded, sources: [src], maxWaitingBytes: SMALL_BOUND });
      const p = await runBackup({ store: plain, sources: [src] });
      assert.deepEqual(b.warnings, []);
      assert.equal(b.files, DIRS);
      // With the default bound every entry waits for the one frame that holds all the content.
      assert.equal(await framesAndRestore(plain, p.id, p.archiveKey, src), 1);
      // With the small one, each directory's links pass it once: a cut per directory (the
      // entries after a cut no longer wait, so there is no second cut until the next file).
      const frames = await framesAndRestore(bounded, b.id, b.archiveKey, src);
      assert.ok(frames >= DIRS && frames <= DIRS + 1, `a frame per directory: ${frames}`);
    } finally {
      await bounded.close();
      await plain.close();
    }
  });

  test("a layer's unchanged entries do not wait behind a changed file: no cut", async () => {
    const src = path.join(work, 'layer');
    makeTree(src);
    const store = new LocalStore(path.join(work, 'repo-layer'));
    try {
      await runBackup({ store, sources: [src] });
      // A change in every directory: each changed file comes before its 300 unchanged links.
      for (let d = 0; d < DIRS; d++) fs.appendFileSync(path.join(src, `d${String(d).padStart(2, '0')}`, 'a.txt'), 'changed\n');
      const r = await runBackup({ store, sources: [src], maxWaitingBytes: SMALL_BOUND });
      assert.equal(r.kind, 'incremental');
      assert.equal(r.changedFiles, DIRS);
      assert.equal(await framesAndRestore(store, r.id, r.archiveKey, src), 1);
    } finally {
      await store.close();
    }
  });
});
