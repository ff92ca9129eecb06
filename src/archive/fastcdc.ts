// Content-defined chunking (FastCDC: Xia et al., USENIX ATC 2016, "normalized chunking" at
// level 2) for finding the unchanged parts of a large file changed in place. Chunk ends are
// where a rolling hash of the last bytes meets a condition, so an insertion or an overwrite
// moves only the ends near it: the chunks before and after it are the same bytes at other
// offsets and are found by their hashes.
//
// The hash is FastCDC's gear hash, `h = (h << 1) + GEAR[byte]`, kept in 32 bits: bit k of h
// depends on the last k + 1 bytes only, so the mask bits are the top ones (a window of 32 bytes
// at most, 18–22 of them at these sizes). A 32-bit hash keeps the loop in small integers, which
// V8 runs without allocating; 64-bit BigInt arithmetic is an order of magnitude slower.
import { createHash } from 'node:crypto';

/** Sizes of chunks in bytes: none smaller than min (but a file's last), none larger than max. */
export interface ChunkSizes {
  min: number;
  /** The size the chunk ends aim at; a power of two. */
  avg: number;
  max: number;
}

/** 256 KiB / 1 MiB / 4 MiB: ~40 bytes of chunk list per MiB of file, a 1 MiB change costs 1–3 chunks. */
export const DEFAULT_CHUNK_SIZES: ChunkSizes = { min: 256 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 };

/**
 * The gear table: 256 fixed pseudo-random 32-bit values. It must never change: chunk ends found
 * with another table would not line up with the ends of chunks already stored, and nothing
 * would be found again (stored content would still restore: chunk ends are not in the format).
 */
const GEAR: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let block = 0; block < 32; block++) {
    const digest = createHash('sha256').update(`s3backup fastcdc gear ${block}`).digest();
    for (let i = 0; i < 8; i++) table[block * 8 + i] = digest.readUInt32BE(i * 4);
  }
  return table;
})();

/** A mask of the top `bits` bits of a 32-bit word. */
function topBits(bits: number): number {
  return (0xffffffff << (32 - bits)) >>> 0;
}

function checkSizes(s: ChunkSizes): number {
  const avgBits = Math.log2(s.avg);
  if (!Number.isInteger(avgBits) || avgBits < 8 || avgBits > 28) {
    throw new RangeError(`chunk average must be a power of two from 256 B to 256 MiB, not ${s.avg}`);
  }
  if (!(Number.isInteger(s.min) && s.min >= 64 && s.min < s.avg && s.max > s.avg && Number.isInteger(s.max))) {
    throw new RangeError(`chunk sizes must satisfy 64 <= min < avg < max (min ${s.min}, avg ${s.avg}, max ${s.max})`);
  }
  return avgBits;
}

/**
 * Finds chunk ends in a stream of bytes given in any pieces: the ends do not depend on how the
 * stream is cut into pieces. `update` returns the ends found in a piece as offsets from the
 * start of the stream (each the offset just after a chunk's last byte); `end` returns the last
 * one (the stream's length) unless the stream is empty or already ends at a chunk end.
 */
export class Chunker {
  private readonly min: number;
  private readonly normal: number;
  private readonly max: number;
  /** Harder to meet before the average size, easier after it: sizes gather near the average. */
  private readonly maskSmall: number;
  private readonly maskLarge: number;
  private hash = 0;
  /** Bytes of the current chunk seen so far. */
  private length = 0;
  /** Offset in the stream of the next byte. */
  private position = 0;
  /** The last scan stopped at a chunk end found by the hash. */
  private cutHere = false;

  constructor(sizes: ChunkSizes = DEFAULT_CHUNK_SIZES) {
    const avgBits = checkSizes(sizes);
    this.min = sizes.min;
    this.normal = sizes.avg;
    this.max = sizes.max;
    this.maskSmall = topBits(avgBits + 2);
    this.maskLarge = topBits(avgBits - 2);
  }

  update(piece: Uint8Array): number[] {
    const ends: number[] = [];
    const n = piece.length;
    let i = 0;
    while (i < n) {
      // Nothing can end before min: skip those bytes without hashing (FastCDC's cut-point
      // skipping); the hash starts afresh at each chunk, so skipped bytes do not count.
      if (this.length < this.min) {
        const skip = Math.min(this.min - this.length, n - i);
        this.length += skip;
        i += skip;
        continue;
      }
      const found = this.scan(piece, i);
      this.length += found - i;
      i = found;
      if (this.length === this.max || this.cutHere) {
        ends.push(this.position + i);
        this.length = 0;
        this.hash = 0;
        this.cutHere = false;
      }
    }
    this.position += n;
    return ends;
  }

  end(): number | undefined {
    const last = this.length > 0 ? this.position : undefined;
    this.length = 0;
    this.hash = 0;
    return last;
  }

  /**
   * Hash from piece[i] on until a chunk end (cutHere set, or max reached) or the piece's end;
   * returns the index after the last byte consumed.
   */
  private scan(piece: Uint8Array, i: number): number {
    let h = this.hash;
    let len = this.length;
    const n = piece.length;
    const normalStop = Math.min(n, i + Math.max(0, this.normal - len));
    const maskSmall = this.maskSmall;
    while (i < normalStop) {
      h = ((h << 1) + GEAR[piece[i]!]!) >>> 0;
      i++;
      len++;
      if ((h & maskSmall) === 0) return this.stop(h, i, true);
    }
    const maxStop = Math.min(n, i + (this.max - len));
    const maskLarge = this.maskLarge;
    while (i < maxStop) {
      h = ((h << 1) + GEAR[piece[i]!]!) >>> 0;
      i++;
      if ((h & maskLarge) === 0) return this.stop(h, i, true);
    }
    return this.stop(h, i, false);
  }

  private stop(h: number, i: number, cut: boolean): number {
    this.hash = h;
    this.cutHere = cut;
    return i;
  }
}
