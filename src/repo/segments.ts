import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { IntegrityError } from '../errors.ts';
import { compareTreePaths, type Entry, type EntrySegments, MAX_ENTRY_LINE, parseEntryLine, type SegmentRef } from './manifest.ts';
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

/** FNV-1a over the path's UTF-16 code units: cheap, and the same for the same path on every run. */
function pathHash(p: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * An entry's line with its fields in one fixed order, whatever order its object was built in:
 * an unchanged entry must give the same bytes as in the parent, or its segment would not be
 * found again. `archive` is the index into the segment's own archive list.
 */
function entryLine(e: Entry, archive: number | undefined): string {
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
  if (e.target !== undefined) o.target = e.target;
  if (e.error !== undefined) o.error = e.error;
  if (e.changed !== undefined) o.changed = e.changed;
  if (e.xattrs !== undefined) o.xattrs = e.xattrs;
  return `${JSON.stringify(o)}\n`;
}

/**
 * Where an entry read from a parent's segments came from: segment `i`, position `j` in it, as
 * i × ORIGIN_SLOTS + j (-1: from nowhere, or not the same bytes). A writer given an entry with
 * its origin copies the parent's segment without serializing or hashing it (SegmentWriter).
 */
export const ORIGIN_SLOTS = 1 << 20;

/** What a writer needs to know of the parent's segments it may copy (StoredSegments gives it). */
export interface SegmentsRead {
  readonly refs: readonly SegmentRef[];
  /**
   * Of segment i, once read: the length of its entry lines before the last one (UTF-16 code
   * units, as SegmentWriter counts), to check that no cut for size fell inside it.
   */
  charsBeforeLast(i: number): number | undefined;
  /** Of segment i, once read: the length of all its entry lines. */
  chars(i: number): number | undefined;
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
export class SegmentWriter {
  readonly refs: SegmentRef[] = [];
  count = 0;
  /** Segments stored by this writer, and their bytes. */
  written = 0;
  bytesWritten = 0;
  /** Some path or target is not valid UTF-8 (see MANIFEST_VERSION). */
  byteNames = false;
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

  /**
   * The parent's segment the one being filled copies so far (-1: none): its first
   * `copied.length` entries came unchanged, in order, so its text and id are the parent's and
   * nothing is serialized or hashed. An entry that breaks the copy serializes those (`copied`).
   */
  private copyOf = -1;
  private copied: Entry[] = [];
  private readonly parent: SegmentsRead | undefined;

  /** `parent`: the parent's segments, whose entries `add` may be told are unchanged (their origin). */
  constructor(store: SegmentStore, known: ReadonlySet<string>, archiveKey: (i: number) => string, parent?: SegmentsRead) {
    this.store = store;
    this.known = known;
    this.archiveKey = archiveKey;
    this.parent = parent;
  }

  /**
   * Add the next entry (tree order); a promise only when the caller should wait. `origin`: the
   * parent's entry this one is byte for byte (ORIGIN_SLOTS), or -1.
   */
  add(e: Entry, origin = -1): Promise<void> | undefined {
    if (this.failure) throw this.failure.error;
    if (!this.byteNames && !(e.path.isWellFormed() && (e.target === undefined || e.target.isWellFormed()))) this.byteNames = true;
    if (this.copyOf >= 0) {
      const j = this.copied.length;
      const [id, , count] = this.parent!.refs[this.copyOf]!;
      // Still the parent's segment, where a cut would not fall (it did not in the parent).
      if (origin === this.copyOf * ORIGIN_SLOTS + j && j < count && !this.cutsBefore(j, 0, e.path)) {
        this.copied.push(e);
        this.count++;
        return undefined;
      }
      if (j === count && this.cutsBefore(j, this.parent!.chars(this.copyOf)!, e.path)) {
        // The whole segment, unchanged: the parent's id, already stored.
        this.refs.push([id, this.first, count]);
        this.copyOf = -1;
        this.copied = [];
      } else this.uncopy();
    }
    let wait: Promise<void> | undefined;
    if (this.cutsBefore(this.lines.length, this.textBytes, e.path)) wait = this.cut();
    if (this.lines.length === 0) {
      this.first = e.path;
      if (this.copyable(origin)) {
        this.copyOf = origin / ORIGIN_SLOTS;
        this.copied.push(e);
        this.count++;
        return wait;
      }
    }
    this.count++;
    this.append(e);
    return wait;
  }

  /** The cut rule (docs/format.md "Entry segments"): before an entry at index n, after `text` units of lines. */
  private cutsBefore(n: number, text: number, p: string): boolean {
    return n >= MAX_ENTRIES || text >= MAX_TEXT || (n >= MIN_ENTRIES && pathHash(p) % CUT_ONE_IN === 0);
  }

  /** Whether a segment may start as a copy of the parent's from this entry: its first, and no cut for size inside it. */
  private copyable(origin: number): boolean {
    if (origin < 0 || origin % ORIGIN_SLOTS !== 0 || !this.parent) return false;
    const before = this.parent.charsBeforeLast(origin / ORIGIN_SLOTS);
    return before !== undefined && before < MAX_TEXT;
  }

  /** The copy is broken: its entries serialized as any others. */
  private uncopy(): void {
    const copied = this.copied;
    this.copyOf = -1;
    this.copied = [];
    for (const c of copied) this.append(c);
  }

  private append(e: Entry): void {
    let archive: number | undefined;
    if (e.archive !== undefined) {
      const key = this.archiveKey(e.archive);
      archive = this.archiveIndex.get(key);
      if (archive === undefined) {
        archive = this.archiveKeys.push(key) - 1;
        this.archiveIndex.set(key, archive);
      }
    }
    const line = entryLine(e, archive);
    this.lines.push(line);
    this.textBytes += line.length;
  }

  /** Close the segment being filled; a promise when too many are being stored. */
  private cut(): Promise<void> | undefined {
    if (this.copyOf >= 0) this.uncopy();
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
    if (this.copyOf >= 0 && this.copied.length === this.parent!.refs[this.copyOf]![2]) {
      this.refs.push([this.parent!.refs[this.copyOf]![0], this.first, this.copied.length]);
      this.copyOf = -1;
      this.copied = [];
    }
    await this.cut();
    await Promise.all(this.inFlight);
    if (this.failure) throw this.failure.error;
  }

  /** A failed backup: wait for the stores under way (their objects are left to prune). */
  async dispose(): Promise<void> {
    await Promise.allSettled(this.inFlight);
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
 * A manifest's stored segments, fetched as they are read. Each is kept (compressed) in a
 * temporary file the first time, so a reader's further passes cost no more requests.
 */
export class StoredSegments implements EntrySegments, SegmentsRead {
  readonly refs: readonly SegmentRef[];
  /** Per segment, once read: its entry lines' length, and that before the last line (-1: not read). */
  private readonly lineChars: Float64Array;
  private readonly beforeLastChars: Float64Array;
  private readonly fetch: (id: string) => Promise<Buffer>;
  private readonly idOf: (text: Buffer) => string;
  private readonly archiveIndex: Map<string, number>;
  private readonly where: string;
  private cacheDir: Promise<string> | undefined;
  private readonly cached = new Set<number>();
  private readonly firstEntry: Float64Array;
  private disposed = false;

  constructor(
    refs: readonly SegmentRef[],
    archiveKeys: readonly string[],
    fetch: (id: string) => Promise<Buffer>,
    idOf: (text: Buffer) => string,
    where: string,
  ) {
    this.refs = refs;
    this.fetch = fetch;
    this.idOf = idOf;
    this.archiveIndex = new Map(archiveKeys.map((k, i) => [k, i]));
    this.where = where;
    // Entries are numbered across the whole manifest: those before each segment.
    this.firstEntry = new Float64Array(refs.length);
    for (let k = 1; k < refs.length; k++) this.firstEntry[k] = this.firstEntry[k - 1]! + refs[k - 1]![2];
    this.lineChars = new Float64Array(refs.length).fill(-1);
    this.beforeLastChars = new Float64Array(refs.length).fill(-1);
  }

  chars(i: number): number | undefined {
    const c = this.lineChars[i];
    return c === undefined || c < 0 ? undefined : c;
  }

  charsBeforeLast(i: number): number | undefined {
    const c = this.beforeLastChars[i];
    return c === undefined || c < 0 ? undefined : c;
  }

  /** The indexes of the segments to read: all, or those that may hold something under one of `under`. */
  select(under: readonly string[] | undefined): number[] {
    if (under === undefined || under.includes('')) return this.refs.map((_, i) => i);
    const picked = new Set<number>();
    for (const p of under) for (const i of segmentsUnder(this.refs, p)) picked.add(i);
    return [...picked].sort((a, b) => a - b);
  }

  /** The entries of the segments `indexes`, in order, each read a few ahead. */
  async *entries(indexes: readonly number[]): AsyncGenerator<Entry> {
    for await (const [i, text] of this.texts(indexes)) yield* this.parse(i, text);
  }

  /**
   * Every entry, a segment at a time (a backup's parent: one promise per segment, not per
   * entry). `index` is the segment's, so that entry j of it has origin index × ORIGIN_SLOTS + j;
   * -1 for the entries before a damaged one, which then ends them (the error is thrown next).
   */
  async *batches(): AsyncGenerator<{ index: number; entries: Entry[] }> {
    for await (const [i, text] of this.texts(this.refs.map((_, k) => k))) {
      const entries: Entry[] = [];
      try {
        for (const e of this.parse(i, text)) entries.push(e);
      } catch (e) {
        if (entries.length > 0) yield { index: -1, entries };
        throw e;
      }
      yield { index: i < Number.MAX_SAFE_INTEGER / ORIGIN_SLOTS ? i : -1, entries };
    }
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
    if (text.length > start && text.endsWith('\n')) {
      this.lineChars[i] = text.length - start;
      this.beforeLastChars[i] = text.lastIndexOf('\n', text.length - 2) + 1 - start;
    }
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const e = parseEntryLine(text.slice(start, end), ++n, where);
      start = end + 1;
      if (e.archive !== undefined) {
        const j = local[e.archive];
        if (j === undefined)
          throw new IntegrityError(`manifest ${where}: entry ${n} refers to archive ${e.archive} of its segment's ${local.length}`);
        e.archive = j;
      }
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
      text = zlib.zstdDecompressSync(compressed, { maxOutputLength: MAX_SEGMENT_TEXT });
    } catch (e) {
      throw new IntegrityError(`manifest ${this.where}: entry segment ${id} cannot be decompressed: ${(e as Error).message}`);
    }
    if (this.idOf(text) !== id)
      throw new IntegrityError(`manifest ${this.where}: entry segment ${id} does not match its id (damaged or replaced)`);
    return text.toString('utf8');
  }

  private async compressed(i: number): Promise<Buffer> {
    const file = path.join(await this.dir(), `${i}`);
    if (this.cached.has(i)) return fs.readFile(file);
    const b = await this.fetch(this.refs[i]![0]);
    if (!this.disposed) {
      await fs.writeFile(file, b, { mode: 0o600 });
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
