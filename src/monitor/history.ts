import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { z } from 'zod';
import { AlreadyExistsError, errTextWithHint, NotFoundError, StoreAccessError } from '../errors.ts';
import { checkShape, isTime, type Same, TIME_MESSAGE } from '../schema.ts';
import { getBuffer, type Store } from '../store/store.ts';
import type { HistoryCrypto } from '../repo/repository.ts';
import { groupId } from '../repo/groups.ts';
import type { RunRecord } from './types.ts';
import { mapLimit } from '../concurrency.ts';
import { lines, LineTooLongError } from '../repo/manifest.ts';

/**
 * Run history (docs/format.md "Run history"): one record per backup attempt, kept apart from
 * manifests so it outlives retention, and shared by every host that backs up to the repository.
 *
 *   history/runs/<id>-<host>.json                   one record, written create-only by the run
 *   history/segments/<first>_<last>-<rand>.ndjson.zst   many records, one JSON per line, zstd
 *
 * Loose run objects are merged into a segment once there are many of them (compactHistory);
 * the merged objects are deleted only after the segment is written, and readers merge segments
 * and loose runs and drop duplicate ids, so a crash (or a second host compacting at the same
 * time) can leave duplicates for a while but never loses a record. Nothing else in the tool
 * lists or deletes under history/ (prune only looks at archives/, verify and list at snapshots/).
 */
export const HISTORY_RUNS = 'history/runs/';
export const HISTORY_SEGMENTS = 'history/segments/';
const SEGMENT_SUFFIX = '.ndjson.zst';
/** The longest line (one run record, a few hundred bytes in practice) a segment may hold. */
const MAX_RECORD_LINE = 1 << 20;

/** Compact when at least this many loose run objects exist (appendRun checks after writing). */
export const DEFAULT_COMPACT_THRESHOLD = 50;
/** Also merge the segments themselves into one when there are more than this many. */
export const DEFAULT_MAX_SEGMENTS = 8;

/** The key of a record's own object: the id sorts by time, the host keeps concurrent hosts apart. */
export function runKey(record: Pick<RunRecord, 'id' | 'host'>, crypto?: HistoryCrypto): string {
  const host = record.host || 'unknown';
  return `${HISTORY_RUNS}${safeName(record.id)}-${safeName(crypto ? crypto.hostLabel(host) : host)}.json${crypto?.suffix ?? ''}`;
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 100) || '_';
}

/**
 * Stable key of a source set: the id of its group (src/repo/groups.ts), host included because
 * /home on two machines is two different data sets; tags are not, so a tagged and an untagged
 * backup of the same tree are still compared.
 */
export function sourceKeyOf(host: string, sources: string[]): string {
  return groupId({ host, sources });
}

export interface AppendOptions {
  /** Compact once this many loose run objects exist (default 50; 0 = never compact here). */
  compactThreshold?: number;
  /** An encrypted repository's (Repository.historyCrypto()). */
  crypto?: HistoryCrypto | undefined;
  /** Told when compaction is refused for lack of permission (it then never happens by itself). */
  onWarning?: ((message: string) => void) | undefined;
}

/**
 * Record one run. Create-only: two hosts never overwrite each other's records, and a record
 * written twice (a retry) keeps the first. Compacts when many loose records have piled up; a
 * failed compaction is retried next time (nothing is lost by it), and is a warning only when
 * the credentials may not do it (a role without s3:DeleteObject on history/): that one stays.
 */
export async function appendRun(store: Store, record: RunRecord, opts: AppendOptions = {}): Promise<void> {
  try {
    await putObject(store, runKey(record, opts.crypto), Buffer.from(`${JSON.stringify(record)}\n`), 'application/json', opts.crypto);
  } catch (e) {
    if (!(e instanceof AlreadyExistsError)) throw e;
  }
  const threshold = opts.compactThreshold ?? DEFAULT_COMPACT_THRESHOLD;
  if (threshold <= 0) return;
  const loose = (await listKeys(store, HISTORY_RUNS, '.json', opts.crypto)).length;
  if (loose >= threshold) {
    await compactHistory(store, { crypto: opts.crypto }).catch((e: unknown) => {
      if (e instanceof StoreAccessError) {
        opts.onWarning?.(`run history not compacted (${loose} loose run records under ${HISTORY_RUNS}): ${errTextWithHint(e)}`);
      }
    });
  }
}

export interface ReadHistoryOptions {
  /** Told about each record or object that cannot be read (skipped, never fatal). */
  onWarning?: (message: string) => void;
  /** An encrypted repository's: only its sealed records are read (and plain ones only without it). */
  crypto?: HistoryCrypto | undefined;
}

/** Every run record in the repository, all hosts, oldest first (by time, then id), without duplicates. */
export async function readHistory(store: Store, opts: ReadHistoryOptions = {}): Promise<RunRecord[]> {
  const warn = opts.onWarning ?? (() => {});
  const byId = new Map<string, RunRecord>();
  const add = (r: RunRecord) => {
    if (!byId.has(r.id)) byId.set(r.id, r);
  };
  const crypto = opts.crypto;
  const segments = await listKeys(store, HISTORY_SEGMENTS, SEGMENT_SUFFIX, crypto);
  for (const key of segments) {
    const got = await readSegment(store, key, warn, crypto);
    for (const r of got ?? []) add(r);
  }
  const runs = await listKeys(store, HISTORY_RUNS, '.json', crypto);
  await mapLimit(runs, 8, async (key) => {
    const r = await readRunObject(store, key, warn, crypto);
    if (r) add(r);
  });
  return sortRecords([...byId.values()]);
}

export function sortRecords(records: RunRecord[]): RunRecord[] {
  return records.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export interface CompactResult {
  /** Loose run objects merged (and deleted). */
  runsMerged: number;
  /** Earlier segments merged into the new one (and deleted). */
  segmentsMerged: number;
  /** The segment written, if any. */
  segment?: string;
  /** Records in that segment. */
  records: number;
}

export interface CompactOptions {
  /** Merge the segments too when there are more than this many (default 8); 0 = always. */
  maxSegments?: number;
  /** An encrypted repository's: its sealed records are merged into a sealed segment. */
  crypto?: HistoryCrypto | undefined;
}

/**
 * Merge loose run objects (and, when there are many, the existing segments) into one new
 * segment, then delete what was merged. Crash-safe and safe beside other compactors: only
 * objects that were read and whose records are in a segment already written are deleted, so
 * every record is always in at least one object. A segment that cannot be read is left alone.
 */
export async function compactHistory(store: Store, opts: CompactOptions = {}): Promise<CompactResult> {
  const maxSegments = opts.maxSegments ?? DEFAULT_MAX_SEGMENTS;
  const crypto = opts.crypto;
  const runKeys = await listKeys(store, HISTORY_RUNS, '.json', crypto);
  const segKeys = await listKeys(store, HISTORY_SEGMENTS, SEGMENT_SUFFIX, crypto);
  const mergeSegments = segKeys.length > maxSegments;
  const byId = new Map<string, RunRecord>();
  const mergedRuns: string[] = [];
  const mergedSegments: string[] = [];
  if (mergeSegments) {
    for (const key of segKeys) {
      const got = await readSegment(store, key, () => {}, crypto);
      if (!got) continue; // unreadable: keep it, never delete what we could not carry over
      for (const r of got) if (!byId.has(r.id)) byId.set(r.id, r);
      mergedSegments.push(key);
    }
  }
  await mapLimit(runKeys, 8, async (key) => {
    const r = await readRunObject(store, key, () => {}, crypto);
    if (r === undefined) return;
    if (r !== null && !byId.has(r.id)) byId.set(r.id, r);
    mergedRuns.push(key); // null = vanished since listing (another compactor has it)
  });
  if (mergedRuns.length === 0 && mergedSegments.length <= 1) return { runsMerged: 0, segmentsMerged: 0, records: 0 };
  // May we delete what we merge? Deleting a key that does not exist answers that without
  // changing anything; without the check, credentials that may write but not delete would add
  // another segment of the same records at every try.
  await store.delete([`${HISTORY_RUNS}.compaction-check`, ...(mergedSegments.length ? [`${HISTORY_SEGMENTS}.compaction-check`] : [])]);
  const records = sortRecords([...byId.values()]);
  let segment: string | undefined;
  if (records.length > 0) {
    segment = segmentKey(records, crypto);
    await putObject(
      store,
      segment,
      zlib.zstdCompressSync(Buffer.from(`${records.map((r) => JSON.stringify(r)).join('\n')}\n`)),
      'application/zstd',
      crypto,
    );
    // Read it back before deleting the sources: only a segment that is there and whole counts.
    const check = await readSegment(store, segment, () => {}, crypto);
    if (!check || check.length !== records.length)
      throw new Error(`history segment ${segment} did not read back whole; nothing was deleted`);
  }
  const toDelete = [...mergedRuns, ...mergedSegments];
  for (let i = 0; i < toDelete.length; i += 200) await store.delete(toDelete.slice(i, i + 200));
  return { runsMerged: mergedRuns.length, segmentsMerged: mergedSegments.length, ...(segment ? { segment } : {}), records: records.length };
}

function segmentKey(records: RunRecord[], crypto: HistoryCrypto | undefined): string {
  const first = safeName(records[0]!.id);
  const last = safeName(records.at(-1)!.id);
  return `${HISTORY_SEGMENTS}${first}_${last}-${randomBytes(4).toString('hex')}${SEGMENT_SUFFIX}${crypto?.suffix ?? ''}`;
}

/** Keys with this suffix, sealed ones (suffix + crypto.suffix) with a crypto, plain ones without. */
async function listKeys(store: Store, prefix: string, suffix: string, crypto: HistoryCrypto | undefined): Promise<string[]> {
  const want = suffix + (crypto?.suffix ?? '');
  const keys: string[] = [];
  for await (const o of store.list(prefix)) if (o.key.endsWith(want)) keys.push(o.key);
  return keys.sort();
}

/** Write a history object, create-only: sealed under its name with a crypto, else as it is. */
function putObject(store: Store, key: string, plain: Buffer, contentType: string, crypto: HistoryCrypto | undefined): Promise<void> {
  return store.put(key, crypto ? crypto.seal(key, plain) : plain, {
    createOnly: true,
    contentType: crypto ? 'application/octet-stream' : contentType,
  });
}

/** An object's bytes, opened if sealed; undefined (warned) if it fails authentication. */
function unseal(store: Store, key: string, buf: Buffer, crypto: HistoryCrypto | undefined, warn: (m: string) => void): Buffer | undefined {
  if (!crypto) return buf;
  try {
    return crypto.open(key, buf);
  } catch {
    warn(`history: ${store.location}/${key} fails authentication (modified, or not this repository's); skipped`);
    return undefined;
  }
}

/** A record, null if the object vanished since it was listed, undefined if it is unreadable. */
async function readRunObject(
  store: Store,
  key: string,
  warn: (m: string) => void,
  crypto: HistoryCrypto | undefined,
): Promise<RunRecord | null | undefined> {
  let stored: Buffer;
  try {
    stored = await getBuffer(store, key);
  } catch (e) {
    if (e instanceof NotFoundError) return null;
    throw e;
  }
  const buf = unseal(store, key, stored, crypto, warn);
  if (!buf) return undefined;
  const r = readRecord(buf.toString('utf8').trim());
  if ('problem' in r) {
    warn(`history: ${store.location}/${key} is not a valid run record (${r.problem}); skipped`);
    return undefined;
  }
  return r;
}

/** A segment's records, null if it vanished since listing (merged elsewhere), undefined if unreadable. */
async function readSegment(
  store: Store,
  key: string,
  warn: (m: string) => void,
  crypto: HistoryCrypto | undefined,
): Promise<RunRecord[] | undefined> {
  let stored: Buffer;
  try {
    stored = await getBuffer(store, key);
  } catch (e) {
    if (e instanceof NotFoundError) return [];
    throw e;
  }
  const buf = unseal(store, key, stored, crypto, warn);
  if (!buf) return undefined;
  // Decompressed as a stream, one line (record) at a time, never whole: a small segment that
  // expands to gigabytes costs a scan, not the memory (docs/format.md "Decompression bounds").
  // Records are kept once per id (as readHistory would), so one record repeated without end
  // takes no more room than once.
  const byId = new Map<string, RunRecord>();
  let bad = 0;
  let first: string | undefined;
  let n = 0;
  const dec = zlib.createZstdDecompress();
  dec.end(buf);
  try {
    for await (const line of lines(dec, { maxLine: () => MAX_RECORD_LINE, skipEmpty: true })) {
      if (!line.trim()) continue;
      n++;
      const r = readRecord(line);
      if (!('problem' in r)) {
        if (!byId.has(r.id)) byId.set(r.id, r);
      } else if (bad++ === 0) first = `record ${n}: ${r.problem}`;
    }
  } catch (e) {
    const why = e instanceof LineTooLongError ? `a line runs past ${e.max} bytes` : (e as Error).message;
    warn(`history: segment ${store.location}/${key} cannot be decompressed (${why}); its records are skipped`);
    return undefined;
  }
  if (bad) {
    warn(`history: segment ${store.location}/${key} has ${bad} unreadable line(s) (${first}); skipped`);
    return undefined;
  }
  return [...byId.values()];
}

/**
 * What a reader accepts as a run record (src/schema.ts). Records have had these fields from
 * the start; `tags` may be absent (read as []), the failure and extension fields are optional.
 * Unknown fields pass, and compaction keeps them.
 */
const RunRecordSchema = z.object({
  id: z.string(),
  time: z.string().refine(isTime, TIME_MESSAGE),
  host: z.string(),
  sources: z.array(z.string()),
  sourceKey: z.string(),
  tags: z.array(z.string()),
  kind: z.enum(['full', 'incremental']),
  ok: z.boolean(),
  durationMs: z.number(),
  files: z.number(),
  bytesIn: z.number(),
  bytesTotal: z.number(),
  bytesStored: z.number(),
  compressionRatio: z.number(),
  newFiles: z.number(),
  changedFiles: z.number(),
  deletedFiles: z.number(),
  warnings: z.number(),
  error: z.string().optional(),
  operation: z.string().optional(),
  extensions: z.record(z.string(), z.number()).optional(),
});
true satisfies Same<z.output<typeof RunRecordSchema>, RunRecord>;

/** Parse and check one record (history comes from storage we do not fully trust): the record, or what is wrong with it. */
export function readRecord(text: string): RunRecord | { problem: string } {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return { problem: 'it is not JSON' };
  }
  if (r !== null && typeof r === 'object' && !Array.isArray(r) && (r as { tags?: unknown }).tags === undefined)
    (r as { tags: string[] }).tags = [];
  try {
    return checkShape(RunRecordSchema, r, (problem) => new Error(problem));
  } catch (e) {
    return { problem: (e as Error).message };
  }
}

// ---------------------------------------------------------------------------------------------
// CSV

/** Columns of the CSV time series (`s3backup history --csv`), in order. */
export const CSV_COLUMNS = [
  'timestamp',
  'id',
  'host',
  'sources',
  'kind',
  'ok',
  'duration_seconds',
  'files',
  'bytes_in',
  'bytes_total',
  'bytes_stored',
  'compression_ratio',
  'new_files',
  'changed_files',
  'deleted_files',
  'warnings',
  'error',
] as const;

function csvCell(v: string | number | boolean): string {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The history as CSV (RFC 4180, header line first), one row per run, oldest first. */
export function historyCsv(records: RunRecord[]): string {
  const rows = records.map((r) =>
    [
      r.time,
      r.id,
      r.host,
      r.sources.join(' '),
      r.kind,
      r.ok,
      (r.durationMs / 1000).toFixed(3),
      r.files,
      r.bytesIn,
      r.bytesTotal,
      r.bytesStored,
      r.compressionRatio,
      r.newFiles,
      r.changedFiles,
      r.deletedFiles,
      r.warnings,
      r.error ?? '',
    ]
      .map(csvCell)
      .join(','),
  );
  return `${[CSV_COLUMNS.join(','), ...rows].join('\r\n')}\r\n`;
}
