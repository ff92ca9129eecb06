import * as zlib from 'node:zlib';
import { promisify } from 'node:util';

/** How archive frames are compressed. Each frame is a complete, independent stream of its codec. */
export type Codec = 'zstd' | 'gzip' | 'none';
export const CODECS: readonly Codec[] = ['zstd', 'gzip', 'none'];

/** Object-name suffix of an archive, so standard tools know what they are looking at. */
export const ARCHIVE_SUFFIX: Record<Codec, string> = { zstd: '.tar.zst', gzip: '.tar.gz', none: '.tar' };

// 1 MiB output chunks: zstd with the 16 KiB default runs ~40% slower (measured on Node 24).
const CHUNK = 1 << 20;
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
        chunkSize: CHUNK,
        params: {
          [zlib.constants.ZSTD_c_compressionLevel]: opts.level ?? 3,
          [zlib.constants.ZSTD_c_checksumFlag]: 1,
        },
      });
    case 'gzip':
      return gzip(data, { chunkSize: CHUNK, level: opts.level ?? 6 });
    case 'none':
      return Promise.resolve(data);
  }
}

export function decompressFrame(codec: Codec, data: Buffer): Promise<Buffer> {
  switch (codec) {
    case 'zstd':
      return zstdDecompress(data, { chunkSize: CHUNK });
    case 'gzip':
      return gunzip(data, { chunkSize: CHUNK });
    case 'none':
      return Promise.resolve(data);
  }
}
