// Writing a batch of FileWriter's: checks each file's SHA-256 and creates it with synchronous
// calls. On the writer thread (file-writer-worker.ts), or on the main thread for a restore small
// enough to fit in one batch, which then starts no thread.
import { createHash, type Hash, hash } from 'node:crypto';
import * as fs from 'node:fs';
import { displayName, nameFromBytes } from '../archive/names.ts';
import {
  type Batch,
  F_CHOWN,
  F_END,
  F_GID,
  F_KIND,
  F_LENGTH,
  F_MODE,
  F_MTIME,
  F_OFFSET,
  F_UID,
  KIND_ABORT,
  KIND_FILE,
  type NewFile,
  type Reply,
  STRIDE,
} from './file-writer.ts';
import { SparseWriter } from './sparse.ts';

const FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

/** A file being written: created by a KIND_FILE record, its content checked when a record ends it. */
interface OpenFile extends NewFile {
  sum: string | undefined;
  fd: number;
  out: SparseWriter;
  /** Its content so far, when it comes in more than one record. */
  hash: Hash | undefined;
}

/** The file whose content goes on in the next batch (a large one), or whose record is being written. */
let open: OpenFile | undefined;

/** Remove the file being written: its content is incomplete or not what was backed up. */
function drop(f: OpenFile): void {
  fs.closeSync(f.fd);
  fs.rmSync(f.abs, { force: true });
}

/** Owner, mode and times, then close (a failure leaves the file open, for the caller to drop). */
function finish(f: OpenFile): void {
  if (f.chown) fs.fchownSync(f.fd, f.uid, f.gid);
  // chown clears setuid/setgid bits, so the mode is set again after it when it has them.
  if (f.chown && f.mode & 0o6000) fs.fchmodSync(f.fd, f.mode & 0o7777);
  fs.futimesSync(f.fd, f.mtime / 1000, f.mtime / 1000);
  fs.closeSync(f.fd);
}

/** Write record `i` of a batch; a file whose content is not as backed up is removed, its record's index put in `damaged`. */
function writeRecord(batch: Batch, fields: Float64Array, data: Uint8Array, i: number, damaged: number[]): void {
  const r = i * STRIDE;
  const kind = fields[r + F_KIND];
  if (kind === KIND_ABORT) {
    if (open) drop(open);
    open = undefined;
    return;
  }
  if (kind === KIND_FILE) {
    const abs = batch.names[i]!;
    const mode = fields[r + F_MODE]!;
    const fd = fs.openSync(abs, FLAGS, mode & 0o7777);
    open = {
      abs,
      sum: batch.sums[i],
      mode,
      uid: fields[r + F_UID]!,
      gid: fields[r + F_GID]!,
      mtime: fields[r + F_MTIME]!,
      chown: fields[r + F_CHOWN] === 1,
      fd,
      // All-zero blocks become holes (see SparseWriter).
      out: new SparseWriter(fd),
      hash: undefined,
    };
  }
  const cur = open;
  if (!cur) throw new Error('file writer: content for no open file');
  const piece = data.subarray(fields[r + F_OFFSET], fields[r + F_OFFSET]! + fields[r + F_LENGTH]!);
  cur.out.write(piece);
  const ends = fields[r + F_END] === 1;
  if (!ends) {
    cur.hash ??= createHash('sha256');
    cur.hash.update(piece);
    return;
  }
  cur.out.finish();
  // A file in one piece (almost all of them) is hashed in one call, without a Hash object.
  const digest = cur.hash ? cur.hash.update(piece).digest('hex') : hash('sha256', piece, 'hex');
  if (cur.sum !== undefined && digest !== cur.sum) {
    open = undefined;
    drop(cur);
    damaged.push(i);
    return;
  }
  finish(cur);
  open = undefined;
}

/**
 * Write a batch's records in order. The reply gives the buffers back (with the records whose
 * content was damaged), or names the first error, after which nothing more is written.
 */
export function writeBatch(batch: Batch): Reply {
  const data = new Uint8Array(batch.buffer);
  const fields = new Float64Array(batch.fields);
  const damaged: number[] = [];
  for (let i = 0; i < batch.count; i++) {
    try {
      writeRecord(batch, fields, data, i, damaged);
    } catch (e) {
      const abs = open?.abs ?? (fields[i * STRIDE + F_KIND] === KIND_FILE ? batch.names[i] : undefined);
      try {
        if (open) drop(open);
      } catch {
        // The error being reported is the one that matters; the file's own may follow from it.
      }
      open = undefined;
      const err = e as NodeJS.ErrnoException;
      // A path of bytes arrives as a Uint8Array: said as people read it.
      const where = abs === undefined ? '' : typeof abs === 'string' ? abs : displayName(nameFromBytes(abs));
      return { kind: 'error', message: err.message, code: err.code, path: where };
    }
  }
  return { kind: 'done', seq: batch.seq, buffer: batch.buffer, fields: batch.fields, damaged };
}
