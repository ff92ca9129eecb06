import * as fs from 'node:fs';
import type { ContentReader, ContentResult } from '../archive/content-reader.ts';
import type { FrameWriter } from '../archive/frames.ts';
import { BLOCK, encodeHeader, encodeHeaderInto, padding, type TarHeader } from '../archive/tar.ts';
import { errText, S3BackupError } from '../errors.ts';
import { sameXattrs, type XattrMap, XattrReader, xattrsToJson } from '../archive/xattrs.ts';
import type { BackupStats, Entry, Extent } from '../repo/manifest.ts';
import type { ArchiveOut } from './archive-out.ts';
import type { ArchiveSet } from './archive-set.ts';
import {
  APPEND_MIN_SIZE,
  buildsOn,
  CHUNKED_MIN_SIZE,
  type MemberTarget,
  openSource,
  type StoredExtents,
  storeChangedChunks,
  storeTail,
} from './extents.ts';
import { type ContentIndex, DEDUP_MIN_SIZE, hashFile, type KnownContent } from './content-index.ts';
import type { ManifestQueue } from './manifest-queue.ts';
import { NEW, SAME } from '../repo/segments.ts';
import { type ParentEntries, sameLine, sameStat, unchanged } from './parent.ts';
import type { BackupProgress } from './types.ts';
import { hardLinkKey, readLinkTarget, type SourceWalk, specialKind, type WalkItem, walkWarningText } from './walk.ts';

// Stage "entries": each walked item into the archives (tar header, file content) and its entry
// into the manifest queue; unchanged files point at the parent's copy instead.

export interface ItemWriterOptions {
  stats: BackupStats;
  warn: (m: string) => void;
  archives: ArchiveSet;
  queue: ManifestQueue;
  /** The parent's entries, for an incremental. */
  parent: ParentEntries | undefined;
  /** Read and hash every file instead of trusting size, times and inode. */
  rehash: boolean;
  /** Store extended attributes and POSIX ACLs (--no-xattrs: false). */
  xattrs: boolean;
  /** Does the parent's manifest record attributes (made without --no-xattrs, by a version that stores them)? */
  parentHasXattrs: boolean;
  /**
   * Store what changed of a changed file (an append's tail, a large file's changed chunks) and
   * keep chunk lists of large files (docs/format.md "Extents"); false: whole files only.
   */
  extents: boolean;
  /** Content the repository already holds (new and changed files found there are not stored again); none: store them all. */
  content: ContentIndex | undefined;
  /** New and changed files by lower-case extension (for the run record). */
  extensions: Map<string, number>;
  onProgress: ((p: BackupProgress) => void) | undefined;
}

/**
 * Writes what the walk finds. Most steps are synchronous: a method gives a promise only when
 * its caller must wait (a frame to compress, a split, the parent's entries to read), as
 * FrameWriter's writes do, since a promise per file costs the thread that walks.
 */
export class ItemWriter {
  private readonly o: ItemWriterOptions;
  private readonly stats: BackupStats;
  private readonly archives: ArchiveSet;
  private readonly queue: ManifestQueue;
  /** "dev:ino" → the first name of a file with several. */
  private readonly links = new Map<string, { entry: Entry; seq: number }>();
  private nextSeq = 0;
  private current = '';
  private lastProgress = 0;
  private readonly xattrReader: XattrReader | undefined;
  /** Where the files read here (extents.ts) put their members. */
  private readonly target: MemberTarget = {
    room: async (bytes) => {
      const split = this.archives.room(bytes);
      if (split) await split;
      return this.archives.slot;
    },
    frames: () => this.archives.out.frames,
  };

  constructor(o: ItemWriterOptions) {
    this.o = o;
    this.xattrReader = o.xattrs ? new XattrReader(o.warn) : undefined;
    this.stats = o.stats;
    this.archives = o.archives;
    this.queue = o.queue;
  }

  /** Every step of the walk, then the parent's entries it did not reach (deleted files). */
  async writeAll(walk: SourceWalk, signal: AbortSignal | undefined): Promise<void> {
    for (const { item, warning } of walk) {
      if (warning) {
        // Seen but not stored (vanished, cannot be looked at, a name it cannot hold): never silently.
        this.o.warn(walkWarningText(warning));
        this.stats.skipped++;
        continue;
      }
      if (signal?.aborted) throw new S3BackupError('backup interrupted; nothing was recorded');
      const w = this.write(item);
      if (w) await w;
      this.progress();
    }
    await this.o.parent?.end();
  }

  private write(item: WalkItem): Promise<void> | undefined {
    const st = item.st;
    this.current = item.path;
    const base: Entry = {
      path: item.path,
      type: 'dir',
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtimeMs,
      ctime: st.ctimeMs,
      ino: st.ino,
      size: 0,
    };
    if (st.isDirectory()) return this.directory(item, base);
    if (st.isSymbolicLink()) return this.symlink(item, base);
    if (st.isFile()) return this.file(item, base);
    const kind = specialKind(st);
    this.o.warn(`${item.path}: skipped (${kind})`);
    this.stats.skipped++;
    const emit = () => this.queue.emit({ ...base, type: 'other', error: `skipped (${kind})` });
    const passing = this.passParent(item.path);
    return passing ? passing.then(emit) : emit();
  }

  /**
   * The parent's entry of a path stored without comparing it: looked up all the same, so that
   * the parent's entries the walk passes by are the deleted ones, in tree order (a layer's
   * tombstones come before the entries after them).
   */
  private passParent(p: string): Promise<unknown> | undefined {
    const found = this.o.parent?.entry(p);
    return found instanceof Promise ? found : undefined;
  }

  private async directory(item: WalkItem, base: Entry): Promise<void> {
    const xattrs = this.readXattrs(item, base);
    const split = this.archives.room(0);
    if (split) await split;
    const at = this.archives.out.frames.offset;
    await writeHeader(this.archives.out.frames, tarHeader(item, base, { type: 'dir', xattrs }));
    const mark = await this.againstParent(item, base, xattrs !== undefined, at);
    this.stats.dirs++;
    await this.queue.emit(base, mark);
  }

  /**
   * A directory's or symlink's entry against the parent's: where its header is (locateHeader,
   * when it has attributes), and SAME when the two are byte for byte the same (a layer leaves
   * it out), else NEW.
   */
  private async againstParent(item: WalkItem, base: Entry, located: boolean, at: number): Promise<number> {
    const parent = this.o.parent;
    if (!parent) {
      if (located) this.locate(base, undefined, at);
      return NEW;
    }
    const prev = await parent.entry(item.path);
    const reused = located ? this.locate(base, prev, at) : true;
    return prev && reused && sameLine(prev, base) ? SAME : NEW;
  }

  /**
   * Where verify --deep finds a directory's or symlink's header and its attributes (recorded
   * only for those that have attributes): in the parent's archive when nothing changed, so the
   * entry, and the segment that holds it, stay the same from one backup to the next; else in
   * the archive being written, at `at`. Whether it is the parent's.
   */
  private locate(base: Entry, prev: Entry | undefined, at: number): boolean {
    if (prev?.archive !== undefined && prev.header !== undefined && sameStat(prev, base) && sameXattrs(prev.xattrs, base.xattrs)) {
      base.archive = this.archives.reuse(prev.archive);
      base.header = prev.header;
      return true;
    }
    base.archive = this.archives.slot;
    base.header = at;
    return false;
  }

  private async symlink(item: WalkItem, base: Entry): Promise<void> {
    const xattrs = this.readXattrs(item, base);
    let target: string;
    try {
      target = readLinkTarget(item.abs);
    } catch (e) {
      this.o.warn(`${item.path}: cannot read symlink: ${errText(e)}`);
      this.stats.skipped++;
      await this.passParent(item.path);
      await this.queue.emit({ ...base, type: 'symlink', error: errText(e) });
      return;
    }
    base.type = 'symlink';
    base.target = target;
    const split = this.archives.room(0);
    if (split) await split;
    const at = this.archives.out.frames.offset;
    await writeHeader(this.archives.out.frames, tarHeader(item, base, { type: 'symlink', linkname: target, xattrs }));
    const mark = await this.againstParent(item, base, xattrs !== undefined, at);
    this.stats.symlinks++;
    await this.queue.emit(base, mark);
  }

  private file(item: WalkItem, base: Entry): Promise<void> | undefined {
    const linkKey = hardLinkKey(item.st);
    const first = linkKey ? this.links.get(linkKey) : undefined;
    // The parent's entries are read in step with the walk, hard links included.
    const parent = this.o.parent;
    if (!parent) return this.fileAgainst(item, base, linkKey, first, undefined);
    const prev = parent.entry(item.path);
    if (prev instanceof Promise) return prev.then((p) => this.fileAgainst(item, base, linkKey, first, p));
    return this.fileAgainst(item, base, linkKey, first, prev);
  }

  private fileAgainst(
    item: WalkItem,
    base: Entry,
    linkKey: string | undefined,
    first: { entry: Entry; seq: number } | undefined,
    prev: Entry | undefined,
  ): Promise<void> | undefined {
    if (first) return this.hardLink(item, base, first, prev);
    this.stats.bytesTotal! += item.st.size;
    if (!prev) return this.storeOrFind(item, base, linkKey, false);
    // Any change of attributes moves the ctime: a file whose size, mtime, ctime and inode are
    // the parent's has the parent's attributes, when it recorded them, and they are not read
    // again (a no-change incremental then makes no call for its files). A file that is stored
    // in any case has them read through the descriptor storeFile opens (no second path
    // lookup); only a comparison with the parent reads them here.
    const st = item.st;
    const sameMeta =
      prev.type === 'file' && prev.size === st.size && prev.mtime === st.mtimeMs && prev.ctime === st.ctimeMs && prev.ino === st.ino;
    const rehash = this.o.rehash;
    if (sameMeta && this.o.parentHasXattrs && !rehash) {
      if (prev.xattrs) base.xattrs = prev.xattrs;
    } else if (sameMeta || rehash) this.readXattrs(item, base);
    // Attributes that differ from the parent's (set or dropped, or --no-xattrs toggled) store
    // the file again: its tar header in the archive then says what the manifest says.
    if (!sameXattrs(prev.xattrs, base.xattrs)) return this.storeNew(item, base, linkKey, true);
    return unchanged(prev, item.abs, st, rehash)
      ? this.pointAtParent(item, base, prev, linkKey)
      : this.storeChanged(item, base, linkKey, prev);
  }

  /**
   * A changed file: what changed of it, when it grew by an append (its tail) or is a large file
   * with a chunk list (its changed chunks), and its parent's copy is whole and checked; else
   * stored (or found) as any changed file.
   */
  private storeChanged(item: WalkItem, base: Entry, linkKey: string | undefined, prev: Entry): Promise<void> | undefined {
    const size = item.st.size;
    if (!this.o.extents || !buildsOn(prev)) return this.storeOrFind(item, base, linkKey, true);
    const grew = size > prev.size && prev.size >= APPEND_MIN_SIZE;
    const chunks = size >= CHUNKED_MIN_SIZE ? prev.chunks : undefined;
    if (!grew && chunks === undefined) return this.storeOrFind(item, base, linkKey, true);
    return this.storeExtents(item, base, linkKey, prev, grew, chunks);
  }

  private async storeExtents(
    item: WalkItem,
    base: Entry,
    linkKey: string | undefined,
    prev: Entry & { sha256: string },
    grew: boolean,
    chunks: string | undefined,
  ): Promise<void> {
    const file = await openSource(item.abs);
    if (!file) return this.storeOrFind(item, base, linkKey, true);
    let done: StoredExtents | undefined;
    try {
      const xattrs = this.readXattrs(item, base, file.fh.fd);
      const header = tarHeader(item, base, { type: 'file', size: item.st.size, xattrs });
      const reuse = (a: number) => this.archives.reuse(a);
      if (grew) done = await storeTail(file, item.st, prev, reuse, header, this.target);
      if (!done && chunks !== undefined) done = await storeChangedChunks(file, item.st, prev, chunks, reuse, header, this.target);
    } finally {
      await file.fh.close();
    }
    // The prefix differs, or the chunks cannot be used: stored as any changed file.
    if (!done) return this.storeOrFind(item, base, linkKey, true);
    this.countStored(item.path, true);
    return this.settleRead(item, base, linkKey, done);
  }

  /** The entry of a file read here (extents.ts), as settleContent makes that of a file the content reader read. */
  private settleRead(item: WalkItem, base: Entry, linkKey: string | undefined, done: StoredExtents): Promise<void> | undefined {
    const e: Entry = { ...base, type: 'file', size: item.st.size, sha256: done.sha256, ...done.location };
    if (done.chunks !== undefined) e.chunks = done.chunks;
    if (noteRead(e, done, this.stats, this.o.warn)) {
      this.stats.files++;
      this.stats.bytesIn += done.stored;
      if (linkKey) this.links.set(linkKey, { entry: e, seq: -1 });
    }
    return this.queue.emit(e, NEW);
  }

  /**
   * A new or changed file: pointed at where the repository already holds its content, if it
   * does (a file of at least DEDUP_MIN_SIZE whose size some known content has is hashed first
   * to look it up), else stored.
   */
  private storeOrFind(item: WalkItem, base: Entry, linkKey: string | undefined, changed: boolean): Promise<void> | undefined {
    const content = this.o.content;
    if (!content || item.st.size < DEDUP_MIN_SIZE) return this.storeNew(item, base, linkKey, changed);
    return this.findContent(content, item, base, linkKey, changed);
  }

  private async findContent(
    content: ContentIndex,
    item: WalkItem,
    base: Entry,
    linkKey: string | undefined,
    changed: boolean,
  ): Promise<void> {
    const size = item.st.size;
    if (await content.holdsSize(size)) {
      const sha256 = await hashFile(item.abs, size);
      const known = sha256 === undefined ? undefined : await content.find(size, sha256);
      if (known) return this.pointAtKnown(item, base, known, sha256!, linkKey, changed);
    }
    return this.storeNew(item, base, linkKey, changed);
  }

  /**
   * Content the repository already holds (renamed, moved, copied, or stored by another backup):
   * the entry points at it as an unchanged file's points at its parent's copy. It records no
   * `header`: the tar header there is the other name's.
   */
  private pointAtKnown(
    item: WalkItem,
    base: Entry,
    known: KnownContent,
    sha256: string,
    linkKey: string | undefined,
    changed: boolean,
  ): Promise<void> | undefined {
    this.readXattrs(item, base);
    const archives = this.archives;
    const e: Entry = {
      ...base,
      type: 'file',
      size: item.st.size,
      sha256,
      archive: known.parentArchive === undefined ? archives.adopt(known.archive) : archives.reuse(known.parentArchive),
      offset: known.offset,
    };
    const stats = this.stats;
    this.countStored(item.path, changed);
    stats.files++;
    stats.foundFiles!++;
    stats.foundBytes! += e.size;
    if (linkKey) this.links.set(linkKey, { entry: e, seq: -1 });
    return this.queue.emit(e, NEW);
  }

  /** The item's attributes into its entry (base64) and for its tar header; none: undefined. */
  private readXattrs(item: WalkItem, base: Entry, fd?: number): XattrMap | undefined {
    const xattrs = this.xattrReader?.read(fd === undefined ? item.abs : { fd }, item.path, item.st.dev);
    if (xattrs) base.xattrs = xattrsToJson(xattrs);
    else delete base.xattrs;
    return xattrs;
  }

  /** A further name of a file already seen: shares the first name's content. */
  private async hardLink(item: WalkItem, base: Entry, first: { entry: Entry; seq: number }, prev: Entry | undefined): Promise<void> {
    const f = first.entry;
    const e: Entry = { ...base, type: 'hardlink', target: f.path, size: f.size };
    if (f.xattrs) e.xattrs = f.xattrs; // one inode, one set of attributes
    this.stats.hardlinks++;
    if (f.error) linkNotStored(e, f, this.stats, this.o.warn);
    else if (f.extents) {
      e.extents = f.extents;
      e.sha256 = f.sha256!;
    } else {
      e.archive = f.archive!;
      e.offset = f.offset!;
      if (this.queue.isUnhashed(f)) this.queue.shareDigest(first.seq, e);
      else e.sha256 = f.sha256!;
    }
    // A tar hard link only where tar can make it: the first name is in this archive, or
    // in an earlier one of this backup (extracted first, as they are in order; finished,
    // so on the archives line with this backup's id). Its header offset is recorded
    // only in the archive that holds the content. None to a first name not stored.
    const split = this.archives.room(0);
    if (split) await split;
    const archives = this.archives;
    if (!e.error && f.archive !== undefined && (f.archive === archives.slot || archives.isOwnFinished(f.archive))) {
      if (f.archive === archives.slot) e.header = archives.out.frames.offset;
      // The attributes are the first name's (one inode): in the manifest for a restore of this
      // name alone, not again in the tar.
      await writeHeader(archives.out.frames, tarHeader(item, base, { type: 'hardlink', linkname: f.path }));
    } else if (
      !e.error &&
      prev?.type === 'hardlink' &&
      prev.header !== undefined &&
      prev.target === e.target &&
      prev.offset === e.offset &&
      prev.archive !== undefined &&
      archives.reusedIndex(prev.archive) === e.archive
    ) {
      // Its content and header are where the parent found them: the entry stays as it was.
      e.header = prev.header;
      if (e.sha256 !== undefined && sameLine(prev, e)) {
        await this.queue.emit(e, SAME);
        return;
      }
    }
    await this.queue.emit(e, NEW);
  }

  /** Unchanged since the parent: point at the content where it already is. */
  private pointAtParent(item: WalkItem, base: Entry, prev: Entry, linkKey: string | undefined): Promise<void> | undefined {
    // base becomes the entry (it is this item's own): a copy per unchanged file was most of
    // what a no-change backup allocated.
    const e = base;
    e.type = 'file';
    e.size = item.st.size;
    e.sha256 = prev.sha256!;
    this.pointAt(e, prev);
    if (prev.header !== undefined) e.header = prev.header;
    if (prev.chunks !== undefined) e.chunks = prev.chunks;
    this.stats.files++;
    this.stats.unchangedFiles!++;
    if (linkKey) this.links.set(linkKey, { entry: e, seq: -1 });
    // The archive is the parent's (reuse): the same key in the segment.
    return this.queue.emit(e, sameLine(prev, e) ? SAME : NEW);
  }

  /** Point e at where the parent's entry has its content, as this manifest's archives line indexes it (each archive reused). */
  private pointAt(e: Entry, prev: Entry): void {
    const archives = this.archives;
    if (prev.extents) e.extents = prev.extents.map(([a, offset, length]): Extent => [archives.reuse(a), offset, length]);
    else {
      e.archive = archives.reuse(prev.archive!);
      e.offset = prev.offset!;
    }
  }

  /** A new or changed file, however its content is kept: in the stats and the extension counts (run record). */
  private countStored(path: string, changed: boolean): void {
    if (changed) this.stats.changedFiles!++;
    else this.stats.newFiles!++;
    const ext = extensionOf(path);
    this.o.extensions.set(ext, (this.o.extensions.get(ext) ?? 0) + 1);
  }

  /** A new or changed file: its content into the archive being written. */
  private storeNew(item: WalkItem, base: Entry, linkKey: string | undefined, changed: boolean): Promise<void> | undefined {
    this.countStored(item.path, changed);
    const split = this.archives.room(item.st.size);
    if (split) return split.then(() => this.storeIn(this.archives.out, item, base, linkKey));
    return this.storeIn(this.archives.out, item, base, linkKey);
  }

  private storeIn(out: ArchiveOut, item: WalkItem, base: Entry, linkKey: string | undefined): Promise<void> | undefined {
    const seq = this.nextSeq++;
    const e: Entry = { ...base, type: 'file', size: item.st.size };
    // Registered before any byte is written: the digest may come back while we still wait.
    this.queue.expect(seq, e);
    // Its attributes as they are once it is open, read through its descriptor: they go in its header.
    const header = (fd: number) => {
      const xattrs = this.readXattrs(item, base, fd);
      if (base.xattrs) e.xattrs = base.xattrs;
      else delete e.xattrs;
      return tarHeader(item, base, { type: 'file', size: item.st.size, xattrs });
    };
    // A large file's chunk list comes back with its digest, for the next backup's change in place.
    const chunked = this.o.extents && item.st.size >= CHUNKED_MIN_SIZE;
    const storing = storeFile(item.abs, item.st, e, seq, out, this.archives.slot, header, chunked, this.o.warn);
    if (typeof storing === 'boolean') return this.stored(e, seq, linkKey, storing);
    return storing.then((ok) => this.stored(e, seq, linkKey, ok));
  }

  private stored(e: Entry, seq: number, linkKey: string | undefined, ok: boolean): Promise<void> | undefined {
    if (!ok) {
      this.stats.skipped++;
      this.queue.cancel(seq, e);
    } else {
      this.stats.files++;
      this.stats.bytesIn += e.size;
      if (linkKey) this.links.set(linkKey, { entry: e, seq });
    }
    return this.queue.emit(e);
  }

  private progress(): void {
    const onProgress = this.o.onProgress;
    const now = performance.now();
    if (!onProgress || now - this.lastProgress < 100) return;
    this.lastProgress = now;
    const stats = this.stats;
    onProgress({
      files: stats.files,
      bytesDone: stats.bytesTotal!,
      bytesIn: stats.bytesIn,
      bytesOut: this.archives.bytesOut,
      current: this.current,
    });
  }
}

/**
 * What the content reader found for a file (`named`: the file, then hard links to it seen
 * before it was hashed): a read error makes the file a skipped one (its unread part is zeros),
 * and its further names with it; a change while reading is stored as read, and reported.
 */
export function settleContent(stats: BackupStats, warn: (m: string) => void): (named: Entry[], r: ContentResult) => void {
  return (named, r) => {
    const e = named[0]!;
    if (!noteRead(e, r, stats, warn)) {
      // Counted as stored when it was booked.
      stats.files--;
      stats.bytesIn -= e.size;
    }
    // Further names seen before the read failed share its zeros: not backed up either.
    if (e.error) for (let i = 1; i < named.length; i++) linkNotStored(named[i]!, e, stats, warn);
  };
}

/**
 * How reading a file went, on its entry, in the stats and said: a read error makes it a skipped
 * file (its unread part is zeros), a change while reading is stored as read. False on an error.
 */
function noteRead(
  e: Entry,
  read: { error?: string | undefined; changed: boolean },
  stats: BackupStats,
  warn: (m: string) => void,
): boolean {
  if (read.error !== undefined) {
    e.error = `read error: ${read.error}`;
    warn(`${e.path}: read error, the unread part is stored as zeros: ${read.error}`);
    stats.skipped++;
    return false;
  }
  if (read.changed) {
    e.changed = true;
    stats.changedWhileRead!++;
    warn(`${e.path}: changed while being backed up; the stored copy may be inconsistent`);
  }
  return true;
}

/**
 * A hard link (already counted as one) whose first name could not be read: listed with the
 * error, counted as skipped instead, restored by no one.
 */
function linkNotStored(e: Entry, first: Entry, stats: BackupStats, warn: (m: string) => void): void {
  e.error = `not backed up: its first name ${first.path} could not be read`;
  warn(`${e.path}: hard link to ${first.path}, which could not be read: not backed up`);
  stats.hardlinks--;
  stats.skipped++;
}

/** The tar header of a walked item (`h`: what differs from a directory's). */
function tarHeader(item: WalkItem, base: Entry, h: Partial<TarHeader>): TarHeader {
  return {
    path: item.path,
    type: 'dir',
    mode: base.mode,
    uid: base.uid,
    gid: base.gid,
    size: 0,
    mtime: Math.floor(item.st.mtimeMs / 1000),
    ...h,
  };
}

/** The lower-case extension of a path's last component ("" for none; dotfiles have none). */
export function extensionOf(p: string): string {
  const name = p.slice(p.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  if (dot <= 0 || dot === name.length - 1) return '';
  const ext = name.slice(dot + 1).toLowerCase();
  return ext.length <= 16 ? ext : '';
}

/** A tar header into the frames: straight into the frame buffer when it is one plain block
 * (most are), without a buffer of its own; else encoded apart and copied in. */
function writeHeader(frames: FrameWriter, h: TarHeader): Promise<void> | undefined {
  const space = frames.space();
  const n = space.length >= BLOCK ? encodeHeaderInto(h, space.buf, space.start) : 0;
  return n > 0 ? frames.commit(n) : frames.write(encodeHeader(h));
}

/**
 * Append one regular file: header, content (booked for the reader, which reads it straight into
 * the frame buffer and hashes it as sequence `seq`), padding. A file that cannot be opened is
 * listed with its error and no content: returns false. The header's size is the one lstat saw;
 * if the file then shrinks or fails to read the rest is stored as zeros, if it grows the excess
 * is left out, and either way the reader's result flags it (see contentRead).
 */
function storeFile(
  abs: string | Buffer,
  st: fs.Stats,
  e: Entry,
  seq: number,
  out: ArchiveOut,
  slot: number,
  header: (fd: number) => TarHeader,
  chunked: boolean,
  warn: (m: string) => void,
): boolean | Promise<boolean> {
  const { frames, reader } = out;
  let fd: number;
  try {
    fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    warn(`${e.path}: unreadable, not backed up: ${errText(err)}`);
    e.error = errText(err);
    return false;
  }
  // From here the reader owns the file: it reads the content into the frames, then closes it.
  reader.own(seq, fd);
  if (chunked) reader.chunked(seq, fd);
  e.header = frames.offset;
  const content = () => {
    e.offset = frames.offset;
    e.archive = slot;
    return storeContent(frames, reader, seq, fd, st, 0);
  };
  // Synchronous unless a frame fills up: most files fit in the current frame, and an async
  // function per file costs promises and event-loop turns on the thread that walks.
  const p = writeHeader(frames, header(fd));
  return p ? p.then(content) : content();
}

/** storeFile's content from `position` on, then its padding (see storeFile). */
function storeContent(
  frames: FrameWriter,
  reader: ContentReader,
  seq: number,
  fd: number,
  st: fs.Stats,
  position: number,
): true | Promise<true> {
  const size = st.size;
  while (position < size) {
    const space = frames.space();
    const n = Math.min(size - position, space.length);
    reader.read(seq, fd, space.start, space.start + n, position);
    position += n;
    const p = frames.commit(n);
    if (p) {
      const at = position;
      return p.then(() => storeContent(frames, reader, seq, fd, st, at));
    }
  }
  reader.end(seq, fd, size, st.mtimeMs, st.ino);
  const p = frames.writeZeros(padding(size));
  return p ? p.then(() => true) : true;
}
