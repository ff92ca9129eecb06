import * as fs from 'node:fs';
import { displayName } from '../archive/names.ts';
import { XattrWriter } from '../archive/xattrs.ts';
import type { Entry } from '../repo/manifest.ts';
import type { NewFile } from './file-writer.ts';
import type { SafeTree } from './safe-tree.ts';

/** What a directory's metadata needs of its entry: kept per directory until the end. */
type DirMeta = Pick<Entry, 'path' | 'mode' | 'uid' | 'gid' | 'mtime' | 'xattrs'>;

/** Apply owner (when root), mode and times; for symlinks only owner and times. */
function applyMeta(
  abs: string | Buffer,
  e: Pick<Entry, 'mode' | 'uid' | 'gid' | 'mtime'> & { type?: Entry['type'] },
  isRoot: boolean,
): void {
  // Seconds as a float keep sub-millisecond precision (a Date would round to the millisecond).
  const atime = e.mtime / 1000;
  const mtime = e.mtime / 1000;
  if (e.type === 'symlink') {
    if (isRoot) fs.lchownSync(abs, e.uid, e.gid);
    fs.lutimesSync(abs, atime, mtime);
    return;
  }
  if (isRoot) fs.chownSync(abs, e.uid, e.gid);
  fs.chmodSync(abs, e.mode & 0o7777);
  fs.utimesSync(abs, atime, mtime);
}

/**
 * The metadata of each restored entry (owner, mode, times, extended attributes), applied once
 * the entry holds what it will hold: a file's owner, mode and times go with it to the writer
 * thread, which creates it with its final mode and sets the rest after its content; a
 * symlink's are set when it is made; a directory's at the very end, deepest first, since
 * creating anything inside changes its times and a read-only mode would stop those writes.
 * Extended attributes come after everything else of an entry: a chown clears
 * security.capability, and a directory's default ACL set before its contents are created would
 * hand them ACLs they did not have. Setting attributes leaves the mtime alone.
 */
export class MetadataStep {
  private readonly isRoot = process.getuid?.() === 0;
  private readonly uid = process.getuid?.() ?? -1;
  private readonly gid = process.getgid?.() ?? -1;
  /** New files get the creator's ids, unless the directory is setgid (the target root may be). */
  private readonly rootSetgid: boolean;
  private readonly dirs: DirMeta[] = [];
  private readonly xattrs = new XattrWriter(this.isRoot);

  constructor(root: string) {
    this.rootSetgid = (fs.statSync(root).mode & 0o2000) !== 0;
  }

  /** What the writer thread needs to create file e at abs with its metadata. */
  newFile(abs: string | Buffer, e: Entry): NewFile {
    const chown = this.isRoot && (e.uid !== this.uid || e.gid !== this.gid || this.rootSetgid);
    return { abs, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, chown };
  }

  /** A file's extended attributes, once the writer thread has created it (owner and all). */
  fileXattrs(abs: string | Buffer, path: string, xattrs: Record<string, string>): void {
    this.xattrs.apply(abs, displayName(path), xattrs);
  }

  symlink(abs: string | Buffer, e: Entry): void {
    applyMeta(abs, e, this.isRoot);
    if (e.xattrs) this.xattrs.apply(abs, displayName(e.path), e.xattrs);
  }

  /** A directory created: its metadata waits for finish. */
  dir(e: Entry): void {
    this.dirs.push({ path: e.path, mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, xattrs: e.xattrs });
  }

  /** Once every entry is in place: the directories' metadata, deepest first. Returns the warnings (attributes not set). */
  finish(tree: SafeTree): string[] {
    for (let i = this.dirs.length - 1; i >= 0; i--) {
      const d = this.dirs[i]!;
      applyMeta(tree.abs(d.path), d, this.isRoot);
      if (d.xattrs) this.xattrs.apply(tree.abs(d.path), displayName(d.path), d.xattrs);
    }
    return this.xattrs.finish();
  }
}
