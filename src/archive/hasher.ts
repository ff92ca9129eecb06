import { Worker } from 'node:worker_threads';

/**
 * SHA-256 of every file's content, computed on a worker thread from the frame buffers (shared
 * memory, no copies), so hashing runs beside file reading on another core. (The archive's own
 * hash stays on the main thread: posting compressed frames over would copy them, and the copies
 * cost more memory than the hashing costs time.)
 *
 * Use: while filling a frame, record update(seq, start, end) for each stretch of file content
 * and digest(seq) when a file ends; when the frame is full, submit(frame) hands those records
 * over and resolves with the digests of the files that ended in it.
 */
export class FileHasher {
  private readonly worker: Worker;
  private ops: number[] = [];
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (d: [number, string][]) => void; reject: (e: Error) => void }>();
  private failure: Error | undefined;

  constructor() {
    const self = import.meta.url;
    const file = new URL(self.endsWith('.ts') ? './hash-worker.ts' : './hash-worker.js', self);
    this.worker = new Worker(file);
    this.worker.unref();
    this.worker.on('message', (m: { kind: string; id?: number; digests?: [number, string][] }) => {
      if (m.kind === 'frame') {
        const r = this.waiting.get(m.id!);
        this.waiting.delete(m.id!);
        r?.resolve(m.digests!);
      }
    });
    const fail = (e: Error) => {
      this.failure ??= e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`hash worker exited (code ${code})`)));
  }

  update(seq: number, start: number, end: number): void {
    if (end > start) this.ops.push(0, seq, start, end);
  }

  digest(seq: number): void {
    this.ops.push(1, seq, 0, 0);
  }

  /** Hand over a full frame with the records made while filling it. */
  submit(frame: Buffer): Promise<[number, string][]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    // As a transferred typed array: cloning a plain array of thousands of numbers per frame
    // cost the main thread more than the hashing it hands over.
    const ops = Float64Array.from(this.ops);
    this.ops = [];
    const sab = frame.buffer;
    if (!(sab instanceof SharedArrayBuffer)) throw new Error('FileHasher needs frames in shared memory');
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ kind: 'frame', id, frame: sab, ops }, [ops.buffer]);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
