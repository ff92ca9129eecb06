import { homedir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.ts';
import { parsePositiveDuration } from '../config/size.ts';
import { LocalStore } from './local.ts';
import type { Store } from './store.ts';

/** Where a repository lives, as parsed from --repo. */
export type RepositoryUrl =
  | { kind: 's3'; bucket: string; /** '' = bucket root; no slash at either end */ prefix: string }
  | { kind: 'local'; /** absolute */ path: string };

/** The store options a resolved configuration gives (every command opens its store with these). */
export function storeOptionsOf(cfg: {
  endpoint?: string | undefined;
  region?: string | undefined;
  profile?: string | undefined;
  sse?: 'AES256' | 'aws:kms' | undefined;
  sseKmsKeyId?: string | undefined;
  stallTimeout?: string | number | undefined;
}): OpenStoreOptions {
  return {
    endpoint: cfg.endpoint,
    region: cfg.region,
    profile: cfg.profile,
    sse: cfg.sse,
    sseKmsKeyId: cfg.sseKmsKeyId,
    stallTimeoutMs: cfg.stallTimeout === undefined ? undefined : parsePositiveDuration(cfg.stallTimeout, '--stall-timeout'),
  };
}

export interface OpenStoreOptions {
  endpoint?: string | undefined;
  region?: string | undefined;
  profile?: string | undefined;
  /** S3 server-side encryption on every upload (ignored by local stores, which have none). */
  sse?: 'AES256' | 'aws:kms' | undefined;
  sseKmsKeyId?: string | undefined;
  /** S3: give up after this long without a byte moving while waiting on the endpoint (S3StoreOptions.stallTimeoutMs). */
  stallTimeoutMs?: number | undefined;
}

const FORMS_HINT = 'use s3://BUCKET/PREFIX, file:///ABSOLUTE/PATH, or a directory path';

/**
 * Parse a repository location: `s3://bucket/prefix`, `s3://bucket`, `file:///abs/path`, or a
 * plain relative or absolute path (resolved against the current directory now, so later
 * chdirs do not move the repository). A relative path that looks like a mistyped URL
 * ("s3//bucket/x", "s3:bucket") is refused: see mistypedUrl().
 */
export function parseRepositoryUrl(url: string): RepositoryUrl {
  const input = url.trim();
  if (input === '') throw new UsageError('the repository location is empty', { hint: FORMS_HINT });

  const typo = mistypedUrl(input);
  if (typo) throw typo;

  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(input)?.[1]?.toLowerCase();
  if (scheme === 's3') return parseS3(input);
  if (scheme === 'file') return { kind: 'local', path: parseFileUrl(input) };
  // Anything that looks like "scheme://…" is a URL we do not support (gs://, http://, …);
  // "C:\…" or "name:with-colon" without the slashes stays a path.
  if (scheme && input.slice(scheme.length + 1).startsWith('//')) {
    throw new UsageError(`unsupported repository URL scheme "${scheme}:" in ${JSON.stringify(input)}`, {
      hint: scheme === 'http' || scheme === 'https'
        ? 'for an S3-compatible server use --repo s3://BUCKET/PREFIX with --endpoint ' + `${scheme}://HOST:PORT`
        : FORMS_HINT,
    });
  }
  // The shell does not expand "~" inside "--repo=~/x"; do it here.
  const expanded = input === '~' ? homedir() : input.startsWith('~/') ? path.join(homedir(), input.slice(2)) : input;
  return { kind: 'local', path: path.resolve(expanded) };
}

/**
 * A location that starts like a URL with a slip in it: "s3", "file", "http" or "https" (any
 * case), then ":" or ";" not forming "scheme://" ("s3:bucket", "s3:/bucket", "s3;//bucket",
 * "file:/x", "http:host"), or "//" without the colon ("s3//bucket/x", "http//host"), or for
 * "s3" a single "/" ("s3/bucket/x"). Taken as a path, such a slip would back up into a local
 * directory nobody meant, so it is refused, naming the likely intent. A directory that really
 * has such a name is reached with "./" in front, or by its absolute path: only a location
 * that starts with the scheme's letters is checked.
 */
export function mistypedUrl(input: string): UsageError | undefined {
  const m = /^(s3|file|https?)([:;]*)(\/*)(.*)$/is.exec(input);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  const punct = m[2]!;
  const slashes = m[3]!;
  const rest = m[4]!;
  if (punct === ':' && slashes.length >= 2) return undefined; // scheme://…: parsed as a URL
  if (punct === '' && slashes.length < (scheme === 's3' ? 1 : 2)) return undefined; // "s3-data", "file/x": a name
  const hint = `to use a local directory of that name, write ./${input} (or its absolute path)`;
  if (scheme === 's3') {
    const intent = rest ? `s3://${rest}` : 's3://BUCKET/PREFIX';
    return new UsageError(`malformed S3 repository URL ${JSON.stringify(input)}: did you mean ${intent}?`, { hint });
  }
  if (scheme === 'file') {
    const intent = slashes ? `file:///${rest}` : `file:///ABSOLUTE/PATH, or just ${rest || 'the path'}`;
    return new UsageError(`malformed file URL ${JSON.stringify(input)}: did you mean ${intent}?`, { hint });
  }
  // http(s): S3-compatible servers are given with --endpoint, the repository as s3://.
  const host = rest.split('/')[0] || 'HOST:PORT';
  const where = rest.slice(host.length).replace(/^\/+|\/+$/g, '');
  return new UsageError(`malformed repository location ${JSON.stringify(input)}: did you mean --endpoint ${scheme}://${host} --repo s3://${where || 'BUCKET/PREFIX'}?`, {
    hint: `an S3-compatible server is given with --endpoint ${scheme}://HOST:PORT and the repository with --repo s3://BUCKET/PREFIX; ${hint}`,
  });
}

function parseS3(input: string): RepositoryUrl {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/i.exec(input);
  if (!m) {
    throw new UsageError(`malformed S3 repository URL ${JSON.stringify(input)}`, { hint: 'write it as s3://BUCKET/PREFIX' });
  }
  const bucket = m[1] ?? '';
  if (bucket === '') {
    throw new UsageError(`S3 repository URL ${JSON.stringify(input)} names no bucket`, { hint: 'write it as s3://BUCKET/PREFIX' });
  }
  if (bucket.includes(':') || bucket.includes('@')) {
    throw new UsageError(`S3 repository URL ${JSON.stringify(input)} has a host or port where the bucket goes`, {
      hint: 'give the server with --endpoint http://HOST:PORT and the repository as s3://BUCKET/PREFIX',
    });
  }
  // Loose on purpose: old us-east-1 buckets and some S3-compatible servers allow upper case and
  // underscores; the server has the last word.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/.test(bucket)) {
    throw new UsageError(`"${bucket}" is not a valid S3 bucket name`, {
      hint: 'bucket names are 3-63 characters of lower-case letters, digits, dots and hyphens',
    });
  }
  // Empty segments ("a//b", trailing "/") are almost always typing slips; "." and ".." would be
  // literal key parts on S3 but mean something else everywhere else.
  const segments = (m[2] ?? '').split('/').filter((s) => s !== '');
  if (segments.some((s) => s === '.' || s === '..')) {
    throw new UsageError(`S3 prefix in ${JSON.stringify(input)} must not contain "." or ".." parts`, {
      hint: 'write it as s3://BUCKET/PREFIX',
    });
  }
  return { kind: 's3', bucket, prefix: segments.join('/') };
}

function parseFileUrl(input: string): string {
  // "file:backups" would parse as /backups: a relative file URL is a mistake, not a path.
  if (!/^file:\//i.test(input)) {
    throw new UsageError(`malformed file URL ${JSON.stringify(input)}`, {
      hint: 'write it as file:///ABSOLUTE/PATH (three slashes), or give the path itself',
    });
  }
  let p: string;
  try {
    p = fileURLToPath(new URL(input));
  } catch (e) {
    throw new UsageError(`malformed file URL ${JSON.stringify(input)}`, {
      hint: 'write it as file:///ABSOLUTE/PATH (three slashes), or give the path itself',
      cause: e,
    });
  }
  return path.resolve(p);
}

/**
 * Open the store a repository location names. Nothing is contacted until the first call. The
 * AWS SDK is loaded only for s3:// locations (it costs ~30 MB and 0.1 s at start-up).
 */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const repo = parseRepositoryUrl(url);
  if (repo.kind === 'local') {
    if (opts.sse) {
      throw new UsageError(`--sse ${opts.sse} applies to S3 repositories; ${repo.path} is a local directory`, {
        hint: 'drop --sse (or "sse:" in s3backup.yaml) for local repositories',
      });
    }
    return new LocalStore(repo.path);
  }
  const { S3Store } = await import('./s3.ts');
  return new S3Store({
    bucket: repo.bucket,
    prefix: repo.prefix,
    endpoint: opts.endpoint,
    region: opts.region,
    profile: opts.profile,
    sse: opts.sse,
    sseKmsKeyId: opts.sseKmsKeyId,
    stallTimeoutMs: opts.stallTimeoutMs,
  });
}
