import * as fs from 'node:fs';
import { displayName } from '../archive/names.ts';
import { errText } from '../errors.ts';
import { resolveSources } from './sources.ts';
import { hardLinkKey, makeExcluder, readLinkTarget, SourceWalk, specialKind, walkWarningText } from './walk.ts';

/** One entry a backup would store, by its path inside the snapshot. */
export interface PlannedEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  /** Bytes of content (files; 0 for the rest, and for a second name of a file). */
  size: number;
}

export interface BackupPlan {
  sources: string[];
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Content bytes a full backup would read. */
  bytes: number;
  /**
   * Entries the backup would leave out (as its stats.skipped): unreadable, special, vanished;
   * each one named in the warnings.
   */
  skipped: number;
  /** What the backup would warn about: directories it cannot list, unreadable files, special files. */
  warnings: string[];
}

/**
 * What a backup of these sources would store (a dry run): the same walk and excludes as a
 * backup, in the same order, each entry handed to `onEntry`. Nothing is read but directory
 * listings and metadata (each file is only checked for read access), and no repository is
 * touched, so excludes can be tried out freely.
 */
export function planBackup(opts: {
  sources: string[];
  excludes?: string[];
  excludePaths?: string[];
  onEntry?: (e: PlannedEntry) => void;
}): BackupPlan {
  const resolved = resolveSources(opts.sources);
  const plan: BackupPlan = {
    sources: resolved.map((s) => s.path),
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    bytes: 0,
    skipped: 0,
    warnings: [],
  };
  const links = new Set<string>();
  const skip = (w: string) => {
    plan.warnings.push(w);
    plan.skipped++;
  };
  for (const step of new SourceWalk(resolved, makeExcluder(opts.excludes ?? [], opts.excludePaths ?? []))) {
    if (step.warning) {
      skip(walkWarningText(step.warning, true));
      continue;
    }
    const { path: p, abs, st } = step.item;
    let entry: PlannedEntry;
    if (st.isDirectory()) {
      plan.dirs++;
      entry = { path: p, type: 'dir', size: 0 };
    } else if (st.isSymbolicLink()) {
      try {
        readLinkTarget(abs);
      } catch (e) {
        skip(`${displayName(p)}: cannot read symlink: ${errText(e)}`);
        continue;
      }
      plan.symlinks++;
      entry = { path: p, type: 'symlink', size: 0 };
    } else if (st.isFile()) {
      const linkKey = hardLinkKey(st);
      if (linkKey && links.has(linkKey)) {
        plan.hardlinks++;
        entry = { path: p, type: 'hardlink', size: 0 };
      } else {
        try {
          fs.accessSync(abs, fs.constants.R_OK);
        } catch (e) {
          skip(`${displayName(p)}: unreadable, would not be backed up: ${errText(e)}`);
          continue;
        }
        if (linkKey) links.add(linkKey);
        plan.files++;
        plan.bytes += st.size;
        entry = { path: p, type: 'file', size: st.size };
      }
    } else {
      skip(`${displayName(p)}: would be skipped (${specialKind(st)})`);
      continue;
    }
    opts.onEntry?.(entry);
  }
  return plan;
}
