import * as fs from 'node:fs';
import * as path from 'node:path';
import { errText, UsageError } from '../errors.ts';

// Stage "sources": the paths given, checked and named before anything else happens.

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
  // One canonical order, whatever order the paths were given in: walk order and manifest order
  // must match between a backup and its parent.
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
