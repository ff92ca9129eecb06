import { createHash } from 'node:crypto';
import type { FrameWriter } from '../archive/frames.ts';
import { encodeHeader, padding } from '../archive/tar.ts';
import { S3BackupError } from '../errors.ts';
import type { BackupStats, Entry } from '../repo/manifest.ts';
import type { ArchiveSet } from './archive-set.ts';
import { extensionOf } from './entry-writer.ts';
import type { ManifestQueue } from './manifest-queue.ts';
import type { StreamSpec } from './stream-source.ts';
import type { BackupProgress } from './types.ts';

// Stage "stream entry": a backup's one file read from a stream (stdin, a command's output)
// into its archives and its entry into the manifest queue.

export interface StreamEntryOptions {
  stream: StreamSpec;
  archives: ArchiveSet;
  queue: ManifestQueue;
  stats: BackupStats;
  /** The parent backup has a file of this name (the entry then counts as changed, not new). */
  inParent: boolean;
  /** The file's time in the backup: the backup's start. */
  started: Date;
  extensions: Map<string, number>;
  onProgress: ((p: BackupProgress) => void) | undefined;
  signal: AbortSignal | undefined;
}

/**
 * Copy the stream into the frames as it comes, hashing it on the way: memory is the frames in
 * flight, as for any file, whatever the stream's size. Every run stores the stream anew (there
 * is nothing to compare with but the whole content). A producer that fails (a command's exit
 * status), an interruption or a store error stop it, and the backup fails.
 */
export async function writeStreamEntry(o: StreamEntryOptions): Promise<void> {
  const { stats } = o;
  const input = o.stream.open();
  const stop = () => input.stop();
  o.signal?.addEventListener('abort', stop, { once: true });
  if (o.signal?.aborted) stop();
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const mtime = o.started.getTime();
  const e: Entry = { path: input.name, type: 'file', mode: 0o600, uid, gid, mtime, ctime: mtime, ino: 0, size: 0 };
  try {
    await o.archives.streamed(async (out, slot) => {
      const frames = out.frames;
      const hash = createHash('sha256');
      let size = 0;
      let lastProgress = 0;
      try {
        for await (const read of input.body as AsyncIterable<Buffer | string>) {
          if (o.signal?.aborted) break;
          const chunk = typeof read === 'string' ? Buffer.from(read) : read;
          hash.update(chunk);
          await copyIn(frames, chunk);
          size += chunk.length;
          const now = performance.now();
          if (o.onProgress && now - lastProgress >= 100) {
            lastProgress = now;
            o.onProgress({ files: 0, bytesDone: size, bytesIn: size, bytesOut: o.archives.bytesOut, current: input.name });
          }
        }
      } catch (err) {
        if (o.signal?.aborted) throw interrupted();
        // A broken pipe says less than the command's own exit status.
        await input.finished();
        throw err;
      }
      if (o.signal?.aborted) throw interrupted();
      // The producer's verdict before anything is finished: a failed dump is no backup.
      await input.finished();
      const p = frames.writeZeros(padding(size));
      if (p) await p;
      Object.assign(e, { size, sha256: hash.digest('hex'), archive: slot, offset: 0 });
      return encodeHeader({ path: input.name, type: 'file', mode: e.mode, uid, gid, size, mtime: Math.floor(mtime / 1000) });
    });
  } catch (err) {
    input.stop();
    throw err;
  } finally {
    o.signal?.removeEventListener('abort', stop);
  }
  stats.files = 1;
  stats.bytesIn = e.size;
  stats.bytesTotal = e.size;
  if (o.inParent) stats.changedFiles = 1;
  else stats.newFiles = 1;
  const ext = extensionOf(e.path);
  o.extensions.set(ext, (o.extensions.get(ext) ?? 0) + 1);
  const w = o.queue.emit(e);
  if (w) await w;
}

const interrupted = () => new S3BackupError('backup interrupted; nothing was recorded');

/** A chunk into the frames, frame by frame. */
async function copyIn(frames: FrameWriter, chunk: Buffer): Promise<void> {
  let at = 0;
  while (at < chunk.length) {
    const space = frames.space();
    const n = Math.min(space.length, chunk.length - at);
    chunk.copy(space.buf, space.start, at, at + n);
    at += n;
    const p = frames.commit(n);
    if (p) await p;
  }
}
