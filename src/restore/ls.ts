import * as path from 'node:path';
import picomatch from 'picomatch';
import { displayName, jsonName, nameFromArg, pathFromArg } from '../archive/names.ts';
import { UsageError } from '../errors.ts';
import type { Entry, LocalManifest, ManifestHeader } from '../repo/manifest.ts';
import { Repository } from '../repo/repository.ts';
import type { Store } from '../store/store.ts';
import type { KeySource } from '../crypto/keys.ts';
import type { BackupFilter } from '../repo/groups.ts';
import { globBase, makeIncludeFilter } from './plan.ts';

/**
 * Listing a backup's entries (`s3backup ls`): only the manifest is read, never an archive.
 * Also the shared helpers of `ls` and `cat`: opening a snapshot's manifest, turning what the
 * user typed into a snapshot path, and formatting an entry like `ls -l`.
 */

/** Open a backup's manifest (downloaded to a temporary file), run f, and clean up. */
export async function withSnapshot<T>(
  store: Store,
  ref: string,
  f: (s: { repo: Repository; id: string; manifest: LocalManifest }) => Promise<T>,
  keys?: KeySource,
  filter?: BackupFilter,
): Promise<T> {
  const repo = await Repository.open(store, keys);
  const id = await repo.resolve(ref, filter);
  const manifest = await repo.loadManifest(id);
  try {
    return await f({ repo, id, manifest });
  } finally {
    await manifest.dispose();
  }
}

/**
 * A path as the user typed it → the path inside the snapshot ("my-data/docs/x"): "./" and
 * trailing or doubled slashes dropped; an absolute path inside one of the backed-up sources
 * ("/home/me/my-data/docs") mapped to the source's name. Returns "" for the whole snapshot.
 */
export function snapshotPath(input: string, header: ManifestHeader): string {
  let p = input.replace(/\/{2,}/g, '/');
  if (p.startsWith('/')) {
    const abs = p.length > 1 ? p.replace(/\/$/, '') : p;
    const src = header.sources.find((s) => abs === s.path || abs.startsWith(s.path === '/' ? '/' : `${s.path}/`));
    if (!src) {
      throw new UsageError(`${input} is not inside a source of backup ${header.id}`, {
        hint: `its sources: ${header.sources.map((s) => `${s.path} (stored as ${s.name}/)`).join(', ')}; paths inside a backup start with the source name`,
      });
    }
    const rest = abs === src.path ? '' : abs.slice(src.path === '/' ? 1 : src.path.length + 1);
    return rest ? `${src.name}/${rest}` : src.name;
  }
  while (p.startsWith('./')) p = p.slice(2);
  if (p === '.') p = '';
  return p.replace(/\/+$/, '');
}

/** Does this pattern use glob syntax (*, ?, [..], {..}, …)? */
export function isGlob(pattern: string): boolean {
  return picomatch.scan(pattern).isGlob;
}

/**
 * Which entries `ls PATH` shows: PATH itself and everything below it; if PATH is a glob, the
 * entries it matches and everything below those. A literal match always counts, so names with
 * glob characters in them ("a [draft].txt") still work.
 */
export function makeLsFilter(pattern: string): (p: string) => boolean {
  if (pattern === '') return () => true;
  const glob = isGlob(pattern) ? makeIncludeFilter([pattern]) : undefined;
  return (p) => p === pattern || p.startsWith(`${pattern}/`) || (glob?.(p) ?? false);
}

export interface LsOptions {
  store: Store;
  /** The key of an encrypted repository. */
  keys?: KeySource;
  /** Backup id, unique part of it, or "latest". */
  snapshot: string;
  /** Which backups "latest" chooses from (--host, --path, --tag); a given id must match it too. */
  filter?: BackupFilter | undefined;
  /** A path inside the backup (or an absolute source path), or a glob; default: everything. */
  path?: string | undefined;
  /** Called for each selected entry, in archive (tree) order. */
  onEntry: (e: Entry) => void | Promise<void>;
  /**
   * Read all entries once before delivering any, so a damaged manifest or a path that matches
   * nothing is reported before any output (for --json, whose output must be one document).
   */
  checkFirst?: boolean;
}

export interface LsResult {
  id: string;
  /** The snapshot path or glob listed ("" = everything). */
  path: string;
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  other: number;
  /** Content bytes of the files and hard links listed. */
  bytes: number;
}

/** List a backup's entries (all, or those under PATH / matching a glob). Reads only the manifest. */
export async function runLs(opts: LsOptions): Promise<LsResult> {
  return withSnapshot(
    opts.store,
    opts.snapshot,
    async ({ id, manifest }) => {
      // "\xHH" names a byte of a name that is not UTF-8, as ls shows it: in a glob (nameFromArg)
      // and in a path, where "\\" is a backslash (pathFromArg); the path as typed is listed too.
      const arg = opts.path ?? '';
      const pattern = snapshotPath(nameFromArg(arg), manifest.header);
      const byPattern = makeLsFilter(pattern);
      const paths = [...new Set([snapshotPath(pathFromArg(arg), manifest.header), snapshotPath(arg, manifest.header)])].filter(
        (p) => p !== pattern && p !== '',
      );
      const under = (p: string) => paths.some((q) => p === q || p.startsWith(`${q}/`));
      const selected = paths.length ? (p: string) => byPattern(p) || under(p) : byPattern;
      // Only the entry segments that can hold what is asked for are read.
      const base = globBase(pattern);
      const read = { under: base === undefined ? undefined : [base, ...paths] };
      const result: LsResult = { id, path: pattern, entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, other: 0, bytes: 0 };
      const noMatch = () =>
        new UsageError(`nothing in backup ${id} matches ${JSON.stringify(opts.path)}`, {
          hint: `paths inside a backup start with the source name (${manifest.header.sources.map((s) => `${s.name}/`).join(', ')}); run "s3backup ls ${id}" to see them all`,
        });
      if (opts.checkFirst) {
        let n = 0;
        for await (const e of manifest.entries(read)) if (selected(e.path)) n++;
        if (n === 0 && pattern !== '') throw noMatch();
      }
      for await (const e of manifest.entries(read)) {
        if (!selected(e.path)) continue;
        result.entries++;
        switch (e.type) {
          case 'file':
            result.files++;
            break;
          case 'dir':
            result.dirs++;
            break;
          case 'symlink':
            result.symlinks++;
            break;
          case 'hardlink':
            result.hardlinks++;
            break;
          default:
            result.other++;
        }
        if (e.type === 'file' || e.type === 'hardlink') result.bytes += e.size;
        const p = opts.onEntry(e);
        if (p) await p;
      }
      if (result.entries === 0 && pattern !== '') throw noMatch();
      return result;
    },
    opts.keys,
    opts.filter,
  );
}

/** "drwxr-xr-x", "-rw-r--r--", "lrwxrwxrwx", with setuid/setgid/sticky as ls shows them. */
export function permissions(e: Pick<Entry, 'type' | 'mode'>): string {
  const kind = e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'file' || e.type === 'hardlink' ? '-' : '?';
  const m = e.mode;
  const rwx = (shift: number, special: boolean, on: string, off: string) => {
    const r = m & (4 << shift) ? 'r' : '-';
    const w = m & (2 << shift) ? 'w' : '-';
    const x = m & (1 << shift);
    return r + w + (special ? (x ? on : off) : x ? 'x' : '-');
  };
  return kind + rwx(6, (m & 0o4000) !== 0, 's', 'S') + rwx(3, (m & 0o2000) !== 0, 's', 'S') + rwx(0, (m & 0o1000) !== 0, 't', 'T');
}

/**
 * A path for a terminal: bytes that are not UTF-8 as \xHH (displayName); names with control
 * characters (newlines, escapes) are shown quoted.
 */
export function displayPath(p: string): string {
  const d = displayName(p);
  return /[\u0000-\u001f\u007f]/.test(d) ? JSON.stringify(d) : d;
}

/** UTC time as "2026-11-26 10:15:00". */
export function displayTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime())
    ? '????-??-?? ??:??:??'
    : d
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, '');
}

/** One `ls -l` style line: type and mode, uid, gid, size, mtime (UTC), path, link target. */
export function lsLine(e: Entry, opts: { human?: (n: number) => string } = {}): string {
  const size = e.type === 'file' || e.type === 'hardlink' ? (opts.human ? opts.human(e.size) : String(e.size)) : opts.human ? '-' : '0';
  let line = `${permissions(e)} ${String(e.uid).padStart(5)} ${String(e.gid).padStart(5)} ${size.padStart(opts.human ? 10 : 12)} ${displayTime(e.mtime)} ${displayPath(e.path)}`;
  if (e.type === 'symlink' && e.target !== undefined) line += ` -> ${displayPath(e.target)}`;
  if (e.type === 'hardlink' && e.target !== undefined) line += ` (hard link to ${displayPath(e.target)})`;
  if (e.error) line += `  [not in the backup: ${e.error}]`;
  else if (e.changed) line += '  [changed while being backed up]';
  return line;
}

/**
 * An entry for --json: the manifest's fields, plus the mode as ls shows it and an ISO mtime. A
 * path or target that is not UTF-8 is given for display (bad bytes as \xHH) in `path` /
 * `target`, and exactly as base64 of its bytes in `pathBase64` / `targetBase64` (see jsonName).
 */
export function lsJson(e: Entry): Record<string, unknown> {
  return {
    ...jsonName('path', e.path),
    type: e.type,
    permissions: permissions(e),
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.type === 'file' || e.type === 'hardlink' ? e.size : 0,
    mtime: Number.isFinite(e.mtime) ? new Date(e.mtime).toISOString() : null,
    mtimeMs: e.mtime,
    ...(e.sha256 !== undefined ? { sha256: e.sha256 } : {}),
    ...(e.target !== undefined ? jsonName('target', e.target) : {}),
    ...(e.error !== undefined ? { error: displayName(e.error) } : {}),
    ...(e.changed ? { changed: true } : {}),
    // As in the manifest: attribute name → value in base64 (values are binary: ACLs, capabilities).
    ...(e.xattrs !== undefined ? { xattrs: e.xattrs } : {}),
  };
}

/** Where a symlink points inside the snapshot, or undefined if it leaves it. */
export function resolveLinkTarget(link: Entry, header: ManifestHeader): string | undefined {
  const target = link.target ?? '';
  if (target === '') return undefined;
  let joined: string;
  if (target.startsWith('/')) {
    const src = header.sources.find((s) => target === s.path || target.startsWith(s.path === '/' ? '/' : `${s.path}/`));
    if (!src) return undefined;
    joined = `${src.name}/${target.slice(src.path.length)}`;
  } else {
    joined = path.posix.join(path.posix.dirname(link.path), target);
  }
  const n = path.posix.normalize(joined).replace(/\/+$/, '');
  if (n === '' || n === '.' || n === '..' || n.startsWith('../') || n.startsWith('/')) return undefined;
  return n;
}
