import * as os from 'node:os';
import type { Codec } from '../archive/codec.ts';
import type { ContentResult } from '../archive/content-reader.ts';
import { BLOCK, padding } from '../archive/tar.ts';
import type { ArchiveRef } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import type { PutOptions, Store } from '../store/store.ts';
import { ArchiveOut } from './archive-out.ts';

// Stage "archive set": the archives a backup writes and the archives line of its manifest.

/**
 * Frames read and compressed at once, by default: one per core, at least 2. A third on 2 cores
 * only held one more frame, its zstd stream and its output (~12 MiB of peak RSS) for no speed,
 * whether the store writes the stream as it comes (a local directory) or copies it into part
 * buffers ahead of a slower upload (S3) (docs/performance.md, "Memory: where it goes").
 */
export function framesInFlight(): number {
  return Math.max(2, os.availableParallelism());
}

export interface ArchiveSetOptions {
  repo: Repository;
  /** The backup's id. */
  id: string;
  codec: Codec;
  level: number | undefined;
  frameSize: number;
  /** Frames being read or compressed at once (default: framesInFlight). */
  maxInFlight: number | undefined;
  retention: PutOptions['retention'];
  /** Uncompressed tar bytes per archive before the next one starts. */
  archiveSize: number;
  /** The parent's archives, which entries of unchanged files point at. */
  parentArchives: ArchiveRef[] | undefined;
  /** The content reader's results, from whichever archive is being written. */
  onResults: (results: ContentResult[]) => void;
  /** The backup is one streamed file (see streamed()): its content archive is the one started first. */
  stream?: boolean | undefined;
}

/**
 * The archives this backup writes: one, or more when it outgrows archiveSize (split before a
 * file that would not fit, so every archive is a whole tar of whole files), and the archives
 * its manifest refers to, in order of first use: its own first, then those of the parent it
 * reuses (and its own further ones, where they start). Each of its own takes its place on the
 * archives line when it starts, and its ref fills that place when it is finished.
 */
export class ArchiveSet {
  /** The archive being written. */
  out: ArchiveOut;
  /** Its index in refs (what entries in it record as their archive). */
  slot = 0;
  /** Its own archives finished so far, in order. */
  readonly written: ArchiveRef[] = [];
  private readonly refs: (ArchiveRef | undefined)[] = [undefined];
  /** Parent's archive index → ours. */
  private readonly reused = new Map<number, number>();
  /** Archive key → our index, for the archives of other backups (the parent's included). */
  private readonly adopted = new Map<string, number>();
  private readonly o: ArchiveSetOptions;

  constructor(o: ArchiveSetOptions) {
    this.o = o;
    this.out = o.stream ? this.start(2, 0) : this.start(1, 0);
  }

  private start(part: number, largestFile: number): ArchiveOut {
    this.slot = part === 1 ? 0 : this.refs.push(undefined) - 1;
    const o = this.o;
    return new ArchiveOut({
      repo: o.repo,
      id: o.id,
      part,
      codec: o.codec,
      level: o.level,
      frameSize: o.frameSize,
      maxInFlight: o.maxInFlight ?? framesInFlight(),
      retention: o.retention,
      // At most archiveSize of tar, or one larger file alone, plus headers; compression can
      // only add a little (incompressible frames stored raw, AEAD tags).
      sizeHint: Math.ceil(Math.max(o.archiveSize, largestFile) * 1.01) + (64 << 20),
      onResults: o.onResults,
    });
  }

  /** Our index of the parent's archive `i` (an unchanged file's content is there). */
  reuse(i: number): number {
    let mine = this.reused.get(i);
    if (mine === undefined) {
      mine = this.adopt(this.o.parentArchives![i]!);
      this.reused.set(i, mine);
    }
    return mine;
  }

  /**
   * Our index of another backup's archive (content found there: see content-index.ts), put on
   * the archives line once, whichever backup's archives line it came from.
   */
  adopt(ref: ArchiveRef): number {
    let mine = this.adopted.get(ref.key);
    if (mine === undefined) {
      mine = this.refs.push(ref) - 1;
      this.adopted.set(ref.key, mine);
    }
    return mine;
  }

  /** Every archive of the parent's on our archives line. */
  reuseAll(): void {
    const n = this.o.parentArchives?.length ?? 0;
    for (let i = 0; i < n; i++) this.reuse(i);
  }

  /** Our index of the parent's archive `i` if an entry already uses it (reuse() without adding it). */
  reusedIndex(i: number): number | undefined {
    return this.reused.get(i);
  }

  /** The key of archive `i` of the archives line (the one being written included). */
  keyOf(i: number): string {
    const key = this.refs[i]?.key ?? (i === this.slot ? this.out.key : undefined);
    if (key === undefined) throw new Error(`internal error: no archive ${i} on the archives line`);
    return key;
  }

  /** Whether archive `i` of the archives line is one this backup wrote and has finished. */
  isOwnFinished(i: number): boolean {
    return this.refs[i]?.id === this.o.id;
  }

  /**
   * Before writing an entry with `content` bytes of file data: if it would take this archive past
   * archiveSize, finish it and start the next (a file larger than that goes into one of its own).
   * Headers count as a few blocks each (long names take more: the size is approximate). A
   * promise only when the caller must wait (a split), as FrameWriter's writes.
   */
  room(content: number): Promise<void> | undefined {
    const offset = this.out.frames.offset;
    if (offset === 0 || offset + 3 * BLOCK + content + padding(content) <= this.o.archiveSize) return undefined;
    return this.next(content);
  }

  private async next(content: number): Promise<void> {
    await this.finish();
    await this.out.close();
    this.out = this.start(this.written.length + 1, content);
  }

  /** Finish the archive being written (the last one, or before a split). */
  async finish(): Promise<void> {
    const ref = await this.out.finish();
    this.refs[this.slot] = ref;
    this.written.push(ref);
  }

  /**
   * One streamed file, its size unknown until it ends (docs/format.md "Streamed files"): its
   * content goes into archive 2, started first, and the tar header, which only the end of the
   * stream can give, makes archive 1 alone, without the two zero blocks, so that the two,
   * concatenated in order, are one tar stream holding the one file. `write` fills archive 2 (at
   * its slot) and returns that header; both are finished here.
   */
  async streamed(write: (out: ArchiveOut, slot: number) => Promise<Buffer>): Promise<void> {
    if (!this.o.stream || this.written.length > 0) throw new Error('internal error: not a stream backup');
    const header = await write(this.out, this.slot);
    await this.finish();
    await this.out.close();
    this.out = this.start(1, 0);
    const p = this.out.frames.write(header);
    if (p) await p;
    const head = await this.out.finish({ end: false });
    this.refs[0] = head;
    this.written.unshift(head);
  }

  /** The archives line, once every archive of this backup is finished. */
  get archives(): ArchiveRef[] {
    return this.refs as ArchiveRef[];
  }

  /** Compressed bytes of this backup's own archives. */
  get bytesStored(): number {
    return this.written.reduce((n, r) => n + r.size, 0);
  }

  /** Uncompressed tar bytes written so far (for progress). */
  get bytesOut(): number {
    return this.written.reduce((n, r) => n + r.uncompressedSize, this.out.frames.offset);
  }

  /**
   * A failed backup: stop writing, and, unless its manifest's write has begun (it may exist
   * then, and prune with its grace period deals with them), delete the archives it wrote, the
   * finished ones and the one being written (best effort: prune would find them too).
   */
  async abort(e: unknown, store: Store, committing: boolean): Promise<void> {
    await this.out.abort(e);
    if (!committing) await store.delete([...new Set([...this.written.map((r) => r.key), this.out.key])]).catch(() => {});
  }

  async close(): Promise<void> {
    await this.out.close();
  }
}
