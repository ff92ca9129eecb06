import { createHash, type Hash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { UsageError } from '../errors.ts';
import { type Codec, type CodecOptions, FrameCompressor } from './codec.ts';
import { OutputRelease } from './output-release.ts';

/** One frame of an archive: compressed and uncompressed byte counts, in archive order. */
export type FrameInfo = [compressed: number, uncompressed: number];

export interface FrameWriterOptions extends CodecOptions {
  codec: Codec;
  /**
   * Uncompressed bytes per frame (default 4 MiB, at most MAX_FRAME_SIZE). Smaller: cheaper
   * single-file restores; larger: better ratio.
   */
  frameSize?: number;
  /** Frames being compressed at once (default 4: the libuv pool size, enough for 2–4 cores). */
  maxInFlight?: number;
  /** Where compressed frames go, in order (e.g. the body stream of a store upload). */
  output: Writable;
  /**
   * Called with each full frame (uncompressed); compression starts once the returned promise
   * resolves, so that another thread may still be filling parts of it (ContentReader). Frames
   * are in shared memory, and a buffer is not reused before its frame is written out.
   */
  onFrame?: (frame: Buffer) => Promise<unknown>;
  /**
   * Hashes the stored bytes elsewhere (ContentReader, on its worker) instead of on this thread,
   * and seals them there if it has a `seal`. Each frame's stored (or, to seal, compressed) bytes
   * are first copied into its own frame buffer (shared memory, free once compressed), so this
   * costs a copy instead of the hashing and sealing, and no extra memory.
   */
  storedHash?: StoredHasher | undefined;
}

/** SHA-256 of an archive's stored bytes, frame after frame, computed off the calling thread. */
export interface StoredHasher {
  /** Hash frame[0, length) next; resolves when the buffer may be reused. */
  update(frame: Buffer, length: number): Promise<void>;
  /** Hex digest of everything given to update() or sealed, in archive order. */
  digest(): Promise<string>;
  /**
   * Encrypted archives: seal frame[0, length) (compressed bytes, in a frame buffer) in place as
   * piece `index` of the archive (its index, and whether it is the last one, are authenticated
   * with it: ciphertext, then the tag), hash the sealed bytes in index order whatever the order
   * of the calls, and resolve with the sealed length. The last frame is always flushed by
   * finish(), empty if the data ended on a frame boundary, so that it can be sealed as the last.
   */
  readonly seal?: ((frame: Buffer, length: number, index: number, last: boolean) => Promise<number>) | undefined;
}

/** Room past frameSize in each frame buffer, so that a frame's stored bytes (which can exceed
 * its input: incompressible data, the AEAD tag) fit in it for the stored hash. */
const FRAME_SLACK = 64 << 10;

export interface FrameWriterResult {
  frames: FrameInfo[];
  compressedSize: number;
  uncompressedSize: number;
  /** SHA-256 (hex) of the compressed archive as stored. */
  sha256: string;
}

export const DEFAULT_FRAME_SIZE = 4 << 20;

/**
 * The most uncompressed bytes a frame may hold (docs/format.md "Decompression bounds"). Writers
 * refuse a larger frame size; readers decompress each frame with its frame-table size as the
 * output bound and refuse a frame table that claims more than this, so no archive, whatever its
 * frames decompress to, makes a reader hold more than a few frames of this size.
 */
export const MAX_FRAME_SIZE = 16 << 20;

/**
 * The most stored bytes a frame may take: MAX_FRAME_SIZE past any codec's worst-case growth on
 * incompressible data (zstd and deflate add well under 1/128) and the AEAD tag.
 */
export const MAX_STORED_FRAME = MAX_FRAME_SIZE + (MAX_FRAME_SIZE >> 7) + (64 << 10);

/** What is wrong with a frame-table entry (sizes past the format's bounds), or undefined. */
export function frameInfoProblem(f: FrameInfo | undefined): string | undefined {
  const [c, u] = Array.isArray(f) ? f : [undefined, undefined];
  if (!Number.isSafeInteger(u) || u! < 0 || !Number.isSafeInteger(c) || c! < 0) return 'has an invalid frame-table entry';
  if (u! > MAX_FRAME_SIZE) return `claims ${u} bytes in the frame table, more than a frame may hold (${MAX_FRAME_SIZE})`;
  if (c! > MAX_STORED_FRAME) return `claims ${c} stored bytes in the frame table, more than a frame may take (${MAX_STORED_FRAME})`;
  return undefined;
}

interface InFlight {
  buf: Buffer;
  input: number;
  /** The stored bytes of the frame, in pieces to be written one after the other. */
  result: Promise<Buffer[]>;
  /** Sealed, and so already hashed, by the stored hasher. */
  sealed: boolean;
}

/**
 * Turns a stream of uncompressed tar bytes into independently compressed frames, compressed in
 * parallel on the thread pool and written to `output` in order. The caller fills the current
 * frame buffer directly (`space()` then `commit()`) so file data is copied exactly once.
 * Frame buffers are recycled (a few in flight), which keeps memory flat and the GC quiet.
 */
export class FrameWriter {
  private readonly compressor: FrameCompressor;
  private readonly frameSize: number;
  private readonly maxInFlight: number;
  private readonly output: Writable;
  private readonly onFrame: ((frame: Buffer) => Promise<unknown>) | undefined;
  private flushed = 0; // frames handed to compression so far
  private readonly hash: Hash;
  private readonly storedHash: StoredHasher | undefined;
  private readonly frames: FrameInfo[] = [];
  private readonly inFlight: InFlight[] = [];
  private readonly free: Buffer[] = [];
  /** Frame buffers allocated and not given up (codec 'none' gives each to the output). */
  private buffers = 0;
  /** Waits for a buffer the stored hasher still reads (see nextBuffer). */
  private bufferWaiter: (() => void) | undefined;
  private cur: Buffer;
  private pos = 0;
  private written = 0; // uncompressed bytes handed over so far
  private compressedSize = 0;
  private outputError: Error | undefined;
  /** Frees compressed output the store is done with (see consumed()). */
  readonly release = new OutputRelease();

  constructor(opts: FrameWriterOptions) {
    this.frameSize = opts.frameSize ?? DEFAULT_FRAME_SIZE;
    if (!Number.isSafeInteger(this.frameSize) || this.frameSize < 1 || this.frameSize > MAX_FRAME_SIZE) {
      throw new UsageError(`frame size ${this.frameSize} is outside the format's 1 to ${MAX_FRAME_SIZE} bytes`, {
        hint: `the default is ${DEFAULT_FRAME_SIZE} (check frameSize in the repository's config.json)`,
      });
    }
    this.maxInFlight = opts.maxInFlight ?? 4;
    this.compressor = new FrameCompressor(opts.codec, { level: opts.level }, this.maxInFlight, this.release);
    this.output = opts.output;
    this.onFrame = opts.onFrame;
    this.hash = createHash('sha256');
    this.storedHash = opts.storedHash;
    this.cur = this.newBuffer();
    this.output.on('error', (e) => {
      this.outputError ??= e;
    });
  }

  private newBuffer(): Buffer {
    const buf = this.free.pop();
    if (buf) return buf;
    this.buffers++;
    return Buffer.from(new SharedArrayBuffer(this.frameSize + FRAME_SLACK));
  }

  private recycle(buf: Buffer): void {
    this.free.push(buf);
    this.bufferWaiter?.();
  }

  /**
   * The next frame buffer: at most one more than the frames in flight. A frame just written
   * out keeps its buffer while the stored hasher reads it (a few milliseconds); waiting for it
   * instead of taking a fresh one saves a frame buffer (4 MiB) for the whole backup.
   */
  private async nextBuffer(): Promise<Buffer> {
    while (this.free.length === 0 && this.buffers > this.maxInFlight) {
      await new Promise<void>((resolve) => {
        this.bufferWaiter = resolve;
      });
      this.bufferWaiter = undefined;
    }
    return this.newBuffer();
  }

  /** Uncompressed offset of the next byte to be written. */
  get offset(): number {
    return this.written + this.pos;
  }

  /** The free part of the current frame buffer; write into it, then commit(n). */
  space(): { buf: Buffer; start: number; length: number } {
    return { buf: this.cur, start: this.pos, length: this.frameSize - this.pos };
  }

  /** Account n bytes written into space(). Returns a promise only when the caller must wait. */
  commit(n: number): Promise<void> | undefined {
    this.pos += n;
    if (this.pos >= this.frameSize) return this.flushFrame();
    return undefined;
  }

  /** Copy bytes in (headers, padding, small data). A promise only when the caller must wait. */
  write(data: Buffer): Promise<void> | undefined {
    if (data.length <= this.frameSize - this.pos) {
      data.copy(this.cur, this.pos);
      return this.commit(data.length);
    }
    return this.writeSlow(data);
  }

  private async writeSlow(data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const n = Math.min(data.length - off, this.frameSize - this.pos);
      data.copy(this.cur, this.pos, off, off + n);
      off += n;
      const p = this.commit(n);
      if (p) await p;
    }
  }

  /** Zero bytes (tar padding). A promise only when the caller must wait. */
  writeZeros(n: number): Promise<void> | undefined {
    if (n <= this.frameSize - this.pos) {
      this.cur.fill(0, this.pos, this.pos + n);
      return this.commit(n);
    }
    return this.writeZerosSlow(n);
  }

  private async writeZerosSlow(n: number): Promise<void> {
    while (n > 0) {
      const k = Math.min(n, this.frameSize - this.pos);
      this.cur.fill(0, this.pos, this.pos + k);
      n -= k;
      const p = this.commit(k);
      if (p) await p;
    }
  }

  private async flushFrame(last = false): Promise<void> {
    const seal = this.storedHash?.seal;
    if (this.pos === 0 && !(last && seal)) return;
    const buf = this.cur;
    const input = buf.subarray(0, this.pos);
    const seen = this.onFrame ? this.onFrame(buf) : undefined;
    const compressed = seen ? seen.then(() => this.compressor.compress(input)) : this.compressor.compress(input);
    const index = this.flushed++;
    // Sealed as each compression finishes, on the hasher's thread, in the frame's own buffer
    // (free once compressed); the frame's place and finality are fixed now, not when written.
    const result = seal ? compressed.then((parts) => sealed(parts, buf, (n) => seal(buf, n, index, last))) : compressed;
    result.catch(() => {}); // awaited in order by writeOldest; this only silences "unhandled" meanwhile
    this.inFlight.push({ buf, input: this.pos, result, sealed: seal !== undefined });
    this.written += this.pos;
    this.pos = 0;
    while (this.inFlight.length >= this.maxInFlight) await this.writeOldest();
    if (last) return;
    this.cur = await this.nextBuffer();
    // Let finished compressions and the upload make progress between synchronous file reads.
    await yieldToLoop();
  }

  private async writeOldest(): Promise<void> {
    const f = this.inFlight.shift();
    if (!f) return;
    const parts = await f.result;
    if (this.outputError) throw this.outputError;
    let size = 0;
    for (const p of parts) size += p.length;
    // With codec 'none' the output IS the frame buffer, still queued in the output stream after
    // write() returns: recycling it would overwrite data not yet uploaded.
    const reusable = !parts.some((p) => p.buffer === f.buf.buffer);
    if (!reusable) this.buffers--;
    if (f.sealed) {
      if (reusable) this.recycle(f.buf);
    } else if (this.storedHash) {
      intoFrame(parts, f.buf);
      // The buffer is reused only once the hasher is done with it.
      const hashed = this.storedHash.update(f.buf, size);
      if (reusable)
        hashed.then(
          () => this.recycle(f.buf),
          () => {
            // The digest reports the failure; the buffer is not reused, a frame may take another.
            this.buffers--;
            this.bufferWaiter?.();
          },
        );
    } else {
      for (const p of parts) this.hash.update(p);
      if (reusable) this.recycle(f.buf);
    }
    let drained = true;
    let end = this.compressedSize;
    for (const p of parts) {
      drained = this.output.write(p);
      this.release.written(p, (end += p.length));
    }
    this.frames.push([size, f.input]);
    this.compressedSize += size;
    if (!drained) await waitForDrain(this.output);
    if (this.outputError) throw this.outputError;
  }

  /**
   * Cut the frame being filled short (a frame may hold less than frameSize: the frame table
   * says how much each holds) and wait until every frame handed over is compressed and
   * written: by then the content reader has reported every file booked so far. For a caller
   * that must not wait for a whole frame to fill to learn its files' digests.
   */
  async settle(): Promise<void> {
    await this.flushFrame();
    while (this.inFlight.length > 0) await this.writeOldest();
  }

  /**
   * The output's final consumer (the store, PutOptions.onConsumed) is done with the first
   * `bytes` bytes written to the output: compressed buffers wholly behind that are freed now.
   */
  consumed(bytes: number): void {
    this.release.consumed(bytes);
  }

  /** Release the compression streams (finish() does; call it when abandoning the archive). */
  close(): void {
    this.compressor.close();
  }

  /** Flush the last frame, wait for all compression, end the output. */
  async finish(): Promise<FrameWriterResult> {
    try {
      await this.flushFrame(true);
      while (this.inFlight.length > 0) await this.writeOldest();
    } finally {
      this.compressor.close();
    }
    this.output.end();
    return {
      frames: this.frames,
      compressedSize: this.compressedSize,
      uncompressedSize: this.written,
      sha256: this.storedHash ? await this.storedHash.digest() : this.hash.digest('hex'),
    };
  }
}

/** Copy a frame's stored pieces to the start of its own frame buffer (no copy if they are there); their length. */
function intoFrame(parts: Buffer[], buf: Buffer): number {
  let at = 0;
  for (const p of parts) {
    if (at + p.length > buf.length) throw new Error(`internal error: a stored frame does not fit its ${buf.length}-byte buffer`);
    if (p.buffer !== buf.buffer || p.byteOffset !== at) p.copy(buf, at);
    at += p.length;
  }
  return at;
}

/**
 * Seal a compressed frame: its pieces go into the frame buffer, are sealed there (elsewhere), and
 * the ciphertext is copied back over them (they are this frame's alone), followed by the tag.
 * No fresh memory per frame: fresh external memory is what makes V8 run full collections.
 */
async function sealed(parts: Buffer[], buf: Buffer, seal: (length: number) => Promise<number>): Promise<Buffer[]> {
  const length = intoFrame(parts, buf);
  const sealedLength = await seal(length);
  let at = 0;
  for (const p of parts) {
    if (p.buffer !== buf.buffer) buf.copy(p, 0, at, at + p.length);
    at += p.length;
  }
  return [...parts, Buffer.from(buf.subarray(length, sealedLength))];
}

/** Resolve on 'drain'; reject if the stream errors or closes first. */
export function waitForDrain(stream: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    // Already destroyed (e.g. the upload failed and the backup broke the pipe): no 'drain' or
    // 'close' will ever come, so waiting would hang the backup forever.
    if (stream.destroyed) {
      reject(stream.errored ?? new Error('output stream closed before all data was written'));
      return;
    }
    const done = (err?: Error) => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onError = (e: Error) => done(e);
    const onClose = () => done(new Error('output stream closed before all data was written'));
    stream.on('drain', onDrain);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}
