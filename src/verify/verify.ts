import { createHash } from 'node:crypto';
import { ArchiveCursor, type ReadStats } from '../archive/reader.ts';
import { IntegrityError, NotFoundError } from '../errors.ts';
import type { Entry, LocalManifest } from '../repo/manifest.ts';
import { contentLocationProblem, contentRanges, hasLocation } from '../repo/manifest.ts';
import { Repository } from '../repo/repository.ts';
import type { Store } from '../store/store.ts';
import type { KeySource } from '../crypto/keys.ts';
import type { BackupFilter } from '../repo/groups.ts';
import type { FrameOpener } from '../archive/reader.ts';
import { checkEntryPath } from '../restore/plan.ts';
import { ArchiveSizeCache } from './broken.ts';
import { BLOCK, paxDataLength, paxXattrs } from '../archive/tar.ts';
import { xattrDifference, xattrsToJson } from '../archive/xattrs.ts';

/** A pax header larger than this is not one s3backup wrote (its records are a path, a link and attributes of at most 64 KiB each). */
const MAX_PAX_DATA = 16 << 20;

/** Bytes [off, off+size) of an archive. */
async function readBytes(cursor: ArchiveCursor, off: number, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  await cursor.read(off, size, (c) => parts.push(Buffer.from(c)));
  return Buffer.concat(parts, size);
}

/** The extended attributes in the tar header at `off` (the manifest's form), undefined for none; IntegrityError if it is not a tar header. */
async function headerXattrs(cursor: ArchiveCursor, off: number): Promise<Record<string, string> | undefined> {
  const damaged = (err: unknown) => new IntegrityError(`tar header at offset ${off} is damaged: ${(err as Error).message}`);
  const first = await readBytes(cursor, off, BLOCK);
  let n: number;
  try {
    n = paxDataLength(first);
  } catch (err) {
    throw damaged(err);
  }
  if (n === 0) return undefined;
  if (n > MAX_PAX_DATA) throw damaged(new Error(`its pax header says ${n} bytes`));
  const data = await readBytes(cursor, off + BLOCK, n);
  let attrs: Map<string, Buffer>;
  try {
    attrs = paxXattrs(data);
  } catch (err) {
    throw damaged(err);
  }
  return attrs.size ? xattrsToJson(attrs) : undefined;
}

export interface VerifyOptions {
  store: Store;
  /** The key of an encrypted repository. */
  keys?: KeySource;
  snapshot: string;
  /** Which backups "latest" chooses from (--host, --path, --tag); a given id must match it too. */
  filter?: BackupFilter | undefined;
  /** Download and decompress everything, checking the archive's and every file's SHA-256. */
  deep?: boolean;
  /** Deep only: after each file, the files and bytes checked so far, out of those the backup holds. */
  onProgress?: (p: VerifyProgress) => void;
}

export interface VerifyProgress {
  files: number;
  bytes: number;
  /** The files a deep verify reads (every regular file with stored content), and their bytes. */
  totalFiles: number;
  totalBytes: number;
}

export interface VerifyProblem {
  /** Object key or snapshot path the problem is about. */
  where: string;
  problem: string;
}

export interface VerifyResult {
  id: string;
  deep: boolean;
  ok: boolean;
  archives: number;
  entries: number;
  filesChecked: number;
  bytesChecked: number;
  bytesFetched: number;
  problems: VerifyProblem[];
  durationMs: number;
}

/**
 * A manifest's entries; damage found past its head (decompression or JSON errors) is reported
 * through onDamage and ends the listing, instead of aborting the whole verify. Errors thrown by
 * the consumer's loop body do not pass through here.
 */
async function* entriesReportingDamage(manifest: LocalManifest, onDamage: (err: IntegrityError) => void): AsyncGenerator<Entry> {
  try {
    yield* manifest.entries();
  } catch (err) {
    if (!(err instanceof IntegrityError)) throw err;
    onDamage(err);
  }
}

/**
 * Shallow: the manifest reads, every entry path is safe, every archive exists with its
 * recorded size. Deep: also fetch each archive once, check its SHA-256, that every frame
 * decompresses to its recorded size, and every file's content hash.
 */
export async function runVerify(opts: VerifyOptions): Promise<VerifyResult> {
  const t0 = performance.now();
  const repo = await Repository.open(opts.store, opts.keys);
  const id = await repo.resolve(opts.snapshot, opts.filter);
  const problems: VerifyProblem[] = [];
  const result: VerifyResult = {
    id,
    deep: opts.deep ?? false,
    ok: false,
    archives: 0,
    entries: 0,
    filesChecked: 0,
    bytesChecked: 0,
    bytesFetched: 0,
    problems,
    durationMs: 0,
  };
  let manifest;
  try {
    manifest = await repo.loadManifest(id);
  } catch (e) {
    if (!(e instanceof IntegrityError || e instanceof NotFoundError)) throw e;
    problems.push({ where: repo.manifestKey(id), problem: e.message });
    result.durationMs = Math.round(performance.now() - t0);
    return result;
  }
  try {
    result.archives = manifest.archives.length;
    const check = await ArchiveChecks.open(repo, manifest, problems);
    const total = opts.deep && opts.onProgress ? await storedContentTotals(manifest) : { files: 0, bytes: 0 };
    try {
      const onDamage = (err: IntegrityError) => problems.push({ where: repo.manifestKey(id), problem: err.message });
      for await (const e of entriesReportingDamage(manifest, onDamage)) {
        result.entries++;
        const problem = entryProblem(e, manifest.archives);
        if (problem) {
          problems.push({ where: e.path, problem });
          continue;
        }
        if (!opts.deep || !(await check.headerXattrs(e))) continue;
        if (!(await check.content(e))) continue;
        result.filesChecked++;
        result.bytesChecked += e.size;
        opts.onProgress?.({ files: result.filesChecked, bytes: result.bytesChecked, totalFiles: total.files, totalBytes: total.bytes });
      }
      if (opts.deep) await check.archiveHashes();
    } finally {
      await check.close();
    }
    result.bytesFetched = check.stats.bytesFetched;
  } finally {
    await manifest.dispose();
  }
  result.ok = problems.length === 0;
  result.durationMs = Math.round(performance.now() - t0);
  return result;
}

/** An entry whose content is in archives: what a deep verify reads and counts. */
function hasStoredContent(e: Entry): boolean {
  return e.type === 'file' && !e.error && hasLocation(e);
}

/**
 * The files and bytes a deep verify will read, for its progress: a pass over the local manifest
 * (no request), so the bar counts what the summary counts.
 */
async function storedContentTotals(manifest: LocalManifest): Promise<{ files: number; bytes: number }> {
  const total = { files: 0, bytes: 0 };
  for await (const e of entriesReportingDamage(manifest, () => {})) {
    if (!hasStoredContent(e)) continue;
    total.files++;
    total.bytes += e.size;
  }
  return total;
}

/** What a shallow verify finds wrong with one entry: an unsafe path, or content where none can be. */
function entryProblem(e: Entry, archives: LocalManifest['archives']): string | undefined {
  try {
    checkEntryPath(e.path);
    // A hard link's first name must be inside the snapshot too (restore refuses it otherwise).
    if (e.type === 'hardlink') checkEntryPath(e.target ?? '');
  } catch (err) {
    return (err as Error).message;
  }
  // Where the content should be must exist (restore checks the same before writing).
  if ((e.type === 'file' || e.type === 'hardlink') && !e.error && e.size > 0) return contentLocationProblem(e, archives);
  return undefined;
}

/** The archives of one manifest as verify reads them: which exist, which are damaged, one cursor each. */
class ArchiveChecks {
  readonly stats: ReadStats = { bytesFetched: 0, requests: 0 };
  /** Archives in which some frame was found damaged (already reported). */
  private readonly damaged: boolean[] = [];
  private readonly hashes: ReturnType<typeof createHash>[];
  private readonly cursors: ArchiveCursor[];

  private readonly manifest: LocalManifest;
  private readonly problems: VerifyProblem[];
  private readonly present: boolean[];
  private readonly store: Store;
  private readonly openers: (FrameOpener | undefined)[];
  /** Per archive: the uncompressed offset content reads got to, and whether one went back before it. */
  private readonly readTo: number[];
  private readonly rewound: boolean[] = [];

  private constructor(
    store: Store,
    manifest: LocalManifest,
    problems: VerifyProblem[],
    present: boolean[],
    openers: (FrameOpener | undefined)[],
  ) {
    this.manifest = manifest;
    this.problems = problems;
    this.present = present;
    this.store = store;
    this.openers = openers;
    this.readTo = manifest.archives.map(() => 0);
    this.hashes = manifest.archives.map(() => createHash('sha256'));
    this.cursors = manifest.archives.map(
      (a, i) =>
        new ArchiveCursor(
          store,
          a,
          a.frames.length ? [[0, a.frames.length - 1]] : [],
          this.stats,
          (c) => this.hashes[i]!.update(c),
          openers[i],
        ),
    );
  }

  /** Every archive exists with its recorded size (each missing one is a problem). */
  static async open(repo: Repository, manifest: LocalManifest, problems: VerifyProblem[]): Promise<ArchiveChecks> {
    const present: boolean[] = [];
    const openers: (FrameOpener | undefined)[] = [];
    const sizes = new ArchiveSizeCache(repo.store);
    for (const a of manifest.archives) {
      try {
        openers.push(repo.frameOpener(a));
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        problems.push({ where: a.key, problem: err.message });
        openers.push(undefined);
        present.push(false);
        continue;
      }
      const [missing] = await sizes.problems([a]);
      if (missing) problems.push({ where: missing.key, problem: missing.problem });
      present.push(!missing);
    }
    return new ArchiveChecks(repo.store, manifest, problems, present, openers);
  }

  /**
   * The attributes in the entry's tar header (pax SCHILY.xattr records) must be the manifest's:
   * a restore sets the manifest's, `tar --xattrs -x` the header's. False: the entry can be
   * checked no further.
   */
  async headerXattrs(e: Entry): Promise<boolean> {
    if (e.error || e.header === undefined || e.archive === undefined || e.type === 'hardlink' || !this.present[e.archive]) return true;
    const archive = this.manifest.archives[e.archive]!;
    if (!Number.isSafeInteger(e.header) || e.header < 0 || e.header + BLOCK > archive.uncompressedSize) {
      this.problems.push({ where: e.path, problem: `its tar header offset ${e.header} lies outside its archive` });
      return false;
    }
    if (e.header < this.readTo[e.archive]!) this.rewound[e.archive] = true;
    this.readTo[e.archive] = e.header;
    let inTar: Record<string, string> | undefined;
    try {
      inTar = await headerXattrs(this.cursors[e.archive]!, e.header);
    } catch (err) {
      if (!(err instanceof IntegrityError)) {
        this.problems.push({ where: archive.key, problem: (err as Error).message });
        this.present[e.archive] = false;
        return false;
      }
      // Said for the archive: a restore reads no header, so the entry is named only if its
      // content is lost too (see content).
      this.archiveDamaged(e.archive, err);
      inTar = e.xattrs;
    }
    const diff = xattrDifference(e.xattrs, inTar);
    if (diff)
      this.problems.push({
        where: e.path,
        problem: `extended attributes in the archive's tar header do not match the manifest's: ${diff}`,
      });
    return true;
  }

  /** A file's content read and its SHA-256 compared; false when it was not (or could not be) read. */
  async content(e: Entry): Promise<boolean> {
    if (!hasStoredContent(e)) return false;
    const ranges = contentRanges(e);
    if (ranges.some(([archive]) => !this.present[archive])) return false;
    const h = createHash('sha256');
    for (const [archive, offset, length] of ranges) {
      // A read behind where this archive's reads got to fetches its frames again: the archive's
      // own SHA-256 is then taken by a read of its own (archiveHashes).
      if (offset < this.readTo[archive]!) this.rewound[archive] = true;
      this.readTo[archive] = offset + length;
      try {
        await this.cursors[archive]!.read(offset, length, (c) => h.update(c));
      } catch (err) {
        if (!(err instanceof IntegrityError)) {
          // The archive cannot be read at all (gone, the store failing): said once, not per file.
          this.problems.push({ where: this.manifest.archives[archive]!.key, problem: (err as Error).message });
          this.present[archive] = false;
          return false;
        }
        // Damage is local (a frame that does not decompress or authenticate): said once for the
        // archive, then every file it reaches is named, and the rest go on, so the report says
        // exactly what a restore would lose.
        this.archiveDamaged(archive, err);
        this.problems.push({ where: e.path, problem: `content cannot be read: ${err.message}` });
        return false;
      }
    }
    const got = h.digest('hex');
    if (got !== e.sha256)
      this.problems.push({
        where: e.path,
        problem: `content SHA-256 ${got.slice(0, 16)}… does not match the manifest's ${e.sha256?.slice(0, 16)}…`,
      });
    return true;
  }

  /** Each whole, undamaged archive read to its end and its SHA-256 compared. */
  async archiveHashes(): Promise<void> {
    for (const [i, a] of this.manifest.archives.entries()) {
      if (!this.present[i] || this.damaged[i]) continue;
      if (this.rewound[i]) {
        // Its frames were fetched more than once: hash a fresh read of the whole archive.
        await this.cursors[i]!.close();
        this.hashes[i] = createHash('sha256');
        const hash = this.hashes[i];
        this.cursors[i] = new ArchiveCursor(
          this.store,
          a,
          a.frames.length ? [[0, a.frames.length - 1]] : [],
          this.stats,
          (c) => hash.update(c),
          this.openers[i],
        );
      }
      try {
        await this.cursors[i]!.drain();
      } catch (err) {
        this.problems.push({ where: a.key, problem: (err as Error).message });
        continue;
      }
      const got = this.hashes[i]!.digest('hex');
      if (got !== a.sha256)
        this.problems.push({
          where: a.key,
          problem: `archive SHA-256 ${got.slice(0, 16)}… does not match the manifest's ${a.sha256.slice(0, 16)}…`,
        });
    }
  }

  async close(): Promise<void> {
    for (const c of this.cursors) await c.close();
  }

  private archiveDamaged(i: number, err: IntegrityError): void {
    if (!this.damaged[i]) this.problems.push({ where: this.manifest.archives[i]!.key, problem: err.message });
    this.damaged[i] = true;
  }
}
