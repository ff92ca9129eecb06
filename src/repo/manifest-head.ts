import { IntegrityError } from '../errors.ts';
import { bufferReader, ZSTD_MAGIC, zstdFrameEnd } from '../archive/zstd-frames.ts';
import { getBuffer } from '../store/store.ts';
import {
  type ArchiveRef,
  headFrameText,
  MAX_MANIFEST_HEAD,
  type ManifestHeader,
  parseArchivesLine,
  parseHeaderLine,
  parseSegmentsLine,
  SEGMENTED_MANIFEST_VERSION,
  type SegmentRef,
} from './manifest.ts';
import type { Repository } from './repository.ts';

// Reading what a manifest references, from its head frame alone: prune, verify and cost need
// the header and the archives line of every backup, not its entries.

export interface ManifestHead {
  header: ManifestHeader;
  archives: ArchiveRef[];
  /** Version 3: the entry segments (which prune keeps as it keeps archives). */
  segments?: SegmentRef[];
  /** …and the layers over them. */
  layers?: SegmentRef[][];
}

/** The ids of every entry segment a manifest lists: its base's and its layers'. */
export function segmentIdsOf(head: ManifestHead): string[] {
  return [...(head.segments ?? []), ...(head.layers ?? []).flat()].map(([id]) => id);
}

/**
 * The header and archives line of a manifest, from its head frame only (docs/format.md: the
 * first zstd frame holds lines 1 and 2): one ranged GET, grown only if the frame is larger.
 * A manifest whose first frame does not hold both lines is read whole.
 */
export async function readManifestHead(repo: Repository, id: string): Promise<ManifestHead> {
  const key = repo.manifestKey(id);
  const where = `${repo.location}/${key}`;
  if (repo.encrypted) {
    const text = headFrameText(await repo.sealedHeadFrame(id), where);
    if (text === undefined)
      throw new IntegrityError(`manifest ${where}: its head segment decompresses to more than ${MAX_MANIFEST_HEAD} bytes (refused)`);
    const head = parseHeadLines(text, where);
    if (!head) throw new IntegrityError(`manifest ${where} is corrupt (its head segment lacks the archive list)`);
    return head;
  }
  let want = 256 << 10;
  for (;;) {
    const buf = await getBuffer(repo.store, key, { start: 0, end: want });
    const whole = buf.length < want;
    if (buf.length < 4) throw new IntegrityError(`manifest ${where} is ${buf.length === 0 ? 'empty' : 'truncated'}`);
    if (buf.readUInt32LE(0) !== ZSTD_MAGIC) throw new IntegrityError(`manifest ${where} is corrupt (not zstd data)`);
    let end: number;
    try {
      end = zstdFrameEnd(bufferReader(buf), 0);
    } catch (e) {
      if (!whole) {
        want *= 4; // the block headers run past what we read
        continue;
      }
      throw new IntegrityError(`manifest ${where} is corrupt: ${(e as Error).message}`);
    }
    if (end > buf.length) {
      if (whole)
        throw new IntegrityError(`manifest ${where} is truncated (its first frame ends at byte ${end}, the object at ${buf.length})`);
      want = end;
      continue;
    }
    // Past MAX_MANIFEST_HEAD (undefined) it is no head frame either.
    const text = headFrameText(buf.subarray(0, end), where);
    const head = text === undefined ? undefined : parseHeadLines(text, where);
    if (head) return head;
    // Not the two-frame layout: read it the long way (validates everything, streaming the entries).
    const m = await repo.loadManifest(id);
    await m.dispose();
    return {
      header: m.header,
      archives: m.archives,
      ...(m.segments ? { segments: [...m.segments.refs], layers: m.segments.layers.map((l) => [...l]) } : {}),
    };
  }
}

/** Header, archives (and segments) from the head frame's text, checked; undefined if it does not hold them all. */
function parseHeadLines(text: string, where: string): ManifestHead | undefined {
  const lines = text.split('\n', 4);
  if (lines.length < 3) return undefined;
  const header = parseHeaderLine(lines[0], where);
  const archives = parseArchivesLine(lines[1], where);
  if (header.version < SEGMENTED_MANIFEST_VERSION) return { header, archives };
  if (lines.length < 4) return undefined;
  const line = parseSegmentsLine(lines[2], where);
  return { header, archives, segments: line.segments, layers: line.layers ?? [] };
}
