import type { ArchiveCursor } from '../archive/reader.ts';
import { IntegrityError } from '../errors.ts';
import { contentRanges, type Entry, type Extent } from '../repo/manifest.ts';
import { FileWriter } from './file-writer.ts';
import type { MetadataStep } from './metadata.ts';
import { hasContent } from './plan.ts';
import type { SafeTree } from './safe-tree.ts';

/** A file's content as stored is damaged: it cannot be read back, or not as it was backed up. */
export class DamagedContentError extends IntegrityError {}

/** What the files restored add up to (fields of the restore's result). */
export interface FileTally {
  files: number;
  bytes: number;
  damaged: { path: string; problem: string }[];
}

/** What is left to do for a file once the writer thread has written it (or found it damaged). */
interface FileNote {
  path: string;
  size: number;
  xattrs: Record<string, string> | undefined;
}

/**
 * Writes the content of regular files (and of hard links whose first name is not restored):
 * read here, in archive order, and handed to the writer thread, which checks each one's
 * SHA-256 and creates it (FileWriter).
 */
export class FileRestorer {
  /** Paths of the files restored that hard links name (plan.linkTargets), for those links. */
  readonly written = new Set<string>();
  private readonly writer: FileWriter<FileNote>;
  private readonly tree: SafeTree;
  private readonly cursors: ArchiveCursor[];
  private readonly metadata: MetadataStep;
  private readonly tally: FileTally;
  private readonly linkTargets: Set<string>;
  private readonly opts: { backupId: string; skipDamaged: boolean };
  /** Where content read goes: copied into the writer's batch. */
  private readonly put = (chunk: Uint8Array): void => this.writer.put(chunk);

  constructor(
    tree: SafeTree,
    cursors: ArchiveCursor[],
    metadata: MetadataStep,
    tally: FileTally,
    opts: { backupId: string; skipDamaged: boolean; linkTargets: Set<string> },
  ) {
    this.tree = tree;
    this.cursors = cursors;
    this.metadata = metadata;
    this.tally = tally;
    this.linkTargets = opts.linkTargets;
    this.opts = opts;
    this.writer = new FileWriter<FileNote>((note, damaged) => this.done(note, damaged));
  }

  /**
   * Restore file e; with skipDamaged, one whose content is damaged is listed instead (nothing of
   * it is left). Done at once (undefined) when its content is in the frame at hand and fits in
   * the batch being filled, as for most small files: a promise only when there is something to
   * wait for.
   */
  restore(e: Entry): Promise<void> | undefined {
    const size = hasContent(e) ? e.size : 0;
    if (!this.writer.fits(size)) return this.restoreLater(e, size);
    let run: Extent | undefined;
    if (size > 0) {
      const ranges = contentRanges(e);
      run = ranges.length === 1 ? ranges[0]! : undefined;
      if (!run || !this.cursors[run[0]]!.holds(run[1], run[2])) return this.restoreLater(e, size);
    }
    const abs = this.tree.place(e.path);
    this.writer.beginNow(this.metadata.newFile(abs, e), e.sha256, { path: e.path, size: e.size, xattrs: e.xattrs });
    if (run) this.cursors[run[0]]!.readNow(run[1], run[2], this.put);
    this.writer.end();
    return undefined;
  }

  /** restore, waiting for the writer thread or the content where need be. */
  private async restoreLater(e: Entry, size: number): Promise<void> {
    const abs = this.tree.place(e.path);
    const note: FileNote = { path: e.path, size: e.size, xattrs: e.xattrs };
    await this.writer.begin(this.metadata.newFile(abs, e), e.sha256, size, note);
    try {
      // Run by run (one for a whole file; a file stored in extents has several, maybe in several archives).
      for (const [archive, offset, length] of size > 0 ? contentRanges(e) : []) {
        let done = 0;
        while (done < length) {
          const n = Math.min(length - done, this.writer.room);
          if (n === 0) {
            await this.writer.more();
            continue;
          }
          await this.cursors[archive]!.read(offset + done, n, this.put);
          done += n;
        }
      }
    } catch (err) {
      // Never leave a partly written file behind; say which file the archive failed for.
      this.writer.abort();
      if (!(err instanceof IntegrityError)) throw err;
      const damaged = this.corrupt(e.path, err);
      if (!this.opts.skipDamaged) throw damaged;
      this.tally.damaged.push({ path: e.path, problem: damaged.message });
      return;
    }
    this.writer.end();
  }

  /** The writer thread is done with a file. */
  private done(note: FileNote, damaged: boolean): void {
    if (damaged) {
      const err = this.corrupt(note.path);
      if (!this.opts.skipDamaged) throw err;
      this.tally.damaged.push({ path: note.path, problem: err.message });
      return;
    }
    this.tally.files++;
    this.tally.bytes += note.size;
    if (note.xattrs) this.metadata.fileXattrs(this.tree.abs(note.path), note.path, note.xattrs);
    if (this.linkTargets.has(note.path)) this.written.add(note.path);
  }

  /** Wait until the writer thread has created every file handed to it. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  close(): Promise<void> {
    return this.writer.close();
  }

  private corrupt(path: string, err?: IntegrityError): DamagedContentError {
    return new DamagedContentError(
      err ? `${path}: ${err.message}` : `${path}: content does not match its SHA-256 in the manifest (archive corrupt?)`,
      {
        hint: err?.hint ?? `run "s3backup verify ${this.opts.backupId} --deep" for details`,
        ...(err ? { cause: err } : {}),
      },
    );
  }
}
