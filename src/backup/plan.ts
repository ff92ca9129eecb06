import * as fs from 'node:fs';
import { errText } from '../errors.ts';
import { resolveSources } from './backup.ts';
import { hardLinkKey, makeExcluder, SourceWalk, specialKind } from './walk.ts';

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
  const plan: BackupPlan = { sources: resolved.map((s) => s.path), files: 0, dirs: 0, symlinks: 0, hardlinks: 0, bytes: 0, warnings: [] };
  const links = new Set<string>();
  for (const step of new SourceWalk(resolved, makeExcluder(opts.excludes ?? [], opts.excludePaths ?? []))) {
    if (step.warning) {
      plan.warnings.push(`${step.warning.path}: ${step.warning.message}`);
      continue;
    }
    const { path: p, abs, st } = step.item;
    let entry: PlannedEntry;
    if (st.isDirectory()) {
      plan.dirs++;
      entry = { path: p, type: 'dir', size: 0 };
    } else if (st.isSymbolicLink()) {
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
          plan.warnings.push(`${p}: unreadable, would not be backed up: ${errText(e)}`);
          continue;
        }
        if (linkKey) links.add(linkKey);
        plan.files++;
        plan.bytes += st.size;
        entry = { path: p, type: 'file', size: st.size };
      }
    } else {
      plan.warnings.push(`${p}: would be skipped (${specialKind(st)})`);
      continue;
    }
    opts.onEntry?.(entry);
  }
  return plan;
}
