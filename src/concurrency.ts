/**
 * `fn` over every item with at most `limit` calls in flight; results in the items' order.
 * Store requests (S3 above all) are latency-bound, so a few in flight go much faster than one
 * at a time, without flooding the endpoint. The first rejection rejects the whole call (calls
 * already started finish on their own; no new ones start).
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  return out;
}
