// What a restore keeps in memory, on the real file system and a local repository: the plan holds
// a span per run of frames and the paths hard links name, nothing per file; the archive cursor
// frees each decompressed frame once it has been read through (and reopens it when read again);
// and content larger than the writer's batches, small files around it and hard links all come
// out as they should through the writer thread.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { ArchiveCursor, FrameTable, type ReadStats } from '../src/archive/reader.ts';
import type { Entry, LocalManifest } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { planRestore } from '../src/restore/plan.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { diffTrees, pseudoRandom, tempDir } from './helpers/tree.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Small frames, so that a few MiB of content make many of them. */
const FRAME = 256 * KiB;

const work = tempDir('restore-memory');
const src = path.join(work, 'src');
const store = new LocalStore(path.join(work, 'repo'));

// 600 small files in 6 directories, three files larger than the writer's 2 MiB batches (one of
// them straddling batches at an odd size), an empty file, and hard links (first names inside
// and outside the include below).
fs.mkdirSync(src);
for (let d = 0; d < 6; d++) {
  fs.mkdirSync(path.join(src, `dir${d}`));
  for (let f = 0; f < 100; f++)
    fs.writeFileSync(path.join(src, `dir${d}`, `f${f}.txt`), pseudoRandom(100 + ((d * 100 + f) % 7) * 900, d * 1000 + f));
}
fs.writeFileSync(path.join(src, 'dir2', 'big-a.bin'), pseudoRandom(5 * MiB + 12345, 1));
fs.writeFileSync(path.join(src, 'dir2', 'big-b.bin'), Buffer.concat([pseudoRandom(3 * MiB, 2), Buffer.alloc(MiB), pseudoRandom(77, 3)]));
fs.writeFileSync(path.join(src, 'dir4', 'big-c.bin'), pseudoRandom(2 * MiB + 1, 4));
fs.writeFileSync(path.join(src, 'dir5', 'empty'), '');
fs.linkSync(path.join(src, 'dir1', 'f1.txt'), path.join(src, 'dir3', 'link-to-dir1'));
fs.linkSync(path.join(src, 'dir2', 'big-a.bin'), path.join(src, 'dir3', 'link-to-big'));
fs.linkSync(path.join(src, 'dir3', 'f3.txt'), path.join(src, 'dir5', 'link-to-dir3'));

let id: string;
let entries: Entry[];

before(async () => {
  const r = await runBackup({ store, sources: [src], frameSize: FRAME, full: true });
  assert.deepEqual(r.warnings, []);
  id = r.id;
  entries = await withManifest(async (m) => {
    const out: Entry[] = [];
    for await (const e of m.entries()) out.push(e);
    return out;
  });
});

after(async () => {
  await store.close();
  fs.rmSync(work, { recursive: true, force: true });
});

async function withManifest<T>(f: (m: LocalManifest, repo: Repository) => Promise<T>): Promise<T> {
  const repo = await Repository.open(store);
  const m = await repo.loadManifest(id);
  try {
    return await f(m, repo);
  } finally {
    await m.dispose();
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('the plan keeps nothing per file', () => {
  test('a full restore: one span covers the archive, and only the paths hard links name are kept', async () => {
    await withManifest(async (m) => {
      const table = new FrameTable(m.archives[0]!);
      assert.ok(table.count > 40, `many frames (${table.count})`);
      const plan = await planRestore(m, undefined);
      const files = entries.filter((e) => e.type === 'file' || e.type === 'hardlink');
      assert.equal(plan.totalFiles, files.length);
      assert.equal(
        plan.totalBytes,
        files.reduce((n, e) => n + e.size, 0),
      );
      // Every file's frames, merged as the entries came: one run, not one span per file.
      const spans = files.filter((e) => e.size > 0 && e.type === 'file').map((e) => table.span(e.offset!, e.size));
      assert.deepEqual(plan.spans, [[[Math.min(...spans.map((s) => s[0])), Math.max(...spans.map((s) => s[1]))]]]);
      assert.deepEqual(
        [...plan.linkTargets].sort(),
        entries
          .filter((e) => e.type === 'hardlink')
          .map((e) => e.target!)
          .sort(),
      );
      assert.equal(plan.ancestors.size, 0, 'no ancestors without --include');
    });
  });

  test('with --include: spans of the selected files only, and a link whose first name is not selected needs its content', async () => {
    await withManifest(async (m) => {
      const table = new FrameTable(m.archives[0]!);
      const plan = await planRestore(m, ['src/dir3/**']);
      const link = entries.find((e) => e.path === 'src/dir3/link-to-big')!;
      const own = entries.filter((e) => e.path.startsWith('src/dir3/') && e.type === 'file' && e.size > 0);
      const needed = [...own, link, entries.find((e) => e.path === 'src/dir3/link-to-dir1')!].map((e) => table.span(e.offset!, e.size));
      const covered = (frame: number) => plan.spans[0]!.some(([a, b]) => frame >= a && frame <= b);
      for (const [a, b] of needed) for (let f = a; f <= b; f++) assert.ok(covered(f), `frame ${f} is fetched`);
      // big-a's 5 MiB are 20 frames: fetched for the link, nothing much else is.
      const fetched = plan.spans[0]!.reduce((n, [a, b]) => n + b - a + 1, 0);
      assert.ok(fetched < table.count / 2, `${fetched} of ${table.count} frames`);
      assert.deepEqual([...plan.ancestors].sort(), ['src', 'src/dir3']);
    });
  });
});

describe('the archive cursor frees the frames it has read through', () => {
  test('with sinkCopies each frame is detached once read to its end; reading it again reopens it', async () => {
    await withManifest(async (m, repo) => {
      const ref = m.archives[0]!;
      const table = new FrameTable(ref);
      const big = entries.find((e) => e.path === 'src/dir2/big-a.bin')!;
      const stats: ReadStats = { bytesFetched: 0, requests: 0 };
      const cursor = new ArchiveCursor(store, ref, [[0, table.count - 1]], stats, undefined, repo.frameOpener(ref), { sinkCopies: true });
      try {
        const seen: Buffer[] = [];
        const copies: Buffer[] = [];
        await cursor.read(big.offset!, big.size, (chunk) => {
          seen.push(chunk);
          copies.push(Buffer.from(chunk));
        });
        assert.equal(sha256(Buffer.concat(copies)), big.sha256);
        // Every frame but the last one the file ends in was read to its end and freed.
        const whole = seen.slice(0, -1);
        assert.ok(whole.length >= 19, `${whole.length} frames read through`);
        for (const c of whole) assert.equal(c.buffer.byteLength, 0, 'a frame read through is freed (detached)');
        assert.equal(stats.requests, 1);
        // Backwards, into a frame already freed: read again from the store, byte-exact.
        const again: Buffer[] = [];
        await cursor.read(big.offset! + MiB, 1000, (chunk) => again.push(Buffer.from(chunk)));
        assert.ok(Buffer.concat(again).equals(fs.readFileSync(path.join(src, 'dir2', 'big-a.bin')).subarray(MiB, MiB + 1000)));
        assert.equal(stats.requests, 2);
      } finally {
        await cursor.close();
      }
    });
  });

  test('without sinkCopies the chunks a sink is given stay valid (verify, cat keep them)', async () => {
    await withManifest(async (m, repo) => {
      const ref = m.archives[0]!;
      const table = new FrameTable(ref);
      const big = entries.find((e) => e.path === 'src/dir2/big-a.bin')!;
      const cursor = new ArchiveCursor(
        store,
        ref,
        [[0, table.count - 1]],
        { bytesFetched: 0, requests: 0 },
        undefined,
        repo.frameOpener(ref),
      );
      try {
        const kept: Buffer[] = [];
        await cursor.read(big.offset!, big.size, (chunk) => kept.push(chunk));
        await cursor.read(entries.find((e) => e.path === 'src/dir4/big-c.bin')!.offset!, 10, () => {});
        assert.equal(sha256(Buffer.concat(kept)), big.sha256);
      } finally {
        await cursor.close();
      }
    });
  });
});

describe('restores through the writer thread', () => {
  test('files larger than a batch, small ones around them, an empty one and hard links: the tree comes back exactly', async () => {
    const target = path.join(work, 'full');
    const r = await runRestore({ store, snapshot: id, target });
    assert.deepEqual(r.damaged, []);
    assert.equal(r.files, entries.filter((e) => e.type === 'file').length);
    assert.equal(r.hardlinks, 3);
    assert.deepEqual(diffTrees(src, path.join(target, 'src')), []);
    const a = fs.statSync(path.join(target, 'src', 'dir2', 'big-a.bin'));
    assert.equal(fs.statSync(path.join(target, 'src', 'dir3', 'link-to-big')).ino, a.ino, 'a hard link, not a copy');
  });

  test('--include with a hard link whose first name is outside: the link gets the content', async () => {
    const target = path.join(work, 'dir3');
    const r = await runRestore({ store, snapshot: id, target, include: ['src/dir3/**'] });
    assert.equal(r.hardlinks, 0);
    assert.ok(
      fs.readFileSync(path.join(target, 'src', 'dir3', 'link-to-big')).equals(fs.readFileSync(path.join(src, 'dir2', 'big-a.bin'))),
    );
    assert.ok(fs.readFileSync(path.join(target, 'src', 'dir3', 'link-to-dir1')).equals(fs.readFileSync(path.join(src, 'dir1', 'f1.txt'))));
    assert.deepEqual(fs.readdirSync(path.join(target, 'src')), ['dir3']);
  });
});
