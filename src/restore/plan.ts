import picomatch from 'picomatch';
import { FrameTable, mergeSpans } from '../archive/reader.ts';
import { isCanonicalName, nameFromArg } from '../archive/names.ts';
import { IntegrityError, UsageError } from '../errors.ts';
import { contentLocationProblem, contentRanges, type Entry, hasLocation, type LocalManifest } from '../repo/manifest.ts';
import { describeGroup } from '../repo/groups.ts';

/**
 * Reject any snapshot path that could land outside the target: absolute paths, "..", empty or
 * "." components, NUL bytes; and a name not held as s3backup holds names (src/archive/names.ts:
 * its escaped bytes stand for bytes ≥ 0x80 only, so "/", "." and NUL are checked here as the
 * bytes they will be). Manifests come from storage we do not fully trust.
 */
export function checkEntryPath(p: string): void {
  if (typeof p !== 'string' || p === '' || p.startsWith('/') || p.includes('\0')) {
    throw new IntegrityError(`refusing to restore ${JSON.stringify(p)}: absolute or empty path`);
  }
  // Each part between slashes, without splitting (a string per part, for every path of a restore).
  for (let start = 0; start <= p.length; ) {
    let end = p.indexOf('/', start);
    if (end < 0) end = p.length;
    const n = end - start;
    if (n === 0 || (p.charCodeAt(start) === 0x2e && (n === 1 || (n === 2 && p.charCodeAt(start + 1) === 0x2e)))) {
      throw new IntegrityError(`refusing to restore ${JSON.stringify(p)}: path leaves the target directory`);
    }
    start = end + 1;
  }
  if (!isCanonicalName(p))
    throw new IntegrityError(`refusing to restore ${JSON.stringify(p)}: not a name as s3backup stores names (damaged manifest?)`);
}

export function makeIncludeFilter(include: string[] | undefined): ((p: string) => boolean) | undefined {
  if (!include || include.length === 0) return undefined;
  const m = picomatch(
    include.map((g) => nameFromArg(g).replace(/\/+$/, '')),
    { dot: true },
  );
  return (p) => {
    // A match on the path or any ancestor selects it.
    let q = p;
    for (;;) {
      if (m(q)) return true;
      const i = q.lastIndexOf('/');
      if (i < 0) return false;
      q = q.slice(0, i);
    }
  };
}

/**
 * The paths below which --include globs can match (for reading only those entry segments), or
 * undefined for everything: each glob's leading part without glob characters. Anything that
 * picomatch might read differently (escapes, negation, braces) counts as "everything": reading
 * too much only costs time, reading too little would leave files out.
 */
export function includeBases(include: readonly string[] | undefined): string[] | undefined {
  if (!include || include.length === 0) return undefined;
  const bases: string[] = [];
  for (const g of include) {
    const base = globBase(nameFromArg(g));
    if (base === undefined) return undefined;
    bases.push(base);
  }
  return bases;
}

/** The path below which a glob (its escapes already read) can match; undefined: anywhere. */
export function globBase(glob: string): string | undefined {
  const scan = picomatch.scan(glob.replace(/\/+$/, ''));
  if (scan.negated || scan.negatedExtglob || /[\\*?[\]{}()!+@]/.test(scan.base) || scan.base === '') return undefined;
  return scan.base.replace(/\/+$/, '');
}

export function hasContent(e: Entry): boolean {
  return (e.type === 'file' || e.type === 'hardlink') && !e.error && e.size > 0 && hasLocation(e);
}

/** What a restore will do, decided from the manifest alone before anything is fetched or written. */
export interface RestorePlan {
  /** The entries --include selects; undefined: all of them. */
  selected: ((p: string) => boolean) | undefined;
  /** Per archive, the runs of frames the selected content needs (merged as entries come: one per run, not per file). */
  spans: [number, number][][];
  /** Directories above a selected entry: created even when not selected themselves (only with --include). */
  ancestors: Set<string>;
  /** Paths that restored hard links name as their first link: the only files whose restore is remembered. */
  linkTargets: Set<string>;
  totalFiles: number;
  totalBytes: number;
}

/**
 * Add frames [a, b] to an archive's spans: the last span grows when they touch or overlap it
 * (entries come in archive order, so this is the usual case), else a new one starts.
 */
function addSpan(spans: [number, number][], [a, b]: [number, number]): void {
  const last = spans.at(-1);
  if (last && a >= last[0] && a <= last[1] + 1) last[1] = Math.max(last[1], b);
  else spans.push([a, b]);
}

/** Symlinks need a target; a hard link's target is a path in the backup, as hostile as any. */
function checkEntry(e: Entry): void {
  checkEntryPath(e.path);
  if (e.type === 'symlink' && typeof e.target !== 'string') throw new IntegrityError(`symlink ${e.path} has no target`);
  if (e.type === 'hardlink') {
    try {
      checkEntryPath(e.target ?? '');
    } catch (err) {
      throw new IntegrityError(
        `refusing to restore hard link ${JSON.stringify(e.path)}: its target ${(err as Error).message.replace(/^refusing to restore /, '')}`,
      );
    }
  }
}

/**
 * The first pass: check every path of the manifest (selected or not) before the disk is
 * touched, and list which frames of which archives the selected content needs.
 */
export async function planRestore(manifest: LocalManifest, include: string[] | undefined): Promise<RestorePlan> {
  const selected = makeIncludeFilter(include);
  const tables = manifest.archives.map((a) => new FrameTable(a));
  const plan: RestorePlan = {
    selected,
    spans: tables.map(() => []),
    ancestors: new Set(),
    linkTargets: new Set(),
    totalFiles: 0,
    totalBytes: 0,
  };
  // Nothing is kept per file: a full restore of 1M files would otherwise hold every path.
  let matched = 0;
  for await (const batch of manifest.entryBatches({ under: includeBases(include) }))
    for (const e of batch) {
      checkEntry(e);
      if (selected && !selected(e.path)) continue;
      matched++;
      if (selected) for (let i = e.path.indexOf('/'); i >= 0; i = e.path.indexOf('/', i + 1)) plan.ancestors.add(e.path.slice(0, i));
      if (e.type === 'hardlink') plan.linkTargets.add(e.target!);
      if (hasContent(e)) {
        const problem = contentLocationProblem(e, manifest.archives);
        if (problem) throw new IntegrityError(`${e.path} ${problem}`);
        // A hard link whose first name is restored too becomes a link to it: no content needed.
        // (A first name that is not restored after all, absent or damaged, gives the link its own
        // copy of the content, read outside these spans.)
        if (e.type === 'file' || (selected && !selected(e.target!)))
          for (const [a, offset, length] of contentRanges(e)) addSpan(plan.spans[a]!, tables[a]!.span(offset, length));
      }
      if (e.type === 'file' || e.type === 'hardlink') {
        plan.totalFiles++;
        plan.totalBytes += e.size;
      }
    }
  if (selected && matched === 0) {
    const h = manifest.header;
    throw new UsageError(
      `nothing in backup ${h.id} (${describeGroup({ host: h.host, sources: h.sources.map((s) => s.path) })}) matches ${include!.map((g) => JSON.stringify(g)).join(', ')}`,
      {
        hint: `run "s3backup ls ${h.id}" to see its paths (they start with the source name, e.g. ${h.sources[0]?.name ?? 'data'}/); "latest" of another host or source set is chosen with --host and --path`,
      },
    );
  }
  for (let i = 0; i < plan.spans.length; i++) plan.spans[i] = mergeSpans(plan.spans[i]!);
  return plan;
}

/** Whether pass 2 restores e: selected, or a directory above something selected. */
export function isRestored(plan: RestorePlan, e: Entry): boolean {
  return !plan.selected || plan.selected(e.path) || (e.type === 'dir' && plan.ancestors.has(e.path));
}
