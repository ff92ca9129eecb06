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
 * Part size and parallel parts for a stream put: the configured ones, unless the size hint needs
 * larger parts to stay under 10,000 (a margin of 500 for the hint being an estimate); then
 * fewer in flight (at least 2), so an upload's buffers stay near partSize × queueSize.
 */
export function uploadShape(sizeHint: number | undefined, partSize: number, queueSize: number): { partSize: number; queueSize: number } {
  if (sizeHint === undefined || sizeHint <= partSize * (MAX_PARTS - 500)) return { partSize, queueSize };
  const larger = Math.ceil(sizeHint / (MAX_PARTS - 500) / MiB) * MiB;
  return { partSize: larger, queueSize: Math.min(queueSize, Math.max(2, Math.floor((partSize * queueSize) / larger))) };
}
