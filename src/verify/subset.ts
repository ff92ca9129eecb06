// verify --read-data-subset: read back a share of the repository's stored data and check it, so
// that a weekly job covers everything over some weeks without downloading it all each time
// (restic's check --read-data-subset). The unit is a group of frames of an archive (one frame,
// or a few that files cross: frameGroups): every frame chosen is fetched and decompressed
// (authenticated, for an encrypted repository), and every file that begins in it is read
// whole and its SHA-256 compared with each manifest that lists it.
import { createHash } from 'node:crypto';
import { ArchiveCursor, FrameTable, mergeSpans, type ReadStats } from '../archive/reader.ts';
import { mapLimit } from '../concurrency.ts';
import { IntegrityError, NotFoundError, UsageError } from '../errors.ts';
import type { ArchiveRef, Entry, LocalManifest } from '../repo/manifest.ts';
import { Repository } from '../repo/repository.ts';
import type { KeySource } from '../crypto/keys.ts';
import { COLD_CLASSES, type Store } from '../store/store.ts';
import type { VerifyProblem } from './verify.ts';

/** Which frames to read: the n-th of t fixed slices, or a random share of the stored bytes. */
export type SubsetSpec = { kind: 'slice'; n: number; t: number } | { kind: 'share'; percent: number };

const SPEC_HINT =
  'give a share such as 5% (random frames each run) or n/t such as 1/7 (the 1st of 7 slices; t runs with n = 1…t read everything)';

/** "5%", "0.5%", "2/7" as a SubsetSpec; a UsageError naming the forms otherwise. */
export function parseSubset(text: string): SubsetSpec {
  const t = text.trim();
  const share = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (share) {
    const percent = Number(share[1]);
    if (percent > 0 && percent <= 100) return { kind: 'share', percent };
    throw new UsageError(`--read-data-subset ${text}: the share must be more than 0% and at most 100%`, { hint: SPEC_HINT });
  }
  const slice = /^(\d+)\/(\d+)$/.exec(t);
  if (slice) {
    const n = Number(slice[1]);
    const total = Number(slice[2]);
    if (total >= 1 && total <= 1_000_000 && n >= 1 && n <= total) return { kind: 'slice', n, t: total };
    throw new UsageError(`--read-data-subset ${text}: n/t needs 1 ≤ n ≤ t (t at most 1000000)`, { hint: SPEC_HINT });
  }
  throw new UsageError(`--read-data-subset ${JSON.stringify(text)} is neither a share (5%) nor a slice (n/t)`, { hint: SPEC_HINT });
}

/**
 * Frames chosen together: a frame, or a run of frames joined by the files that cross between
 * them. A file whose content has whole frames inside it (a big file) always joins its frames
 * into one group, so it is read once over all slices. Small files crossing a single boundary
 * join frames only up to CHAIN_LIMIT frames (they would otherwise chain whole archives into one
 * group); one crossing out of a group is read from the group it begins in, one frame more.
 */
export interface FrameGroup {
  key: string;
  first: number;
  last: number;
  /** Stored bytes. */
  bytes: number;
}

/** Frames a chain of small files may join: reading past a group costs at most one frame in CHAIN_LIMIT. */
const CHAIN_LIMIT = 4;

/** An archive's frames in groups, given the frame spans [first, last] of the files crossing a frame boundary. */
export function frameGroups(a: ArchiveRef, crossing: [number, number][]): FrameGroup[] {
  const groups: FrameGroup[] = [];
  const spans = [...crossing].sort((x, y) => x[0] - y[0]);
  let s = 0;
  for (let i = 0; i < a.frames.length; ) {
    let last = i;
    for (; s < spans.length && spans[s]![0] <= last; s++) {
      const [from, to] = spans[s]!;
      if (to > last && (to - from >= 2 || last - i + 1 < CHAIN_LIMIT)) last = to;
    }
    last = Math.min(last, a.frames.length - 1);
    let bytes = 0;
    for (let f = i; f <= last; f++) bytes += a.frames[f]![0];
    groups.push({ key: a.key, first: i, last, bytes });
    i = last + 1;
  }
  return groups;
}

/**
 * The slice (1…t) a group belongs to: from its archive's key and its first frame's index alone,
 * so the slices stay the same from run to run, and new backups add frames to every slice evenly.
 */
export function frameSlice(key: string, index: number, t: number): number {
  return (createHash('sha256').update(`${key}\0${index}`).digest().readUInt32BE(0) % t) + 1;
}

/**
 * The groups to read. A share takes groups in a random order while they fit in the share of all
 * stored bytes, so that a run reads what was asked and not more: a group larger than what is
 * left is passed over (a file larger than the whole share is checked by n/t or --deep), unless
 * nothing fits at all, when the first group is taken alone.
 */
export function chooseGroups(groups: readonly FrameGroup[], spec: SubsetSpec, random: () => number = Math.random): FrameGroup[] {
  if (spec.kind === 'slice') return groups.filter((g) => frameSlice(g.key, g.first, spec.t) === spec.n);
  const order = [...groups];
  // Fisher–Yates, then the groups that fit in the share, in that order.
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const target = (order.reduce((sum, g) => sum + g.bytes, 0) * spec.percent) / 100;
  const out: FrameGroup[] = [];
  let taken = 0;
  for (const g of order) {
    if (taken >= target) break;
    if (taken + g.bytes > target) continue;
    out.push(g);
    taken += g.bytes;
  }
  return out.length === 0 && order.length > 0 ? [order[0]!] : out;
}

export interface SubsetOptions {
  store: Store;
  keys?: KeySource;
  /** One backup (id, a unique part, "latest"); undefined: every backup in the repository. */
  snapshot?: string | undefined;
  subset: SubsetSpec;
  /** Archives in cold storage: request a readable copy (they are read by a later run). */
  thaw?: { days: number; tier: 'Bulk' | 'Standard' | 'Expedited' } | undefined;
  /** Archives read at once (default 2). */
  parallel?: number | undefined;
  /** The random source of a share (tests give a seeded one). */
  random?: () => number;
}

export interface SubsetResult {
  ok: boolean;
  subset: string;
  backups: number;
  /** Distinct archives the backups use, and their frames and stored bytes. */
  archives: number;
  framesTotal: number;
  bytesTotal: number;
  /** Frames chosen and their stored bytes (cold ones included). */
  framesChosen: number;
  bytesChosen: number;
  /**
   * Stored bytes fetched from the store: the chosen frames' (cold ones left out), and the next
   * frame of a group whose last file reaches into it.
   */
  bytesRead: number;
  filesChecked: number;
  bytesChecked: number;
  /** Archives with chosen frames that are in cold storage and were not read. */
  cold: { archives: number; frames: number; bytes: number; thawRequested: number };
  /** The chosen frames by archive key (what was read, or would have been for cold ones). */
  chosen: Record<string, number[]>;
  problems: VerifyProblem[];
  durationMs: number;
}

/** A file whose content begins in a chosen frame: where, and the hash each manifest expects. */
interface FileToCheck {
  offset: number;
  size: number;
  /** Path and expected SHA-256 in each backup that lists this content. */
  listed: { path: string; sha256: string | undefined }[];
}

export function subsetText(spec: SubsetSpec): string {
  return spec.kind === 'slice' ? `${spec.n}/${spec.t}` : `${spec.percent}%`;
}

export async function runSubsetVerify(opts: SubsetOptions): Promise<SubsetResult> {
  const t0 = performance.now();
  const repo = await Repository.open(opts.store, opts.keys);
  const ids = opts.snapshot === undefined ? await repo.snapshotIds() : [await repo.resolve(opts.snapshot)];
  const problems: VerifyProblem[] = [];
  // Each manifest is fetched once and read twice from its local copy: for the groups, then for the files to check.
  const manifests: { id: string; manifest: LocalManifest }[] = [];
  try {
    for (const id of ids) {
      try {
        manifests.push({ id, manifest: await repo.loadManifest(id) });
      } catch (e) {
        if (!(e instanceof IntegrityError || e instanceof NotFoundError)) throw e;
        problems.push({ where: repo.manifestKey(id), problem: e.message });
      }
    }
    const archives = new Map<string, ArchiveRef>();
    for (const { manifest } of manifests) for (const a of manifest.archives) if (!archives.has(a.key)) archives.set(a.key, a);
    const refs = [...archives.values()];
    const crossing = await crossingSpans(repo, manifests, archives, problems);
    const groups = refs.flatMap((a) => frameGroups(a, crossing.get(a.key) ?? []));
    const chosen = new Map<string, number[]>();
    for (const g of chooseGroups(groups, opts.subset, opts.random)) {
      const list = chosen.get(g.key) ?? [];
      for (let f = g.first; f <= g.last; f++) list.push(f);
      chosen.set(g.key, list);
    }
    const result = emptyResult(opts.subset, ids.length, refs, problems);
    for (const [key, frames] of chosen) {
      frames.sort((x, y) => x - y);
      result.chosen[key] = frames;
      result.framesChosen += frames.length;
      result.bytesChosen += frames.reduce((sum, i) => sum + archives.get(key)!.frames[i]![0], 0);
    }
    const toRead = await readableArchives(opts, refs, chosen, result);
    const files = await filesInChosenFrames(manifests, toRead, chosen, repo, problems);
    const stats: ReadStats = { bytesFetched: 0, requests: 0 };
    await mapLimit([...toRead.values()], opts.parallel ?? 2, (a) =>
      checkArchive(repo, a, chosen.get(a.key)!, files.get(a.key)!, stats, result),
    );
    result.bytesRead = stats.bytesFetched;
    result.ok = problems.length === 0;
    result.durationMs = Math.round(performance.now() - t0);
    return result;
  } finally {
    for (const { manifest } of manifests) await manifest.dispose();
  }
}

function emptyResult(spec: SubsetSpec, backups: number, refs: ArchiveRef[], problems: VerifyProblem[]): SubsetResult {
  return {
    ok: false,
    subset: subsetText(spec),
    backups,
    archives: refs.length,
    framesTotal: refs.reduce((sum, a) => sum + a.frames.length, 0),
    bytesTotal: refs.reduce((sum, a) => sum + a.size, 0),
    framesChosen: 0,
    bytesChosen: 0,
    bytesRead: 0,
    filesChecked: 0,
    bytesChecked: 0,
    cold: { archives: 0, frames: 0, bytes: 0, thawRequested: 0 },
    chosen: {},
    problems,
    durationMs: 0,
  };
}

/** The stored files of a manifest that a subset can check: in an archive, within its frames. */
async function* storedFiles(
  manifest: LocalManifest,
  tables: Map<string, FrameTable>,
): AsyncGenerator<{ e: Entry & { offset: number }; key: string; table: FrameTable }> {
  for await (const e of manifest.entries()) {
    if (e.type !== 'file' || e.error || e.archive === undefined || e.offset === undefined) continue;
    const key = manifest.archives[e.archive]?.key;
    const table = key === undefined ? undefined : tables.get(key);
    // Content said to lie past the archive's end is the shallow verify's to report.
    if (!table || e.offset + e.size > table.uStart[table.count]!) continue;
    yield { e: e as Entry & { offset: number }, key: key!, table };
  }
}

/** Per archive, the frame spans of the files that cross a frame boundary (what groups frames). */
async function crossingSpans(
  repo: Repository,
  manifests: { id: string; manifest: LocalManifest }[],
  archives: Map<string, ArchiveRef>,
  problems: VerifyProblem[],
): Promise<Map<string, [number, number][]>> {
  const tables = new Map([...archives].map(([key, a]) => [key, new FrameTable(a)]));
  const out = new Map<string, [number, number][]>();
  for (const { id, manifest } of manifests) {
    try {
      for await (const { e, key, table } of storedFiles(manifest, tables)) {
        const span = table.span(e.offset, e.size);
        if (span[0] === span[1]) continue;
        const list = out.get(key) ?? [];
        list.push(span);
        out.set(key, list);
      }
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err;
      problems.push({ where: repo.manifestKey(id), problem: err.message });
    }
  }
  return out;
}

/**
 * The archives with chosen frames that can be read now: each must exist with its recorded size
 * (a problem otherwise); one in cold storage is skipped and counted, and with `thaw` a readable
 * copy is requested for a later run.
 */
async function readableArchives(
  opts: SubsetOptions,
  refs: ArchiveRef[],
  chosen: Map<string, number[]>,
  result: SubsetResult,
): Promise<Map<string, ArchiveRef>> {
  const out = new Map<string, ArchiveRef>();
  const wanted = refs.filter((a) => (chosen.get(a.key)?.length ?? 0) > 0);
  const infos = await mapLimit(wanted, 8, (a) => opts.store.head(a.key));
  for (const [i, a] of wanted.entries()) {
    const info = infos[i];
    if (!info) result.problems.push({ where: a.key, problem: 'archive is missing' });
    else if (info.size !== a.size)
      result.problems.push({ where: a.key, problem: `archive has ${info.size} bytes, manifest says ${a.size}` });
    else if (info.storageClass && COLD_CLASSES.has(info.storageClass) && info.restore !== 'available') {
      const frames = chosen.get(a.key)!;
      result.cold.archives++;
      result.cold.frames += frames.length;
      result.cold.bytes += frames.reduce((s, f) => s + a.frames[f]![0], 0);
      const thaw = opts.thaw ? opts.store.capabilities().thaw : undefined;
      if (thaw && info.restore !== 'ongoing') {
        await thaw.requestRestore(a.key, opts.thaw!);
        result.cold.thawRequested++;
      }
    } else out.set(a.key, a);
  }
  return out;
}

/**
 * For each archive to read, the files whose content begins in one of its chosen frames, from
 * every backup's manifest (a file kept by many incrementals is read once, checked against each).
 * A manifest found damaged here was already reported by crossingSpans.
 */
async function filesInChosenFrames(
  manifests: { id: string; manifest: LocalManifest }[],
  toRead: Map<string, ArchiveRef>,
  chosen: Map<string, number[]>,
  repo: Repository,
  problems: VerifyProblem[],
): Promise<Map<string, Map<number, FileToCheck>>> {
  const files = new Map<string, Map<number, FileToCheck>>();
  const tables = new Map<string, FrameTable>();
  const frames = new Map<string, Set<number>>();
  for (const [key, a] of toRead) {
    files.set(key, new Map());
    tables.set(key, new FrameTable(a));
    frames.set(key, new Set(chosen.get(key)));
  }
  for (const { id, manifest } of manifests) {
    try {
      for await (const { e, key, table } of storedFiles(manifest, tables)) {
        if (!frames.get(key)!.has(table.frameOf(e.offset))) continue;
        const byOffset = files.get(key)!;
        const f = byOffset.get(e.offset) ?? { offset: e.offset, size: e.size, listed: [] };
        f.listed.push({ path: `${id}:${e.path}`, sha256: e.sha256 });
        byOffset.set(e.offset, f);
      }
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err;
      if (!problems.some((p) => p.where === repo.manifestKey(id))) problems.push({ where: repo.manifestKey(id), problem: err.message });
    }
  }
  return files;
}

/**
 * Read an archive's chosen frames and the files beginning in them, in offset order (one ranged
 * GET per run of consecutive frames): each frame must decompress to its recorded size, each
 * file hash to what its manifests say.
 */
async function checkArchive(
  repo: Repository,
  a: ArchiveRef,
  frames: number[],
  files: Map<number, FileToCheck>,
  stats: ReadStats,
  result: SubsetResult,
): Promise<void> {
  const table = new FrameTable(a);
  const sorted = [...files.values()].sort((x, y) => x.offset - y.offset);
  const fileSpans = sorted.map((f) => table.span(f.offset, f.size));
  const covered = new Set<number>();
  for (const [first, last] of fileSpans) for (let i = first; i <= last; i++) covered.add(i);
  // Frames no file reaches are read on their own, so that every chosen frame is decompressed.
  const items = [
    ...sorted.map((f) => ({ offset: f.offset, file: f as FileToCheck | undefined, size: f.size })),
    ...frames.filter((i) => !covered.has(i)).map((i) => ({ offset: table.uStart[i]!, file: undefined, size: a.frames[i]![1] })),
  ].sort((x, y) => x.offset - y.offset);
  let opener;
  try {
    opener = repo.frameOpener(a);
  } catch (e) {
    if (!(e instanceof IntegrityError)) throw e;
    result.problems.push({ where: a.key, problem: e.message });
    return;
  }
  const spans = mergeSpans([...frames.map((i): [number, number] => [i, i]), ...fileSpans]);
  const cursor = new ArchiveCursor(repo.store, a, spans, stats, undefined, opener);
  let damaged = false;
  try {
    for (const item of items) {
      const h = createHash('sha256');
      try {
        await cursor.read(item.offset, item.size, (c) => h.update(c));
      } catch (e) {
        if (!(e instanceof IntegrityError)) {
          // The archive cannot be read at all (gone since the HEAD, the store failing): said once.
          result.problems.push({ where: a.key, problem: (e as Error).message });
          return;
        }
        if (!damaged) result.problems.push({ where: a.key, problem: e.message });
        damaged = true;
        for (const l of item.file?.listed ?? []) result.problems.push({ where: l.path, problem: `content cannot be read: ${e.message}` });
        continue;
      }
      if (!item.file) continue;
      const got = h.digest('hex');
      result.filesChecked++;
      result.bytesChecked += item.size;
      for (const l of item.file.listed)
        if (got !== l.sha256)
          result.problems.push({
            where: l.path,
            problem: `content SHA-256 ${got.slice(0, 16)}… does not match the manifest's ${l.sha256?.slice(0, 16)}…`,
          });
    }
  } finally {
    await cursor.close();
  }
}
