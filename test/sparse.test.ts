// Sparse files: backed up as plain content (zeros included), restored with their holes as holes,
// on the local store and on a real S3 server (Ceph RGW). Content byte-exact (SHA-256), size
// exact, and the blocks allocated on disk about those of the source, far below the size.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { runRestore } from '../src/restore/restore.ts';
import { HOLE_BLOCK, SparseWriter } from '../src/restore/sparse.ts';
import type { Store } from '../src/store/store.ts';
import { testBackends } from './helpers/store.ts';
import { pseudoRandom, tempDir } from './helpers/tree.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

const work = tempDir('sparse');
const src = path.join(work, 'src');
fs.mkdirSync(src);

/** A file of `size` bytes with only `pieces` written (pseudo-random data): the rest is holes. */
function sparseFile(name: string, size: number, pieces: [offset: number, length: number][]): void {
  const fd = fs.openSync(path.join(src, name), 'w');
  for (const [offset, length] of pieces) fs.writeSync(fd, pseudoRandom(length, offset + 7), 0, length, offset);
  fs.ftruncateSync(fd, size);
  fs.closeSync(fd);
}

/** Data with zero runs in it, all written (the source has no holes): [offset, length) runs. */
function zeroRuns(size: number, runs: [offset: number, length: number][], seed: number): Buffer {
  const b = pseudoRandom(size, seed);
  for (const [offset, length] of runs) b.fill(0, offset, offset + length);
  return b;
}

// Large files (each over several of the writer thread's batches).
// 256 MiB with 2 MiB of data at the start, in the middle (at an offset that is not block-aligned)
// and at the very end.
sparseFile('vm.img', 256 * MiB, [
  [0, 2 * MiB],
  [128 * MiB + 12345, 2 * MiB],
  [254 * MiB, 2 * MiB],
]);
// Data at the start and in the middle, then 40 MiB of hole to the end.
sparseFile('tail-hole.img', 64 * MiB, [
  [0, 1 * MiB],
  [20 * MiB + 100, 3 * MiB],
]);
// Nothing but a hole.
sparseFile('all-hole.img', 64 * MiB, []);
// Ordinary data (no holes in the source) with zero runs of every shape: shorter than a block,
// exactly one aligned block, unaligned multi-block runs, and zeros to the end of the file.
const dense = zeroRuns(
  6 * MiB,
  [
    [1000, 3000],
    [64 * KiB, 4 * KiB],
    [128 * KiB - 1, 4 * KiB + 2],
    [1 * MiB + 1, 2 * MiB - 2],
    [4 * MiB, 1],
    [6 * MiB - 8 * KiB, 8 * KiB],
  ],
  11,
);
fs.writeFileSync(path.join(src, 'zero-runs.bin'), dense);
// Small files (each in one batch of the writer thread): sparse ones, one of written zeros, one with a
// zero run inside.
sparseFile('small-sparse.bin', 1 * MiB, [
  [0, 4 * KiB],
  [1 * MiB - 4 * KiB, 4 * KiB],
]);
sparseFile('small-hole.bin', 512 * KiB, []);
fs.writeFileSync(path.join(src, 'small-zeros.bin'), Buffer.alloc(200 * KiB));
fs.writeFileSync(path.join(src, 'small-runs.bin'), zeroRuns(300 * KiB, [[10, 100 * KiB]], 12));
fs.writeFileSync(path.join(src, 'text.txt'), 'hello\n'.repeat(1000));

const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const allocated = (f: string) => fs.statSync(f).blocks * 512;

/** Whether this file system keeps holes at all (if not, only content is compared). */
const holesKept = allocated(path.join(src, 'all-hole.img')) < MiB;

after(() => fs.rmSync(work, { recursive: true, force: true }));

test('the source files are sparse where they should be', { skip: !holesKept && 'the temporary file system does not keep holes' }, () => {
  assert.ok(allocated(path.join(src, 'vm.img')) < 8 * MiB, `${allocated(path.join(src, 'vm.img'))}`);
  assert.ok(allocated(path.join(src, 'zero-runs.bin')) >= 6 * MiB);
});

for (const backend of testBackends('sparse', 'host/sparse')) {
  describe(`sparse files on ${backend.name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;
    let target: string;
    before(async () => {
      ({ store, cleanup } = await backend.open());
      const b = await runBackup({ store, sources: [src] });
      assert.equal(b.warnings.length, 0, b.warnings.join('\n'));
      // Stored as plain content, zeros included: they compress to almost nothing.
      assert.ok(b.bytesIn >= 256 * MiB + 128 * MiB, `bytesIn ${b.bytesIn}`);
      assert.ok(b.bytesStored < 32 * MiB, `bytesStored ${b.bytesStored}`);
      target = tempDir('sparse-restore');
      fs.rmdirSync(target);
      const r = await runRestore({ store, snapshot: 'latest', target });
      assert.equal(r.files, 9);
    });
    after(async () => {
      fs.rmSync(target, { recursive: true, force: true });
      await store.close();
      await cleanup();
    });

    test('every file restores byte-exact, with its size', () => {
      for (const name of fs.readdirSync(src)) {
        const a = path.join(src, name);
        const b = path.join(target, 'src', name);
        assert.equal(fs.statSync(b).size, fs.statSync(a).size, name);
        assert.equal(sha(b), sha(a), name);
      }
    });

    test('holes come back as holes: allocated blocks about those of the source', { skip: !holesKept && 'no holes here' }, () => {
      const cases: [name: string, data: number][] = [
        ['vm.img', 6 * MiB],
        ['tail-hole.img', 4 * MiB],
        ['all-hole.img', 0],
        ['small-sparse.bin', 8 * KiB],
        ['small-hole.bin', 0],
      ];
      for (const [name, data] of cases) {
        const size = fs.statSync(path.join(src, name)).size;
        const before = allocated(path.join(src, name));
        const now = allocated(path.join(target, 'src', name));
        // The data, plus at most a block on each side of each piece and some extent blocks.
        assert.ok(now >= data, `${name}: ${now} bytes allocated for ${data} of data`);
        assert.ok(now <= before + 64 * KiB, `${name}: ${now} bytes allocated, the source has ${before}`);
        assert.ok(now < size / 8, `${name}: ${now} bytes allocated for ${size} bytes`);
      }
    });

    test('zero blocks inside ordinary data become holes too, and the content is unchanged', { skip: !holesKept && 'no holes here' }, () => {
      // zero-runs.bin: the aligned zero blocks in [1 MiB + 1, 3 MiB - 1) and the last 8 KiB.
      const now = allocated(path.join(target, 'src/zero-runs.bin'));
      assert.ok(now <= 6 * MiB - 2 * MiB + 64 * KiB, `${now}`);
      assert.ok(now >= 4 * MiB - 16 * KiB, `${now}`);
      assert.equal(allocated(path.join(target, 'src/small-zeros.bin')), 0);
      assert.ok(allocated(path.join(target, 'src/small-runs.bin')) <= 300 * KiB - 96 * KiB + 8 * KiB);
      assert.ok(allocated(path.join(target, 'src/text.txt')) >= 6000);
    });
  });
}

describe('SparseWriter', () => {
  const dir = tempDir('sparse-writer');
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Write `content` through a SparseWriter in chunks of the given sizes (cycled). */
  function writeChunked(file: string, content: Buffer, sizes: number[]): void {
    const fd = fs.openSync(file, 'wx');
    const w = new SparseWriter(fd);
    let off = 0;
    for (let i = 0; off < content.length; i++) {
      const n = Math.min(sizes[i % sizes.length]!, content.length - off);
      // Each chunk from inside a larger buffer, as frames deliver them.
      const frame = Buffer.alloc(n + 10);
      content.copy(frame, 5, off, off + n);
      w.write(frame, 5, n);
      off += n;
    }
    w.finish();
    assert.equal(w.size, content.length);
    fs.closeSync(fd);
  }

  const contents: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['one zero', Buffer.alloc(1)],
    ['one block of zeros', Buffer.alloc(HOLE_BLOCK)],
    ['zeros then one byte', Buffer.concat([Buffer.alloc(3 * HOLE_BLOCK + 5), Buffer.from([1])])],
    ['one byte then zeros', Buffer.concat([Buffer.from([1]), Buffer.alloc(3 * HOLE_BLOCK + 5)])],
    ['data', pseudoRandom(100_000, 3)],
    [
      'data with zero runs',
      zeroRuns(
        300_000,
        [
          [0, 5000],
          [8191, 8193],
          [40_000, 100_000],
          [299_000, 1000],
        ],
        4,
      ),
    ],
    // Blocks whose first byte is zero but not the rest.
    ['zero-led blocks', Buffer.from(Array.from({ length: 10 * HOLE_BLOCK }, (_, i) => (i % HOLE_BLOCK === HOLE_BLOCK - 1 ? 9 : 0)))],
  ];
  const chunkings = [[1 << 20], [HOLE_BLOCK], [1], [4095, 4097, 1, 10_000], [333, 65_536]];
  for (const [name, content] of contents) {
    test(`${name}: byte-exact whatever the chunking`, () => {
      for (const [i, sizes] of chunkings.entries()) {
        const f = path.join(dir, `${name}-${i}`);
        writeChunked(f, content, sizes);
        assert.ok(fs.readFileSync(f).equals(content), `${name}, chunks ${sizes.join(',')}`);
      }
    });
  }
});
