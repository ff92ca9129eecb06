import { type Codec, effectiveLevel, levelOutOfRange } from '../archive/codec.ts';
import { DEFAULT_FRAME_SIZE } from '../archive/frames.ts';
import { UsageError } from '../errors.ts';
import type { Repository } from '../repo/repository.ts';
import type { BackupOptions } from './types.ts';

// Stage "compression": the codec, level and frame size a backup uses (its options, else the
// repository's defaults), refused before anything is written when the level does not fit.

/** A level that does not fit its codec: a usage error, found before anything is written. */
export class LevelError extends UsageError {}

/**
 * Refuse a level that `codec` does not take (gzip 1–9, zstd 1–19), naming where each came from
 * (see BackupOptions.compressionOrigin).
 */
export function checkLevel(
  codec: Codec,
  level: number | undefined,
  origin: { codec?: string | undefined; level?: string | undefined } = {},
): void {
  const range = levelOutOfRange(codec, level);
  if (!range) return;
  const [min, max] = range;
  const what = (origin.level ?? 'level {level}').replace('{level}', String(level));
  throw new LevelError(
    `${what} is out of range for ${codec}${origin.codec ? ` (from ${origin.codec})` : ''}: ${codec} levels are ${min} to ${max}`,
    {
      hint: `give a level from ${min} to ${max}, or none for ${codec}'s default (${effectiveLevel(codec, undefined)})`,
    },
  );
}

type RepositoryDefaults = Repository['config']['defaults'];

/**
 * The compression of a backup with these options into a repository with these defaults: a
 * level comes from the repository only with the repository's own codec.
 */
export function compressionOf(
  opts: BackupOptions,
  defaults: RepositoryDefaults,
): { codec: Codec; level: number | undefined; frameSize: number; levelFromRepository: boolean } {
  const repoCodec = defaults?.compression ?? 'zstd';
  const codec = opts.codec ?? repoCodec;
  const levelFromRepository = opts.level === undefined && codec === repoCodec && defaults?.level !== undefined;
  const level = opts.level ?? (levelFromRepository ? defaults!.level : undefined);
  return { codec, level, frameSize: opts.frameSize ?? defaults?.frameSize ?? DEFAULT_FRAME_SIZE, levelFromRepository };
}

/** checkLevel for the codec and level a backup into a repository with these defaults would use. */
export function checkRepositoryLevel(opts: BackupOptions, defaults: RepositoryDefaults): void {
  const { codec, level, levelFromRepository } = compressionOf(opts, defaults);
  checkLevel(codec, level, {
    codec:
      opts.codec !== undefined
        ? opts.compressionOrigin?.codec
        : defaults?.compression !== undefined
          ? "the repository's default, config.json defaults.compression"
          : undefined,
    level: levelFromRepository ? "the repository's default level {level} (config.json defaults.level)" : opts.compressionOrigin?.level,
  });
}
