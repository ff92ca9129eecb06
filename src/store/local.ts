import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AlreadyExistsError, NotFoundError, S3BackupError, StoreAccessError } from '../errors.ts';
import type { ByteRange, ObjectInfo, PutOptions, Store, StoreCapabilities, TempFilesCapability } from './store.ts';

/** Temporary files of unfinished writes start with this; listings never show them. */
export const LOCAL_TEMP_PREFIX = '.tmp-';

/**
 * A repository in a local directory. Writes are atomic: data goes to a temporary file in the
 * same directory, is fsynced, then renamed into place (or hard-linked, for create-only puts,
 * since link(2) fails if the name exists: the same "exactly one writer wins" as S3's
 * If-None-Match).
 */
export class LocalStore implements Store, TempFilesCapability {
  readonly root: string;
  readonly location: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.location = this.root;
  }

  private pathOf(key: string): string {
    if (key === '' || key.startsWith('/') || key.split('/').some((p) => p === '..' || p === '.' || p === '')) {
      throw new S3BackupError(`invalid object key: ${JSON.stringify(key)}`);
    }
    return path.join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Buffer | Readable, opts: PutOptions = {}): Promise<void> {
    const target = this.pathOf(key);
    const dir = path.dirname(target);
    await fs.mkdir(dir, { recursive: true }).catch((e) => {
      throw this.translate(e, key);
    });
    const tmp = path.join(dir, `${LOCAL_TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      await writeDurably(tmp, body, opts.onConsumed, (e) => this.translate(e, key));
      if (opts.createOnly) {
        try {
          await fs.link(tmp, target);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(key, this.location);
          throw e;
        }
        await fs.unlink(tmp);
      } else {
        await fs.rename(tmp, target);
      }
      await syncDir(dir);
    } catch (e) {
      await fs.rm(tmp, { force: true });
      throw this.translate(e, key);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.pathOf(key), 'r');
    } catch (e) {
      throw this.translate(e, key);
    }
    if (range && range.end <= range.start) {
      await fh.close();
      return Readable.from([]);
    }
    // Reads of at most 1 MiB, but no larger than the object: each read is a fresh buffer, and one
    // far larger than what it holds (a 1 MiB buffer for a 30 kB entry segment) is copied out and
    // left to the garbage collector, which ran a full collection for every few such buffers.
    let size: number;
    try {
      size = range ? range.end - range.start : (await fh.stat()).size;
    } catch (e) {
      await fh.close();
      throw this.translate(e, key);
    }
    return fh.createReadStream({
      highWaterMark: Math.max(1, Math.min(size, 1 << 20)),
      ...(range ? { start: range.start, end: range.end - 1 } : {}),
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const st = await fs.stat(this.pathOf(key));
      if (!st.isFile()) return undefined;
      return { key, size: st.size, lastModified: st.mtime };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw this.translate(e, key);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Start the walk at the deepest directory the prefix names, then filter by the full prefix.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    yield* this.walk(base, prefix);
  }

  private async *walk(dirKey: string, prefix: string): AsyncIterable<ObjectInfo> {
    let names: string[];
    try {
      names = await fs.readdir(dirKey ? this.pathOf(dirKey) : this.root);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw this.translate(e, dirKey);
    }
    // S3 lists in UTF-8 byte order of the full key; "a/" vs "a-b" ordering means directories
    // must be compared with their trailing slash.
    const items: { key: string; isDir: boolean; st: import('node:fs').Stats }[] = [];
    for (const name of names) {
      if (name.startsWith(LOCAL_TEMP_PREFIX)) continue;
      const key = dirKey ? `${dirKey}/${name}` : name;
      const st = await fs.lstat(path.join(this.root, key)).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) items.push({ key: `${key}/`, isDir: true, st });
      else if (st.isFile()) items.push({ key, isDir: false, st });
    }
    items.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    for (const it of items) {
      if (it.isDir) {
        const k = it.key.slice(0, -1);
        // Descend only where the prefix and this directory can still meet.
        if (it.key.startsWith(prefix) || prefix.startsWith(it.key)) yield* this.walk(k, prefix);
      } else if (it.key.startsWith(prefix)) {
        yield { key: it.key, size: it.st.size, lastModified: it.st.mtime };
      }
    }
  }

  capabilities(): StoreCapabilities {
    return { tempFiles: this, localFiles: true };
  }

  /**
   * Temporary files of unfinished writes (`.tmp-*`, hidden from list), anywhere in the
   * repository: what a killed process leaves behind. Their keys can be passed to delete().
   */
  async *listTemp(): AsyncIterable<ObjectInfo> {
    const walk = async function* (this: LocalStore, dirKey: string): AsyncIterable<ObjectInfo> {
      let dirents: import('node:fs').Dirent[];
      try {
        dirents = await fs.readdir(dirKey ? this.pathOf(dirKey) : this.root, { withFileTypes: true });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return;
        throw this.translate(e, dirKey);
      }
      dirents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const d of dirents) {
        const key = dirKey ? `${dirKey}/${d.name}` : d.name;
        if (d.isDirectory() && !d.name.startsWith(LOCAL_TEMP_PREFIX)) yield* walk.call(this, key);
        else if (d.isFile() && d.name.startsWith(LOCAL_TEMP_PREFIX)) {
          const st = await fs.lstat(path.join(this.root, key)).catch(() => undefined);
          if (st?.isFile()) yield { key, size: st.size, lastModified: st.mtime };
        }
      }
    };
    yield* walk.call(this, '');
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) {
      await fs.rm(this.pathOf(key), { force: true }).catch((e) => {
        throw this.translate(e, key);
      });
    }
  }

  async probe(): Promise<undefined> {
    try {
      await fs.mkdir(this.root, { recursive: true });
    } catch (e) {
      throw this.translate(e, '');
    }
    const st = await fs.stat(this.root);
    if (!st.isDirectory()) {
      throw new StoreAccessError(`repository ${this.root} is not a directory`, {
        hint: 'point --repo at a directory (or a path that does not exist yet)',
      });
    }
    const probe = path.join(this.root, `${LOCAL_TEMP_PREFIX}probe-${randomBytes(4).toString('hex')}`);
    try {
      await fs.writeFile(probe, 'probe');
    } catch (e) {
      throw this.translate(e, '');
    } finally {
      await fs.rm(probe, { force: true });
    }
  }

  async close(): Promise<void> {}

  private translate(e: unknown, key: string): unknown {
    if (e instanceof S3BackupError) return e;
    const err = e as NodeJS.ErrnoException;
    switch (err.code) {
      case 'ENOENT':
        return new NotFoundError(key, this.location);
      case 'EACCES':
      case 'EPERM':
      case 'EROFS':
        return new StoreAccessError(`permission denied writing to repository ${this.location}: ${err.message}`, {
          hint: 'check the directory permissions, or choose another --repo',
          cause: e,
        });
      case 'ENOTDIR':
        return new StoreAccessError(`repository ${this.location} is not a directory: a file stands on its path (${key})`, {
          hint: 'a local repository is a directory: choose another --repo',
          cause: e,
        });
      case 'ENOSPC':
      case 'EDQUOT':
        return new StoreAccessError(`no space left on the device holding repository ${this.location}`, {
          hint: 'free some space (or remove old backups), then run the backup again; nothing was lost',
          exitCode: 1,
          cause: e,
        });
      default:
        return e;
    }
  }
}

/** Flush to disk every this many bytes while writing, so the final fsync has little left. */
const SYNC_EVERY = 64 << 20;

/**
 * Write body to a new file and fsync it. Large bodies are flushed in the background as they
 * are written (fdatasync every 64 MiB), which overlaps the disk writes with the work that
 * produces the data instead of paying for all of them in one fsync at the end.
 */
async function writeDurably(
  file: string,
  body: Buffer | Readable,
  onConsumed: ((bytes: number) => void) | undefined,
  translate: (e: unknown) => unknown,
): Promise<void> {
  const fh = await fs.open(file, 'wx');
  let flushing: Promise<void> | undefined;
  try {
    if (Buffer.isBuffer(body)) await fh.writeFile(body);
    else {
      let sinceSync = 0;
      let done = 0;
      const write = async (buf: Buffer) => {
        let off = 0;
        while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
        // The chunk is in the kernel's hands: nothing here refers to it any more.
        onConsumed?.((done += buf.length));
        sinceSync += buf.length;
        if (sinceSync >= SYNC_EVERY && !flushing) {
          sinceSync = 0;
          flushing = fh.datasync().finally(() => {
            flushing = undefined;
          });
        }
      };
      // Piped, chunk by chunk as written: a paused stream read by `for await` hands over all it
      // has buffered joined into one fresh buffer, a copy of every byte (and fresh memory).
      await pipeline(
        body,
        new Writable({
          highWaterMark: 0,
          // The error the pipeline destroys the body with is the store's own (ENOSPC: "no space
          // left on the device holding repository …"): the producer sees it before put() rejects.
          write: (chunk: Buffer, _enc, done) =>
            write(chunk).then(
              () => done(),
              (e: unknown) => done(translate(e) as Error),
            ),
        }),
      );
    }
    if (flushing) await flushing;
    await fh.sync();
  } finally {
    await flushing?.catch(() => {});
    await fh.close();
  }
}

/** fsync a directory, so a rename or link into it survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
