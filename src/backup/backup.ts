import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Codec, effectiveLevel, levelOutOfRange } from '../archive/codec.ts';
import { DEFAULT_FRAME_SIZE, type FrameWriter } from '../archive/frames.ts';
import { type ContentReader, type ContentResult, prestartContentReader } from '../archive/content-reader.ts';
import { BLOCK, encodeHeader, encodeHeaderInto, padding, type TarHeader } from '../archive/tar.ts';
import { errText, errTextWithHint, IntegrityError, S3BackupError, UsageError } from '../errors.ts';
import {
  type ArchiveRef,
  type BackupStats,
  type Entry,
  EntryWriter,
  emptyStats,
  entriesSize,
  MANIFEST_FORMAT,
  MAX_HEADER_WARNINGS,
  type ManifestHeader,
  settleManifestHead,
} from '../repo/manifest.ts';
import { type HistoryCrypto, newSnapshotId, Repository, RepositoryMissingError } from '../repo/repository.ts';
import { derivationHoldingCores, type KeySource } from '../crypto/keys.ts';
import { getBuffer, type PutOptions, type Store } from '../store/store.ts';
import { ArchiveSizeCache } from '../verify/broken.ts';
import { acquireSharedLock, withLock } from '../repo/locks.ts';
import { forget, prune } from '../prune/prune.ts';
import type { KeepPolicy } from '../retention/policy.ts';
import { VERSION } from '../version.ts';
import { displayName } from '../archive/names.ts';
import { sameXattrs, type XattrMap, XattrReader, xattrsToJson } from '../archive/xattrs.ts';
import { hardLinkKey, makeExcluder, readLinkTarget, SourceWalk, specialKind, walkWarningText } from './walk.ts';
import type { AnomalyFinding, RunRecord } from '../monitor/types.ts';
import { detectAnomalies, type DetectorOptions } from '../monitor/anomaly.ts';
import { appendRun, readHistory, sourceKeyOf } from '../monitor/history.ts';
import { type BackupOperation, tagOperation } from './operation.ts';
import { ArchiveOut } from './archive-out.ts';
import { type ArchiveSettingValues, DEFAULT_ARCHIVE_SIZE, parseArchiveSize } from '../config/archive-settings.ts';
import type { ObjectLockValues } from '../config/backup-settings.ts';
import { generatedHostWarning, type HostIdentityWarning } from './host-identity.ts';

export interface BackupOptions {
  store: Store;
  /** The key of an encrypted repository (passphrase, prompt, KMS). */
  keys?: KeySource;
  /**
   * S3 Object Lock retention for the archive and manifest (default: the repository's, from
   * init). The bucket must have Object Lock enabled.
   */
  objectLock?: ObjectLockValues | undefined;
  /** Files or directories; each becomes a top-level name in the snapshot (its basename). */
  sources: string[];
  excludes?: string[];
  /** Absolute paths never to back up (the repository and log directory, if inside a source). */
  excludePaths?: string[];
  tags?: string[];
  /** The archive settings (config/archive-settings.ts): compression, level, archiveSize. */
  codec?: ArchiveSettingValues['compression'];
  level?: ArchiveSettingValues['level'];
  /**
   * Where codec and level came from, for the error when the level does not fit the codec:
   * codec as "--compression", level as "--level {level}" or "level: {level} in FILE" ({level}
   * stands for the level).
   */
  compressionOrigin?: { codec?: string | undefined; level?: string | undefined };
  frameSize?: number;
  /**
   * Split the backup into archives of about this many bytes of (uncompressed) tar, at file
   * boundaries; a larger file gets an archive of its own. Default DEFAULT_ARCHIVE_SIZE (64 GiB).
   */
  archiveSize?: ArchiveSettingValues['archiveSize'];
  /** Frames being read or compressed at once (default: one per core, at least 3). */
  maxInFlight?: number;
  /** Store everything, even if a parent backup exists. */
  full?: boolean;
  /** Compare with this backup (id, prefix or "latest") instead of the newest of the same source set. */
  parent?: string;
  /** Make a full backup when the chain's full is older than this many days (default 30; 0 = never). */
  fullAfterDays?: number;
  /** Make a full backup after this many incrementals in a row (default 0 = no limit). */
  fullEvery?: number;
  /** Read and hash every file instead of trusting size, times and inode (changes only where content differs). */
  rehash?: boolean;
  /** Store extended attributes and POSIX ACLs (default true; --no-xattrs: false). */
  xattrs?: boolean;
  /**
   * After the backup is recorded, apply this retention policy (forget + prune) to the
   * repository. Off when absent; a failure here is a warning, never a failed backup.
   */
  retention?: { policy?: KeepPolicy | undefined };
  /**
   * Run history and anomaly detection (default on): after the backup its run record is written
   * to history/ and it is judged against earlier comparable runs (result.anomalies); a failed
   * attempt leaves a failure record. false turns both off. Never fails a backup.
   */
  history?: false | { detector?: DetectorOptions | undefined };
  /** Wait this long for forget/prune running elsewhere to finish (default 5 minutes). */
  lockWaitMs?: number;
  /**
   * The host recorded in the backup (default os.hostname()): with the sources (and tags) it
   * picks the parent, and retention, the run history and notifications go by it.
   */
  host?: string;
  /** The backup's start time (default: now). For tests and imports of dated backups. */
  startedAt?: Date;
  onProgress?: (p: BackupProgress) => void;
  /** Called for each warning as it happens (also collected in the result). */
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
}

export interface BackupProgress {
  files: number;
  /** Bytes of the snapshot dealt with so far (read, or found unchanged). */
  bytesDone: number;
  bytesIn: number;
  bytesOut: number;
  current: string;
}

/** What a backup did: its stats (as in the manifest header) plus where it went. */
export interface BackupResult extends Omit<BackupStats, 'warnings'> {
  id: string;
  repository: string;
  repositoryCreated: boolean;
  kind: 'full' | 'incremental';
  /** The host it is recorded under (BackupOptions.host, else the machine's). */
  host: string;
  /**
   * The repository shows this machine's host name changing on every run (a container, a CI
   * runner): see host-identity.ts. Checked when the backup has no parent (all headers read).
   */
  hostWarning?: HostIdentityWarning;
  /** The backup this one was compared with (incrementals). */
  parent?: string;
  /** Why it is full or incremental ("first backup of these sources", "compared with …"). */
  kindReason: string;
  /** What the retention policy did afterwards (when asked for). */
  retention?: { removed: string[]; bytesFreed: number } | { error: string };
  time: string;
  /** Its (first) archive. */
  archiveKey: string;
  /** All its archives: one, unless it outgrew the archive size (BackupOptions.archiveSize). */
  archiveKeys: string[];
  manifestKey: string;
  /** Every warning (the manifest header keeps the first 100 and the count). */
  warnings: string[];
  /** What the anomaly detector found about this backup (when run history is on). */
  anomalies?: AnomalyFinding[];
}

/** A level that does not fit its codec: a usage error, found before anything is written. */
class LevelError extends UsageError {}

/**
 * Refuse a level that `codec` does not take (gzip 1–9, zstd 1–19), naming where each came from
 * (see BackupOptions.compressionOrigin).
 */
export function checkLevel(codec: Codec, level: number | undefined, origin: { codec?: string | undefined; level?: string | undefined } = {}): void {
  const range = levelOutOfRange(codec, level);
  if (!range) return;
  const [min, max] = range;
  const what = (origin.level ?? 'level {level}').replace('{level}', String(level));
  throw new LevelError(`${what} is out of range for ${codec}${origin.codec ? ` (from ${origin.codec})` : ''}: ${codec} levels are ${min} to ${max}`, {
    hint: `give a level from ${min} to ${max}, or none for ${codec}'s default (${effectiveLevel(codec, undefined)})`,
  });
}

/** checkLevel for the codec and level a backup into a repository with these defaults would use (as backupLocked picks them). */
function checkRepositoryLevel(opts: BackupOptions, defaults: Repository['config']['defaults']): void {
  const repoCodec = defaults?.compression ?? 'zstd';
  const codec = opts.codec ?? repoCodec;
  const fromRepo = opts.level === undefined && codec === repoCodec && defaults?.level !== undefined;
  const level = opts.level ?? (fromRepo ? defaults!.level : undefined);
  checkLevel(codec, level, {
    codec: opts.codec !== undefined ? opts.compressionOrigin?.codec : defaults?.compression !== undefined ? "the repository's default, config.json defaults.compression" : undefined,
    level: fromRepo ? "the repository's default level {level} (config.json defaults.level)" : opts.compressionOrigin?.level,
  });
}

/** Pre-flight for sources: each exists and is readable, and names do not collide. */
export function resolveSources(sources: string[]): { path: string; name: string }[] {
  if (sources.length === 0) throw new UsageError('nothing to back up: give at least one source path');
  const out: { path: string; name: string }[] = [];
  const names = new Map<string, string>();
  for (const s of sources) {
    const abs = path.resolve(s);
    let st: fs.Stats;
    try {
      st = fs.statSync(abs);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new UsageError(`source ${s} does not exist`, { hint: 'check the path (relative paths are from the current directory)' });
      }
      throw new UsageError(`source ${s} cannot be read: ${errText(e)}`);
    }
    try {
      fs.accessSync(abs, st.isDirectory() ? fs.constants.R_OK | fs.constants.X_OK : fs.constants.R_OK);
    } catch {
      throw new UsageError(`source ${s} is not readable by this user`, { hint: 'run as a user that can read it, or fix its permissions' });
    }
    const name = path.basename(abs) || 'root';
    const clash = names.get(name);
    if (clash) {
      throw new UsageError(`sources ${clash} and ${s} would both be stored as "${name}"`, {
        hint: 'back them up separately or from their common parent',
      });
    }
    names.set(name, s);
    out.push({ path: abs, name });
  }
  // One canonical order, whatever order the paths were given in: walk order and manifest order
  // must match between a backup and its parent.
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Order of paths in a walk (and a manifest): component by component, parents first. */
export function compareTreePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // A component ends first: the shorter component sorts first.
    if (ca === 47) return -1;
    if (cb === 47) return 1;
    return ca - cb;
  }
  return a.length - b.length;
}

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
): Promise<{ header: ManifestHeader | undefined; reason: string; others?: ManifestHeader[] }> {
  if (opts.full) return { header: undefined, reason: 'full backup requested' };
  let header: ManifestHeader | undefined;
  if (opts.parent) {
    header = await repo.header(await repo.resolve(opts.parent));
  } else {
    const key = (paths: string[], t: string[], h: string) => JSON.stringify([h, [...paths].sort(), [...t].sort()]);
    const want = key(
      sources.map((x) => x.path),
      tags,
      host,
    );
    // Newest first, a few headers at a time: usually the newest one or two are the parent.
    const ids = (await repo.snapshotIds()).reverse();
    const others: ManifestHeader[] = [];
    search: for (let i = 0; i < ids.length; i += 8) {
      const batch = await Promise.all(ids.slice(i, i + 8).map((id) => repo.header(id).then((h) => ({ h }), (e: unknown) => ({ e }))));
      for (const r of batch) {
        if ('e' in r) {
          // Newer than the parent found, if any: it might have been the parent.
          if (r.e instanceof IntegrityError) damaged.push(r.e.message);
          continue;
        }
        const h = r.h;
        if (key(h.sources.map((x) => x.path), h.tags, h.host) === want) {
          header = h;
          break search;
        }
        if (h) others.push(h);
      }
    }
    // Every header was read: enough to see a host name that changes every run (hostWarning).
    if (!header) return { header: undefined, reason: 'first backup of these sources', others };
  }
  const chain = (header.chain ?? 0) + 1;
  const fullEvery = opts.fullEvery ?? 0;
  if (fullEvery > 0 && chain >= fullEvery) return { header: undefined, reason: `full every ${fullEvery} backups` };
  const days = opts.fullAfterDays ?? 30;
  const start = Date.parse(header.chainStart ?? header.time);
  if (days > 0 && now.getTime() - start > days * 86_400_000) return { header: undefined, reason: `last full backup older than ${days} days` };
  return { header, reason: `compared with ${header.id}` };
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
  const started = opts.startedAt ?? new Date();
  const t0 = performance.now();
  const store = opts.store;
  // A bad archive size is a usage error before anything is read or written; so is a level the
  // codec does not take (its first frame would fail, after the repository was locked).
  const archiveSize = parseArchiveSize(opts.archiveSize ?? DEFAULT_ARCHIVE_SIZE, 'the archive size');
  if (opts.codec !== undefined) checkLevel(opts.codec, opts.level, opts.compressionOrigin);
  const run: RunState = { operation: 'pre-flight', kind: opts.full ? 'full' : 'incremental', extensions: new Map(), repoOpen: false };
  const failed = async (e: unknown, paths: string[]) => {
    // A level that does not fit its codec is refused before anything is written, and leaves
    // nothing behind: no failure record either.
    if (opts.history === false || e instanceof LevelError) return;
    // Only into an s3backup repository that exists: never create one, or write into something
    // else, just to say that a backup failed. An encrypted one only once it is open (its
    // records are sealed with its key).
    const ok = run.repoOpen || (await plainRepositoryExists(store));
    if (ok) await recordFailure(opts, e, paths, started, t0, run);
  };
  let sources: { path: string; name: string }[];
  try {
    sources = resolveSources(opts.sources);
  } catch (e) {
    // A source that vanished (an unmounted disk) is exactly what the history should show.
    await failed(e, opts.sources.map((s) => path.resolve(s)));
    throw tagOperation(e, run.operation);
  }
  const paths = sources.map((s) => s.path);
  try {
    // An existing repository is opened (and, if encrypted, unlocked) before anything is written:
    // a wrong passphrase leaves no trace, not even the write probe (nor a failure record).
    // Meanwhile the walk runs ahead (see SourceWalk): the round trips, and a scrypt that leaves
    // a core free, leave the main thread idle.
    const walk = new SourceWalk(sources, makeExcluder(opts.excludes ?? [], opts.excludePaths ?? []));
    prestartContentReader();
    const preparing = (async () => {
      let opened: Repository | undefined;
      try {
        opened = await Repository.open(store, opts.keys);
      } catch (e) {
        if (!(e instanceof RepositoryMissingError)) throw e;
      }
      // The codec and level this backup will use (see backupLocked), checked before anything is
      // written: the repository's defaults may be what does not fit.
      checkRepositoryLevel(opts, opened?.config.defaults);
      const probed = await store.probe();
      const { repo, created } = opened ? { repo: opened, created: false } : await Repository.openOrInit(store, opts.keys);
      run.repoOpen = true;
      run.historyCrypto = repo.historyCrypto();
      run.operation = 'lock';
      // Shared: backups run side by side; forget and prune (exclusive) wait until they are done.
      const lock = await acquireSharedLock(store, 'backup', { waitMs: opts.lockWaitMs ?? 5 * 60_000 });
      return { repo, created, lock, probeWarnings: probed?.warnings ?? [] };
    })();
    // Not while the passphrase's scrypt lanes take every core: walking would only delay the key.
    await walk.runAheadWhile(preparing, opts.signal, derivationHoldingCores);
    const { repo, created, lock, probeWarnings } = await preparing;
    try {
      const result = await backupLocked({ ...opts, archiveSize }, store, repo, created, walk, started, t0, run);
      const warn = warnerOf(result, opts.onWarning);
      for (const m of probeWarnings) warn(m);
      // The backup exists now: a lock that cannot be removed is a warning, not a failed backup.
      const lockLeft = await lock.release().then(
        () => false,
        (e: unknown) => {
          warn(`backup ${result.id} is recorded, but its repository lock could not be removed (${errTextWithHint(e)}); "s3backup unlock" removes it if it stays`);
          return true;
        },
      );
      if (opts.history !== false) await recordRun(opts, result, sources, run);
      if (opts.retention && lockLeft) {
        // Forget needs the repository to itself, and this run's own lock is still there: waiting
        // for it would only end in a "locked" error minutes later.
        const error = 'this backup\'s own lock is still in the repository (see the warning above), and forget needs the repository to itself';
        warn(`retention policy not applied after backup ${result.id}: ${error}`);
        result.retention = { error };
      } else if (opts.retention) result.retention = await applyRetention(repo, opts.retention.policy, result, opts.onWarning);
      return result;
    } finally {
      await lock.release().catch(() => {});
    }
  } catch (e) {
    await failed(e, paths);
    throw tagOperation(e, run.operation);
  }
}

/** A failure record: best effort, and never in place of the real error. */
async function recordFailure(opts: BackupOptions, e: unknown, paths: string[], started: Date, t0: number, run: RunState): Promise<void> {
  const host = opts.host ?? os.hostname();
  const record: RunRecord = {
    ...emptyRecord(),
    id: newSnapshotId(started),
    time: started.toISOString(),
    host,
    sources: [...paths].sort(),
    sourceKey: sourceKeyOf(host, paths),
    tags: opts.tags ?? [],
    kind: run.kind,
    ok: false,
    durationMs: Math.round(performance.now() - t0),
    error: e instanceof Error ? e.message : String(e),
    operation: run.operation,
  };
  await appendRun(opts.store, record, { crypto: run.historyCrypto }).catch((err: unknown) => opts.onWarning?.(`run history: failure record not written: ${(err as Error).message}`));
}

/** What the run is doing (for a failure record) and what it has counted beside the stats. */
interface RunState {
  operation: BackupOperation;
  kind: 'full' | 'incremental';
  /** New and changed files by lower-case extension. */
  extensions: Map<string, number>;
  /** The repository exists (opened or created): failures may be recorded in it. */
  repoOpen: boolean;
  /** An encrypted repository's sealing of run records. */
  historyCrypto?: HistoryCrypto | undefined;
}

/** Whether an unencrypted s3backup repository is there (its config.json says so). */
async function plainRepositoryExists(store: Store): Promise<boolean> {
  return Repository.readConfig(store).then(
    (config) => !config.encryption,
    () => false,
  );
}

function emptyRecord(): Omit<RunRecord, 'id' | 'time' | 'host' | 'sources' | 'sourceKey' | 'tags' | 'kind' | 'ok'> {
  return {
    durationMs: 0,
    files: 0,
    bytesIn: 0,
    bytesTotal: 0,
    bytesStored: 0,
    compressionRatio: 1,
    newFiles: 0,
    changedFiles: 0,
    deletedFiles: 0,
    warnings: 0,
  };
}

/** Keep the record small: the most common extensions only. */
const MAX_EXTENSIONS = 20;

/** The lower-case extension of a path's last component ("" for none; dotfiles have none). */
export function extensionOf(p: string): string {
  const name = p.slice(p.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  if (dot <= 0 || dot === name.length - 1) return '';
  const ext = name.slice(dot + 1).toLowerCase();
  return ext.length <= 16 ? ext : '';
}

/** The run record of a successful backup (what the history keeps of it). */
export function runRecordOf(result: BackupResult, host: string, sources: string[], tags: string[], extensions: Record<string, number> = {}): RunRecord {
  const paths = [...sources].sort();
  return {
    id: result.id,
    time: result.time,
    host,
    sources: paths,
    sourceKey: sourceKeyOf(host, paths),
    tags,
    kind: result.kind,
    ok: true,
    durationMs: result.durationMs,
    files: result.files,
    bytesIn: result.bytesIn,
    bytesTotal: result.bytesTotal ?? 0,
    bytesStored: result.bytesStored,
    compressionRatio: result.compressionRatio,
    newFiles: result.newFiles ?? 0,
    changedFiles: result.changedFiles ?? 0,
    deletedFiles: result.deletedFiles ?? 0,
    warnings: result.warnings.length,
    extensions,
  };
}

/**
 * Judge the backup against the history, then add its record. A failure here is a warning: the
 * backup itself is already safely recorded.
 */
async function recordRun(opts: BackupOptions, result: BackupResult, sources: { path: string }[], run: RunState): Promise<void> {
  const top = [...run.extensions].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_EXTENSIONS);
  const record = runRecordOf(
    result,
    opts.host ?? os.hostname(),
    sources.map((s) => s.path),
    opts.tags ?? [],
    Object.fromEntries(top),
  );
  const warn = warnerOf(result, opts.onWarning);
  try {
    const history = await readHistory(opts.store, { crypto: run.historyCrypto });
    result.anomalies = detectAnomalies(record, history, opts.history ? (opts.history.detector ?? {}) : {});
  } catch (e) {
    warn(`run history could not be read, no anomaly detection for backup ${result.id}: ${(e as Error).message}`);
  }
  try {
    await appendRun(opts.store, record, { crypto: run.historyCrypto, onWarning: warn });
  } catch (e) {
    warn(`run record of backup ${result.id} not written to the history: ${(e as Error).message}`);
  }
}

/** A warning of a finished backup: kept in its result, and passed on as it happens. */
function warnerOf(result: { warnings: string[] }, onWarning: ((m: string) => void) | undefined): (m: string) => void {
  return (m) => {
    result.warnings.push(m);
    onWarning?.(m);
  };
}

/**
 * Forget and prune after a backup (autoForget): under an exclusive lock, waiting for other
 * backups to finish. Reported, never thrown: the backup itself is already safely recorded.
 */
async function applyRetention(
  repo: Repository,
  policy: KeepPolicy | undefined,
  result: BackupResult,
  onWarning: ((m: string) => void) | undefined,
): Promise<BackupResult['retention']> {
  const warn = warnerOf(result, onWarning);
  try {
    const opts = { exclusive: true, command: 'forget (after backup)', waitMs: 5 * 60_000 };
    const unreleased = (e: unknown) =>
      warn(`the lock of the retention after backup ${result.id} could not be removed (${errTextWithHint(e)}); "s3backup unlock" removes it once it is stale`);
    return await withLock(repo.store, opts, async (lock) => {
      const f = await forget(repo, { policy, lock });
      const p = await prune(repo, { forgotten: f.removed, lock });
      return { removed: f.removed, bytesFreed: p.bytesFreed };
    }, unreleased);
  } catch (e) {
    // A denied delete names the permission and where it is missing (its hint): say both.
    warn(`retention policy not applied after backup ${result.id}: ${errTextWithHint(e)}`);
    return { error: (e as Error).message };
  }
}

async function backupLocked(
  opts: BackupOptions,
  store: Store,
  repo: Repository,
  created: boolean,
  walk: SourceWalk,
  started: Date,
  t0: number,
  run: RunState,
): Promise<BackupResult> {
  run.operation = 'parent';
  const codec = opts.codec ?? repo.config.defaults?.compression ?? 'zstd';
  const frameSize = opts.frameSize ?? repo.config.defaults?.frameSize ?? DEFAULT_FRAME_SIZE;
  const level = opts.level ?? (codec === (repo.config.defaults?.compression ?? 'zstd') ? repo.config.defaults?.level : undefined);
  const id = newSnapshotId(started);
  const manifestKey = repo.manifestKey(id);
  const excludes = opts.excludes ?? [];
  const host = opts.host ?? os.hostname();
  const tags = opts.tags ?? [];
  const damaged: string[] = [];
  const choosing = (async () => {
    const chosen = await chooseParent(repo, opts, walk.sources, host, tags, started, damaged);
    if (!chosen.header) return { ...chosen, parent: undefined, brokenParent: undefined };
    let parent;
    try {
      parent = await repo.loadManifest(chosen.header.id);
    } catch (e) {
      // Its header read, the rest did not: a full backup, unless that parent was asked for.
      if (!(e instanceof IntegrityError) || opts.parent) throw e;
      damaged.push(e.message);
      return { header: undefined, reason: `the manifest of ${chosen.header.id} is damaged`, parent: undefined, brokenParent: undefined };
    }
    // An incremental points at its parent's archives: they must all be there as the parent's
    // manifest says, or this backup would be broken from the start (and every one after it).
    const problems = await new ArchiveSizeCache(store).problems(parent.archives).catch(async (e: unknown) => {
      await parent.dispose();
      throw e;
    });
    if (problems.length === 0) return { ...chosen, parent, brokenParent: undefined };
    await parent.dispose();
    const first = problems[0]!;
    return {
      header: undefined,
      reason: `parent ${chosen.header.id} is broken, full backup instead`,
      others: undefined,
      parent: undefined,
      brokenParent:
        `backup ${chosen.header.id} is broken (${first.key}: ${first.problem}` +
        `${problems.length > 1 ? `, and ${problems.length - 1} more archive(s)` : ''}); this backup is a full one instead of an incremental of it` +
        ` (run "s3backup verify --all" to see every broken backup)`,
    };
  })();
  await walk.runAheadWhile(choosing, opts.signal);
  const { header: parentHeader, reason: parentReason, parent, brokenParent, others } = await choosing;
  run.kind = parent ? 'incremental' : 'full';
  run.operation = 'upload';

  const warnings: string[] = [];
  // Messages name paths, whose bytes that are not UTF-8 are shown as \xHH.
  const warn = (m: string) => {
    m = displayName(m);
    warnings.push(m);
    opts.onWarning?.(m);
  };
  for (const m of damaged) warn(`${m} (passed over as the parent of this backup)`);
  if (brokenParent) warn(brokenParent);
  const stats = emptyStats();
  // Archives the new manifest refers to, in order of first use: its own first, then those of
  // the parent it reuses (and its own further ones, if it is split, where they start). Its own
  // are placeholders until they are finished.
  const refs: (ArchiveRef | undefined)[] = [undefined];
  const reused = new Map<number, number>(); // parent's archive index → ours
  const reuseArchive = (i: number): number => {
    let mine = reused.get(i);
    if (mine === undefined) {
      mine = refs.push(parent!.archives[i]!) - 1;
      reused.set(i, mine);
    }
    return mine;
  };
  // The parent's entries, read in step with the walk (both are in tree order). A damaged entry
  // ends them: the files after it are compared with nothing, so read and stored again.
  const parentEntries = parent?.entries();
  const nextOfParent = async (): Promise<Entry | undefined> => {
    try {
      return (await parentEntries!.next()).value ?? undefined;
    } catch (e) {
      if (!(e instanceof IntegrityError)) throw e;
      warn(`${e.message} (the files after it are read again instead of compared with it)`);
      return undefined;
    }
  };
  let parentNext: Entry | undefined = parentEntries ? await nextOfParent() : undefined;
  const parentEntry = async (p: string): Promise<Entry | undefined> => {
    while (parentNext && compareTreePaths(parentNext.path, p) < 0) {
      if (parentNext.type === 'file' || parentNext.type === 'hardlink') stats.deletedFiles!++;
      parentNext = await nextOfParent();
    }
    if (parentNext && parentNext.path === p) {
      const found = parentNext;
      parentNext = await nextOfParent();
      return found;
    }
    return undefined;
  };

  const lock = opts.objectLock ?? repo.config.defaults?.objectLock;
  if (lock && !store.capabilities().versions) {
    throw new UsageError(`Object Lock retention needs an S3 repository; ${store.location} is not one`, { hint: 'drop --object-lock-days (or objectLock in s3backup.yaml)' });
  }
  // Retention counts from the start of the backup, for both objects.
  const retention = lock ? { mode: lock.mode, until: new Date(started.getTime() + lock.days * 86_400_000) } : undefined;
  const entries = await EntryWriter.create();
  // Entries wait in `queue`, in archive order, until their hash is known; `waiting` maps a
  // file's sequence number to the entries that need its digest (the file first, then hard links
  // to it seen before it was hashed).
  const queue: Entry[] = [];
  const unhashed = new Set<Entry>();
  const waiting = new Map<number, Entry[]>();
  let queueWait: Promise<void> | undefined;
  const drainQueue = () => {
    while (queue.length > 0 && !unhashed.has(queue[0]!)) {
      const p = entries.add(queue.shift()!);
      if (p) queueWait = (queueWait ?? Promise.resolve()).then(() => p);
    }
  };
  const onResults = (results: ContentResult[]) => {
    for (const r of results) {
      // The file first, then hard links to it seen before it was hashed.
      const named = waiting.get(r.seq);
      if (!named) continue;
      waiting.delete(r.seq);
      const file = named[0]!;
      contentRead(file, r);
      for (const e of named) {
        e.sha256 = r.sha256;
        unhashed.delete(e);
      }
      // Further names seen before the read failed share its zeros: not backed up either.
      if (file.error) for (let i = 1; i < named.length; i++) linkNotStored(named[i]!, file);
    }
    drainQueue();
  };
  // The archives this backup writes: one, or more when it outgrows archiveSize (split before a
  // file that would not fit, so every archive is a whole tar of whole files). Each takes its
  // place on the archives line when it starts; its ref fills that place when it is finished.
  const archiveSize = opts.archiveSize ?? DEFAULT_ARCHIVE_SIZE;
  const written: ArchiveRef[] = [];
  let slot = 0;
  const startArchive = (part: number, largestFile: number) => {
    slot = part === 1 ? 0 : refs.push(undefined) - 1;
    return new ArchiveOut({
      repo,
      id,
      part,
      codec,
      level,
      frameSize,
      maxInFlight: opts.maxInFlight ?? Math.max(3, os.availableParallelism()),
      retention,
      // At most archiveSize of tar, or one larger file alone, plus headers; compression can
      // only add a little (incompressible frames stored raw, AEAD tags).
      sizeHint: Math.ceil(Math.max(archiveSize, largestFile) * 1.01) + (64 << 20),
      onResults,
    });
  };
  let out = startArchive(1, 0);
  const finishArchive = async () => {
    const ref = await out.finish();
    refs[slot] = ref;
    written.push(ref);
  };
  /**
   * Before writing an entry with `content` bytes of file data: if it would take this archive past
   * archiveSize, finish it and start the next (a file larger than that goes into one of its own).
   * Headers count as a few blocks each (long names take more: the size is approximate). A
   * promise only when the caller must wait (a split), as FrameWriter's writes.
   */
  const room = (content: number): Promise<void> | undefined => {
    const offset = out.frames.offset;
    if (offset === 0 || offset + 3 * BLOCK + content + padding(content) <= archiveSize) return undefined;
    return nextArchive(content);
  };
  const nextArchive = async (content: number) => {
    await finishArchive();
    await out.close();
    out = startArchive(written.length + 1, content);
  };
  // What the reader found: a read error makes the file a skipped one (its unread part is zeros);
  // a change while reading is stored as read, and reported.
  const contentRead = (e: Entry, r: ContentResult) => {
    if (r.error !== undefined) {
      e.error = `read error: ${r.error}`;
      warn(`${e.path}: read error, the unread part is stored as zeros: ${r.error}`);
      stats.files--;
      stats.bytesIn -= e.size;
      stats.skipped++;
    } else if (r.changed) {
      e.changed = true;
      stats.changedWhileRead!++;
      warn(`${e.path}: changed while being backed up; the stored copy may be inconsistent`);
    }
  };
  /**
   * A hard link (already counted as one) whose first name could not be read: listed with the
   * error, counted as skipped instead, restored by no one.
   */
  const linkNotStored = (e: Entry, first: Entry) => {
    e.error = `not backed up: its first name ${first.path} could not be read`;
    warn(`${e.path}: hard link to ${first.path}, which could not be read: not backed up`);
    stats.hardlinks--;
    stats.skipped++;
  };
  /** Queue an entry for the manifest; a promise only when the caller must wait (as FrameWriter's writes). */
  const emit = (e: Entry): Promise<void> | undefined => {
    queue.push(e);
    drainQueue();
    const w = queueWait;
    queueWait = undefined;
    return w;
  };
  const xattrReader = opts.xattrs === false ? undefined : new XattrReader(warn);
  /** Does the parent's manifest record attributes (a backup made without --no-xattrs, by a version that stores them)? */
  const parentHasXattrs = xattrReader !== undefined && parentHeader?.options.xattrs === true;
  const links = new Map<string, { entry: Entry; seq: number }>(); // "dev:ino" → first link
  let nextSeq = 0;
  let current = '';
  let lastProgress = 0;
  let committing = false;
  const progress = () => {
    const now = performance.now();
    if (!opts.onProgress || now - lastProgress < 100) return;
    lastProgress = now;
    opts.onProgress({ files: stats.files, bytesDone: stats.bytesTotal!, bytesIn: stats.bytesIn, bytesOut: written.reduce((n, r) => n + r.uncompressedSize, out.frames.offset), current });
  };

  try {
    for (const { item, warning } of walk) {
      if (warning) {
        // Seen but not stored (vanished, cannot be looked at, a name it cannot hold): never silently.
        warn(walkWarningText(warning));
        stats.skipped++;
        continue;
      }
      if (opts.signal?.aborted) throw new S3BackupError('backup interrupted; nothing was recorded');
      const st = item.st;
      current = item.path;
      const base: Entry = {
        path: item.path,
        type: 'dir',
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        mtime: st.mtimeMs,
        ctime: st.ctimeMs,
        ino: st.ino,
        size: 0,
      };
      // Extended attributes: read for every directory and symlink, for a file where it is
      // needed (below); one llistxattr call when there are none. Special files are not stored.
      let xattrs: XattrMap | undefined;
      const readXattrs = (fd?: number) => {
        xattrs = xattrReader?.read(fd === undefined ? item.abs : { fd }, item.path, st.dev);
        if (xattrs) base.xattrs = xattrsToJson(xattrs);
        else delete base.xattrs;
      };
      if (st.isDirectory() || st.isSymbolicLink()) readXattrs();
      const tar = (h: Partial<TarHeader>): TarHeader => ({
        path: item.path,
        type: 'dir',
        mode: base.mode,
        uid: base.uid,
        gid: base.gid,
        size: 0,
        mtime: Math.floor(st.mtimeMs / 1000),
        xattrs,
        ...h,
      });
      if (st.isDirectory()) {
        const split = room(0);
        if (split) await split;
        base.header = out.frames.offset;
        if (xattrs) base.archive = slot; // where verify --deep finds the header and its attributes
        await writeHeader(out.frames, tar({ type: 'dir' }));
        stats.dirs++;
        await emit(base);
      } else if (st.isSymbolicLink()) {
        let target: string;
        try {
          target = readLinkTarget(item.abs);
        } catch (e) {
          warn(`${item.path}: cannot read symlink: ${errText(e)}`);
          stats.skipped++;
          await emit({ ...base, type: 'symlink', error: errText(e) });
          continue;
        }
        base.type = 'symlink';
        base.target = target;
        const split = room(0);
        if (split) await split;
        base.header = out.frames.offset;
        if (xattrs) base.archive = slot; // as for a directory
        await writeHeader(out.frames, tar({ type: 'symlink', linkname: target }));
        stats.symlinks++;
        await emit(base);
      } else if (st.isFile()) {
        const linkKey = hardLinkKey(st);
        const first = linkKey ? links.get(linkKey) : undefined;
        const prev = parent ? await parentEntry(item.path) : undefined;
        if (first) {
          // A further name of a file already seen: shares the first name's content.
          const f = first.entry;
          const e: Entry = { ...base, type: 'hardlink', target: f.path, size: f.size };
          if (f.xattrs) e.xattrs = f.xattrs; // one inode, one set of attributes
          stats.hardlinks++;
          if (f.error) linkNotStored(e, f);
          else {
            e.archive = f.archive!;
            e.offset = f.offset!;
            if (unhashed.has(f)) {
              unhashed.add(e);
              waiting.get(first.seq)!.push(e);
            } else e.sha256 = f.sha256!;
          }
          // A tar hard link only where tar can make it: the first name is in this archive, or
          // in an earlier one of this backup (extracted first, as they are in order; finished,
          // so on the archives line with this backup's id). Its header offset is recorded
          // only in the archive that holds the content. None to a first name not stored.
          const split = room(0);
          if (split) await split;
          if (!e.error && (f.archive === slot || refs[f.archive!]?.id === id)) {
            if (f.archive === slot) e.header = out.frames.offset;
            // The attributes are the first name's (one inode): in the manifest for a restore of
            // this name alone, not again in the tar.
            await writeHeader(out.frames, tar({ type: 'hardlink', linkname: f.path, xattrs: undefined }));
          }
          await emit(e);
          continue;
        }
        stats.bytesTotal! += st.size;
        // Any change of attributes moves the ctime: a file whose size, mtime, ctime and inode
        // are the parent's has the parent's attributes, when it recorded them, and they are not
        // read again (a no-change incremental then makes no call for its files). A file that is
        // stored in any case (new, or changed) has them read through the descriptor storeFile
        // opens (no second path lookup); only a comparison with the parent reads them here.
        const sameMeta = prev !== undefined && prev.type === 'file' && prev.size === st.size && prev.mtime === st.mtimeMs && prev.ctime === st.ctimeMs && prev.ino === st.ino;
        if (sameMeta && parentHasXattrs && !opts.rehash) {
          if (prev.xattrs) base.xattrs = prev.xattrs;
        } else if (prev && (sameMeta || opts.rehash)) readXattrs();
        // Attributes that differ from the parent's (set or dropped, or --no-xattrs toggled) store
        // the file again: its tar header in the archive then says what the manifest says.
        if (prev && sameXattrs(prev.xattrs, base.xattrs) && (await unchanged(prev, item.abs, st, opts.rehash ?? false))) {
          // Unchanged since the parent: point at the content where it already is.
          const e: Entry = {
            ...base,
            type: 'file',
            size: st.size,
            sha256: prev.sha256!,
            archive: reuseArchive(prev.archive!),
            offset: prev.offset!,
            ...(prev.header === undefined ? {} : { header: prev.header }),
          };
          stats.files++;
          stats.unchangedFiles!++;
          if (linkKey) links.set(linkKey, { entry: e, seq: -1 });
          await emit(e);
          progress();
          continue;
        }
        if (prev) stats.changedFiles!++;
        else stats.newFiles!++;
        const ext = extensionOf(item.path);
        run.extensions.set(ext, (run.extensions.get(ext) ?? 0) + 1);
        const split = room(st.size);
        if (split) await split;
        const seq = nextSeq++;
        const e: Entry = { ...base, type: 'file', size: st.size };
        // Registered before any byte is written: the digest may come back while we still wait.
        unhashed.add(e);
        waiting.set(seq, [e]);
        const storing = storeFile(item.abs, st, e, seq, out, slot, tar, warn, (fd) => {
          // Its attributes as they are now, before its header is written (they go in it).
          readXattrs(fd);
          if (base.xattrs) e.xattrs = base.xattrs;
          else delete e.xattrs;
        });
        if (!(typeof storing === 'boolean' ? storing : await storing)) {
          stats.skipped++;
          unhashed.delete(e);
          waiting.delete(seq);
        } else {
          stats.files++;
          stats.bytesIn += e.size;
          if (linkKey) links.set(linkKey, { entry: e, seq });
        }
        const w = emit(e);
        if (w) await w;
      } else {
        const kind = specialKind(st);
        warn(`${item.path}: skipped (${kind})`);
        stats.skipped++;
        await emit({ ...base, type: 'other', error: `skipped (${kind})` });
      }
      progress();
    }
    if (parent) await parentEntry('\uffff'); // whatever the walk did not reach was deleted
    await finishArchive();
    if (queue.length > 0) throw new Error(`internal error: ${queue.length} entries still wait for their hash`);
    if (queueWait) await queueWait;
    await entries.finish();
    const archiveBytes = written.reduce((n, r) => n + r.size, 0);
    stats.archiveBytes = archiveBytes;
    // Of what was read: a no-change incremental (nothing read) counts as 1, not 0.
    stats.compressionRatio = stats.bytesIn > 0 && archiveBytes > 0 ? round(stats.bytesIn / archiveBytes, 3) : 1;
    stats.warnings = warnings.length;
    const header: ManifestHeader = {
      format: MANIFEST_FORMAT,
      version: entries.version,
      id,
      time: started.toISOString(),
      endTime: '',
      kind: parent ? 'incremental' : 'full',
      ...(parentHeader
        ? { parent: parentHeader.id, chain: (parentHeader.chain ?? 0) + 1, chainStart: parentHeader.chainStart ?? parentHeader.time }
        : { chain: 0, chainStart: started.toISOString() }),
      host,
      sources: walk.sources,
      tags,
      toolVersion: VERSION,
      // The level used, even when defaulted: the default may change between versions.
      options: { codec, level: effectiveLevel(codec, level), frameSize, excludes, xattrs: opts.xattrs !== false },
      stats,
      warnings: warnings.slice(0, MAX_HEADER_WARNINGS),
    };
    // bytesStored includes the manifest's own size, which depends on the header that says it.
    header.endTime = new Date().toISOString();
    stats.durationMs = Math.round(performance.now() - t0);
    const bodySize = await entriesSize(entries);
    const head = settleManifestHead(header, refs as ArchiveRef[], archiveBytes, (len) => repo.manifestSize(len, bodySize));
    const manifest = await repo.encodeManifest(id, head, entries);
    if (opts.signal?.aborted) throw new S3BackupError('backup interrupted; nothing was recorded');
    run.operation = 'manifest';
    // From here on the manifest may exist (a lost answer): nothing this backup wrote is deleted.
    committing = true;
    await commitManifest(store, manifestKey, manifest, { contentType: repo.encrypted ? 'application/octet-stream' : 'application/zstd', retention });
    const hostWarning =
      others &&
      generatedHostWarning([...others, header].map((h: ManifestHeader) => ({ id: h.id, time: h.time, host: h.host, sources: h.sources.map((x) => x.path) })));
    return {
      ...stats,
      id,
      repository: store.location,
      repositoryCreated: created,
      kind: header.kind,
      host,
      ...(hostWarning ? { hostWarning } : {}),
      ...(parentHeader ? { parent: parentHeader.id } : {}),
      kindReason: parentReason,
      time: header.time,
      archiveKey: written[0]!.key,
      archiveKeys: written.map((r) => r.key),
      manifestKey,
      warnings,
    };
  } catch (e) {
    await out.abort(e);
    // Best effort: the archives of a run that failed before its manifest was written are
    // garbage (prune would find them too): those finished, and the one being written. Once the
    // manifest's write began they are left to prune (and its grace period): it may exist.
    if (!committing) await store.delete([...new Set([...written.map((r) => r.key), out.key])]).catch(() => {});
    throw e;
  } finally {
    await out.close();
    await parentEntries?.return(undefined);
    await parent?.dispose();
    await entries.dispose();
  }
}

/**
 * The create-only PUT of a manifest: the moment the backup comes to exist. Its answer can be
 * lost after S3 stored it (a reset, a timeout), and the SDK's retries then get 412 (it is
 * there now), 503, or lose their answers too: so any failure is settled by reading the object
 * back. Ours (the same size and the same first bytes: the head frame holds this run's id, end
 * time, stats and archive hashes) means committed; absent means not; and when it cannot be
 * read either, the error says the outcome is unknown rather than guess.
 */
export async function commitManifest(store: Store, key: string, body: Buffer, opts: Omit<PutOptions, 'createOnly'>): Promise<void> {
  let failure: unknown;
  try {
    await store.put(key, body, { ...opts, createOnly: true });
    return;
  } catch (e) {
    failure = e;
  }
  let found: 'ours' | 'absent' | 'another';
  try {
    found = await readBack(store, key, body);
  } catch (e) {
    throw new S3BackupError(
      `the manifest ${store.location}/${key} may or may not have been written: its write failed (${errText(failure)}) and reading it back failed too (${errText(e)})`,
      {
        cause: failure,
        hint: 'once the repository is reachable, "s3backup list" shows whether this backup exists; if it does not, its archives are left for "s3backup prune"',
      },
    );
  }
  if (found === 'ours') return;
  if (found === 'another') throw new S3BackupError(`${store.location}/${key} exists but is not the manifest this backup wrote`, { cause: failure });
  throw failure;
}

async function readBack(store: Store, key: string, body: Buffer): Promise<'ours' | 'absent' | 'another'> {
  const info = await store.head(key);
  if (!info) return 'absent';
  if (info.size !== body.length) return 'another';
  const n = Math.min(body.length, 64 << 10);
  const start = await getBuffer(store, key, { start: 0, end: n });
  return start.equals(body.subarray(0, n)) ? 'ours' : 'another';
}

/**
 * Is this file the same as in the parent? By default size, mtime, ctime and inode must all
 * match (no content is read: a no-change backup of a large tree reads only metadata). With
 * rehash, the content is read and hashed instead, and only the hash decides.
 */
async function unchanged(prev: Entry, abs: string | Buffer, st: fs.Stats, rehash: boolean): Promise<boolean> {
  if (prev.type !== 'file' || prev.error || prev.changed || prev.sha256 === undefined || prev.archive === undefined || prev.offset === undefined) {
    return false;
  }
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

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** A tar header into the frames: straight into the frame buffer when it is one plain block
 * (most are), without a buffer of its own; else encoded apart and copied in. */
function writeHeader(frames: FrameWriter, h: TarHeader): Promise<void> | undefined {
  const space = frames.space();
  const n = space.length >= BLOCK ? encodeHeaderInto(h, space.buf, space.start) : 0;
  return n > 0 ? frames.commit(n) : frames.write(encodeHeader(h));
}

/**
 * Append one regular file: header, content (booked for the reader, which reads it straight into
 * the frame buffer and hashes it as sequence `seq`), padding. A file that cannot be opened is
 * listed with its error and no content: returns false. The header's size is the one lstat saw;
 * if the file then shrinks or fails to read the rest is stored as zeros, if it grows the excess
 * is left out, and either way the reader's result flags it (see contentRead).
 */
function storeFile(
  abs: string | Buffer,
  st: fs.Stats,
  e: Entry,
  seq: number,
  out: ArchiveOut,
  slot: number,
  tar: (h: Partial<TarHeader>) => TarHeader,
  warn: (m: string) => void,
  opened: (fd: number) => void,
): boolean | Promise<boolean> {
  const { frames, reader } = out;
  let fd: number;
  try {
    fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    warn(`${e.path}: unreadable, not backed up: ${errText(err)}`);
    e.error = errText(err);
    return false;
  }
  opened(fd);
  // From here the reader owns the file: it reads the content into the frames, then closes it.
  reader.own(seq, fd);
  e.header = frames.offset;
  const content = () => {
    e.offset = frames.offset;
    e.archive = slot;
    return storeContent(frames, reader, seq, fd, st, 0);
  };
  // Synchronous unless a frame fills up: most files fit in the current frame, and an async
  // function per file costs promises and event-loop turns on the thread that walks.
  const p = writeHeader(frames, tar({ type: 'file', size: st.size }));
  return p ? p.then(content) : content();
}

/** storeFile's content from `position` on, then its padding (see storeFile). */
function storeContent(frames: FrameWriter, reader: ContentReader, seq: number, fd: number, st: fs.Stats, position: number): true | Promise<true> {
  const size = st.size;
  while (position < size) {
    const space = frames.space();
    const n = Math.min(size - position, space.length);
    reader.read(seq, fd, space.start, space.start + n, position);
    position += n;
    const p = frames.commit(n);
    if (p) {
      const at = position;
      return p.then(() => storeContent(frames, reader, seq, fd, st, at));
    }
  }
  reader.end(seq, fd, size, st.mtimeMs, st.ino);
  const p = frames.writeZeros(padding(size));
  return p ? p.then(() => true) : true;
}
