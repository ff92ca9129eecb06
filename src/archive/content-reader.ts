import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { ObjectKey } from '../crypto/aead.ts';
import type { StoredHasher } from './frames.ts';

/** What became of one file's content, as the reader found it. */
export interface ContentResult {
  seq: number;
  /** SHA-256 (hex) of the bytes stored for the file (zeros stand in for what could not be read). */
  sha256: string;
  /** The file changed while being read: it shrank, or its size, mtime or inode differ after. */
  changed: boolean;
  /** A read error; the unread part is stored as zeros. */
  error?: string;
  /** The file's chunk list (docs/format.md "Extents"), when chunked() asked for it. */
  chunks?: string;
}

/** Operation codes in the flattened op list sent with each frame (see content-worker.ts). */
export const OP_READ = 0;
export const OP_END = 1;
export const OP_CHUNK = 2;
export const OP_WIDTH = 6;

/**
 * Reads file contents straight into the frame buffers (shared memory) on a worker thread,
 * hashing each file (SHA-256) as it goes, and checks after each file whether it changed while
 * being read. The main thread walks, opens each file, writes the tar headers and books where
 * the content goes; the read, fstat and close system calls and the hashing, most of the work on
 * a tree of small files, run beside it on another core.
 *
 * Use: open the file (a failure to open is the caller's to report) and own(seq, fd); while
 * filling a frame, read(seq, fd, start, end, position) for each stretch of content booked in it
 * and end(seq, fd, …) after the last one; when the frame is full, submit(frame) hands those
 * bookings over and resolves, once its bytes are all in place, with the results of the files
 * that ended in it (each file is closed then). close() at the end, or on failure: it closes
 * those still open.
 *
 * It also hashes the archive's stored bytes (StoredHasher, for FrameWriter): frames given to
 * update() ride along with the next message, so hashing them costs the main thread no message
 * of its own; digest() sends what is left and returns the hex digest. Given an archive key, it
 * seals the archive's frames there too, in place in their frame buffers (seal()): AES-GCM and
 * the hash of the sealed bytes then cost the main thread one message per frame.
 */
export class ContentReader implements StoredHasher {
  private readonly worker: Worker;
  /** Bookings for the frame being filled, OP_WIDTH numbers each (see content-worker.ts); opsLength used. */
  private ops = new Float64Array(OP_WIDTH * 256);
  private opsLength = 0;
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (r: ContentResult[]) => void; reject: (e: Error) => void }>();
  private readonly digests = new Map<number, { resolve: (hex: string) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;
  /** Files opened and not yet done (seq → fd). We close them: a worker that closes a handle it did not open makes Node warn. */
  private readonly open = new Map<number, number>();
  /** Stored frames to hash, not yet sent: buffer, length, and who waits for the buffer back. */
  private stored: { sab: SharedArrayBuffer; length: number; done: () => void }[] = [];
  /** Per message id: the stored frames it carried, released when it is answered. */
  private readonly carried = new Map<number, (() => void)[]>();
  /** Frames being sealed, by message id. */
  private readonly sealing = new Map<number, { resolve: (sealedLength: number) => void; reject: (e: Error) => void }>();
  readonly seal: StoredHasher['seal'];

  /** sealKey: the archive's key, for an encrypted archive (see seal). */
  constructor(opts: { sealKey?: ObjectKey | undefined } = {}) {
    this.worker = spare ?? startWorker();
    spare = undefined;
    // The key goes first, ahead of any frame (a worker handles its messages in order).
    if (opts.sealKey) this.worker.postMessage({ kind: 'key', sealKey: opts.sealKey.material() });
    if (opts.sealKey) this.seal = (frame, length, index, last) => this.sealFrame(frame, length, index, last);
    this.worker.on('message', (m: { kind: string; id: number; results?: ContentResult[]; digest?: string; sealedLength?: number }) => {
      for (const done of this.carried.get(m.id) ?? []) done();
      this.carried.delete(m.id);
      if (m.kind === 'sealed') {
        this.sealing.get(m.id)?.resolve(m.sealedLength!);
        this.sealing.delete(m.id);
        return;
      }
      if (m.kind === 'digest') {
        this.digests.get(m.id)?.resolve(m.digest!);
        this.digests.delete(m.id);
        return;
      }
      const r = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      for (const res of m.results ?? []) {
        const fd = this.open.get(res.seq);
        this.open.delete(res.seq);
        if (fd !== undefined) closeQuietly(fd);
      }
      r?.resolve(m.results ?? []);
    });
    const fail = (e: Error) => {
      this.failure ??= e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
      for (const w of this.digests.values()) w.reject(e);
      this.digests.clear();
      for (const w of this.sealing.values()) w.reject(e);
      this.sealing.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`content reader worker exited (code ${code})`)));
  }

  /** A file the caller opened: closed when its result comes back, or by close(). */
  own(seq: number, fd: number): void {
    this.open.set(seq, fd);
  }

  /** Read the file's bytes [position, position + end - start) into the current frame at [start, end). */
  read(seq: number, fd: number, start: number, end: number, position: number): void {
    if (end > start) {
      this.book(OP_READ, seq, fd, start, end, position);
    }
  }

  /** Before the file's first read: list its content-defined chunks too (ContentResult.chunks). */
  chunked(seq: number, fd: number): void {
    this.book(OP_CHUNK, seq, fd, 0, 0, 0);
  }

  /** The file's content is all booked: check it against what the walk saw, close it, digest it. */
  end(seq: number, fd: number, size: number, mtimeMs: number, ino: number): void {
    this.book(OP_END, seq, fd, size, mtimeMs, ino);
  }

  private book(op: number, seq: number, fd: number, a: number, b: number, c: number): void {
    if (this.opsLength + OP_WIDTH > this.ops.length) {
      const grown = new Float64Array(this.ops.length * 2);
      grown.set(this.ops);
      this.ops = grown;
    }
    const o = this.ops;
    let i = this.opsLength;
    o[i++] = op;
    o[i++] = seq;
    o[i++] = fd;
    o[i++] = a;
    o[i++] = b;
    o[i++] = c;
    this.opsLength = i;
  }

  /** Hand over a full frame with the bookings made while filling it. */
  submit(frame: Buffer): Promise<ContentResult[]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    // As a transferred typed array: cloning a plain array of thousands of numbers per frame
    // costs the main thread more than the work it hands over. The bookings are kept in a typed
    // array that is reused frame after frame; what is sent is an exact copy.
    const ops = this.ops.slice(0, this.opsLength);
    this.opsLength = 0;
    const sab = frame.buffer;
    if (!(sab instanceof SharedArrayBuffer)) throw new Error('ContentReader needs frames in shared memory');
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ kind: 'frame', id, frame: sab, ops, ...this.takeStored(id) }, [ops.buffer]);
    });
  }

  update(frame: Buffer, length: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const sab = frame.buffer;
    if (!(sab instanceof SharedArrayBuffer) || frame.byteOffset !== 0)
      throw new Error('ContentReader hashes whole frame buffers in shared memory');
    return new Promise((done) => this.stored.push({ sab, length, done }));
  }

  private sealFrame(frame: Buffer, length: number, index: number, last: boolean): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    const sab = frame.buffer;
    if (!(sab instanceof SharedArrayBuffer) || frame.byteOffset !== 0)
      throw new Error('ContentReader seals whole frame buffers in shared memory');
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.sealing.set(id, { resolve, reject });
      this.worker.postMessage({ kind: 'seal', id, frame: sab, length, index, last });
    });
  }

  digest(): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.digests.set(id, { resolve, reject });
      this.worker.postMessage({ kind: 'digest', id, ...this.takeStored(id) });
    });
  }

  /** The stored frames waiting to be hashed, for message `id` to carry. */
  private takeStored(id: number): { stored: SharedArrayBuffer[]; storedLengths: number[] } {
    const taken = this.stored;
    this.stored = [];
    if (taken.length > 0)
      this.carried.set(
        id,
        taken.map((t) => t.done),
      );
    return { stored: taken.map((t) => t.sab), storedLengths: taken.map((t) => t.length) };
  }

  /** Stop the worker, then close every file still open (a backup that failed midway). */
  async close(): Promise<void> {
    await this.worker.terminate();
    for (const fd of this.open.values()) closeQuietly(fd);
    this.open.clear();
  }
}

/** A worker started ahead of need by prestartContentReader, for the next ContentReader. */
let spare: Worker | undefined;

function startWorker(): Worker {
  const self = import.meta.url;
  const file = new URL(self.endsWith('.ts') ? './content-worker.ts' : './content-worker.js', self);
  const worker = new Worker(file);
  worker.unref();
  return worker;
}

/**
 * Start the next ContentReader's worker now. A worker takes ~0.1 s to boot (a fresh isolate that
 * loads its modules), time in which a backup's first frames would wait unread: started while
 * the repository opens, it is ready when they come. Unused, it holds no file and does not keep
 * the process alive; one that dies unused is simply not taken.
 */
export function prestartContentReader(): void {
  if (spare) return;
  const worker = startWorker();
  // Until a ContentReader takes it (and listens itself), its failure must not go unhandled.
  worker.on('error', () => {});
  worker.once('exit', () => {
    if (spare === worker) spare = undefined;
  });
  spare = worker;
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already gone: nothing to release
  }
}
