import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IntegrityError } from '../errors.ts';
import { type ArchiveRef, contentLocationProblem, type Entry, type LocalManifest, type ManifestHeader } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { makeTempDir } from '../repo/temp-dirs.ts';
import { ArchiveSizeCache } from '../verify/broken.ts';

// Stage "content index": content the repository already holds, found by size and SHA-256, so
// that a renamed, moved or copied file, or one another host stored, is pointed at instead of
// stored again (docs/format.md "Content stored once").

/**
 * Files smaller than this are stored as before, never looked up. A candidate is read twice when
 * its content turns out new (hashed first, then stored); below 64 KiB a second copy costs at
 * most 64 KiB (less compressed) while the sizes of small files collide so often that nearly
 * every new small file would be hashed first. In typical trees files under 64 KiB are most of
 * the files and a few per cent of the bytes.
 */
export const DEDUP_MIN_SIZE = 64 << 10;

/** At most this many backups of other groups (the newest of each) are searched besides the parent. */
export const DEDUP_OTHER_BACKUPS = 8;

/** Of the newest backups, this many are looked at to find those other groups. */
const DEDUP_SCAN = 64;

/** The index lines of one bucket (by the first byte of the SHA-256) held in memory at once: at most this many buckets. */
const CACHED_BUCKETS = 8;

/** Bits of the size filter: 1 MiB of memory, ~2 % false positives at a million distinct sizes. */
const FILTER_BITS = 1 << 23;

/** Where known content is: a source backup's archive (index into its archives line) and offset. */
export interface KnownContent {
  /** The source backup's archive. */
  archive: ArchiveRef;
  /** The source is the parent (its archives are reused by index, as an unchanged file's). */
  parentArchive: number | undefined;
  offset: number;
}

/** The backups whose content a backup may point at: the parent, and the newest backup of a few other groups. */
export interface ContentSources {
  parent: LocalManifest | undefined;
  /** The others, downloaded when the first lookup comes (otherSources). */
  others: () => Promise<LocalManifest[]>;
}

/**
 * The newest backup of each other group (host, sources, tags) among the newest DEDUP_SCAN, at
 * most DEDUP_OTHER_BACKUPS, downloaded; a damaged one, or one with a missing archive, is passed
 * over (content is taken only from backups that restore).
 */
export async function otherSources(
  repo: Repository,
  parentId: string | undefined,
  groupOf: (h: ManifestHeader) => string,
  own: string,
): Promise<LocalManifest[]> {
  const ids = (await repo.snapshotIds()).reverse().slice(0, DEDUP_SCAN);
  const seen = new Set([own]);
  const chosen: string[] = [];
  for (const id of ids) {
    if (chosen.length >= DEDUP_OTHER_BACKUPS) break;
    if (id === parentId) continue;
    let h: ManifestHeader;
    try {
      h = await repo.header(id);
    } catch (e) {
      if (e instanceof IntegrityError) continue;
      throw e;
    }
    const g = groupOf(h);
    if (seen.has(g)) continue;
    seen.add(g);
    chosen.push(id);
  }
  const sizes = new ArchiveSizeCache(repo.store);
  const out: LocalManifest[] = [];
  try {
    for (const id of chosen) {
      let m: LocalManifest;
      try {
        m = await repo.loadManifest(id);
      } catch (e) {
        if (e instanceof IntegrityError) continue;
        throw e;
      }
      out.push(m);
      if ((await sizes.problems(m.archives)).length > 0) await out.pop()!.dispose();
    }
  } catch (e) {
    // A read that fails outright fails the lookup: what was downloaded before it goes too.
    await Promise.all(out.map((m) => m.dispose()));
    throw e;
  }
  return out;
}

/**
 * The content of the source backups' files of at least DEDUP_MIN_SIZE bytes, by size and
 * SHA-256. Built on the first lookup, so that a backup with no candidate (no new or changed file
 * that large) downloads and reads nothing for it. Memory stays bounded whatever the repository's size: the entries go to 256 bucket
 * files on the local disk (by the first byte of the SHA-256), and memory holds a bit filter of
 * the sizes (1 MiB: is any known content this size?) and at most CACHED_BUCKETS buckets, read
 * back when a lookup needs one.
 */
export class ContentIndex {
  private sources: LocalManifest[];
  private readonly parent: LocalManifest | undefined;
  private readonly others: () => Promise<LocalManifest[]>;
  private building: Promise<void> | undefined;
  private dir = '';
  private readonly filter = new Uint8Array(FILTER_BITS / 8);
  private readonly pending = new Map<number, string[]>();
  private pendingBytes = 0;
  private readonly cache = new Map<number, Map<string, string>>();

  constructor(sources: ContentSources) {
    this.parent = sources.parent;
    this.sources = sources.parent ? [sources.parent] : [];
    this.others = sources.others;
  }

  /** Content of this size and SHA-256, if a source backup holds it. */
  async find(size: number, sha256: string): Promise<KnownContent | undefined> {
    await this.built();
    if (!this.mayHold(size)) return undefined;
    const line = (await this.bucket(parseInt(sha256.slice(0, 2), 16))).get(`${sha256} ${size}`);
    if (line === undefined) return undefined;
    const [source, archive, offset] = line.split(' ').map(Number) as [number, number, number];
    const m = this.sources[source]!;
    return { archive: m.archives[archive]!, parentArchive: m === this.parent ? archive : undefined, offset };
  }

  /** Whether any known content has this size (false positives possible, never false negatives). */
  async holdsSize(size: number): Promise<boolean> {
    if (size < DEDUP_MIN_SIZE) return false;
    await this.built();
    return this.mayHold(size);
  }

  private mayHold(size: number): boolean {
    return sizeBits(size).every((b) => (this.filter[b >>> 3]! & (1 << (b & 7))) !== 0);
  }

  private built(): Promise<void> {
    this.building ??= this.build();
    return this.building;
  }

  private async build(): Promise<void> {
    this.sources = [...this.sources, ...(await this.others())];
    this.dir = await makeTempDir('s3backup-content-');
    for (let s = 0; s < this.sources.length; s++) {
      const m = this.sources[s]!;
      try {
        for await (const e of m.entries()) if (isKnownContent(e, m.archives)) this.add(e, s);
      } catch (e) {
        // A source whose entries are damaged half-way gives what it gave: those entries were checked.
        if (!(e instanceof IntegrityError)) throw e;
      }
    }
    this.flush();
  }

  private add(e: Entry, source: number): void {
    for (const b of sizeBits(e.size)) this.filter[b >>> 3]! |= 1 << (b & 7);
    const bucket = parseInt(e.sha256!.slice(0, 2), 16);
    const line = `${e.sha256} ${e.size} ${source} ${e.archive} ${e.offset}\n`;
    let list = this.pending.get(bucket);
    if (!list) this.pending.set(bucket, (list = []));
    list.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= 4 << 20) this.flush();
  }

  private flush(): void {
    for (const [bucket, list] of this.pending) fs.appendFileSync(this.bucketFile(bucket), list.join(''));
    this.pending.clear();
    this.pendingBytes = 0;
  }

  private bucketFile(bucket: number): string {
    return path.join(this.dir, bucket.toString(16).padStart(2, '0'));
  }

  /** One bucket: "sha256 size" → "source archive offset" (the first source that has it wins: the parent). */
  private async bucket(bucket: number): Promise<Map<string, string>> {
    const cached = this.cache.get(bucket);
    if (cached) {
      this.cache.delete(bucket);
      this.cache.set(bucket, cached);
      return cached;
    }
    const map = new Map<string, string>();
    const text = await fs.promises.readFile(this.bucketFile(bucket), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const at = line.indexOf(' ', 65);
      const key = line.slice(0, at);
      if (!map.has(key)) map.set(key, line.slice(at + 1));
    }
    this.cache.set(bucket, map);
    if (this.cache.size > CACHED_BUCKETS) this.cache.delete(this.cache.keys().next().value!);
    return map;
  }

  async dispose(): Promise<void> {
    await this.building?.catch(() => {});
    if (this.dir) await fs.promises.rm(this.dir, { recursive: true, force: true });
    for (const m of this.sources) if (m !== this.parent) await m.dispose();
  }
}

/**
 * An entry whose content can be pointed at: a whole, checked file of at least DEDUP_MIN_SIZE,
 * in one run of one archive. A file held in extents is not (docs/format.md "Extents"): a copy
 * pointed at would carry its extents on into other files and groups, keeping every archive they
 * span alive for as long as any of them is kept; it is stored whole instead.
 */
function isKnownContent(e: Entry, archives: ArchiveRef[]): boolean {
  return (
    (e.type === 'file' || e.type === 'hardlink') &&
    e.extents === undefined &&
    e.size >= DEDUP_MIN_SIZE &&
    e.error === undefined &&
    e.changed !== true &&
    contentLocationProblem(e, archives) === undefined
  );
}

/** Three bit positions of a size in the filter. */
function sizeBits(size: number): number[] {
  const h = createHash('sha256').update(String(size)).digest();
  return [h.readUInt32LE(0) % FILTER_BITS, h.readUInt32LE(4) % FILTER_BITS, h.readUInt32LE(8) % FILTER_BITS];
}

/**
 * The SHA-256 of a file's first `size` bytes, or undefined when it is not `size` bytes long
 * now or cannot be read (then it is stored as any new file, and the store step reports it).
 */
export async function hashFile(abs: string | Buffer, size: number): Promise<string | undefined> {
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(Math.min(size, 1 << 20) + 1);
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > size) return undefined;
      h.update(buf.subarray(0, bytesRead));
    }
    return total === size ? h.digest('hex') : undefined;
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}
