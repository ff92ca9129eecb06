import { nameFromArg } from '../archive/names.ts';
import type { KeySource } from '../crypto/keys.ts';
import { IntegrityError } from '../errors.ts';
import type { BackupFilter } from '../repo/groups.ts';
import type { Entry, LocalManifest, ManifestHeader } from '../repo/manifest.ts';
import { Repository } from '../repo/repository.ts';
import type { Store } from '../store/store.ts';
import { makeLsFilter, snapshotPath } from './ls.ts';

/**
 * What changed between two backups (`s3backup diff A B`), from their manifests alone: no
 * archive is read. Both manifests list their entries in tree order (docs/format.md
 * "Manifest"), so one merge pass over the two streams finds every added, removed and changed
 * entry, holding two entries at a time whatever the size of the trees.
 */

/** What about an entry present in both backups differs. */
export const CHANGE_ASPECTS = ['type', 'content', 'target', 'mode', 'owner', 'times', 'xattrs'] as const;
export type ChangeAspect = (typeof CHANGE_ASPECTS)[number];

export type DiffChange =
  | { change: 'added'; entry: Entry }
  | { change: 'removed'; entry: Entry }
  | { change: 'changed'; before: Entry; after: Entry; what: ChangeAspect[] };

export interface DiffSide {
  id: string;
  time: string;
  host: string;
  sources: string[];
  tags: string[];
}

export interface DiffSummary {
  added: number;
  removed: number;
  changed: number;
  /** Changed entries whose content (or type) differs; the others changed only in metadata. */
  contentChanged: number;
  unchanged: number;
  /** Content bytes of the added and removed files. */
  addedBytes: number;
  removedBytes: number;
  /** Content bytes of every file in each backup's part compared: after − before is the growth. */
  bytesBefore: number;
  bytesAfter: number;
  /** Changed entries by aspect (an entry may count under several). */
  byAspect: Record<ChangeAspect, number>;
}

export interface DiffResult {
  from: DiffSide;
  to: DiffSide;
  /** The snapshot path or glob compared ("" = everything). */
  path: string;
  summary: DiffSummary;
}

export interface DiffOptions {
  store: Store;
  keys?: KeySource;
  /** The two backups, as the user names them: ids, short ids, "latest", "ID^". */
  from: string;
  to: string;
  /** Which backups "latest" chooses from; a given id must match it too. */
  filter?: BackupFilter | undefined;
  /** Only this path inside the backups (and what is below it), or a glob; default: everything. */
  path?: string | undefined;
  /** Each difference, in tree order. */
  onChange: (c: DiffChange) => void | Promise<void>;
}

/**
 * Tree order of two entry paths: component by component, each compared by UTF-16 code units
 * (the walk's sort), a directory before what is below it. "a/b" comes before "a.txt" though
 * "/" sorts after "."; compared in place, without splitting, as it runs once per entry.
 */
export function compareTreePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === a.length && i === b.length) return 0;
  // The path, or else the component, that ends first (at its end or a "/") is the smaller.
  if (i === a.length) return -1;
  if (i === b.length) return 1;
  if (a.charCodeAt(i) === 0x2f) return -1;
  if (b.charCodeAt(i) === 0x2f) return 1;
  return a.charCodeAt(i) - b.charCodeAt(i);
}

const hasContent = (e: Entry) => e.type === 'file' || e.type === 'hardlink';

function sameXattrs(a: Entry['xattrs'], b: Entry['xattrs']): boolean {
  const ka = Object.keys(a ?? {});
  if (ka.length !== Object.keys(b ?? {}).length) return false;
  return ka.every((k) => b?.[k] !== undefined && b[k] === a?.[k]);
}

/** What differs between two entries of the same path (empty: nothing). */
export function changedAspects(before: Entry, after: Entry): ChangeAspect[] {
  if (before.type !== after.type) return ['type'];
  const what: ChangeAspect[] = [];
  if (hasContent(after) && (before.size !== after.size || before.sha256 !== after.sha256 || !!before.error !== !!after.error))
    what.push('content');
  if ((after.type === 'symlink' || after.type === 'hardlink') && before.target !== after.target) what.push('target');
  if ((before.mode & 0o7777) !== (after.mode & 0o7777)) what.push('mode');
  if (before.uid !== after.uid || before.gid !== after.gid) what.push('owner');
  if (before.mtime !== after.mtime) what.push('times');
  if (!sameXattrs(before.xattrs, after.xattrs)) what.push('xattrs');
  return what;
}

function sideOf(h: ManifestHeader): DiffSide {
  return { id: h.id, time: h.time, host: h.host, sources: h.sources.map((s) => s.path), tags: h.tags };
}

/** A manifest's entries that `selected` keeps, checked to come in tree order. */
async function* inTreeOrder(m: LocalManifest, selected: (p: string) => boolean): AsyncGenerator<Entry> {
  let prev: string | undefined;
  for await (const e of m.entries()) {
    if (prev !== undefined && compareTreePaths(prev, e.path) >= 0) {
      throw new IntegrityError(
        `manifest of backup ${m.header.id} lists ${JSON.stringify(e.path)} after ${JSON.stringify(prev)}: not in tree order`,
        {
          hint: 'diff compares manifests in one pass and needs them in tree order (docs/format.md "Manifest"); run "s3backup verify" on that backup',
        },
      );
    }
    prev = e.path;
    if (selected(e.path)) yield e;
  }
}

function emptySummary(): DiffSummary {
  const byAspect = Object.fromEntries(CHANGE_ASPECTS.map((a) => [a, 0])) as Record<ChangeAspect, number>;
  return {
    added: 0,
    removed: 0,
    changed: 0,
    contentChanged: 0,
    unchanged: 0,
    addedBytes: 0,
    removedBytes: 0,
    bytesBefore: 0,
    bytesAfter: 0,
    byAspect,
  };
}

/** Merge two tree-ordered entry streams, calling `onChange` for each difference; returns the counts. */
async function mergeEntries(
  before: AsyncGenerator<Entry>,
  after: AsyncGenerator<Entry>,
  onChange: DiffOptions['onChange'],
): Promise<DiffSummary> {
  const s = emptySummary();
  const size = (e: Entry) => (hasContent(e) ? e.size : 0);
  let a = await before.next();
  let b = await after.next();
  while (!a.done || !b.done) {
    const order = a.done ? 1 : b.done ? -1 : compareTreePaths(a.value.path, b.value.path);
    if (order < 0 && !a.done) {
      s.removed++;
      s.removedBytes += size(a.value);
      s.bytesBefore += size(a.value);
      await onChange({ change: 'removed', entry: a.value });
      a = await before.next();
    } else if (order > 0 && !b.done) {
      s.added++;
      s.addedBytes += size(b.value);
      s.bytesAfter += size(b.value);
      await onChange({ change: 'added', entry: b.value });
      b = await after.next();
    } else if (!a.done && !b.done) {
      s.bytesBefore += size(a.value);
      s.bytesAfter += size(b.value);
      const what = changedAspects(a.value, b.value);
      if (what.length === 0) s.unchanged++;
      else {
        s.changed++;
        if (what.includes('content') || what.includes('type')) s.contentChanged++;
        for (const w of what) s.byAspect[w]++;
        await onChange({ change: 'changed', before: a.value, after: b.value, what });
      }
      a = await before.next();
      b = await after.next();
    }
  }
  return s;
}

/** Compare two backups' manifests. */
export async function runDiff(opts: DiffOptions): Promise<DiffResult> {
  const repo = await Repository.open(opts.store, opts.keys);
  const fromId = await repo.resolve(opts.from, opts.filter);
  const toId = await repo.resolve(opts.to, opts.filter);
  const before = await repo.loadManifest(fromId);
  try {
    const after = await repo.loadManifest(toId);
    try {
      // "\xHH" names a byte of a name that is not UTF-8, as ls shows it; an absolute path is
      // taken inside the newer backup's sources.
      const pattern = snapshotPath(nameFromArg(opts.path ?? ''), after.header);
      const selected = makeLsFilter(pattern);
      const summary = await mergeEntries(inTreeOrder(before, selected), inTreeOrder(after, selected), opts.onChange);
      return { from: sideOf(before.header), to: sideOf(after.header), path: pattern, summary };
    } finally {
      await after.dispose();
    }
  } finally {
    await before.dispose();
  }
}
