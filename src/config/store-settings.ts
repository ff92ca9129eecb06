import { z } from 'zod';
import type { Same } from '../schema.ts';
import { parseLimit, parsePositiveDuration, parseWholeNumber } from '../size.ts';
import type { StoreSettingInput } from '../store/open.ts';
import { setting } from './settings.ts';

/**
 * A rate in KiB/s as given: a number in the config file, text from the environment (checked
 * the same way, by store/open.ts, when the store is located).
 */
function kibPerSecond(key: string) {
  return z.union([z.number(), z.string()]).check((ctx) => {
    try {
      parseLimit(ctx.value, key);
    } catch (e) {
      ctx.issues.push({ code: 'custom', message: (e as Error).message.replace(`${key} `, ''), input: ctx.value });
    }
  });
}
/** Each parallel part holds one part buffer (8 MiB by default): 64 of them are half a GiB. */
const MAX_PARALLEL = 64;

/**
 * Where the repository is and how its store is reached: --repo and the S3 settings every command
 * shares. store/open.ts turns them into a RepositoryLocation, parsed once.
 */
export const StoreSettings = z.object({
  repository: setting(z.string().min(1).describe('s3://bucket/prefix, file:///abs/path, or a path'), {
    flag: '-r, --repo <url>',
    help: 'repository: s3://bucket/prefix, file:///path or a directory (env S3BACKUP_REPO, or BUCKET_NAME for s3://$BUCKET_NAME)',
    env: 'S3BACKUP_REPO',
  }).optional(),
  endpoint: setting(z.url().describe('S3-compatible endpoint URL (path-style addressing is used)'), {
    flag: '--endpoint <url>',
    help: 'S3-compatible endpoint, e.g. http://127.0.0.1:7480 (env AWS_ENDPOINT_URL_S3)',
    env: 'AWS_ENDPOINT_URL_S3',
  }).optional(),
  // AWS_REGION and AWS_PROFILE are read by the AWS SDK itself when these are unset.
  region: setting(z.string().min(1), { flag: '--region <name>', help: 'AWS region (env AWS_REGION)' }).optional(),
  profile: setting(z.string().min(1), { flag: '--profile <name>', help: 'AWS profile from ~/.aws/config (env AWS_PROFILE)' }).optional(),
  /** Server-side encryption requested on every S3 upload. */
  sse: setting(z.enum(['AES256', 'aws:kms']), { flag: '--sse <mode>', help: 'S3 server-side encryption on every upload' }).optional(),
  /** KMS key for sse: aws:kms (default: the bucket's / AWS managed key). */
  sseKmsKeyId: setting(z.string().min(1), {
    flag: '--sse-kms-key-id <id>',
    help: 'KMS key for --sse aws:kms (default: the AWS managed key)',
  }).optional(),
  /** Give up after this long without a byte sent or received while waiting on S3 (default 5min), cleanup included. */
  stallTimeout: setting(
    z.union([z.number().positive(), z.string()]).check((ctx) => {
      try {
        parsePositiveDuration(ctx.value, 'stallTimeout');
      } catch (e) {
        ctx.issues.push({ code: 'custom', message: (e as Error).message.replace(/^stallTimeout:? /, ''), input: ctx.value });
      }
    }),
    {
      flag: '--stall-timeout <duration>',
      help: 'S3: give up after this long with nothing sent or received while waiting on the server, retries and cleanup included (default 5min; env S3BACKUP_STALL_TIMEOUT)',
      env: 'S3BACKUP_STALL_TIMEOUT',
    },
  ).optional(),
  /** KiB/s (1 KiB = 1024 bytes) over every upload (PUT and multipart parts, or local writes). */
  limitUpload: setting(kibPerSecond('limitUpload'), {
    flag: '--limit-upload <KiB/s>',
    help: 'send at most this many KiB per second, averaged over each transfer (env S3BACKUP_LIMIT_UPLOAD)',
    env: 'S3BACKUP_LIMIT_UPLOAD',
    parse: (v, flag) => parseLimit(v, flag),
  }).optional(),
  /** KiB/s over every download (whole objects and ranged reads, or local reads). */
  limitDownload: setting(kibPerSecond('limitDownload'), {
    flag: '--limit-download <KiB/s>',
    help: 'receive at most this many KiB per second, averaged over each transfer (env S3BACKUP_LIMIT_DOWNLOAD)',
    env: 'S3BACKUP_LIMIT_DOWNLOAD',
    parse: (v, flag) => parseLimit(v, flag),
  }).optional(),
  /** S3 parts of one upload in flight at once, and archives verify --read-data-subset reads at once (default 2). */
  parallel: setting(z.int().min(1).max(MAX_PARALLEL), {
    flag: '--parallel <n>',
    help: `S3 parts uploaded at once per upload, and archives read at once by verify --read-data-subset (1-${MAX_PARALLEL}, default 2; each upload holds about (N + 1) × 8 MiB)`,
    parse: (v, flag) => parseWholeNumber(v, flag, 1, MAX_PARALLEL),
  }).optional(),
});

export type StoreSettingValues = z.output<typeof StoreSettings>;
// What store/open.ts takes, field for field: a setting added here and not there fails the build.
true satisfies Same<Omit<StoreSettingValues, 'repository'>, StoreSettingInput>;
