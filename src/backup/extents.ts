import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { CHUNK_RECORD, ChunkList } from '../archive/chunk-list.ts';
import { DEFAULT_CHUNK_SIZES } from '../archive/fastcdc.ts';
import type { FrameWriter } from '../archive/frames.ts';
import { encodeHeader, padding, type TarHeader } from '../archive/tar.ts';
import { errText } from '../errors.ts';
import { contentRanges, type Entry, type Extent, isWholeFile } from '../repo/manifest.ts';

// A changed file stored as what changed (docs/format.md "Extents"): a file that grew by an
// append stores its tail; a large file changed in place stores the chunks its parent lacks. Both
// read the file here, on the thread that walks (the content reader's worker reads whole files
// only), straight into the frame buffers.

/** Files of at least this size are chunked (content-defined) so that a change in place stores only changed chunks. */
export const CHUNKED_MIN_SIZE = 64 << 20;
/**
 * A file whose parent's copy is smaller than this is stored whole when it grows: its prefix costs
 * at most this much again, less than the hashing of prefixes of many small files costs time.
 */
export const APPEND_MIN_SIZE = 64 << 10;
/**
 * A file whose parent's entry has this many extents, or extents in this many archives, is stored
 * whole the next time it changes. Every archive an entry points into stays in the repository as
 * long as the backup is kept (dead content included) and must be thawed to restore it from cold
 * storage; every extent is a ranged read. A log appended to daily thus spans at most 8 archives.
 */
export const MAX_FILE_EXTENTS = 1024;
export const MAX_EXTENT_ARCHIVES = 8;
/** Bytes read at a time. */
const READ_SIZE = 1 << 20;

/** Whether `prev` is a whole, checked file that a changed file's entry may point into. */
export function buildsOn(prev: Entry | undefined): prev is Entry & { sha256: string } {
  if (prev === undefined || !isWholeFile(prev) || prev.size <= 0) return false;
  const ranges = contentRanges(prev);
  return ranges.length > 0 && ranges.length < MAX_FILE_EXTENTS && new Set(ranges.map(([a]) => a)).size < MAX_EXTENT_ARCHIVES;
}

/** Add a run to a list of extents, joining it to the last one where it continues it. */
export function pushExtent(out: Extent[], [archive, offset, length]: Extent): void {
  const last = out.at(-1);
  if (last && last[0] === archive && last[1] + last[2] === offset) last[2] += length;
  else out.push([archive, offset, length]);
}

/**
 * The parent's content as runs addressed by offset in the file. `reuse` maps a parent's archive
 * index to this manifest's, called only for the runs used (it puts the archive on the archives line).
 */
class ParentContent {
  private readonly ranges: Extent[];
  private readonly starts: number[] = [];
  private readonly reuse: (archive: number) => number;

  constructor(ranges: Extent[], reuse: (archive: number) => number) {
    this.ranges = ranges;
    this.reuse = reuse;
    let at = 0;
    for (const [, , length] of ranges) {
      this.starts.push(at);
      at += length;
    }
  }

  /** All of it, onto `out`. */
  all(out: Extent[]): void {
    if (this.ranges.length > 0) this.slice(0, this.starts.at(-1)! + this.ranges.at(-1)![2], out);
  }

  /** The runs that hold the file's bytes [from, from + length), onto `out`. */
  slice(from: number, length: number, out: Extent[]): void {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= from) lo = mid;
      else hi = mid - 1;
    }
    for (let i = lo; length > 0; i++) {
      const [archive, offset, runLength] = this.ranges[i]!;
      const skip = from - this.starts[i]!;
      const n = Math.min(length, runLength - skip);
      pushExtent(out, [this.reuse(archive), offset + skip, n]);
      from += n;
      length -= n;
    }
  }
}

/**
 * The chunks of an entry's `chunks` by hash (hex) → offset in the file and length of the first
 * with that hash; undefined when the list is not one of `size` bytes of chunks (damaged: not used).
 */
function chunkOffsets(chunks: string, size: number): Map<string, [offset: number, length: number]> | undefined {
  const list = Buffer.from(chunks, 'base64');
  if (list.length % CHUNK_RECORD !== 0) return undefined;
  const out = new Map<string, [number, number]>();
  let at = 0;
  for (let i = 0; i < list.length; i += CHUNK_RECORD) {
    const key = list.toString('hex', i + 4, i + CHUNK_RECORD);
    const length = list.readUInt32BE(i);
    if (!out.has(key)) out.set(key, [at, length]);
    at += length;
  }
  return at === size ? out : undefined;
}

/** The file being read: a read error is kept (zeros stand in for the rest), as is a file that ends early. */
class SourceFile {
  error: string | undefined;
  short = false;
  readonly fh: fs.promises.FileHandle;

  constructor(fh: fs.promises.FileHandle) {
    this.fh = fh;
  }

  /** Bytes [position, position + length) into buf at `at`; what cannot be read is zeros (error or short set). */
  async read(buf: Buffer, at: number, length: number, position: number): Promise<void> {
    let got = 0;
    if (this.error === undefined) {
      try {
        while (got < length) {
          const { bytesRead } = await this.fh.read(buf, at + got, length - got, position + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
      } catch (e) {
        this.error = errText(e);
      }
    }
    if (got < length) {
      buf.fill(0, at + got, at + length);
      this.short = true;
    }
  }
}

/** Where a changed file's new bytes go: the archive being written, with room made for each member. */
export interface MemberTarget {
  /** The index of the archive being written on the archives line, once `room` made room for `bytes`. */
  room(bytes: number): Promise<number>;
  frames(): FrameWriter;
}

/** What was read and stored of a file here, for its entry and the stats. */
export interface StoredExtents {
  sha256: string;
  /** Extents, or one run where that is all of it. */
  location: Pick<Entry, 'archive' | 'offset' | 'header' | 'extents'>;
  chunks: string | undefined;
  /** Bytes stored (the rest is the parent's). */
  stored: number;
  /** Changed while read (or it shrank): stored as read. */
  changed: boolean;
  error: string | undefined;
}

async function writeAll(frames: FrameWriter, data: Buffer): Promise<void> {
  const p = frames.write(data);
  if (p) await p;
}

async function writePadding(frames: FrameWriter, size: number): Promise<void> {
  const p = frames.writeZeros(padding(size));
  if (p) await p;
}

/**
 * One tar member: `header`, then `length` bytes of the file from `position`, read straight into
 * the frames, each piece also handed to `sink`, then padding. The offset of its content.
 */
async function fileMember(
  frames: FrameWriter,
  header: TarHeader,
  file: SourceFile,
  position: number,
  length: number,
  sink: (piece: Buffer) => void,
): Promise<number> {
  await writeAll(frames, encodeHeader(header));
  const at = frames.offset;
  let done = 0;
  while (done < length) {
    const space = frames.space();
    const n = Math.min(length - done, space.length);
    await file.read(space.buf, space.start, n, position + done);
    sink(space.buf.subarray(space.start, space.start + n));
    done += n;
    const p = frames.commit(n);
    if (p) await p;
  }
  await writePadding(frames, length);
  return at;
}

/** Opens files for the paths here: undefined when it cannot be opened (the normal path then reports it). */
export async function openSource(abs: string | Buffer): Promise<SourceFile | undefined> {
  try {
    return new SourceFile(await fs.promises.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW));
  } catch {
    return undefined;
  }
}

/** Whether the file changed while it was read: it ended early, or its size or mtime moved. */
async function changedSince(file: SourceFile, st: fs.Stats): Promise<boolean> {
  if (file.short) return true;
  const after = await file.fh.stat();
  return after.size !== st.size || after.mtimeMs !== st.mtimeMs || after.ino !== st.ino;
}

/** Bytes [0, size) of the file into `hashes`; false if it cannot read them all. */
async function readPrefix(file: SourceFile, size: number, sink: (piece: Buffer) => void): Promise<boolean> {
  const buf = Buffer.allocUnsafe(Math.min(size, READ_SIZE));
  for (let pos = 0; pos < size; ) {
    const n = Math.min(size - pos, buf.length);
    await file.read(buf, 0, n, pos);
    if (file.short) return false;
    sink(buf.subarray(0, n));
    pos += n;
  }
  return true;
}

/**
 * A file that grew: if its first prev.size bytes hash to the parent's SHA-256, only the tail is
 * stored, as a member `<path>.s3backup-tail-<offset>`, and the entry's extents are the parent's
 * runs then the tail. Undefined when the prefix differs (nothing was written; the caller stores
 * the file as any changed one). `reuse` maps the parent's archive indexes to this manifest's.
 */
export async function storeTail(
  file: SourceFile,
  st: fs.Stats,
  prev: Entry & { sha256: string },
  reuse: (archive: number) => number,
  header: TarHeader,
  target: MemberTarget,
): Promise<StoredExtents | undefined> {
  const whole = createHash('sha256');
  const chunks = st.size >= CHUNKED_MIN_SIZE ? new ChunkList() : undefined;
  const sink = (piece: Buffer) => {
    whole.update(piece);
    chunks?.update(piece);
  };
  if (!(await readPrefix(file, prev.size, sink)) || whole.copy().digest('hex') !== prev.sha256) return undefined;
  const tail = st.size - prev.size;
  const archive = await target.room(tail);
  const offset = await fileMember(
    target.frames(),
    { ...header, path: `${header.path}.s3backup-tail-${prev.size}`, size: tail, xattrs: undefined },
    file,
    prev.size,
    tail,
    sink,
  );
  const extents: Extent[] = [];
  new ParentContent(contentRanges(prev), reuse).all(extents);
  pushExtent(extents, [archive, offset, tail]);
  return {
    sha256: whole.digest('hex'),
    location: { extents },
    chunks: chunks?.finish(),
    stored: tail,
    changed: await changedSince(file, st),
    error: file.error,
  };
}

/**
 * A large file changed in place: chunked as it is read; a chunk whose hash the parent's chunk
 * list has points at the parent's bytes, any other is stored as a member
 * `<path>.s3backup-chunk-<offset>`. Memory: the chunk being cut (at most the largest chunk) and
 * one read. Undefined when the parent's list cannot be used, or when the result would have more
 * than MAX_FILE_EXTENTS extents (the caller stores the file whole; the chunks written are left
 * unreferenced in the archive).
 */
export async function storeChangedChunks(
  file: SourceFile,
  st: fs.Stats,
  prev: Entry,
  prevChunks: string,
  reuse: (archive: number) => number,
  header: TarHeader,
  target: MemberTarget,
): Promise<StoredExtents | undefined> {
  const known = chunkOffsets(prevChunks, prev.size);
  if (!known) return undefined;
  const parent = new ParentContent(contentRanges(prev), reuse);
  const whole = createHash('sha256');
  const chunks = new ChunkList();
  const window = Buffer.allocUnsafe(DEFAULT_CHUNK_SIZES.max + READ_SIZE);
  let windowStart = 0;
  let have = 0;
  const extents: Extent[] = [];
  let stored = 0;
  const cut: [number, number, Buffer][] = [];
  const onChunk = (start: number, length: number, digest: Buffer) => cut.push([start, length, Buffer.from(digest)]);
  const place = async () => {
    for (const [start, length, digest] of cut) {
      // The same hash and length: the same bytes (a list whose lengths disagree is not believed).
      const found = known.get(digest.toString('hex'));
      if (found !== undefined && found[1] === length) {
        parent.slice(found[0], length, extents);
        continue;
      }
      const data = window.subarray(start - windowStart, start - windowStart + length);
      const archive = await target.room(length);
      const frames = target.frames();
      await writeAll(frames, encodeHeader({ ...header, path: `${header.path}.s3backup-chunk-${start}`, size: length, xattrs: undefined }));
      const offset = frames.offset;
      await writeAll(frames, data);
      await writePadding(frames, length);
      pushExtent(extents, [archive, offset, length]);
      stored += length;
    }
    cut.length = 0;
  };
  for (let pos = 0; pos < st.size; ) {
    const n = Math.min(st.size - pos, READ_SIZE);
    await file.read(window, have, n, pos);
    const piece = window.subarray(have, have + n);
    whole.update(piece);
    chunks.update(piece, onChunk);
    have += n;
    pos += n;
    await place();
    // Keep only the chunk being cut (at most the largest chunk), at the window's start.
    const keep = chunks.start - windowStart;
    window.copy(window, 0, keep, have);
    have -= keep;
    windowStart = chunks.start;
    if (extents.length > MAX_FILE_EXTENTS) return undefined;
  }
  const list = chunks.finish(onChunk);
  await place();
  if (extents.length > MAX_FILE_EXTENTS) return undefined;
  return {
    sha256: whole.digest('hex'),
    // All of it where one run of the parent's was (only its metadata changed): a whole file's entry.
    location: extents.length === 1 ? { archive: extents[0]![0], offset: extents[0]![1] } : { extents },
    chunks: list,
    stored,
    changed: await changedSince(file, st),
    error: file.error,
  };
}
