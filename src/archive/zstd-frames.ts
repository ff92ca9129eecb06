/**
 * Where zstd frames end (RFC 8878), read from block headers only. Node's zstd decoder stops at
 * the end of the first frame of a stream, so a reader of concatenated frames must split them
 * itself; the zstd CLI reads them all as one stream.
 */

export const ZSTD_MAGIC = 0xfd2fb528;

/** Reads `length` bytes at `position` (fewer only at the end of the data). */
export type ReadAt = (position: number, length: number) => Buffer;

export class ZstdFormatError extends Error {}

/** The offset just past the zstd (or skippable) frame that starts at `start`. */
export function zstdFrameEnd(readAt: ReadAt, start: number): number {
  const need = (pos: number, len: number): Buffer => {
    const b = readAt(pos, len);
    if (b.length < len) throw new ZstdFormatError(`zstd data ends inside a frame (at byte ${pos})`);
    return b;
  };
  const magic = need(start, 4).readUInt32LE(0);
  if ((magic & 0xfffffff0) === 0x184d2a50) {
    // Skippable frame: magic, 4-byte size, data.
    return start + 8 + need(start + 4, 4).readUInt32LE(0);
  }
  if (magic !== ZSTD_MAGIC) throw new ZstdFormatError(`no zstd frame at byte ${start}`);
  const fhd = need(start + 4, 1)[0]!;
  const singleSegment = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const didSize = [0, 1, 2, 4][fhd & 3]!;
  const fcsFlag = fhd >> 6;
  const fcsSize = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag]!;
  let pos = start + 5 + (singleSegment ? 0 : 1) + didSize + fcsSize;
  for (;;) {
    const h = need(pos, 3);
    const header = h[0]! | (h[1]! << 8) | (h[2]! << 16);
    const last = header & 1;
    const type = (header >> 1) & 3;
    const size = header >>> 3;
    if (type === 3) throw new ZstdFormatError(`reserved zstd block type at byte ${pos}`);
    pos += 3 + (type === 1 ? 1 : size);
    if (last) break;
  }
  return pos + (checksum ? 4 : 0);
}

/** [start, end) of every frame in data of the given length. */
export function zstdFrames(readAt: ReadAt, length: number): [number, number][] {
  const out: [number, number][] = [];
  let pos = 0;
  while (pos < length) {
    const end = zstdFrameEnd(readAt, pos);
    if (end > length) throw new ZstdFormatError(`zstd data ends inside a frame (frame at byte ${pos})`);
    out.push([pos, end]);
    pos = end;
  }
  return out;
}

export function bufferReader(buf: Buffer): ReadAt {
  return (position, length) => buf.subarray(position, position + length);
}
