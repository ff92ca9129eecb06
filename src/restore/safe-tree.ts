import * as fs from 'node:fs';
import * as path from 'node:path';
import { displayName, fsPath } from '../archive/names.ts';
import { IntegrityError, S3BackupError, UsageError } from '../errors.ts';

/**
 * Restores directory trees safely: every parent is created by us or checked to be a real
 * directory (never a symlink), files are created with O_EXCL|O_NOFOLLOW, and symlinks are made
 * last, so nothing a backup contains can make us write outside the target.
 */
export class SafeTree {
  readonly root: string;
  private readonly known = new Set<string>();
  private readonly overwrite: boolean;

  constructor(root: string, overwrite: boolean) {
    this.root = root;
    this.overwrite = overwrite;
  }

  /**
   * The absolute path of rel as a name (for messages: displayName). rel is a checked snapshot
   * path (checkEntryPath: no empty, "." or ".." part), so joining is all path.join would do.
   */
  name(rel: string): string {
    return this.root === '/' ? `/${rel}` : `${this.root}/${rel}`;
  }

  /** The absolute path of rel for file-system calls (bytes where a name is not UTF-8). */
  abs(rel: string): string | Buffer {
    return fsPath(this.name(rel));
  }

  /** Make sure rel (a directory) exists as a real directory, creating it and its parents. */
  dir(rel: string): void {
    if (rel === '' || this.known.has(rel)) return;
    const i = rel.lastIndexOf('/');
    this.dir(i < 0 ? '' : rel.slice(0, i));
    const abs = this.abs(rel);
    try {
      fs.mkdirSync(abs, 0o700);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const st = fs.lstatSync(abs);
      if (!st.isDirectory()) {
        if (st.isSymbolicLink()) {
          throw new IntegrityError(`refusing to restore through ${rel}: it is a symlink in the target`);
        }
        if (!this.overwrite)
          throw new S3BackupError(`${displayName(this.name(rel))} exists and is not a directory`, {
            hint: 'use --overwrite to replace it',
          });
        fs.unlinkSync(abs);
        fs.mkdirSync(abs, 0o700);
      }
    }
    this.known.add(rel);
  }

  parent(rel: string): void {
    const i = rel.lastIndexOf('/');
    this.dir(i < 0 ? '' : rel.slice(0, i));
  }

  /** Clear the way for a new non-directory at rel. */
  clear(rel: string): void {
    // In a target that was empty, nothing can be in the way that we did not create; a repeated
    // path then fails on O_EXCL. Only --overwrite has to look.
    if (!this.overwrite) return;
    const abs = this.abs(rel);
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) throw new S3BackupError(`${displayName(this.name(rel))} is a directory; cannot replace it with a file`);
    fs.unlinkSync(abs);
  }

  /** Make way for a non-directory at rel (its parents real directories) and say where it goes. */
  place(rel: string): string | Buffer {
    this.parent(rel);
    this.clear(rel);
    return this.abs(rel);
  }
}

/**
 * The target as a real path: a new or empty directory (any directory with overwrite), created
 * if need be.
 */
export async function checkTarget(target: string, overwrite: boolean): Promise<string> {
  const abs = path.resolve(target);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (st && !st.isDirectory()) throw new UsageError(`restore target ${target} exists and is not a directory`);
  if (st && !overwrite && fs.readdirSync(abs).length > 0) {
    throw new UsageError(`restore target ${target} is not empty`, {
      hint: 'restore into an empty or new directory, or add --overwrite to replace files there',
    });
  }
  fs.mkdirSync(abs, { recursive: true });
  return fs.realpathSync(abs);
}
