import * as zlib from 'node:zlib';
import { promisify } from 'node:util';

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
const zstdCompress = promisify(zlib.zstdCompress);
const zstdDecompress = promisify(zlib.zstdDecompress);
const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

export interface CodecOptions {
  /** zstd 1–19 (default 3), gzip 1–9 (default 6). */
  level?: number | undefined;
}

/**
 * Compress one frame. The async zlib functions run on libuv's thread pool, so several frames in
 * flight use every core while the main thread keeps reading files.
 */
export function compressFrame(codec: Codec, data: Buffer, opts: CodecOptions = {}): Promise<Buffer> {
  switch (codec) {
    case 'zstd':
      return zstdCompress(data, {
        chunkSize: outputChunk(data.length),
        params: {
          [zlib.constants.ZSTD_c_compressionLevel]: opts.level ?? 3,
          [zlib.constants.ZSTD_c_checksumFlag]: 1,
        },
      });
    case 'gzip':
      return gzip(data, { chunkSize: outputChunk(data.length), level: opts.level ?? 6 });
    case 'none':
      return Promise.resolve(data);
  }
}

/** Decompress one frame; `expectedSize` (from the frame table) sizes the output buffer once. */
export function decompressFrame(codec: Codec, data: Buffer, expectedSize?: number): Promise<Buffer> {
  const chunkSize = outputChunk(data.length, expectedSize === undefined ? undefined : expectedSize + 1);
  switch (codec) {
    case 'zstd':
      return zstdDecompress(data, { chunkSize });
    case 'gzip':
      return gunzip(data, { chunkSize });
    case 'none':
      return Promise.resolve(data);
  }
}
