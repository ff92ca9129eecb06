import * as fs from 'node:fs';

/**
 * Holes are made at this granularity: a block of a file's content that is all zeros, at an
 * offset that is a multiple of this in the file, is not written. 4 KiB is the block size of
 * ext4, XFS, btrfs and tmpfs, so a hole of the source comes back as a hole.
 */
export const HOLE_BLOCK = 4096;

const ZERO = Buffer.alloc(HOLE_BLOCK);

/**
 * Writes the content of a file it has just created (so every byte not written reads as zero)
 * in order, chunk by chunk, and leaves the all-zero blocks unwritten: they become holes, so a
 * sparse file (a VM image, a database preallocated with zeros) is restored sparse, not as
 * gigabytes of zeros on disk. Runs of data between them go out as one positioned write each,
 * so a file without zero blocks costs the same writes as before; the test per block is one
 * byte for almost all data (a block whose first byte is not zero holds data) and a memcmp
 * against a zero block otherwise. `finish` sets the length, so a file that ends in a hole
 * keeps its size.
 */
export class SparseWriter {
  private readonly fd: number;
  /** File offset of the next byte to come. */
  private pos = 0;
  /** File offset just past the last byte written. */
  private end = 0;

  constructor(fd: number) {
    this.fd = fd;
  }

  /** The next `length` bytes of the file, from `data` at `offset`. */
  write(data: Uint8Array, offset = 0, length = data.length - offset): void {
    const stop = offset + length;
    // File offset of data[i] is base + i.
    const base = this.pos - offset;
    let from = offset;
    let i = offset;
    while (i < stop) {
      const next = Math.min(stop, i + HOLE_BLOCK - ((base + i) % HOLE_BLOCK));
      if (data[i] === 0 && ZERO.compare(data, i, next, 0, next - i) === 0) {
        if (from < i) this.put(data, from, i - from, base + from);
        from = next;
      }
      i = next;
    }
    if (from < stop) this.put(data, from, stop - from, base + from);
    this.pos = base + stop;
  }

  private put(data: Uint8Array, offset: number, length: number, position: number): void {
    let done = 0;
    while (done < length) done += fs.writeSync(this.fd, data, offset + done, length - done, position + done);
    this.end = position + length;
  }

  /** After the last write: a file that ends in zeros (or is all zeros) gets its full length. */
  finish(): void {
    if (this.end < this.pos) fs.ftruncateSync(this.fd, this.pos);
  }

  /** Bytes of content given so far. */
  get size(): number {
    return this.pos;
  }
}
