import type { ContentResult } from '../archive/content-reader.ts';
import type { Entry } from '../repo/manifest.ts';
import { type EntrySink, NEW, SAME, tombstone } from '../repo/segments.ts';

// Stage "manifest queue": entries wait here, in archive order, until their file's hash is known,
// then go to the manifest's entry segments (an EntrySink).

/** The mark of a queued deletion (emitDeleted). */
const DELETED = -3;

/**
 * The most memory the waiting entries may take, by estimate (entryCost): past it the frame
 * being filled is cut short so that the digests come back and the queue drains. A full backup
 * of small files waits for at most a frame of them (4 MiB of content: ~2,000 entries, ~1 MiB);
 * an incremental that writes all its entries (a new base) would hold every unchanged entry
 * behind its rare changed files until their frame is full: 100,000s of entries, ~100 MiB at
 * 1M files (docs/performance.md, "Memory: where it goes").
 */
const MAX_WAITING_BYTES = 4 << 20;

/**
 * An estimate of what a queued entry holds in V8's heap: the object with its fields, its
 * digest's hex string, its path (one byte per character for the usual Latin-1 path), and its
 * extents, if any (an array of a few numbers and a digest each).
 */
function entryCost(e: Entry): number {
  return 256 + e.path.length + (e.extents?.length ?? 0) * 160;
}

/**
 * A file's digest comes back from the content reader after its bytes are in a frame, while the
 * walk has gone on: its entry, and every entry after it, wait in the queue until then. `named`
 * maps a file's sequence number to the entries that need its digest (the file first, then hard
 * links to it seen before it was hashed).
 */
export class ManifestQueue {
  readonly entries: EntrySink;
  /**
   * The entries waiting, from `head` on (a changed file's hash can hold back every entry the
   * walk finds until its frame is full: 100,000s in an incremental, so no shift() per entry,
   * which moves all the others).
   */
  private queue: Entry[] = [];
  /** Each queued entry's mark (EntrySink.add: SAME or NEW), or DELETED. */
  private marks: number[] = [];
  /** Each queued entry's entryCost when it was queued (its digest or extents may come later). */
  private costs: number[] = [];
  private head = 0;
  private readonly unhashed = new Set<Entry>();
  private readonly named = new Map<number, Entry[]>();
  private queueWait: Promise<void> | undefined;
  /** Whether an entry of the snapshot has extents (its manifest is then EXTENTS_MANIFEST_VERSION). */
  holdsExtents = false;
  private readonly onContent: (named: Entry[], r: ContentResult) => void;
  /** entryCost of the entries from `head` on. */
  private waitingBytes = 0;
  private readonly maxWaitingBytes: number;
  /**
   * Cuts the frame being filled short and resolves once every file booked so far is hashed
   * (FrameWriter.settle), for when the waiting entries pass maxWaitingBytes.
   */
  settle: (() => Promise<void>) | undefined;

  /**
   * `onContent`: what the reader found for a file (its names: the file first, then hard links),
   * called before their entries leave the queue.
   */
  constructor(entries: EntrySink, onContent: (named: Entry[], r: ContentResult) => void, maxWaitingBytes = MAX_WAITING_BYTES) {
    this.entries = entries;
    this.onContent = onContent;
    this.maxWaitingBytes = maxWaitingBytes;
  }

  /** A file about to be stored as sequence `seq`: its entry waits for the digest. */
  expect(seq: number, e: Entry): void {
    this.unhashed.add(e);
    this.named.set(seq, [e]);
  }

  /** A file that was not stored after all (it could not be opened): nothing to wait for. */
  cancel(seq: number, e: Entry): void {
    this.unhashed.delete(e);
    this.named.delete(seq);
  }

  /** Whether this entry's digest is still to come. */
  isUnhashed(e: Entry): boolean {
    return this.unhashed.has(e);
  }

  /** A hard link to file `seq`, seen before the file was hashed: it gets the same digest. */
  shareDigest(seq: number, e: Entry): void {
    this.unhashed.add(e);
    this.named.get(seq)!.push(e);
  }

  /** The content reader's results: digests for the entries that wait for them. */
  readonly onResults = (results: ContentResult[]): void => {
    for (const r of results) {
      const named = this.named.get(r.seq);
      if (!named) continue;
      this.named.delete(r.seq);
      for (const e of named) {
        e.sha256 = r.sha256;
        this.unhashed.delete(e);
      }
      if (r.chunks !== undefined) named[0]!.chunks = r.chunks;
      this.onContent(named, r);
    }
    this.drain();
  };

  private drain(): void {
    const { queue, marks, costs } = this;
    let head = this.head;
    while (head < queue.length && !this.unhashed.has(queue[head]!)) {
      const mark = marks[head]!;
      const e = queue[head]!;
      const p = mark === DELETED ? this.entries.deleted(e) : this.entries.add(e, mark);
      this.waitingBytes -= costs[head]!;
      head++;
      if (p) this.queueWait = (this.queueWait ?? Promise.resolve()).then(() => p);
    }
    if (head === queue.length) {
      this.queue = [];
      this.marks = [];
      this.costs = [];
      this.head = 0;
    } else if (head >= 1024 && head * 2 >= queue.length) {
      // Most of it is sent: drop that part (each entry is moved at most about once).
      this.queue = queue.slice(head);
      this.marks = marks.slice(head);
      this.costs = costs.slice(head);
      this.head = 0;
    } else this.head = head;
  }

  /**
   * Queue an entry for the manifest; a promise only when the caller must wait (as FrameWriter's
   * writes). `mark`: SAME when it is the parent's entry byte for byte, else NEW.
   */
  emit(e: Entry, mark = NEW): Promise<void> | undefined {
    if (e.extents !== undefined) this.holdsExtents = true;
    // Behind a file still to be hashed, an entry the sink would drop need not wait: nothing of
    // it goes on (a layer's unchanged entries, most of an incremental's).
    if (mark === SAME && this.entries.dropsSame) return undefined;
    this.push(e, mark);
    let w = this.queueWait;
    this.queueWait = undefined;
    if (this.waitingBytes > this.maxWaitingBytes && this.settle) {
      const settled = this.settle();
      w = w ? Promise.all([w, settled]).then(() => this.takeQueueWait()) : settled.then(() => this.takeQueueWait());
    }
    return w;
  }

  private push(e: Entry, mark: number): void {
    this.queue.push(e);
    this.marks.push(mark);
    const cost = entryCost(e);
    this.costs.push(cost);
    this.waitingBytes += cost;
    this.drain();
  }

  /** What the sink asked to wait for meanwhile (entries drained while settling). */
  private takeQueueWait(): Promise<void> | undefined {
    const w = this.queueWait;
    this.queueWait = undefined;
    return w;
  }

  /**
   * A path of the parent's the walk passed by (deleted since), in its place in tree order. Its
   * caller cannot wait: what the sink asks to wait for goes with the next emit().
   */
  emitDeleted(path: string): void {
    this.push(tombstone(path), DELETED);
  }

  /** Once every archive is finished (so every digest is in): the entries, all stored. */
  async finish(): Promise<void> {
    const left = this.queue.length - this.head;
    if (left > 0) throw new Error(`internal error: ${left} entries still wait for their hash`);
    if (this.queueWait) await this.queueWait;
    await this.entries.finish();
  }

  async dispose(): Promise<void> {
    await this.entries.dispose();
  }
}
