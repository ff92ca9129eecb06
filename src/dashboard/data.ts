import { displayName, jsonName } from '../archive/names.ts';
import { IntegrityError, NotFoundError, StoreAccessError, UsageError } from '../errors.ts';
import type { AnomalyFinding, RetentionHold, RunRecord } from '../monitor/types.ts';
import type { HistoryCrypto } from '../repo/repository.ts';
import type { ArchiveRef, LocalManifest, ManifestHeader } from '../repo/manifest.ts';
import { Repository } from '../repo/repository.ts';
import { ReadOnlyStore } from '../store/readonly.ts';
import type { ObjectInfo, Store } from '../store/store.ts';
import { mapLimit } from '../concurrency.ts';
import type { KeySource } from '../crypto/keys.ts';
import { groupId } from '../repo/groups.ts';
import { fleetFreshness, type GroupEntry, groupEntries } from './groups.ts';

/**
 * What the dashboard shows, read from a repository and never written to it. Backups come from
 * the manifests (headers are immutable, so each is read once and kept; the list of ids is
 * re-read at most every listTtlMs). Run history with anomalies, and cost, come from their own
 * modules through the small source interfaces below; a panel whose source is absent says
 * "not configured" rather than guessing.
 */

/** A panel's answer: its data, or why there is none. */
export type Panel<T> = { status: 'ok'; data: T } | { status: 'not-configured'; reason: string } | { status: 'error'; error: string };

/** Run history and what the anomaly detector says about each run (by run id = backup id). */
export interface MonitorData {
  runs: RunRecord[];
  findings: Record<string, AnomalyFinding[]>;
  /** Open anomaly holds: groups whose retention is suspended until acknowledged. */
  holds: RetentionHold[];
}
export interface MonitorSource {
  /** crypto: the repository's, when it is encrypted (its run records are sealed). */
  load(store: Store, crypto?: HistoryCrypto): Promise<MonitorData>;
}
export interface CostSource {
  /** A JSON-able cost report (per-class bytes and monthly cost, lifecycle savings, forecast). */
  load(store: Store): Promise<unknown>;
}

export interface BackupRow {
  id: string;
  time: string;
  endTime: string;
  kind: 'full' | 'incremental';
  parent?: string;
  chain?: number;
  host: string;
  sources: string[];
  tags: string[];
  files: number;
  bytesIn: number;
  bytesTotal: number;
  bytesStored: number;
  durationMs: number;
  compressionRatio: number;
  newFiles: number;
  changedFiles: number;
  deletedFiles: number;
  warnings: number;
}

/** A backup whose manifest cannot be read: listed with its error instead of hiding the rest. */
export interface BrokenRow {
  id: string;
  error: string;
}

export interface Freshness {
  /** ok: newest backup younger than maxAgeMs; stale: older; unknown: no backups or no schedule to judge by. */
  status: 'ok' | 'stale' | 'unknown';
  newest?: { id: string; time: string; endTime: string };
  ageMs?: number;
  maxAgeMs?: number;
  /** Where maxAgeMs came from: the --max-age setting, the backup schedule, or the usual gap between backups. */
  basis?: 'setting' | 'schedule' | 'inferred';
}

export interface DashboardDataOptions {
  /** Opens an encrypted repository (read-only use of its key). */
  keys?: KeySource | undefined;
  /** How long a listing of backup ids is reused (default 15 s). */
  listTtlMs?: number;
  /** Newest backup older than this is stale; without it, the schedule interval or usual gap decides. */
  maxAgeMs?: number;
  maxAgeBasis?: 'setting' | 'schedule';
  monitor?: MonitorSource | undefined;
  cost?: CostSource | undefined;
  /** Why monitor/cost are absent, shown in their panels. */
  monitorReason?: string;
  costReason?: string;
  /** Extra flags the copied restore command needs (e.g. --endpoint), never secrets. */
  commandFlags?: string[];
  now?: () => number;
}

export const MAX_PAGE = 500;
const TREE_LIMIT = 2000;
const MANIFEST_CACHE = 4;

/** A value computed at most once per ttl; concurrent callers share one computation. */
class Cached<T> {
  private value: { at: number; p: Promise<T> } | undefined;
  private readonly ttlMs: number;
  private readonly compute: () => Promise<T>;
  private readonly now: () => number;
  constructor(ttlMs: number, compute: () => Promise<T>, now: () => number) {
    this.ttlMs = ttlMs;
    this.compute = compute;
    this.now = now;
  }
  get(): Promise<T> {
    const t = this.now();
    if (!this.value || t - this.value.at > this.ttlMs) {
      const p = this.compute();
      this.value = { at: t, p };
      // A failure is not cached: the next call tries again.
      p.catch(() => {
        if (this.value?.p === p) this.value = undefined;
      });
    }
    return this.value.p;
  }
}

function rowOf(h: ManifestHeader): BackupRow {
  const s = h.stats;
  return {
    id: h.id,
    time: h.time,
    endTime: h.endTime,
    kind: h.kind,
    ...(h.parent ? { parent: h.parent } : {}),
    ...(h.chain !== undefined ? { chain: h.chain } : {}),
    host: h.host,
    sources: h.sources.map((x) => x.path),
    tags: h.tags,
    files: s.files,
    bytesIn: s.bytesIn,
    bytesTotal: s.bytesTotal ?? s.bytesIn,
    bytesStored: s.bytesStored,
    durationMs: s.durationMs,
    compressionRatio: s.compressionRatio,
    newFiles: s.newFiles ?? s.files,
    changedFiles: s.changedFiles ?? 0,
    deletedFiles: s.deletedFiles ?? 0,
    warnings: s.warnings,
  };
}

/** Quote for a POSIX shell: safe for any path, including quotes and spaces. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** What picomatch (restore --include) reads as more than the character itself. */
const GLOB_SPECIAL = /[\\*?[\]{}()!+@|"$^]/g;

/**
 * A path as a restore --include glob that matches that path and nothing else (with picomatch,
 * as restore matches). A path without special characters is its own glob. Otherwise each one is
 * escaped: `\x`, but a backslash as `[\\]` (picomatch collapses runs of backslashes) and `"`, `$`
 * and `^` too (picomatch reads `"` as a quote, and garbles `$$` and `^^`); and the glob starts
 * with "./", which picomatch drops: without it, picomatch would also match a path that is
 * spelled exactly like the escaped glob (it tries the glob as a literal path first), a name a
 * backup can hold. No path in a backup starts with "./".
 */
export function literalGlob(p: string): string {
  const escaped = p.replace(GLOB_SPECIAL, (c) => (c === '\\' ? '[\\\\]' : `\\${c}`));
  const glob = escaped === p ? p : `./${escaped}`;
  // A byte of a name that is not UTF-8 as "\xHH", which restore reads back as that byte
  // (nameFromArg; no command line can carry the byte itself). A backslash of the name is
  // "[\\]" here, so every "\x" in the glob is such a byte.
  return displayName(glob);
}

/**
 * One entry of the file tree. `name`, `path` and `target` are for display (a byte that is not
 * UTF-8 as \xHH, see displayName); where they are not UTF-8, `pathBase64` (and
 * `targetBase64`) hold the exact bytes, and `pathBase64` is what the tree API takes back
 * (`?pathBase64=`) to open a directory.
 */
export interface TreeChild {
  name: string;
  path: string;
  pathBase64?: string;
  targetBase64?: string;
  type: string;
  size: number;
  mtime: string | null;
  target?: string;
  error?: string;
  changed?: boolean;
  /** Entries below a directory (all depths). */
  below?: number;
}

export class DashboardData {
  readonly store: Store;
  private readonly opts: DashboardDataOptions;
  private readonly now: () => number;
  private repo: Promise<Repository> | undefined;
  private readonly headers = new Map<string, Promise<ManifestHeader>>();
  private readonly ids: Cached<string[]>;
  private readonly monitorCache: Cached<MonitorData> | undefined;
  private readonly costCache: Cached<unknown> | undefined;
  private readonly manifests = new Map<string, Promise<LocalManifest>>();
  private readonly evicted = new Set<Promise<LocalManifest>>();

  constructor(store: Store, opts: DashboardDataOptions = {}) {
    this.store = store instanceof ReadOnlyStore ? store : new ReadOnlyStore(store);
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    const ttl = opts.listTtlMs ?? 15_000;
    this.ids = new Cached(ttl, async () => (await this.repository()).snapshotIds(), this.now);
    if (opts.monitor) {
      const m = opts.monitor;
      this.monitorCache = new Cached(ttl, async () => m.load(this.store, (await this.repository()).historyCrypto()), this.now);
    }
    if (opts.cost) {
      const c = opts.cost;
      // Cost needs a listing of every object: reuse it for a few minutes.
      this.costCache = new Cached(Math.max(ttl, 300_000), () => c.load(this.store), this.now);
    }
  }

  get location(): string {
    return this.store.location;
  }

  /** Open the repository (a clear error if there is none), then start reading the backup list in the background. */
  async open(): Promise<void> {
    await this.repository();
    this.backups().catch(() => {}); // warms the cache; the first page load reports any error
  }

  private repository(): Promise<Repository> {
    if (!this.repo) {
      this.repo = Repository.open(this.store, this.opts.keys);
      this.repo.catch(() => (this.repo = undefined));
    }
    return this.repo;
  }

  private header(id: string): Promise<ManifestHeader> {
    let p = this.headers.get(id);
    if (!p) {
      p = this.repository().then((r) => r.header(id));
      this.headers.set(id, p);
      p.catch(() => this.headers.delete(id));
    }
    return p;
  }

  /** Every backup, oldest first (headers read once each, 16 at a time: over S3 each is a round trip). */
  async backups(): Promise<(BackupRow | BrokenRow)[]> {
    const ids = await this.ids.get();
    const live = new Set(ids);
    for (const id of this.headers.keys()) if (!live.has(id)) this.headers.delete(id);
    const out = await mapLimit(ids, 16, async (id): Promise<BackupRow | BrokenRow | undefined> => {
      try {
        return rowOf(await this.header(id));
      } catch (e) {
        // Forgotten since the listing: gone, not broken. A damaged manifest is listed with its
        // error; anything else (the store unreachable) fails the request.
        if (e instanceof NotFoundError) return undefined;
        if (!(e instanceof IntegrityError)) throw e;
        return { id, error: e.message };
      }
    });
    return out.filter((r) => r !== undefined);
  }

  /** Readable backups, oldest first; with a group id, only that group's. */
  private async rows(group?: string): Promise<BackupRow[]> {
    const rows = (await this.backups()).filter((r): r is BackupRow => !('error' in r));
    return group === undefined ? rows : rows.filter((r) => groupId(r) === group);
  }

  /** One page of backups, newest first; with a group id, only that group's (an unreadable one has no group). */
  async page(
    offset: number,
    limit: number,
    group?: string,
  ): Promise<{ total: number; offset: number; limit: number; items: (BackupRow | BrokenRow)[] }> {
    const all = group === undefined ? await this.backups() : await this.rows(group);
    const lim = Math.max(1, Math.min(MAX_PAGE, Math.floor(limit) || 50));
    const off = Math.max(0, Math.floor(offset) || 0);
    const newestFirst = all.slice().reverse();
    return { total: all.length, offset: off, limit: lim, items: newestFirst.slice(off, off + lim) };
  }

  /** Column arrays for the timeline chart (oldest first), compact enough for thousands of backups; one group's with its id. */
  async timeline(group?: string): Promise<{
    ids: string[];
    t: number[];
    bytesIn: number[];
    bytesStored: number[];
    durationMs: number[];
    sourceKeys: string[];
    kinds: ('full' | 'incremental')[];
  }> {
    const rows = await this.rows(group);
    return {
      ids: rows.map((r) => r.id),
      t: rows.map((r) => Date.parse(r.time) / 1000),
      bytesIn: rows.map((r) => r.bytesIn),
      bytesStored: rows.map((r) => r.bytesStored),
      durationMs: rows.map((r) => r.durationMs),
      sourceKeys: rows.map((r) => `${r.host}\u0000${[...r.sources].sort().join('\u0000')}`),
      kinds: rows.map((r) => r.kind),
    };
  }

  /** How old the newest of these backups (oldest first; one group's) is, against the setting, schedule or their own usual gap. */
  freshness(rows: (BackupRow | BrokenRow)[]): Freshness {
    const ok = rows.filter((r): r is BackupRow => !('error' in r));
    const newest = ok.at(-1);
    if (!newest) return { status: 'unknown' };
    const ageMs = Math.max(0, this.now() - Date.parse(newest.endTime || newest.time));
    let maxAgeMs = this.opts.maxAgeMs;
    let basis: Freshness['basis'] = this.opts.maxAgeMs !== undefined ? (this.opts.maxAgeBasis ?? 'setting') : undefined;
    if (maxAgeMs === undefined && ok.length >= 3) {
      // No schedule known: twice the usual (median) gap between the last backups.
      const times = ok.slice(-21).map((r) => Date.parse(r.time));
      const gaps = times
        .slice(1)
        .map((t, i) => t - times[i]!)
        .sort((a, b) => a - b);
      const median = gaps[Math.floor(gaps.length / 2)]!;
      maxAgeMs = Math.max(2 * median, 3_600_000);
      basis = 'inferred';
    }
    const n = { id: newest.id, time: newest.time, endTime: newest.endTime };
    if (maxAgeMs === undefined) return { status: 'unknown', newest: n, ageMs };
    return { status: ageMs > maxAgeMs ? 'stale' : 'ok', newest: n, ageMs, maxAgeMs, ...(basis ? { basis } : {}) };
  }

  /** The fleet overview: one entry per group, each judged on its own backups and runs (groups.ts). */
  async groups(): Promise<GroupEntry[]> {
    const [rows, mon] = await Promise.all([this.rows(), this.monitor()]);
    return groupEntries(rows, mon, (r) => this.freshness(r));
  }

  async summary(): Promise<{
    repository: string;
    backups: number;
    unreadable: number;
    storedBytes: number;
    /** The worst group's freshness (each group judged on its own), with that group. */
    freshness: ReturnType<typeof fleetFreshness>;
    groups: { total: number; stale: number };
    lastSuccess?: { id: string; time: string };
    lastFailure: Panel<{ id: string; time: string; error: string; operation?: string } | null>;
    hosts: string[];
  }> {
    const rows = await this.backups();
    const ok = rows.filter((r): r is BackupRow => !('error' in r));
    const last = ok.at(-1);
    const groups = await this.groups();
    let lastFailure: Panel<{ id: string; time: string; error: string; operation?: string } | null>;
    const mon = await this.monitor();
    if (mon.status === 'ok' && mon.data.runs.length === 0) {
      lastFailure = {
        status: 'not-configured',
        reason: 'no run history in this repository yet (each backup records one when anomaly detection is on)',
      };
    } else if (mon.status === 'ok') {
      const f = mon.data.runs.filter((r) => !r.ok).at(-1);
      lastFailure = {
        status: 'ok',
        data: f ? { id: f.id, time: f.time, error: f.error ?? 'failed', ...(f.operation ? { operation: f.operation } : {}) } : null,
      };
    } else if (mon.status === 'error') lastFailure = mon;
    else lastFailure = { status: 'not-configured', reason: `failures are recorded in the run history: ${mon.reason}` };
    return {
      repository: this.location,
      backups: ok.length,
      unreadable: rows.length - ok.length,
      storedBytes: ok.reduce((a, r) => a + r.bytesStored, 0),
      freshness: fleetFreshness(groups),
      groups: { total: groups.length, stale: groups.filter((g) => g.freshness.status === 'stale').length },
      ...(last ? { lastSuccess: { id: last.id, time: last.endTime || last.time } } : {}),
      lastFailure,
      hosts: [...new Set(ok.map((r) => r.host))].sort(),
    };
  }

  async monitor(): Promise<Panel<MonitorData>> {
    if (!this.monitorCache) {
      return {
        status: 'not-configured',
        reason: this.opts.monitorReason ?? 'run history and anomaly detection are not available in this build',
      };
    }
    try {
      return { status: 'ok', data: await this.monitorCache.get() };
    } catch (e) {
      return { status: 'error', error: (e as Error).message };
    }
  }

  async cost(): Promise<Panel<unknown>> {
    if (!this.costCache) {
      return { status: 'not-configured', reason: this.opts.costReason ?? 'cost analysis is not available in this build' };
    }
    try {
      return { status: 'ok', data: await this.costCache.get() };
    } catch (e) {
      return { status: 'error', error: (e as Error).message };
    }
  }

  private async resolve(ref: string): Promise<string> {
    const ids = await this.ids.get();
    if (ids.includes(ref)) return ref;
    // Maybe newer than our cached listing.
    return (await this.repository()).resolve(ref);
  }

  private async manifest(id: string): Promise<LocalManifest> {
    let p = this.manifests.get(id);
    if (p) {
      this.manifests.delete(id);
      this.manifests.set(id, p); // most recently used last
      return p;
    }
    p = this.repository().then((r) => r.loadManifest(id));
    this.manifests.set(id, p);
    p.catch(() => this.manifests.delete(id));
    while (this.manifests.size > MANIFEST_CACHE) {
      const [oldId, old] = this.manifests.entries().next().value!;
      this.manifests.delete(oldId);
      // Disposing while a tree request still reads it would break that read: wait a little.
      this.evicted.add(old);
      void old.then(
        (m) =>
          setTimeout(() => {
            this.evicted.delete(old);
            void m.dispose();
          }, 30_000).unref(),
        () => this.evicted.delete(old),
      );
    }
    return p;
  }

  /**
   * An archive's size and storage class: its HEAD (which also tells a Glacier restore's state),
   * or, for credentials that may list the repository but not read its data (the Terraform
   * cost-analyzer role, docs/deploy.md), the listing of its key.
   */
  private async archiveInfo(key: string): Promise<ObjectInfo | undefined> {
    try {
      return await this.store.head(key);
    } catch (e) {
      if (!(e instanceof StoreAccessError)) throw e;
      for await (const o of this.store.list(key)) if (o.key === key) return o;
      return undefined;
    }
  }

  /** One backup: its stats, warnings, anomalies, the archives it needs (with storage class) and its parent chain. */
  async detail(ref: string) {
    const id = await this.resolve(ref);
    const m = await this.manifest(id);
    const h = m.header;
    const parts = new Map<string, number>(); // backup id → its archives in this list
    for (const a of m.archives) parts.set(a.id, (parts.get(a.id) ?? 0) + 1);
    const archives = await Promise.all(
      m.archives.map(async (a: ArchiveRef) => {
        const info = await this.archiveInfo(a.key);
        return {
          id: a.id,
          // Which of its backup's archives (1 unless that backup was split, see --archive-size),
          // and how many that backup has in this list.
          part: a.part ?? 1,
          parts: parts.get(a.id)!,
          key: a.key,
          codec: a.codec,
          size: a.size,
          uncompressedSize: a.uncompressedSize,
          present: info !== undefined,
          storageClass: info ? (info.storageClass ?? 'local') : null,
          ...(info?.restore ? { restore: info.restore } : {}),
        };
      }),
    );
    const parents: { id: string; time: string; kind: string }[] = [];
    const known = new Set(await this.ids.get());
    let p = h.parent;
    for (let i = 0; p && i < 200; i++) {
      if (!known.has(p)) {
        parents.push({ id: p, time: '', kind: 'forgotten' });
        break;
      }
      const ph = await this.header(p);
      parents.push({ id: p, time: ph.time, kind: ph.kind });
      p = ph.parent;
    }
    const mon = await this.monitor();
    const anomalies: Panel<AnomalyFinding[]> = mon.status === 'ok' ? { status: 'ok', data: mon.data.findings[id] ?? [] } : mon;
    return {
      ...rowOf(h),
      sourceNames: h.sources,
      stats: h.stats,
      options: { codec: h.options.codec, level: h.options.level ?? null, excludes: h.options.excludes },
      toolVersion: h.toolVersion,
      warningList: h.warnings,
      archives,
      parents,
      anomalies,
    };
  }

  /** The command line that restores one path of a backup (copied from the file tree). */
  restoreCommand(id: string, p: string): string {
    const base = ['s3backup', 'restore', id, '--repo', this.location, ...(this.opts.commandFlags ?? [])];
    return [...base, '--target', './restored', '--include', literalGlob(p)].map(shellQuote).join(' ');
  }

  /** The entries directly inside dir ("" = the top: one per source), directories first. dir as a name (names.ts). */
  async tree(ref: string, dir: string, offset = 0, limit = TREE_LIMIT) {
    const id = await this.resolve(ref);
    const m = await this.manifest(id);
    const d = dir.replace(/^\/+|\/+$/g, '');
    const prefix = d === '' ? '' : `${d}/`;
    const children = new Map<string, TreeChild>();
    let found = d === '';
    for await (const e of m.entries({ under: [d] })) {
      if (e.path === d) found = true;
      if (!e.path.startsWith(prefix) || e.path === d) continue;
      const rest = e.path.slice(prefix.length);
      const slash = rest.indexOf('/');
      if (slash >= 0) {
        const c = children.get(rest.slice(0, slash));
        if (c) c.below = (c.below ?? 0) + 1;
        continue;
      }
      children.set(rest, {
        name: displayName(rest),
        ...(jsonName('path', e.path) as { path: string; pathBase64?: string }),
        type: e.type,
        size: e.type === 'file' || e.type === 'hardlink' ? e.size : 0,
        mtime: Number.isFinite(e.mtime) ? new Date(e.mtime).toISOString() : null,
        ...(e.target !== undefined ? jsonName('target', e.target) : {}),
        ...(e.error ? { error: displayName(e.error) } : {}),
        ...(e.changed ? { changed: true } : {}),
        ...(e.type === 'dir' ? { below: 0 } : {}),
      });
    }
    if (!found) throw new UsageError(`no ${JSON.stringify(d)} in backup ${id}`);
    // Sorted by the names as held (exact), not as shown.
    const all = [...children.entries()].sort(
      ([an, a], [bn, b]) => Number(b.type === 'dir') - Number(a.type === 'dir') || (an < bn ? -1 : an > bn ? 1 : 0),
    );
    const lim = Math.max(1, Math.min(TREE_LIMIT, Math.floor(limit) || TREE_LIMIT));
    const off = Math.max(0, Math.floor(offset) || 0);
    return {
      id,
      ...jsonName('path', d),
      total: all.length,
      offset: off,
      entries: all.slice(off, off + lim).map(([n, c]) => ({ ...c, restore: this.restoreCommand(id, prefix + n) })),
      restore: d === '' ? null : this.restoreCommand(id, d),
    };
  }

  async close(): Promise<void> {
    const ms = [...this.manifests.values(), ...this.evicted];
    this.manifests.clear();
    this.evicted.clear();
    await Promise.all(
      ms.map((p) =>
        p.then(
          (m) => m.dispose(),
          () => {},
        ),
      ),
    );
  }
}
