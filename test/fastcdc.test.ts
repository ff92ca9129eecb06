import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { Chunker, DEFAULT_CHUNK_SIZES } from '../src/archive/fastcdc.ts';

const MiB = 1024 * 1024;
const { min, avg, max } = DEFAULT_CHUNK_SIZES;

/** Deterministic pseudo-random bytes (AES-CTR over zeros): the same figures on every run. */
function noise(size: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

/** Chunk ends of data fed in pieces of the given sizes (cycled). */
function endsOf(data: Uint8Array, pieceSizes: number[] = [data.length]): number[] {
  const c = new Chunker();
  const ends: number[] = [];
  for (let at = 0, k = 0; at < data.length; k++) {
    const n = Math.min(pieceSizes[k % pieceSizes.length]!, data.length - at);
    ends.push(...c.update(data.subarray(at, at + n)));
    at += n;
  }
  const last = c.end();
  if (last !== undefined) ends.push(last);
  return ends;
}

function chunkHashes(data: Uint8Array, ends: number[]): string[] {
  let start = 0;
  return ends.map((e) => {
    const h = createHash('sha256').update(data.subarray(start, e)).digest('hex');
    start = e;
    return h;
  });
}

/** How many chunks of `after` are not among the chunks of `before` (what would be stored). */
function newChunks(before: Uint8Array, after: Uint8Array): { count: number; bytes: number } {
  const known = new Set(chunkHashes(before, endsOf(before)));
  const ends = endsOf(after);
  const hashes = chunkHashes(after, ends);
  let count = 0;
  let bytes = 0;
  hashes.forEach((h, i) => {
    if (known.has(h)) return;
    count++;
    bytes += ends[i]! - (i === 0 ? 0 : ends[i - 1]!);
  });
  return { count, bytes };
}

describe('FastCDC chunker', () => {
  const data = noise(64 * MiB, 'fastcdc');
  const ends = endsOf(data);

  test('chunks of random data: min ≤ size ≤ max, the last alone may be shorter, sizes near the average', () => {
    assert.equal(ends.at(-1), data.length);
    const sizes = ends.map((e, i) => e - (i === 0 ? 0 : ends[i - 1]!));
    for (const s of sizes.slice(0, -1)) assert.ok(s >= min && s <= max, `chunk of ${s} bytes`);
    const mean = data.length / sizes.length;
    assert.ok(mean > avg * 0.75 && mean < avg * 1.6, `mean chunk ${mean} bytes, ${sizes.length} chunks`);
    assert.ok(new Set(sizes).size > sizes.length / 2, 'sizes vary with content');
  });

  test('the ends do not depend on how the stream is cut into pieces', () => {
    assert.deepEqual(endsOf(data, [1, 7, 4096, 3 * MiB + 5, 65536, 999_999]), ends);
    assert.deepEqual(endsOf(data, [MiB]), ends);
    assert.deepEqual(endsOf(data, [min]), ends);
  });

  test('an overwrite, an insertion or an append changes only the chunks it touches', () => {
    const overwritten = Buffer.from(data);
    noise(MiB, 'rewrite').copy(overwritten, 31 * MiB + 12345);
    const o = newChunks(data, overwritten);
    assert.ok(o.count >= 1 && o.count <= 4 && o.bytes <= 6 * MiB, `overwrite of 1 MiB: ${o.count} chunks, ${o.bytes} B new`);

    const inserted = Buffer.concat([data.subarray(0, 20 * MiB + 77), noise(1000, 'insert'), data.subarray(20 * MiB + 77)]);
    const ins = newChunks(data, inserted);
    assert.ok(ins.count >= 1 && ins.count <= 3 && ins.bytes <= 5 * MiB, `insertion of 1000 B: ${ins.count} chunks, ${ins.bytes} B new`);

    const appended = Buffer.concat([data, noise(data.length / 100, 'append')]);
    const app = newChunks(data, appended);
    assert.ok(app.bytes <= max + data.length / 100, `append of 1 %: ${app.bytes} B new`);
    assert.equal(newChunks(data, data).count, 0);
  });

  test('data without variety (zeros) is cut at max; short and empty streams', () => {
    const zeros = endsOf(Buffer.alloc(10 * MiB));
    assert.ok(zeros.length >= 3);
    for (let i = 1; i < zeros.length - 1; i++) assert.ok(zeros[i]! - zeros[i - 1]! <= max);
    assert.deepEqual(endsOf(Buffer.alloc(1000, 1)), [1000]);
    const c = new Chunker();
    assert.equal(c.end(), undefined, 'an empty stream has no chunk');
    // A stream that ends exactly at a chunk end has no trailing empty chunk.
    const exact = data.subarray(0, ends[0]);
    const e = new Chunker();
    assert.deepEqual(e.update(exact), [ends[0]]);
    assert.equal(e.end(), undefined);
  });

  test('sizes the chunker cannot honour are refused', () => {
    assert.throws(() => new Chunker({ min: 1000, avg: 3000, max: 9000 }), /power of two/);
    assert.throws(() => new Chunker({ min: 2 * MiB, avg: MiB, max: 4 * MiB }), /min < avg < max/);
    assert.throws(() => new Chunker({ min: 1000, avg: 4096, max: 4096 }), /min < avg < max/);
  });
});
