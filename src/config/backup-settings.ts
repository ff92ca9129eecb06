import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { setting } from './settings.ts';
import { parseWholeNumber } from '../size.ts';

/** What a backup records and leaves out (the sources are its arguments, or "sources" in the config file). */
export const BackupSettings = z.object({
  /**
   * The host name backups are recorded under (groups, incrementals, retention, history,
   * notifications); default the machine's. Set it where that changes every run (containers, CI).
   */
  host: setting(
    z
      .string()
      .trim()
      .min(1)
      .max(253)
      .regex(/^[^\u0000-\u001f\u007f]+$/, 'no control characters'),
    {
      flag: '--host <name>',
      help: 'record the backup under this host name instead of the machine\'s (env S3BACKUP_HOST, config "host"); set a fixed one in containers and CI, whose host names change every run',
      env: 'S3BACKUP_HOST',
    },
  ).optional(),
  exclude: setting(z.array(z.string().min(1)), {
    flag: '-e, --exclude <glob>',
    help: 'skip matching paths; repeatable. "*.tmp" matches names anywhere, "build/**" paths from the source root',
    repeatable: true,
  }).optional(),
  excludeFile: setting(z.string().min(1), {
    flag: '--exclude-file <file>',
    help: 'read exclude globs from a file, one per line (# comments)',
  }).optional(),
  tags: setting(z.array(z.string().min(1)), { flag: '-t, --tag <tag>', help: 'label the backup; repeatable', repeatable: true }).optional(),
});

/** S3 Object Lock retention for new archives and manifests: both or neither (config "objectLock"). */
export const ObjectLockSettings = z.object({
  days: setting(z.int().min(1).max(36500), {
    flag: '--object-lock-days <n>',
    help: "S3 Object Lock: keep this backup's archive and manifest undeletable for N days (default: the repository's, from init)",
    parse: (v, flag) => parseWholeNumber(v, flag, 1, 36500),
  }),
  mode: setting(z.enum(['GOVERNANCE', 'COMPLIANCE']), {
    flag: '--object-lock-mode <mode>',
    help: 'Object Lock mode with --object-lock-days',
  }),
});

export type ObjectLockValues = z.output<typeof ObjectLockSettings>;

/** A flag's whole number of 0 or more (any numeric form that is one), else a usage error naming the flag. */
const wholeNumber = (v: string, flag: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a whole number, not ${v}`);
  return n;
};

/**
 * When `s3backup backup` makes a full backup instead of an incremental one. Flags only: a
 * scheduled backup keeps the defaults (the backup engine's: no limit on incrementals in a row,
 * a full one after 30 days).
 */
export const FullBackupSettings = z.object({
  fullEvery: setting(z.int().min(0), {
    flag: '--full-every <n>',
    help: 'make a full backup after N incrementals in a row (default: no limit)',
    parse: wholeNumber,
  }).optional(),
  fullAfter: setting(z.int().min(0), {
    flag: '--full-after <days>',
    help: 'make a full backup when the last full one is older than DAYS (default 30; 0 = never)',
    parse: wholeNumber,
  }).optional(),
});
