import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { IntegrityError, S3BackupError } from '../errors.ts';
import {
  type BackupStats,
  compareTreePaths,
  type Entry,
  type Extent,
  isWholeFile,
  type LocalManifest,
  type ManifestHeader,
} from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { ArchiveSizeCache } from '../verify/broken.ts';
import type { BackupOptions } from './types.ts';

// Stage "parent": the backup an incremental is compared with (chosen, loaded, its archives
// checked), and its entries read in step with the walk.

/**
 * The backup an incremental is compared with, or why there is none. A damaged manifest met on
 * the way is passed over (its error added to `damaged`, for a warning): it cannot be the parent.
 */
async function chooseParent(
  repo: Repository,
  opts: BackupOptions,
  sources: { path: string; name: string }[],
  host: string,
  tags: string[],
  now: Date,
  damaged: string[],
): Promise<{ header: ManifestHeader | undefined; reason: string; others?: ManifestHeader[]; first?: boolean }> {
  if (opts.full) return { header: undefined, reason: 'full backup requested' };
  let header: ManifestHeader | undefined;
  if (opts.parent) {
    header = await repo.header(await repo.resolve(opts.parent));
  } else {
    const want = chainKeyOf(
      sources.map((x) => x.path),
      tags,
      host,
    );
    // Newest first, a few headers at a time: usually the newest one or two are the parent.
    const ids = (await repo.snapshotIds()).reverse();
    const others: ManifestHeader[] = [];
    search: for (let i = 0; i < ids.length; i += 8) {
      const batch = await Promise.all(
        ids.slice(i, i + 8).map((id) =>
          repo.header(id).then(
            (h) => ({ h }),
            (e: unknown) => ({ e }),
          ),
        ),
      );
      for (const r of batch) {
        if ('e' in r) {
          // Newer than the parent found, if any: it might have been the parent.
          if (r.e instanceof IntegrityError) damaged.push(r.e.message);
          continue;
        }
        const h = r.h;
        if (
          chainKeyOf(
            h.sources.map((x) => x.path),
            h.tags,
            h.host,
          ) === want
        ) {
          header = h;
          break search;
        }
        if (h) others.push(h);
      }
    }
    // Every header was read: enough to see a host name that changes every run (hostWarning).
    if (!header) return { header: undefined, reason: 'first backup of these sources', others, first: true };
  }
  const chain = (header.chain ?? 0) + 1;
  const fullEvery = opts.fullEvery ?? 0;
  if (fullEvery > 0 && chain >= fullEvery) return { header: undefined, reason: `full every ${fullEvery} backups` };
  const days = opts.fullAfterDays ?? 30;
  const start = Date.parse(header.chainStart ?? header.time);
  if (days > 0 && now.getTime() - start > days * 86_400_000)
    return { header: undefined, reason: `last full backup older than ${days} days` };
  return { header, reason: `compared with ${header.id}` };
}

/**
 * What makes backups one chain of incrementals (the parent is the newest of the same): host,
 * source paths and tags. Tags split a chain, not a group (src/repo/groups.ts).
 */
export function chainKeyOf(paths: string[], tags: string[], host: string): string {
  return JSON.stringify([host, [...paths].sort(), [...tags].sort()]);
}

/** The parent this backup is compared with, or none and why. */
export interface ParentChoice {
  /**
   * No parent because this is the first backup of its group (not a full one asked for or due):
   * it may still point at content other backups stored.
   */
  first: boolean;
  /** The parent's manifest, downloaded (to dispose of); undefined for a full backup. */
  parent: LocalManifest | undefined;
  header: ManifestHeader | undefined;
  /** Why it is full or incremental (BackupResult.kindReason). */
  reason: string;
  /** Every header, when all were read without finding a parent (for the host-name check). */
  others: ManifestHeader[] | undefined;
  /** Warnings for the backup: damaged manifests passed over, a broken parent not used. */
  warnings: string[];
}

/**
 * Choose the parent and make sure it can be one: its manifest reads, and its archives are all
 * there as it says (an incremental points at them: a missing one would break this backup and
 * every one after it). A parent that fails either makes a full backup, with a warning, unless
 * it was asked for by name.
 */
export async function loadParent(
  repo: Repository,
  opts: BackupOptions,
  sources: { path: string; name: string }[],
  host: string,
  tags: string[],
  now: Date,
): Promise<ParentChoice> {
  const damaged: string[] = [];
  const passedOver = () => damaged.map((m) => `${m} (passed over as the parent of this backup)`);
  const chosen = await chooseParent(repo, opts, sources, host, tags, now, damaged);
  if (!chosen.header)
    return {
      parent: undefined,
      header: undefined,
      reason: chosen.reason,
      others: chosen.others,
      warnings: passedOver(),
      first: chosen.first === true,
    };
  let parent: LocalManifest;
  try {
    parent = await repo.loadManifest(chosen.header.id);
  } catch (e) {
    // Its header read, the rest did not: a full backup, unless that parent was asked for.
    if (!(e instanceof IntegrityError) || opts.parent) throw e;
    damaged.push(e.message);
    return {
      parent: undefined,
      header: undefined,
      reason: `the manifest of ${chosen.header.id} is damaged`,
      others: undefined,
      warnings: passedOver(),
      first: false,
    };
  }
  const problems = await new ArchiveSizeCache(repo.store).problems(parent.archives).catch(async (e: unknown) => {
    await parent.dispose();
    throw e;
  });
  if (problems.length === 0)
    return { parent, header: chosen.header, reason: chosen.reason, others: chosen.others, warnings: passedOver(), first: false };
  await parent.dispose();
  const first = problems[0]!;
  const broken =
    `backup ${chosen.header.id} is broken (${first.key}: ${first.problem}` +
    `${problems.length > 1 ? `, and ${problems.length - 1} more archive(s)` : ''}); this backup is a full one instead of an incremental of it` +
    ` (run "s3backup verify --all" to see every broken backup)`;
  return {
    parent: undefined,
    header: undefined,
    reason: `parent ${chosen.header.id} is broken, full backup instead`,
    others: undefined,
    warnings: [...passedOver(), broken],
    first: false,
  };
}

/**
 * A layer over a parent whose entries turn out damaged half-way: the backup cannot list the
 * parent's entries as its own, and is made again as a full one (recordBackup).
 */
export class DamagedParentError extends S3BackupError {}

/**
 * The parent's entries, read in step with the walk (both are in tree order), a segment at a
 * time: `entry` answers at once but at the end of one. A damaged entry ends them: the files
 * after it are compared with nothing, so read and stored again (or, under a layer, the backup
 * is made again as a full one: DamagedParentError). Files of the parent the walk passes by
 * were deleted (counted in stats.deletedFiles).
 */
export class ParentEntries {
  private readonly batches: AsyncGenerator<Iterator<Entry>>;
  private readonly stats: BackupStats;
  private readonly warn: (m: string) => void;
  /** The batch being read, until it ends. */
  private batch: Iterator<Entry> | undefined;
  /** The next entry, taken from the batch but not reached by the walk yet. */
  private ahead: Entry | undefined;
  private done = false;
  /** Told each path of the parent's that the walk passed by (a deletion), in tree order. */
  onPassedOver: ((path: string) => void) | undefined;
  /** This backup is a layer over the parent's entries: a damaged one is DamagedParentError. */
  layered = false;

  private constructor(parent: LocalManifest, stats: BackupStats, warn: (m: string) => void) {
    this.batches = parent.segments ? parent.segments.batches() : oneByOne(parent.entries());
    this.stats = stats;
    this.warn = warn;
  }

  static async open(parent: LocalManifest, stats: BackupStats, warn: (m: string) => void): Promise<ParentEntries> {
    const p = new ParentEntries(parent, stats, warn);
    await p.refill();
    return p;
  }

  private async refill(): Promise<void> {
    this.batch = undefined;
    try {
      const r = await this.batches.next();
      if (r.done) this.done = true;
      else this.batch = r.value;
    } catch (e) {
      this.damaged(e);
    }
  }

  /** The batch's next entry; undefined at its end, or after a damaged one. */
  private take(): Entry | undefined {
    if (!this.batch) return undefined;
    try {
      const r = this.batch.next();
      if (!r.done) return r.value;
    } catch (e) {
      this.damaged(e);
    }
    this.batch = undefined;
    return undefined;
  }

  /** A damaged entry ends the parent's entries (rethrown when it is not damage, or under a layer). */
  private damaged(e: unknown): void {
    if (!(e instanceof IntegrityError)) throw e;
    if (this.layered) throw new DamagedParentError(e.message, { cause: e });
    this.warn(`${e.message} (the files after it are read again instead of compared with it)`);
    this.done = true;
  }

  /** The parent's entry of path `p` (walked in tree order), if it has one; a promise only at the end of a batch. */
  entry(p: string): Entry | undefined | Promise<Entry | undefined> {
    for (;;) {
      const next = this.ahead ?? this.take();
      if (next === undefined) {
        if (this.done) return undefined;
        return this.refill().then(() => this.entry(p));
      }
      const c = compareTreePaths(next.path, p);
      if (c > 0) {
        this.ahead = next;
        return undefined;
      }
      this.ahead = undefined;
      if (c === 0) return next;
      if (next.type === 'file' || next.type === 'hardlink') this.stats.deletedFiles!++;
      this.onPassedOver?.(next.path);
    }
  }

  /** After the walk: whatever it did not reach was deleted. */
  async end(): Promise<void> {
    await this.entry('\uffff');
  }

  async close(): Promise<void> {
    await this.batches.return(undefined);
  }
}

/** A manifest's entries (versions 1 and 2) as batches of one. */
async function* oneByOne(entries: AsyncGenerator<Entry>): AsyncGenerator<Iterator<Entry>> {
  try {
    for await (const e of entries) yield [e].values();
  } finally {
    await entries.return(undefined);
  }
}

/**
 * Is this file the same as in the parent? By default size, mtime, ctime and inode must all
 * match (no content is read: a no-change backup of a large tree reads only metadata). With
 * rehash, the content is read and hashed instead, and only the hash decides.
 */
export function unchanged(prev: Entry, abs: string | Buffer, st: fs.Stats, rehash: boolean): boolean {
  if (!isWholeFile(prev)) return false;
  if (prev.size !== st.size) return false;
  if (!rehash) return prev.mtime === st.mtimeMs && prev.ctime === st.ctimeMs && prev.ino === st.ino;
  try {
    const h = createHash('sha256');
    const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        h.update(buf.subarray(0, n));
      }
    } finally {
      fs.closeSync(fd);
    }
    return h.digest('hex') === prev.sha256;
  } catch {
    return false; // unreadable now: the normal path reports it
  }
}

/**
 * Whether entry `e` is `prev` byte for byte in a segment: every field the same (attributes the
 * same object, as an unchanged file takes its parent's), and its archive the same one (the
 * caller maps it). Then SegmentWriter may copy the parent's segment instead of writing it.
 */
export function sameLine(prev: Entry, e: Entry): boolean {
  return (
    prev.path === e.path &&
    sameStat(prev, e) &&
    prev.size === e.size &&
    prev.sha256 === e.sha256 &&
    (prev.archive === undefined) === (e.archive === undefined) &&
    prev.header === e.header &&
    prev.offset === e.offset &&
    sameExtents(prev.extents, e.extents) &&
    prev.chunks === e.chunks &&
    prev.error === e.error &&
    prev.changed === e.changed &&
    prev.xattrs === e.xattrs
  );
}

/** Whether two extent lists are the same runs (their archives the same ones: the caller maps them). */
function sameExtents(a: readonly Extent[] | undefined, b: readonly Extent[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]![1] !== b[i]![1] || a[i]![2] !== b[i]![2]) return false;
  return true;
}

/** Whether two entries of one path say the same of its inode: type, target, mode, owner, times. */
export function sameStat(prev: Entry, e: Entry): boolean {
  return (
    prev.type === e.type &&
    prev.target === e.target &&
    prev.mode === e.mode &&
    prev.uid === e.uid &&
    prev.gid === e.gid &&
    prev.mtime === e.mtime &&
    prev.ctime === e.ctime &&
    prev.ino === e.ino
  );
}
