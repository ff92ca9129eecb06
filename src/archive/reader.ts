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
  private spanEnd = -1;

  constructor(
    store: Store,
    ref: StoredArchive,
    spans: [number, number][],
    stats: ReadStats,
    onCompressed?: (chunk: Buffer) => void,
    unseal?: FrameOpener,
  ) {
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
      sink(frame.subarray(from, to));
      pos = fStart + to;
    }
  }

  /** Read everything through, e.g. for a deep verify of the whole stored object. */
  async drain(): Promise<void> {
    for (const [a, b] of this.spans) {
      if (this.current && this.current.index >= b) continue;
      if (!this.iter || !this.current || this.current.index < a - 1) await this.open(a);
      while (!(await this.iter!.next()).done);
      this.iter = undefined;
      this.current = undefined;
    }
  }

  private async frame(idx: number): Promise<Buffer> {
    if (this.current?.index === idx) return this.current.data;
    if (!this.iter || !this.current || idx < this.current.index || idx > this.spanEnd) await this.open(idx);
    for (;;) {
      const r = await this.iter!.next();
      if (r.done) throw new IntegrityError(`archive ${this.where} ended before frame ${idx}`);
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
    let parts: Buffer[] = [];
    let have = 0;
    let idx = first;
    const take = async function* (this: ArchiveCursor, flushAll: boolean) {
      while (pending.length > (flushAll ? 0 : 3)) {
        const p = pending.shift()!;
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
        this.stats.bytesFetched += c.length;
        this.onCompressed?.(c);
        parts.push(c);
        have += c.length;
        while (idx <= last && !refused && have >= frames[idx]![0]) {
          const size = frames[idx]![0];
          const joined: Buffer = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
          const raw = joined.subarray(0, size);
          const rest = joined.subarray(size);
          parts = rest.length ? [rest] : [];
          have = rest.length;
          let data: Promise<Buffer>;
          try {
            const plain = this.unseal ? this.unseal(raw, idx, idx === frames.length - 1) : raw;
            data = decompressFrame(codec, plain, frames[idx]![1]);
          } catch (e) {
            data = Promise.reject(e);
          }
          data.catch(() => {});
          pending.push({ index: idx, data });
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

  async close(): Promise<void> {
    if (this.iter?.return) await this.iter.return(undefined);
    this.iter = undefined;
    this.current = undefined;
  }
}
