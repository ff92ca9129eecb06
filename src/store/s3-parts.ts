// Multipart part sizing for S3 uploads: plain arithmetic, apart from the SDK, so that the cost
// model (which prices the uploads) can use it without loading the AWS SDK.

const MiB = 1024 * 1024;
/** S3's limits on multipart uploads: parts of at least 5 MiB (but the last), at most 10,000 parts. */
export const MIN_PART_SIZE = 5 * MiB;
const MAX_PARTS = 10_000;
/**
 * Default part size. 8 MiB × 4 in flight keeps an upload's buffers at 32 MiB (16 MiB parts made
 * an S3 backup's peak RSS ~50 MB higher, at the same speed on the bench tree). Archives are at
 * most 64 GiB of tar (backup's archive size), well within 9,500 parts of 8 MiB; larger objects
 * get larger parts from their size hint (uploadShape).
 */
export const DEFAULT_PART_SIZE = 8 * MiB;

/**
 * Part size and parallel parts for a stream put: the configured ones, unless the size hint needs
 * larger parts to stay under 10,000 (a margin of 500 for the hint being an estimate); then
 * fewer in flight (at least 2), so an upload's buffers stay near partSize × queueSize.
 */
export function uploadShape(sizeHint: number | undefined, partSize: number, queueSize: number): { partSize: number; queueSize: number } {
  if (sizeHint === undefined || sizeHint <= partSize * (MAX_PARTS - 500)) return { partSize, queueSize };
  const larger = Math.ceil(sizeHint / (MAX_PARTS - 500) / MiB) * MiB;
  return { partSize: larger, queueSize: Math.min(queueSize, Math.max(2, Math.floor((partSize * queueSize) / larger))) };
}
