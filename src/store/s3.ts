import { createHash, randomBytes } from 'node:crypto';
import { Readable, Transform, pipeline } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  GetBucketLifecycleConfigurationCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadBucketCommand,
  ListObjectVersionsCommand,
  HeadObjectCommand,
  RestoreObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { AlreadyExistsError, IntegrityError, NotFoundError, S3BackupError, StoreAccessError, UsageError } from '../errors.ts';
import { readAll } from './store.ts';
import type {
  BucketCapability,
  ByteRange,
  LifecycleRule,
  LockedVersion,
  MultipartUploadInfo,
  ObjectInfo,
  ObjectLockStatus,
  ProbeResult,
  PutOptions,
  Store,
  StoreCapabilities,
  ThawCapability,
  UploadsCapability,
  VersionsCapability,
} from './store.ts';
import { DEFAULT_PART_SIZE, DEFAULT_QUEUE_SIZE, MIN_PART_SIZE, uploadShape } from './s3-parts.ts';
import { PartBuffers, StreamUpload } from './s3-multipart.ts';
import {
  addWatchMiddleware,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_STALL_TIMEOUT_MS,
  NetworkWatch,
  resumableBody,
  watchedRequestHandler,
} from './s3-network.ts';

/** DeleteObjects takes at most 1000 keys per request. */
const DELETE_BATCH = 1000;

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix of the repository inside the bucket; '' for the bucket root. Slashes at either end are ignored. */
  prefix?: string;
  /** S3-compatible endpoint URL (Ceph, MinIO…); default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS itself. */
  endpoint?: string | undefined;
  /** Default: AWS_REGION, the profile's region in ~/.aws/config, AWS_DEFAULT_REGION, then us-east-1. */
  region?: string | undefined;
  /** Named profile of ~/.aws/{config,credentials}; default AWS_PROFILE. */
  profile?: string | undefined;
  /** Explicit credentials (tests); default the SDK's credential chain. */
  credentials?: S3ClientConfig['credentials'];
  /** Multipart part size for stream puts; default 8 MiB (DEFAULT_PART_SIZE), minimum 5 MiB. */
  partSize?: number;
  /** Parts uploaded in parallel per stream put; default 2 (DEFAULT_QUEUE_SIZE). */
  queueSize?: number;
  /** Server-side encryption asked for on every upload (PutObject, CreateMultipartUpload). */
  sse?: 'AES256' | 'aws:kms' | undefined;
  /** KMS key for sse 'aws:kms' (default: the AWS managed key). */
  sseKmsKeyId?: string | undefined;
  /**
   * A request whose connection stays silent this long (nothing sent, nothing received, the
   * response body included) is abandoned, then retried like any failed request; default
   * SOCKET_TIMEOUT_MS. Slow transfers are not cut: only silence counts.
   */
  socketTimeoutMs?: number | undefined;
  /**
   * The whole store gives up after this long without a byte sent or received while it waits
   * on the endpoint, retries and cleanup included (see NetworkWatch); default
   * DEFAULT_STALL_TIMEOUT_MS. Per-attempt silence is capped at half of it.
   */
  stallTimeoutMs?: number | undefined;
}

/** Default S3StoreOptions.socketTimeoutMs: 2 minutes of silence, far beyond any S3 answer. */
export const SOCKET_TIMEOUT_MS = 120_000;

/** Errors of the network layer: the request never got an HTTP answer. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'ECONNRESET',
  'EPIPE',
  'EPROTO',
  'CERT_HAS_EXPIRED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

type Op = 'put' | 'get' | 'head' | 'list' | 'delete' | 'probe' | 'list uploads' | 'abort upload' | 'restore' | 'lifecycle';

/** What an operation does, and the IAM action it needs (named in access-denied messages). */
const OP_VERB: Record<Op, string> = {
  restore: 'restore objects from archive storage (s3:RestoreObject)',
  lifecycle: "read the bucket's lifecycle configuration (s3:GetLifecycleConfiguration)",
  put: 'write objects (s3:PutObject)',
  get: 'read objects (s3:GetObject)',
  head: 'read object metadata (s3:GetObject)',
  list: 'list objects (s3:ListBucket)',
  delete: 'delete objects (s3:DeleteObject)',
  probe: 'access the bucket (s3:ListBucket)',
  'list uploads': 'list multipart uploads (s3:ListBucketMultipartUploads)',
  'abort upload': 'abort multipart uploads (s3:AbortMultipartUpload)',
};

/**
 * The resource pattern, relative to the repository, that a delete of `key` needs in an IAM
 * policy: its folder ("snapshots/*", "history/runs/*"), or for the write probe ".probe-*".
 */
function deleteResource(key: string): string {
  const slash = key.lastIndexOf('/');
  if (slash >= 0) return `${key.slice(0, slash + 1)}*`;
  return key.startsWith('.probe-') ? '.probe-*' : key;
}

/**
 * A repository in an S3 bucket (AWS or S3-compatible), under an optional key prefix.
 *
 * Configuration follows the AWS conventions so that an existing AWS setup just works: the SDK's
 * default credential chain (env, AWS_PROFILE, SSO, instance roles…), AWS_REGION, and
 * AWS_ENDPOINT_URL_S3 for other servers. SDK errors are translated into the project's errors
 * (NotFoundError, AlreadyExistsError, StoreAccessError with a hint) in every operation.
 */
export class S3Store implements Store, ThawCapability, BucketCapability, VersionsCapability, UploadsCapability {
  readonly bucket: string;
  /** Normalised prefix without slashes at either end ('' = bucket root). */
  readonly prefix: string;
  readonly location: string;
  /** Custom endpoint (without any user:password part), or undefined for AWS. */
  readonly endpoint: string | undefined;
  readonly client: S3Client;
  private readonly root: string;
  private readonly partSize: number;
  private readonly queueSize: number;
  /** Buffers of stream puts' parts, reused from one upload to the next (s3-multipart.ts). */
  private readonly partBuffers: PartBuffers;
  private readonly profile: string | undefined;
  private readonly explicitCredentials: boolean;
  private readonly sseParams: { ServerSideEncryption?: 'AES256' | 'aws:kms'; SSEKMSKeyId?: string };
  private regionPromise: Promise<string> | undefined;
  /** The endpoint has answered a request of this store (any HTTP status): see translate(). */
  private answered = false;
  /** Silence on this store's connections: one bound for the whole command (s3-network.ts). */
  private readonly watch: NetworkWatch;

  constructor(opts: S3StoreOptions) {
    if (!opts.bucket) throw new UsageError('an S3 repository needs a bucket name', { hint: 'use --repo s3://BUCKET/PREFIX' });
    this.bucket = opts.bucket;
    this.prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.root = this.prefix ? `${this.prefix}/` : '';
    this.location = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.partSize = opts.partSize ?? DEFAULT_PART_SIZE;
    this.queueSize = opts.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (this.partSize < MIN_PART_SIZE) throw new UsageError(`S3 part size must be at least 5 MiB (got ${this.partSize} bytes)`);
    if (!(this.queueSize >= 1)) throw new UsageError(`S3 upload queue size must be at least 1 (got ${this.queueSize})`);
    this.partBuffers = new PartBuffers(this.queueSize + 1);

    this.profile = opts.profile || process.env.AWS_PROFILE || undefined;
    if (opts.sseKmsKeyId && opts.sse !== 'aws:kms') throw new UsageError('an SSE KMS key id needs server-side encryption aws:kms');
    this.sseParams = {
      ...(opts.sse ? { ServerSideEncryption: opts.sse } : {}),
      ...(opts.sseKmsKeyId ? { SSEKMSKeyId: opts.sseKmsKeyId } : {}),
    };
    this.explicitCredentials = opts.credentials !== undefined;
    const endpoint = opts.endpoint || process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined;
    let endpointUrl: URL | undefined;
    if (endpoint) {
      endpointUrl = URL.canParse(endpoint) ? new URL(endpoint) : undefined;
      if (!endpointUrl || (endpointUrl.protocol !== 'http:' && endpointUrl.protocol !== 'https:')) {
        throw new UsageError(`invalid S3 endpoint URL ${JSON.stringify(endpoint)}`, {
          hint: 'give the scheme, host and port, e.g. --endpoint http://127.0.0.1:9000',
        });
      }
    }
    // Error messages show the endpoint, so drop any user:password someone put in the URL.
    this.endpoint = endpointUrl ? `${endpointUrl.protocol}//${endpointUrl.host}${endpointUrl.pathname.replace(/\/$/, '')}` : undefined;

    const stallMs = opts.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    this.watch = new NetworkWatch(stallMs, () => this.endpoint ?? 'AWS S3');
    const config: S3ClientConfig = {
      region: opts.region || (() => (this.regionPromise ??= defaultRegion(this.profile))),
      // Fail within seconds on a black-holed address instead of the kernel's minutes-long TCP
      // timeout; and never wait forever on a server that accepted a request and went silent.
      requestHandler: watchedRequestHandler(this.watch, {
        connectionTimeout: Math.min(10_000, stallMs),
        socketTimeout: Math.min(opts.socketTimeoutMs ?? SOCKET_TIMEOUT_MS, Math.ceil(stallMs / 2)),
      }),
      ...(process.env.AWS_MAX_ATTEMPTS ? {} : { maxAttempts: DEFAULT_MAX_ATTEMPTS }),
    };
    if (this.profile) config.profile = this.profile;
    if (opts.credentials !== undefined) config.credentials = opts.credentials;
    if (endpoint) {
      // S3-compatible servers: path-style addressing (no per-bucket DNS names), and no
      // aws-chunked/CRC32 trailers on uploads, which SDK >= 3.729 sends by default and Ceph
      // rejects with 411 (others store the framing as data).
      config.endpoint = endpoint;
      config.forcePathStyle = true;
      config.requestChecksumCalculation = 'WHEN_REQUIRED';
      config.responseChecksumValidation = 'WHEN_REQUIRED';
    } else {
      // On AWS the region we sign with may not be the bucket's (us-east-1 fallback); let the SDK
      // follow the 301 to the right one instead of failing.
      config.followRegionRedirects = true;
    }
    this.client = new S3Client(config);
    addWatchMiddleware(this.client, this.watch);
    noteAnswers(this.client, () => {
      this.answered = true;
    });
    rejectNonS3Answers(this.client);
    addDeleteObjectsContentMd5(this.client);
  }

  private objectKey(key: string): string {
    if (key === '' || key.startsWith('/') || key.split('/').some((p) => p === '..' || p === '.' || p === '')) {
      throw new S3BackupError(`invalid object key: ${JSON.stringify(key)}`);
    }
    return this.root + key;
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    const Key = this.objectKey(key);
    if (Buffer.isBuffer(body)) return this.putBuffer(key, Key, body, opts);
    if (opts.createOnly) {
      // S3 has no create-only multipart upload that works everywhere; callers buffer small
      // objects (locks, snapshots) for this.
      throw new S3BackupError(`create-only put of ${key} needs a Buffer body, not a stream`);
    }
    return this.putStream(key, Key, body, opts);
  }

  private async putBuffer(key: string, Key: string, body: Buffer, opts: PutOptions): Promise<void> {
    const input = {
      Bucket: this.bucket,
      Key,
      Body: body,
      // Lets any S3 server reject a body damaged in transit (the SDK adds no checksum for
      // S3-compatible endpoints, see the constructor).
      ContentMD5: createHash('md5').update(body).digest('base64'),
      ...(opts.createOnly ? { IfNoneMatch: '*' } : {}),
      ...(opts.storageClass ? { StorageClass: opts.storageClass as PutObjectCommand['input']['StorageClass'] } : {}),
      ...(opts.contentType ? { ContentType: opts.contentType } : {}),
      ...this.sseParams,
      ...retentionParams(opts),
    };
    // AWS answers 409 ConditionalRequestConflict while another conditional write of the key is
    // in flight; once that one finishes, a retry gets the real answer (200 or 412).
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.send(new PutObjectCommand(input));
        return;
      } catch (e) {
        const code = errorCode(e);
        if (opts.createOnly && code === 'ConditionalRequestConflict' && attempt < 5) {
          await new Promise((r) => setTimeout(r, 200 * attempt));
          continue;
        }
        if (opts.createOnly && (code === 'PreconditionFailed' || httpStatus(e) === 412)) {
          // If the SDK retried (e.g. the first answer was lost), the object may be our own
          // first attempt: same bytes means the write succeeded.
          if ((metadataOf(e)?.attempts ?? 1) > 1 && (await this.sameContent(key, body))) return;
          throw new AlreadyExistsError(key, this.location);
        }
        throw this.translate(e, 'put', key);
      }
    }
  }

  private async sameContent(key: string, body: Buffer): Promise<boolean> {
    try {
      const info = await this.head(key);
      if (!info || info.size !== body.length) return false;
      return (await readAll(await this.get(key))).equals(body);
    } catch {
      return false;
    }
  }

  private async putStream(key: string, Key: string, body: Readable, opts: PutOptions): Promise<void> {
    // Within S3's 10,000-part limit when the caller says the object may be huge.
    const shape = uploadShape(opts.sizeHint, this.partSize, this.queueSize);
    const upload = new StreamUpload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key,
        ...(opts.storageClass ? { StorageClass: opts.storageClass as PutObjectCommand['input']['StorageClass'] } : {}),
        ...(opts.contentType ? { ContentType: opts.contentType } : {}),
        // Given to CreateMultipartUpload, which is where S3 takes them for the whole object.
        ...this.sseParams,
        ...retentionParams(opts),
      },
      shape,
      buffers: this.partBuffers,
      putWhole: (whole) => this.putBuffer(key, Key, whole, { ...opts, createOnly: false }),
      onConsumed: opts.onConsumed,
    });
    try {
      await upload.run(body);
    } catch (e) {
      // CompleteMultipartUpload done, its answer lost: the SDK's retry finds the upload gone
      // (NoSuchUpload), and the object is there whole.
      const lostAnswer = upload.completing && errorCode(e) === 'NoSuchUpload';
      if (!(lostAnswer && (await this.head(key).catch(() => undefined))?.size === upload.sent)) {
        const error = this.translate(e, 'put', key);
        // Its producer stops on this error rather than waits; the caller also has it from put()'s
        // rejection, so an 'error' event nobody listens for must not end the process.
        body.on('error', () => {});
        body.destroy(error instanceof Error ? error : new Error(String(error)));
        throw error;
      }
    }
    // A server that mangles uploads (e.g. stores the aws-chunked framing as data) shows up as a
    // size mismatch; catch it now rather than at restore time.
    const info = await this.head(key);
    if (!info) throw new IntegrityError(`${this.location}: ${key} is missing right after its upload completed`);
    if (info.size !== upload.sent) {
      throw new IntegrityError(`${this.location}: ${key} holds ${info.size} bytes after uploading ${upload.sent}`, {
        hint: 'the S3 server stored the upload wrongly; check its compatibility (checksum settings) or use another server',
      });
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const Key = this.objectKey(key);
    // An empty range needs no request (and "bytes=5-4" is not a valid Range header).
    if (range && range.end <= range.start) {
      if (!(await this.head(key))) throw new NotFoundError(key, this.location);
      return Readable.from([]);
    }
    let res;
    try {
      res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key,
          ...(range ? { Range: `bytes=${range.start}-${range.end - 1}` } : {}),
        }),
      );
    } catch (e) {
      // 416: the range starts at or past the end of the object. A file read there yields
      // nothing, and so does LocalStore; keep the two alike.
      if (range && (errorCode(e) === 'InvalidRange' || httpStatus(e) === 416)) return Readable.from([]);
      throw this.translate(e, 'get', key);
    }
    // In Node the SDK's body is the http.IncomingMessage (a Readable) with helper mixins.
    const first = res.Body as Readable;
    const start = range?.start ?? 0;
    const length = res.ContentLength;
    // A body cut by the network is taken up where it broke off (the same version of the object:
    // If-Match its ETag), so one reset does not fail a restore of many GiB.
    const body =
      length === undefined
        ? first
        : resumableBody({
            first,
            length,
            watch: this.watch,
            refetch: (offset) => this.getRest(key, Key, start + offset, start + length, res.ETag),
            lost: (cause, attempts) => this.lostDownload(key, cause, attempts),
          });
    // A whole single-part object's ETag is the MD5 of its bytes (not with SSE-KMS/SSE-C, nor
    // for multipart uploads, whose ETag ends in -N): check what arrives against it.
    const etag = /^"([0-9a-f]{32})"$/.exec(res.ETag ?? '')?.[1];
    if (range || !etag || res.ServerSideEncryption === 'aws:kms' || res.ServerSideEncryption === 'aws:kms:dsse' || res.SSECustomerAlgorithm)
      return body;
    const md5 = createHash('md5');
    const where = this.location;
    const checked = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        md5.update(chunk);
        cb(null, chunk);
      },
      flush(cb) {
        const got = md5.digest('hex');
        cb(
          got === etag
            ? null
            : new IntegrityError(
                `${where}: ${key} arrived with MD5 ${got}, but S3 stored it with ETag ${etag} (damaged in transit or at rest)`,
              ),
        );
      },
    });
    pipeline(body, checked, () => {});
    return checked;
  }

  /** Bytes [from, to) of the object a download is reading, for resumableBody. */
  private async getRest(key: string, Key: string, from: number, to: number, etag: string | undefined): Promise<Readable> {
    let res;
    try {
      res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key, Range: `bytes=${from}-${to - 1}`, ...(etag ? { IfMatch: etag } : {}) }),
      );
    } catch (e) {
      if (errorCode(e) === 'PreconditionFailed' || httpStatus(e) === 412) {
        throw new IntegrityError(`${this.location}: ${key} was replaced while it was being read`, { hint: 'run the command again' });
      }
      throw this.translate(e, 'get', key);
    }
    const body = res.Body as Readable;
    if (res.ContentLength !== undefined && res.ContentLength !== to - from) {
      body.destroy();
      throw new IntegrityError(`${this.location}: ${key} answered a re-read of bytes ${from}-${to - 1} with ${res.ContentLength} bytes`);
    }
    return body;
  }

  private lostDownload(key: string, cause: Error, attempts: number): S3BackupError {
    return new StoreAccessError(
      `lost the connection to S3 endpoint ${this.endpoint ?? 'AWS S3'} while reading ${this.location}/${key} ` +
        `(${firstLine(cause.message) || 'connection cut'}; ${attempts} tries)`,
      { cause, exitCode: 1, hint: 'a network failure or a server outage; run the command again once it is reachable' },
    );
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const Key = this.objectKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return {
        key,
        size: res.ContentLength ?? 0,
        lastModified: res.LastModified ?? new Date(0),
        storageClass: res.StorageClass ?? 'STANDARD',
        // x-amz-restore: ongoing-request="true" while the copy is made; "false" (with an
        // expiry-date) once it can be read.
        ...(res.Restore ? { restore: /ongoing-request="true"/.test(res.Restore) ? ('ongoing' as const) : ('available' as const) } : {}),
      };
    } catch (e) {
      const code = errorCode(e);
      if (code === 'NotFound' || code === 'NoSuchKey') return undefined;
      throw this.translate(e, 'head', key);
    }
  }

  /** RestoreObject: a temporary readable copy of an archived object, for `days` days. */
  async requestRestore(
    key: string,
    opts: { days: number; tier: 'Bulk' | 'Standard' | 'Expedited' },
  ): Promise<'requested' | 'already-ongoing'> {
    const Key = this.objectKey(key);
    try {
      await this.client.send(
        new RestoreObjectCommand({
          Bucket: this.bucket,
          Key,
          RestoreRequest: { Days: opts.days, GlacierJobParameters: { Tier: opts.tier } },
        }),
      );
      return 'requested';
    } catch (e) {
      if (errorCode(e) === 'RestoreAlreadyInProgress') return 'already-ongoing';
      throw this.translate(e, 'restore', key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const o of this.listBucket(this.root + prefix)) {
      if (!o.key.startsWith(this.root)) continue;
      const key = o.key.slice(this.root.length);
      // "Folder" placeholders made by S3 consoles ("dir/") cannot be Store keys.
      if (key === '' || key.endsWith('/')) continue;
      yield { ...o, key };
    }
  }

  /** Every S3 feature the tool uses: this store implements them itself. */
  capabilities(): StoreCapabilities {
    return { thaw: this, bucket: this, versions: this, uploads: this };
  }

  /** The region requests are signed for: the configured one, else the SDK's default chain. */
  region(): Promise<string> {
    return this.client.config.region();
  }

  /** Bucket key of a repository key. */
  bucketKey(key: string): string {
    return this.root + key;
  }

  /**
   * Every object of the bucket whose (bucket) key starts with prefix, outside the repository
   * prefix too (the cost analyzer's --bucket). Keys are bucket keys, "folder" markers included.
   */
  async *listBucket(prefix: string): AsyncIterable<ObjectInfo> {
    let ContinuationToken: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken }));
      } catch (e) {
        throw this.translate(e, 'list', prefix);
      }
      // S3 lists in ascending UTF-8 byte order, the order the Store interface promises.
      for (const o of res.Contents ?? []) {
        if (!o.Key) continue;
        yield {
          key: o.Key,
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
          storageClass: o.StorageClass ?? 'STANDARD',
        };
      }
      ContinuationToken = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  /**
   * The bucket's lifecycle rules (GetBucketLifecycleConfiguration), reduced to prefix, size and
   * tag filters, transitions by days and expiration by days; [] when the bucket has none.
   */
  async getLifecycleRules(): Promise<LifecycleRule[]> {
    let res;
    try {
      res = await this.client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: this.bucket }));
    } catch (e) {
      if (errorCode(e) === 'NoSuchLifecycleConfiguration') return [];
      throw this.translate(e, 'lifecycle');
    }
    return (res.Rules ?? []).map((r) => {
      const ignored: string[] = [];
      const f = r.Filter;
      const and = f?.And;
      // Prefix: the filter's, the And's, or the rule's own (the deprecated form some servers return).
      const prefix = f?.Prefix ?? and?.Prefix ?? (r as { Prefix?: string }).Prefix ?? '';
      const tagFilter = !!(f?.Tag || and?.Tags?.length);
      const transitions: { days: number; storageClass: string }[] = [];
      for (const t of r.Transitions ?? []) {
        if (t.Days !== undefined && t.StorageClass) transitions.push({ days: t.Days, storageClass: t.StorageClass });
        else if (t.Date) ignored.push(`transition on a date (${t.Date.toISOString().slice(0, 10)})`);
      }
      transitions.sort((a, b) => a.days - b.days);
      if (r.Expiration?.Date) ignored.push('expiration on a date');
      if (r.NoncurrentVersionTransitions?.length || r.NoncurrentVersionExpiration) ignored.push('noncurrent versions');
      if (r.AbortIncompleteMultipartUpload) ignored.push('incomplete multipart uploads');
      return {
        id: r.ID,
        enabled: r.Status === 'Enabled',
        prefix,
        tagFilter,
        sizeGreaterThan: f?.ObjectSizeGreaterThan ?? and?.ObjectSizeGreaterThan,
        sizeLessThan: f?.ObjectSizeLessThan ?? and?.ObjectSizeLessThan,
        transitions,
        expirationDays: r.Expiration?.Days,
        ignored,
      };
    });
  }

  async delete(keys: string[]): Promise<void> {
    const objectKeys = keys.map((k) => this.objectKey(k));
    const failed: { key: string; code: string; message: string }[] = [];
    for (let i = 0; i < objectKeys.length; i += DELETE_BATCH) {
      const batch = objectKeys.slice(i, i + DELETE_BATCH);
      let res;
      try {
        res = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            // Quiet: the answer lists only the failures.
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
      } catch (e) {
        // The whole request refused (some servers check s3:DeleteObject once per request): every
        // key of it counts as denied, reported below with the others.
        if (errorCode(e) !== 'AccessDenied') throw this.translate(e, 'delete', batch[0]);
        for (const Key of batch) failed.push({ key: Key.slice(this.root.length), code: 'AccessDenied', message: '' });
        continue;
      }
      for (const err of res.Errors ?? []) {
        // Deleting a missing key is not an error in S3; be lenient with servers that say otherwise.
        if (err.Code === 'NoSuchKey') continue;
        failed.push({
          key: (err.Key ?? '').slice(this.root.length),
          code: err.Code ?? 'Unknown',
          message: err.Message ?? '',
        });
      }
    }
    if (failed.length === 0) return;
    const sample = failed
      .slice(0, 3)
      .map((f) => `${f.key} (${f.code}${f.message && f.message !== f.code ? `: ${f.message}` : ''})`)
      .join(', ');
    if (failed.every((f) => f.code === 'AccessDenied')) {
      // Name the permission and the resources it is missing on, as an IAM policy would say them.
      const resources = [...new Set(failed.map((f) => `arn:aws:s3:::${this.bucket}/${this.root}${deleteResource(f.key)}`))];
      throw new StoreAccessError(
        `access denied: these S3 credentials may not ${OP_VERB.delete} in ${this.where()}: ${failed.length} of ${keys.length} refused: ${sample}${failed.length > 3 ? ', …' : ''}`,
        {
          hint: `grant s3:DeleteObject on ${resources.slice(0, 4).join(', ')}${resources.length > 4 ? ', …' : ''} (docs/deploy.md: "What each role may do")`,
        },
      );
    }
    throw new S3BackupError(
      `${this.location}: could not delete ${failed.length} of ${keys.length} objects: ${sample}${failed.length > 3 ? ', …' : ''}`,
    );
  }

  async probe(): Promise<ProbeResult | undefined> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (e) {
      // HeadBucket errors carry no body, so a 403 cannot tell "unknown key" from "wrong secret"
      // from "no permission"; a listing's error does.
      if (httpStatus(e) === 403 || errorCode(e) === 'Unknown') {
        try {
          await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.root, MaxKeys: 1 }));
        } catch (e2) {
          throw this.translate(e2, 'probe');
        }
      }
      throw this.translate(e, 'probe');
    }
    // Writing is what a backup needs: prove it with a small object, then delete it again. That
    // delete is housekeeping: credentials that may write but not delete can still back up.
    const key = `.probe-${randomBytes(8).toString('hex')}`;
    await this.put(key, Buffer.from('s3backup write probe\n'));
    try {
      await this.delete([key]);
    } catch (e) {
      if (!(e instanceof StoreAccessError)) throw e;
      return { warnings: [`the write probe ${this.location}/${key} was left behind: ${e.message}; ${e.hint}`] };
    }
  }

  /**
   * Whether the bucket has Object Lock enabled (and its default retention, if any). Servers that
   * do not implement Object Lock count as "not enabled".
   */
  async objectLockStatus(): Promise<ObjectLockStatus> {
    try {
      const r = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
      const c = r.ObjectLockConfiguration;
      const d = c?.Rule?.DefaultRetention;
      return {
        enabled: c?.ObjectLockEnabled === 'Enabled',
        ...(d ? { defaultRetention: { mode: d.Mode, days: d.Days, years: d.Years } } : {}),
      };
    } catch (e) {
      const code = errorCode(e);
      if (
        code === 'ObjectLockConfigurationNotFoundError' ||
        code === 'NotImplemented' ||
        code === 'InvalidRequest' ||
        httpStatus(e) === 404
      ) {
        return { enabled: false };
      }
      throw this.translate(e, 'probe');
    }
  }

  /**
   * Versioned (Object Lock) buckets: a plain delete only adds a delete marker and the data stays.
   * This removes, under `prefix`, every version that is not current (superseded or behind a
   * delete marker) and every delete marker, by version id. Versions Object Lock still protects
   * are left and returned, not thrown: they go once their retention ends (a later prune).
   */
  async purgeNoncurrentVersions(
    prefix: string,
    opts: { dryRun?: boolean } = {},
  ): Promise<{ deleted: number; bytes: number; locked: LockedVersion[] }> {
    const Prefix = this.root + prefix;
    const victims: { Key: string; VersionId: string; size: number; marker: boolean }[] = [];
    let KeyMarker: string | undefined;
    let VersionIdMarker: string | undefined;
    for (let page = 0; page < 100_000; page++) {
      let res;
      try {
        res = await this.client.send(new ListObjectVersionsCommand({ Bucket: this.bucket, Prefix, KeyMarker, VersionIdMarker }));
      } catch (e) {
        throw this.translate(e, 'list', prefix);
      }
      for (const v of res.Versions ?? []) {
        if (v.Key && v.VersionId && v.VersionId !== 'null' && !v.IsLatest)
          victims.push({ Key: v.Key, VersionId: v.VersionId, size: v.Size ?? 0, marker: false });
      }
      for (const m of res.DeleteMarkers ?? []) {
        if (m.Key && m.VersionId) victims.push({ Key: m.Key, VersionId: m.VersionId, size: 0, marker: true });
      }
      if (!res.IsTruncated) break;
      KeyMarker = res.NextKeyMarker;
      VersionIdMarker = res.NextVersionIdMarker;
    }
    const locked: LockedVersion[] = [];
    let deleted = 0;
    let bytes = 0;
    const markers = victims.filter((v) => v.marker);
    const versions = victims.filter((v) => !v.marker);
    if (opts.dryRun) return { deleted: victims.length, bytes: versions.reduce((n, v) => n + v.size, 0), locked };
    const deleteBatch = async (batch: typeof victims): Promise<void> => {
      let res;
      try {
        res = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map(({ Key, VersionId }) => ({ Key, VersionId })), Quiet: true },
          }),
        );
      } catch (e) {
        throw this.translate(e, 'delete', batch[0]!.Key.slice(this.root.length));
      }
      const failed = new Map((res.Errors ?? []).map((e) => [`${e.Key}\0${e.VersionId}`, e]));
      for (const v of batch) {
        const err = failed.get(`${v.Key}\0${v.VersionId}`);
        if (!err) {
          deleted++;
          bytes += v.size;
        } else if (err.Code === 'AccessDenied' || err.Code === 'ObjectLocked' || err.Code === 'InvalidRequest') {
          locked.push({ key: v.Key.slice(this.root.length), versionId: v.VersionId });
        } else if (err.Code !== 'NoSuchVersion' && err.Code !== 'NoSuchKey') {
          throw new S3BackupError(
            `${this.location}: could not delete version ${v.VersionId} of ${v.Key.slice(this.root.length)} (${err.Code}: ${err.Message ?? ''})`,
          );
        }
      }
    };
    for (let i = 0; i < versions.length; i += DELETE_BATCH) await deleteBatch(versions.slice(i, i + DELETE_BATCH));
    // Delete markers last, and only of keys with no version left: removing the marker in front of
    // a locked version would make that version current again (a forgotten backup would be back).
    const stillThere = new Set(locked.map((l) => this.root + l.key));
    const freeMarkers = markers.filter((m) => !stillThere.has(m.Key));
    for (let i = 0; i < freeMarkers.length; i += DELETE_BATCH) await deleteBatch(freeMarkers.slice(i, i + DELETE_BATCH));
    // Say until when, for the first few (one HEAD each).
    for (const l of locked.slice(0, 20)) {
      try {
        const h = await this.client.send(
          new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(l.key), VersionId: l.versionId }),
        );
        l.retainUntil = h.ObjectLockRetainUntilDate?.toISOString();
        l.mode = h.ObjectLockMode;
      } catch {
        // the report is still right without the date
      }
    }
    return { deleted, bytes, locked };
  }

  /** Unfinished multipart uploads under this store's prefix (left by killed processes). */
  async *listMultipartUploads(): AsyncIterable<MultipartUploadInfo> {
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      let res;
      try {
        res = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.root, KeyMarker, UploadIdMarker }),
        );
      } catch (e) {
        throw this.translate(e, 'list uploads');
      }
      for (const u of res.Uploads ?? []) {
        if (!u.Key?.startsWith(this.root) || !u.UploadId) continue;
        yield { key: u.Key.slice(this.root.length), uploadId: u.UploadId, initiated: u.Initiated };
      }
      if (!res.IsTruncated) return;
      KeyMarker = res.NextKeyMarker;
      UploadIdMarker = res.NextUploadIdMarker;
      if (!KeyMarker && !UploadIdMarker) return;
    }
  }

  /** Abort one unfinished multipart upload; one that is already gone is not an error. */
  async abortMultipartUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.objectKey(key), UploadId: uploadId }));
    } catch (e) {
      if (errorCode(e) === 'NoSuchUpload') return;
      throw this.translate(e, 'abort upload', key);
    }
  }

  async close(): Promise<void> {
    this.partBuffers.clear();
    this.watch.close();
    this.client.destroy();
  }

  private where(): string {
    return this.endpoint ? `${this.location} at ${this.endpoint}` : this.location;
  }

  private permissionHint(): string {
    return (
      `grant these credentials s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on bucket ` +
      `${this.bucket}${this.prefix ? ` (prefix ${this.prefix}/)` : ''}, or use other credentials (AWS_PROFILE)`
    );
  }

  private credentialsHint(): string {
    return this.explicitCredentials
      ? 'check the access key ID and secret key given to s3backup'
      : 'check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE and ~/.aws/credentials' +
          (this.endpoint ? `, and that they are keys of ${this.endpoint} (keys of one S3 service do not work on another)` : '');
  }

  /** Turn an SDK or network error into the project's errors; other errors pass unchanged. */
  private translate(e: unknown, op: Op, key?: string): unknown {
    if (e instanceof S3BackupError) return e;
    const err = e as { name?: string; message?: string; code?: string; errors?: { code?: string }[] };
    const code = errorCode(e);
    const status = httpStatus(e);
    const opts = { cause: e };

    // Something else answers at the endpoint (a web server, a console, a JSON API): caught by
    // rejectNonS3Answers(), or an answer the SDK could not read as S3's XML.
    const raw = (e as { $response?: RawAnswer } | undefined)?.$response;
    const notS3 =
      e instanceof NotS3AnswerError
        ? e.answer
        : status !== undefined && raw && /Deserialization error/.test(err.message ?? '')
          ? describeAnswer(raw, "not S3's XML")
          : undefined;
    if (notS3) {
      return new StoreAccessError(`${this.endpoint ?? 'the AWS S3 endpoint'} does not answer like an S3 server (${notS3})`, {
        ...opts,
        hint: this.endpoint
          ? 'check --endpoint (or AWS_ENDPOINT_URL_S3): its scheme, host, port and path must be those of the S3 API, not of a web ' +
            'server, a web console or another service (MinIO, for one, has its S3 API on port 9000 and its console on 9001)'
          : 'something between here and AWS answered instead of S3 (a proxy or a captive portal?): check the network and HTTPS_PROXY',
      });
    }

    // The request never got an answer (Node puts the code on the error, or on each attempt of
    // an AggregateError when a host name resolves to several addresses).
    const netCode = [err.code, ...(err.errors ?? []).map((x) => x.code)].find((c) => c && NETWORK_CODES.has(c));
    if (netCode || code === 'TimeoutError') {
      const target = this.endpoint ?? 'AWS S3';
      // It answered before in this run: the settings are right, the network or the server
      // failed. A run failure (exit 1, worth retrying), not a configuration error (exit 2).
      if (this.answered) {
        return new StoreAccessError(`lost the connection to S3 endpoint ${target} (${firstLine(err.message) || netCode})`, {
          ...opts,
          exitCode: 1,
          hint: 'it answered earlier in this run: a network failure or a server outage; run the command again once it is reachable',
        });
      }
      return new StoreAccessError(`cannot reach S3 endpoint ${target} (${firstLine(err.message) || netCode})`, {
        ...opts,
        hint: this.endpoint
          ? 'check --endpoint (or AWS_ENDPOINT_URL_S3) and that the S3 server is running and reachable from here'
          : 'check the network connection (and any proxy) to AWS',
      });
    }
    if (err.name === 'CredentialsProviderError' || err.name === 'ProviderError') {
      return new StoreAccessError(`no usable AWS credentials found (${firstLine(err.message)})`, {
        ...opts,
        hint:
          'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile of ~/.aws/credentials ' +
          '(or ~/.aws/config), or run where an instance/task role is available',
      });
    }
    if (status === undefined) return e; // not an S3 answer: a bug or a local failure, leave it be

    switch (code) {
      case 'NoSuchKey':
        return new NotFoundError(key ?? '', this.location);
      case 'NoSuchBucket':
        return this.noSuchBucket(e);
      case 'NotFound':
        // HeadBucket's bare 404; HeadObject's is handled by head().
        if (op === 'probe') return this.noSuchBucket(e);
        if (key !== undefined && op !== 'list' && op !== 'delete') return new NotFoundError(key, this.location);
        break;
      case 'InvalidAccessKeyId':
        return new StoreAccessError(
          `the S3 credentials were rejected: ${this.endpoint ?? 'AWS'} does not know the access key ID (InvalidAccessKeyId)`,
          { ...opts, hint: this.credentialsHint() },
        );
      case 'SignatureDoesNotMatch':
        return new StoreAccessError(
          'the S3 credentials were rejected: the secret access key does not match the access key ID (SignatureDoesNotMatch)',
          { ...opts, hint: this.credentialsHint() },
        );
      case 'InvalidToken':
      case 'ExpiredToken':
      case 'TokenRefreshRequired':
        return new StoreAccessError(`the S3 credentials were rejected: the session token is invalid or expired (${code})`, {
          ...opts,
          hint: 'refresh the temporary credentials (e.g. "aws sso login"), or unset a stale AWS_SESSION_TOKEN',
        });
      case 'RequestTimeTooSkewed':
        return new StoreAccessError("S3 rejected the request: this computer's clock is too far off (RequestTimeTooSkewed)", {
          ...opts,
          hint: 'set the system clock right (enable NTP), then run again',
        });
      case 'AccessDenied':
      case 'AllAccessDisabled':
        return new StoreAccessError(
          `access denied: these S3 credentials may not ${OP_VERB[op]} in ${this.where()}${key ? ` (${key})` : ''}`,
          {
            ...opts,
            hint: this.permissionHint(),
          },
        );
      case 'PermanentRedirect':
      case 'AuthorizationHeaderMalformed':
      case 'IllegalLocationConstraintException':
        return new StoreAccessError(`bucket ${this.bucket} is in another region than the one used (${code})`, {
          ...opts,
          hint: "set --region or AWS_REGION to the bucket's region",
        });
      case 'InvalidBucketName':
        return new StoreAccessError(`"${this.bucket}" is not a valid S3 bucket name`, { ...opts, hint: 'fix the bucket in --repo' });
    }
    if (status === 403) {
      // A 403 without an error code (HEAD requests have no body): either kind of refusal.
      return new StoreAccessError(
        `S3 refused access (HTTP 403) to ${this.where()}: the S3 credentials were rejected or may not ${OP_VERB[op]}${key ? ` (${key})` : ''}`,
        { ...opts, hint: `${this.credentialsHint()}; if they are right, ${this.permissionHint()}` },
      );
    }
    if (status === 301) {
      return new StoreAccessError(`bucket ${this.bucket} is in another region (HTTP 301)`, {
        ...opts,
        hint: "set --region or AWS_REGION to the bucket's region",
      });
    }
    const detail = err.message && err.message !== 'UnknownError' ? `: ${firstLine(err.message)}` : '';
    return new S3BackupError(`S3 ${op}${key ? ` of ${key}` : ''} in ${this.where()} failed: ${code} (HTTP ${status})${detail}`, opts);
  }

  private noSuchBucket(cause: unknown): StoreAccessError {
    return new StoreAccessError(`bucket ${this.bucket} does not exist${this.endpoint ? ` at ${this.endpoint}` : ''}`, {
      cause,
      hint: `create it (e.g. "aws s3 mb s3://${this.bucket}"${this.endpoint ? ` --endpoint-url ${this.endpoint}` : ''}) or fix the bucket name in --repo`,
    });
  }
}

/**
 * The SDK's region chain (AWS_REGION, then the profile's region in ~/.aws/config) throws when
 * nothing is set; S3 just needs some region to sign with, and followRegionRedirects finds the
 * bucket's own. A throwaway client gives us that chain without depending on SDK internals.
 */
async function defaultRegion(profile: string | undefined): Promise<string> {
  const probe = new S3Client(profile ? { profile } : {});
  try {
    return await probe.config.region();
  } catch {
    return process.env.AWS_DEFAULT_REGION || 'us-east-1';
  } finally {
    probe.destroy();
  }
}

/** Call answered() whenever a request gets an HTTP response, whatever its status. */
function noteAnswers(client: S3Client, answered: () => void): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      try {
        const r = await next(args);
        answered();
        return r;
      } catch (e) {
        if (httpStatus(e) !== undefined) answered();
        throw e;
      }
    },
    { step: 'deserialize', name: 's3backupNoteAnswers', priority: 'low' },
  );
}

/** The raw HTTP answer as the SDK's middlewares see it. */
interface RawAnswer {
  statusCode?: number;
  headers?: Record<string, string | undefined>;
  body?: unknown;
}

/** An answer that no S3 server gives, seen by rejectNonS3Answers(); translate() explains it. */
class NotS3AnswerError extends Error {
  override readonly name = 'NotS3AnswerError';
  readonly answer: string;
  constructor(answer: string) {
    super(`not an S3 answer (${answer})`);
    this.answer = answer;
  }
}

/** Commands whose successful answer is an XML document. */
const XML_ANSWERS = new Set([
  'ListObjectsV2Command',
  'ListObjectVersionsCommand',
  'ListMultipartUploadsCommand',
  'DeleteObjectsCommand',
  'CreateMultipartUploadCommand',
  'CompleteMultipartUploadCommand',
  'GetBucketLifecycleConfigurationCommand',
  'GetObjectLockConfigurationCommand',
]);
/** Commands whose successful answer carries the object's ETag. */
const ETAG_ANSWERS = new Set(['GetObjectCommand', 'HeadObjectCommand', 'PutObjectCommand']);

/** What an answer was, for the error message: status, what is wrong with it, content type, server, redirect target. */
function describeAnswer(res: RawAnswer, what: string): string {
  const h = res.headers ?? {};
  return [
    `HTTP ${res.statusCode ?? '?'}: ${what}`,
    h['content-type'] ? `content type ${h['content-type']}` : 'no content type',
    ...(h.server ? [`server ${JSON.stringify(h.server)}`] : []),
    ...(h.location ? [`redirecting to ${h.location}`] : []),
  ].join(', ');
}

/**
 * Until the endpoint has shown it is S3 (S3's request id header, or an object answered with its
 * ETag), look at each answer before the SDK reads it. A web page, a non-XML error or listing, an
 * object without an ETag come from something else at that address (a web server, a console, a
 * JSON API): the request fails with NotS3AnswerError, where the SDK would report an XML parse
 * error, a missing bucket, or hand the page over as the object. A 5xx other than 501 is left to
 * the retries: a proxy's error page in front of a real S3 server is an outage, not a wrong endpoint.
 */
function rejectNonS3Answers(client: S3Client): void {
  let s3 = false;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const r = await next(args);
      const res = r.response as RawAnswer;
      if (s3 || !res) return r;
      const command = context.commandName ?? '';
      const h = res.headers ?? {};
      const status = res.statusCode ?? 0;
      const type = (h['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const xml = /[/+]xml$/.test(type) && type !== 'application/xhtml+xml';
      const etag = ETAG_ANSWERS.has(command) && status < 300 ? h.etag : undefined;
      if (h['x-amz-request-id'] || h['x-amz-id-2'] || (etag && !etag.startsWith('W/'))) {
        s3 = true;
        return r;
      }
      const what =
        status >= 500 && status !== 501
          ? undefined
          : type === 'text/html' || type === 'application/xhtml+xml'
            ? 'a web page'
            : status >= 300 && type !== '' && !xml
              ? "an error that is not S3's XML"
              : status < 300 && XML_ANSWERS.has(command) && type !== '' && !xml
                ? "not S3's XML"
                : status < 300 && ETAG_ANSWERS.has(command)
                  ? 'an object answer without an S3 ETag'
                  : undefined;
      if (what === undefined) return r;
      (res.body as { destroy?: () => void } | undefined)?.destroy?.();
      throw new NotS3AnswerError(describeAnswer(res, what));
    },
    { step: 'deserialize', name: 's3backupRejectNonS3Answers', priority: 'low' },
  );
}

/**
 * Servers that predate S3's flexible checksums (Swift's s3api, older MinIO/Ceph) require
 * Content-MD5 on DeleteObjects, while the SDK now sends only a CRC32. Adding the MD5 costs
 * nothing on AWS, which accepts both.
 */
function addDeleteObjectsContentMd5(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const req = args.request as { headers?: Record<string, string>; body?: unknown } | undefined;
      if (context.commandName === 'DeleteObjectsCommand' && req?.headers && req.body != null) {
        const b = req.body;
        if (typeof b === 'string' || b instanceof Uint8Array) {
          req.headers['content-md5'] = createHash('md5').update(b).digest('base64');
        }
      }
      return next(args);
    },
    { step: 'build', name: 's3backupDeleteObjectsContentMd5', priority: 'low' },
  );
}

function retentionParams(opts: PutOptions): { ObjectLockMode?: 'GOVERNANCE' | 'COMPLIANCE'; ObjectLockRetainUntilDate?: Date } {
  return opts.retention ? { ObjectLockMode: opts.retention.mode, ObjectLockRetainUntilDate: opts.retention.until } : {};
}

function metadataOf(e: unknown): { httpStatusCode?: number; attempts?: number } | undefined {
  return (e as { $metadata?: { httpStatusCode?: number; attempts?: number } } | undefined)?.$metadata;
}

function httpStatus(e: unknown): number | undefined {
  return metadataOf(e)?.httpStatusCode;
}

/** The S3 error code: the SDK puts it in `name` (and `Code` for modelled-less errors). */
function errorCode(e: unknown): string {
  const x = e as { name?: string; Code?: string } | undefined;
  return x?.Code ?? x?.name ?? 'Unknown';
}

function firstLine(s: string | undefined): string {
  return (s ?? '').split('\n')[0]!.slice(0, 300);
}
