import * as zlib from 'node:zlib';
import { promisify } from 'node:util';
import type { OutputRelease } from './output-release.ts';

/** How archive frames are compressed. Each frame is a complete, independent stream of its codec. */
export type Codec = 'zstd' | 'gzip' | 'none';
export const CODECS: readonly Codec[] = ['zstd', 'gzip', 'none'];

/** Object-name suffix of an archive, so standard tools know what they are looking at. */
export const ARCHIVE_SUFFIX: Record<Codec, string> = { zstd: '.tar.zst', gzip: '.tar.gz', none: '.tar' };

// Output buffer size. The async zlib functions hand each full output chunk back to the main
// thread before continuing, so a chunk smaller than the frame makes compression wait for the
// (busy) main thread several times per frame. One chunk that holds the whole result avoids it.
const MIN_CHUNK = 1 << 20;
function outputChunk(inputLength: number, expected?: number): number {
  const want = expected ?? inputLength + (inputLength >> 7) + 4096; // ≥ zstd/deflate worst case
  return Math.max(MIN_CHUNK, want);
}
const zstdDecompress = promisify(zlib.zstdDecompress);
const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

/**
 * zstd's default level here. Level 2 rather than zstd's own 3: much faster for archives barely
 * larger, where level 1 saves little more time for clearly larger archives (docs/performance.md,
 * "Compression level").
 */
export const DEFAULT_ZSTD_LEVEL = 2;

const DEFAULT_GZIP_LEVEL = 6;

/** The level a codec really uses for `level` (undefined: its default; none has no level). */
export function effectiveLevel(codec: Codec, level: number | undefined): number | undefined {
  if (codec === 'none') return undefined;
  return level ?? (codec === 'zstd' ? DEFAULT_ZSTD_LEVEL : DEFAULT_GZIP_LEVEL);
}

/** The levels each codec takes (none takes none: a level given with it is not used). */
export const LEVEL_RANGE: Readonly<Record<Exclude<Codec, 'none'>, readonly [number, number]>> = { zstd: [1, 19], gzip: [1, 9] };

/** The range `level` is outside of for `codec`, or undefined when it fits (or there is none). */
export function levelOutOfRange(codec: Codec, level: number | undefined): readonly [number, number] | undefined {
  if (codec === 'none' || level === undefined) return undefined;
  const range = LEVEL_RANGE[codec];
  return Number.isInteger(level) && level >= range[0] && level <= range[1] ? undefined : range;
}

export interface CodecOptions {
  /** zstd 1–19 (default DEFAULT_ZSTD_LEVEL), gzip 1–9 (default 6). */
  level?: number | undefined;
}

/**
 * One long-lived zstd stream that compresses frame after frame: each write is one complete,
 * independent zstd frame. Unlike one zstdCompress() call per frame, the compression context
 * and the output buffer are reused: one-shot calls allocate a fresh context and a frame-sized
 * output buffer each time and join the frame's two output pieces with a copy, which cost the
 * main thread GC and copying time and the process ~20 MB of allocator churn at 4 frames in
 * flight.
 */
class ZstdFrameStream {
  private readonly stream: zlib.ZstdCompress;
  private parts: Buffer[] = [];
  private failure: Error | undefined;
  private readonly pending: { resolve: (b: Buffer[]) => void; reject: (e: Error) => void }[] = [];
  busy = 0;
  /** The output buffer zlib is filling (the last piece's). */
  private chunk: ArrayBufferLike | undefined;

  constructor(level: number, release: OutputRelease | undefined) {
    this.stream = zlib.createZstdCompress({
      chunkSize: STREAM_CHUNK,
      // Every write ends a frame: zstd sees the whole frame in one call and records its size in
      // the frame header. Its window stays the level's own (1 MiB at level 2), so most of a
      // 4 MiB frame still passes zstd's ring buffer and its two-segment (extDict) match finder
      // (half of the compression time in a profile of a backup). A 4 MiB window (windowLog 22)
      // avoids that, but was no faster and no smaller on the bench tree: the fast strategy's
      // hash table rarely keeps a match that far back anyway.
      flush: zlib.constants.ZSTD_e_end,
      params: { [zlib.constants.ZSTD_c_compressionLevel]: level, [zlib.constants.ZSTD_c_checksumFlag]: 1 },
    });
    this.stream.on('data', (c: Buffer) => {
      // zlib never goes back to a buffer: a piece in a new one means the last one is full.
      if (c.buffer !== this.chunk) {
        if (this.chunk) release?.finished(this.chunk);
        this.chunk = c.buffer;
      }
      release?.emitted(c.buffer, c.length);
      this.parts.push(c);
    });
    this.stream.on('error', (e) => {
      this.failure ??= e;
      for (const p of this.pending.splice(0)) p.reject(e);
    });
  }

  compress(data: Buffer): Promise<Buffer[]> {
    if (this.failure) return Promise.reject(this.failure);
    this.busy++;
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this.pending.push(waiter);
      this.stream.write(data, () => {
        this.busy--;
        if (this.failure) return;
        this.pending.splice(this.pending.indexOf(waiter), 1);
        const parts = this.parts;
        this.parts = [];
        resolve(joinParts(parts));
      });
    });
  }

  close(): void {
    this.stream.destroy();
  }
}

/**
 * Output buffer of a frame stream. Each stream keeps the one it is filling, and a buffer is
 * freed only once every frame in it is written out, so what a backup holds of compressed output
 * grows with this size: 4 MiB buffers (a frame's worst case in one) held ~12 MiB more at the
 * peak than these, at the same speed; 8 MiB ones +45 MB more at 3 frames in flight. A frame's
 * output then comes in a few pieces, written one after the other (docs/performance.md,
 * "Memory: where it goes").
 */
const STREAM_CHUNK = 1 << 20;

/**
 * A frame's output pieces, those that lie end to end in one buffer joined into one view of it.
 * Pieces in different buffers stay apart: joining them would copy the frame into fresh memory,
 * and fresh external memory is what makes V8 run full collections during a backup.
 */
function joinParts(parts: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const p of parts) {
    const prev = out.at(-1);
    if (prev && prev.buffer === p.buffer && prev.byteOffset + prev.length === p.byteOffset) {
      out[out.length - 1] = Buffer.from(prev.buffer, prev.byteOffset, prev.length + p.length);
    } else if (p.length > 0) out.push(p);
  }
  return out;
}

/**
 * Compresses the frames of one archive, several at once on libuv's thread pool, so frames in
 * flight use every core while the main thread keeps reading files. zstd goes through `size`
 * long-lived streams (see ZstdFrameStream), each frame to the least busy one; gzip takes one
 * call per frame; none returns the frame. A frame comes back as one or more pieces, to be
 * stored one after the other. close() when done (or abandoned).
 */
export class FrameCompressor {
  private readonly streams: ZstdFrameStream[] = [];
  private readonly codec: Codec;
  private readonly opts: CodecOptions;
  private readonly size: number;
  private readonly release: OutputRelease | undefined;

  /** release: told what the zstd streams' output buffers hold, to free them early (see OutputRelease). */
  constructor(codec: Codec, opts: CodecOptions, size: number, release?: OutputRelease) {
    this.codec = codec;
    this.opts = opts;
    this.size = size;
    this.release = release;
  }

  async compress(data: Buffer): Promise<Buffer[]> {
    if (this.codec === 'none') return [data];
    if (this.codec === 'gzip')
      return [await gzip(data, { chunkSize: outputChunk(data.length), level: effectiveLevel('gzip', this.opts.level) })];
    let best = this.streams.find((s) => s.busy === 0);
    if (!best && this.streams.length < this.size) {
      best = new ZstdFrameStream(effectiveLevel('zstd', this.opts.level)!, this.release);
      this.streams.push(best);
    }
    best ??= this.streams.reduce((a, b) => (b.busy < a.busy ? b : a));
    return best.compress(data);
  }

  close(): void {
    for (const s of this.streams.splice(0)) s.close();
  }
}

/** A frame decompressed to more than the bound it was given (a decompression bomb, or corrupt). */
export class FrameExpansionError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`it decompresses to more than ${limit} bytes`);
    this.limit = limit;
  }
}

/**
 * Decompress one frame, refusing (FrameExpansionError) output past `maxSize` bytes: the frame
 * table's size for it, so that no frame, whatever it expands to, takes more memory than the
 * table promised. zlib stops at the bound (maxOutputLength), so the refusal costs no more
 * memory than the bound. The output buffer is sized once for the bound.
 */
export async function decompressFrame(codec: Codec, data: Buffer, maxSize: number): Promise<Buffer> {
  // zlib's bound must be at least 1; a frame that should be empty and is not is then caught by
  // the caller's length check.
  const opts = { chunkSize: outputChunk(data.length, maxSize + 1), maxOutputLength: Math.max(1, maxSize) };
  try {
    switch (codec) {
      case 'zstd':
        return await zstdDecompress(data, opts);
      case 'gzip':
        return await gunzip(data, opts);
      case 'none':
        if (data.length > maxSize) throw new FrameExpansionError(maxSize);
        return data;
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === 'ERR_BUFFER_TOO_LARGE') throw new FrameExpansionError(maxSize);
    throw e;
  }
}
