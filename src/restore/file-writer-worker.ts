// Writer thread of SmallFileWriter: creates each file of a batch with synchronous calls.
import * as fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { displayName, nameFromBytes } from '../archive/names.ts';
import type { SmallFile } from './file-writer.ts';
import { SparseWriter } from './sparse.ts';

const FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
let failed = false;

parentPort!.on('message', (batch: { files: (SmallFile & { offset: number; length: number })[]; buffer: ArrayBuffer }) => {
  if (failed) return;
  const data = new Uint8Array(batch.buffer);
  for (const f of batch.files) {
    let fd: number | undefined;
    try {
      fd = fs.openSync(f.abs, FLAGS, f.mode & 0o7777);
      // All-zero blocks become holes, as for large files (see SparseWriter).
      const out = new SparseWriter(fd);
      out.write(data, f.offset, f.length);
      out.finish();
      if (f.chown) fs.fchownSync(fd, f.uid, f.gid);
      // chown clears setuid/setgid bits, so the mode is set again after it when it has them.
      if (f.chown && f.mode & 0o6000) fs.fchmodSync(fd, f.mode & 0o7777);
      fs.futimesSync(fd, f.mtime / 1000, f.mtime / 1000);
      fs.closeSync(fd);
    } catch (e) {
      if (fd !== undefined) fs.closeSync(fd);
      if (fd !== undefined) fs.rmSync(f.abs, { force: true });
      const err = e as NodeJS.ErrnoException;
      failed = true;
      // A path of bytes arrives as a Uint8Array: said as people read it.
      const where = typeof f.abs === 'string' ? f.abs : displayName(nameFromBytes(f.abs));
      parentPort!.postMessage({ kind: 'error', message: err.message, code: err.code, path: where });
      return;
    }
  }
  // The buffer goes back to the main thread for the next batch.
  parentPort!.postMessage({ kind: 'done', buffer: batch.buffer }, [batch.buffer]);
});
