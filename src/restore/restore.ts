import * as fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ArchiveCursor, type ReadStats } from '../archive/reader.ts';
import { fsPath } from '../archive/names.ts';
import { S3BackupError } from '../errors.ts';
import type { Entry, LocalManifest } from '../repo/manifest.ts';
import { Repository } from '../repo/repository.ts';
import { FileRestorer } from './file-content.ts';
import { MetadataStep } from './metadata.ts';
import { includeBases, isRestored, planRestore, type RestorePlan } from './plan.ts';
import { checkTarget, SafeTree } from './safe-tree.ts';
import { COLD_CLASSES, type Store } from '../store/store.ts';
import type { KeySource } from '../crypto/keys.ts';
import type { BackupFilter } from '../repo/groups.ts';

export { checkEntryPath, makeIncludeFilter } from './plan.ts';
export { DamagedContentError } from './file-content.ts';

export interface RestoreOptions {
  store: Store;
  /** The key of an encrypted repository. */
  keys?: KeySource;
  /** Backup id, unique prefix, or "latest". */
  snapshot: string;
  /** Which backups "latest" chooses from (--host, --path, --tag); a given id must match it too. */
  filter?: BackupFilter | undefined;
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
 * Restore a backup (or the entries matching --include) into target. Content is read with one
 * ranged GET per run of needed frames and each file's SHA-256 is checked as it is written.
 */
export async function runRestore(opts: RestoreOptions): Promise<RestoreResult> {
  const t0 = performance.now();
  const repo = await Repository.open(opts.store, opts.keys);
  const id = await repo.resolve(opts.snapshot, opts.filter);
  const manifest = await repo.loadManifest(id);
  try {
    return await restoreManifest(repo, manifest, opts, t0);
  } finally {
    await manifest.dispose();
  }
}

async function restoreManifest(repo: Repository, manifest: LocalManifest, opts: RestoreOptions, t0: number): Promise<RestoreResult> {
  const plan = await planRestore(manifest, opts.include);
  await checkColdArchives(
    repo.store,
    manifest.archives.filter((_, i) => plan.spans[i]!.length > 0).map((a) => a.key),
    opts,
  );
  const root = await checkTarget(opts.target, opts.overwrite ?? false);
  const result = emptyResult(manifest.header.id, root);
  const stats: ReadStats = { bytesFetched: 0, requests: 0 };
  const cursors = manifest.archives.map(
    (a, i) => new ArchiveCursor(repo.store, a, plan.spans[i]!, stats, undefined, repo.frameOpener(a), { sinkCopies: true }),
  );
  const tree = new SafeTree(root, opts.overwrite ?? false);
  const metadata = new MetadataStep(root);
  const files = new FileRestorer(tree, cursors, metadata, result, {
    backupId: manifest.header.id,
    skipDamaged: opts.skipDamaged ?? false,
    linkTargets: plan.linkTargets,
  });
  // Modes are given at creation (the writer thread opens files with their final mode).
  const umask = process.umask(0);
  try {
    const later = await restoreInArchiveOrder(manifest, plan, { tree, files, metadata, result }, opts);
    await files.flush();
    await restoreHardlinks(later.hardlinks, tree, files, result);
    await files.flush();
    // Symlinks last: nothing is written after them, so none can redirect a write.
    restoreSymlinks(later.symlinks, tree, metadata, result);
    result.warnings.push(...metadata.finish(tree));
  } catch (e) {
    // Files already checked and queued are written all the same: what could be restored is.
    await files.flush().catch(() => {});
    throw translateWriteError(e, root);
  } finally {
    process.umask(umask);
    await files.close();
    for (const c of cursors) await c.close();
  }
  result.bytesFetched = stats.bytesFetched;
  result.requests = stats.requests;
  result.durationMs = Math.round(performance.now() - t0);
  return result;
}

function emptyResult(id: string, target: string): RestoreResult {
  return {
    id,
    target,
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
}

/** What pass 2 writes into. */
interface RestoreSteps {
  tree: SafeTree;
  files: FileRestorer;
  metadata: MetadataStep;
  result: RestoreResult;
}

/**
 * Pass 2: directories and file contents, in archive order (each archive read front to back).
 * Links wait: hard links until the files they name exist, symlinks until nothing else is written.
 */
async function restoreInArchiveOrder(
  manifest: LocalManifest,
  plan: RestorePlan,
  { tree, files, metadata, result }: RestoreSteps,
  opts: RestoreOptions,
): Promise<{ hardlinks: Entry[]; symlinks: Entry[] }> {
  const hardlinks: Entry[] = [];
  const symlinks: Entry[] = [];
  const progress = new ProgressReport(result, plan, opts.onProgress);
  for await (const batch of manifest.entryBatches({ under: includeBases(opts.include) }))
    for (const e of batch) {
      if (opts.signal?.aborted) {
        throw new S3BackupError(`restore interrupted: ${tree.root} holds part of the backup`, {
          hint: 'run the same restore again with --overwrite to complete it (it rewrites what is there)',
        });
      }
      if (!isRestored(plan, e)) continue;
      if (e.error) {
        result.skipped.push(e.path);
        continue;
      }
      switch (e.type) {
        case 'dir':
          tree.dir(e.path);
          metadata.dir(e);
          result.dirs++;
          break;
        case 'file': {
          const waiting = files.restore(e);
          if (waiting) await waiting;
          break;
        }
        case 'hardlink':
          hardlinks.push(e);
          break;
        case 'symlink':
          symlinks.push(e);
          break;
        default:
          result.skipped.push(e.path);
      }
      progress.report(e.path);
    }
  return { hardlinks, symlinks };
}

/** Hard links to files restored above; if the first name was not restored, its content. */
async function restoreHardlinks(hardlinks: Entry[], tree: SafeTree, files: FileRestorer, result: RestoreResult): Promise<void> {
  for (const e of hardlinks) {
    if (files.written.has(e.target!)) {
      fs.linkSync(tree.abs(e.target!), tree.place(e.path));
      result.hardlinks++;
    } else {
      await files.restore(e);
    }
  }
}

function restoreSymlinks(symlinks: Entry[], tree: SafeTree, metadata: MetadataStep, result: RestoreResult): void {
  for (const e of symlinks) {
    const abs = tree.place(e.path);
    fs.symlinkSync(fsPath(e.target!), abs);
    metadata.symlink(abs, e);
    result.symlinks++;
  }
}

/** onProgress, at most every 100 ms. */
class ProgressReport {
  private last = 0;
  private readonly result: RestoreResult;
  private readonly plan: RestorePlan;
  private readonly onProgress: ((p: RestoreProgress) => void) | undefined;

  constructor(result: RestoreResult, plan: RestorePlan, onProgress: ((p: RestoreProgress) => void) | undefined) {
    this.result = result;
    this.plan = plan;
    this.onProgress = onProgress;
  }

  report(current: string): void {
    const now = performance.now();
    if (!this.onProgress || now - this.last < 100) return;
    this.last = now;
    this.onProgress({
      files: this.result.files,
      bytes: this.result.bytes,
      totalFiles: this.plan.totalFiles,
      totalBytes: this.plan.totalBytes,
      current,
    });
  }
}

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
    throw new ColdStorageError(
      `restore from archive storage requested (${tier}, kept ${days} days) for ${frozen.length} archive(s): ${frozen.map((f) => f.key).join(', ')}`,
      {
        hint: 'run the same restore again once they are readable (or add --wait)',
      },
    );
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
