import * as fsSync from 'node:fs';
import { createReadStream, createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { z } from 'zod';
import type { Codec } from '../archive/codec.ts';
import type { FrameInfo } from '../archive/frames.ts';
import { IntegrityError, S3BackupError } from '../errors.ts';
import { zstdFrames } from '../archive/zstd-frames.ts';
import { checkShape, isTime, kindOf, type Same, TIME_MESSAGE } from '../schema.ts';
import { makeTempDir } from './temp-dirs.ts';

/** Where manifests being written or read are kept meanwhile (see temp-dirs.ts). */
const TEMP_PREFIX = 's3backup-manifest-';

/**
 * Manifest format (docs/format.md "Manifest"): NDJSON, zstd-compressed.
 *   line 1: ManifestHeader  (small, so `list` reads it with one ranged GET)
 *   line 2: { archives: ArchiveRef[] } — every archive this snapshot's content lives in, with
 *           its frame table, so the manifest alone is enough to restore (even after the
 *           manifests that first wrote those archives are forgotten)
 * Version 3: line 3 is { segments: SegmentRef[] }, and the entries are in segments stored on
 * their own (src/repo/segments.ts), shared by every manifest whose entries there are the same.
 * Versions 1 and 2: the entries follow, one per line in archive (tree) order, in the same object.
 */
export const MANIFEST_FORMAT = 's3backup-manifest';
/**
 * The highest manifest version this s3backup reads, and the one it writes. Version 2 is
 * version 1 with names that are not valid UTF-8 (held as escaped bytes: src/archive/names.ts),
 * which a reader of version 1 would take for U+FFFD and restore under another name, so it
 * must refuse them ("upgrade s3backup"); version 3 keeps the entries in segments.
 */
export const MANIFEST_VERSION = 4;
/** From this version on, the entries are in segments (line 3), not in the manifest object. */
export const SEGMENTED_MANIFEST_VERSION = 3;
/**
 * The version of a manifest whose entries (its segments and layers included) hold an entry with
 * `extents`: a reader of version 3 would take such a file for one with no content. A manifest
 * without one still says SEGMENTED_MANIFEST_VERSION, so that version 3 readers keep reading it.
 */
export const EXTENTS_MANIFEST_VERSION = 4;

/**
 * One entry segment, as line 3 lists them: its id (hex; the key of the object that holds it),
 * the path of its first entry, and how many entries it holds. Segments come in tree order.
 */
export type SegmentRef = [id: string, first: string, entries: number];

/** Line 3 of a segmented manifest: its base segments and the layers over them, oldest first. */
export interface SegmentsLine {
  segments: SegmentRef[];
  layers?: SegmentRef[][];
}

/** A segmented manifest's entries, read from the store (src/repo/segments.ts). */
export interface EntrySegments {
  /** The base segments. */
  readonly refs: readonly SegmentRef[];
  /** The layers over them, oldest first (none: empty). */
  readonly layers: readonly (readonly SegmentRef[])[];
  /** Every entry in tree order; with `under`, at least those at or below one of these paths, reading only the segments that may hold them. */
  entries(under: readonly string[] | undefined): AsyncGenerator<Entry>;
  /**
   * Every entry (with `under`, as entries gives them), a batch at a time (a promise per batch,
   * not per entry), each batch parsed as it is pulled, so that its entries die young (in V8's
   * young generation) instead of living, a whole segment of them at once, into the old one.
   */
  batches(under?: readonly string[]): AsyncGenerator<Iterator<Entry>>;
  dispose(): Promise<void>;
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

export const ENTRY_TYPES = ['file', 'dir', 'symlink', 'hardlink', 'other'] as const;
export type EntryType = (typeof ENTRY_TYPES)[number];

export interface Entry {
  /** Path inside the snapshot: "<source name>/<relative path>", "/"-separated. */
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, milliseconds since the epoch (fractional: sub-ms precision kept). */
  mtime: number;
  /** Status change time and inode: change detection for incremental backups. */
  ctime: number;
  ino: number;
  /** Content size (files, and hard links, which share their first link's content). */
  size: number;
  /** SHA-256 (hex) of the content (files and hard links). */
  sha256?: string;
  /** Index into the manifest's archives list of the archive holding the content. */
  archive?: number;
  /** Uncompressed offset of this entry's first tar header block in that archive. */
  header?: number;
  /** Uncompressed offset of its content in that archive. */
  offset?: number;
  /**
   * Instead of `archive`/`offset`: the content as runs of bytes in archives, in order
   * (docs/format.md "Extents"); the file is their concatenation.
   */
  extents?: Extent[];
  /**
   * A large file's content-defined chunks (docs/format.md "Changes in place"): base64 of
   * CHUNK_RECORD bytes a chunk, its length (u32 BE) and the first 16 bytes of its SHA-256.
   */
  chunks?: string;
  /** Symlink target (as stored, never followed), or for hard links the path of the first link. */
  target?: string;
  /** Set when the entry could not be backed up (it is in the listing but has no content). */
  error?: string;
  /** Set when the file changed while it was read: the stored content may be inconsistent. */
  changed?: boolean;
  /**
   * Extended attributes (POSIX ACLs, file capabilities, user.*, …): name → value in base64
   * (docs/format.md "Extended attributes"). Absent when the entry has none, or they were not
   * read (--no-xattrs).
   */
  xattrs?: Record<string, string>;
}

export interface ArchiveRef {
  /** Backup id that wrote the archive. */
  id: string;
  key: string;
  codec: Codec;
  /**
   * Which of that backup's archives (2, 3, …) when it was split (BackupOptions.archiveSize);
   * absent for its first, or only, one.
   */
  part?: number;
  /** Bytes as stored. */
  size: number;
  /** SHA-256 (hex) of the stored bytes. */
  sha256: string;
  uncompressedSize: number;
  frames: FrameInfo[];
  /**
   * Encrypted repositories: each frame is sealed with AES-256-GCM under a key derived from the
   * master key, this salt (base64) and `id` (with `.part` for a part; docs/format.md "Encryption"); `frames` then holds
   * sealed sizes.
   */
  encryption?: { salt: string };
}

export interface BackupStats {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /**
   * Entries seen but not stored: unreadable, special files, vanished between listing and
   * reading, names it cannot hold (each named in the warnings).
   */
  skipped: number;
  /** Files stored as read, but that changed while being read (each named in the warnings). Absent in older manifests. */
  changedWhileRead?: number;
  /** Bytes of file content read from the source (new and changed files, for an incremental). */
  bytesIn: number;
  /** Bytes of file content in the snapshot (read or referenced). Absent in early v1 manifests. */
  bytesTotal?: number;
  /** Against the parent backup (an incremental's; a full counts every file as new). */
  newFiles?: number;
  changedFiles?: number;
  unchangedFiles?: number;
  deletedFiles?: number;
  /**
   * Of the new and changed files, those whose content the repository already held (renamed,
   * copied, stored by another backup): pointed at, not stored again; and their bytes. Absent
   * in older manifests.
   */
  foundFiles?: number;
  foundBytes?: number;
  /** Bytes this backup added to the store (its archive plus its manifest). */
  bytesStored: number;
  /**
   * Of those, the manifest's: the manifest object and the entry segments this backup stored
   * (the unchanged ones are its parent's). Absent before version 3.
   */
  manifestBytes?: number;
  /** Compressed archive bytes written by this backup. */
  archiveBytes: number;
  durationMs: number;
  /** bytesIn / archiveBytes (1 for no data). */
  compressionRatio: number;
  warnings: number;
}

/** A run of a file's bytes: `length` bytes at uncompressed `offset` of archive `archive` (an index into the archives line). */
export type Extent = [archive: number, offset: number, length: number];

/**
 * The most extents one entry may hold (readers refuse more): the parts of a file changed in
 * place many times over stay a few hundred; writers store the file whole again long before
 * (MAX_FILE_EXTENTS in src/backup/extents.ts).
 */
export const MAX_EXTENTS = 65_536;

/** Whether the entry says where content is: `archive` and `offset`, or `extents`. */
export function hasLocation(e: Entry): boolean {
  return e.extents !== undefined || (e.archive !== undefined && e.offset !== undefined);
}

/**
 * Whether the entry is a file stored whole and checked: read without error or change, with a
 * SHA-256 and a location. Only such a copy may stand for the file in a later backup (unchanged,
 * or the base an append or a change in place builds on).
 */
export function isWholeFile(e: Entry): e is Entry & { sha256: string } {
  return e.type === 'file' && e.error === undefined && !e.changed && e.sha256 !== undefined && hasLocation(e);
}

/**
 * Where an entry's content is, as runs of bytes in archives, in file order: its `extents`, or
 * the one run `archive`/`offset`/`size`; none when it says no location. Every reader of content
 * goes through this, so that whole files and files in extents are read one way.
 */
export function contentRanges(e: Entry): Extent[] {
  if (e.extents !== undefined) return e.extents;
  if (e.archive === undefined || e.offset === undefined) return [];
  return [[e.archive, e.offset, e.size]];
}

/**
 * What is wrong with where an entry says its content is (archive listed, offset and size
 * inside that archive, a SHA-256 to check it by; extents each inside a listed archive and
 * adding up to `size`), or undefined. Restore, cat and verify all check this before reading:
 * manifests come from storage we do not fully trust.
 */
export function contentLocationProblem(e: Entry, archives: ArchiveRef[]): string | undefined {
  if (!Number.isSafeInteger(e.size) || e.size < 0) return 'has an invalid size in the manifest';
  if (e.extents !== undefined) {
    const problem = extentsProblem(e, archives);
    if (problem) return problem;
  } else {
    const a = e.archive === undefined ? undefined : archives[e.archive];
    if (!a) return `refers to archive ${e.archive}, which the manifest does not list`;
    if (!Number.isSafeInteger(e.offset) || e.offset! < 0) return 'has an invalid offset or size in the manifest';
    if (e.offset! + e.size > a.uncompressedSize) return `lies beyond the end of its archive ${a.key}`;
  }
  if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) {
    return 'has no valid SHA-256 in the manifest, so its content cannot be checked';
  }
  return undefined;
}

/** contentLocationProblem of an entry with extents. */
function extentsProblem(e: Entry, archives: ArchiveRef[]): string | undefined {
  const extents = e.extents!;
  if (e.archive !== undefined || e.offset !== undefined) return 'has both extents and an archive offset in the manifest';
  if (extents.length === 0 || extents.length > MAX_EXTENTS) return `has ${extents.length} extents (1 to ${MAX_EXTENTS} allowed)`;
  let total = 0;
  for (let i = 0; i < extents.length; i++) {
    const [archive, offset, length] = extents[i]!;
    const a = Number.isSafeInteger(archive) && archive >= 0 ? archives[archive] : undefined;
    if (!a) return `extent ${i + 1} refers to archive ${archive}, which the manifest does not list`;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 1)
      return `extent ${i + 1} has an invalid offset or length in the manifest`;
    if (offset + length > a.uncompressedSize) return `extent ${i + 1} lies beyond the end of its archive ${a.key}`;
    total += length;
  }
  if (total !== e.size) return `has extents of ${total} bytes in all, where its size is ${e.size}`;
  return undefined;
}

/** Stats before anything is counted (the incremental counters included). */
export function emptyStats(): BackupStats {
  return {
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    skipped: 0,
    changedWhileRead: 0,
    bytesIn: 0,
    bytesTotal: 0,
    newFiles: 0,
    changedFiles: 0,
    unchangedFiles: 0,
    deletedFiles: 0,
    foundFiles: 0,
    foundBytes: 0,
    bytesStored: 0,
    archiveBytes: 0,
    durationMs: 0,
    compressionRatio: 1,
    warnings: 0,
  };
}

export interface ManifestHeader {
  format: typeof MANIFEST_FORMAT;
  version: number;
  id: string;
  /** ISO time the backup started. */
  time: string;
  endTime: string;
  kind: 'full' | 'incremental';
  /** The backup an incremental was compared with. */
  parent?: string;
  /** Incrementals since the last full backup (0 for a full), and when that full started. */
  chain?: number;
  chainStart?: string;
  host: string;
  /** Absolute source paths and the top-level name each has inside the snapshot. */
  sources: { path: string; name: string }[];
  tags: string[];
  toolVersion: string;
  /** xattrs: whether entries record their extended attributes (false: --no-xattrs; absent: written before they were stored). */
  options: { codec: Codec; level?: number | undefined; frameSize: number; excludes: string[]; xattrs?: boolean };
  stats: BackupStats;
  /** The first warnings (all of them are also on their entries); stats.warnings counts all. */
  warnings: string[];
}

export const MAX_HEADER_WARNINGS = 100;

// ---------------------------------------------------------------------------------------------
// What a reader accepts (src/schema.ts, docs/format.md "Validation"). Every manifest
// s3backup wrote has had these fields; the optional ones were added over version 1 (stats
// bytesTotal and the new/changed/unchanged/deleted counters, chain, chainStart, an archive's
// part and encryption). Unknown fields pass.

export const CodecSchema = z.enum(['zstd', 'gzip', 'none']);
true satisfies Same<z.output<typeof CodecSchema>, Codec>;

const time = z.string().refine(isTime, TIME_MESSAGE);

const StatsSchema = z.object({
  files: z.number(),
  dirs: z.number(),
  symlinks: z.number(),
  hardlinks: z.number(),
  skipped: z.number(),
  changedWhileRead: z.number().optional(),
  bytesIn: z.number(),
  bytesTotal: z.number().optional(),
  newFiles: z.number().optional(),
  changedFiles: z.number().optional(),
  unchangedFiles: z.number().optional(),
  deletedFiles: z.number().optional(),
  foundFiles: z.number().optional(),
  foundBytes: z.number().optional(),
  bytesStored: z.number(),
  manifestBytes: z.number().optional(),
  archiveBytes: z.number(),
  durationMs: z.number(),
  compressionRatio: z.number(),
  warnings: z.number(),
});
true satisfies Same<z.output<typeof StatsSchema>, BackupStats>;

const HeaderSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.int().min(1),
  id: z.string(),
  time,
  endTime: time,
  kind: z.enum(['full', 'incremental']),
  parent: z.string().optional(),
  chain: z.number().optional(),
  chainStart: time.optional(),
  host: z.string(),
  sources: z.array(z.object({ path: z.string(), name: z.string() })),
  tags: z.array(z.string()),
  toolVersion: z.string(),
  options: z.object({
    codec: CodecSchema,
    level: z.number().optional(),
    frameSize: z.number(),
    excludes: z.array(z.string()),
    xattrs: z.boolean().optional(),
  }),
  stats: StatsSchema,
  warnings: z.array(z.string()),
});
true satisfies Same<z.output<typeof HeaderSchema>, ManifestHeader>;

const ArchiveRefSchema = z.object({
  id: z.string(),
  key: z.string().min(1),
  codec: CodecSchema,
  part: z.number().optional(),
  size: z.number(),
  sha256: z.string(),
  uncompressedSize: z.number(),
  frames: z.array(z.tuple([z.number(), z.number()])),
  encryption: z.object({ salt: z.string() }).optional(),
});
true satisfies Same<z.output<typeof ArchiveRefSchema>, ArchiveRef>;

const ArchivesLineSchema = z.object({ archives: z.array(ArchiveRefSchema) });

const SegmentRefSchema = z.tuple([z.string().regex(/^[0-9a-f]{64}$/, 'a segment id (64 hex digits)'), z.string(), z.int().min(1)]);
export const SegmentsLineSchema = z.object({
  segments: z.array(SegmentRefSchema),
  layers: z.array(z.array(SegmentRefSchema).min(1)).optional(),
});
true satisfies Same<z.output<typeof SegmentsLineSchema>['segments'][number], SegmentRef>;
true satisfies Same<z.output<typeof SegmentsLineSchema>, SegmentsLine>;

/** "header" + "field … must be …", or + "it must be an object" → "header must be an object". */
function about(what: string, problem: string): string {
  return problem.startsWith('it ') ? `${what} ${problem.slice(3)}` : `${what} ${problem}`;
}

/** The error for a manifest whose content is not what s3backup writes. */
function damagedManifest(where: string, problem: string): IntegrityError {
  const id = /([^/]+?)\.ndjson\.zst(?:\.enc)?$/.exec(where)?.[1];
  return new IntegrityError(`manifest ${where} is damaged: ${problem}`, {
    hint: `${id ? `check it with "s3backup verify ${id}"; ` : ''}if that backup is lost, delete ${where} by hand (prune refuses to run while it is there, then frees what only it used)`,
  });
}

/**
 * The zod schema entryProblem stands for: not used to read entries (too slow for millions of
 * lines, see below), but the reference the test and scripts/bench-manifest-schema.mjs hold the
 * hand-written check to. Same<> keeps it equal to Entry.
 */
export const EntrySchema = z.object({
  path: z.string(),
  type: z.enum(ENTRY_TYPES),
  mode: z.number(),
  uid: z.number(),
  gid: z.number(),
  mtime: z.number(),
  ctime: z.number(),
  ino: z.number(),
  size: z.number(),
  sha256: z.string().optional(),
  archive: z.number().optional(),
  header: z.number().optional(),
  offset: z.number().optional(),
  extents: z.array(z.tuple([z.number(), z.number(), z.number()])).optional(),
  chunks: z.string().optional(),
  target: z.string().optional(),
  error: z.string().optional(),
  changed: z.boolean().optional(),
  xattrs: z.record(z.string(), z.string()).optional(),
});
true satisfies Same<z.output<typeof EntrySchema>, Entry>;

/**
 * Entries are checked by hand, not by zod: a restore, ls or verify of a backup of a million
 * files parses a million lines, and zod's object parse adds three quarters to the JSON.parse of
 * each; a loop over a table of the fields adds a quarter (V8's keyed loads of changing names);
 * this straight-line check about a seventh, lost in the noise of the whole read path
 * (scripts/bench-manifest-schema.mjs: the numbers are in its header).
 *
 * It is exactly as strict as the zod schema of Entry would be: every field with its JSON type,
 * required or optional (optional means absent: null is wrong), `type` one of ENTRY_TYPES,
 * unknown fields accepted. test/damaged-objects.test.ts holds it to that schema (which Same<>
 * keeps equal to Entry) for every field and many values, so a field added to Entry and not
 * checked here fails that test. ENTRY_FIELDS, which the build keeps in step with Entry (each
 * field's JSON type and whether it is required), words the messages and lists what
 * entryProblem must check.
 */
type JsonKind<T> = T extends string
  ? 'string'
  : T extends number
    ? 'number'
    : T extends boolean
      ? 'boolean'
      : T extends Extent[]
        ? 'extents'
        : T extends Record<string, string>
          ? 'object of strings'
          : never;
const ENTRY_FIELDS: {
  readonly [K in keyof Entry]-?: readonly [
    kind: JsonKind<Exclude<Entry[K], undefined>>,
    required: undefined extends Entry[K] ? false : true,
  ];
} = {
  path: ['string', true],
  type: ['string', true],
  mode: ['number', true],
  uid: ['number', true],
  gid: ['number', true],
  mtime: ['number', true],
  ctime: ['number', true],
  ino: ['number', true],
  size: ['number', true],
  sha256: ['string', false],
  archive: ['number', false],
  header: ['number', false],
  offset: ['number', false],
  extents: ['extents', false],
  chunks: ['string', false],
  target: ['string', false],
  error: ['string', false],
  changed: ['boolean', false],
  xattrs: ['object of strings', false],
};
const ENTRY_TYPE_SET: ReadonlySet<unknown> = new Set(ENTRY_TYPES);
const KIND_TEXT = {
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  'object of strings': 'an object whose values are strings',
  extents: 'an array of [archive, offset, length] number triples',
};

/** Is x an array of three-number arrays (an entry's extents)? */
function isExtentList(x: unknown): boolean {
  if (!Array.isArray(x)) return false;
  for (const t of x) {
    if (!Array.isArray(t) || t.length !== 3 || typeof t[0] !== 'number' || typeof t[1] !== 'number' || typeof t[2] !== 'number')
      return false;
  }
  return true;
}

/** Is x a plain object whose every value is a string (an entry's xattrs)? */
function isStringRecord(x: unknown): boolean {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  for (const k in x) if (typeof (x as Record<string, unknown>)[k] !== 'string') return false;
  return true;
}

/** What is wrong with field `name` of an entry, whose value `v` failed its check. */
function entryFieldProblem(name: keyof Entry, v: unknown): string {
  if (v === undefined) return `field "${name}" is missing`;
  if (name === 'xattrs' && typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const [k, bad] = Object.entries(v).find(([, x]) => typeof x !== 'string')!;
    return `field "xattrs" must be an object whose values are strings (${JSON.stringify(k)} is ${kindOf(bad)})`;
  }
  if (name === 'type' && typeof v === 'string')
    return `field "type" must be one of ${ENTRY_TYPES.map((t) => JSON.stringify(t)).join(', ')} (it is ${JSON.stringify(v)})`;
  return `field "${name}" must be ${KIND_TEXT[ENTRY_FIELDS[name][0]]} (it is ${kindOf(v)})`;
}

/** What is wrong with the shape of a parsed entry line, or undefined. */
export function entryProblem(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return `it must be an object (it is ${kindOf(x)})`;
  const e = x as { [K in keyof Entry]?: unknown };
  if (typeof e.path !== 'string') return entryFieldProblem('path', e.path);
  if (!ENTRY_TYPE_SET.has(e.type)) return entryFieldProblem('type', e.type);
  if (typeof e.mode !== 'number') return entryFieldProblem('mode', e.mode);
  if (typeof e.uid !== 'number') return entryFieldProblem('uid', e.uid);
  if (typeof e.gid !== 'number') return entryFieldProblem('gid', e.gid);
  if (typeof e.mtime !== 'number') return entryFieldProblem('mtime', e.mtime);
  if (typeof e.ctime !== 'number') return entryFieldProblem('ctime', e.ctime);
  if (typeof e.ino !== 'number') return entryFieldProblem('ino', e.ino);
  if (typeof e.size !== 'number') return entryFieldProblem('size', e.size);
  if (e.sha256 !== undefined && typeof e.sha256 !== 'string') return entryFieldProblem('sha256', e.sha256);
  if (e.archive !== undefined && typeof e.archive !== 'number') return entryFieldProblem('archive', e.archive);
  if (e.header !== undefined && typeof e.header !== 'number') return entryFieldProblem('header', e.header);
  if (e.offset !== undefined && typeof e.offset !== 'number') return entryFieldProblem('offset', e.offset);
  if (e.extents !== undefined && !isExtentList(e.extents)) return entryFieldProblem('extents', e.extents);
  if (e.chunks !== undefined && typeof e.chunks !== 'string') return entryFieldProblem('chunks', e.chunks);
  if (e.target !== undefined && typeof e.target !== 'string') return entryFieldProblem('target', e.target);
  if (e.error !== undefined && typeof e.error !== 'string') return entryFieldProblem('error', e.error);
  if (e.changed !== undefined && typeof e.changed !== 'boolean') return entryFieldProblem('changed', e.changed);
  if (e.xattrs !== undefined && !isStringRecord(e.xattrs)) return entryFieldProblem('xattrs', e.xattrs);
  return undefined;
}

/**
 * Bounds on what a manifest decompresses to (docs/format.md "Decompression bounds"): manifests
 * have no frame table, so these keep a small hostile or corrupt object from taking a reader's
 * memory. The head frame (header and archives lines; its frame tables take ~18 bytes per frame,
 * so this holds those of ~14 TiB of archives at 4 MiB frames) and each of those two lines are at
 * most MAX_MANIFEST_HEAD bytes; every entry line at most MAX_ENTRY_LINE. Entries are streamed,
 * never held whole, so their number is not bounded here.
 */
export const MAX_MANIFEST_HEAD = 64 << 20;
export const MAX_ENTRY_LINE = 16 << 20;

/** What a writer puts on line 3. */
export interface SegmentsLineOut {
  refs: readonly SegmentRef[];
  layers?: readonly (readonly SegmentRef[])[];
}

/** The head frame: header and archives lines, and in a segmented manifest the segments line. */
export function encodeManifestHead(header: ManifestHeader, archives: ArchiveRef[], segments?: SegmentsLineOut): Buffer {
  const line = segments && (segments.layers?.length ? { segments: segments.refs, layers: segments.layers } : { segments: segments.refs });
  const text = Buffer.from(`${JSON.stringify(header)}\n${JSON.stringify({ archives })}\n${line ? `${JSON.stringify(line)}\n` : ''}`);
  if (text.length > MAX_MANIFEST_HEAD) {
    // Readers refuse a larger head (MAX_MANIFEST_HEAD): better no manifest than an unreadable one.
    const frames = archives.reduce((n, a) => n + a.frames.length, 0);
    throw new S3BackupError(
      `the manifest's head would be ${text.length} bytes, more than the format's ${MAX_MANIFEST_HEAD} (frame tables of ${frames} frames)`,
      {
        hint: 'back up with a larger frame size (config.json defaults.frameSize, at most 16 MiB), or split the sources into several backups',
      },
    );
  }
  return zlib.zstdCompressSync(text, {
    params: { [zlib.constants.ZSTD_c_compressionLevel]: 6, [zlib.constants.ZSTD_c_checksumFlag]: 1 },
  });
}

/** zstd skippable frame (magic 0x184D2A50 + 4-byte length + data): every decoder passes over it. */
const SKIPPABLE_MAGIC = 0x184d2a50;
const SKIPPABLE_HEADER = 8;

/** A skippable frame of exactly `total` bytes (at least SKIPPABLE_HEADER), its data zeros. */
function paddingFrame(total: number): Buffer {
  const pad = Buffer.alloc(total);
  pad.writeUInt32LE(SKIPPABLE_MAGIC, 0);
  pad.writeUInt32LE(total - SKIPPABLE_HEADER, 4);
  return pad;
}

/**
 * The head of a manifest whose stats.bytesStored counts the manifest itself: `otherBytes` (the
 * archives) plus `manifestSize(head length)`. That size depends on the head that states it, and
 * re-encoding until it stops changing can flip forever between two lengths (the number that fits
 * length L compresses to L+4, whose number compresses to L). So try each head length near the
 * first guess, nearest first, for one whose number encodes to exactly that length; if none does,
 * move endTime on by a millisecond (another input to the compressor) and search again, up to
 * 100 times. Some heads have no such length whatever endTime says (about 1 backup in 4,000 with
 * real headers: the digits of the size alone flip the compressed length): then the head is the
 * encoding for a slightly larger length followed by a zstd skippable frame that makes up the
 * difference, which readers and `zstd -d` pass over. Sets header.stats.bytesStored (and maybe
 * header.endTime) to what the head says.
 */
export function settleManifestHead(
  header: ManifestHeader,
  archives: ArchiveRef[],
  otherBytes: number,
  manifestSize: (headLen: number) => number,
  segments?: SegmentsLineOut & { bytes: number },
): Buffer {
  const encodeFor = (len: number) => {
    header.stats.bytesStored = otherBytes + manifestSize(len);
    if (segments) header.stats.manifestBytes = manifestSize(len) + segments.bytes;
    return encodeManifestHead(header, archives, segments);
  };
  let guess = 0;
  for (let nudge = 0; nudge < 100; nudge++) {
    if (nudge > 0) header.endTime = new Date(Date.parse(header.endTime) + 1).toISOString();
    guess = encodeFor(encodeManifestHead(header, archives, segments).length).length;
    for (let d = 0; d <= 16; d = d > 0 ? -d : 1 - d) {
      const head = encodeFor(guess + d);
      if (head.length === guess + d) return head;
    }
  }
  for (let len = guess + 2 * SKIPPABLE_HEADER; len < guess + 1024; len++) {
    const head = encodeFor(len);
    if (len - head.length >= SKIPPABLE_HEADER) return Buffer.concat([head, paddingFrame(len - head.length)]);
  }
  throw new Error('manifest head: no length states its own size (this is a bug)');
}

/** A line longer than lines() was told to accept; `line` counts from 1. */
export class LineTooLongError extends Error {
  readonly line: number;
  readonly max: number;
  constructor(line: number, max: number) {
    super(`line ${line} runs past ${max} bytes`);
    this.line = line;
    this.max = max;
  }
}

/**
 * Split a byte stream into UTF-8 lines (the last one may lack its \n). Only the line being
 * read is held; with maxLine (bytes, by 0-based line index) a longer one throws LineTooLongError
 * as soon as it passes the bound, so a stream that never ends its line cannot fill the memory.
 * skipEmpty: empty lines are passed over without being handed out.
 */
export async function* lines(
  stream: AsyncIterable<Buffer | string>,
  opts: { maxLine?: (index: number) => number; skipEmpty?: boolean } = {},
): AsyncGenerator<string> {
  let parts: Buffer[] = [];
  let have = 0;
  let n = 0;
  let max = opts.maxLine?.(0) ?? Infinity;
  const text = (b: Buffer): string => {
    const t = b.toString('utf8');
    return n === 0 && t.charCodeAt(0) === 0xfeff ? t.slice(1) : t; // a BOM, as TextDecoder drops it
  };
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    // Searched in each chunk once: a long line costs no rescans (\n never occurs inside a UTF-8 sequence).
    for (;;) {
      if (opts.skipEmpty && have === 0) {
        // A run of empty lines is stepped over byte by byte here, not one search (a native call) each.
        const from = start;
        while (start < buf.length && buf[start] === 10) start++;
        if (start > from) max = opts.maxLine?.((n += start - from)) ?? Infinity;
      }
      const i = buf.indexOf(10, start);
      if (i < 0) break;
      const length = have + i - start;
      if (length > max) throw new LineTooLongError(n + 1, max);
      if (length > 0 || !opts.skipEmpty) {
        const line = have === 0 ? text(buf.subarray(start, i)) : text(Buffer.concat([...parts, buf.subarray(start, i)], length));
        parts = [];
        have = 0;
        yield line;
      }
      max = opts.maxLine?.(++n) ?? Infinity;
      start = i + 1;
    }
    if (start < buf.length) {
      have += buf.length - start;
      if (have > max) throw new LineTooLongError(n + 1, max);
      parts.push(start === 0 ? buf : buf.subarray(start));
    }
  }
  if (have > 0) yield text(Buffer.concat(parts, have));
}

function parseJson(line: string | undefined, what: string, where: string): unknown {
  if (line === undefined) throw new IntegrityError(`manifest ${where} is truncated (no ${what})`);
  try {
    return JSON.parse(line);
  } catch {
    throw new IntegrityError(`manifest ${where} is corrupt (bad ${what})`);
  }
}

export function checkHeader(h: unknown, where: string): ManifestHeader {
  const o = h as Partial<Record<keyof ManifestHeader, unknown>> | null;
  if (o?.format !== MANIFEST_FORMAT) throw new IntegrityError(`${where} is not an s3backup manifest`);
  if (typeof o.version === 'number' && o.version > MANIFEST_VERSION) {
    throw new IntegrityError(`${where} has manifest version ${o.version}; this s3backup reads up to ${MANIFEST_VERSION}`, {
      hint: 'upgrade s3backup',
    });
  }
  return checkShape(HeaderSchema, h, (problem) => damagedManifest(where, about('header', problem)));
}

/** Line 1 of a manifest: its header, checked. */
export function parseHeaderLine(line: string | undefined, where: string): ManifestHeader {
  return checkHeader(parseJson(line, 'header', where), where);
}

/** Line 2 of a manifest: its archives, checked. */
export function parseArchivesLine(line: string | undefined, where: string): ArchiveRef[] {
  const value = parseJson(line, 'archive list', where);
  return checkShape(ArchivesLineSchema, value, (problem) => damagedManifest(where, about('archive list', problem))).archives;
}

const SEGMENT_ID = /^[0-9a-f]{64}$/;

/**
 * Whether `value` is a segments line SegmentsLineSchema accepts, checked by hand: the list has
 * an item per ~1,300 entries (800 at a million files), and zod's first parse of it is most of
 * the CPU a lookup spends on the manifest's head. Never more lenient than the schema; what it
 * refuses goes to the schema, which words the problem.
 */
export function isSegmentsLine(value: unknown): value is SegmentsLine {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const { segments, layers } = value as { segments?: unknown; layers?: unknown };
  if (!isSegmentRefs(segments)) return false;
  if (layers === undefined) return true;
  return Array.isArray(layers) && layers.every((l) => isSegmentRefs(l) && l.length >= 1);
}

/** Whether `refs` is an array of SegmentRefSchema's tuples (see isSegmentsLine). */
function isSegmentRefs(refs: unknown): refs is SegmentRef[] {
  if (!Array.isArray(refs)) return false;
  for (const s of refs) {
    if (!Array.isArray(s) || s.length !== 3) return false;
    const [id, first, entries] = s as unknown[];
    if (typeof id !== 'string' || !SEGMENT_ID.test(id) || typeof first !== 'string') return false;
    if (!Number.isSafeInteger(entries) || (entries as number) < 1) return false;
  }
  return true;
}

/** Line 3 of a segmented manifest: its entry segments, checked. */
export function parseSegmentsLine(line: string | undefined, where: string): SegmentsLine {
  const value = parseJson(line, 'segment list', where);
  if (isSegmentsLine(value)) return value;
  return checkShape(SegmentsLineSchema, value, (problem) => damagedManifest(where, about('segment list', problem)));
}

/** An entry line (entry `n`, from 1), checked (see entryProblem). */
export function parseEntryLine(line: string, n: number, where: string): Entry {
  const e = parseJson(line, `entry ${n}`, where);
  const problem = entryProblem(e);
  if (problem !== undefined) throw damagedManifest(where, about(`entry ${n}`, problem));
  return e as Entry;
}

/** Parse just the header from the start of a manifest object (which may be truncated). */
export async function parseHeaderPrefix(prefix: Buffer, where: string): Promise<ManifestHeader | undefined> {
  const dec = zlib.createZstdDecompress();
  const parts: Buffer[] = [];
  let have = 0;
  const result = await new Promise<string | undefined>((resolve, reject) => {
    dec.on('data', (d: Buffer) => {
      const nl = d.indexOf(10);
      if (have + (nl < 0 ? d.length : nl) > MAX_MANIFEST_HEAD) {
        // Never a real header: stop decompressing (it could go on for gigabytes).
        dec.destroy();
        reject(headTooLarge(where, 'its header line'));
        return;
      }
      if (nl < 0) {
        parts.push(d);
        have += d.length;
        return;
      }
      parts.push(d.subarray(0, nl));
      resolve(Buffer.concat(parts, have + nl).toString('utf8'));
      dec.destroy();
    });
    dec.on('error', () => resolve(undefined));
    dec.on('end', () => resolve(undefined));
    dec.end(prefix);
  });
  if (result === undefined) return undefined;
  return parseHeaderLine(result, where);
}

function headTooLarge(where: string, what: string): IntegrityError {
  return new IntegrityError(
    `manifest ${where}: ${what} decompresses to more than ${MAX_MANIFEST_HEAD} bytes (refused: corrupt, or a decompression bomb)`,
  );
}

/**
 * The text of a manifest's head frame (header and archives lines), decompressed whole; undefined
 * if it decompresses to more than MAX_MANIFEST_HEAD bytes (zlib stops there, so refusing costs
 * no more memory than the bound). Throws IntegrityError if it does not decompress.
 */
export function headFrameText(frame: Buffer, where: string): string | undefined {
  try {
    return zlib.zstdDecompressSync(frame, { maxOutputLength: MAX_MANIFEST_HEAD }).toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === 'ERR_BUFFER_TOO_LARGE') return undefined;
    throw new IntegrityError(`manifest ${where} cannot be decompressed: ${(e as Error).message}`);
  }
}

/** Each of the head's two lines may take MAX_MANIFEST_HEAD bytes; each entry MAX_ENTRY_LINE. */
const manifestLineBound = (index: number) => (index < 2 ? MAX_MANIFEST_HEAD : MAX_ENTRY_LINE);

/** A read error of a manifest's content as an IntegrityError naming it. */
function readError(e: unknown, where: string): S3BackupError {
  // Our own errors as they are: a download the network cut is not a damaged manifest.
  if (e instanceof S3BackupError) return e;
  if (e instanceof LineTooLongError) {
    return new IntegrityError(
      e.line <= 2
        ? `manifest ${where}: its ${e.line === 1 ? 'header' : 'archives'} line runs past ${e.max} bytes (refused: corrupt, or a decompression bomb)`
        : `manifest ${where}: entry ${e.line - 2} runs past ${e.max} bytes (refused: corrupt, or a decompression bomb)`,
    );
  }
  return new IntegrityError(`manifest ${where} cannot be decompressed: ${(e as Error).message}`);
}

/** How a reader opens a segmented manifest's segments (Repository.loadManifest). */
export type OpenSegments = (line: SegmentsLine, archives: ArchiveRef[], where: string) => EntrySegments;

/**
 * A manifest downloaded to a local temporary file, whose entries can be read any number of
 * times: from that file (versions 1 and 2), or from its segments, fetched as they are read.
 */
export class LocalManifest {
  readonly header: ManifestHeader;
  readonly archives: ArchiveRef[];
  /** Version 3: the entry segments. */
  readonly segments: EntrySegments | undefined;
  private readonly file: string;
  private readonly where: string;

  private constructor(file: string, header: ManifestHeader, archives: ArchiveRef[], where: string, segments: EntrySegments | undefined) {
    this.file = file;
    this.header = header;
    this.archives = archives;
    this.where = where;
    this.segments = segments;
  }

  /**
   * Download a manifest and read its head. `unseal` (encrypted repositories) turns the
   * downloaded object into the plain manifest, authenticating all of it first.
   */
  static async fromStream(
    body: Readable,
    where: string,
    openSegments: OpenSegments,
    unseal?: (sealedFile: string, plainFile: string) => Promise<void>,
  ): Promise<LocalManifest> {
    const dir = await makeTempDir(TEMP_PREFIX);
    const file = path.join(dir, 'manifest.ndjson.zst');
    let header: ManifestHeader;
    let archives: ArchiveRef[];
    let segments: EntrySegments | undefined;
    let it: AsyncGenerator<string> | undefined;
    try {
      if (unseal) {
        const sealed = path.join(dir, 'manifest.sealed');
        await pipeline(body, createWriteStream(sealed));
        await unseal(sealed, file);
        await fs.rm(sealed);
      } else {
        await pipeline(body, createWriteStream(file));
      }
      // The third line is the segments line (as long as the head's) in version 3, an entry before.
      let headLines = 2;
      it = lines(decompressFrames(file, where), { maxLine: (i) => (i < headLines ? MAX_MANIFEST_HEAD : MAX_ENTRY_LINE) });
      header = parseHeaderLine((await it.next()).value ?? undefined, where);
      archives = parseArchivesLine((await it.next()).value ?? undefined, where);
      if (header.version >= SEGMENTED_MANIFEST_VERSION) {
        headLines = 3;
        const line = parseSegmentsLine((await it.next()).value ?? undefined, where);
        if (!(await it.next()).done) throw new IntegrityError(`manifest ${where} is corrupt (lines after its segment list)`);
        segments = openSegments(line, archives, where);
      }
    } catch (e) {
      await it?.return(undefined).catch(() => {});
      await fs.rm(dir, { recursive: true, force: true });
      throw readError(e, where);
    }
    await it.return(undefined);
    return new LocalManifest(file, header, archives, where, segments);
  }

  /**
   * Every entry, in archive order; with `under`, at least those at or below one of these paths
   * (and maybe others: callers filter), reading only the segments that may hold them.
   */
  async *entries(opts: { under?: readonly string[] } = {}): AsyncGenerator<Entry> {
    if (this.segments) {
      try {
        yield* this.segments.entries(opts.under);
      } catch (e) {
        throw readError(e, this.where);
      }
      return;
    }
    let n = 0;
    try {
      // Empty lines (none in a real manifest) are passed over inside lines(): a frame of nothing
      // but newlines then costs a scan, not a step of every generator per byte.
      for await (const line of lines(decompressFrames(this.file, this.where), { maxLine: manifestLineBound, skipEmpty: true })) {
        if (n++ < 2 || line === '') continue;
        yield parseEntryLine(line, n - 2, this.where);
      }
    } catch (e) {
      throw readError(e, this.where);
    }
  }

  /**
   * The entries `entries` gives, a batch at a time: one promise per batch (a segment), not per
   * entry, each batch parsed as it is pulled. A restore reads every entry twice, and through
   * `entries` each one cost promises and results at every level of nested async generators
   * (most of what a restore allocated; docs/performance.md, "Restore: where the time goes").
   */
  async *entryBatches(opts: { under?: readonly string[] } = {}): AsyncGenerator<Iterable<Entry>> {
    if (this.segments) {
      try {
        for await (const batch of this.segments.batches(opts.under)) yield new NamedErrors(batch, this.where);
      } catch (e) {
        throw readError(e, this.where);
      }
      return;
    }
    let batch: Entry[] = [];
    for await (const e of this.entries(opts)) {
      batch.push(e);
      if (batch.length === 1024) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  async dispose(): Promise<void> {
    await this.segments?.dispose();
    await fs.rm(path.dirname(this.file), { recursive: true, force: true });
  }
}

/** A batch of entries whose errors, thrown as it is read, name the manifest as `entries` does. */
class NamedErrors implements IterableIterator<Entry> {
  private readonly batch: Iterator<Entry>;
  private readonly where: string;

  constructor(batch: Iterator<Entry>, where: string) {
    this.batch = batch;
    this.where = where;
  }

  next(): IteratorResult<Entry> {
    try {
      return this.batch.next();
    } catch (e) {
      throw readError(e, this.where);
    }
  }

  [Symbol.iterator](): IterableIterator<Entry> {
    return this;
  }
}

/** The decompressed bytes of every zstd frame in a file, in order (Node's decoder reads one frame). */
async function* decompressFrames(file: string, where: string): AsyncGenerator<Buffer> {
  let frames: [number, number][];
  const fd = fsSync.openSync(file, 'r');
  try {
    const size = fsSync.fstatSync(fd).size;
    const readAt = (position: number, length: number) => {
      const b = Buffer.alloc(length);
      const n = fsSync.readSync(fd, b, 0, length, position);
      return b.subarray(0, n);
    };
    try {
      frames = zstdFrames(readAt, size);
    } catch (e) {
      throw new IntegrityError(`manifest ${where} is corrupt: ${(e as Error).message}`);
    }
  } finally {
    fsSync.closeSync(fd);
  }
  if (frames.length === 0) throw new IntegrityError(`manifest ${where} is empty`);
  for (const [start, end] of frames) {
    // Streamed: each chunk is handed on as it comes (the reader holds one line at most), so a
    // frame that expands without end takes no more memory than a real one.
    const source = createReadStream(file, { start, end: end - 1, highWaterMark: 1 << 20 });
    try {
      yield* source.pipe(zlib.createZstdDecompress());
    } finally {
      source.destroy();
    }
  }
}
