import type { ContentResult } from '../archive/content-reader.ts';
import type { Entry } from '../repo/manifest.ts';
import { type EntrySink, NEW, tombstone } from '../repo/segments.ts';

// Stage "manifest queue": entries wait here, in archive order, until their file's hash is known,
// then go to the manifest's entry segments (an EntrySink).

/** The mark of a queued deletion (emitDeleted). */
const DELETED = -3;

/**
 * A file's digest comes back from the content reader after its bytes are in a frame, while the
 * walk has gone on: its entry, and every entry after it, wait in the queue until then. `waiting`
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
  private head = 0;
  private readonly unhashed = new Set<Entry>();
  private readonly waiting = new Map<number, Entry[]>();
  private queueWait: Promise<void> | undefined;
  /** Whether an entry of the snapshot has extents (its manifest is then EXTENTS_MANIFEST_VERSION). */
  holdsExtents = false;
  private readonly onContent: (named: Entry[], r: ContentResult) => void;

  /**
   * `onContent`: what the reader found for a file (its names: the file first, then hard links),
   * called before their entries leave the queue.
   */
  constructor(entries: EntrySink, onContent: (named: Entry[], r: ContentResult) => void) {
    this.entries = entries;
    this.onContent = onContent;
  }

  /** A file about to be stored as sequence `seq`: its entry waits for the digest. */
  expect(seq: number, e: Entry): void {
    this.unhashed.add(e);
    this.waiting.set(seq, [e]);
  }

  /** A file that was not stored after all (it could not be opened): nothing to wait for. */
  cancel(seq: number, e: Entry): void {
    this.unhashed.delete(e);
    this.waiting.delete(seq);
  }

  /** Whether this entry's digest is still to come. */
  isUnhashed(e: Entry): boolean {
    return this.unhashed.has(e);
  }

  /** A hard link to file `seq`, seen before the file was hashed: it gets the same digest. */
  shareDigest(seq: number, e: Entry): void {
    this.unhashed.add(e);
    this.waiting.get(seq)!.push(e);
  }

  /** The content reader's results: digests for the entries that wait for them. */
  readonly onResults = (results: ContentResult[]): void => {
    for (const r of results) {
      const named = this.waiting.get(r.seq);
      if (!named) continue;
      this.waiting.delete(r.seq);
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
    const { queue, marks } = this;
    let head = this.head;
    while (head < queue.length && !this.unhashed.has(queue[head]!)) {
      const mark = marks[head]!;
      const p = mark === DELETED ? this.entries.deleted(queue[head]!) : this.entries.add(queue[head]!, mark);
      head++;
      if (p) this.queueWait = (this.queueWait ?? Promise.resolve()).then(() => p);
    }
    if (head === queue.length) {
      this.queue = [];
      this.marks = [];
      this.head = 0;
    } else if (head >= 1024 && head * 2 >= queue.length) {
      // Most of it is sent: drop that part (each entry is moved at most about once).
      this.queue = queue.slice(head);
      this.marks = marks.slice(head);
      this.head = 0;
    } else this.head = head;
  }

  /**
   * Queue an entry for the manifest; a promise only when the caller must wait (as FrameWriter's
   * writes). `mark`: SAME when it is the parent's entry byte for byte, else NEW.
   */
  emit(e: Entry, mark = NEW): Promise<void> | undefined {
    if (e.extents !== undefined) this.holdsExtents = true;
    this.queue.push(e);
    this.marks.push(mark);
    this.drain();
    const w = this.queueWait;
    this.queueWait = undefined;
    return w;
  }

  /** A path of the parent's the walk passed by (deleted since), in its place in tree order. */
  emitDeleted(path: string): Promise<void> | undefined {
    return this.emit(tombstone(path), DELETED);
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
