import { createHash } from 'node:crypto';
import { Chunker, DEFAULT_CHUNK_SIZES } from './fastcdc.ts';

// A large file's chunk list (docs/format.md "Extents", entry field `chunks`): where its
// content-defined chunks end and what each holds, so that the next backup of the file changed
// in place finds the chunks that did not change.

/** Chunk lists of more chunks than this are not kept (the entry line stays under ~7 MB): such a file is stored whole when it changes. */
const MAX_CHUNKS = 1 << 18;
/** A chunk in an entry's `chunks`: its length (u32 BE) and the first CHUNK_HASH bytes of its SHA-256. */
const CHUNK_HASH = 16;
export const CHUNK_RECORD = 4 + CHUNK_HASH;

/** A file's content-defined chunks as they pass (FastCDC), each hashed, listed for its entry. */
export class ChunkList {
  private readonly chunker = new Chunker(DEFAULT_CHUNK_SIZES);
  private hash = createHash('sha256');
  /** The records so far (CHUNK_RECORD bytes each), in a buffer that doubles as it fills. */
  private records = Buffer.allocUnsafe(CHUNK_RECORD * 256);
  private count = 0;
  /** File offset where the current chunk starts. */
  start = 0;
  private position = 0;

  /** The next bytes of the file; `done` is told each chunk they end, with the first CHUNK_HASH bytes of its SHA-256. */
  update(piece: Uint8Array, done?: (start: number, length: number, digest: Buffer) => void): void {
    let from = 0;
    for (const end of this.chunker.update(piece)) {
      const k = end - this.position;
      this.hash.update(piece.subarray(from, k));
      this.close(end, done);
      from = k;
    }
    this.hash.update(piece.subarray(from));
    this.position += piece.length;
  }

  /** The end of the file: its last chunk to `done`; the list (base64), or undefined when too long to keep. */
  finish(done?: (start: number, length: number, digest: Buffer) => void): string | undefined {
    const last = this.chunker.end();
    if (last !== undefined) this.close(last, done);
    return this.count > MAX_CHUNKS ? undefined : this.records.toString('base64', 0, this.count * CHUNK_RECORD);
  }

  private close(end: number, done: ((start: number, length: number, digest: Buffer) => void) | undefined): void {
    const digest = this.hash.digest().subarray(0, CHUNK_HASH);
    const length = end - this.start;
    done?.(this.start, length, digest);
    if (this.count < MAX_CHUNKS) {
      const at = this.count * CHUNK_RECORD;
      if (at + CHUNK_RECORD > this.records.length) {
        const grown = Buffer.allocUnsafe(this.records.length * 2);
        this.records.copy(grown);
        this.records = grown;
      }
      this.records.writeUInt32BE(length, at);
      digest.copy(this.records, at + 4);
    }
    this.count++;
    this.hash = createHash('sha256');
    this.start = end;
  }
}
