import { S3BackupError, UsageError } from '../errors.ts';
import { acquireExclusiveLock, LOCKS, type RepoLock } from '../repo/locks.ts';
import type { ManifestHeader } from '../repo/manifest.ts';
import { type BackupFilter, matchesFilter } from '../repo/groups.ts';
import { ARCHIVES, archiveIdOf, ENTRIES, isSegmentKey, type Repository, SNAPSHOTS } from '../repo/repository.ts';
import { KEYS_PREFIX } from '../crypto/keys.ts';
import { activeHolds, heldBy, readHolds } from '../monitor/holds.ts';
import type { RetentionHold } from '../monitor/types.ts';
import { applyPolicy, type KeepPolicy, type RetentionBackup, type RetentionResult } from '../retention/policy.ts';
import type {
  LockedVersion,
  MultipartUploadInfo,
  ObjectInfo,
  Store,
  TempFilesCapability,
  UploadsCapability,
  VersionsCapability,
} from '../store/store.ts';
import { readReferences, type References } from './references.ts';
import { parseDuration } from '../size.ts';

/**
 * forget and prune (README "Retention").
 *
 * forget removes the manifests of the backups a retention policy does not keep: the backups are
 * gone from that moment (a backup exists iff its manifest exists). prune then frees the space:
 *   - archives under archives/ that no remaining manifest lists on its archives line;
 *   - temporary files of unfinished local writes (.tmp-*) and S3 write probes (.probe-*);
 *   - incomplete S3 multipart uploads;
 * each only once it is older than the grace period (default 6 h): a running backup uploads its
 * archive before it writes its manifest, so a young unreferenced archive may be one in progress.
 * Archives of backups this very forget removed need no grace: they were complete.
 *
 * Safety: every manifest is read (its head frame only) before anything is deleted, and one that
 * cannot be read stops prune before it deletes anything, since it could reference any archive.
 * Both take the repository's exclusive lock (src/repo/locks.ts), which running backups' shared
 * locks keep them from getting. A kill at any point leaves every kept backup whole: only objects
 * no manifest needs are ever deleted, manifests before archives.
 */

export const DEFAULT_GRACE_MS = 6 * 3_600_000;
const PROBE_PREFIX = '.probe-';
const DELETE_BATCH = 200;

/** A grace period: "0", or numbers with units w, d, h, min, s ("6h", "90min", "1d12h", "30s"). */
export function parseGrace(s: string): number {
  return parseDuration(s, '--grace');
}

// ---------------------------------------------------------------------------------------------
// prune

export interface PruneOptions {
  /** Leave unreferenced objects younger than this (default 6 h). */
  graceMs?: number;
  /** Report only; delete nothing (and take no lock). */
  dryRun?: boolean;
  /**
   * Ids of backups whose manifests forget just removed (or, in a dry run, would remove): their
   * manifests are not counted as references and their own archives need no grace period.
   */
  forgotten?: Iterable<string>;
  /** The exclusive lock the caller holds; without one prune takes (and releases) its own. */
  lock?: RepoLock;
  signal?: AbortSignal;
  /** "Now", for the grace period (tests). */
  now?: Date;
}

export interface PrunedObject {
  key: string;
  size: number;
  lastModified: string;
}

export interface PrunedUpload {
  key: string;
  uploadId: string;
  initiated: string | null;
}

export interface PruneResult {
  repository: string;
  dryRun: boolean;
  graceMs: number;
  /** Manifests read (backups that remain). */
  manifests: number;
  archives: {
    /** Archive objects found. */
    total: number;
    /** Archive objects some remaining manifest lists. */
    referenced: number;
    /** Deleted (dry run: would be). */
    deleted: PrunedObject[];
    /** Unreferenced but younger than the grace period: left for a later prune. */
    recent: PrunedObject[];
    /** Keys under archives/ that are not s3backup archive names: never touched. */
    unrecognized: string[];
  };
  /**
   * Entry segments (entries/): shared by the manifests whose entries they hold, deleted once no
   * remaining manifest lists them and they are older than the grace period.
   */
  segments: { total: number; referenced: number; deleted: PrunedObject[]; recent: PrunedObject[] };
  /** Archives (and segments) a remaining manifest lists that are not in the repository (those backups are damaged). */
  missing: { key: string; backups: string[] }[];
  /** Temporary files (.tmp-*) and write probes (.probe-*) left by killed processes. */
  leftovers: { deleted: PrunedObject[]; recent: PrunedObject[] };
  /** Incomplete S3 multipart uploads. */
  uploads: { aborted: PrunedUpload[]; recent: PrunedUpload[] };
  /**
   * Object Lock buckets (versioned): a delete only hides an object behind a delete marker, so
   * prune also removes the repository's noncurrent versions and delete markers. Versions Object
   * Lock still protects stay, listed here; a later prune removes them once their retention ends.
   */
  versions?: { deleted: number; bytesFreed: number; locked: LockedVersion[] };
  /** Bytes of the deleted archives and leftovers (and noncurrent versions). */
  bytesFreed: number;
  durationMs: number;
}

const toPruned = (o: ObjectInfo): PrunedObject => ({ key: o.key, size: o.size, lastModified: o.lastModified.toISOString() });

export async function prune(repo: Repository, opts: PruneOptions = {}): Promise<PruneResult> {
  const dryRun = opts.dryRun ?? false;
  if (dryRun || opts.lock) return pruneLocked(repo, opts);
  const lock = await acquireExclusiveLock(repo.store, 'prune');
  try {
    return await pruneLocked(repo, { ...opts, lock });
  } finally {
    await lock.release().catch(() => {});
  }
}

async function pruneLocked(repo: Repository, opts: PruneOptions): Promise<PruneResult> {
  const t0 = performance.now();
  const dryRun = opts.dryRun ?? false;
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  if (!(Number.isFinite(graceMs) && graceMs >= 0)) throw new UsageError(`the grace period must be 0 or more, not ${graceMs}`);
  const young = youngerThan(graceMs, (opts.now ?? new Date()).getTime());
  const forgotten = new Set(opts.forgotten ?? []);
  const { tempFiles, uploads, versions: versionAccess } = repo.store.capabilities();

  // 1. What is stored. Listed before the manifests are read, so an archive that appears later
  //    (with its manifest) is not even considered.
  const stored = await listStored(repo.store, tempFiles, uploads);
  checkInterrupted(opts.signal);
  // 2. What the remaining backups reference; a manifest that cannot be read stops prune here.
  const refs = await readReferences(
    repo,
    (await repo.snapshotIds()).filter((id) => !forgotten.has(id)),
  );
  checkInterrupted(opts.signal);
  // 3. Decide.
  const plan = await decide(repo.store, stored, refs, forgotten, young);
  // 4. Delete: only objects no remaining manifest needs.
  if (!dryRun) await deleteUnreferenced(repo.store, plan, uploads, opts);
  // 5. Object Lock buckets: what the deletes above (and forget's) only hid.
  const versions = versionAccess ? await purgeVersions(repo, versionAccess, dryRun, opts) : undefined;

  return {
    repository: repo.store.location,
    dryRun,
    graceMs,
    manifests: refs.manifests,
    archives: {
      total: stored.archives.length,
      referenced: stored.archives.length - plan.deleteArchives.length - plan.recentArchives.length,
      deleted: plan.deleteArchives.map(toPruned),
      recent: plan.recentArchives.map(toPruned),
      unrecognized: stored.unrecognized,
    },
    segments: {
      total: stored.segments.length,
      referenced: stored.segments.length - plan.deleteSegments.length - plan.recentSegments.length,
      deleted: plan.deleteSegments.map(toPruned),
      recent: plan.recentSegments.map(toPruned),
    },
    missing: plan.missing,
    leftovers: { deleted: plan.deleteLeftovers.map(toPruned), recent: plan.recentLeftovers.map(toPruned) },
    uploads: { aborted: plan.abortUploads.map(toPrunedUpload), recent: plan.recentUploads.map(toPrunedUpload) },
    ...(versions ? { versions } : {}),
    bytesFreed:
      [...plan.deleteArchives, ...plan.deleteSegments, ...plan.deleteLeftovers].reduce((n, o) => n + o.size, 0) +
      (versions?.bytesFreed ?? 0),
    durationMs: Math.round(performance.now() - t0),
  };
}

function checkInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new S3BackupError('prune interrupted; what was deleted so far was unreferenced');
}

/** Whether a time is within the grace period before now (no time: counted as young). */
function youngerThan(graceMs: number, now: number): (t: Date | undefined) => boolean {
  return (t) => t === undefined || now - t.getTime() < graceMs;
}

/** The objects prune may delete, as listed before any manifest is read. */
interface Stored {
  archives: ObjectInfo[];
  segments: ObjectInfo[];
  /** Keys under archives/ that are not s3backup archive names. */
  unrecognized: string[];
  /** Temporary files of unfinished local writes and S3 write probes. */
  leftovers: ObjectInfo[];
  uploads: MultipartUploadInfo[];
}

async function listStored(
  store: Store,
  tempFiles: TempFilesCapability | undefined,
  uploadAccess: UploadsCapability | undefined,
): Promise<Stored> {
  const stored: Stored = { archives: [], segments: [], unrecognized: [], leftovers: [], uploads: [] };
  for await (const o of store.list(ARCHIVES)) {
    if (archiveIdOf(o.key) !== undefined) stored.archives.push(o);
    else stored.unrecognized.push(o.key);
  }
  for await (const o of store.list(ENTRIES)) {
    if (isSegmentKey(o.key)) stored.segments.push(o);
    else stored.unrecognized.push(o.key);
  }
  if (tempFiles) for await (const o of tempFiles.listTemp()) stored.leftovers.push(o);
  for await (const o of store.list(PROBE_PREFIX)) if (!o.key.includes('/')) stored.leftovers.push(o);
  if (uploadAccess) for await (const u of uploadAccess.listMultipartUploads()) stored.uploads.push(u);
  return stored;
}

/** What prune deletes, and what it leaves for a later prune. */
interface PrunePlan {
  deleteArchives: ObjectInfo[];
  /** Unreferenced but younger than the grace period. */
  recentArchives: ObjectInfo[];
  deleteSegments: ObjectInfo[];
  recentSegments: ObjectInfo[];
  missing: { key: string; backups: string[] }[];
  deleteLeftovers: ObjectInfo[];
  recentLeftovers: ObjectInfo[];
  abortUploads: MultipartUploadInfo[];
  recentUploads: MultipartUploadInfo[];
}

/**
 * Unreferenced archives go, once past the grace period, unless a backup this forget removed
 * wrote them (those were complete). Leftovers and uploads go once past the grace period.
 */
async function decide(
  store: Store,
  stored: Stored,
  refs: References,
  forgotten: Set<string>,
  young: (t: Date | undefined) => boolean,
): Promise<PrunePlan> {
  const deleteArchives: ObjectInfo[] = [];
  const recentArchives: ObjectInfo[] = [];
  for (const o of stored.archives) {
    if (refs.referencedBy.has(o.key)) continue;
    const id = archiveIdOf(o.key)!;
    if (!forgotten.has(id) && young(o.lastModified)) recentArchives.push(o);
    else deleteArchives.push(o);
  }
  // Segments are shared and carry no backup id: an unreferenced one waits out the grace period
  // (a backup running without the lock's protection, e.g. after a stale lock was broken, may be
  // about to list it).
  const deleteSegments: ObjectInfo[] = [];
  const recentSegments: ObjectInfo[] = [];
  for (const o of stored.segments) {
    if (refs.referencedBy.has(o.key)) continue;
    (young(o.lastModified) ? recentSegments : deleteSegments).push(o);
  }
  const listed = new Set([...stored.archives, ...stored.segments].map((o) => o.key));
  const missing: { key: string; backups: string[] }[] = [];
  for (const [key, backups] of refs.referencedBy) {
    if (listed.has(key)) continue;
    // Listed before the manifests were read: make sure it is really absent.
    if (!(await store.head(key))) missing.push({ key, backups: backups.sort() });
  }
  missing.sort((a, b) => (a.key < b.key ? -1 : 1));
  const abortUploads = stored.uploads.filter((u) => u.initiated !== undefined && !young(u.initiated));
  return {
    deleteArchives,
    recentArchives,
    deleteSegments,
    recentSegments,
    missing,
    deleteLeftovers: stored.leftovers.filter((o) => !young(o.lastModified)),
    recentLeftovers: stored.leftovers.filter((o) => young(o.lastModified)),
    abortUploads,
    recentUploads: stored.uploads.filter((u) => !abortUploads.includes(u)),
  };
}

/** In batches, checking the lock (and an interrupt) between them. */
async function deleteUnreferenced(
  store: Store,
  plan: PrunePlan,
  uploadAccess: UploadsCapability | undefined,
  opts: PruneOptions,
): Promise<void> {
  await opts.lock?.check();
  for (const list of [plan.deleteArchives, plan.deleteSegments, plan.deleteLeftovers]) {
    for (let i = 0; i < list.length; i += DELETE_BATCH) {
      checkInterrupted(opts.signal);
      opts.lock?.assertHeld();
      await store.delete(list.slice(i, i + DELETE_BATCH).map((o) => o.key));
    }
  }
  if (uploadAccess) {
    for (const u of plan.abortUploads) {
      checkInterrupted(opts.signal);
      opts.lock?.assertHeld();
      await uploadAccess.abortMultipartUpload(u.key, u.uploadId);
    }
  }
}

/**
 * Object Lock buckets (versioned): noncurrent versions and delete markers of the repository's
 * objects. Locked versions are reported, not errors: the lock is doing its job. Undefined when
 * the bucket has no Object Lock (a server that cannot say, or may not be asked, counts as none).
 */
async function purgeVersions(
  repo: Repository,
  versionAccess: VersionsCapability,
  dryRun: boolean,
  opts: PruneOptions,
): Promise<PruneResult['versions']> {
  if (!(repo.config.defaults?.objectLock || (await versionAccess.objectLockStatus().catch(() => ({ enabled: false }))).enabled))
    return undefined;
  checkInterrupted(opts.signal);
  if (!dryRun) opts.lock?.assertHeld();
  const v = { deleted: 0, bytesFreed: 0, locked: [] as LockedVersion[] };
  // Locks and write probes are written and deleted by every run: their old versions pile up too.
  for (const prefix of [ARCHIVES, SNAPSHOTS, KEYS_PREFIX, LOCKS, PROBE_PREFIX]) {
    const r = await versionAccess.purgeNoncurrentVersions(prefix, { dryRun });
    v.deleted += r.deleted;
    v.bytesFreed += r.bytes;
    v.locked.push(...r.locked);
  }
  return v;
}

const toPrunedUpload = (u: MultipartUploadInfo): PrunedUpload => ({
  key: u.key,
  uploadId: u.uploadId,
  initiated: u.initiated?.toISOString() ?? null,
});

// ---------------------------------------------------------------------------------------------
// forget

export interface ForgetOptions {
  /** The retention policy; none (or an empty one) means keep-last 5. */
  policy?: KeepPolicy | undefined;
  /** Allow a policy that removes every backup of a group. */
  allowEmpty?: boolean;
  /** Decide and report only (and take no lock). */
  dryRun?: boolean;
  /** The exclusive lock the caller holds; without one forget takes (and releases) its own. */
  lock?: RepoLock;
  /** Apply the policy to groups under an anomaly hold too (forget --force). */
  force?: boolean;
  /** Told about an anomaly hold object that cannot be read (it then holds nothing). */
  onWarning?: (message: string) => void;
  /** Apply the policy only to the backups this selects (--host, --path, --tag); the others are not looked at. */
  filter?: BackupFilter | undefined;
}

export interface ForgetResult {
  repository: string;
  dryRun: boolean;
  plan: RetentionResult;
  /** Manifests that could not be read: not in any group, never removed. */
  damaged: { id: string; error: string }[];
  /** Ids of the backups removed (dry run: that would be). */
  removed: string[];
  /**
   * Open anomaly holds on groups of this repository (docs/anomaly-detection.md "Anomaly hold"):
   * their backups were all kept, unless `force`.
   */
  held: RetentionHold[];
  force: boolean;
}

export function toRetentionBackup(h: ManifestHeader): RetentionBackup {
  return { id: h.id, time: new Date(h.time), host: h.host, sources: h.sources.map((s) => s.path), tags: h.tags ?? [] };
}

/**
 * The open anomaly holds on the plan's groups; unless `force`, every backup of a held group is
 * kept (the reason names the hold). A hold object that cannot be read holds nothing (it would
 * block retention forever) and is a warning.
 */
async function holdGroups(repo: Repository, plan: RetentionResult, opts: ForgetOptions): Promise<RetentionHold[]> {
  const force = opts.force ?? false;
  const open = activeHolds(await readHolds(repo.store, repo.historyCrypto(), opts.onWarning));
  const held: RetentionHold[] = [];
  for (const g of plan.groups) {
    const hold = heldBy(open, g.host, g.sources);
    if (!hold) continue;
    held.push(hold);
    if (force) continue;
    for (const d of g.decisions) {
      if (d.keep) continue;
      d.keep = true;
      d.reasons.push(`held: anomaly in ${hold.backupId}`);
    }
    g.kept = g.decisions.length;
    g.removed = 0;
  }
  return held;
}

/**
 * Apply a retention policy: remove the manifests of the backups it does not keep. Their data
 * stays until prune (call it next with { forgotten: result.removed } and the same lock).
 */
export async function forget(repo: Repository, opts: ForgetOptions = {}): Promise<ForgetResult> {
  const dryRun = opts.dryRun ?? false;
  let lock = opts.lock;
  const own = !dryRun && !lock;
  if (own) lock = await acquireExclusiveLock(repo.store, 'forget');
  try {
    const items = await repo.listBackups();
    const damaged: { id: string; error: string }[] = [];
    const backups: RetentionBackup[] = [];
    for (const it of items) {
      if ('error' in it) damaged.push(it);
      else if (matchesFilter({ ...it.header, sources: it.header.sources.map((s) => s.path) }, opts.filter))
        backups.push({ ...toRetentionBackup(it.header), id: it.id });
    }
    const plan = applyPolicy(backups, opts.policy, { allowEmpty: opts.allowEmpty ?? false });
    const held = await holdGroups(repo, plan, opts);
    const removed = plan.decisions
      .filter((d) => !d.keep)
      .map((d) => d.backup.id)
      .sort();
    if (!dryRun && removed.length > 0) {
      await lock!.check();
      for (let i = 0; i < removed.length; i += DELETE_BATCH) {
        lock!.assertHeld();
        await repo.store.delete(removed.slice(i, i + DELETE_BATCH).map((id) => repo.manifestKey(id)));
      }
    }
    return { repository: repo.location, dryRun, plan, damaged, removed, held, force: opts.force ?? false };
  } finally {
    if (own) await lock!.release().catch(() => {});
  }
}
