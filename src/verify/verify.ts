import { createHash } from 'node:crypto';
import { ArchiveCursor, type ReadStats } from '../archive/reader.ts';
import { IntegrityError, NotFoundError } from '../errors.ts';
import type { Entry, LocalManifest } from '../repo/manifest.ts';
import { contentLocationProblem } from '../repo/manifest.ts';
import { Repository } from '../repo/repository.ts';
import type { Store } from '../store/store.ts';
import type { KeySource } from '../crypto/keys.ts';
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
  /** Download and decompress everything, checking the archive's and every file's SHA-256. */
  deep?: boolean;
  onProgress?: (p: { bytes: number; totalBytes: number }) => void;
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
  const id = await repo.resolve(opts.snapshot);
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
    const present: boolean[] = [];
    /** Archives in which some frame was found damaged (already reported). */
    const damaged: boolean[] = [];
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
    const totalBytes = manifest.archives.reduce((s, a) => s + a.uncompressedSize, 0);
    const stats: ReadStats = { bytesFetched: 0, requests: 0 };
    const hashes = manifest.archives.map(() => createHash('sha256'));
    const cursors = manifest.archives.map(
      (a, i) =>
        new ArchiveCursor(repo.store, a, a.frames.length ? [[0, a.frames.length - 1]] : [], stats, (c) => hashes[i]!.update(c), openers[i]),
    );
    try {
      for await (const e of entriesReportingDamage(manifest, (err) =>
        problems.push({ where: repo.manifestKey(id), problem: err.message }),
      )) {
        result.entries++;
        try {
          checkEntryPath(e.path);
          // A hard link's first name must be inside the snapshot too (restore refuses it otherwise).
          if (e.type === 'hardlink') checkEntryPath(e.target ?? '');
        } catch (err) {
          problems.push({ where: e.path, problem: (err as Error).message });
          continue;
        }
        // Where the content should be must exist (restore checks the same before writing).
        if ((e.type === 'file' || e.type === 'hardlink') && !e.error && e.size > 0) {
          const problem = contentLocationProblem(e, manifest.archives);
          if (problem) {
            problems.push({ where: e.path, problem });
            continue;
          }
        }
        // The attributes in the entry's tar header (pax SCHILY.xattr records) must be the
        // manifest's: a restore sets the manifest's, `tar --xattrs -x` the header's.
        if (opts.deep && !e.error && e.header !== undefined && e.archive !== undefined && e.type !== 'hardlink' && present[e.archive]) {
          let inTar: Record<string, string> | undefined;
          if (!Number.isSafeInteger(e.header) || e.header < 0 || e.header + BLOCK > manifest.archives[e.archive]!.uncompressedSize) {
            problems.push({ where: e.path, problem: `its tar header offset ${e.header} lies outside its archive` });
            continue;
          }
          try {
            inTar = await headerXattrs(cursors[e.archive]!, e.header);
          } catch (err) {
            const where = manifest.archives[e.archive]!.key;
            if (!(err instanceof IntegrityError)) {
              problems.push({ where, problem: (err as Error).message });
              present[e.archive] = false;
              continue;
            }
            // Said for the archive: a restore reads no header, so the entry is named only if
            // its content is lost too (below).
            if (!damaged[e.archive]) problems.push({ where, problem: err.message });
            damaged[e.archive] = true;
            inTar = e.xattrs;
          }
          const diff = xattrDifference(e.xattrs, inTar);
          if (diff)
            problems.push({
              where: e.path,
              problem: `extended attributes in the archive's tar header do not match the manifest's: ${diff}`,
            });
        }
        if (!opts.deep || e.type !== 'file' || e.error || e.archive === undefined || e.offset === undefined) continue;
        if (!present[e.archive]) continue;
        const h = createHash('sha256');
        try {
          await cursors[e.archive]!.read(e.offset, e.size, (c) => h.update(c));
        } catch (err) {
          const where = manifest.archives[e.archive]!.key;
          if (!(err instanceof IntegrityError)) {
            // The archive cannot be read at all (gone, the store failing): said once, not per file.
            problems.push({ where, problem: (err as Error).message });
            present[e.archive] = false;
            continue;
          }
          // Damage is local (a frame that does not decompress or authenticate): say it once
          // for the archive, then name every file it reaches, and go on with the rest, so
          // the report says exactly what a restore would lose.
          if (!damaged[e.archive]) problems.push({ where, problem: err.message });
          damaged[e.archive] = true;
          problems.push({ where: e.path, problem: `content cannot be read: ${err.message}` });
          continue;
        }
        const got = h.digest('hex');
        if (got !== e.sha256)
          problems.push({
            where: e.path,
            problem: `content SHA-256 ${got.slice(0, 16)}… does not match the manifest's ${e.sha256?.slice(0, 16)}…`,
          });
        result.filesChecked++;
        result.bytesChecked += e.size;
        opts.onProgress?.({ bytes: result.bytesChecked, totalBytes });
      }
      if (opts.deep) {
        for (const [i, a] of manifest.archives.entries()) {
          if (!present[i] || damaged[i]) continue;
          try {
            await cursors[i]!.drain();
          } catch (err) {
            problems.push({ where: a.key, problem: (err as Error).message });
            continue;
          }
          const got = hashes[i]!.digest('hex');
          if (got !== a.sha256)
            problems.push({
              where: a.key,
              problem: `archive SHA-256 ${got.slice(0, 16)}… does not match the manifest's ${a.sha256.slice(0, 16)}…`,
            });
        }
      }
    } finally {
      for (const c of cursors) await c.close();
    }
    result.bytesFetched = stats.bytesFetched;
  } finally {
    await manifest.dispose();
  }
  result.ok = problems.length === 0;
  result.durationMs = Math.round(performance.now() - t0);
  return result;
}
