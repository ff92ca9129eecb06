import { effectiveLevel } from '../archive/codec.ts';
import { errText, S3BackupError } from '../errors.ts';
import {
  type BackupStats,
  MANIFEST_FORMAT,
  EXTENTS_MANIFEST_VERSION,
  SEGMENTED_MANIFEST_VERSION,
  MAX_HEADER_WARNINGS,
  type ManifestHeader,
  settleManifestHead,
} from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import { getBuffer, type PutOptions, type Store } from '../store/store.ts';
import { VERSION } from '../version.ts';
import type { ArchiveSet } from './archive-set.ts';
import type { ParentChoice } from './parent.ts';
import type { ManifestQueue } from './manifest-queue.ts';
import type { Codec } from '../archive/codec.ts';

// Stage "commit": the manifest, written last and create-only. Until it exists there is no
// backup; once its write has begun, nothing this backup wrote may be deleted.

/** What the manifest's header says beside the stats: who, what, how. */
export interface ManifestFacts {
  id: string;
  started: Date;
  host: string;
  sources: { path: string; name: string }[];
  tags: string[];
  codec: Codec;
  level: number | undefined;
  frameSize: number;
  excludes: string[];
  /** Attributes stored (not --no-xattrs). */
  xattrs: boolean;
  parent: ParentChoice['header'];
  /** Some content was found in other backups (see content-index.ts): not a full backup even without a parent. */
  found: boolean;
}

/**
 * The backup's manifest (header, archives line, segments line), sized and encoded. The stats
 * are completed here: archive bytes, ratio, warnings, duration (up to now), and bytesStored with
 * the manifest's own size, which depends on the header that says it, and the new segments'.
 */
export function encodeManifest(
  repo: Repository,
  facts: ManifestFacts,
  stats: BackupStats,
  warnings: string[],
  archives: ArchiveSet,
  queue: ManifestQueue,
  t0: number,
): { header: ManifestHeader; manifest: Buffer } {
  const archiveBytes = archives.bytesStored;
  stats.archiveBytes = archiveBytes;
  // Of what was read: a no-change incremental (nothing read) counts as 1, not 0.
  stats.compressionRatio = stats.bytesIn > 0 && archiveBytes > 0 ? round(stats.bytesIn / archiveBytes, 3) : 1;
  stats.warnings = warnings.length;
  const { started, parent } = facts;
  const header: ManifestHeader = {
    format: MANIFEST_FORMAT,
    version: queue.holdsExtents ? EXTENTS_MANIFEST_VERSION : SEGMENTED_MANIFEST_VERSION,
    id: facts.id,
    time: started.toISOString(),
    endTime: '',
    kind: parent || facts.found ? 'incremental' : 'full',
    ...(parent
      ? { parent: parent.id, chain: (parent.chain ?? 0) + 1, chainStart: parent.chainStart ?? parent.time }
      : { chain: 0, chainStart: started.toISOString() }),
    host: facts.host,
    sources: facts.sources,
    tags: facts.tags,
    toolVersion: VERSION,
    // The level used, even when defaulted: the default may change between versions.
    options: {
      codec: facts.codec,
      level: effectiveLevel(facts.codec, facts.level),
      frameSize: facts.frameSize,
      excludes: facts.excludes,
      xattrs: facts.xattrs,
    },
    stats,
    warnings: warnings.slice(0, MAX_HEADER_WARNINGS),
  };
  stats.durationMs = Math.round(performance.now() - t0);
  // The start plus the time it took: a backup given its start time (startedAt) ends after it,
  // not at the wall clock's now, which can be days later for a backdated one.
  header.endTime = new Date(started.getTime() + stats.durationMs).toISOString();
  const segments = queue.entries;
  const head = settleManifestHead(header, archives.archives, archiveBytes + segments.bytesWritten, (len) => repo.manifestSize(len), {
    refs: segments.refs,
    layers: segments.layers,
    bytes: segments.bytesWritten,
  });
  return { header, manifest: repo.encodeManifest(facts.id, head) };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * The create-only PUT of a manifest: the moment the backup comes to exist. Its answer can be
 * lost after S3 stored it (a reset, a timeout), and the SDK's retries then get 412 (it is
 * there now), 503, or lose their answers too: so any failure is settled by reading the object
 * back. Ours (the same size and the same first bytes: the head frame holds this run's id, end
 * time, stats and archive hashes) means committed; absent means not; and when it cannot be
 * read either, the error says the outcome is unknown rather than guess.
 */
export async function commitManifest(store: Store, key: string, body: Buffer, opts: Omit<PutOptions, 'createOnly'>): Promise<void> {
  let failure: unknown;
  try {
    await store.put(key, body, { ...opts, createOnly: true });
    return;
  } catch (e) {
    failure = e;
  }
  let found: 'ours' | 'absent' | 'another';
  try {
    found = await readBack(store, key, body);
  } catch (e) {
    throw new S3BackupError(
      `the manifest ${store.location}/${key} may or may not have been written: its write failed (${errText(failure)}) and reading it back failed too (${errText(e)})`,
      {
        cause: failure,
        hint: 'once the repository is reachable, "s3backup list" shows whether this backup exists; if it does not, its archives are left for "s3backup prune"',
      },
    );
  }
  if (found === 'ours') return;
  if (found === 'another')
    throw new S3BackupError(`${store.location}/${key} exists but is not the manifest this backup wrote`, { cause: failure });
  throw failure;
}

async function readBack(store: Store, key: string, body: Buffer): Promise<'ours' | 'absent' | 'another'> {
  const info = await store.head(key);
  if (!info) return 'absent';
  if (info.size !== body.length) return 'another';
  const n = Math.min(body.length, 64 << 10);
  const start = await getBuffer(store, key, { start: 0, end: n });
  return start.equals(body.subarray(0, n)) ? 'ours' : 'another';
}
