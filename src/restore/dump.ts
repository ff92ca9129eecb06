import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { pathFromArg } from '../archive/names.ts';
import { ArchiveCursor, FrameTable, mergeSpans, type ReadStats } from '../archive/reader.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from '../archive/tar.ts';
import { xattrsFromJson } from '../archive/xattrs.ts';
import type { KeySource } from '../crypto/keys.ts';
import { IntegrityError, S3BackupError, UsageError } from '../errors.ts';
import { contentLocationProblem, contentRanges, type Entry, type LocalManifest } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import type { Store } from '../store/store.ts';
import { copyRange, OutputGate } from './cat.ts';
import { snapshotPath, withSnapshot } from './ls.ts';
import { checkEntryPath, hasContent } from './plan.ts';

/**
 * `s3backup dump ID PATH`: a directory (or one file) of a backup as a pax tar stream, written to
 * a writable as it is read. As restore does, a first pass over the entries checks every path and
 * lists the runs of frames the content needs; the second reads only those (one ranged GET per
 * run), each file's SHA-256 checked as it goes. Paths in the tar are the backup's
 * ("my-data/docs/…"); names that are not UTF-8 go in as their bytes (docs/format.md "Names").
 */

export interface DumpOptions {
  store: Store;
  keys?: KeySource;
  /** Backup id, unique part of it, or "latest". */
  snapshot: string;
  /** Path inside the backup, an absolute path inside a source, or "" / "." for all of it. */
  path: string;
  output: Writable;
  signal?: AbortSignal;
}

export interface DumpResult {
  id: string;
  path: string;
  /** Entries written to the tar, and their content bytes. */
  entries: number;
  bytes: number;
  /** Entries left out: no content stored (unreadable at backup time), or not a file, directory or link. */
  skipped: { path: string; reason: string }[];
  bytesFetched: number;
  requests: number;
}

export async function runDump(opts: DumpOptions): Promise<DumpResult> {
  return withSnapshot(
    opts.store,
    opts.snapshot,
    async ({ repo, id, manifest }) => {
      const wanted = snapshotPath(pathFromArg(opts.path), manifest.header);
      const inDump = (p: string) => wanted === '' || p === wanted || p.startsWith(`${wanted}/`);
      const under = wanted === '' ? undefined : [wanted];
      const { spans, linkTargets } = await planDump(manifest, inDump, under, id, wanted);
      return new TarDump(repo, manifest, spans, linkTargets, opts).write(id, wanted, inDump, under);
    },
    opts.keys,
  );
}

/**
 * Pass 1: check the selected entries' paths, list per archive the frames their content needs,
 * and the first names of the hard links in the dump (the only paths pass 2 remembers).
 */
async function planDump(
  manifest: LocalManifest,
  inDump: (p: string) => boolean,
  under: string[] | undefined,
  id: string,
  wanted: string,
): Promise<{ spans: [number, number][][]; linkTargets: Set<string> }> {
  const tables = manifest.archives.map((a) => new FrameTable(a));
  const spans: [number, number][][] = tables.map(() => []);
  const linkTargets = new Set<string>();
  let matched = 0;
  for await (const e of manifest.entries({ under })) {
    if (!inDump(e.path)) continue;
    checkEntryPath(e.path);
    matched++;
    if (e.type === 'hardlink' && e.target !== undefined) linkTargets.add(e.target);
    // A hard link whose first name is in the dump becomes a tar link to it: no content needed.
    if (hasContent(e) && !(e.type === 'hardlink' && inDump(e.target ?? ''))) {
      const problem = contentLocationProblem(e, manifest.archives);
      if (problem) throw new IntegrityError(`${e.path} ${problem}`);
      for (const [a, offset, length] of contentRanges(e)) spans[a]!.push(tables[a]!.span(offset, length));
    }
  }
  if (matched === 0)
    throw new UsageError(`no ${JSON.stringify(wanted)} in backup ${id}`, {
      hint: `run "s3backup ls ${id}" to see its paths (they start with the source name, e.g. ${manifest.header.sources[0]?.name ?? 'data'}/)`,
    });
  return { spans: spans.map((s) => mergeSpans(s)), linkTargets };
}

class TarDump {
  private readonly repo: Repository;
  private readonly manifest: LocalManifest;
  private readonly spans: [number, number][][];
  private readonly opts: DumpOptions;
  private readonly cursors = new Map<number, { cursor: ArchiveCursor; table: FrameTable }>();
  private readonly stats: ReadStats = { bytesFetched: 0, requests: 0 };
  private readonly out: OutputGate;
  /** First names of hard links in the dump, and those of them written as files (a later link to one is a tar link). */
  private readonly linkTargets: ReadonlySet<string>;
  private readonly written = new Set<string>();

  constructor(repo: Repository, manifest: LocalManifest, spans: [number, number][][], linkTargets: ReadonlySet<string>, opts: DumpOptions) {
    this.linkTargets = linkTargets;
    this.repo = repo;
    this.manifest = manifest;
    this.spans = spans;
    this.opts = opts;
    this.out = new OutputGate(opts.output);
  }

  /** Pass 2: every selected entry, in tree order, then the two zero blocks. */
  async write(id: string, wanted: string, inDump: (p: string) => boolean, under: string[] | undefined): Promise<DumpResult> {
    const result: DumpResult = { id, path: wanted, entries: 0, bytes: 0, skipped: [], bytesFetched: 0, requests: 0 };
    try {
      for await (const e of this.manifest.entries({ under })) {
        if (!inDump(e.path)) continue;
        if (this.opts.signal?.aborted) throw new S3BackupError('dump interrupted');
        const reason = await this.entry(e);
        if (reason) result.skipped.push({ path: e.path, reason });
        else {
          result.entries++;
          if (e.type === 'file' || (e.type === 'hardlink' && !this.written.has(e.target ?? ''))) result.bytes += e.size;
        }
      }
      this.out.write(END_OF_ARCHIVE);
      await this.out.flushed();
    } finally {
      this.out.release();
      for (const { cursor } of this.cursors.values()) await cursor.close();
    }
    result.bytesFetched = this.stats.bytesFetched;
    result.requests = this.stats.requests;
    return result;
  }

  /** One entry's header and content; or why it is left out. */
  private async entry(e: Entry): Promise<string | undefined> {
    const base = {
      path: e.path,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      mtime: Math.floor(e.mtime / 1000),
      xattrs: e.xattrs ? xattrsFromJson(e.xattrs) : undefined,
    };
    if (e.type === 'dir') return this.header({ ...base, type: 'dir', size: 0 });
    if (e.type === 'symlink') {
      if (typeof e.target !== 'string') throw new IntegrityError(`symlink ${e.path} has no target`);
      return this.header({ ...base, type: 'symlink', size: 0, linkname: e.target });
    }
    if (e.type !== 'file' && e.type !== 'hardlink') return e.error ?? `a ${e.type} entry (socket, FIFO or device): not stored`;
    if (e.error) return `not backed up: ${e.error}`;
    if (e.type === 'hardlink' && this.written.has(e.target ?? ''))
      return this.header({ ...base, type: 'hardlink', size: 0, linkname: e.target });
    if (e.size > 0 && !hasContent(e)) return 'no content stored';
    await this.header({ ...base, type: 'file', size: e.size });
    if (e.size > 0) await this.content(e);
    this.out.write(Buffer.alloc(padding(e.size)));
    if (this.linkTargets.has(e.path)) this.written.add(e.path);
    return undefined;
  }

  private async header(h: TarHeader): Promise<undefined> {
    this.out.write(encodeHeader(h));
    await this.out.ready();
    return undefined;
  }

  /** Archive `archive`'s cursor over the dump's spans and its frame table, made on first use. */
  private reader(archive: number): { cursor: ArchiveCursor; table: FrameTable } {
    let r = this.cursors.get(archive);
    if (!r) {
      const ref = this.manifest.archives[archive]!;
      const cursor = new ArchiveCursor(this.repo.store, ref, this.spans[archive]!, this.stats, undefined, this.repo.frameOpener(ref));
      r = { cursor, table: new FrameTable(ref) };
      this.cursors.set(archive, r);
    }
    return r;
  }

  /** A file's content, one frame at a time with the output drained in between, its SHA-256 checked. */
  private async content(e: Entry): Promise<void> {
    const hash = createHash('sha256');
    for (const [archive, offset, length] of contentRanges(e)) {
      const { cursor, table } = this.reader(archive);
      await copyRange(cursor, table, offset, length, hash, this.out);
    }
    if (hash.digest('hex') !== e.sha256)
      throw new IntegrityError(`${e.path}: content does not match its SHA-256 in the manifest; the tar stream is not to be trusted`, {
        hint: `run "s3backup verify ${this.manifest.header.id} --deep" for details`,
      });
  }
}
