import { Worker } from 'node:worker_threads';

/** What a writer thread needs to create one file. */
export interface NewFile {
  /** Where, for file-system calls (bytes where a name is not UTF-8: see src/archive/names.ts). */
  abs: string | Buffer;
  mode: number;
  uid: number;
  gid: number;
  /** Milliseconds since the epoch (fractional). */
  mtime: number;
  chown: boolean;
}

/**
 * A batch as it travels: `count` records, each STRIDE numbers in `fields` (F_*), a name and a
 * SHA-256 for the records that begin a file, and the content they point into in `buffer`.
 * Numbers in one typed array rather than an object per file: a batch of a thousand small
 * files is cloned in one copy, not property by property.
 */
export interface Batch {
  seq: number;
  count: number;
  fields: ArrayBuffer;
  /** Where a KIND_FILE record creates its file (NewFile.abs). */
  names: (string | Buffer | undefined)[];
  /** The SHA-256 (hex) a KIND_FILE record's content must have, checked before the file is kept. */
  sums: (string | undefined)[];
  buffer: ArrayBuffer;
}

/** A record's kind: a file begins (create it), more of the file begun earlier, or that file given up (remove it). */
export const KIND_FILE = 0;
export const KIND_MORE = 1;
export const KIND_ABORT = 2;
/** Fields of a record: its kind, its bytes in the batch, whether the file's content ends with them, and (KIND_FILE) the file's metadata. */
export const F_KIND = 0;
export const F_OFFSET = 1;
export const F_LENGTH = 2;
export const F_END = 3;
export const F_MODE = 4;
export const F_UID = 5;
export const F_GID = 6;
export const F_MTIME = 7;
export const F_CHOWN = 8;
export const STRIDE = 9;

export type Reply =
  | { kind: 'done'; seq: number; buffer: ArrayBuffer; fields: ArrayBuffer; damaged: number[] }
  | { kind: 'error'; message: string; code?: string; path: string };

/**
 * 2 MiB batches, at most 2 in flight: 4 MiB batches were no faster and cost ~15 MB more peak
 * RSS (docs/performance.md, "Restore: where the time goes").
 */
const BATCH_BYTES = 2 << 20;
const BATCH_RECORDS = 1024;
const WINDOW = 2;

/**
 * Creates restored files on a worker thread, in batches: the content of many files travels in
 * one transferred buffer per batch (a large file's over several), and the thread checks each
 * file's SHA-256 and makes plain synchronous calls (open with the final mode, write leaving
 * holes, chown when needed, futimes, close). A file whose content does not match is removed
 * there and reported. Hashing and file creation cost more than the fetching and decompressing
 * left to the main thread, which is free meanwhile to read the manifest and copy content into
 * the next batch. One thread: with two, the restore was no faster (both cores are busy already,
 * with the pool's decompression) and took ~20 MB more. The thread starts with the first batch
 * sent to it: a restore whose files all fit in the batch being filled when it is flushed (one
 * directory, a few files) writes them on the main thread instead, as a thread costs more to
 * start (~40 ms of CPU and ~18 MiB, more wall time on a busy machine) than it would save. Each
 * file's `Note` comes back to `onDone` once the file is written (or found damaged). The caller
 * must set the process umask to 0 so that modes come out exact.
 */
export class FileWriter<Note> {
  private worker: Worker | undefined;
  /** Batches sent and not yet handed back. */
  private inFlight = 0;
  private readonly onDone: (note: Note, damaged: boolean) => void;
  private buf = new ArrayBuffer(BATCH_BYTES);
  private view = new Uint8Array(this.buf);
  private used = 0;
  private fieldsBuf = new ArrayBuffer(BATCH_RECORDS * STRIDE * 8);
  private fields = new Float64Array(this.fieldsBuf);
  private count = 0;
  private names: (string | Buffer | undefined)[] = [];
  private sums: (string | undefined)[] = [];
  /** Files whose content ends in the batch being filled (their last record's index), and in each batch sent (by seq). */
  private notes: { at: number; note: Note }[] = [];
  private readonly sentNotes = new Map<number, { at: number; note: Note }[]>();
  private seq = 0;
  /** The file being given: its note, its record in the batch being filled and where its bytes there start. */
  private cur: { note: Note; at: number; start: number } | undefined;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  /** Batch buffers the threads have handed back, for reuse (no garbage, no growing memory). */
  private readonly spare: { buffer: ArrayBuffer; fields: ArrayBuffer }[] = [];

  constructor(onDone: (note: Note, damaged: boolean) => void) {
    this.onDone = onDone;
  }

  /** The writer thread, started when the first batch is sent to it. */
  private thread(): Worker {
    if (this.worker) return this.worker;
    const self = import.meta.url;
    const url = new URL(self.endsWith('.ts') ? './file-writer-worker.ts' : './file-writer-worker.js', self);
    const worker = new Worker(url);
    worker.on('message', (m: Reply) => this.reply(m));
    worker.on('error', (e) => this.fail(e));
    worker.on('exit', (code) => this.fail(new Error(`file writer thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.wake?.();
  }

  private reply(m: Reply): void {
    if (m.kind === 'error') {
      this.fail(Object.assign(new Error(m.message), { code: m.code, path: m.path }));
      return;
    }
    this.inFlight--;
    this.spare.push({ buffer: m.buffer, fields: m.fields });
    const damaged = m.damaged.length > 0 ? new Set(m.damaged) : undefined;
    try {
      for (const n of this.sentNotes.get(m.seq) ?? []) this.onDone(n.note, damaged?.has(n.at) ?? false);
    } catch (e) {
      this.fail(e as Error);
    }
    this.sentNotes.delete(m.seq);
    this.wake?.();
  }

  /** Bytes that fit in the batch being filled. */
  get room(): number {
    return BATCH_BYTES - this.used;
  }

  private record(kind: number, name: string | Buffer | undefined, sum: string | undefined): number {
    const at = this.count++;
    const f = at * STRIDE;
    this.fields[f + F_KIND] = kind;
    this.fields[f + F_OFFSET] = this.used;
    this.fields[f + F_LENGTH] = 0;
    this.fields[f + F_END] = 0;
    this.names[at] = name;
    this.sums[at] = sum;
    return at;
  }

  /**
   * Begin a file of `size` bytes. One that fits in a batch is kept whole in one (a new batch
   * begins if need be); a larger one is given in pieces (see more).
   */
  async begin(file: NewFile, sha256: string | undefined, size: number, note: Note): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.count >= BATCH_RECORDS || (size <= BATCH_BYTES && this.room < size)) await this.send();
    this.beginNow(file, sha256, note);
  }

  /** Whether a file of `size` bytes fits whole in the batch being filled: it may begin there at once (beginNow). */
  fits(size: number): boolean {
    return this.count < BATCH_RECORDS && this.room >= size;
  }

  /** begin, for a file that fits, or after a begin that waited. */
  beginNow(file: NewFile, sha256: string | undefined, note: Note): void {
    if (this.failure) throw this.failure;
    const at = this.record(KIND_FILE, file.abs, sha256);
    const f = at * STRIDE;
    this.fields[f + F_MODE] = file.mode;
    this.fields[f + F_UID] = file.uid;
    this.fields[f + F_GID] = file.gid;
    this.fields[f + F_MTIME] = file.mtime;
    this.fields[f + F_CHOWN] = file.chown ? 1 : 0;
    this.cur = { note, at, start: this.used };
  }

  /** Content of the current file, at most `room` bytes; copied at once. */
  put(chunk: Uint8Array): void {
    this.view.set(chunk, this.used);
    this.used += chunk.length;
    this.fields[this.cur!.at * STRIDE + F_LENGTH]! += chunk.length;
  }

  /** The batch is full: send it; the current file goes on in the next one. */
  async more(): Promise<void> {
    await this.send();
    const cur = this.cur!;
    cur.at = this.record(KIND_MORE, undefined, undefined);
    cur.start = 0;
  }

  /** The current file's content is all given. */
  end(): void {
    const cur = this.cur!;
    this.fields[cur.at * STRIDE + F_END] = 1;
    this.notes.push({ at: cur.at, note: cur.note });
    this.cur = undefined;
  }

  /** Give up the current file: nothing of it stays on disk (a record begun in this batch never leaves). */
  abort(): void {
    const cur = this.cur;
    if (!cur) return;
    this.cur = undefined;
    const begun = this.fields[cur.at * STRIDE + F_KIND] === KIND_FILE;
    this.count = cur.at;
    this.used = cur.start;
    if (!begun) this.record(KIND_ABORT, undefined, undefined);
  }

  private async send(): Promise<void> {
    if (this.count === 0) return;
    await this.waitUntil(() => this.inFlight < WINDOW);
    this.thread().postMessage(this.take(), [this.buf, this.fieldsBuf]);
    this.renew();
  }

  /** The batch being filled, counted as in flight from now on. */
  private take(): Batch {
    const seq = this.seq++;
    this.names.length = this.count;
    this.sums.length = this.count;
    this.inFlight++;
    this.sentNotes.set(seq, this.notes);
    return { seq, count: this.count, fields: this.fieldsBuf, names: this.names, sums: this.sums, buffer: this.buf };
  }

  /** A new batch to fill, in buffers handed back if there are some. */
  private renew(): void {
    const next = this.spare.pop();
    this.buf = next?.buffer ?? new ArrayBuffer(BATCH_BYTES);
    this.fieldsBuf = next?.fields ?? new ArrayBuffer(BATCH_RECORDS * STRIDE * 8);
    this.view = new Uint8Array(this.buf);
    this.fields = new Float64Array(this.fieldsBuf);
    this.used = 0;
    this.count = 0;
    this.names = [];
    this.sums = [];
    this.notes = [];
  }

  private async waitUntil(ok: () => boolean): Promise<void> {
    while (!ok()) {
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
    if (this.failure) throw this.failure;
  }

  /** Write everything given; throws the first write error (naming its path). */
  async flush(): Promise<void> {
    if (!this.worker && this.count > 0 && this.cur === undefined) {
      const { writeBatch } = await import('./file-batch.ts');
      const batch = this.take();
      this.reply(writeBatch(batch));
      this.renew();
    }
    await this.send();
    await this.waitUntil(() => this.inFlight === 0);
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
  }
}
