import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import type { FrameInfo } from '../archive/frames.ts';
import { TAG_BYTES } from '../crypto/aead.ts';
import { IntegrityError, UsageError } from '../errors.ts';
import { appendRun, readHistory } from '../monitor/history.ts';
import { acquireSharedLock } from '../repo/locks.ts';
import {
  type ArchiveRef,
  contentLocationProblem,
  EXTENTS_MANIFEST_VERSION,
  type Entry,
  type LocalManifest,
  SEGMENTED_MANIFEST_VERSION,
  settleManifestHead,
} from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { SegmentWriter } from '../repo/segments.ts';
import type { PutOptions } from '../store/store.ts';
import { commitManifest } from './commit.ts';

// s3backup copy: backups of one repository into another (3-2-1), each with its archives, its
// entry segments and its run record, re-sealed for the destination's keys when the two differ.
// The destination's manifest is written last and create-only, as a backup writes its own: until
// then nothing is listed there, and a copy stopped midway is resumed by running it again (the
// archives and segments already stored are recognised and not sent again).

export interface CopyOptions {
  from: Repository;
  to: Repository;
  /** Backups to copy (ids, unique parts of ids, or "latest"); undefined: all of them. */
  ids?: readonly string[] | undefined;
  /** Say what would be copied, copy nothing. */
  dryRun?: boolean | undefined;
  onProgress?: ((p: CopyProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface CopyProgress {
  /** The backup being copied, and its place in the list. */
  id: string;
  index: number;
  total: number;
  /** Archive bytes read from the source so far (all backups). */
  bytesRead: number;
}

export interface CopyResult {
  from: string;
  to: string;
  dryRun: boolean;
  /** Copied now (or, dry run, to copy), oldest first. */
  copied: string[];
  /** Asked for, but the destination has them already. */
  present: string[];
  /** Archives sent, and those found already stored in the destination. */
  archivesCopied: number;
  archivesPresent: number;
  /** Archive bytes read from the source and stored in the destination. */
  bytesRead: number;
  bytesWritten: number;
  /** Bytes of entry segments stored (those already there, shared with other backups or stored by a stopped copy, count 0). */
  segmentBytesWritten: number;
  runRecords: number;
}

/** Copy the backups the destination does not have yet (by id), oldest first. */
export async function copyBackups(o: CopyOptions): Promise<CopyResult> {
  const { from, to } = o;
  if (from.config.id === to.config.id) {
    throw new UsageError(`${from.location} and ${to.location} are the same repository (id ${from.config.id})`, {
      hint: 'copy needs a second repository: create one with "s3backup init --repo REPO2"',
    });
  }
  const selected = o.ids === undefined ? await from.snapshotIds() : await resolveAll(from, o.ids);
  const there = new Set(await to.snapshotIds());
  const result: CopyResult = {
    from: from.location,
    to: to.location,
    dryRun: !!o.dryRun,
    copied: selected.filter((id) => !there.has(id)),
    present: selected.filter((id) => there.has(id)),
    archivesCopied: 0,
    archivesPresent: 0,
    bytesRead: 0,
    bytesWritten: 0,
    segmentBytesWritten: 0,
    runRecords: 0,
  };
  if (o.dryRun || result.copied.length === 0) return result;
  // Shared, as a backup's: a prune of the destination leaves the objects of a copy under way.
  const lock = await acquireSharedLock(to.store, 'copy');
  try {
    const copier = new Copier(o, result);
    const records = await runRecordsOf(from, new Set(result.copied));
    for (const [index, id] of result.copied.entries()) {
      o.signal?.throwIfAborted();
      o.onProgress?.({ id, index, total: result.copied.length, bytesRead: result.bytesRead });
      await copier.backup(id, records.get(id));
    }
  } finally {
    await lock.release();
  }
  return result;
}

async function resolveAll(repo: Repository, refs: readonly string[]): Promise<string[]> {
  const ids = new Set<string>();
  for (const ref of refs) ids.add(await repo.resolve(ref));
  return [...ids].sort();
}

async function runRecordsOf(repo: Repository, ids: ReadonlySet<string>) {
  const records = await readHistory(repo.store, { crypto: repo.historyCrypto() });
  return new Map(records.filter((r) => ids.has(r.id)).map((r) => [r.id, r]));
}

class Copier {
  private readonly from: Repository;
  private readonly to: Repository;
  private readonly result: CopyResult;
  private readonly signal: AbortSignal | undefined;
  /** Destination archives by source key: an archive several backups list is copied once. */
  private readonly copied = new Map<string, ArchiveRef>();
  /** The destination's archives as its manifests list them, read when first needed. */
  private listed: Promise<Map<string, ArchiveRef>> | undefined;
  private readonly retention: PutOptions['retention'];

  constructor(o: CopyOptions, result: CopyResult) {
    this.from = o.from;
    this.to = o.to;
    this.result = result;
    this.signal = o.signal;
    const lock = this.to.config.defaults?.objectLock;
    this.retention = lock ? { mode: lock.mode, until: new Date(Date.now() + lock.days * 86_400_000) } : undefined;
  }

  async backup(id: string, record: Parameters<typeof appendRun>[1] | undefined): Promise<void> {
    const m = await this.from.loadManifest(id);
    try {
      const archives: ArchiveRef[] = [];
      for (const ref of m.archives) archives.push(await this.archive(ref));
      const segments = new SegmentWriter(this.to.segmentStore({ retention: this.retention }), new Set(), (i) => archives[i]!.key);
      let holdsExtents = false;
      try {
        for await (const e of m.entries()) {
          if (e.extents !== undefined) holdsExtents = true;
          const wait = segments.add(checkedEntry(e, m.archives, id));
          if (wait) await wait;
        }
        await segments.finish();
      } catch (e) {
        await segments.dispose();
        throw e;
      }
      this.result.segmentBytesWritten += segments.bytesWritten;
      // The run record first: written once (create-only), it is there when the backup appears.
      if (record) {
        await appendRun(this.to.store, record, { crypto: this.to.historyCrypto(), compactThreshold: 0 });
        this.result.runRecords++;
      }
      await this.commit(m, archives, segments, holdsExtents);
    } finally {
      await m.dispose();
    }
  }

  /** The manifest, last: the header as the source has it, with the destination's sizes. */
  private async commit(m: LocalManifest, archives: ArchiveRef[], segments: SegmentWriter, holdsExtents: boolean): Promise<void> {
    const header = structuredClone(m.header);
    const id = header.id;
    header.version = holdsExtents ? EXTENTS_MANIFEST_VERSION : SEGMENTED_MANIFEST_VERSION;
    // This backup's own archives (an incremental lists its parents' too, which it did not store).
    const ownBytes = archives.filter((a) => a.id === id).reduce((n, a) => n + a.size, 0);
    header.stats.archiveBytes = ownBytes;
    const head = settleManifestHead(header, archives, ownBytes + segments.bytesWritten, (len) => this.to.manifestSize(len), {
      refs: segments.refs,
      bytes: segments.bytesWritten,
    });
    await commitManifest(this.to.store, this.to.manifestKey(id), this.to.encodeManifest(id, head), {
      contentType: this.to.encrypted ? 'application/octet-stream' : 'application/zstd',
      retention: this.retention,
    });
  }

  /** One archive in the destination: copied now, or found there already. */
  private async archive(ref: ArchiveRef): Promise<ArchiveRef> {
    const done = this.copied.get(ref.key);
    if (done) return done;
    const part = ref.part ?? 1;
    const key = this.to.archiveKey(ref.id, ref.codec, part);
    const open = this.from.frameOpener(ref);
    const sealer = this.to.copySealer(ref.id, part, `${this.from.config.id}\n${ref.key}\n${ref.sha256}`);
    const tagDelta = (sealer ? TAG_BYTES : 0) - (open ? TAG_BYTES : 0);
    const frames: FrameInfo[] = ref.frames.map(([c, u]) => [c + tagDelta, u]);
    const size = frames.reduce((n, [c]) => n + c, 0);
    const { encryption: _, ...named } = ref;
    const base = { ...named, key, size, frames, ...(sealer ? { encryption: sealer.encryption } : {}) };
    let out: ArchiveRef | undefined;
    const stored = await this.to.store.head(key);
    if (stored?.size === size) out = await this.present(ref, key, base);
    if (out) {
      this.result.archivesPresent++;
    } else {
      out = { ...base, sha256: await this.send(ref, key, size, open, sealer?.key) };
      this.result.archivesCopied++;
      this.result.bytesWritten += size;
    }
    this.copied.set(ref.key, out);
    return out;
  }

  /**
   * An archive the destination holds already (an earlier copy, maybe stopped before its
   * manifest): its record from a manifest there, else its hash read back (sealed with the
   * derived salt, it holds the same bytes this copy would send).
   */
  private async present(ref: ArchiveRef, key: string, base: Omit<ArchiveRef, 'sha256'>): Promise<ArchiveRef | undefined> {
    const listed = (await this.listedArchives()).get(key);
    if (listed) return listed;
    // Plain to plain: the same bytes, the same hash.
    if (!this.from.encrypted && !this.to.encrypted) return { ...base, sha256: ref.sha256 };
    const hash = createHash('sha256');
    for await (const chunk of await this.to.store.get(key)) hash.update(chunk as Buffer);
    return { ...base, sha256: hash.digest('hex') };
  }

  private listedArchives(): Promise<Map<string, ArchiveRef>> {
    this.listed ??= (async () => {
      const byKey = new Map<string, ArchiveRef>();
      for (const id of await this.to.snapshotIds()) {
        const m = await this.to.loadManifest(id);
        for (const a of m.archives) byKey.set(a.key, a);
        await m.dispose();
      }
      return byKey;
    })();
    return this.listed;
  }

  /**
   * Stream one archive across, frame by frame (one frame in memory at a time, at most 16 MiB):
   * opened with the source's key, sealed with the destination's, the source's hash checked at
   * the end. Resolves to the SHA-256 of the bytes stored.
   */
  private async send(
    ref: ArchiveRef,
    key: string,
    size: number,
    open: ReturnType<Repository['frameOpener']>,
    seal: { seal(plain: Buffer, index: number, last: boolean): Buffer } | undefined,
  ): Promise<string> {
    const body = new PassThrough({ highWaterMark: 4 << 20 });
    // Its errors reach us through the upload or as the error that destroyed it: an 'error'
    // event with no reader left (the upload gave up first) must not crash the process.
    body.on('error', () => {});
    const upload = this.to.store.put(key, body, { contentType: 'application/octet-stream', sizeHint: size, retention: this.retention });
    upload.catch((e: unknown) => body.destroy(e instanceof Error ? e : new Error(String(e))));
    const sourceHash = createHash('sha256');
    const storedHash = createHash('sha256');
    const where = `${this.from.location}/${ref.key}`;
    const n = ref.frames.length;
    try {
      let pending: Buffer[] = [];
      let have = 0;
      let i = 0;
      for await (const chunk of await this.from.store.get(ref.key)) {
        this.signal?.throwIfAborted();
        const b = chunk as Buffer;
        sourceHash.update(b);
        this.result.bytesRead += b.length;
        pending.push(b);
        have += b.length;
        while (i < n && have >= ref.frames[i]![0]) {
          const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending);
          const c = ref.frames[i]![0];
          const rest = all.subarray(c);
          pending = rest.length > 0 ? [rest] : [];
          have = rest.length;
          const plain = open ? open(all.subarray(0, c), i, i === n - 1) : all.subarray(0, c);
          const sealed = seal ? seal.seal(plain, i, i === n - 1) : plain;
          storedHash.update(sealed);
          if (!body.write(sealed)) await once(body, 'drain');
          i++;
        }
        if (i === n && have > 0) break;
      }
      if (i !== n || have !== 0) throw new IntegrityError(`archive ${where} does not match its frame table (size ${ref.size} expected)`);
      if (sourceHash.digest('hex') !== ref.sha256) throw new IntegrityError(`archive ${where} does not match its SHA-256: not copied`);
      body.end();
      await upload;
    } catch (e) {
      body.destroy(e instanceof Error ? e : new Error(String(e)));
      await upload.catch(() => {});
      throw e;
    }
    const stored = await this.to.store.head(key);
    if (stored?.size !== size)
      throw new IntegrityError(`archive ${this.to.location}/${key} was stored with ${stored?.size ?? 'no'} bytes, expected ${size}`);
    return storedHash.digest('hex');
  }
}

/**
 * An entry's archive indexes must name the manifest's archives (segments record them by key,
 * so the destination's segments re-index them into their own lists); its extents are checked as
 * a restore checks them, so that a copy never carries a location no reader would accept.
 */
function checkedEntry(e: Entry, archives: ArchiveRef[], id: string): Entry {
  const n = archives.length;
  if (e.archive !== undefined && !(Number.isSafeInteger(e.archive) && e.archive >= 0 && e.archive < n))
    throw new IntegrityError(`backup ${id}: entry ${JSON.stringify(e.path)} names archive ${e.archive} of ${n}`);
  if (e.extents !== undefined) {
    const problem = contentLocationProblem(e, archives);
    if (problem) throw new IntegrityError(`backup ${id}: entry ${JSON.stringify(e.path)} ${problem}`);
  }
  return e;
}
