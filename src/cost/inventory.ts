import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { S3BackupError, UsageError } from '../errors.ts';
import { lines } from '../repo/manifest.ts';
import { archiveIdOf, ENTRIES, isSnapshotId } from '../repo/repository.ts';
import { getBuffer, type LifecycleRule, type Store } from '../store/store.ts';
import { DAY_MS } from './pricing.ts';

/**
 * Inventory: one streamed pass over the objects (a listing, or an S3 Inventory report) that
 * keeps only aggregates: per storage class and per kind (manifests, archives, other), one small
 * record per backup (its manifest and archive), and every other object folded into a cohort
 * (same kind, class, upload day, size band and matching lifecycle rules). Memory grows with the
 * number of backups and upload days, not with the number of objects.
 */

export type Category = 'manifests' | 'archives' | 'other' | 'outside';

/** One object as the inventory sees it. */
export interface InventoryObject {
  /** Key in the bucket (for lifecycle rules); for a local store the repository key. */
  bucketKey: string;
  /** Key inside the repository, or undefined for objects outside it (--bucket). */
  repoKey: string | undefined;
  size: number;
  lastModified: number;
  storageClass: string;
}

export interface ClassTotals {
  objects: number;
  bytes: number;
  /** Objects under 128 KiB (billed as 128 KiB in IA / One Zone-IA / Glacier IR) and their bytes. */
  smallObjects: number;
  smallBytes: number;
}

export interface StoredObject {
  bucketKey: string;
  size: number;
  lastModified: number;
  storageClass: string;
}

export interface BackupObjects {
  id: string;
  /** Time from the id (the backup's start). */
  time: number;
  manifest?: StoredObject;
  archives: StoredObject[];
}

/** Objects that behave alike for the cost model, folded together. */
export interface Cohort {
  category: Category;
  storageClass: string;
  /** Start of the UTC day they were last modified. */
  day: number;
  small: boolean;
  /** Indexes of the current lifecycle rules that match them. */
  rules: number[];
  /** Whether the recommended rules (the repository's archives/) match them. */
  inArchives: boolean;
  count: number;
  bytes: number;
}

export const SMALL_BYTES = 128 * 1024;
// `.enc`: the same objects of an encrypted repository.
const SNAPSHOT_RE = /^snapshots\/(.+)\.ndjson\.zst(?:\.enc)?$/;

export function idTime(id: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z/.exec(id);
  if (!m) return NaN;
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, +m[7]!);
}

/** Does a lifecycle rule apply to this object? (Tag-filtered rules are left out: listings show no tags.) */
export function ruleMatches(r: LifecycleRule, key: string, size: number): boolean {
  if (!r.enabled || r.tagFilter) return false;
  if (!key.startsWith(r.prefix)) return false;
  if (r.sizeGreaterThan !== undefined && !(size > r.sizeGreaterThan)) return false;
  if (r.sizeLessThan !== undefined && !(size < r.sizeLessThan)) return false;
  return true;
}

export interface InventoryProgress {
  phase: 'list' | 'inventory' | 'manifests' | 'simulate';
  objects: number;
  bytes: number;
  /** Known total (manifests phase), else undefined. */
  total?: number | undefined;
}

export class InventoryBuilder {
  totalObjects = 0;
  totalBytes = 0;
  readonly byClass = new Map<string, ClassTotals>();
  readonly byCategory = new Map<Category, { objects: number; bytes: number; byClass: Map<string, ClassTotals> }>();
  readonly backups = new Map<string, BackupObjects>();
  readonly cohorts = new Map<string, Cohort>();
  private readonly rules: LifecycleRule[];
  private readonly onProgress: ((p: InventoryProgress) => void) | undefined;
  private readonly phase: InventoryProgress['phase'];
  /** Newest modification time seen (the inventory's "as of" when reading a report). */
  newest = 0;

  constructor(rules: LifecycleRule[], phase: InventoryProgress['phase'], onProgress?: (p: InventoryProgress) => void) {
    this.rules = rules;
    this.phase = phase;
    this.onProgress = onProgress;
  }

  add(o: InventoryObject): void {
    this.totalObjects++;
    this.totalBytes += o.size;
    if (o.lastModified > this.newest) this.newest = o.lastModified;
    addTo(this.byClass, o.storageClass, o.size);
    let category: Category = 'other';
    let backupId: string | undefined;
    if (o.repoKey === undefined) category = 'outside';
    else {
      const s = SNAPSHOT_RE.exec(o.repoKey);
      const a = s ? undefined : archiveIdOf(o.repoKey);
      if (s) category = 'manifests';
      else if (o.repoKey.startsWith('archives/')) category = 'archives';
      // Entry segments: shared by manifests, so counted with them but under no one backup.
      else if (o.repoKey.startsWith(ENTRIES)) category = 'manifests';
      const id = s?.[1] ?? a;
      if (id && isSnapshotId(id)) backupId = id;
    }
    let cat = this.byCategory.get(category);
    if (!cat) this.byCategory.set(category, (cat = { objects: 0, bytes: 0, byClass: new Map() }));
    cat.objects++;
    cat.bytes += o.size;
    addTo(cat.byClass, o.storageClass, o.size);

    const stored: StoredObject = { bucketKey: o.bucketKey, size: o.size, lastModified: o.lastModified, storageClass: o.storageClass };
    if (backupId) {
      let b = this.backups.get(backupId);
      if (!b) this.backups.set(backupId, (b = { id: backupId, time: idTime(backupId), archives: [] }));
      if (category === 'manifests') b.manifest = stored;
      else b.archives.push(stored);
    } else {
      const small = o.size < SMALL_BYTES;
      const day = Math.floor(o.lastModified / DAY_MS) * DAY_MS;
      const rules = this.rules.flatMap((r, i) => (ruleMatches(r, o.bucketKey, o.size) ? [i] : []));
      const inArchives = category === 'archives';
      const k = `${category}|${o.storageClass}|${day}|${small ? 1 : 0}|${rules.join(',')}`;
      let c = this.cohorts.get(k);
      if (!c) this.cohorts.set(k, (c = { category, storageClass: o.storageClass, day, small, rules, inArchives, count: 0, bytes: 0 }));
      c.count++;
      c.bytes += o.size;
    }
    if (this.onProgress && this.totalObjects % 10_000 === 0) {
      this.onProgress({ phase: this.phase, objects: this.totalObjects, bytes: this.totalBytes });
    }
  }

  done(): void {
    this.onProgress?.({ phase: this.phase, objects: this.totalObjects, bytes: this.totalBytes });
  }
}

function addTo(m: Map<string, ClassTotals>, cls: string, size: number): void {
  let t = m.get(cls);
  if (!t) m.set(cls, (t = { objects: 0, bytes: 0, smallObjects: 0, smallBytes: 0 }));
  t.objects++;
  t.bytes += size;
  if (size < SMALL_BYTES) {
    t.smallObjects++;
    t.smallBytes += size;
  }
}

// ---------------------------------------------------------------------------------------------
// Sources

/** The repository's objects (or the whole bucket's, with wholeBucket on an S3 store). */
export async function* listObjects(store: Store, opts: { wholeBucket: boolean; root: string }): AsyncIterable<InventoryObject> {
  const bucketView = store.capabilities().bucket;
  if (opts.wholeBucket && bucketView) {
    for await (const o of bucketView.listBucket('')) {
      if (o.key.endsWith('/') && o.size === 0) continue; // console "folder" markers
      yield {
        bucketKey: o.key,
        repoKey: o.key.startsWith(opts.root) ? o.key.slice(opts.root.length) : undefined,
        size: o.size,
        lastModified: o.lastModified.getTime(),
        storageClass: o.storageClass ?? 'STANDARD',
      };
    }
    return;
  }
  const toBucket = bucketView ? (k: string) => bucketView.bucketKey(k) : (k: string) => k;
  for await (const o of store.list('')) {
    yield {
      bucketKey: toBucket(o.key),
      repoKey: o.key,
      size: o.size,
      lastModified: o.lastModified.getTime(),
      storageClass: o.storageClass ?? 'STANDARD',
    };
  }
}

/** S3 Inventory's default field order (the Terraform module's optional_fields). */
export const DEFAULT_INVENTORY_SCHEMA = ['Bucket', 'Key', 'Size', 'LastModifiedDate', 'StorageClass', 'ETag'];

/** Split one CSV line (RFC 4180 quoting, as S3 Inventory writes it). */
export function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  const n = line.length;
  while (i <= n) {
    if (line[i] === '"') {
      let v = '';
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) throw new Error('unterminated quote');
        v += line.slice(i, q);
        if (line[q + 1] === '"') {
          v += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      out.push(v);
      if (i < n && line[i] !== ',') throw new Error('text after a closing quote');
      i++;
    } else {
      const c = line.indexOf(',', i);
      const end = c < 0 ? n : c;
      out.push(line.slice(i, end));
      i = end + 1;
    }
  }
  return out;
}

export interface InventoryInput {
  /** Where the report was read from, for the report. */
  location: string;
  /** The report's date (manifest creationTimestamp), when known. */
  date?: string | undefined;
  sourceBucket?: string | undefined;
  rows: AsyncIterable<InventoryObject>;
}

interface InventoryManifest {
  sourceBucket?: string;
  fileFormat?: string;
  fileSchema?: string;
  creationTimestamp?: string;
  files?: { key: string }[];
}

/** Opens an S3 location (s3://bucket/prefix) as a store rooted at the bucket. */
export type BucketOpener = (bucket: string) => Promise<Store>;

/**
 * An S3 Inventory report: a local .csv / .csv.gz file, a local manifest.json (its files next to
 * it, or under the paths it names), or s3://BUCKET/PREFIX: the newest manifest.json under the
 * prefix (or the one named), whose CSV.gz files are read from the same bucket.
 */
export async function openInventory(location: string, opts: { root: string; openBucket: BucketOpener }): Promise<InventoryInput> {
  const toObject = makeRowMapper(opts.root);
  if (/^s3:\/\//i.test(location)) {
    const m = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(location);
    if (!m) throw new UsageError(`malformed inventory location ${JSON.stringify(location)}`, { hint: 'write it as s3://BUCKET/PREFIX' });
    const bucket = m[1]!;
    const prefix = m[2]!;
    const store = await opts.openBucket(bucket);
    let manifestKey = prefix;
    if (!prefix.endsWith('manifest.json')) {
      let newest: string | undefined;
      for await (const o of store.list(prefix)) if (o.key.endsWith('/manifest.json') && (!newest || o.key > newest)) newest = o.key;
      if (!newest) {
        await store.close();
        throw new S3BackupError(`no S3 Inventory report (manifest.json) under ${location}`, {
          hint: 'point --inventory at the inventory destination prefix (e.g. s3://BUCKET/inventory/), or list the bucket without --inventory',
        });
      }
      manifestKey = newest;
    }
    const manifest = parseManifest((await getBuffer(store, manifestKey)).toString('utf8'), `s3://${bucket}/${manifestKey}`);
    const schema = manifestSchema(manifest);
    async function* rows(): AsyncIterable<InventoryObject> {
      try {
        for (const f of manifest.files ?? []) yield* csvRows(await store.get(f.key), f.key.endsWith('.gz'), schema, toObject, f.key);
      } finally {
        await store.close();
      }
    }
    return { location: `s3://${bucket}/${manifestKey}`, date: manifestDate(manifest), sourceBucket: manifest.sourceBucket, rows: rows() };
  }
  const file = path.resolve(location);
  try {
    await fs.access(file);
  } catch {
    throw new UsageError(`inventory file ${file} does not exist`, {
      hint: 'give a .csv, .csv.gz or manifest.json of an S3 Inventory report, or s3://BUCKET/PREFIX',
    });
  }
  if (file.endsWith('.json')) {
    const manifest = parseManifest(await fs.readFile(file, 'utf8'), file);
    const schema = manifestSchema(manifest);
    const dir = path.dirname(file);
    async function* rows(): AsyncIterable<InventoryObject> {
      for (const f of manifest.files ?? []) {
        // Files are named by their key in the destination bucket; a downloaded report keeps
        // them next to the manifest (by base name) or under the same relative path.
        const candidates = [path.join(dir, f.key), path.join(dir, path.basename(f.key)), path.join(dir, 'data', path.basename(f.key))];
        let found: string | undefined;
        for (const c of candidates)
          if (
            await fs.access(c).then(
              () => true,
              () => false,
            )
          ) {
            found = c;
            break;
          }
        if (!found)
          throw new UsageError(`inventory data file ${f.key} named by ${file} is not there`, {
            hint: `download it next to the manifest (${dir})`,
          });
        yield* csvRows(createReadStream(found), found.endsWith('.gz'), schema, toObject, found);
      }
    }
    return { location: file, date: manifestDate(manifest), sourceBucket: manifest.sourceBucket, rows: rows() };
  }
  return { location: file, rows: csvRows(createReadStream(file), file.endsWith('.gz'), DEFAULT_INVENTORY_SCHEMA, toObject, file) };
}

function parseManifest(text: string, where: string): InventoryManifest {
  let m: InventoryManifest;
  try {
    m = JSON.parse(text) as InventoryManifest;
  } catch {
    throw new S3BackupError(`${where} is not an S3 Inventory manifest (not JSON)`);
  }
  if (!Array.isArray(m.files)) throw new S3BackupError(`${where} is not an S3 Inventory manifest (no "files" list)`);
  if (m.fileFormat && m.fileFormat.toUpperCase() !== 'CSV') {
    throw new UsageError(`${where} is a ${m.fileFormat} inventory; only CSV inventories are read`, {
      hint: 'configure the S3 Inventory with format CSV (the Terraform module does)',
    });
  }
  return m;
}

function manifestSchema(m: InventoryManifest): string[] {
  return m.fileSchema ? m.fileSchema.split(',').map((s) => s.trim()) : DEFAULT_INVENTORY_SCHEMA;
}

function manifestDate(m: InventoryManifest): string | undefined {
  const t = Number(m.creationTimestamp);
  return Number.isFinite(t) && t > 0 ? new Date(t).toISOString() : undefined;
}

type RowMapper = (f: Record<string, string>) => InventoryObject | undefined;

function makeRowMapper(root: string): RowMapper {
  return (f) => {
    if (f.IsLatest === 'false' || f.IsDeleteMarker === 'true') return undefined;
    let key = f.Key ?? '';
    // Inventory CSVs URL-encode object keys.
    try {
      key = decodeURIComponent(key.replace(/\+/g, ' '));
    } catch {
      // keep it as written
    }
    const size = Number(f.Size || 0);
    const lastModified = Date.parse(f.LastModifiedDate ?? '');
    return {
      bucketKey: key,
      repoKey: key.startsWith(root) ? key.slice(root.length) : undefined,
      size: Number.isFinite(size) ? size : 0,
      lastModified: Number.isFinite(lastModified) ? lastModified : 0,
      storageClass: f.StorageClass || 'STANDARD',
    };
  };
}

async function* csvRows(src: Readable, gz: boolean, schema: string[], map: RowMapper, where: string): AsyncIterable<InventoryObject> {
  const stream = gz ? src.pipe(zlib.createGunzip()) : src;
  src.on('error', (e) => stream.destroy(e));
  let n = 0;
  for await (const line of lines(stream)) {
    n++;
    if (line.trim() === '') continue;
    let cells: string[];
    try {
      cells = parseCsvLine(line.replace(/\r$/, ''));
    } catch (e) {
      throw new S3BackupError(`inventory ${where}, line ${n}: not CSV (${(e as Error).message})`);
    }
    // A header line (some tools add one) names the fields itself.
    if (n === 1 && cells[0] === 'Bucket' && cells[1] === 'Key') {
      schema = cells;
      continue;
    }
    if (cells.length < schema.length)
      throw new S3BackupError(`inventory ${where}, line ${n}: ${cells.length} fields, the schema has ${schema.length}`);
    const f: Record<string, string> = {};
    for (let i = 0; i < schema.length; i++) f[schema[i]!] = cells[i]!;
    const o = map(f);
    if (o) yield o;
  }
}
