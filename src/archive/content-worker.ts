// Worker side of ContentReader: reads file contents into the shared frame buffers, hashes them
// and checks each file for changes (fstat after the read), off the main thread.
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { ObjectKey } from '../crypto/aead.ts';
import { errText } from '../errors.ts';
import { ChunkList } from './chunk-list.ts';
import { type ContentResult, OP_CHUNK, OP_READ, OP_WIDTH } from './content-reader.ts';

/** Stored frames of the archive to hash first, in archive order: buffers and lengths. */
interface StoredFrames {
  stored: SharedArrayBuffer[];
  storedLengths: number[];
}

interface DigestJob extends StoredFrames {
  kind: 'digest';
  id: number;
}

/** The archive's key, for an encrypted archive: sent before any frame. */
interface KeyJob {
  kind: 'key';
  sealKey: { key: Uint8Array; prefix: Uint8Array };
}

/** Seal frame[0, length) in place as piece `index` of the archive; the sealed bytes are hashed in index order. */
interface SealJob {
  kind: 'seal';
  id: number;
  frame: SharedArrayBuffer;
  length: number;
  index: number;
  last: boolean;
}

interface FrameJob extends StoredFrames {
  kind: 'frame';
  id: number;
  frame: SharedArrayBuffer;
  /**
   * Flattened ops of OP_WIDTH numbers:
   *   [OP_READ, seq, fd, start, end, position]: file bytes from position into frame[start, end)
   *   [OP_END, seq, fd, size, mtimeMs, ino]: the file is done: compare, digest
   *   [OP_CHUNK, seq, fd, 0, 0, 0]: before its first read: list the file's chunks too
   */
  ops: Float64Array;
}

interface FileState {
  fd: number;
  hash: Hash;
  /** Its chunk list, for a large file (OP_CHUNK). */
  chunks?: ChunkList;
  /** The file ended early: the rest of its booked bytes are zeros. */
  short: boolean;
  error?: string;
}

const files = new Map<number, FileState>();

function readInto(f: FileState, view: Uint8Array, start: number, end: number, position: number): void {
  let at = start;
  while (at < end && !f.short && f.error === undefined) {
    try {
      const n = fs.readSync(f.fd, view, at, end - at, position + (at - start));
      if (n === 0) f.short = true;
      at += n;
    } catch (e) {
      f.error = errText(e);
    }
  }
  if (at < end) view.fill(0, at, end);
  f.hash.update(view.subarray(start, end));
  f.chunks?.update(view.subarray(start, end));
}

function finish(seq: number, f: FileState, size: number, mtimeMs: number, ino: number): ContentResult {
  let changed = f.short;
  if (f.error === undefined) {
    try {
      const after = fs.fstatSync(f.fd);
      changed ||= after.size !== size || after.mtimeMs !== mtimeMs || after.ino !== ino;
    } catch (e) {
      f.error = errText(e);
    }
  }
  const chunks = f.chunks?.finish();
  return {
    seq,
    sha256: f.hash.digest('hex'),
    changed,
    ...(f.error === undefined ? {} : { error: f.error }),
    ...(chunks === undefined ? {} : { chunks }),
  };
}

/** SHA-256 of the archive's stored bytes (ContentReader as StoredHasher). */
const archive = createHash('sha256');

let sealKey: ObjectKey | undefined;
/** Sealed frames waiting for those before them to be hashed, by index. */
const sealed = new Map<number, { id: number; frame: SharedArrayBuffer; length: number }>();
let nextToHash = 0;

function seal(job: SealJob): void {
  if (!sealKey) throw new Error('content worker: asked to seal without a key');
  const length = sealKey.sealInPlace(new Uint8Array(job.frame), job.length, job.index, job.last);
  sealed.set(job.index, { id: job.id, frame: job.frame, length });
  // The reply gives the buffer back, so it waits until the frame is hashed.
  for (let s = sealed.get(nextToHash); s; s = sealed.get(nextToHash)) {
    sealed.delete(nextToHash++);
    archive.update(new Uint8Array(s.frame, 0, s.length));
    parentPort!.postMessage({ kind: 'sealed', id: s.id, sealedLength: s.length });
  }
}

parentPort!.on('message', (job: FrameJob | DigestJob | SealJob | KeyJob) => {
  if (job.kind === 'key') {
    sealKey = ObjectKey.fromMaterial(job.sealKey);
    return;
  }
  if (job.kind === 'seal') return seal(job);
  for (let i = 0; i < job.stored.length; i++) archive.update(new Uint8Array(job.stored[i]!, 0, job.storedLengths[i]!));
  if (job.kind === 'digest') {
    parentPort!.postMessage({ kind: 'digest', id: job.id, digest: archive.digest('hex') });
    return;
  }
  const view = new Uint8Array(job.frame);
  const results: ContentResult[] = [];
  const ops = job.ops;
  for (let i = 0; i < ops.length; i += OP_WIDTH) {
    const seq = ops[i + 1]!;
    let f = files.get(seq);
    if (!f) {
      f = { fd: ops[i + 2]!, hash: createHash('sha256'), short: false };
      files.set(seq, f);
    }
    if (ops[i] === OP_READ) readInto(f, view, ops[i + 3]!, ops[i + 4]!, ops[i + 5]!);
    else if (ops[i] === OP_CHUNK) f.chunks = new ChunkList();
    else {
      results.push(finish(seq, f, ops[i + 3]!, ops[i + 4]!, ops[i + 5]!));
      files.delete(seq);
    }
  }
  parentPort!.postMessage({ kind: 'frame', id: job.id, results });
});
