import * as fs from 'node:fs';
import { UsageError } from '../errors.ts';
import { DEFAULT_PART_SIZE, DEFAULT_QUEUE_SIZE, uploadRequestsOf, uploadShape } from '../store/s3-parts.ts';
import { PRICE_TABLE } from './price-table.ts';

/** The S3 storage classes the cost model knows, warmest first. */
export const STORAGE_CLASSES = [
  'STANDARD',
  'INTELLIGENT_TIERING',
  'STANDARD_IA',
  'ONEZONE_IA',
  'GLACIER_IR',
  'GLACIER',
  'DEEP_ARCHIVE',
] as const;
export type StorageClass = (typeof STORAGE_CLASSES)[number];

export function isStorageClass(s: string): s is StorageClass {
  return (STORAGE_CLASSES as readonly string[]).includes(s);
}

/** Billing GB: S3 bills binary gigabytes (2^30 bytes). */
export const GB = 1024 ** 3;
/** An average month in days (365.25 / 12): GB-month charges accrue per day at price / this. */
export const MONTH_DAYS = 365.25 / 12;
export const DAY_MS = 86_400_000;

export interface StorageTier {
  /** Applies to the GB of the month up to this cumulative amount; the last tier has none. */
  upToGB?: number;
  price: number;
}

/** Prices of one storage class in one region, USD. Request prices are per 1,000 requests. */
export interface ClassPrices {
  /** $/GB-month: one number, or volume tiers (S3 Standard: first 50 TB, next 450 TB, over 500 TB). */
  storage: number | StorageTier[];
  /** PUT, COPY, POST, LIST per 1,000 (each multipart part is a PUT). */
  put: number;
  /** GET, SELECT and the rest, per 1,000. */
  get: number;
  /** Lifecycle transition requests INTO this class, per 1,000. */
  transition: number;
  /** Data retrieval $/GB (restores from GLACIER/DEEP_ARCHIVE: the Standard tier). */
  retrievalPerGB: number;
  /** Restore requests per 1,000 (GLACIER/DEEP_ARCHIVE). */
  retrievalPer1000?: number;
  /** Minimum storage duration: deleting or transitioning earlier is charged for the rest. */
  minDays: number;
  /** Objects smaller than this are billed as this size (IA, One Zone-IA, Glacier IR: 128 KB). */
  minBillableBytes: number;
  /** Archive classes: per-object index billed at this class's price (32 KB)… */
  overheadClassBytes?: number;
  /** …and metadata billed at S3 Standard's price (8 KB). */
  overheadStandardBytes?: number;
  /** Intelligent-Tiering: lower tiers by days without access. */
  tiers?: { afterDays: number; price: number }[];
  /** Intelligent-Tiering monitoring, per 1,000 objects of 128 KB or more, per month. */
  monitoringPer1000Objects?: number;
}

export type RegionPrices = Record<StorageClass, ClassPrices>;

export interface PriceTable {
  version: string;
  /** When the numbers were taken from the source. */
  date: string;
  source: string;
  currency: 'USD';
  defaultRegion: string;
  regions: Record<string, RegionPrices>;
}

/** The prices a report uses, and where they came from. */
export interface Prices {
  table: { version: string; date: string; source: string; file?: string | undefined };
  region: string;
  /** Set when the region has no prices of its own in the table. */
  regionFallback?: string | undefined;
  classes: RegionPrices;
}

const MIN_TRANSITION_BYTES = 128 * 1024;
/** S3 lifecycle (since September 2024) does not transition objects under 128 KB unless a rule says otherwise. */
export const LIFECYCLE_MIN_TRANSITION_BYTES = MIN_TRANSITION_BYTES;

/**
 * Load an override file: a JSON object shaped like PRICE_TABLE. Regions and classes it names
 * replace (class by class, field by field) the shipped ones; everything else stays.
 */
export function loadPriceTable(file?: string): { table: PriceTable; file?: string } {
  if (!file) return { table: PRICE_TABLE };
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`cannot read price file ${file}: ${(e as Error).message.split('\n')[0]}`, {
      hint: 'give a JSON file shaped like the shipped table (docs/cost.md "Price table")',
    });
  }
  const o = raw as Partial<PriceTable>;
  if (!o || typeof o !== 'object' || typeof o.regions !== 'object' || o.regions === null) {
    throw new UsageError(`price file ${file} has no "regions" object`, { hint: 'see docs/cost.md "Price table" for the format' });
  }
  const regions: Record<string, RegionPrices> = { ...PRICE_TABLE.regions };
  for (const [region, classes] of Object.entries(o.regions)) {
    const base = regions[region] ?? PRICE_TABLE.regions[PRICE_TABLE.defaultRegion]!;
    const merged = { ...base } as RegionPrices;
    for (const [cls, p] of Object.entries(classes ?? {})) {
      if (!isStorageClass(cls)) {
        throw new UsageError(`price file ${file}: unknown storage class ${JSON.stringify(cls)} in region ${region}`, {
          hint: `classes are ${STORAGE_CLASSES.join(', ')}`,
        });
      }
      const c = { ...base[cls], ...(p as Partial<ClassPrices>) };
      checkClassPrices(c, `${file}: ${region}.${cls}`);
      merged[cls] = c;
    }
    regions[region] = merged;
  }
  return {
    file,
    table: {
      version: typeof o.version === 'string' ? o.version : `${PRICE_TABLE.version}+${file}`,
      date: typeof o.date === 'string' ? o.date : PRICE_TABLE.date,
      source: typeof o.source === 'string' ? o.source : `${file} over the shipped table`,
      currency: 'USD',
      defaultRegion: typeof o.defaultRegion === 'string' ? o.defaultRegion : PRICE_TABLE.defaultRegion,
      regions,
    },
  };
}

function checkClassPrices(c: ClassPrices, where: string): void {
  const nums: (keyof ClassPrices)[] = ['put', 'get', 'transition', 'retrievalPerGB', 'minDays', 'minBillableBytes'];
  for (const k of nums) {
    const v = c[k];
    if (typeof v !== 'number' || !(v >= 0)) throw new UsageError(`price file ${where}: ${k} must be a number of 0 or more`);
  }
  const tiers = typeof c.storage === 'number' ? [{ price: c.storage }] : c.storage;
  if (!Array.isArray(tiers) || tiers.length === 0 || tiers.some((t) => typeof t?.price !== 'number' || !(t.price >= 0))) {
    throw new UsageError(`price file ${where}: storage must be a $/GB-month number or a list of {upToGB, price} tiers`);
  }
}

export function selectPrices(table: PriceTable, region: string | undefined, file?: string): Prices {
  const want = region || table.defaultRegion;
  const classes = table.regions[want];
  const info = { version: table.version, date: table.date, source: table.source, ...(file ? { file } : {}) };
  if (classes) return { table: info, region: want, classes };
  const fallback = table.regions[table.defaultRegion]!;
  return { table: info, region: want, regionFallback: table.defaultRegion, classes: fallback };
}

/** The base (first-tier) $/GB-month of a class. */
export function basePrice(p: ClassPrices): number {
  return typeof p.storage === 'number' ? p.storage : p.storage[0]!.price;
}

/** Monthly cost of `gb` GB-months in a class, with its volume tiers. */
export function tieredCost(p: ClassPrices, gb: number): number {
  if (typeof p.storage === 'number') return gb * p.storage;
  let left = gb;
  let done = 0;
  let cost = 0;
  for (const t of p.storage) {
    const cap = t.upToGB === undefined ? Infinity : t.upToGB - done;
    const here = Math.min(left, Math.max(cap, 0));
    cost += here * t.price;
    left -= here;
    done += here;
    if (left <= 0) break;
  }
  return cost;
}

/**
 * Bytes billed for `count` objects of `bytes` in total in a class, where `smallCount` of them
 * are under the class's minimum billable size and hold `smallBytes`: those are billed at the
 * minimum. Archive overhead is separate (archiveOverhead).
 */
export function billableBytes(p: ClassPrices, bytes: number, smallCount = 0, smallBytes = 0): number {
  if (!p.minBillableBytes || smallCount === 0) return bytes;
  return bytes - smallBytes + smallCount * p.minBillableBytes;
}

/** Per-object overhead of archive classes: bytes at the class's price, bytes at Standard's. */
export function archiveOverhead(p: ClassPrices, count: number): { classBytes: number; standardBytes: number } {
  return { classBytes: (p.overheadClassBytes ?? 0) * count, standardBytes: (p.overheadStandardBytes ?? 0) * count };
}

/**
 * Requests of one upload of `size` bytes: one PUT, or create + parts + complete when multipart,
 * with the parts a stream put of the default settings makes (uploadShape).
 */
export function uploadRequests(size: number): number {
  return uploadRequestsOf(size, uploadShape(undefined, DEFAULT_PART_SIZE, DEFAULT_QUEUE_SIZE));
}
