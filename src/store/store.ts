import type { Readable } from 'node:stream';

/** One stored object as a listing or head reports it. */
export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
  /** S3 storage class (STANDARD when the server does not say); undefined for local stores. */
  storageClass?: string | undefined;
  /** For archived (GLACIER / DEEP_ARCHIVE) objects: whether a restored copy is being made or is readable. */
  restore?: 'ongoing' | 'available' | undefined;
}

/** Storage classes whose objects must be restored (thawed) before they can be read. */
export const COLD_CLASSES: ReadonlySet<string> = new Set(['GLACIER', 'DEEP_ARCHIVE']);

/** One bucket lifecycle rule, reduced to what the cost model needs (keys are bucket keys). */
export interface LifecycleRule {
  id?: string | undefined;
  enabled: boolean;
  /** Key prefix the rule applies to ('' = whole bucket). */
  prefix: string;
  /** The rule also filters on object tags, which listings do not show. */
  tagFilter: boolean;
  /** ObjectSizeGreaterThan / ObjectSizeLessThan filters, in bytes. */
  sizeGreaterThan?: number | undefined;
  sizeLessThan?: number | undefined;
  /** Transitions by age in days (date-based ones are dropped and counted in `ignored`). */
  transitions: { days: number; storageClass: string }[];
  /** Expire (delete) current versions at this age in days. */
  expirationDays?: number | undefined;
  /** What the model leaves out of this rule, for the report (noncurrent versions, dates…). */
  ignored: string[];
}

/**
 * Optional features of a store, as data: each one a store has is an object with its methods,
 * each one it lacks is absent ("unsupported", kopia's default answer). Callers ask
 * `store.capabilities().thaw` instead of probing for methods, and a wrapper
 * (DelegatingStore) forwards them with the rest, or narrows them (ReadOnlyStore).
 */
export interface StoreCapabilities {
  /** Objects can be in cold storage and be restored (thawed) for reading (S3). */
  readonly thaw?: ThawCapability | undefined;
  /** The bucket around the repository: lifecycle rules, bucket keys, whole-bucket listing (S3). */
  readonly bucket?: BucketCapability | undefined;
  /** Object versions and Object Lock (S3). */
  readonly versions?: VersionsCapability | undefined;
  /** Unfinished multipart uploads left by killed processes (S3). */
  readonly uploads?: UploadsCapability | undefined;
  /** Temporary files left by killed writes (local directories). */
  readonly tempFiles?: TempFilesCapability | undefined;
  /**
   * Objects are files of a local file system: reading one again costs what reading a
   * temporary copy of it would, so readers keep none (local directories).
   */
  readonly localFiles?: true | undefined;
}

export interface ThawCapability {
  /** Request a temporary readable copy of an archived object, for `days` days. */
  requestRestore(key: string, opts: { days: number; tier: 'Bulk' | 'Standard' | 'Expedited' }): Promise<'requested' | 'already-ongoing'>;
}

export interface BucketCapability {
  /** The bucket's name. */
  readonly bucket: string;
  /** The bucket's rules, or [] when it has none. Bucket keys, not repository keys. */
  getLifecycleRules(): Promise<LifecycleRule[]>;
  /** Key of a repository key in the bucket (prefix + key). */
  bucketKey(key: string): string;
  /** Every object of the bucket whose bucket key starts with prefix (outside the repository too). */
  listBucket(prefix: string): AsyncIterable<ObjectInfo>;
  /** The region requests are signed for (configured, or the SDK's default chain). */
  region(): Promise<string>;
}

/** Whether a bucket has Object Lock enabled, and its default retention if any. */
export interface ObjectLockStatus {
  enabled: boolean;
  defaultRetention?: { mode?: string; days?: number; years?: number };
}

/** An object version Object Lock kept from being deleted. */
export interface LockedVersion {
  key: string;
  versionId: string;
  /** When the lock ends (when the server said). */
  retainUntil?: string | undefined;
  mode?: string | undefined;
}

export interface VersionsCapability {
  /** Servers that do not implement Object Lock answer "not enabled". */
  objectLockStatus(): Promise<ObjectLockStatus>;
  /**
   * Remove, under prefix, every noncurrent version and delete marker; versions Object Lock
   * still protects stay and are returned.
   */
  purgeNoncurrentVersions(
    prefix: string,
    opts?: { dryRun?: boolean },
  ): Promise<{ deleted: number; bytes: number; locked: LockedVersion[] }>;
}

/** One unfinished multipart upload, with its key relative to the store's prefix. */
export interface MultipartUploadInfo {
  key: string;
  uploadId: string;
  initiated: Date | undefined;
}

export interface UploadsCapability {
  listMultipartUploads(): AsyncIterable<MultipartUploadInfo>;
  /** An upload that is already gone is not an error. */
  abortMultipartUpload(key: string, uploadId: string): Promise<void>;
}

export interface TempFilesCapability {
  /** Temporary files of unfinished writes (hidden from list); their keys can be passed to delete(). */
  listTemp(): AsyncIterable<ObjectInfo>;
}

export interface PutOptions {
  /** Fail with AlreadyExistsError if the key exists (S3: If-None-Match: *). Needs a Buffer body. */
  createOnly?: boolean;
  /** Expected size of a stream body, if known: lets a backend pick single vs multipart upload. */
  sizeHint?: number;
  storageClass?: string;
  contentType?: string;
  /** S3 Object Lock: keep this version undeletable until `until` (ignored by stores without it). */
  retention?: { mode: 'GOVERNANCE' | 'COMPLIANCE'; until: Date } | undefined;
  /**
   * Stream bodies: called, with growing counts, as the store finishes with what it has read:
   * it then holds no reference to the first `bytes` bytes of the stream, so the caller may
   * free or reuse that memory (FrameWriter.consumed). A store that cannot tell never calls it.
   */
  onConsumed?: ((bytes: number) => void) | undefined;
}

/** Half-open byte range [start, end). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * The storage interface every backend implements. Keys are relative to the repository root
 * ("snapshots/…", "archives/…") and use "/" as separator. Kept small on purpose (restic's
 * backend model): a new backend is one file plus one line in the contract test.
 */
export interface Store {
  /** Human-readable location, e.g. "s3://bucket/prefix" or "/home/me/backups"; never a secret. */
  readonly location: string;
  put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void>;
  /** Whole object, or the byte range. Throws NotFoundError. */
  get(key: string, range?: ByteRange): Promise<Readable>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with prefix, in ascending key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Delete these keys; keys that do not exist are not an error. */
  delete(keys: string[]): Promise<void>;
  /**
   * Prove the store is reachable and writable (pre-flight). Throws a StoreAccessError naming the
   * fix; resolves with warnings when writing works but the probe's cleanup did not (its delete
   * was denied): a backup can still run.
   */
  probe(): Promise<ProbeResult | undefined>;
  /** The optional features this store has (a new object or the same one on each call). */
  capabilities(): StoreCapabilities;
  close(): Promise<void>;
}

/** What a probe that passed has to say (Store.probe). */
export interface ProbeResult {
  warnings: string[];
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function getBuffer(store: Store, key: string, range?: ByteRange): Promise<Buffer> {
  return readAll(await store.get(key, range));
}
