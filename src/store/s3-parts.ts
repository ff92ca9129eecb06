// Multipart part sizing for S3 uploads: plain arithmetic, apart from the SDK, so that the cost
// model (which prices the uploads) can use it without loading the AWS SDK.

const MiB = 1024 * 1024;
/** S3's limits on multipart uploads: parts of at least 5 MiB (but the last), at most 10,000 parts. */
export const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
/**
 * Default part size: larger parts raise an S3 backup's peak RSS for no speed (docs/performance.md,
 * "Why the defaults are what they are"). Archives are at most 64 GiB of tar (backup's archive size), well within
 * 9,500 parts of 8 MiB; larger objects get larger parts from their size hint (uploadShape).
 */
export const DEFAULT_PART_SIZE = 8 * MiB;
/**
 * Default parts in flight per stream put. An upload holds (queueSize + 1) part buffers, the
 * parts in flight and the one filling (StreamUpload, s3-multipart.ts): 24 MiB at 8 MiB × 2.
 * More in flight cost peak RSS for no speed to a server on the same network
 * (docs/performance.md, "Memory: where it goes").
 */
export const DEFAULT_QUEUE_SIZE = 2;

/**
 * Parts that a stream put makes at S3's minimum size before its parts grow to partSize: an
 * archive of up to ~4.9 GiB (most of them) then needs (queueSize + 1) buffers of 5 MiB, not of
 * 8 (15 MiB instead of 24 at 2 in flight), and one of 64 GiB still fits in 9,500 parts
 * (1,000 × 5 MiB + 8,500 × 8 MiB = 71 GiB).
 */
const SMALL_PARTS = 1000;

/** How a stream put cuts its parts: the first `smallParts` of MIN_PART_SIZE, then `partSize`. */
export interface UploadShape {
  partSize: number;
  queueSize: number;
  smallParts: number;
}

/** The size of part `partNumber` (from 1). */
export function partSizeAt(shape: UploadShape, partNumber: number): number {
  return partNumber <= shape.smallParts ? MIN_PART_SIZE : shape.partSize;
}

/**
 * Part sizes and parallel parts for a stream put: small parts first, then the configured size
 * (see SMALL_PARTS), when the size hint fits in 9,500 parts that way (a margin of 500 for the
 * hint being an estimate); else the configured size throughout if that fits; else larger parts
 * and fewer in flight (at least 2), so an upload's buffers stay near partSize × queueSize.
 */
export function uploadShape(sizeHint: number | undefined, partSize: number, queueSize: number): UploadShape {
  const parts = MAX_PARTS - 500;
  const smallParts = partSize > MIN_PART_SIZE ? SMALL_PARTS : 0;
  if (sizeHint === undefined || sizeHint <= smallParts * MIN_PART_SIZE + (parts - smallParts) * partSize) {
    return { partSize, queueSize, smallParts };
  }
  if (sizeHint <= partSize * parts) return { partSize, queueSize, smallParts: 0 };
  const larger = Math.ceil(sizeHint / parts / MiB) * MiB;
  return { partSize: larger, queueSize: Math.min(queueSize, Math.max(2, Math.floor((partSize * queueSize) / larger))), smallParts: 0 };
}

/** Requests of one stream put of `size` bytes of this shape: one PUT, or create + parts + complete. */
export function uploadRequestsOf(size: number, shape: UploadShape): number {
  if (size <= partSizeAt(shape, 1)) return 1;
  const small = shape.smallParts * MIN_PART_SIZE;
  const parts = size <= small ? Math.ceil(size / MIN_PART_SIZE) : shape.smallParts + Math.ceil((size - small) / shape.partSize);
  return parts + 2;
}
