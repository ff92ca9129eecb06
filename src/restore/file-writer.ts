import { Worker } from 'node:worker_threads';

/** What the writer thread needs to create one file. */
export interface SmallFile {
  /** Where, for file-system calls (bytes where a name is not UTF-8: see src/archive/names.ts). */
  abs: string | Buffer;
  mode: number;
  uid: number;
  gid: number;
  /** Milliseconds since the epoch (fractional). */
  mtime: number;
  chown: boolean;
}

interface WireFile extends SmallFile {
  offset: number;
  length: number;
}

const BATCH_BYTES = 4 << 20;
const BATCH_FILES = 1024;
const WINDOW = 4;

/**
 * Creates small files on a worker thread, in batches: content (already checked against its
 * SHA-256) travels in one transferred buffer per batch, and the thread makes plain synchronous
 * calls (open with the final mode, write, chown when needed, futimes, close). File creation
 * costs far more in the kernel than in JavaScript; doing it beside the main thread, which
 * fetches, decompresses and hashes, roughly halves a restore of many small files.
 * The caller must set the process umask to 0 so that modes come out exact.
 */
export class SmallFileWriter {
  private readonly worker: Worker;
  private buf = new ArrayBuffer(BATCH_BYTES);
  private view = new Uint8Array(this.buf);
  private used = 0;
  private files: WireFile[] = [];
  private sent = 0;
  private done = 0;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  /** Batch buffers the thread has handed back, for reuse (no garbage, no growing memory). */
  private readonly spare: ArrayBuffer[] = [];

  constructor() {
    const self = import.meta.url;
    this.worker = new Worker(new URL(self.endsWith('.ts') ? './file-writer-worker.ts' : './file-writer-worker.js', self));
    this.worker.on(
      'message',
      (m: { kind: 'done'; buffer: ArrayBuffer } | { kind: 'error'; message: string; code?: string; path: string }) => {
        if (m.kind === 'done') {
          this.done++;
          this.spare.push(m.buffer);
        } else this.failure ??= Object.assign(new Error(m.message), { code: m.code, path: m.path });
        this.wake?.();
      },
    );
    this.worker.on('error', (e) => {
      this.failure ??= e;
      this.wake?.();
    });
    this.worker.on('exit', (code) => {
      this.failure ??= new Error(`file writer thread exited (code ${code})`);
      this.wake?.();
    });
  }

  /** Queue one file; resolves when it is queued (not yet written: see flush). */
  async add(file: SmallFile, chunks: Buffer[]): Promise<void> {
    if (this.failure) throw this.failure;
    const length = chunks.reduce((n, c) => n + c.length, 0);
    if (this.files.length >= BATCH_FILES || BATCH_BYTES - this.used < length) await this.send();
    let off = this.used;
    for (const c of chunks) {
      this.view.set(c, off);
      off += c.length;
    }
    this.files.push({ ...file, offset: this.used, length });
    this.used = off;
  }

  private async send(): Promise<void> {
    if (this.files.length > 0) {
      await this.waitUntil(() => this.sent - this.done < WINDOW);
      this.worker.postMessage({ files: this.files, buffer: this.buf }, [this.buf]);
      this.sent++;
      this.buf = this.spare.pop() ?? new ArrayBuffer(BATCH_BYTES);
      this.view = new Uint8Array(this.buf);
      this.used = 0;
      this.files = [];
    }
  }

  private async waitUntil(ok: () => boolean): Promise<void> {
    while (!ok()) {
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
    if (this.failure) throw this.failure;
  }

  /** Write everything queued; throws the first write error (naming its path). */
  async flush(): Promise<void> {
    await this.send();
    await this.waitUntil(() => this.done === this.sent);
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
