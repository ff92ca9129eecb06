import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import picomatch from 'picomatch';
import { ArchiveCursor, FrameTable, mergeSpans, type ReadStats } from '../archive/reader.ts';
import { displayName, fsPath, isCanonicalName, nameFromArg } from '../archive/names.ts';
import { IntegrityError, S3BackupError, UsageError } from '../errors.ts';
import { contentLocationProblem, type Entry, type LocalManifest } from '../repo/manifest.ts';
import { Repository } from '../repo/repository.ts';
import { SmallFileWriter } from './file-writer.ts';
import { SparseWriter } from './sparse.ts';
import { XattrWriter } from '../archive/xattrs.ts';
import { COLD_CLASSES, type Store } from '../store/store.ts';
import type { KeySource } from '../crypto/keys.ts';

export interface RestoreOptions {
  store: Store;
  /** The key of an encrypted repository. */
  keys?: KeySource;
  /** Backup id, unique prefix, or "latest". */
  snapshot: string;
  target: string;
  /**
   * Globs on snapshot paths ("my-data/docs/**", "**\/*.pdf"); a matching directory brings its
   * subtree. "\xHH" (80 to ff) is that byte of a name that is not UTF-8 (see nameFromArg).
   */
  include?: string[];
  /** Allow a non-empty target; existing files at restored paths are replaced. */
  overwrite?: boolean;
  /** Archives needed in GLACIER / DEEP_ARCHIVE: request temporary readable copies (RestoreObject). */
  thaw?: { days?: number; tier?: 'Bulk' | 'Standard' | 'Expedited'; wait?: boolean; pollMs?: number };
  /**
   * A file whose content is damaged in the repository (a frame that does not decompress or
   * authenticate, a SHA-256 mismatch) is left out and listed in `damaged`, and the restore goes
   * on with the rest. Without it the first such file fails the restore.
   */
  skipDamaged?: boolean;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface RestoreProgress {
  files: number;
  bytes: number;
  totalFiles: number;
  totalBytes: number;
  current: string;
}

export interface RestoreResult {
  id: string;
  target: string;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  bytes: number;
  /** Entries listed in the backup without content (unreadable at backup time). */
  skipped: string[];
  /** Files left out because their content is damaged in the repository (skipDamaged), and why. */
  damaged: { path: string; problem: string }[];
  /** What was restored incompletely: extended attributes not set (not root, a file system without them). */
  warnings: string[];
  bytesFetched: number;
  requests: number;
  durationMs: number;
}

/**
 * Reject any snapshot path that could land outside the target: absolute paths, "..", empty or
 * "." components, NUL bytes; and a name not held as s3backup holds names (src/archive/names.ts:
 * its escaped bytes stand for bytes ≥ 0x80 only, so "/", "." and NUL are checked here as the
 * bytes they will be). Manifests come from storage we do not fully trust.
 */
export function checkEntryPath(p: string): void {
  if (typeof p !== 'string' || p === '' || p.startsWith('/') || p.includes('\0')) {
    throw new IntegrityError(`refusing to restore ${JSON.stringify(p)}: absolute or empty path`);
  }
  for (const part of p.split('/')) {
    if (part === '' || part === '.' || part === '..') {
      throw new IntegrityError(`refusing to restore ${JSON.stringify(p)}: path leaves the target directory`);
    }
  }
  if (!isCanonicalName(p)) throw new IntegrityError(`refusing to restore ${JSON.stringify(p)}: not a name as s3backup stores names (damaged manifest?)`);
}

export function makeIncludeFilter(include: string[] | undefined): ((p: string) => boolean) | undefined {
  if (!include || include.length === 0) return undefined;
  const m = picomatch(include.map((g) => nameFromArg(g).replace(/\/+$/, '')), { dot: true });
  return (p) => {
    // A match on the path or any ancestor selects it.
    let q = p;
    for (;;) {
      if (m(q)) return true;
      const i = q.lastIndexOf('/');
      if (i < 0) return false;
      q = q.slice(0, i);
    }
  };
}

function hasContent(e: Entry): boolean {
  return (e.type === 'file' || e.type === 'hardlink') && !e.error && e.size > 0 && e.offset !== undefined && e.archive !== undefined;
}

/**
 * Restores directory trees safely: every parent is created by us or checked to be a real
 * directory (never a symlink), files are created with O_EXCL|O_NOFOLLOW, and symlinks are made
 * last, so nothing a backup contains can make us write outside the target.
 */
class SafeTree {
  readonly root: string;
  private readonly known = new Set<string>();
  private readonly overwrite: boolean;

  constructor(root: string, overwrite: boolean) {
    this.root = root;
    this.overwrite = overwrite;
  }

  /** The absolute path of rel as a name (for messages: displayName). */
  name(rel: string): string {
    return path.join(this.root, ...rel.split('/'));
  }

  /** The absolute path of rel for file-system calls (bytes where a name is not UTF-8). */
  abs(rel: string): string | Buffer {
    return fsPath(this.name(rel));
  }

  /** Make sure rel (a directory) exists as a real directory, creating it and its parents. */
  dir(rel: string): void {
    if (rel === '' || this.known.has(rel)) return;
    const i = rel.lastIndexOf('/');
    this.dir(i < 0 ? '' : rel.slice(0, i));
    const abs = this.abs(rel);
    try {
      fs.mkdirSync(abs, 0o700);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const st = fs.lstatSync(abs);
      if (!st.isDirectory()) {
        if (st.isSymbolicLink()) {
          throw new IntegrityError(`refusing to restore through ${rel}: it is a symlink in the target`);
        }
        if (!this.overwrite) throw new S3BackupError(`${displayName(this.name(rel))} exists and is not a directory`, { hint: 'use --overwrite to replace it' });
        fs.unlinkSync(abs);
        fs.mkdirSync(abs, 0o700);
      }
    }
    this.known.add(rel);
  }

  parent(rel: string): void {
    const i = rel.lastIndexOf('/');
    this.dir(i < 0 ? '' : rel.slice(0, i));
  }

  /** Clear the way for a new non-directory at rel. */
  clear(rel: string): void {
    // In a target that was empty, nothing can be in the way that we did not create; a repeated
    // path then fails on O_EXCL. Only --overwrite has to look.
    if (!this.overwrite) return;
    const abs = this.abs(rel);
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) throw new S3BackupError(`${displayName(this.name(rel))} is a directory; cannot replace it with a file`);
    fs.unlinkSync(abs);
  }
}

/** Files up to this size are checked whole, then created on the writer thread. */
const SMALL_FILE = 1 << 20;

/** Apply owner (when root), mode and times; for symlinks only owner and times. */
function applyMeta(abs: string | Buffer, e: Entry, isRoot: boolean): void {
  // Seconds as a float keep sub-millisecond precision (a Date would round to the millisecond).
  const atime = e.mtime / 1000;
  const mtime = e.mtime / 1000;
  if (e.type === 'symlink') {
    if (isRoot) fs.lchownSync(abs, e.uid, e.gid);
    fs.lutimesSync(abs, atime, mtime);
    return;
  }
  if (isRoot) fs.chownSync(abs, e.uid, e.gid);
  fs.chmodSync(abs, e.mode & 0o7777);
  fs.utimesSync(abs, atime, mtime);
}

async function checkTarget(target: string, overwrite: boolean): Promise<string> {
  const abs = path.resolve(target);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (st && !st.isDirectory()) throw new UsageError(`restore target ${target} exists and is not a directory`);
  if (st && !overwrite && fs.readdirSync(abs).length > 0) {
    throw new UsageError(`restore target ${target} is not empty`, {
      hint: 'restore into an empty or new directory, or add --overwrite to replace files there',
    });
  }
  fs.mkdirSync(abs, { recursive: true });
  return fs.realpathSync(abs);
}

/**
 * Restore a backup (or the entries matching --include) into target. Content is read with one
 * ranged GET per run of needed frames and each file's SHA-256 is checked as it is written.
 */
export async function runRestore(opts: RestoreOptions): Promise<RestoreResult> {
  const t0 = performance.now();
  const repo = await Repository.open(opts.store, opts.keys);
  const id = await repo.resolve(opts.snapshot);
  const manifest = await repo.loadManifest(id);
  try {
    return await restoreManifest(repo, manifest, opts, t0);
  } finally {
    await manifest.dispose();
  }
}

async function restoreManifest(repo: Repository, manifest: LocalManifest, opts: RestoreOptions, t0: number): Promise<RestoreResult> {
  const selected = makeIncludeFilter(opts.include);
  const tables = manifest.archives.map((a) => new FrameTable(a));

  // Pass 1: validate every path before touching the disk; plan which frames to fetch.
  const spans: [number, number][][] = tables.map(() => []);
  const ancestors = new Set<string>();
  const restoredPaths = new Set<string>();
  let totalFiles = 0;
  let totalBytes = 0;
  let matched = 0;
  for await (const e of manifest.entries()) {
    checkEntryPath(e.path);
    if (e.type === 'symlink' && typeof e.target !== 'string') throw new IntegrityError(`symlink ${e.path} has no target`);
    if (e.type === 'hardlink') {
      try {
        checkEntryPath(e.target ?? '');
      } catch (err) {
        throw new IntegrityError(`refusing to restore hard link ${JSON.stringify(e.path)}: its target ${(err as Error).message.replace(/^refusing to restore /, '')}`);
      }
    }
    if (selected && !selected(e.path)) continue;
    matched++;
    restoredPaths.add(e.path);
    for (let i = e.path.indexOf('/'); i >= 0; i = e.path.indexOf('/', i + 1)) ancestors.add(e.path.slice(0, i));
    if (hasContent(e)) {
      const problem = contentLocationProblem(e, manifest.archives);
      if (problem) throw new IntegrityError(`${e.path} ${problem}`);
      const t = tables[e.archive!]!;
      if (e.type === 'file' || !restoredPaths.has(e.target!)) spans[e.archive!]!.push(t.span(e.offset!, e.size));
    }
    if (e.type === 'file' || e.type === 'hardlink') {
      totalFiles++;
      totalBytes += e.size;
    }
  }
  if (selected && matched === 0) {
    throw new UsageError(`nothing in backup ${manifest.header.id} matches ${opts.include!.map((g) => JSON.stringify(g)).join(', ')}`, {
      hint: `run "s3backup ls ${manifest.header.id}" to see its paths (they start with the source name, e.g. ${manifest.header.sources[0]?.name ?? 'data'}/)`,
    });
  }

  await checkColdArchives(repo.store, manifest.archives.filter((_, i) => spans[i]!.length > 0).map((a) => a.key), opts);

  const root = await checkTarget(opts.target, opts.overwrite ?? false);
  const tree = new SafeTree(root, opts.overwrite ?? false);
  const isRoot = process.getuid?.() === 0;
  const stats: ReadStats = { bytesFetched: 0, requests: 0 };
  const cursors = manifest.archives.map((a, i) => new ArchiveCursor(repo.store, a, mergeSpans(spans[i]!), stats, undefined, repo.frameOpener(a)));
  const result: RestoreResult = {
    id: manifest.header.id,
    target: root,
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    bytes: 0,
    skipped: [],
    damaged: [],
    warnings: [],
    bytesFetched: 0,
    requests: 0,
    durationMs: 0,
  };
  const dirs: Entry[] = [];
  const symlinks: Entry[] = [];
  // Set after everything else of the file (content, owner, mode): a chown clears
  // security.capability, and a directory's default ACL set before its contents are created
  // would hand them ACLs they did not have. Setting attributes leaves the mtime alone.
  const xattrWriter = new XattrWriter(isRoot);
  const filesWithXattrs: Entry[] = [];
  const hardlinks: Entry[] = [];
  const written = new Set<string>();
  let lastProgress = 0;
  const progress = (current: string) => {
    const now = performance.now();
    if (!opts.onProgress || now - lastProgress < 100) return;
    lastProgress = now;
    opts.onProgress({ files: result.files, bytes: result.bytes, totalFiles, totalBytes, current });
  };

  // Small files go to a writer thread (content complete and its SHA-256 checked first); large
  // ones are written here, as their frames arrive.
  const writer = new SmallFileWriter();
  const uid = process.getuid?.() ?? -1;
  const gid = process.getgid?.() ?? -1;
  // New files get the creator's ids, unless the directory is setgid (the target root may be).
  const rootSetgid = (fs.statSync(root).mode & 0o2000) !== 0;
  const needsChown = (e: Entry) => isRoot && (e.uid !== uid || e.gid !== gid || rootSetgid);
  const corrupt = (e: Entry, err?: IntegrityError) =>
    new DamagedContentError(err ? `${e.path}: ${err.message}` : `${e.path}: content does not match its SHA-256 in the manifest (archive corrupt?)`, {
      hint: err?.hint ?? `run "s3backup verify ${manifest.header.id} --deep" for details`,
      ...(err ? { cause: err } : {}),
    });

  const writeFile = async (e: Entry, source: Entry) => {
    tree.parent(e.path);
    tree.clear(e.path);
    const abs = tree.abs(e.path);
    if (source.size <= SMALL_FILE) {
      const chunks: Buffer[] = [];
      const hash: Hash = createHash('sha256');
      if (hasContent(source)) {
        try {
          await cursors[source.archive!]!.read(source.offset!, source.size, (chunk) => {
            hash.update(chunk);
            chunks.push(chunk);
          });
        } catch (err) {
          throw err instanceof IntegrityError ? corrupt(e, err) : err;
        }
      }
      if (source.sha256 && hash.digest('hex') !== source.sha256) throw corrupt(e);
      await writer.add({ abs, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, chown: needsChown(e) }, chunks);
    } else {
      const fd = fs.openSync(abs, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
      const hash: Hash = createHash('sha256');
      // All-zero blocks are skipped, not written: they become holes (a sparse file stays sparse).
      const out = new SparseWriter(fd);
      try {
        if (hasContent(source)) {
          await cursors[source.archive!]!.read(source.offset!, source.size, (chunk) => {
            hash.update(chunk);
            out.write(chunk);
          });
        }
        out.finish();
      } catch (err) {
        // Never leave a partly written file behind; say which file the archive failed for.
        fs.closeSync(fd);
        fs.rmSync(abs, { force: true });
        if (err instanceof IntegrityError) throw corrupt(e, err);
        if (err && typeof err === 'object' && 'code' in err) (err as NodeJS.ErrnoException).path ??= displayName(tree.name(e.path));
        throw err;
      }
      fs.closeSync(fd);
      if (source.sha256 && hash.digest('hex') !== source.sha256) {
        fs.rmSync(abs, { force: true });
        throw corrupt(e);
      }
      applyMeta(abs, { ...e, type: 'file' }, isRoot);
    }
    if (e.xattrs) filesWithXattrs.push(e);
    result.files++;
    result.bytes += e.size;
    written.add(e.path);
  };

  /** writeFile; with skipDamaged, a file whose content is damaged is listed instead (nothing of it is left). */
  const writeOrSkip = async (e: Entry) => {
    try {
      await writeFile(e, e);
    } catch (err) {
      if (!(opts.skipDamaged && err instanceof DamagedContentError)) throw err;
      result.damaged.push({ path: e.path, problem: err.message });
    }
  };

  // Modes are given at creation (the writer thread opens files with their final mode).
  const umask = process.umask(0);
  try {
    // Pass 2: directories and file contents, in archive order.
    for await (const e of manifest.entries()) {
      if (opts.signal?.aborted) {
        throw new S3BackupError(`restore interrupted: ${root} holds part of the backup`, {
          hint: 'run the same restore again with --overwrite to complete it (it rewrites what is there)',
        });
      }
      if (selected && !selected(e.path) && !(e.type === 'dir' && ancestors.has(e.path))) continue;
      if (e.error) {
        result.skipped.push(e.path);
        continue;
      }
      switch (e.type) {
        case 'dir':
          tree.dir(e.path);
          dirs.push(e);
          result.dirs++;
          break;
        case 'file':
          await writeOrSkip(e);
          break;
        case 'hardlink':
          hardlinks.push(e);
          break;
        case 'symlink':
          symlinks.push(e);
          break;
        default:
          result.skipped.push(e.path);
      }
      progress(e.path);
    }
    await writer.flush();
    // Hard links to files restored above; if the first name was not selected, its content.
    for (const e of hardlinks) {
      if (written.has(e.target!)) {
        tree.parent(e.path);
        tree.clear(e.path);
        fs.linkSync(tree.abs(e.target!), tree.abs(e.path));
        result.hardlinks++;
      } else {
        await writeOrSkip(e);
      }
    }
    await writer.flush();
    for (const e of filesWithXattrs) xattrWriter.apply(tree.abs(e.path), displayName(e.path), e.xattrs!);
    // Symlinks last: nothing is written after them, so none can redirect a write.
    for (const e of symlinks) {
      tree.parent(e.path);
      tree.clear(e.path);
      const abs = tree.abs(e.path);
      fs.symlinkSync(fsPath(e.target!), abs);
      applyMeta(abs, e, isRoot);
      if (e.xattrs) xattrWriter.apply(abs, displayName(e.path), e.xattrs);
      result.symlinks++;
    }
    // Directory modes and times after their contents, deepest first.
    for (let i = dirs.length - 1; i >= 0; i--) {
      const d = dirs[i]!;
      applyMeta(tree.abs(d.path), d, isRoot);
      if (d.xattrs) xattrWriter.apply(tree.abs(d.path), displayName(d.path), d.xattrs);
    }
    result.warnings.push(...xattrWriter.finish());
  } catch (e) {
    // Files already checked and queued are written all the same: what could be restored is.
    await writer.flush().catch(() => {});
    throw translateWriteError(e, root);
  } finally {
    process.umask(umask);
    await writer.close();
    for (const c of cursors) await c.close();
  }
  result.bytesFetched = stats.bytesFetched;
  result.requests = stats.requests;
  result.durationMs = Math.round(performance.now() - t0);
  return result;
}

/** A file's content as stored is damaged: it cannot be read back, or not as it was backed up. */
export class DamagedContentError extends IntegrityError {}

/** File-system errors while writing the restore, as one clear line naming the fix. */
function translateWriteError(e: unknown, root: string): unknown {
  if (e instanceof S3BackupError) return e;
  const err = e as NodeJS.ErrnoException;
  const where = err.path ?? root;
  switch (err.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new S3BackupError(`no space left on the device while writing ${where}`, {
        hint: `free space under ${root} (or restore elsewhere, or only some files with --include), then run the restore again with --overwrite`,
        cause: e,
      });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new S3BackupError(`permission denied writing ${where}`, { hint: 'choose a --target this user can write to', cause: e });
    default:
      return err?.code ? new S3BackupError(`cannot write ${where}: ${err.message}`, { cause: e }) : e;
  }
}

export class ColdStorageError extends S3BackupError {}

/**
 * Archives in GLACIER / DEEP_ARCHIVE cannot be read until restored. Before writing anything:
 * name the ones this restore needs; with thaw, request them (RestoreObject, for exactly
 * those archives) and either stop, telling the user to run again, or wait until readable.
 */
async function checkColdArchives(store: Store, keys: string[], opts: RestoreOptions): Promise<void> {
  const cold = async () => {
    const out: { key: string; storageClass: string; restore: string | undefined }[] = [];
    for (const key of keys) {
      const info = await store.head(key);
      if (info?.storageClass && COLD_CLASSES.has(info.storageClass) && info.restore !== 'available') {
        out.push({ key, storageClass: info.storageClass, restore: info.restore });
      }
    }
    return out;
  };
  let frozen = await cold();
  if (frozen.length === 0) return;
  const list = frozen.map((f) => `${f.key} (${f.storageClass}${f.restore === 'ongoing' ? ', restore in progress' : ''})`).join(', ');
  if (!opts.thaw) {
    throw new ColdStorageError(`${frozen.length} archive(s) this restore needs are in archive storage and cannot be read yet: ${list}`, {
      hint: 'run again with --request-thaw [--tier Bulk|Standard|Expedited] [--days N] [--wait] to restore them first (Standard takes hours; Bulk is cheapest)',
    });
  }
  const thaw = store.capabilities().thaw;
  if (!thaw) throw new ColdStorageError(`archives are in archive storage but ${store.location} cannot restore them`);
  const days = opts.thaw.days ?? 7;
  const tier = opts.thaw.tier ?? 'Standard';
  for (const f of frozen) if (f.restore !== 'ongoing') await thaw.requestRestore(f.key, { days, tier });
  if (!opts.thaw.wait) {
    throw new ColdStorageError(`restore from archive storage requested (${tier}, kept ${days} days) for ${frozen.length} archive(s): ${frozen.map((f) => f.key).join(', ')}`, {
      hint: 'run the same restore again once they are readable (or add --wait)',
    });
  }
  const poll = opts.thaw.pollMs ?? 60_000;
  const interrupted = () => new S3BackupError('restore interrupted while waiting for archive storage');
  while (frozen.length > 0) {
    if (opts.signal?.aborted) throw interrupted();
    // An interrupt ends the wait at once, not after the rest of a (default one-minute) poll interval.
    await sleep(poll, undefined, { signal: opts.signal }).catch(() => {
      throw interrupted();
    });
    frozen = await cold();
  }
}
