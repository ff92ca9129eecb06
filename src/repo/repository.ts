import { randomBytes } from 'node:crypto';
import { AlreadyExistsError, IntegrityError, NotFoundError, S3BackupError, UsageError } from '../errors.ts';
import { ARCHIVE_SUFFIX, type Codec } from '../archive/codec.ts';
import { getBuffer, type Store } from '../store/store.ts';
import { LocalManifest, type ManifestHeader, parseHeaderPrefix } from './manifest.ts';
import { mapLimit } from '../concurrency.ts';

/**
 * The repository layout on top of a Store (docs/format.md):
 *   config.json                      what this is (format, version, creation time)
 *   snapshots/<id>.ndjson.zst        manifests: a backup exists iff its manifest exists
 *   archives/<id>.tar.zst|.tar.gz|.tar   data (tiers to colder storage classes)
 * Snapshot ids sort by time (to the millisecond, so two backups in one second still list in
 * order): 20261126T095033.123Z-1a2b3c4d.
 */
export const REPO_FORMAT = 's3backup-repository';
export const REPO_VERSION = 1;
export const CONFIG_KEY = 'config.json';
export const SNAPSHOTS = 'snapshots/';
export const ARCHIVES = 'archives/';
const MANIFEST_SUFFIX = '.ndjson.zst';
const ID_RE = /^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}$/;

export interface RepoConfig {
  format: typeof REPO_FORMAT;
  version: number;
  created: string;
  id: string;
  /** Settings every backup to this repository uses unless told otherwise. */
  defaults?: { compression?: Codec; level?: number; frameSize?: number };
}

export class RepositoryMissingError extends S3BackupError {}

export function newSnapshotId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '');
  return `${t}-${randomBytes(4).toString('hex')}`;
}

export function isSnapshotId(s: string): boolean {
  return ID_RE.test(s);
}

export class Repository {
  readonly store: Store;
  readonly config: RepoConfig;

  private constructor(store: Store, config: RepoConfig) {
    this.store = store;
    this.config = config;
  }

  get location(): string {
    return this.store.location;
  }

  /** Open an existing repository; a clear error if there is none at this location. */
  static async open(store: Store): Promise<Repository> {
    let raw: Buffer;
    try {
      raw = await getBuffer(store, CONFIG_KEY);
    } catch (e) {
      if (e instanceof NotFoundError) {
        throw new RepositoryMissingError(`no s3backup repository at ${store.location}`, {
          hint: 'check --repo; a repository is created by the first "s3backup backup" to it',
        });
      }
      throw e;
    }
    let config: RepoConfig;
    try {
      config = JSON.parse(raw.toString('utf8')) as RepoConfig;
    } catch {
      throw new S3BackupError(`${store.location}/${CONFIG_KEY} is not valid JSON`);
    }
    if (config.format !== REPO_FORMAT) {
      throw new S3BackupError(`${store.location} is not an s3backup repository (${CONFIG_KEY} says otherwise)`);
    }
    if (config.version > REPO_VERSION) {
      throw new S3BackupError(`repository ${store.location} has format version ${config.version}; this s3backup reads up to ${REPO_VERSION}`, {
        hint: 'upgrade s3backup',
      });
    }
    return new Repository(store, config);
  }

  /** Open the repository, creating it first if the location has none (race-safe: create-only). */
  static async openOrInit(
    store: Store,
    defaults: RepoConfig['defaults'] = { compression: 'zstd', frameSize: 4 << 20 },
  ): Promise<{ repo: Repository; created: boolean }> {
    const existing = await store.head(CONFIG_KEY);
    if (existing) return { repo: await Repository.open(store), created: false };
    const config: RepoConfig = {
      format: REPO_FORMAT,
      version: REPO_VERSION,
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
      if (e instanceof AlreadyExistsError) return { repo: await Repository.open(store), created: false };
      throw e;
    }
    return { repo: new Repository(store, config), created: true };
  }

  manifestKey(id: string): string {
    return `${SNAPSHOTS}${id}${MANIFEST_SUFFIX}`;
  }

  archiveKey(id: string, codec: Codec): string {
    return `${ARCHIVES}${id}${ARCHIVE_SUFFIX[codec]}`;
  }

  /** Ids of every complete backup, oldest first. */
  async snapshotIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const o of this.store.list(SNAPSHOTS)) {
      const name = o.key.slice(SNAPSHOTS.length);
      if (!name.endsWith(MANIFEST_SUFFIX)) continue;
      const id = name.slice(0, -MANIFEST_SUFFIX.length);
      if (isSnapshotId(id)) ids.push(id);
    }
    return ids.sort();
  }

  /** The header (stats, sources, time) of one backup, read with a single small ranged GET. */
  async header(id: string): Promise<ManifestHeader> {
    const key = this.manifestKey(id);
    const where = `${this.location}/${key}`;
    const prefix = await getBuffer(this.store, key, { start: 0, end: 256 << 10 });
    const h = await parseHeaderPrefix(prefix, where);
    if (h) return h;
    // Header longer than the first read (or a corrupt object): read it all and report properly.
    const whole = await LocalManifest.fromStream(await this.store.get(key), where);
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
    return mapLimit(await this.snapshotIds(), 8, async (id): Promise<{ id: string; header: ManifestHeader } | { id: string; error: string }> => {
      try {
        return { id, header: await this.header(id) };
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e;
        return { id, error: e.message };
      }
    });
  }

  /** Resolve "latest", a full id, or a unique id prefix to an existing backup id. */
  async resolve(ref: string): Promise<string> {
    const ids = await this.snapshotIds();
    if (ref === 'latest') {
      const last = ids.at(-1);
      if (!last) throw new S3BackupError(`repository ${this.location} has no backups yet`);
      return last;
    }
    if (ids.includes(ref)) return ref;
    const matches = ids.filter((id) => id.startsWith(ref) || id.endsWith(`-${ref}`));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new UsageError(`backup id "${ref}" is ambiguous: ${matches.slice(0, 5).join(', ')}${matches.length > 5 ? ', …' : ''}`);
    }
    throw new S3BackupError(`no backup "${ref}" in ${this.location}`, { hint: 'run "s3backup list" to see the backup ids' });
  }

  async loadManifest(id: string): Promise<LocalManifest> {
    const key = this.manifestKey(id);
    return LocalManifest.fromStream(await this.store.get(key), `${this.location}/${key}`);
  }
}
