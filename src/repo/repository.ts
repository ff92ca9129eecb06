import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { AlreadyExistsError, IntegrityError, NotFoundError, S3BackupError, UsageError } from '../errors.ts';
import { ARCHIVE_SUFFIX, type Codec } from '../archive/codec.ts';
import { AuthenticationError, newSalt, ObjectKey, SALT_BYTES } from '../crypto/aead.ts';
import {
  type KeyFile,
  type KeySource,
  keyObjectName,
  listKeyFiles,
  makeKeyFile,
  newMasterKey,
  type NewKeySpec,
  putKeyFile,
  unlockMasterKey,
} from '../crypto/keys.ts';
import { openManifestFile, openManifestHead, sealedManifestSize, sealManifest } from './manifest-seal.ts';
import { getBuffer, type PutOptions, type Store } from '../store/store.ts';
import {
  type ArchiveRef,
  CodecSchema,
  LocalManifest,
  type ManifestHeader,
  type OpenSegments,
  parseHeaderPrefix,
  type SegmentRef,
} from './manifest.ts';
import { LayeredSegments, type SegmentStore, StoredSegments } from './segments.ts';
import { checkShape, isTime, type Same, TIME_MESSAGE } from '../schema.ts';
import { type BackupFilter, describeFilter, describeGroup, groupKey, isEmptyFilter, matchesFilter } from './groups.ts';
import { mapLimit } from '../concurrency.ts';

/**
 * The repository layout on top of a Store (docs/format.md):
 *   config.json                      what this is (format, version, creation time)
 *   snapshots/<id>.ndjson.zst        manifests: a backup exists iff its manifest exists
 *   archives/<id>.tar.zst|.tar.gz|.tar   data (tiers to colder storage classes); a backup
 *                                    split into several archives adds <id>.2.tar.zst, …
 *   entries/<segment id>.ndjson.zst  manifests' entries, in segments shared between manifests
 * Snapshot ids sort by time (to the millisecond, so two backups in one second still list in
 * order): 20261126T095033.123Z-1a2b3c4d.
 */
export const REPO_FORMAT = 's3backup-repository';
/** Highest config version this s3backup reads: 1 plain, 2 encrypted (older readers refuse those). */
export const REPO_VERSION = 2;
export const CONFIG_KEY = 'config.json';
export const SNAPSHOTS = 'snapshots/';
export const ARCHIVES = 'archives/';
export const ENTRIES = 'entries/';
const SEGMENT_SUFFIX = '.ndjson.zst';
/** A sealed entry segment: magic ‖ salt ‖ one AES-GCM piece (docs/format.md "Encryption"). */
const SEALED_SEGMENT_MAGIC = Buffer.from('S3BKSEG1');
const MANIFEST_SUFFIX = '.ndjson.zst';
/** Encrypted repositories' objects say so in their names: standard tools cannot read them. */
export const ENCRYPTED_SUFFIX = '.enc';
export const ENCRYPTION_SCHEME = 'aes-256-gcm-v1';
const ID_RE = /^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}$/;

export interface RepoConfig {
  format: typeof REPO_FORMAT;
  version: number;
  created: string;
  id: string;
  /** Settings every backup to this repository uses unless told otherwise. */
  defaults?: {
    compression?: Codec;
    level?: number;
    frameSize?: number;
    /** Object Lock retention given to archives and manifests (s3backup init --object-lock-days). */
    objectLock?: { days: number; mode: 'GOVERNANCE' | 'COMPLIANCE' };
  };
  /** Present (with version 2) when the repository is encrypted: keys are under keys/. */
  encryption?: { scheme: typeof ENCRYPTION_SCHEME };
}

/** What a reader accepts as config.json (src/schema.ts): `defaults` and `encryption` are optional. */
const RepoConfigSchema = z.object({
  format: z.literal(REPO_FORMAT),
  version: z.int().min(1),
  created: z.string().refine(isTime, TIME_MESSAGE),
  id: z.string().min(1),
  defaults: z
    .object({
      compression: CodecSchema.optional(),
      level: z.number().optional(),
      frameSize: z.number().optional(),
      objectLock: z.object({ days: z.number(), mode: z.enum(['GOVERNANCE', 'COMPLIANCE']) }).optional(),
    })
    .optional(),
  encryption: z.object({ scheme: z.literal(ENCRYPTION_SCHEME) }).optional(),
});
true satisfies Same<z.output<typeof RepoConfigSchema>, RepoConfig>;

export interface InitOptions {
  /** Encrypt the repository: its first key (a passphrase or an AWS KMS key). */
  encryption?: NewKeySpec | undefined;
  /** Label of that first key (key list shows it). */
  keyLabel?: string | undefined;
  defaults?: RepoConfig['defaults'];
}

/**
 * How an encrypted repository's history is sealed (Repository.historyCrypto): each object
 * AES-GCM sealed under a key bound to its name, named with a suffix (".enc"), and host names
 * in object names replaced by a keyed label, so the bucket shows no host or path in clear.
 */
export interface HistoryCrypto {
  suffix: string;
  hostLabel(host: string): string;
  seal(key: string, plain: Buffer): Buffer;
  /** Throws if the bytes were not sealed under this name by this repository's key. */
  open(key: string, sealed: Buffer): Buffer;
}

export class RepositoryMissingError extends S3BackupError {}

export function newSnapshotId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '');
  return `${t}-${randomBytes(4).toString('hex')}`;
}

/** An archive's name: the backup id, and for a split backup's further archives its part number. */
export function archiveName(id: string, part: number): string {
  if (!(Number.isSafeInteger(part) && part >= 1)) throw new IntegrityError(`archive part must be a whole number from 1, not ${part}`);
  return part === 1 ? id : `${id}.${part}`;
}

export function isSnapshotId(s: string): boolean {
  return ID_RE.test(s);
}

/** An archive's key (from the repository root) as archiveKey writes it: any codec, any part, plain or encrypted. */
const ARCHIVE_KEY_RE = new RegExp(`^archives/(${ID_RE.source.slice(1, -1)})(?:\\.[1-9]\\d*)?\\.tar(?:\\.zst|\\.gz)?(?:\\.enc)?$`);

/** The id of the backup that wrote the archive at `key` (from the repository root), or undefined if it is not one. */
export function archiveIdOf(key: string): string | undefined {
  return ARCHIVE_KEY_RE.exec(key)?.[1];
}

const SEGMENT_KEY_RE = /^entries\/[0-9a-f]{64}\.ndjson\.zst(\.enc)?$/;

/** Whether a repository key names an entry segment (Repository.segmentKey's form). */
export function isSegmentKey(key: string): boolean {
  return SEGMENT_KEY_RE.test(key);
}

export class Repository {
  readonly store: Store;
  readonly config: RepoConfig;
  /** The master key (encrypted repositories, once opened) and the key file that opened it. */
  private readonly master: Buffer | undefined;
  readonly keyId: string | undefined;

  private constructor(store: Store, config: RepoConfig, unlocked?: { master: Buffer; keyId: string }) {
    this.store = store;
    this.config = config;
    this.master = unlocked?.master;
    this.keyId = unlocked?.keyId;
  }

  get location(): string {
    return this.store.location;
  }

  get encrypted(): boolean {
    return this.config.encryption !== undefined;
  }

  /** Open an existing repository; a clear error if there is none at this location. Encrypted ones need `keys`. */
  static async open(store: Store, keys: KeySource = {}): Promise<Repository> {
    const config = await Repository.readConfig(store);
    if (!config.encryption) return new Repository(store, config);
    return new Repository(store, config, await unlockMasterKey(store, config.id, keys));
  }

  /** The backup ids of a repository, oldest first, without unlocking it (names only: no key needed). */
  static async backupIds(store: Store): Promise<string[]> {
    return new Repository(store, await Repository.readConfig(store)).snapshotIds();
  }

  /** The repository's config.json, checked; no key needed. */
  static async readConfig(store: Store): Promise<RepoConfig> {
    let raw: Buffer;
    try {
      raw = await getBuffer(store, CONFIG_KEY);
    } catch (e) {
      if (e instanceof NotFoundError) {
        throw new RepositoryMissingError(`no s3backup repository at ${store.location}`, {
          hint: 'check --repo; a repository is created by "s3backup init" (or, unencrypted, by the first "s3backup backup" to it)',
        });
      }
      throw e;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new S3BackupError(`${store.location}/${CONFIG_KEY} is not valid JSON`);
    }
    const o = parsed as { format?: unknown; version?: unknown; encryption?: { scheme?: unknown } } | null;
    if (o?.format !== REPO_FORMAT) {
      throw new S3BackupError(`${store.location} is not an s3backup repository (${CONFIG_KEY} says otherwise)`);
    }
    if (typeof o.version === 'number' && o.version > REPO_VERSION) {
      throw new S3BackupError(`repository ${store.location} has format version ${o.version}; this s3backup reads up to ${REPO_VERSION}`, {
        hint: 'upgrade s3backup',
      });
    }
    if (
      o.encryption &&
      typeof o.encryption === 'object' &&
      typeof o.encryption.scheme === 'string' &&
      o.encryption.scheme !== ENCRYPTION_SCHEME
    ) {
      throw new S3BackupError(
        `repository ${store.location} uses encryption scheme ${JSON.stringify(o.encryption.scheme)}, unknown to this s3backup`,
        {
          hint: 'upgrade s3backup',
        },
      );
    }
    const config = checkShape(
      RepoConfigSchema,
      parsed,
      (problem) =>
        new IntegrityError(`repository config ${store.location}/${CONFIG_KEY} is damaged: ${problem}`, {
          hint: `it is written once, by "s3backup init" or the first backup; put back a copy of it, or correct it by hand (docs/format.md "Layout")`,
        }),
    );
    if (config.version >= 2 !== !!config.encryption) {
      throw new S3BackupError(
        `${store.location}/${CONFIG_KEY} is inconsistent (version ${config.version} ${config.encryption ? 'with' : 'without'} encryption)`,
      );
    }
    return config;
  }

  /**
   * Create a repository (s3backup init): config.json, create-only, and for an encrypted one its
   * first key file (written first, so config.json never names a repository without a key).
   */
  static async init(store: Store, opts: InitOptions = {}): Promise<Repository> {
    if (await store.head(CONFIG_KEY)) {
      throw new UsageError(`${store.location} already holds an s3backup repository`, {
        hint: 'use it as it is; encryption is chosen when a repository is created, so pick another --repo for a new one',
      });
    }
    const config: RepoConfig = {
      format: REPO_FORMAT,
      version: opts.encryption ? 2 : 1,
      created: new Date().toISOString(),
      id: randomBytes(16).toString('hex'),
      defaults: { compression: 'zstd', frameSize: 4 << 20, ...opts.defaults },
      ...(opts.encryption ? { encryption: { scheme: ENCRYPTION_SCHEME } } : {}),
    };
    let unlocked: { master: Buffer; keyId: string } | undefined;
    if (opts.encryption) {
      const master = newMasterKey();
      const key = await makeKeyFile(master, config.id, opts.encryption, opts.keyLabel);
      await putKeyFile(store, key);
      unlocked = { master, keyId: key.id };
    }
    try {
      await store.put(CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`), {
        createOnly: true,
        contentType: 'application/json',
      });
    } catch (e) {
      if (unlocked) await store.delete([keyObjectName(unlocked.keyId)]).catch(() => {});
      if (e instanceof AlreadyExistsError)
        throw new UsageError(`${store.location} already holds an s3backup repository (created just now by someone else)`);
      throw e;
    }
    return new Repository(store, config, unlocked);
  }

  /** Open the repository, creating it first if the location has none (race-safe: create-only). */
  static async openOrInit(
    store: Store,
    keys: KeySource = {},
    defaults: RepoConfig['defaults'] = { compression: 'zstd', frameSize: 4 << 20 },
  ): Promise<{ repo: Repository; created: boolean }> {
    const existing = await store.head(CONFIG_KEY);
    if (existing) return { repo: await Repository.open(store, keys), created: false };
    const config: RepoConfig = {
      format: REPO_FORMAT,
      version: 1, // plain; 2 is for encrypted repositories (init --encrypt)
      created: new Date().toISOString(),
      id: randomBytes(16).toString('hex'),
      defaults,
    };
    try {
      await store.put(CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`), {
        createOnly: true,
        contentType: 'application/json',
      });
    } catch (e) {
      if (e instanceof AlreadyExistsError) return { repo: await Repository.open(store, keys), created: false };
      throw e;
    }
    return { repo: new Repository(store, config), created: true };
  }

  private get manifestSuffix(): string {
    return this.encrypted ? MANIFEST_SUFFIX + ENCRYPTED_SUFFIX : MANIFEST_SUFFIX;
  }

  manifestKey(id: string): string {
    return `${SNAPSHOTS}${id}${this.manifestSuffix}`;
  }

  /** archives/<id>.tar.zst for a backup's first archive, archives/<id>.<part>.tar.zst for the further ones. */
  archiveKey(id: string, codec: Codec, part = 1): string {
    return `${ARCHIVES}${archiveName(id, part)}${ARCHIVE_SUFFIX[codec]}${this.encrypted ? ENCRYPTED_SUFFIX : ''}`;
  }

  /** Add a key file (a passphrase or a KMS key) that opens this encrypted repository. */
  async addKey(spec: NewKeySpec, label?: string): Promise<KeyFile> {
    const key = await makeKeyFile(this.masterKey(), this.config.id, spec, label);
    await putKeyFile(this.store, key);
    return key;
  }

  /** Remove a key file; not the one this session was opened with, and never the last one. */
  async removeKey(id: string): Promise<KeyFile> {
    if (!this.encrypted) throw new UsageError(`repository ${this.location} is not encrypted; it has no keys`);
    const { keys } = await listKeyFiles(this.store);
    const matches = keys.filter((k) => k.id === id || k.id.startsWith(id));
    if (matches.length === 0)
      throw new UsageError(`no key ${JSON.stringify(id)} in ${this.location}`, { hint: 'run "s3backup key list" to see the key ids' });
    if (matches.length > 1) throw new UsageError(`key id ${JSON.stringify(id)} is ambiguous: ${matches.map((k) => k.id).join(', ')}`);
    const k = matches[0]!;
    if (k.id === this.keyId) {
      throw new UsageError(`key ${k.id} is the one that opened the repository now; it cannot remove itself`, {
        hint: 'open the repository with another key (another passphrase, or KMS) to remove this one',
      });
    }
    if (keys.length <= 1) throw new UsageError(`key ${k.id} is the repository's last key; without it no backup could be read`);
    await this.store.delete([keyObjectName(k.id)]);
    return k;
  }

  private masterKey(): Buffer {
    if (!this.master) throw new S3BackupError(`repository ${this.location} is encrypted and was opened without its key`);
    return this.master;
  }

  /** For a new archive: what its ArchiveRef records, and the key sealing its frames (undefined: plain). */
  archiveSealer(id: string, part = 1): { encryption: { salt: string }; key: ObjectKey } | undefined {
    if (!this.encrypted) return undefined;
    const salt = newSalt();
    return {
      encryption: { salt: salt.toString('base64') },
      key: ObjectKey.derive(this.masterKey(), 'archive', archiveName(id, part), salt),
    };
  }

  /**
   * For an archive copied in from another repository: a sealer whose salt is derived from
   * `basis` (which archive, and which bytes, the copy is of) instead of drawn at random. A copy
   * resumed after an interruption then seals the same frames into the same bytes, so an archive
   * it already stored is recognised by its name and size and not sent again. The same key and
   * nonce only ever seal the same plaintext: `basis` names the source's stored bytes.
   */
  copySealer(id: string, part: number, basis: string): { encryption: { salt: string }; key: ObjectKey } | undefined {
    if (!this.encrypted) return undefined;
    const saltKey = Buffer.from(hkdfSync('sha256', this.masterKey(), Buffer.alloc(0), 's3backup copy-salt v1', 32));
    const salt = createHmac('sha256', saltKey).update(basis).digest().subarray(0, SALT_BYTES);
    return {
      encryption: { salt: salt.toString('base64') },
      key: ObjectKey.derive(this.masterKey(), 'archive', archiveName(id, part), salt),
    };
  }

  /**
   * How to open one archive's frames (undefined: plain frames). An encrypted repository refuses
   * a plain archive and the reverse, naming it.
   */
  frameOpener(ref: ArchiveRef): ((sealed: Buffer, index: number, last: boolean) => Buffer) | undefined {
    if (!this.encrypted) {
      if (ref.encryption) throw new IntegrityError(`archive ${ref.key} is listed as encrypted in a repository that is not`);
      return undefined;
    }
    if (!ref.encryption || typeof ref.encryption.salt !== 'string') {
      throw new IntegrityError(`archive ${ref.key} is listed without encryption in an encrypted repository: refusing it`);
    }
    let key: ObjectKey;
    try {
      key = ObjectKey.derive(this.masterKey(), 'archive', archiveName(ref.id, ref.part ?? 1), Buffer.from(ref.encryption.salt, 'base64'));
    } catch (e) {
      if (e instanceof AuthenticationError) throw new IntegrityError(`archive ${ref.key}: invalid encryption salt in the manifest`);
      throw e;
    }
    return (sealed, index, last) => {
      try {
        return key.open(sealed, index, last);
      } catch (e) {
        if (e instanceof AuthenticationError) {
          throw new IntegrityError(
            `archive ${this.location}/${ref.key}: frame ${index} fails authentication (modified, moved or not this archive's)`,
          );
        }
        throw e;
      }
    };
  }

  /**
   * How run records and history segments are sealed (undefined: plain repository). Each object:
   * 16-byte salt ‖ one AES-GCM piece under a key derived for its name (so a record cannot be
   * passed off under another name); hosts in names become a keyed label.
   */
  historyCrypto(): HistoryCrypto | undefined {
    if (!this.encrypted) return undefined;
    const master = this.masterKey();
    const hostKey = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 's3backup history-host v1', 32));
    return {
      suffix: ENCRYPTED_SUFFIX,
      hostLabel: (host) => `h${createHmac('sha256', hostKey).update(host).digest('hex').slice(0, 16)}`,
      seal: (key, plain) => {
        const salt = newSalt();
        return Buffer.concat([salt, ObjectKey.derive(master, 'history', key, salt).seal(plain, 0, true)]);
      },
      open: (key, sealed) =>
        ObjectKey.derive(master, 'history', key, sealed.subarray(0, SALT_BYTES)).open(sealed.subarray(SALT_BYTES), 0, true),
    };
  }

  /**
   * The manifest object for a head frame (and, in the layout before segments, the entries'
   * frames after it): plain, or sealed in an encrypted repository.
   */
  encodeManifest(id: string, head: Buffer, body: Buffer = Buffer.alloc(0)): Buffer {
    if (!this.encrypted) return body.length > 0 ? Buffer.concat([head, body]) : head;
    return sealManifest(this.masterKey(), id, head, body);
  }

  /** Size of that object. */
  manifestSize(headLen: number, bodyLen = 0): number {
    return this.encrypted ? sealedManifestSize(headLen, bodyLen) : headLen + bodyLen;
  }

  segmentKey(id: string): string {
    return `${ENTRIES}${id}${SEGMENT_SUFFIX}${this.encrypted ? ENCRYPTED_SUFFIX : ''}`;
  }

  /**
   * An entry segment's id: the SHA-256 of its text, or in an encrypted repository an HMAC under
   * a key derived from the master key, so that ids tell nothing of the entries to whoever can
   * list the bucket.
   */
  private segmentIdOf(): (text: Buffer) => string {
    if (!this.encrypted) return (text) => createHash('sha256').update(text).digest('hex');
    const idKey = Buffer.from(hkdfSync('sha256', this.masterKey(), Buffer.alloc(0), 's3backup entries-id v1', 32));
    return (text) => createHmac('sha256', idKey).update(text).digest('hex');
  }

  /**
   * Where a backup stores its new entry segments: create-only, and one already there (the same
   * entries, stored by another backup) counts as stored, with 0 bytes added.
   */
  segmentStore(opts: { retention?: PutOptions['retention'] } = {}): SegmentStore {
    return {
      idOf: this.segmentIdOf(),
      put: async (id, compressed) => {
        const body = this.encrypted ? this.sealSegment(id, compressed) : compressed;
        try {
          await this.store.put(this.segmentKey(id), body, {
            createOnly: true,
            contentType: this.encrypted ? 'application/octet-stream' : 'application/zstd',
            retention: opts.retention,
          });
        } catch (e) {
          if (e instanceof AlreadyExistsError) return 0;
          throw e;
        }
        return body.length;
      },
    };
  }

  private sealSegment(id: string, compressed: Buffer): Buffer {
    const salt = newSalt();
    return Buffer.concat([SEALED_SEGMENT_MAGIC, salt, ObjectKey.derive(this.masterKey(), 'entries', id, salt).seal(compressed, 0, true)]);
  }

  /** An entry segment's compressed text, authenticated in an encrypted repository. */
  private async fetchSegment(id: string): Promise<Buffer> {
    const key = this.segmentKey(id);
    const where = `${this.location}/${key}`;
    let stored: Buffer;
    try {
      stored = await getBuffer(this.store, key);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      // Some stores answer 404 for a moment for an object that is there: ask once more.
      await new Promise((r) => setTimeout(r, 500));
      stored = await getBuffer(this.store, key).catch((again: unknown) => {
        if (again instanceof NotFoundError)
          throw new IntegrityError(`entry segment ${where} is missing: the backups that list it cannot be read whole`, {
            hint: 'check them with "s3backup verify"; "s3backup prune" names every backup that lists a missing object',
          });
        throw again;
      });
    }
    if (!this.encrypted) return stored;
    const prefix = SEALED_SEGMENT_MAGIC.length + SALT_BYTES;
    if (stored.length < prefix || !stored.subarray(0, SEALED_SEGMENT_MAGIC.length).equals(SEALED_SEGMENT_MAGIC))
      throw new IntegrityError(`entry segment ${where} is not encrypted, but this repository is: refusing it`);
    try {
      return ObjectKey.derive(this.masterKey(), 'entries', id, stored.subarray(SEALED_SEGMENT_MAGIC.length, prefix)).open(
        stored.subarray(prefix),
        0,
        true,
      );
    } catch (e) {
      if (e instanceof AuthenticationError)
        throw new IntegrityError(`entry segment ${where} fails authentication (modified, or not this segment)`);
      throw e;
    }
  }

  private readonly openSegments: OpenSegments = (line, archives, where) => {
    const keys = archives.map((a) => a.key);
    const idOf = this.segmentIdOf();
    const keepCopies = !this.store.capabilities().localFiles;
    const open = (refs: SegmentRef[], layer: boolean) =>
      new StoredSegments(refs, keys, (id) => this.fetchSegment(id), idOf, where, layer, keepCopies);
    const base = open(line.segments, false);
    return line.layers?.length
      ? new LayeredSegments(
          base,
          line.layers.map((l) => open(l, true)),
        )
      : base;
  };

  /**
   * The zstd head frame (header and archives lines) of an encrypted manifest, authenticated, from
   * ranged reads of its start.
   */
  async sealedHeadFrame(id: string): Promise<Buffer> {
    const key = this.manifestKey(id);
    const where = `${this.location}/${key}`;
    let want = 256 << 10;
    for (;;) {
      const buf = await getBuffer(this.store, key, { start: 0, end: want });
      const r = openManifestHead(this.masterKey(), id, buf, where, buf.length < want);
      if ('head' in r) return r.head;
      want = r.need;
    }
  }

  /** Ids of every complete backup, oldest first. */
  async snapshotIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const o of this.store.list(SNAPSHOTS)) {
      const name = o.key.slice(SNAPSHOTS.length);
      const suffix = this.manifestSuffix;
      if (!name.endsWith(suffix)) continue;
      const id = name.slice(0, -suffix.length);
      if (isSnapshotId(id)) ids.push(id);
    }
    return ids.sort();
  }

  /** The header (stats, sources, time) of one backup, read with a single small ranged GET. */
  async header(id: string): Promise<ManifestHeader> {
    const key = this.manifestKey(id);
    const where = `${this.location}/${key}`;
    const prefix = this.encrypted ? await this.sealedHeadFrame(id) : await getBuffer(this.store, key, { start: 0, end: 256 << 10 });
    const h = await parseHeaderPrefix(prefix, where);
    if (h && h.id !== id && this.encrypted) throw new IntegrityError(`manifest ${where} holds backup ${h.id}`);
    if (h) return h;
    // Header longer than the first read (or a corrupt object): read it all and report properly.
    const whole = await this.loadManifest(id);
    await whole.dispose();
    return whole.header;
  }

  /** Headers of every backup, oldest first. */
  async headers(ids?: string[]): Promise<ManifestHeader[]> {
    const list = ids ?? (await this.snapshotIds());
    return mapLimit(list, 8, (id) => this.header(id));
  }

  /**
   * Every backup, oldest first, for listing: a manifest that cannot be read is reported with
   * its error instead of hiding all the others.
   */
  async listBackups(): Promise<({ id: string; header: ManifestHeader } | { id: string; error: string })[]> {
    return mapLimit(
      await this.snapshotIds(),
      8,
      async (id): Promise<{ id: string; header: ManifestHeader } | { id: string; error: string }> => {
        try {
          return { id, header: await this.header(id) };
        } catch (e) {
          if (!(e instanceof IntegrityError)) throw e;
          return { id, error: e.message };
        }
      },
    );
  }

  /**
   * Resolve what the user typed to an existing backup id: "latest" (the newest backup that
   * matches the filter), a full id, a unique part of it (the 8-character short id among them);
   * each trailing "^" then steps to that backup's parent (see parentOf). A given id must match
   * the filter too, so a typo of the wrong host's id is caught.
   */
  async resolve(ref: string, filter?: BackupFilter): Promise<string> {
    const base = ref.replace(/\^+$/, '');
    const ids = await this.snapshotIds();
    let id = base === 'latest' ? await this.latest(ids, filter) : this.matchId(ids, base);
    if (base !== 'latest' && !isEmptyFilter(filter)) {
      const h = await this.header(id);
      if (!matchesFilter({ host: h.host, sources: h.sources.map((s) => s.path), tags: h.tags }, filter)) {
        throw new UsageError(
          `backup ${id} (${describeGroup({ host: h.host, sources: h.sources.map((s) => s.path) })}) does not match ${describeFilter(filter)}`,
          {
            hint: 'drop the filter, or give an id of a backup it selects ("s3backup list" with the same filter lists them)',
          },
        );
      }
    }
    for (let up = ref.length - base.length; up > 0; up--) id = await this.parentOf(id, ids);
    return id;
  }

  private matchId(ids: string[], ref: string): string {
    if (ids.includes(ref)) return ref;
    const matches = ref === '' ? [] : ids.filter((id) => id.startsWith(ref) || id.endsWith(`-${ref}`));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new UsageError(`backup id "${ref}" is ambiguous: ${matches.slice(0, 5).join(', ')}${matches.length > 5 ? ', …' : ''}`);
    }
    throw new S3BackupError(`no backup "${ref}" in ${this.location}`, { hint: 'run "s3backup list" to see the backup ids' });
  }

  /** The newest backup matching the filter; headers are read newest first, a few at a time, until one matches. */
  private async latest(ids: string[], filter: BackupFilter | undefined): Promise<string> {
    if (ids.length === 0) throw new S3BackupError(`repository ${this.location} has no backups yet`);
    if (isEmptyFilter(filter)) return ids.at(-1)!;
    const found = await this.newestWhere(ids, (h) =>
      matchesFilter({ host: h.host, sources: h.sources.map((s) => s.path), tags: h.tags }, filter),
    );
    if (found) return found;
    throw new S3BackupError(`no backup in ${this.location} matches ${describeFilter(filter)}`, {
      hint: 'run "s3backup list" to see the hosts, sources and tags of the backups',
    });
  }

  /** The newest of `ids` whose header satisfies `want` (damaged manifests are passed over). */
  private async newestWhere(ids: string[], want: (h: ManifestHeader) => boolean): Promise<string | undefined> {
    const BATCH = 8;
    for (let end = ids.length; end > 0; end -= BATCH) {
      const batch = ids.slice(Math.max(0, end - BATCH), end).reverse();
      const headers = await mapLimit(batch, BATCH, (id) =>
        this.header(id).catch((e: unknown) => {
          if (e instanceof IntegrityError) return undefined;
          throw e;
        }),
      );
      const i = headers.findIndex((h) => h !== undefined && want(h));
      if (i >= 0) return batch[i];
    }
    return undefined;
  }

  /**
   * A backup's parent ("ID^"): the backup an incremental one was made against, as its manifest
   * records it, if that backup is still in the repository; else the newest earlier backup of the
   * same group (host and sources).
   */
  async parentOf(id: string, ids?: string[]): Promise<string> {
    const all = ids ?? (await this.snapshotIds());
    const h = await this.header(id);
    if (h.parent && all.includes(h.parent)) return h.parent;
    const sources = h.sources.map((s) => s.path);
    const key = groupKey({ host: h.host, sources });
    const earlier = all.filter((x) => x < id);
    const found = await this.newestWhere(earlier, (p) => groupKey({ host: p.host, sources: p.sources.map((s) => s.path) }) === key);
    if (found) return found;
    throw new S3BackupError(`backup ${id} has no earlier backup of ${describeGroup({ host: h.host, sources })} in ${this.location}`, {
      hint: 'it is the first of its group (or the earlier ones were forgotten); "s3backup list" shows what is there',
    });
  }

  async loadManifest(id: string): Promise<LocalManifest> {
    const key = this.manifestKey(id);
    const where = `${this.location}/${key}`;
    if (!this.encrypted) return LocalManifest.fromStream(await this.store.get(key), where, this.openSegments);
    const master = this.masterKey();
    return LocalManifest.fromStream(await this.store.get(key), where, this.openSegments, (sealed, plain) =>
      openManifestFile(master, id, sealed, plain, where),
    );
  }
}
