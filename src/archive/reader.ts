import type { Readable } from 'node:stream';
import { IntegrityError } from '../errors.ts';
import type { Store } from '../store/store.ts';
import { type Codec, decompressFrame, FrameExpansionError } from './codec.ts';
import { type FrameInfo, frameInfoProblem } from './frames.ts';

/** What reading needs to know of a stored archive; a manifest's ArchiveRef is one. */
export interface StoredArchive {
  key: string;
  codec: Codec;
  /** Bytes as stored. */
  size: number;
  frames: FrameInfo[];
}

/** Uncompressed and compressed start offsets of every frame, for binary search. */
export class FrameTable {
  readonly ref: StoredArchive;
  readonly cStart: number[];
  readonly uStart: number[];

  constructor(ref: StoredArchive) {
    this.ref = ref;
    this.cStart = new Array(ref.frames.length + 1);
    this.uStart = new Array(ref.frames.length + 1);
    let c = 0;
    let u = 0;
    ref.frames.forEach(([fc, fu], i) => {
      this.cStart[i] = c;
      this.uStart[i] = u;
      c += fc;
      u += fu;
    });
    this.cStart[ref.frames.length] = c;
    this.uStart[ref.frames.length] = u;
  }

  get count(): number {
    return this.ref.frames.length;
  }

  /** Index of the frame holding uncompressed offset `off`. */
  frameOf(off: number): number {
    let lo = 0;
    let hi = this.count - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.uStart[mid]! <= off) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Frames [first, last] that hold bytes [off, off+size). */
  span(off: number, size: number): [number, number] {
    return [this.frameOf(off), this.frameOf(off + Math.max(size, 1) - 1)];
  }
}

/** Merge frame spans that touch or overlap, sorted. */
export function mergeSpans(spans: [number, number][]): [number, number][] {
  const sorted = [...spans].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const s of sorted) {
    const last = out.at(-1);
    if (last && s[0] <= last[1] + 1) last[1] = Math.max(last[1], s[1]);
    else out.push([s[0], s[1]]);
  }
  return out;
}

/** Opens one sealed frame of an encrypted archive (Repository.frameOpener); throws IntegrityError. */
export type FrameOpener = (sealed: Buffer, index: number, last: boolean) => Buffer;

/**
 * Decompressed bytes decoded ahead of the frame being read: frames up to this size are decoded
 * before the reader asks for them, a frame of the default 4 MiB only once it does. A restore
 * (whose pace its writer thread sets) was as fast so as with one 4 MiB frame decoded ahead, and
 * took ~20 MB less (docs/performance.md, "Restore: where the time goes").
 */
const AHEAD_BYTES = 2 << 20;
/** At most this many frames decoded ahead, however small they are. */
const AHEAD_FRAMES = 16;

/**
 * Compressed frames that arrive in several chunks are joined into buffers kept here and used
 * again once their frame is decompressed, rather than into fresh memory per frame (fresh
 * external memory is what makes V8 run full collections).
 */
class JoinBuffers {
  private readonly free: ArrayBuffer[] = [];
  private readonly mine = new WeakSet<ArrayBufferLike>();

  take(size: number): Buffer {
    const i = this.free.findIndex((b) => b.byteLength >= size);
    const ab = i >= 0 ? this.free.splice(i, 1)[0]! : new ArrayBuffer(Math.max(size, JOIN_BUFFER));
    this.mine.add(ab);
    return Buffer.from(ab, 0, size);
  }

  holds(b: Buffer): boolean {
    return this.mine.has(b.buffer);
  }

  /** A buffer from take, no longer read. */
  give(b: Buffer): void {
    if (this.free.length < 1) this.free.push(b.buffer as ArrayBuffer);
  }
}

/** Take `size` bytes off the front of parts. */
function dropFront(parts: Buffer[], size: number): void {
  while (size > 0) {
    const p = parts[0]!;
    if (p.length > size) {
      parts[0] = p.subarray(size);
      return;
    }
    size -= p.length;
    parts.shift();
  }
}
/** Body chunks above this size that own their whole buffer are freed once copied out (see decompressed). */
const OWN_CHUNK_MIN = 64 << 10;

/** A join buffer holds a compressed frame of the default 4 MiB, and some slack. */
const JOIN_BUFFER = (4 << 20) + (64 << 10);

/**
 * Frees a decompressed frame's memory at once (detaches its ArrayBuffer) instead of leaving it
 * to the garbage collector, when the frame owns that memory: zlib's output for it, never a
 * slice of a shared pool or of the compressed chunks.
 */
function releaseFrame(data: Buffer): void {
  const ab = data.buffer;
  if (ab instanceof ArrayBuffer && !ab.detached && data.byteOffset === 0 && ab.byteLength > Buffer.poolSize) ab.transfer(0);
}

export interface CursorOptions {
  /**
   * The sink copies what it is given before it returns (it keeps no chunk): a frame's memory is
   * then freed as soon as the cursor moves past it, not by the garbage collector later.
   */
  sinkCopies?: boolean;
}

export interface ReadStats {
  /** Compressed bytes fetched from the store. */
  bytesFetched: number;
  requests: number;
}

/**
 * Reads uncompressed byte ranges out of an archive by fetching only the frames that hold them,
 * one ranged GET per span of consecutive frames, decompressing ahead on the thread pool.
 * Reads should come in ascending offset order; going backwards reopens a span (correct, slower).
 */
export class ArchiveCursor {
  private readonly store: Store;
  private readonly table: FrameTable;
  private readonly spans: [number, number][];
  private readonly stats: ReadStats;
  private readonly onCompressed: ((chunk: Buffer) => void) | undefined;
  private readonly unseal: FrameOpener | undefined;
  private iter: AsyncIterator<{ index: number; data: Buffer }> | undefined;
  private current: { index: number; data: Buffer } | undefined;
  /** The current frame was read to its end and freed (ownsFrames): reading it again reopens it. */
  private currentFreed = false;
  private spanEnd = -1;
  /** Decompressed frames that the cursor may free itself (see CursorOptions.sinkCopies). */
  private readonly ownsFrames: boolean;
  private readonly joins = new JoinBuffers();

  constructor(
    store: Store,
    ref: StoredArchive,
    spans: [number, number][],
    stats: ReadStats,
    onCompressed?: (chunk: Buffer) => void,
    unseal?: FrameOpener,
    opts: CursorOptions = {},
  ) {
    // Uncompressed frames are slices of the compressed chunks: never freed here.
    this.ownsFrames = (opts.sinkCopies ?? false) && ref.codec !== 'none';
    this.unseal = unseal;
    this.store = store;
    this.table = new FrameTable(ref);
    this.spans = spans;
    this.stats = stats;
    this.onCompressed = onCompressed;
  }

  get where(): string {
    return `${this.store.location}/${this.table.ref.key}`;
  }

  /** Deliver bytes [off, off+size) to `sink` in order, chunk by chunk. */
  async read(off: number, size: number, sink: (chunk: Buffer) => void): Promise<void> {
    let pos = off;
    const end = off + size;
    while (pos < end) {
      const idx = this.table.frameOf(pos);
      let frame: Buffer;
      try {
        frame = await this.frame(idx);
      } catch (e) {
        // The stream is spent: a later read starts a fresh one where it needs it (a damaged
        // frame does not stop a deep verify from checking the files after it).
        await this.close();
        throw e;
      }
      const fStart = this.table.uStart[idx]!;
      const from = pos - fStart;
      const to = Math.min(frame.length, end - fStart);
      if (to <= from) throw new IntegrityError(`archive ${this.where}: frame ${idx} is shorter than the frame table says`);
      this.deliver(frame, from, to, sink);
      pos = fStart + to;
    }
  }

  /** frame[from, to) to `sink`; a frame read to its end is freed. */
  private deliver(frame: Buffer, from: number, to: number, sink: (chunk: Buffer) => void): void {
    sink(frame.subarray(from, to));
    // Read to its end: the frame is not needed again (reads come in order), so its memory is
    // freed now rather than when the next one arrives.
    if (to === frame.length && this.ownsFrames) {
      releaseFrame(frame);
      this.currentFreed = true;
    }
  }

  /**
   * Whether bytes [off, off+size) are all in the frame at hand, so that readNow delivers them
   * without waiting (most small files of a restore: no promise per file).
   */
  holds(off: number, size: number): boolean {
    const cur = this.current;
    if (!cur || this.currentFreed) return false;
    const fStart = this.table.uStart[cur.index]!;
    return off >= fStart && off + size <= fStart + cur.data.length;
  }

  /** read, for bytes that holds says are at hand. */
  readNow(off: number, size: number, sink: (chunk: Buffer) => void): void {
    const from = off - this.table.uStart[this.current!.index]!;
    this.deliver(this.current!.data, from, from + size, sink);
  }

  /** Read everything through, e.g. for a deep verify of the whole stored object. */
  async drain(): Promise<void> {
    for (const [a, b] of this.spans) {
      if (this.current && this.current.index >= b) continue;
      if (!this.iter || !this.current || this.current.index < a - 1) await this.open(a);
      while (!(await this.iter!.next()).done);
      this.iter = undefined;
      this.dropCurrent();
    }
  }

  private async frame(idx: number): Promise<Buffer> {
    if (this.current?.index === idx && !this.currentFreed) return this.current.data;
    const behind = this.current && (idx < this.current.index || (idx === this.current.index && this.currentFreed));
    if (!this.iter || !this.current || behind || idx > this.spanEnd) await this.open(idx);
    for (;;) {
      const r = await this.iter!.next();
      if (r.done) throw new IntegrityError(`archive ${this.where} ended before frame ${idx}`);
      this.dropCurrent();
      this.current = r.value;
      if (r.value.index === idx) return r.value.data;
    }
  }

  private async open(idx: number): Promise<void> {
    await this.close();
    const span = this.spans.find(([a, b]) => idx >= a && idx <= b) ?? [idx, idx];
    this.spanEnd = span[1];
    const start = this.table.cStart[idx]!;
    const end = this.table.cStart[span[1] + 1]!;
    const whole = start === 0 && end === this.table.ref.size;
    const body = await this.store.get(this.table.ref.key, whole ? undefined : { start, end });
    this.stats.requests++;
    this.iter = this.decompressed(body, idx, span[1]);
    this.current = undefined;
  }

  private async *decompressed(body: Readable, first: number, last: number): AsyncGenerator<{ index: number; data: Buffer }> {
    const codec = this.table.ref.codec;
    const frames = this.table.ref.frames;
    const pending: { index: number; data: Promise<Buffer> }[] = [];
    // Chunks of the frame being received; joined once it is complete (never re-copied per chunk).
    const parts: Buffer[] = [];
    let have = 0;
    // Chunks of the body that are ours alone (see takeFrame).
    const owned = new Set<ArrayBuffer>();
    let idx = first;
    // Decompressed bytes that the pending frames will hold.
    let ahead = 0;
    const take = async function* (this: ArchiveCursor, flushAll: boolean) {
      while (pending.length > 0 && (flushAll || ahead > AHEAD_BYTES || pending.length > AHEAD_FRAMES)) {
        const p = pending.shift()!;
        ahead -= frames[p.index]![1];
        let data: Buffer;
        try {
          data = await p.data;
        } catch (e) {
          if (e instanceof IntegrityError) throw e;
          if (e instanceof FrameExpansionError) {
            throw new IntegrityError(
              `archive ${this.where}: frame ${p.index} expands past its ${frames[p.index]![1]} bytes in the frame table (refused: corrupt, or a decompression bomb)`,
            );
          }
          throw new IntegrityError(`archive ${this.where}: frame ${p.index} does not decompress (${(e as Error).message})`);
        }
        if (data.length !== frames[p.index]![1]) {
          throw new IntegrityError(`archive ${this.where}: frame ${p.index} has ${data.length} bytes, expected ${frames[p.index]![1]}`);
        }
        yield { index: p.index, data };
      }
    }.bind(this);
    // A frame-table entry past the format's bounds: the frames before it are handed out, then
    // the read that needs it fails (the table says nothing trustworthy about where later ones lie).
    let refused = frameInfoProblem(frames[idx]);
    try {
      for await (const chunk of refused ? [] : body) {
        const c = chunk as Buffer;
        // Only a chunk that is a whole buffer of its own, larger than a socket's reads (which a
        // stream could slice from memory it reads into again): a file's 1 MiB reads, not S3's.
        if (this.ownsFrames && !this.onCompressed && c.byteOffset === 0 && c.buffer.byteLength === c.length && c.length > OWN_CHUNK_MIN) {
          owned.add(c.buffer as ArrayBuffer);
        }
        this.stats.bytesFetched += c.length;
        this.onCompressed?.(c);
        parts.push(c);
        have += c.length;
        while (idx <= last && !refused && have >= frames[idx]![0]) {
          const size = frames[idx]![0];
          const raw = this.takeFrame(parts, size, codec, owned);
          have -= size;
          let data: Promise<Buffer>;
          try {
            const plain = this.unseal ? this.unseal(raw, idx, idx === frames.length - 1) : raw;
            data = decompressFrame(codec, plain, frames[idx]![1]);
          } catch (e) {
            data = Promise.reject(e);
          }
          data.catch(() => {});
          if (this.joins.holds(raw))
            void data.then(
              () => this.joins.give(raw),
              () => this.joins.give(raw),
            );
          pending.push({ index: idx, data });
          ahead += frames[idx]![1];
          idx++;
          if (idx <= last) refused = frameInfoProblem(frames[idx]);
        }
        yield* take(false);
        if (refused) break;
      }
      // Hand out the frames that did arrive whole first, so the error is met by the read that needs the missing one.
      yield* take(true);
      if (refused) throw new IntegrityError(`archive ${this.where}: frame ${idx} ${refused}`);
      if (idx <= last) throw new IntegrityError(`archive ${this.where} is shorter than its frame table (stopped at frame ${idx})`);
    } finally {
      body.destroy();
    }
  }

  /**
   * The next compressed frame of `size` bytes, taken off the front of `parts`. Frames that are
   * decompressed are copied into a join buffer (used again once the frame is decompressed); the
   * body's chunks, when the cursor owns its frames, are freed as soon as they are copied out
   * (fresh chunks left to the garbage collector made it run full collections every ~70 MB).
   * Uncompressed frames are handed out as they are: a slice of one chunk, or joined.
   */
  private takeFrame(parts: Buffer[], size: number, codec: Codec, owned: Set<ArrayBuffer>): Buffer {
    if (codec === 'none' || (!this.ownsFrames && parts[0]!.length >= size)) {
      const raw = parts[0]!.length >= size ? parts[0]!.subarray(0, size) : Buffer.concat(parts, size);
      dropFront(parts, size);
      return raw;
    }
    const raw = this.joins.take(size);
    let at = 0;
    while (at < size) {
      const p = parts[0]!;
      const n = Math.min(p.length, size - at);
      p.copy(raw, at, 0, n);
      at += n;
      if (n < p.length) {
        parts[0] = p.subarray(n);
        break;
      }
      parts.shift();
      const ab = p.buffer as ArrayBuffer;
      if (owned.delete(ab) && p.byteOffset + p.length === ab.byteLength) ab.transfer(0);
    }
    return raw;
  }

  private dropCurrent(): void {
    if (this.current && this.ownsFrames) releaseFrame(this.current.data);
    this.current = undefined;
    this.currentFreed = false;
  }

  async close(): Promise<void> {
    if (this.iter?.return) await this.iter.return(undefined);
    this.iter = undefined;
    this.dropCurrent();
  }
}
