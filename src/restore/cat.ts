import { createHash, type Hash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { ArchiveCursor, FrameTable, type FrameOpener, type ReadStats } from '../archive/reader.ts';
import { IntegrityError, S3BackupError, UsageError } from '../errors.ts';
import {
  type ArchiveRef,
  contentLocationProblem,
  contentRanges,
  type Entry,
  type Extent,
  hasLocation,
  type LocalManifest,
} from '../repo/manifest.ts';
import type { Store } from '../store/store.ts';
import type { KeySource } from '../crypto/keys.ts';
import type { BackupFilter } from '../repo/groups.ts';
import { pathFromArg } from '../archive/names.ts';
import { resolveLinkTarget, snapshotPath, withSnapshot } from './ls.ts';

/**
 * `s3backup cat`: one file's content, streamed to a writable as it arrives. Only the frames that
 * hold the file are fetched (one ranged GET per run of consecutive frames); the SHA-256 is
 * checked at the end, so a mismatch is reported after the bytes went out (as `zstd -dc` or
 * `tar -xO` would): the command then fails, naming the file.
 */

export interface CatOptions {
  store: Store;
  /** The key of an encrypted repository. */
  keys?: KeySource;
  /** Backup id, unique part of it, or "latest". */
  snapshot: string;
  /** Which backups "latest" chooses from (--host, --path, --tag); a given id must match it too. */
  filter?: BackupFilter | undefined;
  /** Path inside the backup ("my-data/docs/a.txt"), or an absolute path inside a source. */
  path: string;
  output: Writable;
  signal?: AbortSignal;
}

export interface CatResult {
  id: string;
  /** The snapshot path asked for. */
  path: string;
  /** The entry whose content was written (differs from path when path is a symlink). */
  source: string;
  size: number;
  sha256: string;
  /** Compressed bytes fetched from the archive, and in how many requests. */
  bytesFetched: number;
  requests: number;
  /** Size of the archive the content came from, as stored. */
  archiveSize: number;
}

/** Symlinks followed inside the snapshot before giving up (as the kernel's ELOOP). */
const MAX_LINKS = 40;

/** The entry at path p, else (when given) the one at `typed`: the path as typed, before pathFromArg read its escapes. */
async function findEntry(manifest: LocalManifest, p: string, typed?: string): Promise<Entry | undefined> {
  let asTyped: Entry | undefined;
  for await (const e of manifest.entries({ under: typed === undefined ? [p] : [p, typed] })) {
    if (e.path === p) return e;
    if (typed !== undefined && e.path === typed) asTyped ??= e;
  }
  return asTyped;
}

/** Entries whose path ends like the one asked for (the source name was probably left out). */
async function suggestions(manifest: LocalManifest, p: string): Promise<string[]> {
  const out: string[] = [];
  const tail = `/${p}`;
  for await (const e of manifest.entries()) {
    if (e.path.endsWith(tail)) out.push(e.path);
    if (out.length >= 3) break;
  }
  return out;
}

export async function runCat(opts: CatOptions): Promise<CatResult> {
  return withSnapshot(
    opts.store,
    opts.snapshot,
    async ({ repo, id, manifest }) => {
      // "\xHH" names a byte of a name that is not UTF-8, as ls shows it, and "\\" a backslash
      // (pathFromArg); the path as typed is found too, if nothing else matches.
      const wanted = snapshotPath(pathFromArg(opts.path), manifest.header);
      const typed = snapshotPath(opts.path, manifest.header);
      if (wanted === '')
        throw new UsageError('cat needs the path of a file in the backup', { hint: `run "s3backup ls ${id}" to see them` });
      let e = await findEntry(manifest, wanted, typed === wanted ? undefined : typed);
      const seen = new Set<string>();
      while (e?.type === 'symlink') {
        const link: Entry = e;
        if (seen.has(link.path) || seen.size >= MAX_LINKS)
          throw new S3BackupError(`${wanted}: too many levels of symbolic links in backup ${id}`);
        seen.add(link.path);
        const next = resolveLinkTarget(link, manifest.header);
        if (next === undefined) {
          throw new S3BackupError(`${link.path} is a symlink to ${link.target ?? '(nothing)'}, which is not in backup ${id}`, {
            hint: 'only targets inside the backed-up sources can be followed',
          });
        }
        e = await findEntry(manifest, next);
        if (!e) throw new S3BackupError(`${link.path} is a symlink to ${link.target}, which is not in backup ${id} (dangling link)`);
      }
      if (!e) {
        const near = await suggestions(manifest, wanted);
        throw new UsageError(`no ${JSON.stringify(wanted)} in backup ${id}`, {
          hint: near.length
            ? `paths inside a backup start with the source name: did you mean ${near.map((n) => JSON.stringify(n)).join(' or ')}?`
            : `run "s3backup ls ${id}" to see its paths (they start with the source name, e.g. ${manifest.header.sources[0]?.name ?? 'data'}/)`,
        });
      }
      if (e.type === 'dir') {
        throw new UsageError(`${e.path} is a directory in backup ${id}; cat prints a single file`, {
          hint: `list it with "s3backup ls ${id} ${e.path}", or restore it with "s3backup restore ${id} --include '${e.path}/**' --target DIR"`,
        });
      }
      if (e.type !== 'file' && e.type !== 'hardlink') {
        throw new S3BackupError(`${e.path} has no content in backup ${id}: ${e.error ?? `it is a ${e.type} entry`}`);
      }
      if (e.error) throw new S3BackupError(`${e.path} has no content in backup ${id}: it was not backed up (${e.error})`);
      const size = e.size;
      if (!Number.isSafeInteger(size) || size < 0) throw new IntegrityError(`${e.path} has an invalid size in the manifest`);
      if (typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) {
        throw new IntegrityError(`${e.path} has no valid SHA-256 in the manifest, so its content cannot be checked`);
      }
      const stats: ReadStats = { bytesFetched: 0, requests: 0 };
      const hash = createHash('sha256');
      let archiveSize = 0;
      if (size > 0) {
        if (!hasLocation(e)) {
          throw new S3BackupError(
            `${e.path} has no content in backup ${id}${e.type === 'hardlink' ? ` (nor has ${e.target}, the file it is a hard link to)` : ''}`,
          );
        }
        const problem = contentLocationProblem(e, manifest.archives);
        if (problem) throw new IntegrityError(`${e.path} ${problem}`);
        const ranges = contentRanges(e);
        for (const a of new Set(ranges.map(([archive]) => archive))) archiveSize += manifest.archives[a]!.size;
        const out = new OutputGate(opts.output);
        try {
          for (const range of ranges) {
            await catRange(repo, manifest, range, out, stats, hash, opts.signal, (err) => {
              throw new IntegrityError(`${e.path}: ${err.message}`, { hint: `run "s3backup verify ${id} --deep" for details`, cause: err });
            });
          }
          await out.flushed();
        } finally {
          out.release();
        }
      }
      const digest = hash.digest('hex');
      if (digest !== e.sha256) {
        throw new IntegrityError(`${e.path}: content does not match its SHA-256 in the manifest; the output is not the backed-up file`, {
          hint: `run "s3backup verify ${id} --deep" for details`,
        });
      }
      return {
        id,
        path: e.path === typed && typed !== wanted ? typed : wanted,
        source: e.path,
        size,
        sha256: digest,
        bytesFetched: stats.bytesFetched,
        requests: stats.requests,
        archiveSize,
      };
    },
    opts.keys,
    opts.filter,
  );
}

/**
 * One run of a file's bytes to the output, one frame at a time, waiting for the output to drain
 * in between: memory stays at a few frames however large the file and however slow the reader
 * of our output. `damaged` turns a damaged archive's error into the file's.
 */
async function catRange(
  repo: { store: Store; frameOpener: (ref: ArchiveRef) => FrameOpener | undefined },
  manifest: LocalManifest,
  [archive, offset, length]: Extent,
  out: OutputGate,
  stats: ReadStats,
  hash: Hash,
  signal: AbortSignal | undefined,
  damaged: (err: IntegrityError) => never,
): Promise<void> {
  const ref = manifest.archives[archive]!;
  const table = new FrameTable(ref);
  const cursor = new ArchiveCursor(repo.store, ref, [table.span(offset, length)], stats, undefined, repo.frameOpener(ref));
  const checkInterrupt = () => {
    if (signal?.aborted) throw new S3BackupError('cat interrupted');
  };
  try {
    await copyRange(cursor, table, offset, length, hash, out, checkInterrupt);
  } catch (err) {
    if (err instanceof IntegrityError) damaged(err);
    throw err;
  } finally {
    await cursor.close();
  }
}

/**
 * Bytes [offset, offset + length) of an archive to the output through its cursor, one frame at
 * a time, waiting for the output to drain in between (memory stays at a few frames however
 * slow the reader of our output); each piece also into `hash`. `beforePiece` may throw to stop.
 */
export async function copyRange(
  cursor: ArchiveCursor,
  table: FrameTable,
  offset: number,
  length: number,
  hash: Hash,
  out: OutputGate,
  beforePiece?: () => void,
): Promise<void> {
  const end = offset + length;
  for (let pos = offset; pos < end; ) {
    beforePiece?.();
    const pieceEnd = Math.min(end, table.uStart[table.frameOf(pos) + 1]!);
    await cursor.read(pos, pieceEnd - pos, (chunk) => {
      hash.update(chunk);
      out.write(chunk);
    });
    await out.ready();
    pos = pieceEnd;
  }
}

/** Writes to a stream with backpressure, turning its 'error' (EPIPE, …) into a rejection. */
export class OutputGate {
  private readonly stream: Writable;
  private error: Error | undefined;
  private readonly onError = (e: Error) => {
    this.error = e;
    this.wake?.();
  };
  private wake: (() => void) | undefined;
  private last: Promise<void> | undefined;

  constructor(stream: Writable) {
    this.stream = stream;
    stream.on('error', this.onError);
  }

  write(chunk: Buffer): void {
    if (this.error) throw this.error;
    this.last = new Promise<void>((resolve) => {
      this.stream.write(chunk, (err) => {
        if (err) this.error ??= err;
        resolve();
      });
    });
  }

  /** Resolves once the stream wants more (no more than its high-water mark is queued). */
  async ready(): Promise<void> {
    if (this.error) throw this.error;
    if (!this.stream.writableNeedDrain) return;
    await this.waitDrain();
  }

  /** Resolves once everything written has been handed to the system. */
  async flushed(): Promise<void> {
    await this.last;
    if (this.error) throw this.error;
  }

  private waitDrain(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        this.wake = undefined;
        if (this.error) reject(this.error);
        else resolve();
      };
      this.wake = done;
      this.stream.on('drain', done);
      this.stream.on('close', done);
    });
  }

  release(): void {
    // Keep a no-op listener: a late EPIPE must not become an uncaught exception.
    this.stream.off('error', this.onError);
    if (this.stream.listenerCount('error') === 0) this.stream.on('error', () => {});
  }
}
