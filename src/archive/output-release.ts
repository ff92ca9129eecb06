/**
 * Frees the compressor's output buffers as soon as the store is done with them, rather than
 * leaving them to V8's garbage collector.
 *
 * Node's zlib streams allocate a fresh output buffer each time one fills (4 MiB here, a few
 * frames each), so a backup allocates as much fresh memory as it stores. V8 counts that memory
 * and runs a full collection for every ~64 MB of it: frequent full collections on the main
 * thread, and up to 64 MB of dead buffers in the RSS at any time. A buffer
 * is freed here (its ArrayBuffer detached) once (1) zlib has moved on to another buffer,
 * (2) every byte zlib put into it has been written to the output, and (3) the store has reported
 * that it is done with those bytes (PutOptions.onConsumed). A store that never reports leaves
 * everything to the GC: tracking starts with the first report, and buffers first seen before it
 * are never touched.
 */
export class OutputRelease {
  private readonly chunks = new Map<ArrayBuffer, { emitted: number; written: number; end: number; finished: boolean }>();
  /** Buffers zlib started filling before the first report: not tracked, left to the GC. */
  private readonly untracked = new WeakSet<ArrayBuffer>();
  /** Output bytes the store is done with; -1 until it first says so. */
  private consumedBytes = -1;
  /** Buffers freed so far (for tests and benchmarks). */
  released = 0;

  /** The compressor put n more bytes of output into chunk. */
  emitted(chunk: ArrayBufferLike, n: number): void {
    if (!(chunk instanceof ArrayBuffer)) return;
    if (this.consumedBytes < 0 || this.untracked.has(chunk)) {
      this.untracked.add(chunk);
      return;
    }
    const c = this.chunks.get(chunk);
    if (c) c.emitted += n;
    else this.chunks.set(chunk, { emitted: n, written: 0, end: 0, finished: false });
  }

  /** The compressor will put nothing more into chunk. */
  finished(chunk: ArrayBufferLike): void {
    const c = chunk instanceof ArrayBuffer ? this.chunks.get(chunk) : undefined;
    if (!c) return;
    c.finished = true;
    this.check(chunk as ArrayBuffer, c);
  }

  /** A piece of output was written to the output stream, ending at output offset `end`. */
  written(piece: Buffer, end: number): void {
    const chunk = piece.buffer;
    const c = chunk instanceof ArrayBuffer ? this.chunks.get(chunk) : undefined;
    if (!c) return;
    c.written += piece.length;
    c.end = end;
    this.check(chunk as ArrayBuffer, c);
  }

  /** The store is done with the first n bytes of the output. */
  consumed(n: number): void {
    this.consumedBytes = n;
    for (const [chunk, c] of this.chunks) this.check(chunk, c);
  }

  private check(chunk: ArrayBuffer, c: { emitted: number; written: number; end: number; finished: boolean }): void {
    if (!c.finished || c.written !== c.emitted || c.end > this.consumedBytes) return;
    this.chunks.delete(chunk);
    chunk.transfer(0);
    this.released++;
  }
}
