import * as os from 'node:os';
import * as path from 'node:path';
import { prestartContentReader } from '../archive/content-reader.ts';
import { displayName } from '../archive/names.ts';
import { errTextWithHint, S3BackupError, UsageError } from '../errors.ts';
import { emptyStats, type EntrySegments, type ManifestHeader } from '../repo/manifest.ts';
import { newSnapshotId, type Repository } from '../repo/repository.ts';
import type { PutOptions } from '../store/store.ts';
import { DEFAULT_ARCHIVE_SIZE, parseArchiveSize } from '../config/archive-settings.ts';
import { ArchiveSet } from './archive-set.ts';
import { commitManifest, encodeManifest, type ManifestFacts } from './commit.ts';
import { checkLevel, compressionOf } from './compression.ts';
import { ItemWriter, settleContent } from './entry-writer.ts';
import { recordFailedRun, recordRun, type RunState, warnerOf } from './history.ts';
import { generatedHostWarning } from './host-identity.ts';
import { ManifestQueue } from './manifest-queue.ts';
import { type EntrySink, LayerWriter, layerOver, type SegmentStore, SegmentWriter } from '../repo/segments.ts';
import { openRepository } from './open.ts';
import { tagOperation } from './operation.ts';
import { DamagedParentError, chainKeyOf, loadParent, type ParentChoice, ParentEntries } from './parent.ts';
import { ContentIndex, otherSources } from './content-index.ts';
import { resolveSources } from './sources.ts';
import { writeStreamEntry } from './stream-entry.ts';
import { streamSourcePath } from './stream-source.ts';
import type { BackupOptions, BackupResult } from './types.ts';
import { makeExcluder, SourceWalk } from './walk.ts';

// The backup engine as a pipeline of stages, one module each:
//   sources.ts      the paths given, checked and named
//   open.ts         the repository opened (or created) and locked, while the walk runs ahead
//   compression.ts  codec, level and frame size (options, else the repository's defaults)
//   parent.ts       the backup an incremental is compared with, and its entries in step
//   entry-writer.ts each walked item into the archives and its entry into the manifest queue
//   archive-set.ts  the archives written (split at archiveSize) and the manifest's archives line
//   manifest-queue.ts entries waiting, in archive order, for their file's hash
//   commit.ts       the manifest, written last and create-only: the moment the backup exists
//   history.ts      the run record (and anomalies) of a success, or the record of a failure
// What happens after a backup (retention, notifications, metrics, log lines) is src/run/after-backup.ts.

export type { BackupOptions, BackupResult } from './types.ts';
export { resolveSources } from './sources.ts';
export { runRecordOf } from './history.ts';

/** A backup that exists, with what the steps after it need. */
export interface RecordedBackup {
  result: BackupResult;
  /** The repository, still open (an encrypted one with its key). */
  repo: Repository;
  /** This backup's own lock could not be removed: it is still in the repository. */
  lockLeft: boolean;
}

/**
 * One backup: walk → tar → compress (frames, in parallel) → upload, then the manifest, written
 * last and create-only. Incremental once a parent exists (the newest backup of the same host,
 * sources and tags): files unchanged since the parent are not read, their entries point at the
 * archive that already holds them; every manifest still lists the whole snapshot. Until the
 * manifest exists there is no backup: a failure or kill before that leaves only an
 * unreferenced archive (or an aborted upload) for prune.
 */
export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  return (await recordBackup(opts)).result;
}

/** runBackup, keeping the repository open for what comes after (src/run/after-backup.ts). */
export async function recordBackup(opts: BackupOptions): Promise<RecordedBackup> {
  const started = opts.startedAt ?? new Date();
  const t0 = performance.now();
  // A bad archive size is a usage error before anything is read or written; so is a level the
  // codec does not take (its first frame would fail, after the repository was locked).
  const archiveSize = parseArchiveSize(opts.archiveSize ?? DEFAULT_ARCHIVE_SIZE, 'the archive size');
  if (opts.codec !== undefined) checkLevel(opts.codec, opts.level, opts.compressionOrigin);
  const run: RunState = { operation: 'pre-flight', kind: opts.full ? 'full' : 'incremental', extensions: new Map(), repoOpen: false };
  let sources: { path: string; name: string }[];
  try {
    sources = opts.stream ? [{ path: streamSourcePath(opts.stream.name), name: opts.stream.name }] : resolveSources(opts.sources);
  } catch (e) {
    // A source that vanished (an unmounted disk) is exactly what the history should show.
    await recordFailedRun(
      opts,
      e,
      opts.stream ? [streamSourcePath(opts.stream.name)] : opts.sources.map((s) => path.resolve(s)),
      started,
      t0,
      run,
    );
    throw tagOperation(e, run.operation);
  }
  const paths = sources.map((s) => s.path);
  try {
    // A stream has nothing to walk: the walk of no source is empty.
    const newWalk = () => new SourceWalk(opts.stream ? [] : sources, makeExcluder(opts.excludes ?? [], opts.excludePaths ?? []));
    const walk = newWalk();
    prestartContentReader();
    const { repo, created, lock, probeWarnings } = await openRepository(opts, walk, run);
    try {
      const result = await writeBackup(opts, archiveSize, repo, created, { walk, sources }, started, t0, run).catch((e: unknown) => {
        if (!(e instanceof DamagedParentError)) throw e;
        // A layer cannot stand on entries that do not read: the same backup, as a full one.
        const fallback = { warning: `${e.message} (passed over as the parent of this backup)`, reason: 'the parent’s entries are damaged' };
        return writeBackup({ ...opts, full: true }, archiveSize, repo, created, { walk: newWalk(), sources }, started, t0, run, fallback);
      });
      const warn = warnerOf(result, opts.onWarning);
      for (const m of probeWarnings) warn(m);
      // The backup exists now: a lock that cannot be removed is a warning, not a failed backup.
      const lockLeft = await lock.release().then(
        () => false,
        (e: unknown) => {
          warn(
            `backup ${result.id} is recorded, but its repository lock could not be removed (${errTextWithHint(e)}); "s3backup unlock" removes it if it stays`,
          );
          return true;
        },
      );
      if (opts.history !== false) await recordRun(opts, result, sources, run);
      return { result, repo, lockLeft };
    } finally {
      await lock.release().catch(() => {});
    }
  } catch (e) {
    await recordFailedRun(opts, e, paths, started, t0, run);
    throw tagOperation(e, run.operation);
  }
}

/** The backup under its lock: parent, entries and archives, then the manifest. */
async function writeBackup(
  opts: BackupOptions,
  archiveSize: number,
  repo: Repository,
  created: boolean,
  { walk, sources }: { walk: SourceWalk; sources: { path: string; name: string }[] },
  started: Date,
  t0: number,
  run: RunState,
  fallback?: { warning: string; reason: string },
): Promise<BackupResult> {
  run.operation = 'parent';
  const store = opts.store;
  const { codec, level, frameSize } = compressionOf(opts, repo.config.defaults);
  const id = newSnapshotId(started);
  const host = opts.host ?? os.hostname();
  const tags = opts.tags ?? [];
  const choosing = loadParent(repo, opts, sources, host, tags, started);
  await walk.runAheadWhile(choosing, opts.signal);
  const choice = await choosing;
  if (fallback) {
    choice.reason = fallback.reason;
    choice.warnings.push(fallback.warning);
  }
  run.kind = choice.parent ? 'incremental' : 'full';
  run.operation = 'upload';
  const { warnings, warn } = warningCollector(opts);
  for (const m of choice.warnings) warn(m);
  const stats = emptyStats();
  let parent: ParentEntries | undefined;
  let queue: ManifestQueue | undefined;
  let archives: ArchiveSet | undefined;
  let content: ContentIndex | undefined;
  // From the start of the manifest's write it may exist (a lost answer): nothing this backup
  // wrote is deleted then.
  let committing = false;
  try {
    // A stream is stored anew every time: nothing of the parent's entries is needed.
    parent = choice.parent && !opts.stream ? await ParentEntries.open(choice.parent, stats, warn) : undefined;
    const retention = objectLockRetention(opts, repo, started);
    // A stream replaces the parent's one file: all its entries anew, no layer over the old ones.
    const parentSegments = opts.stream ? undefined : choice.parent?.segments;
    const segments = entrySink(repo.segmentStore({ retention }), parentSegments, (i) => archives!.keyOf(i));
    queue = new ManifestQueue(segments, settleContent(stats, warn), opts.maxWaitingBytes);
    if (parent) {
      parent.onPassedOver = (p) => queue!.emitDeleted(p);
      parent.layered = segments.keepsParentArchives;
    }
    const maxInFlight = opts.maxInFlight;
    archives = new ArchiveSet({
      repo,
      id,
      codec,
      level,
      frameSize,
      maxInFlight,
      retention,
      archiveSize,
      parentArchives: choice.parent?.archives,
      onResults: queue.onResults,
      stream: opts.stream !== undefined,
    });
    queue.settle = () => archives!.out.frames.settle();
    const extensions = run.extensions;
    const xattrs = opts.xattrs !== false && !opts.stream;
    const parentHasXattrs = xattrs && choice.header?.options.xattrs === true;
    content = contentIndexFor(repo, opts, choice, chainKeyOf(sourcePaths(sources), tags, host));
    const writer = new ItemWriter({
      stats,
      warn,
      archives,
      queue,
      parent,
      rehash: opts.rehash ?? false,
      extents: opts.extents !== false,
      xattrs,
      parentHasXattrs,
      content,
      extensions,
      onProgress: opts.onProgress,
    });
    if (opts.stream) {
      await writeStreamEntry({
        stream: opts.stream,
        archives,
        queue,
        stats,
        inParent: choice.parent !== undefined,
        started,
        extensions,
        onProgress: opts.onProgress,
        signal: opts.signal,
      });
    } else {
      await writer.writeAll(walk, opts.signal);
      await archives.finish();
    }
    // A layer leaves the parent's entries in place, and they name the parent's archives.
    if (segments.keepsParentArchives) archives.reuseAll();
    await queue.finish();
    const facts: ManifestFacts = {
      id,
      started,
      host,
      sources,
      tags,
      codec,
      level,
      frameSize,
      // A stream is not walked: no exclude applied to it.
      excludes: opts.stream ? [] : (opts.excludes ?? []),
      xattrs,
      parent: choice.header,
      found: (stats.foundFiles ?? 0) > 0,
    };
    const { header, manifest } = encodeManifest(repo, facts, stats, warnings, archives, queue, t0);
    if (opts.signal?.aborted) throw new S3BackupError('backup interrupted; nothing was recorded');
    run.operation = 'manifest';
    committing = true;
    const manifestKey = repo.manifestKey(id);
    await commitManifest(store, manifestKey, manifest, {
      contentType: repo.encrypted ? 'application/octet-stream' : 'application/zstd',
      retention,
    });
    return {
      ...stats,
      ...resultFacts(choice, header, archives),
      id,
      repository: store.location,
      repositoryCreated: created,
      host,
      manifestKey,
      warnings,
    };
  } catch (e) {
    await archives?.abort(e, store, committing);
    throw e;
  } finally {
    await archives?.close();
    await parent?.close();
    await choice.parent?.dispose();
    await content?.dispose();
    await queue?.dispose();
  }
}

const sourcePaths = (sources: { path: string }[]) => sources.map((s) => s.path);

/**
 * Where a backup looks for content the repository already holds: an incremental in its parent
 * and in the newest backup of a few other groups, the first backup of a group in those others.
 * A full backup asked for or due (and a stream) stores everything: its archives alone extract
 * to the whole tree with tar.
 */
function contentIndexFor(repo: Repository, opts: BackupOptions, choice: ParentChoice, group: string): ContentIndex | undefined {
  if (opts.stream || (!choice.parent && !choice.first)) return undefined;
  const others = () => otherSources(repo, choice.header?.id, (h) => chainKeyOf(sourcePaths(h.sources), h.tags, h.host), group);
  return new ContentIndex({ parent: choice.parent, others });
}

/**
 * Where the entries go: a layer of the changes over the parent's segments while the parent's
 * layers are few and small (layerOver), else every entry into segments (those the parent has
 * already are not stored again).
 */
function entrySink(store: SegmentStore, parentSegments: EntrySegments | undefined, archiveKey: (i: number) => string): EntrySink {
  if (parentSegments && layerOver(parentSegments)) return new LayerWriter(store, parentSegments, archiveKey);
  const known = new Set([...(parentSegments?.refs ?? []), ...(parentSegments?.layers.flat() ?? [])].map(([id]) => id));
  return new SegmentWriter(store, known, archiveKey);
}

/** The backup's warnings, each also handed to onWarning; paths' bytes that are not UTF-8 shown as \xHH. */
function warningCollector(opts: BackupOptions): { warnings: string[]; warn: (m: string) => void } {
  const warnings: string[] = [];
  const warn = (m: string) => {
    m = displayName(m);
    warnings.push(m);
    opts.onWarning?.(m);
  };
  return { warnings, warn };
}

/** What the result says of the backup's kind, parent, time and archives. */
function resultFacts(choice: ParentChoice, header: ManifestHeader, archives: ArchiveSet) {
  return {
    kind: header.kind,
    ...hostWarningOf(choice, header),
    ...(choice.header ? { parent: choice.header.id } : {}),
    kindReason: choice.reason,
    time: header.time,
    archiveKey: archives.written[0]!.key,
    archiveKeys: archives.written.map((r) => r.key),
  };
}

/** The Object Lock retention of the archives and the manifest, counted from the backup's start. */
function objectLockRetention(opts: BackupOptions, repo: Repository, started: Date): PutOptions['retention'] {
  const lock = opts.objectLock ?? repo.config.defaults?.objectLock;
  if (lock && !opts.store.capabilities().versions) {
    throw new UsageError(`Object Lock retention needs an S3 repository; ${opts.store.location} is not one`, {
      hint: 'drop --object-lock-days (or objectLock in s3backup.yaml)',
    });
  }
  return lock ? { mode: lock.mode, until: new Date(started.getTime() + lock.days * 86_400_000) } : undefined;
}

/**
 * The host-name warning (see host-identity.ts), when every header was read without finding a
 * parent: enough to see a host name that changes every run.
 */
function hostWarningOf(choice: ParentChoice, header: ManifestHeader): Pick<BackupResult, 'hostWarning'> {
  if (!choice.others) return {};
  const hostWarning = generatedHostWarning(
    [...choice.others, header].map((h) => ({ id: h.id, time: h.time, host: h.host, sources: h.sources.map((x) => x.path) })),
  );
  return hostWarning ? { hostWarning } : {};
}
