import * as fs from 'node:fs';
import * as path from 'node:path';
import { IntegrityError, S3BackupError, StoreAccessError, UsageError } from '../errors.ts';
import { readManifestHead } from '../repo/manifest-head.ts';
import { Repository, RepositoryMissingError } from '../repo/repository.ts';
import { describePolicy, isEmptyPolicy, DEFAULT_POLICY, type KeepPolicy } from '../retention/policy.ts';
import type { BucketCapability, LifecycleRule, Store } from '../store/store.ts';
import { PRICE_TABLE } from './price-table.ts';
import { forecast as holtForecast, type Forecast } from './forecast.ts';
import {
  type BucketOpener,
  type ClassTotals,
  type Category,
  InventoryBuilder,
  type InventoryProgress,
  listObjects,
  openInventory,
  ruleMatches,
} from './inventory.ts';
import {
  archiveRules,
  CANDIDATES,
  isColdClass,
  MONTH_MS,
  policyHorizonDays,
  projectBackups,
  type BackupRecord,
  type Projection,
  type Scenario,
  type ScenarioResult,
  type SimObject,
  simulate,
} from './lifecycle.ts';
import type { KeySource } from '../crypto/keys.ts';
import { generatedHostWarning } from '../backup/host-identity.ts';
import {
  archiveOverhead,
  basePrice,
  billableBytes,
  DAY_MS,
  GB,
  isStorageClass,
  type Prices,
  selectPrices,
  STORAGE_CLASSES,
  type StorageClass,
  tieredCost,
} from './pricing.ts';

export interface CostOptions {
  /** Opens an encrypted repository's manifests (their heads say which archives each backup needs). */
  keys?: KeySource | undefined;
  /** Default: the shipped table's us-east-1 prices. */
  prices?: Prices;
  /** The whole bucket, not only the repository's prefix (S3 only). */
  wholeBucket?: boolean;
  /** Read this S3 Inventory report instead of listing (file or s3:// location). */
  inventory?: string | undefined;
  /** Opens another bucket (for an s3:// inventory location). */
  openBucket?: BucketOpener;
  /** Simulation horizon in months (default 12, at least 12 for the lifecycle comparison). */
  months?: number;
  policy?: KeepPolicy | undefined;
  /** Where the policy came from, for the report. */
  policySource?: string;
  /** Read manifest headers (hosts, sources, archive references) when allowed (default true). */
  readManifests?: boolean;
  /** Earlier runs (the --save-csv history) for the forecast. */
  history?: HistoryPoint[];
  forecastMonths?: number | undefined;
  now?: Date;
  onProgress?: (p: InventoryProgress) => void;
}

export interface HistoryPoint {
  time: number;
  bytes: number;
  monthlyCost: number;
}

export interface ClassLine {
  storageClass: string;
  objects: number;
  bytes: number;
  /** Bytes billed: small objects at the class minimum, plus archive overhead. */
  billableBytes: number;
  monthlyCost: number;
  /** $/GB-month used (first tier). */
  price: number;
}

export interface Warning {
  code: string;
  message: string;
}

export interface CostReport {
  reportVersion: 1;
  generatedAt: string;
  repository: string;
  scope: 'repository' | 'bucket';
  store: 's3' | 'local';
  source: { kind: 'listing' | 'inventory'; location?: string | undefined; date?: string | undefined };
  prices: Prices['table'] & { region: string; regionFallback?: string | undefined };
  totalObjects: number;
  totalBytes: number;
  bytesByClass: Record<string, number>;
  objectsByClass: Record<string, number>;
  categories: Record<Category, { objects: number; bytes: number; bytesByClass: Record<string, number> }>;
  current: {
    monthlyCost: number;
    classes: ClassLine[];
    /** Pro-rated minimum-duration charges the retention policy will cause on today's objects within the horizon. */
    earlyDeletion: { amount: number; objects: number; byClass: Record<string, number> };
    /**
     * What restoring the newest backup in full would cost in retrieval fees and requests (its
     * archives in their current classes; a ranged GET per 4 MiB frame; cold classes: one restore
     * request each, Standard tier). Data transfer out is not included.
     */
    restoreLatest?: { backup: string; archives: number; bytes: number; cost: number; byClass: Record<string, number> } | undefined;
  };
  backups: {
    count: number;
    first?: string | undefined;
    last?: string | undefined;
    manifestsRead: boolean;
    cadence: Projection['cadence'];
    archiveLifetimeDays: Projection['archiveLifetimeDays'];
  };
  retention: { policy: KeepPolicy; description: string; source: string };
  lifecycle: { available: boolean; rules: LifecycleRule[] };
  simulation: {
    months: number;
    start: string;
    end: string;
    scenarios: { none: ScenarioResult; current: ScenarioResult; recommended: ScenarioResult };
    /** Every candidate the recommendation was chosen from, with its horizon total. */
    candidates: { name: string; total: number; cold: boolean }[];
    recommendation: string;
    coldAlternative?: { name: string; total: number; rules: LifecycleRule[] } | undefined;
  };
  savings: {
    /** Over the horizon, and per month on average: what the bucket's rules save against none. */
    currentVsNone: { total: number; monthly: number; percent: number };
    recommendedVsNone: { total: number; monthly: number; percent: number };
    recommendedVsCurrent: { total: number; monthly: number };
  };
  forecast?:
    | { months: number; basis: string; bytes: Forecast | { unavailable: string }; monthlyCost: Forecast | { unavailable: string } }
    | undefined;
  warnings: Warning[];
  notes: string[];
}

const EMPTY_CAT = () => ({ objects: 0, bytes: 0, bytesByClass: {} as Record<string, number> });

/**
 * The cost analysis behind `s3backup cost` (and the dashboard): inventory of the objects by
 * storage class, what they cost per month now, and the lifecycle simulation (none / the
 * bucket's rules / recommended rules) under the repository's cadence and retention policy.
 */
export async function analyzeCost(store: Store, opts: CostOptions): Promise<CostReport> {
  const now = (opts.now ?? new Date()).getTime();
  const months = Math.max(12, Math.floor(opts.months ?? 12));
  const prices = opts.prices ?? selectPrices(PRICE_TABLE, undefined);
  const warnings: Warning[] = [];
  const notes: string[] = [];
  const bucketView = store.capabilities().bucket;
  const s3 = bucketView !== undefined;
  const root = bucketView ? bucketView.bucketKey('x').slice(0, -1) : '';
  if (opts.wholeBucket && !s3) notes.push('--bucket: a local repository is its whole directory; nothing else to add');
  if (!s3)
    notes.push('local store: no storage classes or lifecycle; its bytes are priced as S3 STANDARD to show what they would cost in S3');
  if (prices.regionFallback) {
    warnings.push({
      code: 'region-not-in-price-table',
      message: `the price table has no prices for region ${prices.region}; used ${prices.regionFallback}'s (give your region's with --prices FILE)`,
    });
  }
  const ctx: CostContext = { store, opts, now, months, prices, s3, bucketView, root, warnings, notes };

  // Lifecycle rules first: the inventory folds objects by the rules that match them.
  const { rules, lifecycleAvailable } = await readLifecycle(ctx);
  const { inv, source } = await takeInventory(ctx, rules);
  const classOf = (c: string): StorageClass => (s3 && isStorageClass(c) ? c : 'STANDARD');
  const classes = currentClasses(ctx, inv);
  const { backupRecords, withManifest, manifestsRead } = await readBackups(ctx, inv);
  const restoreLatest = restoreLatestCost(backupRecords, withManifest, prices, classOf);

  const policy: KeepPolicy = isEmptyPolicy(opts.policy) ? { ...DEFAULT_POLICY } : { ...opts.policy };
  const { objects, projection } = simulationObjects(ctx, inv, backupRecords, policy, rules, classOf);
  const scenarios = runScenarios(ctx, objects, rules);
  const { resNone, resCurrent, resRecommended } = scenarios;
  const policyText = describePolicy(policy);
  contradictionWarnings(ctx, rules, policy, policyText, projection, resNone, resCurrent);

  const pct = (a: number, b: number) => (a > 0 ? Math.round(((a - b) / a) * 1000) / 10 : 0);
  const cat = (k: Category) => {
    const c = inv.byCategory.get(k);
    if (!c) return EMPTY_CAT();
    return { objects: c.objects, bytes: c.bytes, bytesByClass: Object.fromEntries([...c.byClass].map(([cls, t]) => [cls, t.bytes])) };
  };
  const times = backupRecords
    .filter((b) => b.manifest)
    .map((b) => b.time)
    .sort((a, b) => a - b);
  const report: CostReport = {
    reportVersion: 1,
    generatedAt: new Date(now).toISOString(),
    repository: store.location,
    scope: opts.wholeBucket && s3 ? 'bucket' : 'repository',
    store: s3 ? 's3' : 'local',
    source,
    prices: { ...prices.table, region: prices.region, ...(prices.regionFallback ? { regionFallback: prices.regionFallback } : {}) },
    totalObjects: inv.totalObjects,
    totalBytes: inv.totalBytes,
    bytesByClass: Object.fromEntries([...inv.byClass].map(([c, t]) => [c, t.bytes])),
    objectsByClass: Object.fromEntries([...inv.byClass].map(([c, t]) => [c, t.objects])),
    categories: { manifests: cat('manifests'), archives: cat('archives'), other: cat('other'), outside: cat('outside') },
    current: {
      monthlyCost: classes.reduce((s, c) => s + c.monthlyCost, 0),
      classes,
      earlyDeletion: resCurrent.earlyDeletionExisting,
      restoreLatest,
    },
    backups: {
      count: times.length,
      first: times.length ? new Date(times[0]!).toISOString() : undefined,
      last: times.length ? new Date(times.at(-1)!).toISOString() : undefined,
      manifestsRead,
      cadence: projection.cadence,
      archiveLifetimeDays: projection.archiveLifetimeDays,
    },
    retention: { policy, description: policyText, source: opts.policySource ?? (isEmptyPolicy(opts.policy) ? 'the default' : 'given') },
    lifecycle: { available: lifecycleAvailable, rules },
    simulation: {
      months,
      start: new Date(now).toISOString(),
      end: new Date(now + months * MONTH_MS).toISOString(),
      scenarios: { none: resNone, current: resCurrent, recommended: resRecommended },
      candidates: scenarios.candidates.map((c) => ({ name: c.name, total: c.res.total, cold: c.cold })),
      recommendation: scenarios.recommendation,
      coldAlternative: scenarios.coldAlternative,
    },
    savings: {
      currentVsNone: {
        total: resNone.total - resCurrent.total,
        monthly: (resNone.total - resCurrent.total) / months,
        percent: pct(resNone.total, resCurrent.total),
      },
      recommendedVsNone: {
        total: resNone.total - resRecommended.total,
        monthly: (resNone.total - resRecommended.total) / months,
        percent: pct(resNone.total, resRecommended.total),
      },
      recommendedVsCurrent: { total: resCurrent.total - resRecommended.total, monthly: (resCurrent.total - resRecommended.total) / months },
    },
    warnings,
    notes,
  };
  if (opts.forecastMonths) {
    const pts = [...(opts.history ?? []), { time: now, bytes: report.totalBytes, monthlyCost: report.current.monthlyCost }];
    report.forecast = {
      months: opts.forecastMonths,
      basis: `${pts.length} cost report(s) (the --save-csv history, this run included)`,
      bytes: holtForecast(
        pts.map((p) => ({ t: p.time, v: p.bytes })),
        opts.forecastMonths,
        { nonNegative: true },
      ),
      monthlyCost: holtForecast(
        pts.map((p) => ({ t: p.time, v: p.monthlyCost })),
        opts.forecastMonths,
        { nonNegative: true },
      ),
    };
  }
  return report;
}

/** What every step of analyzeCost shares: the store, the options, and the findings so far. */
interface CostContext {
  store: Store;
  opts: CostOptions;
  now: number;
  months: number;
  prices: Prices;
  /** An S3 store (storage classes, lifecycle); else everything is priced as STANDARD. */
  s3: boolean;
  /** The store's bucket, when it is one. */
  bucketView: BucketCapability | undefined;
  /** The repository's prefix in its bucket. */
  root: string;
  warnings: Warning[];
  notes: string[];
}

/** The bucket's lifecycle rules (none if they cannot be read: a warning). */
async function readLifecycle(ctx: CostContext): Promise<{ rules: LifecycleRule[]; lifecycleAvailable: boolean }> {
  const { bucketView, warnings, notes } = ctx;
  let rules: LifecycleRule[] = [];
  let lifecycleAvailable = ctx.s3;
  if (bucketView) {
    try {
      rules = await bucketView.getLifecycleRules();
    } catch (e) {
      if (!(e instanceof StoreAccessError)) throw e;
      lifecycleAvailable = false;
      warnings.push({
        code: 'lifecycle-unreadable',
        message: `cannot read the bucket's lifecycle configuration (${e.message}); simulated as having no rules`,
      });
    }
    for (const r of rules) {
      if (r.tagFilter)
        notes.push(`lifecycle rule ${r.id ?? '(no id)'} filters on object tags, which listings do not show: left out of the simulation`);
      for (const t of r.transitions)
        if (!isStorageClass(t.storageClass))
          notes.push(`lifecycle rule ${r.id ?? '(no id)'}: transition to ${t.storageClass}, a class the model does not price, is left out`);
    }
  }
  return { rules, lifecycleAvailable };
}

/** Inventory: one streamed pass, over a listing or an S3 Inventory report. */
async function takeInventory(ctx: CostContext, rules: LifecycleRule[]): Promise<{ inv: InventoryBuilder; source: CostReport['source'] }> {
  const { store, opts, s3, bucketView, root, warnings } = ctx;
  const inv = new InventoryBuilder(rules, opts.inventory ? 'inventory' : 'list', opts.onProgress);
  let source: CostReport['source'] = { kind: 'listing' };
  if (opts.inventory) {
    if (!opts.openBucket && /^s3:/i.test(opts.inventory)) throw new UsageError('an s3:// inventory location needs S3 access');
    const input = await openInventory(opts.inventory, {
      root,
      openBucket:
        opts.openBucket ??
        (async () => {
          throw new UsageError('no S3 access for the inventory');
        }),
    });
    source = { kind: 'inventory', location: input.location, date: input.date };
    for await (const o of input.rows) {
      if (!opts.wholeBucket && o.repoKey === undefined) continue;
      inv.add(o);
    }
    if (input.sourceBucket && bucketView && input.sourceBucket !== bucketView.bucket) {
      warnings.push({
        code: 'inventory-other-bucket',
        message: `the inventory report is of bucket ${input.sourceBucket}, not ${bucketView.bucket}`,
      });
    }
  } else {
    for await (const o of listObjects(store, { wholeBucket: !!opts.wholeBucket, root })) inv.add(o);
  }
  inv.done();
  if (inv.totalObjects === 0) {
    warnings.push({
      code: 'no-objects',
      message: `no objects at ${source.kind === 'inventory' ? `${store.location} in the inventory report` : store.location}: check --repo${opts.inventory ? ' and --inventory' : ''}`,
    });
  }
  const unknown = [...inv.byClass.keys()].filter((c) => !isStorageClass(c));
  if (s3 && unknown.length) {
    warnings.push({
      code: 'unknown-storage-class',
      message: `storage class${unknown.length > 1 ? 'es' : ''} ${unknown.join(', ')} not in the price table: priced as STANDARD`,
    });
  }
  return { inv, source };
}

/** Current monthly cost per class. */
function currentClasses(ctx: CostContext, inv: InventoryBuilder): ClassLine[] {
  const P = ctx.prices.classes;
  const merged = new Map<StorageClass, ClassTotals>();
  for (const [c, t] of inv.byClass) {
    const k = ctx.s3 && isStorageClass(c) ? c : 'STANDARD';
    const m = merged.get(k) ?? { objects: 0, bytes: 0, smallObjects: 0, smallBytes: 0 };
    m.objects += t.objects;
    m.bytes += t.bytes;
    m.smallObjects += t.smallObjects;
    m.smallBytes += t.smallBytes;
    merged.set(k, m);
  }
  const overheadStandard = [...merged].reduce((s, [c, t]) => s + archiveOverhead(P[c], t.objects).standardBytes, 0);
  const classes: ClassLine[] = [];
  for (const c of STORAGE_CLASSES) {
    const t = merged.get(c);
    if (!t && !(c === 'STANDARD' && overheadStandard > 0)) continue;
    const tt = t ?? { objects: 0, bytes: 0, smallObjects: 0, smallBytes: 0 };
    const p = P[c];
    const over = archiveOverhead(p, tt.objects);
    const billable =
      billableBytes(p, tt.bytes, tt.smallObjects, tt.smallBytes) + over.classBytes + (c === 'STANDARD' ? overheadStandard : 0);
    let cost = tieredCost(p, billable / GB);
    if (p.monitoringPer1000Objects) cost += ((tt.objects - tt.smallObjects) * p.monitoringPer1000Objects) / 1000;
    classes.push({
      storageClass: c,
      objects: tt.objects,
      bytes: tt.bytes,
      billableBytes: billable,
      monthlyCost: cost,
      price: basePrice(p),
    });
  }
  if (merged.has('INTELLIGENT_TIERING'))
    ctx.notes.push(
      'INTELLIGENT_TIERING objects are priced at the Frequent Access tier now (a listing does not show their tier); the simulation moves them down with age',
    );
  return classes;
}

/** Backups: the records, and their manifests' headers when we may read them. */
async function readBackups(
  ctx: CostContext,
  inv: InventoryBuilder,
): Promise<{ backupRecords: BackupRecord[]; withManifest: BackupRecord[]; manifestsRead: boolean }> {
  const { store, opts, notes, warnings } = ctx;
  const backupRecords: BackupRecord[] = [];
  for (const b of inv.backups.values()) {
    backupRecords.push({
      id: b.id,
      time: b.time,
      host: '?',
      sources: [],
      tags: [],
      refs: [],
      ...(b.manifest
        ? {
            manifest: {
              key: b.manifest.bucketKey,
              size: b.manifest.size,
              lastModified: b.manifest.lastModified,
              storageClass: b.manifest.storageClass,
            },
          }
        : {}),
      archives: b.archives.map((a) => ({ key: a.bucketKey, size: a.size, lastModified: a.lastModified, storageClass: a.storageClass })),
    });
  }
  let manifestsRead = false;
  const withManifest = backupRecords.filter((b) => b.manifest);
  if (opts.readManifests !== false && withManifest.length > 0) {
    manifestsRead = await readHeads(store, withManifest, ctx.root, notes, opts.onProgress, opts.keys);
  }
  if (!manifestsRead && withManifest.length > 0) {
    notes.push('backups were taken from the object names alone (one group; each backup needs only its own archive)');
  }
  if (manifestsRead) {
    // A host name that changes every run (containers, CI): storage grows without bound.
    const w = generatedHostWarning(
      withManifest.map((b) => ({ id: b.id, time: new Date(b.time).toISOString(), host: b.host, sources: b.sources })),
    );
    if (w) {
      warnings.push({
        code: w.code,
        message: `${w.message}; the simulation sees one backup per group and projects none after it, so it understates the growth. Fix: ${w.hint}`,
      });
    }
  }
  return { backupRecords, withManifest, manifestsRead };
}

/** Restoring the newest backup: retrieval fees of its archives' classes. */
function restoreLatestCost(
  backupRecords: BackupRecord[],
  withManifest: BackupRecord[],
  prices: Prices,
  classOf: (c: string) => StorageClass,
): CostReport['current']['restoreLatest'] {
  const newest = withManifest.sort((a, b) => a.time - b.time).at(-1);
  if (!newest) return undefined;
  const P = prices.classes;
  const byKey = new Map(backupRecords.flatMap((b) => b.archives.map((a) => [a.key, a] as const)));
  const keys = newest.refs.length ? newest.refs : newest.archives.map((a) => a.key);
  const r = { backup: newest.id, archives: 0, bytes: 0, cost: 0, byClass: {} as Record<string, number> };
  for (const k of keys) {
    const a = byKey.get(k);
    if (!a) continue;
    const p = P[classOf(a.storageClass)];
    const c =
      (a.size / GB) * p.retrievalPerGB + (Math.max(1, Math.ceil(a.size / (4 << 20))) * p.get) / 1000 + (p.retrievalPer1000 ?? 0) / 1000;
    r.archives++;
    r.bytes += a.size;
    r.cost += c;
    r.byClass[a.storageClass] = (r.byClass[a.storageClass] ?? 0) + a.size;
  }
  return r;
}

/** The objects to simulate: those the projected backups will write, and those there today. */
function simulationObjects(
  ctx: CostContext,
  inv: InventoryBuilder,
  backupRecords: BackupRecord[],
  policy: KeepPolicy,
  rules: LifecycleRule[],
  classOf: (c: string) => StorageClass,
): { objects: SimObject[]; projection: ReturnType<typeof projectBackups> } {
  const { now, root } = ctx;
  const currentRulesOf = (key: string, size: number) => rules.flatMap((r, i) => (ruleMatches(r, key, size) ? [i] : []));
  const uploadClassOf = (
    o: { key: string; size: number; lastModified: number; storageClass: string },
    ruleIdx?: number[],
  ): StorageClass => {
    const c = classOf(o.storageClass);
    if (c === 'STANDARD') return c;
    const age = (now - o.lastModified) / DAY_MS;
    const idx = ruleIdx ?? currentRulesOf(o.key, o.size);
    const viaLifecycle = idx.some((i) => rules[i]!.transitions.some((t) => t.storageClass === c && t.days <= age + 1));
    return viaLifecycle ? 'STANDARD' : c;
  };

  const projection = projectBackups({
    backups: backupRecords,
    policy,
    now,
    months: ctx.months,
    bucketKey: (k) => root + k,
    currentRules: currentRulesOf,
    uploadClassOf: (o) => uploadClassOf(o),
  });
  ctx.notes.push(...projection.notes);
  const objects: SimObject[] = [...projection.objects];
  for (const c of inv.cohorts.values()) {
    objects.push({
      category: c.category,
      uploadClass: uploadClassOf({ key: '', size: c.small ? 0 : 1 << 30, lastModified: c.day, storageClass: c.storageClass }, c.rules),
      birth: c.day,
      count: c.count,
      bytes: c.bytes,
      small: c.small,
      currentRules: c.rules,
      inArchives: c.inArchives,
      deleteAt: Infinity,
      existing: true,
    });
  }
  return { objects, projection };
}

/** The scenarios: no rules, the bucket's rules, each candidate; the recommendation among them. */
function runScenarios(ctx: CostContext, objects: SimObject[], rules: LifecycleRule[]) {
  const { s3, prices, now, months } = ctx;
  ctx.opts.onProgress?.({ phase: 'simulate', objects: objects.length, bytes: 0 });
  const archivesPrefix = `${ctx.root}archives/`;
  const none: Scenario = { name: 'none', rules: [], match: () => [] };
  const current: Scenario = { name: 'current', rules, match: (o) => o.currentRules.map((i) => rules[i]!) };
  const resNone = simulate(objects, none, prices, now, months);
  const resCurrent = s3 ? simulate(objects, current, prices, now, months) : { ...resNone, name: 'current' };
  const candidates = s3
    ? CANDIDATES.map((c) => {
        const r = archiveRules(archivesPrefix, c.transitions, 's3backup-archives');
        const res = simulate(objects, { name: c.name, rules: r, match: (o) => (o.inArchives ? r : []) }, prices, now, months);
        return { name: c.name, rules: r, res, cold: c.transitions.some((t) => isColdClass(t.storageClass)) };
      })
    : [];
  // Worth recommending only if it saves at least 1% and a cent over the horizon.
  const worth = (total: number) => resNone.total - total > Math.max(0.01, resNone.total * 0.01);
  const bestOf = (xs: typeof candidates) => xs.filter((c) => worth(c.res.total)).sort((a, b) => a.res.total - b.res.total)[0];
  const bestInstant = bestOf(candidates.filter((c) => !c.cold));
  const bestCold = bestOf(candidates.filter((c) => c.cold));
  const resRecommended: ScenarioResult = bestInstant ? { ...bestInstant.res, name: 'recommended' } : { ...resNone, name: 'recommended' };
  const recommendation = bestInstant
    ? `archives/ (${archivesPrefix}): ${bestInstant.name}; no expiration (retention deletes what no backup needs)`
    : s3
      ? 'no lifecycle rule: with this cadence and retention no transition pays for itself'
      : 'none (local store)';
  const coldAlternative =
    bestCold && bestCold.res.total < resRecommended.total
      ? { name: bestCold.name, total: bestCold.res.total, rules: bestCold.rules }
      : undefined;
  return { resNone, resCurrent, resRecommended, candidates, recommendation, coldAlternative };
}

/** Contradictions between retention and lifecycle, as warnings. */
function contradictionWarnings(
  ctx: CostContext,
  rules: LifecycleRule[],
  policy: KeepPolicy,
  policyText: string,
  projection: ReturnType<typeof projectBackups>,
  resNone: ScenarioResult,
  resCurrent: ScenarioResult,
): void {
  const { warnings, months, root } = ctx;
  const archivesPrefix = `${root}archives/`;
  const life = projection.archiveLifetimeDays;
  const archiveRulesNow = rules.filter(
    (r) => r.enabled && !r.tagFilter && (archivesPrefix.startsWith(r.prefix) || r.prefix.startsWith(archivesPrefix)),
  );
  const firstTransition = archiveRulesNow.flatMap((r) => r.transitions).sort((a, b) => a.days - b.days)[0];
  const transitionsDone = Object.values(resCurrent.transitionCount).reduce((s, x) => s + x, 0);
  // No archive lives to the first transition's age within the horizon (the newest ones at its
  // end are younger still).
  if (firstTransition && life.deleted > 0 && life.maxAge !== undefined && life.maxAge < firstTransition.days) {
    warnings.push({
      code: 'retention-before-transition',
      message:
        `retention (${policyText}) deletes every archive within ${fmtDays(life.maxAge)} days, before the first lifecycle transition ` +
        `(${firstTransition.storageClass} after ${firstTransition.days} days): the lifecycle rules save $0${transitionsDone ? ' and only add transition fees' : ''}`,
    });
  }
  if (resCurrent.earlyDeletion > 0.000_5) {
    const byCls = Object.entries(resCurrent.earlyDeletionByClass)
      .sort((a, b) => b[1] - a[1])
      .map(([c, x]) => `${c} (${usd(x)})`);
    warnings.push({
      code: 'early-deletion',
      message:
        `with the bucket's lifecycle rules, objects leave ${byCls.join(', ')} before the class's minimum storage duration ` +
        `(retention deletes them, or a later transition moves them): ${usd(resCurrent.earlyDeletion)} of early-deletion charges over ${months} months`,
    });
  }
  if (rules.length && resCurrent.total > resNone.total + 0.005) {
    warnings.push({
      code: 'lifecycle-costs-more',
      message: `the bucket's lifecycle rules cost ${usd(resCurrent.total - resNone.total)} more over ${months} months than no rules at all (transition fees and minimum-duration charges exceed the storage saved)`,
    });
  }
  const gapDays = projection.cadence
    .map((c) => c.medianGapDays)
    .filter((x): x is number => x !== undefined)
    .sort((a, b) => a - b)[0];
  const horizon = policyHorizonDays(policy, gapDays);
  for (const r of archiveRulesNow) {
    if (r.expirationDays === undefined) continue;
    const exp = resCurrent.expiredWhileNeeded;
    if (horizon > r.expirationDays || exp.objects > 0) {
      warnings.push({
        code: 'expiration-before-retention',
        message:
          `lifecycle rule ${r.id ?? '(no id)'} expires archives after ${r.expirationDays} days, but retention (${policyText}) keeps backups ` +
          `${Number.isFinite(horizon) ? `up to ${fmtDays(horizon)} days` : 'indefinitely (keep-tag)'}: those backups lose their data` +
          (exp.objects ? ` (${exp.archives} archive(s) in the next ${months} months)` : '') +
          '; raise or remove the expiration, or shorten the retention',
      });
    }
  }
  for (const r of rules) {
    if (!r.enabled || r.tagFilter) continue;
    const covers = (k: string) => k.startsWith(r.prefix) || (r.prefix.startsWith(k) && k.endsWith('/'));
    const cold = r.transitions.filter((t) => isColdClass(t.storageClass));
    if (cold.length && (covers(`${root}snapshots/`) || covers(`${root}entries/`) || covers(`${root}config.json`))) {
      warnings.push({
        code: 'manifests-in-cold-storage',
        message: `lifecycle rule ${r.id ?? '(no id)'} (prefix "${r.prefix}") moves manifests, entry segments or config.json to ${cold[0]!.storageClass}: list, restore and backup must read them; limit the rule to ${root}archives/`,
      });
    }
  }
}

/** Read manifest heads (host, sources, tags, kind, referenced archives); false if not allowed. */
async function readHeads(
  store: Store,
  backups: BackupRecord[],
  root: string,
  notes: string[],
  onProgress?: (p: InventoryProgress) => void,
  keys?: KeySource,
): Promise<boolean> {
  let repo: Repository;
  try {
    repo = await Repository.open(store, keys);
  } catch (e) {
    if (e instanceof StoreAccessError || e instanceof RepositoryMissingError || e instanceof S3BackupError) {
      notes.push(`manifests not read (${e.message.split('\n')[0]})`);
      return false;
    }
    throw e;
  }
  let next = 0;
  let done = 0;
  let damaged = 0;
  let denied: string | undefined;
  const worker = async () => {
    while (next < backups.length && !denied) {
      const b = backups[next++]!;
      try {
        const h = await readManifestHead(repo, b.id);
        b.host = h.header.host;
        b.sources = h.header.sources.map((s) => s.path);
        b.tags = h.header.tags;
        b.kind = h.header.kind;
        b.chainStart = Date.parse(h.header.chainStart ?? h.header.time);
        b.refs = h.archives.map((a) => root + a.key);
      } catch (e) {
        if (e instanceof StoreAccessError) denied = e.message;
        else if (e instanceof IntegrityError || e instanceof S3BackupError) damaged++;
        else throw e;
      }
      done++;
      if (onProgress && done % 50 === 0) onProgress({ phase: 'manifests', objects: done, bytes: 0, total: backups.length });
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, backups.length) }, worker));
  if (denied) {
    for (const b of backups) Object.assign(b, { host: '?', sources: [], tags: [], kind: undefined, chainStart: undefined, refs: [] });
    notes.push(`manifests not read (${denied.split('\n')[0]})`);
    return false;
  }
  if (damaged) notes.push(`${damaged} manifest(s) could not be read; those backups count as self-contained`);
  return true;
}

function fmtDays(d: number): string {
  return d >= 10 ? String(Math.round(d)) : d.toFixed(1);
}

export function usd(x: number): string {
  const a = Math.abs(x);
  const s = a >= 100 ? a.toFixed(0) : a >= 1 ? a.toFixed(2) : a >= 0.01 ? a.toFixed(2) : a === 0 ? '0.00' : a.toFixed(4);
  return `${x < 0 ? '-' : ''}$${s}`;
}

// ---------------------------------------------------------------------------------------------
// CSV history: one row per run, the time series the forecast reads

const CSV_CLASSES = STORAGE_CLASSES;
export const CSV_COLUMNS = [
  'date',
  'repository',
  'scope',
  'region',
  'price_table',
  'objects',
  'total_bytes',
  'monthly_cost_usd',
  ...CSV_CLASSES.flatMap((c) => [`${c.toLowerCase()}_bytes`, `${c.toLowerCase()}_cost_usd`]),
  'lifecycle_savings_usd_month',
  'recommended_savings_usd_month',
];

function csvCell(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function csvRow(r: CostReport): string {
  const byClass = new Map(r.current.classes.map((c) => [c.storageClass, c]));
  const cells = [
    r.generatedAt,
    r.repository,
    r.scope,
    r.prices.region,
    r.prices.version,
    String(r.totalObjects),
    String(r.totalBytes),
    r.current.monthlyCost.toFixed(6),
    ...CSV_CLASSES.flatMap((c) => [String(byClass.get(c)?.bytes ?? 0), (byClass.get(c)?.monthlyCost ?? 0).toFixed(6)]),
    r.savings.currentVsNone.monthly.toFixed(6),
    r.savings.recommendedVsNone.monthly.toFixed(6),
  ];
  return cells.map(csvCell).join(',');
}

/** Append one row for this report; writes the header first into a new or empty file. */
export function appendCsv(file: string, r: CostReport): void {
  const header = CSV_COLUMNS.join(',');
  let existing = '';
  try {
    existing = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const first = existing.split('\n', 1)[0]!.replace(/\r$/, '');
  if (existing.trim() !== '' && first !== header) {
    throw new UsageError(`${file} is not an s3backup cost report (its header differs); nothing was written to it`, {
      hint: 'give --save-csv a new file name, or move the old file away',
    });
  }
  try {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    if (existing.trim() === '') fs.writeFileSync(file, `${header}\n${csvRow(r)}\n`);
    else fs.appendFileSync(file, `${existing.endsWith('\n') ? '' : '\n'}${csvRow(r)}\n`);
  } catch (e) {
    throw new UsageError(`cannot write the cost report ${file}: ${(e as Error).message}`, {
      hint: 'check the directory exists and is writable',
    });
  }
}

/** The history rows of a cost report CSV (for the forecast); [] if the file does not exist. */
export function readCsvHistory(file: string, repository?: string): HistoryPoint[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const lines = text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '');
  if (lines.length === 0) return [];
  const head = lines[0]!.split(',');
  const col = (n: string) => head.indexOf(n);
  const iDate = col('date');
  const iBytes = col('total_bytes');
  const iCost = col('monthly_cost_usd');
  const iRepo = col('repository');
  if (iDate < 0 || iBytes < 0 || iCost < 0) {
    throw new UsageError(`${file} is not an s3backup cost report (no date, total_bytes and monthly_cost_usd columns)`);
  }
  const out: HistoryPoint[] = [];
  for (const l of lines.slice(1)) {
    const cells = splitCsv(l);
    if (repository && iRepo >= 0 && cells[iRepo] !== repository) continue;
    const time = Date.parse(cells[iDate] ?? '');
    const bytes = Number(cells[iBytes]);
    const monthlyCost = Number(cells[iCost]);
    if (Number.isFinite(time) && Number.isFinite(bytes) && Number.isFinite(monthlyCost)) out.push({ time, bytes, monthlyCost });
  }
  return out;
}

function splitCsv(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (q) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') q = false;
      else cur += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}
