import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { ArchiveCursor } from '../archive/reader.ts';
import { displayName } from '../archive/names.ts';
import { IntegrityError } from '../errors.ts';
import type { Entry } from '../repo/manifest.ts';
import { SmallFileWriter } from './file-writer.ts';
import type { MetadataStep } from './metadata.ts';
import { hasContent } from './plan.ts';
import type { SafeTree } from './safe-tree.ts';
import { SparseWriter } from './sparse.ts';

/** A file's content as stored is damaged: it cannot be read back, or not as it was backed up. */
export class DamagedContentError extends IntegrityError {}

/** Files up to this size are checked whole, then created on the writer thread. */
const SMALL_FILE = 1 << 20;

/** What the files restored add up to (fields of the restore's result). */
export interface FileTally {
  files: number;
  bytes: number;
  damaged: { path: string; problem: string }[];
}

/**
 * Writes the content of regular files (and of hard links whose first name is not restored),
 * checking each one's SHA-256. Small files go to a writer thread (content complete and checked
 * first); large ones are written here, sparse, as their frames arrive.
 */
export class FileRestorer {
  /** Paths of the files restored, for hard links to them. */
  readonly written = new Set<string>();
  private readonly writer = new SmallFileWriter();
  private readonly tree: SafeTree;
  private readonly cursors: ArchiveCursor[];
  private readonly metadata: MetadataStep;
  private readonly tally: FileTally;
  private readonly opts: { backupId: string; skipDamaged: boolean };

  constructor(
    tree: SafeTree,
    cursors: ArchiveCursor[],
    metadata: MetadataStep,
    tally: FileTally,
    opts: { backupId: string; skipDamaged: boolean },
  ) {
    this.tree = tree;
    this.cursors = cursors;
    this.metadata = metadata;
    this.tally = tally;
    this.opts = opts;
  }

  /** Restore file e; with skipDamaged, one whose content is damaged is listed instead (nothing of it is left). */
  async restore(e: Entry): Promise<void> {
    try {
      const abs = this.tree.place(e.path);
      if (e.size <= SMALL_FILE) await this.writeSmall(e, abs);
      else await this.writeLarge(e, abs);
    } catch (err) {
      if (!(this.opts.skipDamaged && err instanceof DamagedContentError)) throw err;
      this.tally.damaged.push({ path: e.path, problem: err.message });
      return;
    }
    this.metadata.restored(e);
    this.tally.files++;
    this.tally.bytes += e.size;
    this.written.add(e.path);
  }

  /** Wait until the writer thread has created every file handed to it. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  close(): Promise<void> {
    return this.writer.close();
  }

  private async writeSmall(e: Entry, abs: string | Buffer): Promise<void> {
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    if (hasContent(e)) {
      try {
        await this.cursors[e.archive!]!.read(e.offset!, e.size, (chunk) => {
          hash.update(chunk);
          chunks.push(chunk);
        });
      } catch (err) {
        throw err instanceof IntegrityError ? this.corrupt(e, err) : err;
      }
    }
    if (e.sha256 && hash.digest('hex') !== e.sha256) throw this.corrupt(e);
    await this.writer.add(this.metadata.smallFile(abs, e), chunks);
  }

  private async writeLarge(e: Entry, abs: string | Buffer): Promise<void> {
    const fd = fs.openSync(abs, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    const hash = createHash('sha256');
    // All-zero blocks are skipped, not written: they become holes (a sparse file stays sparse).
    const out = new SparseWriter(fd);
    try {
      if (hasContent(e)) {
        await this.cursors[e.archive!]!.read(e.offset!, e.size, (chunk) => {
          hash.update(chunk);
          out.write(chunk);
        });
      }
      out.finish();
    } catch (err) {
      // Never leave a partly written file behind; say which file the archive failed for.
      fs.closeSync(fd);
      fs.rmSync(abs, { force: true });
      if (err instanceof IntegrityError) throw this.corrupt(e, err);
      if (err && typeof err === 'object' && 'code' in err) (err as NodeJS.ErrnoException).path ??= displayName(this.tree.name(e.path));
      throw err;
    }
    fs.closeSync(fd);
    if (e.sha256 && hash.digest('hex') !== e.sha256) {
      fs.rmSync(abs, { force: true });
      throw this.corrupt(e);
    }
    this.metadata.file(abs, e);
  }

  private corrupt(e: Entry, err?: IntegrityError): DamagedContentError {
    return new DamagedContentError(
      err ? `${e.path}: ${err.message}` : `${e.path}: content does not match its SHA-256 in the manifest (archive corrupt?)`,
      {
        hint: err?.hint ?? `run "s3backup verify ${this.opts.backupId} --deep" for details`,
        ...(err ? { cause: err } : {}),
      },
    );
  }
}
