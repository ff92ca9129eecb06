import { homedir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.ts';
import { parseLimit, parsePositiveDuration } from '../size.ts';
import { LocalStore } from './local.ts';
import { type TransferLimits, withTransferLimits } from './rate-limit.ts';
import type { Store } from './store.ts';

/** Where a repository lives, as parsed from --repo. */
export type RepositoryUrl =
  | { kind: 's3'; bucket: string /** '' = bucket root; no slash at either end */; prefix: string }
  | { kind: 'local' /** absolute */; path: string };

export interface OpenStoreOptions {
  endpoint?: string | undefined;
  region?: string | undefined;
  profile?: string | undefined;
  /** S3 server-side encryption on every upload (ignored by local stores, which have none). */
  sse?: 'AES256' | 'aws:kms' | undefined;
  sseKmsKeyId?: string | undefined;
  /** S3: give up after this long without a byte moving while waiting on the endpoint (S3StoreOptions.stallTimeoutMs). */
  stallTimeoutMs?: number | undefined;
  /** S3: parts of one upload sent at once (S3StoreOptions.queueSize). */
  parallel?: number | undefined;
}

/**
 * A repository location parsed once, with what it takes to open its store: an S3 bucket and
 * prefix with the S3 settings, or a local directory. openLocation() opens it.
 */
export type RepositoryLocation = (
  | (Extract<RepositoryUrl, { kind: 's3' }> & { options: OpenStoreOptions })
  | Extract<RepositoryUrl, { kind: 'local' }>
) & {
  /** Bandwidth limits on the store's transfers, for either kind (store/rate-limit.ts). */
  limits?: TransferLimits | undefined;
};

/**
 * The store settings as given, besides --repo. Declared by config/store-settings.ts (flags,
 * environment, config keys), whose output type is checked there to be this one: the store sits
 * below config and takes the values without importing the declaration.
 */
export interface StoreSettingInput {
  endpoint?: string | undefined;
  region?: string | undefined;
  profile?: string | undefined;
  sse?: 'AES256' | 'aws:kms' | undefined;
  sseKmsKeyId?: string | undefined;
  /** A duration ("5min") or milliseconds. */
  stallTimeout?: string | number | undefined;
  /** KiB/s, a number or its text (from the environment). */
  limitUpload?: string | number | undefined;
  limitDownload?: string | number | undefined;
  parallel?: number | undefined;
}

/**
 * The store settings (--repo, --endpoint, --sse, …; config/store-settings.ts) as a location:
 * each checked here, once, before anything is contacted.
 */
export function locateRepository(repository: string, settings: StoreSettingInput): RepositoryLocation {
  if (settings.sseKmsKeyId && settings.sse !== 'aws:kms') {
    throw new UsageError('--sse-kms-key-id needs --sse aws:kms', { hint: 'add --sse aws:kms (or sse: aws:kms in s3backup.yaml)' });
  }
  const options: OpenStoreOptions = {
    endpoint: settings.endpoint,
    region: settings.region,
    profile: settings.profile,
    sse: settings.sse,
    sseKmsKeyId: settings.sseKmsKeyId,
    stallTimeoutMs: settings.stallTimeout === undefined ? undefined : parsePositiveDuration(settings.stallTimeout, '--stall-timeout'),
    ...(settings.parallel !== undefined ? { parallel: settings.parallel } : {}),
  };
  const location = locationOf(parseRepositoryUrl(repository), options);
  const limit = (v: string | number | undefined, flag: string) => (v === undefined ? undefined : parseLimit(v, flag));
  const limits = {
    uploadKiBps: limit(settings.limitUpload, '--limit-upload'),
    downloadKiBps: limit(settings.limitDownload, '--limit-download'),
  };
  if (limits.uploadKiBps || limits.downloadKiBps) location.limits = limits;
  return location;
}

function locationOf(url: RepositoryUrl, options: OpenStoreOptions): RepositoryLocation {
  if (url.kind === 's3') return { ...url, options };
  if (options.sse) {
    throw new UsageError(`--sse ${options.sse} applies to S3 repositories; ${url.path} is a local directory`, {
      hint: 'drop --sse (or "sse:" in s3backup.yaml) for local repositories',
    });
  }
  return url;
}

/**
 * The root of another bucket on the same S3 server, with the same store settings (cost --bucket
 * and S3 Inventory reports): read only, so without server-side encryption settings.
 */
export function bucketLocation(of: RepositoryLocation, bucket: string): RepositoryLocation {
  return readOnlyLocation({ kind: 's3', bucket, prefix: '', options: of.kind === 's3' ? of.options : {} });
}

/** The same location for reading only: no server-side encryption settings (the cost job). */
export function readOnlyLocation(loc: RepositoryLocation): RepositoryLocation {
  return loc.kind === 's3' ? { ...loc, options: { ...loc.options, sse: undefined, sseKmsKeyId: undefined } } : loc;
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

  const form = locationForm(input);
  if (form.kind === 'mistyped') throw form.error;
  if (form.kind === 's3') return parseS3(input);
  if (form.kind === 'file') return { kind: 'local', path: parseFileUrl(input) };
  if (form.kind === 'url') {
    const scheme = form.scheme;
    throw new UsageError(`unsupported repository URL scheme "${scheme}:" in ${JSON.stringify(input)}`, {
      hint:
        scheme === 'http' || scheme === 'https'
          ? `for an S3-compatible server use --repo s3://BUCKET/PREFIX with --endpoint ${scheme}://HOST:PORT`
          : FORMS_HINT,
    });
  }
  // The shell does not expand "~" inside "--repo=~/x"; do it here.
  const expanded = input === '~' ? homedir() : input.startsWith('~/') ? path.join(homedir(), input.slice(2)) : input;
  return { kind: 'local', path: path.resolve(expanded) };
}

type LocationForm = { kind: 'mistyped'; error: UsageError } | { kind: 's3' | 'file' | 'path' } | { kind: 'url'; scheme: string };

/** How a location is written, from its start alone: the one place its scheme is looked at. */
function locationForm(input: string): LocationForm {
  const typo = mistypedUrl(input);
  if (typo) return { kind: 'mistyped', error: typo };
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(input)?.[1]?.toLowerCase();
  if (scheme === 's3' || scheme === 'file') return { kind: scheme };
  // Anything that looks like "scheme://…" is a URL we do not support (gs://, http://, …);
  // "C:\…" or "name:with-colon" without the slashes stays a path.
  if (scheme && input.slice(scheme.length + 1).startsWith('//')) return { kind: 'url', scheme };
  return { kind: 'path' };
}

/**
 * A location written as a path, relative or absolute (not a URL, nor a mistyped one): the
 * config file's relative paths are rebased on its directory.
 */
export function isPathLocation(location: string): boolean {
  return locationForm(location.trim()).kind === 'path';
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
function mistypedUrl(input: string): UsageError | undefined {
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
  return new UsageError(
    `malformed repository location ${JSON.stringify(input)}: did you mean --endpoint ${scheme}://${host} --repo s3://${where || 'BUCKET/PREFIX'}?`,
    {
      hint: `an S3-compatible server is given with --endpoint ${scheme}://HOST:PORT and the repository with --repo s3://BUCKET/PREFIX; ${hint}`,
    },
  );
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
export async function openLocation(loc: RepositoryLocation): Promise<Store> {
  if (loc.kind === 'local') return withTransferLimits(new LocalStore(loc.path), loc.limits);
  const { S3Store } = await import('./s3.ts');
  const o = loc.options;
  const store = new S3Store({
    bucket: loc.bucket,
    prefix: loc.prefix,
    endpoint: o.endpoint,
    region: o.region,
    profile: o.profile,
    sse: o.sse,
    sseKmsKeyId: o.sseKmsKeyId,
    stallTimeoutMs: o.stallTimeoutMs,
    ...(o.parallel ? { queueSize: o.parallel } : {}),
  });
  return withTransferLimits(store, loc.limits);
}

/** openLocation() for a location as written (a library call; the CLI locates once, in setup). */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  return openLocation(locationOf(parseRepositoryUrl(url), opts));
}
