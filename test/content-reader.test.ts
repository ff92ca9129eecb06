// The pieces under the backup's archiver: the content reader (a worker that reads files straight
// into shared frame buffers and hashes them) and the frame compressor (long-lived zstd streams,
// one independent zstd frame per flush).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { FrameCompressor, decompressFrame } from '../src/archive/codec.ts';
import { FrameWriter } from '../src/archive/frames.ts';
import { readAll } from '../src/store/store.ts';
import { PassThrough } from 'node:stream';
import { ContentReader, prestartContentReader } from '../src/archive/content-reader.ts';
import { ObjectKey } from '../src/crypto/aead.ts';
import { pseudoRandom, tempDir } from './helpers/tree.ts';

const work = tempDir('content-reader');
after(() => fs.rmSync(work, { recursive: true, force: true }));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const isClosed = (fd: number) => {
  try {
    fs.fstatSync(fd);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EBADF';
  }
};

test('content reader: a file split over two frames lands in place, hashed whole, closed after', async () => {
  const file = path.join(work, 'a.bin');
  const data = pseudoRandom(3000, 1);
  fs.writeFileSync(file, data);
  const st = fs.statSync(file);
  const reader = new ContentReader();
  try {
    const f1 = Buffer.from(new SharedArrayBuffer(2048));
    const f2 = Buffer.from(new SharedArrayBuffer(2048));
    const fd = fs.openSync(file, 'r');
    reader.own(7, fd);
    reader.read(7, fd, 48, 2048, 0);
    assert.deepEqual(await reader.submit(f1), []);
    reader.read(7, fd, 0, 1000, 2000);
    reader.end(7, fd, st.size, st.mtimeMs, st.ino);
    const [r] = await reader.submit(f2);
    assert.deepEqual(r, { seq: 7, sha256: sha(data), changed: false });
    assert.deepEqual(f1.subarray(48), data.subarray(0, 2000));
    assert.deepEqual(f2.subarray(0, 1000), data.subarray(2000));
    assert.ok(isClosed(fd), 'the file is closed once its result is in');
  } finally {
    await reader.close();
  }
});

test('content reader: a file that shrank is padded with zeros and flagged changed; a read error is named', async () => {
  const file = path.join(work, 'shrinks.txt');
  fs.writeFileSync(file, 'x'.repeat(1000));
  const st = fs.statSync(file);
  const reader = new ContentReader();
  try {
    const frame = Buffer.from(new SharedArrayBuffer(4096));
    frame.fill(0xff);
    const fd = fs.openSync(file, 'r');
    reader.own(1, fd);
    fs.truncateSync(file, 600);
    reader.read(1, fd, 0, 1000, 0);
    reader.end(1, fd, st.size, st.mtimeMs, st.ino);
    // A directory opens, but reading it fails (EISDIR): the error is reported, zeros stored.
    const dirFd = fs.openSync(work, 'r');
    reader.own(2, dirFd);
    reader.read(2, dirFd, 1000, 1500, 0);
    reader.end(2, dirFd, 500, 0, 0);
    const results = await reader.submit(frame);
    const expected = Buffer.concat([Buffer.alloc(600, 'x'), Buffer.alloc(400)]);
    assert.deepEqual(frame.subarray(0, 1000), expected);
    assert.deepEqual(frame.subarray(1000, 1500), Buffer.alloc(500));
    assert.deepEqual(results[0], { seq: 1, sha256: sha(expected), changed: true });
    assert.equal(results[1]!.seq, 2);
    assert.match(results[1]!.error ?? '', /EISDIR/);
    assert.equal(results[1]!.sha256, sha(Buffer.alloc(500)));
    assert.equal(frame[1500], 0xff, 'nothing written outside the booked range');
  } finally {
    await reader.close();
  }
});

test('content reader: close() closes the files of an abandoned archive, handed over or not', async () => {
  const file = path.join(work, 'b.txt');
  fs.writeFileSync(file, 'hello');
  const reader = new ContentReader();
  const handed = fs.openSync(file, 'r');
  const kept = fs.openSync(file, 'r');
  reader.own(1, handed);
  reader.read(1, handed, 0, 5, 0);
  await reader.submit(Buffer.from(new SharedArrayBuffer(16)));
  reader.own(2, kept);
  reader.read(2, kept, 0, 5, 0); // booked, never submitted
  await reader.close();
  assert.ok(isClosed(handed) && isClosed(kept));
});

test('frame compressor: every zstd frame stands alone, in any number, across output buffers', async () => {
  // 3 frames of 4 MiB incompressible data overflow a stream's 1 MiB output buffers, so those
  // frames come in several pieces, and the small compressible ones are views of one buffer.
  const frames = [0, 1, 2, 3, 4, 5].map((i) =>
    i % 2 ? Buffer.from(pseudoRandom(4 << 20, i)) : Buffer.alloc((1 << 20) + i, `frame ${i} `),
  );
  const c = new FrameCompressor('zstd', {}, 2);
  try {
    const pieces = await Promise.all(frames.map((f) => c.compress(f)));
    assert.ok(
      pieces.some((p) => p.length > 1),
      'some frame straddles output buffers',
    );
    const out = pieces.map((p) => Buffer.concat(p));
    for (let i = 0; i < frames.length; i++) {
      assert.deepEqual(await decompressFrame('zstd', out[i]!, frames[i]!.length), frames[i], `frame ${i}`);
    }
    // And the concatenation is one valid .zst stream for the standard tool.
    const file = path.join(work, 'frames.zst');
    fs.writeFileSync(file, Buffer.concat(out));
    const z = spawnSync('zstd', ['-dc', file], { maxBuffer: 64 << 20 });
    assert.equal(z.status, 0, z.stderr?.toString());
    assert.equal(sha(z.stdout), sha(Buffer.concat(frames)));
  } finally {
    c.close();
  }
});

for (const codec of ['zstd', 'gzip', 'none'] as const) {
  test(`stored hash on the reader's worker (${codec}): the archive's SHA-256 is that of the bytes written (a frame buffer reused too early would change it)`, async () => {
    const reader = new ContentReader();
    const out = new PassThrough();
    const collected = readAll(out);
    const w = new FrameWriter({
      codec,
      frameSize: 64 << 10,
      maxInFlight: 2,
      output: out,
      storedHash: reader,
      onFrame: (f) => reader.submit(f),
    });
    try {
      // Incompressible and compressible frames, so stored frames come out both larger and smaller than their input.
      for (let i = 0; i < 12; i++) await w.write(i % 3 ? Buffer.alloc(50_000, i) : Buffer.from(pseudoRandom(70_000, i)));
      const res = await w.finish();
      const stored = await collected;
      assert.equal(res.sha256, sha(stored));
      assert.equal(res.compressedSize, stored.length);
    } finally {
      w.close();
      await reader.close();
    }
  });
}

const archiveKey = ObjectKey.derive(Buffer.alloc(32, 3), 'archive', 'backup-id', Buffer.alloc(16, 4));

for (const codec of ['zstd', 'gzip', 'none'] as const) {
  test(`sealing on the reader's worker (${codec}): frames open in place with the archive key, and the archive's SHA-256 is that of the sealed bytes`, async () => {
    const reader = new ContentReader({ sealKey: archiveKey });
    const out = new PassThrough();
    const collected = readAll(out);
    // Three frames in flight: zstd's finish out of order at times, and must still be hashed in order.
    const w = new FrameWriter({
      codec,
      frameSize: 64 << 10,
      maxInFlight: 3,
      output: out,
      storedHash: reader,
      onFrame: (f) => reader.submit(f),
    });
    const input: Buffer[] = [];
    try {
      for (let i = 0; i < 15; i++) {
        const b = i % 3 ? Buffer.alloc(50_000, i) : Buffer.from(pseudoRandom(70_000, i));
        input.push(b);
        await w.write(b);
      }
      const res = await w.finish();
      const stored = await collected;
      assert.equal(res.sha256, sha(stored));
      assert.equal(res.compressedSize, stored.length);
      const plain: Buffer[] = [];
      let at = 0;
      res.frames.forEach(([size], i) => {
        plain.push(archiveKey.open(stored.subarray(at, at + size), i, i === res.frames.length - 1));
        at += size;
      });
      const decompressed = await Promise.all(plain.map((p, i) => decompressFrame(codec, p, res.frames[i]![1])));
      assert.deepEqual(Buffer.concat(decompressed), Buffer.concat(input));
    } finally {
      w.close();
      await reader.close();
    }
  });
}

test("sealing on the reader's worker: asked out of order, frames are hashed in index order, each sealed with its own index", async () => {
  const reader = new ContentReader({ sealKey: archiveKey });
  try {
    const frames = [0, 1, 2].map((i) => {
      const b = Buffer.from(new SharedArrayBuffer(1024));
      b.fill(i + 1);
      return b;
    });
    const lengths = await Promise.all([2, 0, 1].map((i) => reader.seal!(frames[i]!, 1000, i, i === 2)));
    assert.deepEqual(lengths, [1016, 1016, 1016]);
    const byIndex = frames.map((f) => Buffer.from(f.subarray(0, 1016)));
    for (const [i, s] of byIndex.entries()) assert.deepEqual(archiveKey.open(s, i, i === 2), Buffer.alloc(1000, i + 1));
    assert.equal(await reader.digest(), sha(Buffer.concat(byIndex)));
  } finally {
    await reader.close();
  }
});

test('a worker started ahead (prestartContentReader) and booted long before its reader learns the key: reads, and seals with that key', async () => {
  prestartContentReader();
  prestartContentReader(); // one spare at a time: the second call starts nothing
  await new Promise((r) => setTimeout(r, 300));
  const reader = new ContentReader({ sealKey: archiveKey });
  const file = path.join(work, 'ahead.bin');
  const data = pseudoRandom(500, 9);
  fs.writeFileSync(file, data);
  const st = fs.statSync(file);
  try {
    const frame = Buffer.from(new SharedArrayBuffer(1024));
    const fd = fs.openSync(file, 'r');
    reader.own(1, fd);
    reader.read(1, fd, 0, 500, 0);
    reader.end(1, fd, st.size, st.mtimeMs, st.ino);
    assert.deepEqual(await reader.submit(frame), [{ seq: 1, sha256: sha(data), changed: false }]);
    assert.equal(await reader.seal!(frame, 500, 0, true), 516);
    assert.deepEqual(archiveKey.open(Buffer.from(frame.subarray(0, 516)), 0, true), data);
  } finally {
    await reader.close();
  }
  // The spare was taken: the next reader starts a worker of its own, and works.
  const plain = new ContentReader();
  try {
    const frame = Buffer.from(new SharedArrayBuffer(1024));
    assert.deepEqual(await plain.submit(frame), []);
  } finally {
    await plain.close();
  }
});

test('output release: compressed buffers are freed only once the consumer reports it is done with them, and the output stays whole', async () => {
  // A consumer that keeps each chunk a while (as a store writing it does), copies it, and only
  // then reports: a buffer freed too early would show up as an empty (detached) chunk here.
  // Mostly incompressible, so that each of the 3 zstd streams fills several 4 MiB output buffers.
  const input = Array.from({ length: 16 }, (_, i) =>
    i % 4 === 3 ? Buffer.alloc(3 << 20, `block ${i} `) : Buffer.from(pseudoRandom(3 << 20, i)),
  );
  const out = new PassThrough();
  const copies: Buffer[] = [];
  let done = 0;
  let emptyChunks = 0;
  const w = new FrameWriter({ codec: 'zstd', frameSize: 1 << 20, maxInFlight: 3, output: out });
  const consumer = (async () => {
    for await (const chunk of out.iterator({ destroyOnReturn: true })) {
      const c = chunk as Buffer;
      await new Promise((r) => setTimeout(r, 1));
      if (c.length === 0) emptyChunks++;
      copies.push(Buffer.from(c));
      w.consumed((done += c.length));
    }
  })();
  try {
    for (const b of input) await w.write(b);
    const res = await w.finish();
    await consumer;
    assert.equal(emptyChunks, 0);
    const stored = Buffer.concat(copies);
    assert.equal(stored.length, res.compressedSize);
    assert.equal(sha(stored), res.sha256);
    const file = path.join(work, 'released.zst');
    fs.writeFileSync(file, stored);
    const z = spawnSync('zstd', ['-dc', file], { maxBuffer: 64 << 20 });
    assert.equal(z.status, 0, z.stderr?.toString());
    assert.equal(sha(z.stdout), sha(Buffer.concat(input)));
    assert.ok(w.release.released > 0, 'some output buffers were freed early');
  } finally {
    w.close();
  }
});

test('output release: nothing is freed while the consumer has not reported', async () => {
  const out = new PassThrough();
  const held: Buffer[] = [];
  out.on('data', (c: Buffer) => held.push(c)); // keeps every chunk, reports nothing (like S3's uploader)
  const w = new FrameWriter({ codec: 'zstd', frameSize: 1 << 20, maxInFlight: 3, output: out });
  for (let i = 0; i < 12; i++) await w.write(Buffer.from(pseudoRandom(2 << 20, i)));
  const res = await w.finish();
  assert.equal(w.release.released, 0);
  assert.ok(held.every((c) => c.length > 0));
  assert.equal(sha(Buffer.concat(held)), res.sha256);
});

test('a stored hasher slower than compression: the writer waits for its buffer instead of taking another (frames in flight + 1), and one that fails does not hang the writer', async () => {
  const slowHasher = (failing: boolean) => {
    const sha256 = createHash('sha256');
    const seen = new Set<ArrayBufferLike>();
    return {
      seen,
      update: async (frame: Buffer, length: number) => {
        seen.add(frame.buffer);
        sha256.update(frame.subarray(0, length));
        await new Promise((r) => setTimeout(r, 20));
        if (failing) throw new Error('hasher failed');
      },
      digest: async () => (failing ? Promise.reject(new Error('hasher failed')) : sha256.digest('hex')),
    };
  };
  const hasher = slowHasher(false);
  const out = new PassThrough();
  const collected = readAll(out);
  const w = new FrameWriter({ codec: 'zstd', frameSize: 64 << 10, maxInFlight: 2, output: out, storedHash: hasher });
  try {
    for (let i = 0; i < 12; i++) await w.write(Buffer.from(pseudoRandom(70_000, i)));
    const res = await w.finish();
    assert.equal(res.sha256, sha(await collected));
    // Two in flight and the one being filled, plus the one the hasher reads; without the wait
    // every slow hash would have taken a fresh one.
    assert.ok(hasher.seen.size <= 3, `${hasher.seen.size} frame buffers`);
  } finally {
    w.close();
  }

  const out2 = new PassThrough();
  void readAll(out2);
  const w2 = new FrameWriter({ codec: 'zstd', frameSize: 64 << 10, maxInFlight: 2, output: out2, storedHash: slowHasher(true) });
  try {
    for (let i = 0; i < 12; i++) await w2.write(Buffer.from(pseudoRandom(70_000, i)));
    await assert.rejects(w2.finish(), /hasher failed/);
  } finally {
    w2.close();
  }
});
