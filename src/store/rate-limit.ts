// Bandwidth limits (--limit-upload / --limit-download): a token bucket per direction, applied
// where bytes enter and leave the store, so it holds for every backend and every upload path
// (single PUT, multipart parts, local files) without knowing how they move the bytes.
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { DelegatingStore } from './delegating.ts';
import type { ByteRange, PutOptions, Store } from './store.ts';

/** Upload and download limits in KiB/s (1 KiB = 1024 bytes); undefined: unlimited. */
export interface TransferLimits {
  uploadKiBps?: number | undefined;
  downloadKiBps?: number | undefined;
}

/**
 * A token bucket that saves up at most one piece (a tenth of a second's worth): tokens refill at
 * `bytesPerSecond` up to that, and a taker goes into debt and waits until it is paid off. An idle
 * period thus earns almost no burst, so the average over a transfer of a few seconds stays within
 * a few percent of the rate (above it by at most the one saved piece), and concurrent takers
 * share it (each waits for the debt of all before it). Lateness of the timers is made up, since
 * the refill counts the time that really passed; the saved piece makes up for the fixed costs of
 * a transfer (opening, the last request, fsync), which would otherwise only slow it.
 */
export class TokenBucket {
  readonly bytesPerSecond: number;
  private balance: number;
  private refilledAt = performance.now();

  constructor(bytesPerSecond: number) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`a rate limit must be positive, not ${bytesPerSecond}`);
    this.bytesPerSecond = bytesPerSecond;
    this.balance = this.piece;
  }

  /** Resolves once `bytes` may pass. */
  async take(bytes: number): Promise<void> {
    const now = performance.now();
    this.balance = Math.min(this.piece, this.balance + ((now - this.refilledAt) / 1000) * this.bytesPerSecond);
    this.refilledAt = now;
    this.balance -= bytes;
    if (this.balance < 0) await sleep((-this.balance / this.bytesPerSecond) * 1000);
  }

  /**
   * The largest piece handed out at once: about a tenth of a second's worth, so a big chunk
   * (a 4 MiB frame) moves as a steady trickle and not as one burst after a long pause.
   */
  get piece(): number {
    return Math.max(1024, Math.floor(this.bytesPerSecond / 10));
  }
}

/** `body`'s bytes, in pieces, each let through by `bucket`; destroying the result destroys `body`. */
export function throttled(body: Readable, bucket: TokenBucket): Readable {
  async function* pieces(): AsyncGenerator<Buffer> {
    for await (const chunk of body) {
      const c = chunk as Buffer;
      for (let at = 0; at < c.length; at += bucket.piece) {
        const piece = c.subarray(at, at + bucket.piece);
        await bucket.take(piece.length);
        yield piece;
      }
    }
  }
  // Bytes, not objects, with a small buffer: what is read ahead has already been paid for.
  const out = Readable.from(pieces(), { objectMode: false, highWaterMark: bucket.piece });
  out.once('close', () => body.destroy());
  return out;
}

/**
 * A store whose puts and gets move at most at the given rates (whole objects and ranges alike;
 * listings, heads and deletes are not counted). One bucket per direction is shared by every
 * transfer of the store, so parallel parts or reads share the limit.
 */
export class RateLimitedStore extends DelegatingStore {
  private readonly upload: TokenBucket | undefined;
  private readonly download: TokenBucket | undefined;

  constructor(inner: Store, limits: TransferLimits) {
    super(inner);
    this.upload = limits.uploadKiBps ? new TokenBucket(limits.uploadKiBps * 1024) : undefined;
    this.download = limits.downloadKiBps ? new TokenBucket(limits.downloadKiBps * 1024) : undefined;
  }

  override async put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    const bucket = this.upload;
    if (!bucket) return this.inner.put(key, body, opts);
    if (!Buffer.isBuffer(body)) return this.inner.put(key, throttled(body, bucket), opts);
    // A Buffer body stays one (create-only puts need it): its bytes are paid for before it goes.
    for (let at = 0; at < body.length; at += bucket.piece) await bucket.take(Math.min(bucket.piece, body.length - at));
    return this.inner.put(key, body, opts);
  }

  override async get(key: string, range?: ByteRange): Promise<Readable> {
    const body = await this.inner.get(key, range);
    return this.download ? throttled(body, this.download) : body;
  }
}

/** The store with the limits applied, or the store itself when there are none. */
export function withTransferLimits(store: Store, limits: TransferLimits | undefined): Store {
  return limits?.uploadKiBps || limits?.downloadKiBps ? new RateLimitedStore(store, limits) : store;
}
