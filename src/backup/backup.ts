import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import type { Codec } from '../archive/codec.ts';
import { DEFAULT_FRAME_SIZE, FrameWriter } from '../archive/frames.ts';
import { FileHasher } from '../archive/hasher.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from '../archive/tar.ts';
import { IntegrityError, S3BackupError, UsageError } from '../errors.ts';
import {
  type ArchiveRef,
  type BackupStats,
  type Entry,
  EntryWriter,
  encodeManifest,
  encodeManifestHead,
  entriesSize,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  MAX_HEADER_WARNINGS,
  type ManifestHeader,
} from '../repo/manifest.ts';
import { newSnapshotId, Repository } from '../repo/repository.ts';
import type { Store } from '../store/store.ts';
import { VERSION } from '../version.ts';
import { errText, makeExcluder, walkSource } from './walk.ts';

export interface BackupOptions {
  store: Store;
  /** Files or directories; each becomes a top-level name in the snapshot (its basename). */
  sources: string[];
  excludes?: string[];
  /** Absolute paths never to back up (the repository and log directory, if inside a source). */
  excludePaths?: string[];
  tags?: string[];
  codec?: Codec;
  level?: number;
  frameSize?: number;
  /** Frames compressed at once (default: one per core, at least 2). */
  maxInFlight?: number;
  host?: string;
  onProgress?: (p: BackupProgress) => void;
  /** Called for each warning as it happens (also collected in the result). */
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
}

export interface BackupProgress {
  files: number;
  bytesIn: number;
  bytesOut: number;
  current: string;
}

/** What a backup did: its stats (as in the manifest header) plus where it went. */
export interface BackupResult extends Omit<BackupStats, 'warnings'> {
  id: string;
  repository: string;
  repositoryCreated: boolean;
  kind: 'full';
  time: string;
  archiveKey: string;
  manifestKey: string;
  /** Every warning (the manifest header keeps the first 100 and the count). */
  warnings: string[];
}

/** Pre-flight for sources: each exists and is readable, and names do not collide. */
export function resolveSources(sources: string[]): { path: string; name: string }[] {
  if (sources.length === 0) throw new UsageError('nothing to back up: give at least one source path');
  const out: { path: string; name: string }[] = [];
  const names = new Map<string, string>();
  for (const s of sources) {
    const abs = path.resolve(s);
    let st: fs.Stats;
    try {
      st = fs.statSync(abs);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new UsageError(`source ${s} does not exist`, { hint: 'check the path (relative paths are from the current directory)' });
      }
      throw new UsageError(`source ${s} cannot be read: ${errText(e)}`);
    }
    try {
      fs.accessSync(abs, st.isDirectory() ? fs.constants.R_OK | fs.constants.X_OK : fs.constants.R_OK);
    } catch {
      throw new UsageError(`source ${s} is not readable by this user`, { hint: 'run as a user that can read it, or fix its permissions' });
    }
    const name = path.basename(abs) || 'root';
    const clash = names.get(name);
    if (clash) {
      throw new UsageError(`sources ${clash} and ${s} would both be stored as "${name}"`, {
        hint: 'back them up separately or from their common parent',
      });
    }
    names.set(name, s);
    out.push({ path: abs, name });
  }
  return out;
}

/**
 * One full backup: walk → tar → compress (frames, in parallel) → upload, then the manifest,
 * written last and create-only. Until the manifest exists there is no backup: a failure or
 * kill before that leaves only an unreferenced archive (or an aborted upload) for prune.
 */
export async function runBackup(opts: BackupOptions): Promise<BackupResult> {
  const started = new Date();
  const t0 = performance.now();
  const sources = resolveSources(opts.sources);
  const store = opts.store;
  await store.probe();
  const { repo, created } = await Repository.openOrInit(store);

  const codec = opts.codec ?? repo.config.defaults?.compression ?? 'zstd';
  const frameSize = opts.frameSize ?? repo.config.defaults?.frameSize ?? DEFAULT_FRAME_SIZE;
  const level = opts.level ?? (codec === (repo.config.defaults?.compression ?? 'zstd') ? repo.config.defaults?.level : undefined);
  const id = newSnapshotId(started);
  const archiveKey = repo.archiveKey(id, codec);
  const manifestKey = repo.manifestKey(id);
  const excludes = opts.excludes ?? [];
  const isExcluded = makeExcluder(excludes, opts.excludePaths ?? []);

  const warnings: string[] = [];
  const warn = (m: string) => {
    warnings.push(m);
    opts.onWarning?.(m);
  };
  const stats: BackupStats = {
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    skipped: 0,
    bytesIn: 0,
    bytesStored: 0,
    archiveBytes: 0,
    durationMs: 0,
    compressionRatio: 1,
    warnings: 0,
  };

  const body = new PassThrough({ highWaterMark: 4 << 20 });
  const upload = store.put(archiveKey, body, { contentType: 'application/octet-stream' });
  // If the upload fails first, break the pipe so the writer stops instead of waiting on it.
  upload.catch((e) => body.destroy(e instanceof Error ? e : new Error(String(e))));
  const entries = await EntryWriter.create();
  // Content hashes are computed on a worker from the frame buffers. Entries wait in `queue`, in
  // archive order, until their hash is known; `waiting` maps a file's sequence number to the
  // entries that need its digest (the file, and hard links to it seen before it was hashed).
  const hasher = new FileHasher();
  const queue: Entry[] = [];
  const unhashed = new Set<Entry>();
  const waiting = new Map<number, Entry[]>();
  let queueWait: Promise<void> | undefined;
  const drainQueue = () => {
    while (queue.length > 0 && !unhashed.has(queue[0]!)) {
      const p = entries.add(queue.shift()!);
      if (p) queueWait = (queueWait ?? Promise.resolve()).then(() => p);
    }
  };
  const frames = new FrameWriter({
    codec,
    level,
    frameSize,
    maxInFlight: opts.maxInFlight ?? Math.max(2, os.availableParallelism()),
    output: body,
    onFrame: (frame) =>
      hasher.submit(frame).then((digests) => {
        for (const [seq, hex] of digests) {
          for (const e of waiting.get(seq) ?? []) {
            e.sha256 = hex;
            unhashed.delete(e);
          }
          waiting.delete(seq);
        }
        drainQueue();
      }),
  });
  const emit = async (e: Entry) => {
    queue.push(e);
    drainQueue();
    if (queueWait) {
      const w = queueWait;
      queueWait = undefined;
      await w;
    }
  };
  const links = new Map<string, { entry: Entry; seq: number }>(); // "dev:ino" → first link
  let nextSeq = 0;
  let current = '';
  let lastProgress = 0;
  const progress = () => {
    const now = performance.now();
    if (!opts.onProgress || now - lastProgress < 100) return;
    lastProgress = now;
    opts.onProgress({ files: stats.files, bytesIn: stats.bytesIn, bytesOut: frames.offset, current });
  };
  const put = async (b: Buffer) => {
    const p = frames.write(b);
    if (p) await p;
  };

  try {
    for (const src of sources) {
      for (const item of walkSource(src.path, src.name, isExcluded, (w) => warn(`${w.path}: ${w.message}`))) {
        if (opts.signal?.aborted) throw new S3BackupError('backup interrupted; nothing was recorded');
        const st = item.st;
        current = item.path;
        const base: Entry = {
          path: item.path,
          type: 'dir',
          mode: st.mode & 0o7777,
          uid: st.uid,
          gid: st.gid,
          mtime: st.mtimeMs,
          ctime: st.ctimeMs,
          ino: st.ino,
          size: 0,
        };
        const tar = (h: Partial<TarHeader>): TarHeader => ({
          path: item.path,
          type: 'dir',
          mode: base.mode,
          uid: base.uid,
          gid: base.gid,
          size: 0,
          mtime: Math.floor(st.mtimeMs / 1000),
          ...h,
        });
        if (st.isDirectory()) {
          base.header = frames.offset;
          await put(encodeHeader(tar({ type: 'dir' })));
          stats.dirs++;
          await emit(base);
        } else if (st.isSymbolicLink()) {
          let target: string;
          try {
            target = fs.readlinkSync(item.abs);
          } catch (e) {
            warn(`${item.path}: cannot read symlink: ${errText(e)}`);
            stats.skipped++;
            await emit({ ...base, type: 'symlink', error: errText(e) });
            continue;
          }
          base.type = 'symlink';
          base.target = target;
          base.header = frames.offset;
          await put(encodeHeader(tar({ type: 'symlink', linkname: target })));
          stats.symlinks++;
          await emit(base);
        } else if (st.isFile()) {
          const linkKey = st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
          const first = linkKey ? links.get(linkKey) : undefined;
          if (first) {
            // A further name of a file already stored: a tar hard link, sharing the content.
            const f = first.entry;
            const e: Entry = { ...base, type: 'hardlink', target: f.path, size: f.size, header: frames.offset };
            if (!f.error) {
              e.archive = 0;
              e.offset = f.offset!;
              if (unhashed.has(f)) {
                unhashed.add(e);
                waiting.get(first.seq)!.push(e);
              } else e.sha256 = f.sha256!;
            }
            await put(encodeHeader(tar({ type: 'hardlink', linkname: f.path })));
            stats.hardlinks++;
            await emit(e);
            continue;
          }
          const seq = nextSeq++;
          const e: Entry = { ...base, type: 'file', size: st.size };
          // Registered before any byte is written: the digest may come back while we still wait.
          unhashed.add(e);
          waiting.set(seq, [e]);
          await storeFile(item.abs, st, e, seq, frames, hasher, tar, warn);
          if (e.error) {
            stats.skipped++;
            unhashed.delete(e);
            waiting.delete(seq);
          } else {
            stats.files++;
            stats.bytesIn += e.size;
            if (linkKey) links.set(linkKey, { entry: e, seq });
          }
          await emit(e);
        } else {
          const kind = st.isSocket() ? 'socket' : st.isFIFO() ? 'FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'device' : 'special file';
          warn(`${item.path}: skipped (${kind})`);
          stats.skipped++;
          await emit({ ...base, type: 'other', error: `skipped (${kind})` });
        }
        progress();
      }
    }
    await put(END_OF_ARCHIVE);
    const archive = await frames.finish();
    await upload;
    if (queue.length > 0) throw new Error(`internal error: ${queue.length} entries still wait for their hash`);
    if (queueWait) await queueWait;
    await entries.finish();
    const stored = await store.head(archiveKey);
    if (!stored || stored.size !== archive.compressedSize) {
      throw new IntegrityError(
        `archive ${archiveKey} was stored with ${stored?.size ?? 'no'} bytes, expected ${archive.compressedSize}; no backup was recorded`,
      );
    }
    const ref: ArchiveRef = {
      id,
      key: archiveKey,
      codec,
      size: archive.compressedSize,
      sha256: archive.sha256,
      uncompressedSize: archive.uncompressedSize,
      frames: archive.frames,
    };
    stats.archiveBytes = archive.compressedSize;
    stats.compressionRatio = archive.compressedSize > 0 ? round(stats.bytesIn / archive.compressedSize, 3) : 1;
    stats.warnings = warnings.length;
    const header: ManifestHeader = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      id,
      time: started.toISOString(),
      endTime: '',
      kind: 'full',
      host: opts.host ?? os.hostname(),
      sources,
      tags: opts.tags ?? [],
      toolVersion: VERSION,
      options: { codec, level, frameSize, excludes },
      stats,
      warnings: warnings.slice(0, MAX_HEADER_WARNINGS),
    };
    // bytesStored includes the manifest's own size, which depends on the header that says it:
    // re-encode the small head frame until the number is stable (twice, in practice).
    header.endTime = new Date().toISOString();
    stats.durationMs = Math.round(performance.now() - t0);
    const bodySize = await entriesSize(entries);
    let head = encodeManifestHead(header, [ref]);
    for (let i = 0; i < 5 && stats.bytesStored !== archive.compressedSize + head.length + bodySize; i++) {
      stats.bytesStored = archive.compressedSize + head.length + bodySize;
      head = encodeManifestHead(header, [ref]);
    }
    const manifest = await encodeManifest(head, entries);
    if (opts.signal?.aborted) throw new S3BackupError('backup interrupted; nothing was recorded');
    await store.put(manifestKey, manifest, { createOnly: true, contentType: 'application/zstd' });
    return {
      ...stats,
      id,
      repository: store.location,
      repositoryCreated: created,
      kind: 'full',
      time: header.time,
      archiveKey,
      manifestKey,
      warnings,
    };
  } catch (e) {
    body.destroy(e instanceof Error ? e : new Error(String(e)));
    await upload.catch(() => {});
    // Best effort: the archive of a failed run is garbage (prune would find it too).
    await store.delete([archiveKey]).catch(() => {});
    throw e;
  } finally {
    await hasher.close();
    await entries.dispose();
  }
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Append one regular file: header, content read straight into the frame buffer (hashed on the
 * worker as sequence `seq`), padding. A file that cannot be opened is listed with its error and
 * no content. The header's size is the one lstat saw; if the file then shrinks or fails to read
 * the rest is stored as zeros, if it grows the excess is left out, and either way it is flagged.
 */
async function storeFile(
  abs: string,
  st: fs.Stats,
  e: Entry,
  seq: number,
  frames: FrameWriter,
  hasher: FileHasher,
  tar: (h: Partial<TarHeader>) => TarHeader,
  warn: (m: string) => void,
): Promise<void> {
  let fd: number;
  try {
    fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    warn(`${e.path}: unreadable, not backed up: ${errText(err)}`);
    e.error = errText(err);
    return;
  }
  try {
    const size = st.size;
    e.header = frames.offset;
    let p = frames.write(encodeHeader(tar({ type: 'file', size })));
    if (p) await p;
    e.offset = frames.offset;
    e.archive = 0;
    let remaining = size;
    let short = false;
    let readError: unknown;
    while (remaining > 0) {
      const space = frames.space();
      const want = Math.min(remaining, space.length);
      let n = 0;
      if (!short) {
        try {
          n = fs.readSync(fd, space.buf, space.start, want, null);
        } catch (err) {
          readError = err;
        }
        if (n === 0) short = true;
      }
      if (n === 0) {
        space.buf.fill(0, space.start, space.start + want);
        n = want;
      }
      hasher.update(seq, space.start, space.start + n);
      remaining -= n;
      p = frames.commit(n);
      if (p) await p;
    }
    hasher.digest(seq);
    p = frames.writeZeros(padding(size));
    if (p) await p;
    const after = fs.fstatSync(fd);
    if (readError) {
      e.error = `read error: ${errText(readError)}`;
      warn(`${e.path}: read error, the unread part is stored as zeros: ${errText(readError)}`);
    } else if (short || after.size !== size || after.mtimeMs !== st.mtimeMs || after.ino !== st.ino) {
      e.changed = true;
      warn(`${e.path}: changed while being backed up; the stored copy may be inconsistent`);
    }
  } finally {
    fs.closeSync(fd);
  }
}
