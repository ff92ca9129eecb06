import { z } from 'zod';
import { type Codec, CODECS, DEFAULT_ZSTD_LEVEL, LEVEL_RANGE } from '../archive/codec.ts';
import { setting } from './settings.ts';
import { parseByteSize, parseWholeNumber } from '../size.ts';

/**
 * Uncompressed tar bytes per archive before a backup is split into another. S3 takes at most
 * 10,000 parts per upload, and the part size is fixed when the upload starts, before the
 * archive's size is known: a bound on it is what lets parts stay small (memory) at any backup
 * size. Smaller archives also make a Glacier restore of a few files cheaper; more of them cost
 * a request each.
 */
export const DEFAULT_ARCHIVE_SIZE = 64 * 2 ** 30;
const MIN_ARCHIVE_SIZE = 2 ** 20;
/** Parts of an S3 upload grow with the archive size (≈ size / 9,500): 1 TiB makes 111 MiB parts. */
const MAX_ARCHIVE_SIZE = 2 ** 40;

/** An archive size as given (bytes, or "64GiB"), checked against its bounds; `what` names the setting in the error. */
export function parseArchiveSize(v: string | number, what: string): number {
  return parseByteSize(v, what, MIN_ARCHIVE_SIZE, MAX_ARCHIVE_SIZE);
}

// zstd's range is the widest (gzip takes 1-9): checkLevel (backup/compression.ts) narrows it once the codec is known.
const [MIN_LEVEL, MAX_LEVEL] = LEVEL_RANGE.zstd;

/** How a backup's archives are written: codec, level and the size a backup is split at. */
export const ArchiveSettings = z.object({
  compression: setting(z.enum(CODECS as [Codec, ...Codec[]]), { flag: '--compression <codec>', help: 'archive compression' }).optional(),
  level: setting(z.int().min(MIN_LEVEL).max(MAX_LEVEL), {
    flag: '--level <n>',
    help: `compression level (zstd 1-19, default ${DEFAULT_ZSTD_LEVEL}: 3 stores ~1 % less, ~20 % slower; gzip 1-9, default 6; checked before anything is written)`,
    parse: (v, flag) => parseWholeNumber(v, flag, MIN_LEVEL, MAX_LEVEL),
  }).optional(),
  /** Split a backup into archives of about this much (uncompressed) tar: "64GiB" (default), "500MiB", bytes. */
  archiveSize: setting(
    z.union([z.int(), z.string()]).transform((v, ctx) => {
      try {
        return parseArchiveSize(v, 'archiveSize');
      } catch (e) {
        ctx.issues.push({ code: 'custom', message: (e as Error).message.replace(/^archiveSize /, ''), input: v });
        return z.NEVER;
      }
    }),
    {
      flag: '--archive-size <size>',
      help: 'split the backup into archives of about SIZE of tar (default 64GiB; e.g. 4GiB, 500MiB); a larger file gets one of its own',
      parse: (v, flag) => parseArchiveSize(v, flag),
    },
  ).default(DEFAULT_ARCHIVE_SIZE),
});

export type ArchiveSettingValues = z.output<typeof ArchiveSettings>;
