import { UsageError } from '../errors.ts';
import { applyPolicy, type KeepPolicy, type RetentionBackup } from '../retention/policy.ts';
import { groupKey } from '../repo/groups.ts';
import type { LifecycleRule } from '../store/store.ts';
import type { Category } from './inventory.ts';
import {
  basePrice,
  DAY_MS,
  GB,
  isStorageClass,
  LIFECYCLE_MIN_TRANSITION_BYTES,
  MONTH_DAYS,
  type Prices,
  STORAGE_CLASSES,
  type StorageClass,
  tieredCost,
  uploadRequests,
} from './pricing.ts';

/**
 * The simulation: every object of the repository, the ones there now and the ones the
 * repository's own backup cadence will add, gets a timeline under a set of lifecycle rules
 * (upload class → transitions by age → deletion by retention/prune or by lifecycle expiration),
 * and the timelines are priced month by month over the horizon: storage (with minimum billable
 * sizes, archive overhead, Intelligent-Tiering tiers and monitoring), upload and transition
 * requests, and the pro-rated charge for leaving a class before its minimum duration.
 */

export const MONTH_MS = MONTH_DAYS * DAY_MS;

/** Objects that share a timeline: one backup's archive or manifest, or a cohort of others. */
export interface SimObject {
  category: Category;
  /** Bucket key (per-backup objects), for messages. */
  key?: string | undefined;
  /** Class when uploaded (an object moved there by lifecycle counts as uploaded STANDARD). */
  uploadClass: StorageClass;
  birth: number;
  count: number;
  bytes: number;
  /** All `count` objects are under 128 KiB (billed as 128 KiB in IA-like classes, not transitioned). */
  small: boolean;
  /** Indexes of the bucket's current rules that apply. */
  currentRules: number[];
  /** Under the repository's archives/ (what recommended rules target). */
  inArchives: boolean;
  /** When retention (forget + prune) deletes it; Infinity = not within the horizon. */
  deleteAt: number;
  /** Was there before the horizon starts. */
  existing: boolean;
}

export interface Scenario {
  name: string;
  rules: LifecycleRule[];
  /** The rules applying to an object. */
  match(o: SimObject): LifecycleRule[];
}

export interface MonthCost {
  /** Start of the month (ISO). */
  start: string;
  storage: number;
  requests: number;
  transitions: number;
  earlyDeletion: number;
  monitoring: number;
  total: number;
  /** Average bytes stored per class during the month. */
  bytesByClass: Record<string, number>;
}

export interface ScenarioResult {
  name: string;
  rules: LifecycleRule[];
  /** Sum over the horizon. */
  total: number;
  /** total / months. */
  monthlyAverage: number;
  storage: number;
  requests: number;
  transitionFees: number;
  earlyDeletion: number;
  /** Early-deletion charges by the class left early. */
  earlyDeletionByClass: Record<string, number>;
  monitoring: number;
  /** Early-deletion charges on objects that exist now (what the configured retention triggers). */
  earlyDeletionExisting: { amount: number; objects: number; byClass: Record<string, number> };
  /** Lifecycle transitions within the horizon, by target class. */
  transitionCount: Record<string, number>;
  /** Objects deleted by lifecycle expiration while a kept backup still needed them. */
  expiredWhileNeeded: { objects: number; archives: number; manifests: number };
  months: MonthCost[];
}

const RANK = new Map<string, number>(STORAGE_CLASSES.map((c, i) => [c, i]));
const COLD: ReadonlySet<string> = new Set(['GLACIER', 'DEEP_ARCHIVE']);

export function isColdClass(c: string): boolean {
  return COLD.has(c);
}

interface Segment {
  cls: StorageClass;
  from: number;
  to: number;
}

/** Timeline of one object under rules: segments, and whether lifecycle expiration ended it. */
export function timeline(o: SimObject, rules: LifecycleRule[]): { segments: Segment[]; end: number; expiredAt?: number } {
  let expireAt = Infinity;
  const transitions: { at: number; cls: StorageClass }[] = [];
  const avgSize = o.count > 0 ? o.bytes / o.count : 0;
  for (const r of rules) {
    if (r.expirationDays !== undefined) expireAt = Math.min(expireAt, o.birth + r.expirationDays * DAY_MS);
    // S3 does not transition objects under 128 KB unless the rule has its own size filter.
    const sizeOk = r.sizeGreaterThan !== undefined || (!o.small && avgSize >= LIFECYCLE_MIN_TRANSITION_BYTES);
    if (!sizeOk) continue;
    for (const t of r.transitions)
      if (isStorageClass(t.storageClass)) transitions.push({ at: o.birth + t.days * DAY_MS, cls: t.storageClass });
  }
  const end = Math.min(o.deleteAt, expireAt);
  transitions.sort((a, b) => a.at - b.at || RANK.get(b.cls)! - RANK.get(a.cls)!);
  const segments: Segment[] = [];
  let cls = o.uploadClass;
  let from = o.birth;
  for (const t of transitions) {
    if (t.at >= end) break;
    if (RANK.get(t.cls)! <= RANK.get(cls)!) continue; // lifecycle only moves objects to colder classes
    if (t.at > from) segments.push({ cls, from, to: t.at });
    cls = t.cls;
    from = Math.max(from, t.at);
  }
  segments.push({ cls, from, to: end });
  return { segments, end, ...(expireAt < o.deleteAt ? { expiredAt: expireAt } : {}) };
}

/** Price a scenario over the window [start, start + months). */
export function simulate(objects: Iterable<SimObject>, scenario: Scenario, prices: Prices, start: number, months: number): ScenarioResult {
  const windowEnd = start + months * MONTH_MS;
  // Per month: byte-days per pricing bucket (a class, or an Intelligent-Tiering tier).
  const byteDays: Map<string, number>[] = Array.from({ length: months }, () => new Map());
  const requests = new Array<number>(months).fill(0);
  const transitionFees = new Array<number>(months).fill(0);
  const early = new Array<number>(months).fill(0);
  const monitoring = new Array<number>(months).fill(0);
  const transitionCount: Record<string, number> = {};
  const earlyExisting = { amount: 0, objects: 0, byClass: {} as Record<string, number> };
  const earlyByClass: Record<string, number> = {};
  const expired = { objects: 0, archives: 0, manifests: 0 };
  const P = prices.classes;
  const monthOf = (t: number) => Math.floor((t - start) / MONTH_MS);
  const inWindow = (t: number) => t >= start && t < windowEnd;

  const accrue = (bucket: string, bytes: number, from: number, to: number) => {
    const a = Math.max(from, start);
    const b = Math.min(to, windowEnd);
    if (!(b > a) || bytes <= 0) return;
    for (let m = monthOf(a); m < months; m++) {
      const ms = start + m * MONTH_MS;
      const me = ms + MONTH_MS;
      const x = Math.max(a, ms);
      const y = Math.min(b, me);
      if (y > x) {
        const map = byteDays[m]!;
        map.set(bucket, (map.get(bucket) ?? 0) + (bytes * (y - x)) / DAY_MS);
      }
      if (b <= me) break;
    }
  };

  for (const o of objects) {
    const { segments, expiredAt } = timeline(o, scenario.match(o));
    if (
      expiredAt !== undefined &&
      inWindow(expiredAt) &&
      (o.category === 'archives' || o.category === 'manifests') &&
      o.deleteAt > expiredAt
    ) {
      expired.objects += o.count;
      if (o.category === 'archives') expired.archives += o.count;
      else expired.manifests += o.count;
    }
    const avg = o.count > 0 ? o.bytes / o.count : 0;
    if (inWindow(o.birth)) requests[monthOf(o.birth)]! += (o.count * uploadRequests(avg) * P[o.uploadClass].put) / 1000;
    segments.forEach((s, i) => {
      const p = P[s.cls];
      const billable = p.minBillableBytes && avg < p.minBillableBytes ? o.count * p.minBillableBytes : o.bytes;
      if (s.cls === 'INTELLIGENT_TIERING' && !o.small && p.tiers?.length) {
        // Backups are written once and rarely read: assume no access, so the tiers follow age in the class.
        let from = s.from;
        let bucket: string = s.cls;
        for (const t of p.tiers) {
          const at = s.from + t.afterDays * DAY_MS;
          if (at >= s.to) break;
          accrue(bucket, billable, from, at);
          from = at;
          bucket = `${s.cls}@${t.afterDays}`;
        }
        accrue(bucket, billable, from, s.to);
        if (p.monitoringPer1000Objects) {
          const a = Math.max(s.from, start);
          const b = Math.min(s.to, windowEnd);
          if (b > a) {
            // Per object-month, spread over the months the segment covers.
            for (let m = monthOf(a); m < months && start + m * MONTH_MS < b; m++) {
              const x = Math.max(a, start + m * MONTH_MS);
              const y = Math.min(b, start + (m + 1) * MONTH_MS);
              monitoring[m]! += (o.count * p.monitoringPer1000Objects * ((y - x) / MONTH_MS)) / 1000;
            }
          }
        }
      } else {
        accrue(s.cls, billable, s.from, s.to);
      }
      if (p.overheadClassBytes || p.overheadStandardBytes) {
        accrue(s.cls, o.count * (p.overheadClassBytes ?? 0), s.from, s.to);
        accrue('STANDARD', o.count * (p.overheadStandardBytes ?? 0), s.from, s.to);
      }
      if (i > 0 && inWindow(s.from)) {
        transitionFees[monthOf(s.from)]! += (o.count * p.transition) / 1000;
        transitionCount[s.cls] = (transitionCount[s.cls] ?? 0) + o.count;
      }
      // Leaving the class (transition or deletion) before its minimum duration: the rest is billed.
      const left = s.to;
      if (Number.isFinite(left) && inWindow(left) && p.minDays > 0) {
        const days = (left - s.from) / DAY_MS;
        if (days < p.minDays) {
          const charge = ((billable / GB) * basePrice(p) * (p.minDays - days)) / MONTH_DAYS;
          early[monthOf(left)]! += charge;
          earlyByClass[s.cls] = (earlyByClass[s.cls] ?? 0) + charge;
          if (o.existing) {
            earlyExisting.amount += charge;
            earlyExisting.objects += o.count;
            earlyExisting.byClass[s.cls] = (earlyExisting.byClass[s.cls] ?? 0) + charge;
          }
        }
      }
    });
  }

  const monthsOut: MonthCost[] = byteDays.map((map, m) => {
    let storage = 0;
    const bytesByClass: Record<string, number> = {};
    for (const [bucket, bd] of map) {
      const avgBytes = bd / (MONTH_MS / DAY_MS);
      const gbMonths = avgBytes / GB;
      const [cls, tier] = bucket.split('@') as [StorageClass, string | undefined];
      const p = P[cls];
      if (tier !== undefined) storage += gbMonths * (p.tiers?.find((t) => String(t.afterDays) === tier)?.price ?? basePrice(p));
      else storage += tieredCost(p, gbMonths);
      bytesByClass[cls] = (bytesByClass[cls] ?? 0) + avgBytes;
    }
    const total = storage + requests[m]! + transitionFees[m]! + early[m]! + monitoring[m]!;
    return {
      start: new Date(start + m * MONTH_MS).toISOString(),
      storage,
      requests: requests[m]!,
      transitions: transitionFees[m]!,
      earlyDeletion: early[m]!,
      monitoring: monitoring[m]!,
      total,
      bytesByClass: Object.fromEntries(Object.entries(bytesByClass).map(([k, v]) => [k, Math.round(v)])),
    };
  });
  const sum = (f: (m: MonthCost) => number) => monthsOut.reduce((s, m) => s + f(m), 0);
  const total = sum((m) => m.total);
  return {
    name: scenario.name,
    rules: scenario.rules,
    total,
    monthlyAverage: months > 0 ? total / months : 0,
    storage: sum((m) => m.storage),
    requests: sum((m) => m.requests),
    transitionFees: sum((m) => m.transitions),
    earlyDeletion: sum((m) => m.earlyDeletion),
    earlyDeletionByClass: earlyByClass,
    monitoring: sum((m) => m.monitoring),
    earlyDeletionExisting: earlyExisting,
    transitionCount,
    expiredWhileNeeded: expired,
    months: monthsOut,
  };
}

// ---------------------------------------------------------------------------------------------
// Backups: the repository's history, projected forward, with the retention policy applied

export interface BackupRecord {
  id: string;
  time: number;
  host: string;
  sources: string[];
  tags: string[];
  kind?: 'full' | 'incremental' | undefined;
  /** Start of its incremental chain (the full backup's time). */
  chainStart?: number | undefined;
  /** Bucket keys of the archives this backup needs (its manifest's archives line, else its own). */
  refs: string[];
  manifest?: { key: string; size: number; lastModified: number; storageClass: string } | undefined;
  archives: { key: string; size: number; lastModified: number; storageClass: string }[];
}

export interface Projection {
  /** One SimObject per manifest and archive, existing and projected, with deleteAt from retention. */
  objects: SimObject[];
  projectedBackups: number;
  /** Per group of backups: the cadence and sizes replayed. */
  cadence: {
    /** The group's key (src/repo/groups.ts), its host and sorted sources. */
    group: string;
    host: string;
    sources: string[];
    backups: number;
    medianGapDays: number | undefined;
    medianArchiveBytes: number;
    projected: number;
  }[];
  /** Archives deleted by retention within the horizon: how long they lived (days). */
  archiveLifetimeDays: {
    max: number | undefined;
    median: number | undefined;
    deleted: number;
    surviving: number;
    maxAge: number | undefined;
  };
  notes: string[];
}

export interface ProjectionInput {
  backups: BackupRecord[];
  policy: KeepPolicy | undefined;
  now: number;
  months: number;
  /** Bucket key of a repository key (archives/…, snapshots/…). */
  bucketKey(repoKey: string): string;
  /** Current rules applying to a bucket key and size (for the existing timelines). */
  currentRules(key: string, size: number): number[];
  /** Class an existing object was uploaded in (undoing lifecycle transitions). */
  uploadClassOf(o: { key: string; size: number; lastModified: number; storageClass: string }): StorageClass;
}

const PATTERN = 30;
/** Backups closer together than this are projected at this spacing (keeps the simulation bounded). */
export const MIN_GAP_MS = 3_600_000;
/** At most this many future backups are simulated (an hourly cadence for 2+ years). */
export const MAX_PROJECTED = 20_000;
/** backup --full-after's default: a new full backup once the chain is 30 days old. */
const FULL_AFTER_MS = 30 * DAY_MS;

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The objects a projection tracks, by key (archives) and backup id (manifests), and what each backup needs. */
interface ProjectionState {
  input: ProjectionInput;
  objects: SimObject[];
  archiveObj: Map<string, { obj: SimObject; refs: number }>;
  manifestObj: Map<string, SimObject>;
  /** Backup id → the archives it needs. */
  refsOf: Map<string, string[]>;
  notes: string[];
}

/** A backup the projection expects in the horizon, with the sizes replayed from its group. */
interface FutureBackup {
  time: number;
  group: string;
  template: BackupRecord;
  archiveBytes: number;
  /**
   * A backup larger than the archive size is split into several archives, each an object of its
   * own (a lifecycle transition, a multipart upload, Glacier's per-object overhead).
   */
  archiveCount: number;
  manifestBytes: number;
  kind: 'full' | 'incremental' | undefined;
}

export function projectBackups(input: ProjectionInput): Projection {
  const { now, months } = input;
  const end = now + months * MONTH_MS;
  const state: ProjectionState = { input, objects: [], archiveObj: new Map(), manifestObj: new Map(), refsOf: new Map(), notes: [] };
  const sorted = [...input.backups].sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : 1));
  addExisting(state, sorted);

  // Groups as retention sees them (host + sources); the cadence of each is replayed.
  const groups = new Map<string, BackupRecord[]>();
  for (const b of sorted) {
    if (!b.manifest) continue; // a backup exists iff its manifest does
    const k = groupKey(b);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(b);
  }
  const { future, cadence } = projectFuture(state, groups, end);
  replayRetention(state, sorted, future);

  const lifetimes: number[] = [];
  let surviving = 0;
  let maxAge: number | undefined;
  for (const { obj } of state.archiveObj.values()) {
    const age = (Math.min(obj.deleteAt, end) - obj.birth) / DAY_MS;
    if (maxAge === undefined || age > maxAge) maxAge = age;
    if (Number.isFinite(obj.deleteAt) && obj.deleteAt < end) lifetimes.push((obj.deleteAt - obj.birth) / DAY_MS);
    else surviving++;
  }
  return {
    objects: state.objects,
    projectedBackups: future.length,
    cadence,
    archiveLifetimeDays: {
      max: lifetimes.length ? Math.max(...lifetimes) : undefined,
      median: median(lifetimes),
      deleted: lifetimes.length,
      surviving,
      maxAge,
    },
    notes: state.notes,
  };
}

/** Today's archives and manifests, and the archives each backup needs (unneeded ones go at the next prune). */
function addExisting(state: ProjectionState, sorted: BackupRecord[]): void {
  const { input, objects, archiveObj, manifestObj, refsOf } = state;
  const mk = (
    category: Category,
    o: { key: string; size: number; lastModified: number; storageClass: string },
    existing: boolean,
    uploadClass?: StorageClass,
  ): SimObject => ({
    category,
    key: o.key,
    uploadClass: uploadClass ?? input.uploadClassOf(o),
    birth: o.lastModified,
    count: 1,
    bytes: o.size,
    small: o.size < LIFECYCLE_MIN_TRANSITION_BYTES,
    currentRules: input.currentRules(o.key, o.size),
    inArchives: category === 'archives',
    deleteAt: Infinity,
    existing,
  });
  for (const b of sorted) {
    for (const a of b.archives) {
      if (!archiveObj.has(a.key)) {
        const obj = mk('archives', a, true);
        archiveObj.set(a.key, { obj, refs: 0 });
        objects.push(obj);
      }
    }
    if (b.manifest) {
      const obj = mk('manifests', b.manifest, true);
      manifestObj.set(b.id, obj);
      objects.push(obj);
    }
  }
  for (const b of sorted) {
    if (!b.manifest) continue;
    const refs = b.refs.length ? b.refs : b.archives.map((a) => a.key);
    refsOf.set(b.id, refs);
    for (const r of refs) {
      const e = archiveObj.get(r);
      if (e) e.refs++;
    }
  }
  // Archives no backup needs: the next prune deletes them.
  const firstPrune = input.now;
  for (const e of archiveObj.values()) if (e.refs === 0) e.obj.deleteAt = Math.max(firstPrune, e.obj.birth);
}

/** The future backups of every group, in time order across groups, and each group's cadence. */
function projectFuture(
  state: ProjectionState,
  groups: Map<string, BackupRecord[]>,
  end: number,
): { future: FutureBackup[]; cadence: Projection['cadence'] } {
  const { notes } = state;
  const now = state.input.now;
  const allGaps: number[] = [];
  for (const g of groups.values()) for (let i = 1; i < g.length; i++) allGaps.push(g[i]!.time - g[i - 1]!.time);
  const overallGap = median(allGaps.filter((x) => x > 0));
  const future: FutureBackup[] = [];
  const cadence: Projection['cadence'] = [];
  for (const [k, g] of groups) {
    const recent = g.slice(-PATTERN - 1);
    const gaps: number[] = [];
    for (let i = 1; i < recent.length; i++) gaps.push(recent[i]!.time - recent[i - 1]!.time);
    const rawGaps = gaps.filter((x) => x > 0);
    if (rawGaps.some((x) => x < MIN_GAP_MS)) notes.push(`${g[0]!.host}: backups less than an hour apart are projected one hour apart`);
    const posGaps = rawGaps.map((x) => Math.max(x, MIN_GAP_MS));
    const medGap = median(posGaps) ?? (overallGap !== undefined ? Math.max(overallGap, MIN_GAP_MS) : undefined);
    const pattern = recent.slice(-Math.max(posGaps.length, 1));
    const archiveSizes = pattern.map((b) => b.archives.reduce((s, a) => s + a.size, 0));
    const entry = {
      group: k,
      host: g[0]!.host,
      sources: [...g[0]!.sources].sort(),
      backups: g.length,
      medianGapDays: medGap !== undefined ? medGap / DAY_MS : undefined,
      medianArchiveBytes: median(archiveSizes) ?? 0,
      projected: 0,
    };
    cadence.push(entry);
    if (medGap === undefined) {
      notes.push(`${g[0]!.host}: only one backup, so no cadence to project; its future backups are not simulated`);
      continue;
    }
    const last = g.at(-1)!;
    // Incrementals (s3backup's default) start a new chain with a full backup once the chain is
    // older than 30 days (backup --full-after); a repository of full backups stays full.
    const incremental = pattern.some((b) => b.kind === 'incremental');
    const kindsKnown = pattern.some((b) => b.kind !== undefined);
    const size = (b: BackupRecord) => b.archives.reduce((s, a) => s + a.size, 0);
    const fulls = g.filter((b) => b.kind !== 'incremental');
    const fullBytes = fulls.length ? size(fulls.at(-1)!) : (median(archiveSizes) ?? 0);
    const incrBytes = median(pattern.filter((b) => b.kind === 'incremental').map(size)) ?? fullBytes;
    const parts = (b: BackupRecord) => Math.max(1, b.archives.length);
    const fullParts = fulls.length ? parts(fulls.at(-1)!) : Math.round(median(pattern.map(parts)) ?? 1);
    const incrParts = Math.round(median(pattern.filter((b) => b.kind === 'incremental').map(parts)) ?? fullParts);
    const manifestBytes = median(pattern.map((b) => b.manifest?.size ?? 0)) ?? 0;
    let chainStart = last.chainStart ?? last.time;
    let t = last.time;
    let i = 0;
    for (;;) {
      const gap = posGaps.length ? posGaps[i % posGaps.length]! : medGap;
      t += gap;
      i++;
      if (t >= end) break;
      const full = !incremental || t - chainStart >= FULL_AFTER_MS;
      if (full) chainStart = t;
      if (t < now) continue; // missed runs are not made up
      // Without manifests the kinds are unknown: replay the observed sizes in their order (a
      // monthly full among daily incrementals stays a monthly big one), each self-contained.
      const replayed = pattern[(i - 1) % pattern.length]!;
      const archiveBytes = kindsKnown ? (full ? fullBytes : incrBytes) : size(replayed);
      const archiveCount = kindsKnown ? (full ? fullParts : incrParts) : parts(replayed);
      future.push({
        time: t,
        group: k,
        template: last,
        archiveBytes,
        archiveCount,
        manifestBytes,
        kind: kindsKnown ? (full ? 'full' : 'incremental') : undefined,
      });
      entry.projected++;
    }
  }
  future.sort((a, b) => a.time - b.time);
  if (future.length > MAX_PROJECTED) {
    notes.push(`${future.length} future backups in the horizon: only the first ${MAX_PROJECTED} are simulated`);
    future.length = MAX_PROJECTED;
  }
  return { future, cadence };
}

/** Each future backup's objects, then retention after it (auto-forget) and prune of what no kept backup needs. */
function replayRetention(state: ProjectionState, sorted: BackupRecord[], future: FutureBackup[]): void {
  const { input, objects, archiveObj, manifestObj, refsOf, notes } = state;
  let survivors: RetentionBackup[] = sorted
    .filter((b) => b.manifest)
    .map((b) => ({ id: b.id, time: new Date(b.time), host: b.host, sources: b.sources, tags: b.tags }));
  const lastRefs = new Map<string, string[]>();
  for (const b of sorted) if (b.manifest) lastRefs.set(JSON.stringify([b.host, [...b.sources].sort()]), refsOf.get(b.id) ?? []);
  const forgetAt = (id: string, t: number) => {
    const m = manifestObj.get(id);
    if (m) m.deleteAt = t;
    for (const r of refsOf.get(id) ?? []) {
      const e = archiveObj.get(r);
      if (e && --e.refs === 0) e.obj.deleteAt = t;
    }
  };
  let n = 0;
  let refused = false;
  for (const f of future) {
    const id = `projected-${String(++n).padStart(6, '0')}`;
    const archiveKey = input.bucketKey(`archives/${id}.tar.zst`);
    const archive: SimObject = {
      category: 'archives',
      key: archiveKey,
      uploadClass: 'STANDARD',
      birth: f.time,
      count: f.archiveCount,
      bytes: f.archiveBytes,
      small: f.archiveBytes / f.archiveCount < LIFECYCLE_MIN_TRANSITION_BYTES,
      currentRules: input.currentRules(archiveKey, f.archiveBytes / f.archiveCount),
      inArchives: true,
      deleteAt: Infinity,
      existing: false,
    };
    const manifestKey = input.bucketKey(`snapshots/${id}.ndjson.zst`);
    const manifest: SimObject = {
      ...archive,
      category: 'manifests',
      key: manifestKey,
      count: 1,
      bytes: f.manifestBytes,
      small: f.manifestBytes < LIFECYCLE_MIN_TRANSITION_BYTES,
      currentRules: input.currentRules(manifestKey, f.manifestBytes),
      inArchives: false,
    };
    objects.push(archive, manifest);
    archiveObj.set(archiveKey, { obj: archive, refs: 0 });
    manifestObj.set(id, manifest);
    // An incremental needs its chain's archives too; a full only its own.
    const refs = f.kind === 'incremental' ? [...new Set([...(lastRefs.get(f.group) ?? []), archiveKey])] : [archiveKey];
    lastRefs.set(f.group, refs);
    refsOf.set(id, refs);
    for (const r of refs) {
      const e = archiveObj.get(r);
      if (e) e.refs++;
    }
    survivors.push({ id, time: new Date(f.time), host: f.template.host, sources: f.template.sources, tags: f.template.tags });
    try {
      const r = applyPolicy(survivors, input.policy);
      const kept: RetentionBackup[] = [];
      for (const d of r.decisions) {
        if (d.keep) kept.push(d.backup);
        else forgetAt(d.backup.id, f.time);
      }
      survivors = kept;
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      if (!refused) notes.push(`the retention policy is refused (${e.message}); simulated as keeping everything`);
      refused = true;
    }
  }
}

/**
 * How long, at most, the policy keeps a backup, in days (Infinity for tags; undefined = the
 * newest `last` backups, which depends on the cadence: gapDays gives it).
 */
export function policyHorizonDays(policy: KeepPolicy, gapDays: number | undefined): number {
  let d = 0;
  if (policy.last) d = Math.max(d, policy.last * (gapDays ?? 1));
  if (policy.hourly) d = Math.max(d, policy.hourly / 24);
  if (policy.daily) d = Math.max(d, policy.daily);
  if (policy.weekly) d = Math.max(d, policy.weekly * 7);
  if (policy.monthly) d = Math.max(d, policy.monthly * MONTH_DAYS);
  if (policy.yearly) d = Math.max(d, policy.yearly * 365.25);
  if (policy.within) {
    const m = [...policy.within.matchAll(/(\d+)([yMmwdh])/g)];
    let w = 0;
    for (const [, n, u] of m)
      w += Number(n) * ({ y: 365.25, M: MONTH_DAYS, m: MONTH_DAYS, w: 7, d: 1, h: 1 / 24 } as Record<string, number>)[u!]!;
    d = Math.max(d, w);
  }
  if (policy.tags?.length) d = Infinity;
  return d;
}

/** Rules only under the repository's archives/, for the candidates the analyzer compares. */
export function archiveRules(prefix: string, transitions: { days: number; storageClass: StorageClass }[], id: string): LifecycleRule[] {
  return transitions.length ? [{ id, enabled: true, prefix, tagFilter: false, transitions: [...transitions], ignored: [] }] : [];
}

/** Candidate lifecycle rules for archives/: instant-access ones, and colder ones that need a thaw before restore. */
export const CANDIDATES: { name: string; transitions: { days: number; storageClass: StorageClass }[] }[] = [
  { name: 'STANDARD_IA after 30 days', transitions: [{ days: 30, storageClass: 'STANDARD_IA' }] },
  { name: 'STANDARD_IA after 60 days', transitions: [{ days: 60, storageClass: 'STANDARD_IA' }] },
  { name: 'GLACIER_IR after 30 days', transitions: [{ days: 30, storageClass: 'GLACIER_IR' }] },
  { name: 'GLACIER_IR after 90 days', transitions: [{ days: 90, storageClass: 'GLACIER_IR' }] },
  {
    name: 'STANDARD_IA after 30 days, GLACIER_IR after 90',
    transitions: [
      { days: 30, storageClass: 'STANDARD_IA' },
      { days: 90, storageClass: 'GLACIER_IR' },
    ],
  },
  { name: 'INTELLIGENT_TIERING from day 0', transitions: [{ days: 0, storageClass: 'INTELLIGENT_TIERING' }] },
  {
    name: 'STANDARD_IA after 30 days, GLACIER after 90',
    transitions: [
      { days: 30, storageClass: 'STANDARD_IA' },
      { days: 90, storageClass: 'GLACIER' },
    ],
  },
  { name: 'GLACIER after 90 days', transitions: [{ days: 90, storageClass: 'GLACIER' }] },
  { name: 'DEEP_ARCHIVE after 180 days', transitions: [{ days: 180, storageClass: 'DEEP_ARCHIVE' }] },
];
