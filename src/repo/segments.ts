import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { IntegrityError } from '../errors.ts';
import {
  compareTreePaths,
  type Entry,
  type Extent,
  type EntrySegments,
  MAX_ENTRY_LINE,
  parseEntryLine,
  type SegmentRef,
} from './manifest.ts';
import { makeTempDir } from './temp-dirs.ts';

// Entry segments (docs/format.md "Entry segments"): a manifest's entries, cut into pieces at
// places chosen by the paths themselves, each stored once under the hash of its text. A backup
// that changed nothing produces the same pieces as its parent and stores none of them again; a
// reader that wants one directory fetches only the pieces whose path range holds it.

/** Cuts: no cut before this many entries, then where a path's hash says so (1 in CUT_ONE_IN). */
const MIN_ENTRIES = 256;
const CUT_ONE_IN = 1024;
/** Forced cuts, so no segment grows past these (a flat directory of millions of files). */
const MAX_ENTRIES = 8192;
const MAX_TEXT = 2 << 20;
/** What a reader accepts: a segment's text (MAX_TEXT plus the entry that crossed it). */
export const MAX_SEGMENT_TEXT = MAX_TEXT + MAX_ENTRY_LINE + (1 << 20);
/** New segments being compressed and stored at once. */
const IN_FLIGHT = 4;
/** Segments read ahead of the one being handed out. */
const READ_AHEAD = 4;

const compress = promisify(zlib.zstdCompress);

/** The manifest's index of archive `i` of a segment's list (`local`); entry `n` of manifest `where` names it. */
function manifestArchive(local: number[], i: number, n: number, where: string): number {
  const j = local[i];
  if (j === undefined) throw new IntegrityError(`manifest ${where}: entry ${n} refers to archive ${i} of its segment's ${local.length}`);
  return j;
}

/** FNV-1a over the path's UTF-16 code units: cheap, and the same for the same path on every run. */
function pathHash(p: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Paths the parent had and this backup does not, in a layer (docs/format.md "Layers"): a line
 * {"path":…,"deleted":true}. Held as entries that only the manifest queue, layer writers and
 * layer readers see.
 */
const TOMBSTONES = new WeakSet<Entry>();

/** The layer line that says `path` is gone. */
export function tombstone(path: string): Entry {
  const e: Entry = { path, type: 'other', mode: 0, uid: 0, gid: 0, mtime: 0, ctime: 0, ino: 0, size: 0 };
  TOMBSTONES.add(e);
  return e;
}

/**
 * An entry's line with its fields in one fixed order, whatever order its object was built in:
 * an unchanged entry must give the same bytes as in the parent, or its segment would not be
 * found again. `archive` is the index into the segment's own archive list.
 */
function entryLine(e: Entry, archive: number | undefined, extents: Extent[] | undefined): string {
  if (TOMBSTONES.has(e)) return `${JSON.stringify({ path: e.path, deleted: true })}\n`;
  const o: Record<string, unknown> = {
    path: e.path,
    type: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    mtime: e.mtime,
    ctime: e.ctime,
    ino: e.ino,
    size: e.size,
  };
  if (e.sha256 !== undefined) o.sha256 = e.sha256;
  if (archive !== undefined) o.archive = archive;
  if (e.header !== undefined) o.header = e.header;
  if (e.offset !== undefined) o.offset = e.offset;
  if (extents !== undefined) o.extents = extents;
  if (e.chunks !== undefined) o.chunks = e.chunks;
  if (e.target !== undefined) o.target = e.target;
  if (e.error !== undefined) o.error = e.error;
  if (e.changed !== undefined) o.changed = e.changed;
  if (e.xattrs !== undefined) o.xattrs = e.xattrs;
  return `${JSON.stringify(o)}\n`;
}

/**
 * What a backup says of each entry it hands on (EntrySink.add): SAME, the parent's entry byte
 * for byte (a layer leaves it out); NEW, anything else.
 */
export const SAME = 0;
export const NEW = -1;

/** Where a backup's entries go, in tree order: all into segments (SegmentWriter) or the changes into a layer (LayerWriter). */
export interface EntrySink {
  /** Add the next entry (`mark`: SAME or NEW); a promise only when the caller should wait. */
  add(e: Entry, mark?: number): Promise<void> | undefined;
  /** A path of the parent's that this backup does not have, as its tombstone. */
  deleted(t: Entry): Promise<void> | undefined;
  finish(): Promise<void>;
  dispose(): Promise<void>;
  /** What line 3 of the manifest lists. */
  readonly refs: readonly SegmentRef[];
  readonly layers: readonly (readonly SegmentRef[])[];
  /** Bytes of the segments this backup stored. */
  readonly bytesWritten: number;
  /** Whether the manifest lists every archive of the parent's (a layer leaves the parent's entries in place). */
  readonly keepsParentArchives: boolean;
  /** Whether add(e, SAME) does nothing (a layer), so a caller need not keep such entries to hand on. */
  readonly dropsSame: boolean;
}

/** Where new segments go: the repository names and stores them (sealed when it is encrypted). */
export interface SegmentStore {
  /** The segment's id: the SHA-256 of its text (a keyed hash in an encrypted repository). */
  idOf(text: Buffer): string;
  /** Store a new segment's compressed text; resolves to the bytes stored. */
  put(id: string, compressed: Buffer): Promise<number>;
}

/**
 * Writes a backup's entries as segments while the backup walks. A segment whose id is one of
 * `known` (the parent's) is not stored again. `archiveKey` names the archive of an entry's
 * `archive` index (the manifest's), which segments record by key: a segment keeps its bytes
 * when the next manifest lists the same archives in another order.
 */
export class SegmentWriter implements EntrySink {
  readonly refs: SegmentRef[] = [];
  readonly layers: readonly (readonly SegmentRef[])[] = [];
  readonly keepsParentArchives = false;
  readonly dropsSame = false;
  count = 0;
  /** Segments stored by this writer, and their bytes. */
  written = 0;
  bytesWritten = 0;
  private lines: string[] = [];
  private textBytes = 0;
  private first = '';
  private archiveKeys: string[] = [];
  private archiveIndex = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;
  private readonly store: SegmentStore;
  private readonly known: ReadonlySet<string>;
  private readonly archiveKey: (i: number) => string;

  constructor(store: SegmentStore, known: ReadonlySet<string>, archiveKey: (i: number) => string) {
    this.store = store;
    this.known = known;
    this.archiveKey = archiveKey;
  }

  /** Add the next entry (tree order); a promise only when the caller should wait. */
  add(e: Entry): Promise<void> | undefined {
    if (this.failure) throw this.failure.error;
    let wait: Promise<void> | undefined;
    if (this.cutsBefore(this.lines.length, this.textBytes, e.path)) wait = this.cut();
    if (this.lines.length === 0) this.first = e.path;
    this.count++;
    this.append(e);
    return wait;
  }

  /** A deletion is said by leaving the path out. */
  deleted(): undefined {
    return undefined;
  }

  /** The cut rule (docs/format.md "Entry segments"): before an entry at index n, after `text` units of lines. */
  private cutsBefore(n: number, text: number, p: string): boolean {
    return n >= MAX_ENTRIES || text >= MAX_TEXT || (n >= MIN_ENTRIES && pathHash(p) % CUT_ONE_IN === 0);
  }

  private append(e: Entry): void {
    const archive = e.archive === undefined ? undefined : this.localArchive(e.archive);
    const extents = e.extents?.map(([a, offset, length]): Extent => [this.localArchive(a), offset, length]);
    const line = entryLine(e, archive, extents);
    this.lines.push(line);
    this.textBytes += line.length;
  }

  /** The index in this segment's archive list of the manifest's archive `i`, added to the list when new. */
  private localArchive(i: number): number {
    const key = this.archiveKey(i);
    let archive = this.archiveIndex.get(key);
    if (archive === undefined) {
      archive = this.archiveKeys.push(key) - 1;
      this.archiveIndex.set(key, archive);
    }
    return archive;
  }

  /** Close the segment being filled; a promise when too many are being stored. */
  private cut(): Promise<void> | undefined {
    if (this.lines.length === 0) return undefined;
    const text = Buffer.from(`${JSON.stringify({ archives: this.archiveKeys })}\n${this.lines.join('')}`);
    const id = this.store.idOf(text);
    this.refs.push([id, this.first, this.lines.length]);
    this.lines = [];
    this.textBytes = 0;
    this.archiveKeys = [];
    this.archiveIndex = new Map();
    if (this.known.has(id)) return undefined;
    const storing: Promise<void> = compress(text, {
      // The frame header then records the text's size, which a reader decompresses into at once.
      pledgedSrcSize: text.length,
      params: { [zlib.constants.ZSTD_c_compressionLevel]: 3, [zlib.constants.ZSTD_c_checksumFlag]: 1 },
    })
      .then((compressed) => this.store.put(id, compressed))
      .then(
        (bytes) => {
          this.written++;
          this.bytesWritten += bytes;
        },
        (error: unknown) => {
          this.failure ??= { error };
        },
      )
      .finally(() => this.inFlight.delete(storing));
    this.inFlight.add(storing);
    if (this.inFlight.size < IN_FLIGHT) return undefined;
    return Promise.race(this.inFlight);
  }

  /** The last segment, and every store finished (throws the first failure). */
  async finish(): Promise<void> {
    await this.cut();
    await Promise.all(this.inFlight);
    if (this.failure) throw this.failure.error;
  }

  /** A failed backup: wait for the stores under way (their objects are left to prune). */
  async dispose(): Promise<void> {
    await Promise.allSettled(this.inFlight);
  }
}

/** Layers over one base before a backup writes a new base instead (docs/format.md "Layers"). */
export const MAX_LAYERS = 8;
/** …or once the layers' lines are this share of the base's entries. */
const MAX_LAYER_SHARE = 1 / 8;

/** Whether a backup of a parent with these segments adds a layer (else it writes all its entries anew). */
export function layerOver(parent: EntrySegments): boolean {
  const base = parent.refs.reduce((n, r) => n + r[2], 0);
  const layered = parent.layers.reduce((n, l) => n + l.reduce((m, r) => m + r[2], 0), 0);
  return parent.refs.length > 0 && parent.layers.length < MAX_LAYERS && layered <= base * MAX_LAYER_SHARE;
}

/**
 * Writes only what changed since the parent, as one more layer over the parent's base and
 * layers: entries that are not the parent's byte for byte, and a tombstone for each path the
 * parent had and this backup does not. The cost of a backup then follows its change wherever
 * in the tree the change is (docs/format.md "Layers").
 */
export class LayerWriter implements EntrySink {
  readonly refs: readonly SegmentRef[];
  readonly keepsParentArchives = true;
  readonly dropsSame = true;
  private readonly parentLayers: readonly (readonly SegmentRef[])[];
  private readonly layer: SegmentWriter;

  constructor(store: SegmentStore, parent: EntrySegments, archiveKey: (i: number) => string) {
    this.refs = parent.refs;
    this.parentLayers = parent.layers;
    const known = new Set([...parent.refs, ...parent.layers.flat()].map(([id]) => id));
    this.layer = new SegmentWriter(store, known, archiveKey);
  }

  add(e: Entry, mark = NEW): Promise<void> | undefined {
    return mark === SAME ? undefined : this.layer.add(e);
  }

  deleted(t: Entry): Promise<void> | undefined {
    return this.layer.add(t);
  }

  get layers(): readonly (readonly SegmentRef[])[] {
    return this.layer.refs.length > 0 ? [...this.parentLayers, this.layer.refs] : this.parentLayers;
  }

  get bytesWritten(): number {
    return this.layer.bytesWritten;
  }

  finish(): Promise<void> {
    return this.layer.finish();
  }

  dispose(): Promise<void> {
    return this.layer.dispose();
  }
}

/**
 * The segments (by index in `refs`) that may hold `p` or anything under it: a segment holds the
 * paths from its first one up to the next segment's first (tree order keeps a subtree together).
 */
export function segmentsUnder(refs: readonly SegmentRef[], p: string): number[] {
  const out: number[] = [];
  const under = (x: string) => p === '' || x === p || x.startsWith(`${p}/`);
  for (let i = 0; i < refs.length; i++) {
    const first = refs[i]![1];
    const next = refs[i + 1]?.[1];
    const startsInOrBefore = compareTreePaths(first, p) <= 0 || under(first);
    const endsAfter = next === undefined || compareTreePaths(next, p) > 0;
    if (startsInOrBefore && endsAfter) out.push(i);
  }
  return out;
}

/**
 * A manifest's stored segments, fetched as they are read. Unless the store's objects are local
 * files, each is kept (compressed) in a temporary file the first time, so a reader's further
 * passes cost no more requests.
 */
export class StoredSegments implements EntrySegments {
  readonly refs: readonly SegmentRef[];
  readonly layers: readonly (readonly SegmentRef[])[] = [];
  /** A layer's segments: they may hold tombstones. */
  private readonly layer: boolean;
  private readonly fetch: (id: string) => Promise<Buffer>;
  private readonly idOf: (text: Buffer) => string;
  private readonly archiveIndex: Map<string, number>;
  private readonly where: string;
  private cacheDir: Promise<string> | undefined;
  private readonly cached = new Set<number>();
  private readonly firstEntry: Float64Array;
  private disposed = false;
  private readonly keepCopies: boolean;

  constructor(
    refs: readonly SegmentRef[],
    archiveKeys: readonly string[],
    fetch: (id: string) => Promise<Buffer>,
    idOf: (text: Buffer) => string,
    where: string,
    layer = false,
    keepCopies = true,
  ) {
    this.refs = refs;
    this.keepCopies = keepCopies;
    this.layer = layer;
    this.fetch = fetch;
    this.idOf = idOf;
    this.archiveIndex = new Map(archiveKeys.map((k, i) => [k, i]));
    this.where = where;
    // Entries are numbered across the whole manifest: those before each segment.
    this.firstEntry = new Float64Array(refs.length);
    for (let k = 1; k < refs.length; k++) this.firstEntry[k] = this.firstEntry[k - 1]! + refs[k - 1]![2];
  }

  /** The indexes of the segments to read: all, or those that may hold something under one of `under`. */
  select(under: readonly string[] | undefined): number[] {
    if (under === undefined || under.includes('')) return this.refs.map((_, i) => i);
    const picked = new Set<number>();
    for (const p of under) for (const i of segmentsUnder(this.refs, p)) picked.add(i);
    return [...picked].sort((a, b) => a - b);
  }

  async *entries(under: readonly string[] | undefined): AsyncGenerator<Entry> {
    yield* this.entriesAt(this.select(under));
  }

  /** The entries of the segments `indexes`, in order, each read a few ahead. */
  async *entriesAt(indexes: readonly number[]): AsyncGenerator<Entry> {
    for await (const [i, text] of this.texts(indexes)) yield* this.parse(i, text);
  }

  /**
   * Every entry (with `under`, those of the segments `select` picks), a segment at a time (one
   * promise per segment, not per entry), each parsed as it is pulled: the entries before a
   * damaged one, then its error.
   */
  async *batches(under?: readonly string[]): AsyncGenerator<Iterator<Entry>> {
    for await (const [i, text] of this.texts(this.select(under))) yield this.parse(i, text);
  }

  /** The texts of the segments `indexes`, in order, each read a few ahead. */
  private async *texts(indexes: readonly number[]): AsyncGenerator<[number, string]> {
    const ahead: Promise<string>[] = [];
    let next = 0;
    const fill = () => {
      while (next < indexes.length && ahead.length < READ_AHEAD) {
        const p = this.text(indexes[next++]!);
        p.catch(() => {});
        ahead.push(p);
      }
    };
    fill();
    for (let k = 0; k < indexes.length; k++) {
      const text = await ahead.shift()!;
      fill();
      yield [indexes[k]!, text];
    }
  }

  private *parse(i: number, text: string): Generator<Entry> {
    const [id, , count] = this.refs[i]!;
    const where = this.where;
    const segment = `entry segment ${id}`;
    // Entries are numbered across the whole manifest, as in the layout before segments.
    let n = this.firstEntry[i]!;
    let start = text.indexOf('\n');
    let archives: unknown;
    try {
      archives = (JSON.parse(text.slice(0, start)) as { archives?: unknown }).archives;
    } catch {
      archives = undefined;
    }
    if (start < 0 || !Array.isArray(archives) || !archives.every((k) => typeof k === 'string'))
      throw new IntegrityError(`manifest ${where} is corrupt (bad archive list in its ${segment})`);
    const local = archives.map((k: string) => {
      const j = this.archiveIndex.get(k);
      if (j === undefined)
        throw new IntegrityError(`manifest ${where}: its ${segment} refers to archive ${k}, which the manifest does not list`);
      return j;
    });
    const first = n;
    start++;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const line = text.slice(start, end);
      const e = this.layer && line.endsWith(',"deleted":true}') ? parseTombstone(line, ++n, where) : parseEntryLine(line, ++n, where);
      start = end + 1;
      if (e.archive !== undefined) e.archive = manifestArchive(local, e.archive, n, where);
      if (e.extents !== undefined) for (const x of e.extents) x[0] = manifestArchive(local, x[0], n, where);
      yield e;
    }
    if (n - first !== count)
      throw new IntegrityError(`manifest ${where}: its ${segment} holds ${n - first} entries where the manifest says ${count}`);
  }

  /** Segment i's text, checked against its id. */
  private async text(i: number): Promise<string> {
    const [id] = this.refs[i]!;
    const compressed = await this.compressed(i);
    let text: Buffer;
    try {
      // Output in one buffer of the size the frame declares (zstdCompress records it), when it
      // is within bounds: zlib's default small chunks cost a copy into one buffer at the end.
      const declared = zstdContentSize(compressed);
      const chunkSize = declared !== undefined && declared < MAX_SEGMENT_TEXT ? Math.max(64, declared + 1) : undefined;
      text = zlib.zstdDecompressSync(compressed, { maxOutputLength: MAX_SEGMENT_TEXT, ...(chunkSize ? { chunkSize } : {}) });
    } catch (e) {
      throw new IntegrityError(`manifest ${this.where}: entry segment ${id} cannot be decompressed: ${(e as Error).message}`);
    }
    if (this.idOf(text) !== id)
      throw new IntegrityError(`manifest ${this.where}: entry segment ${id} does not match its id (damaged or replaced)`);
    return text.toString('utf8');
  }

  private async compressed(i: number): Promise<Buffer> {
    if (this.cached.has(i)) return fs.readFile(path.join(await this.dir(), `${i}`));
    const b = await this.fetch(this.refs[i]![0]);
    if (this.keepCopies && !this.disposed) {
      await fs.writeFile(path.join(await this.dir(), `${i}`), b, { mode: 0o600 });
      this.cached.add(i);
    }
    return b;
  }

  private dir(): Promise<string> {
    this.cacheDir ??= makeTempDir('s3backup-segments-');
    return this.cacheDir;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    if (this.cacheDir) await fs.rm(await this.cacheDir, { recursive: true, force: true });
  }
}

/**
 * The decompressed size a zstd frame's header declares (RFC 8878, 3.1.1.1: Frame_Content_Size),
 * or undefined when it declares none or is not a zstd frame. Only a hint: the decompressor
 * still enforces its own bound.
 */
export function zstdContentSize(b: Buffer): number | undefined {
  if (b.length < 6 || b.readUInt32LE(0) !== 0xfd2fb528) return undefined;
  const descriptor = b[4]!;
  const singleSegment = (descriptor >> 5) & 1;
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]!;
  const width = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!;
  if (width === 0 || at + width > b.length) return undefined;
  if (width === 1) return b[at]!;
  if (width === 2) return b.readUInt16LE(at) + 256;
  if (width === 4) return b.readUInt32LE(at);
  const v = b.readBigUInt64LE(at);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}

/** A layer's tombstone line: exactly {"path":…,"deleted":true}. */
function parseTombstone(line: string, n: number, where: string): Entry {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    o = undefined;
  }
  const t = o as { path?: unknown; deleted?: unknown } | undefined;
  if (typeof t?.path !== 'string' || t.deleted !== true || Object.keys(t).length !== 2)
    throw new IntegrityError(`manifest ${where} is corrupt (entry ${n} of a layer is neither an entry nor a deletion)`);
  return tombstone(t.path);
}

/**
 * A manifest whose entries are its base segments with layers over them (docs/format.md
 * "Layers"): the entries of every one merged in tree order, a path's newest line winning, and
 * a path whose newest line is a tombstone left out.
 */
export class LayeredSegments implements EntrySegments {
  readonly refs: readonly SegmentRef[];
  readonly layers: readonly (readonly SegmentRef[])[];
  private readonly sources: StoredSegments[];

  /** `base` first, then its layers, oldest first. */
  constructor(base: StoredSegments, layers: StoredSegments[]) {
    this.refs = base.refs;
    this.layers = layers.map((l) => l.refs);
    this.sources = [base, ...layers];
  }

  async *entries(under: readonly string[] | undefined): AsyncGenerator<Entry> {
    const streams = this.sources.map((s) => s.entries(under));
    const heads: (Entry | undefined)[] = [];
    try {
      for (const s of streams) heads.push((await s.next()).value ?? undefined);
      for (;;) {
        // The smallest path among the streams' next entries, from the newest stream that has it.
        let newest = -1;
        for (let k = 0; k < heads.length; k++) {
          const h = heads[k];
          if (h && (newest < 0 || compareTreePaths(h.path, heads[newest]!.path) <= 0)) newest = k;
        }
        if (newest < 0) return;
        const winner = heads[newest]!;
        for (let k = 0; k < heads.length; k++) {
          if (heads[k]?.path === winner.path) heads[k] = (await streams[k]!.next()).value ?? undefined;
        }
        if (!TOMBSTONES.has(winner)) yield winner;
      }
    } finally {
      await Promise.all(streams.map((s) => s.return(undefined)));
    }
  }

  /** Every entry (with `under`, as entries gives them), in batches of 1,024. */
  async *batches(under?: readonly string[]): AsyncGenerator<Iterator<Entry>> {
    let batch: Entry[] = [];
    for await (const e of this.entries(under)) {
      batch.push(e);
      if (batch.length === 1024) {
        yield batch.values();
        batch = [];
      }
    }
    if (batch.length > 0) yield batch.values();
  }

  async dispose(): Promise<void> {
    await Promise.all(this.sources.map((s) => s.dispose()));
  }
}
