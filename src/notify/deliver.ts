import { redact } from './settings.ts';

/**
 * Delivery with a timeout per attempt and retries with backoff for transient errors, for
 * notification channels and metrics sinks alike. Never throws: the result says what happened,
 * with the error text redacted (webhook URLs and SMTP passwords never reach a log).
 */

export interface DeliveryResult {
  /** Channel or sink name: sns, slack, webhook, email, cloudwatch, prometheus. */
  channel: string;
  ok: boolean;
  attempts: number;
  error?: string;
}

export interface DeliveryOptions {
  timeoutMs: number;
  retries: number;
  backoffMs: number;
  /** Strings to cut out of error messages. */
  secrets: readonly string[];
}

/** An error that says whether trying again may help. */
export class DeliveryError extends Error {
  readonly transient: boolean;
  constructor(message: string, transient: boolean, opts?: { cause?: unknown }) {
    super(message, opts);
    this.transient = transient;
  }
}

const NETWORK =
  /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ESOCKET|ECONNECTION|EDNS|UND_ERR_\w+)$/;

/** Network failures, timeouts, HTTP 5xx/429/408 and AWS throttling are worth another try. */
export function isTransient(e: unknown): boolean {
  if (e instanceof DeliveryError) return e.transient;
  const err = e as {
    name?: string;
    code?: string;
    $retryable?: unknown;
    $metadata?: { httpStatusCode?: number };
    cause?: unknown;
    responseCode?: number;
  };
  if (!err || typeof err !== 'object') return false;
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return true;
  if (err.$retryable) return true;
  const status = err.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500 || status === 429 || status === 408 || /Throttl/i.test(err.name ?? '');
  if (typeof err.responseCode === 'number') return err.responseCode >= 400 && err.responseCode < 500; // SMTP 4xx = try later
  if (err.code && NETWORK.test(err.code)) return true;
  if (err.cause && err.cause !== e) return isTransient(err.cause);
  return false;
}

/** One line about an error: its message, and the network code under a generic "fetch failed". */
export function describe(e: unknown): string {
  const err = e as {
    message?: string;
    code?: string;
    cause?: { code?: string; message?: string };
    $metadata?: { httpStatusCode?: number };
    name?: string;
  };
  let msg = err?.message ?? String(e);
  if (err?.name === 'TimeoutError') msg = 'timed out';
  if (err?.cause?.code && !msg.includes(err.cause.code)) msg += ` (${err.cause.code})`;
  else if (err?.code && !msg.includes(err.code)) msg += ` (${err.code})`;
  const status = err?.$metadata?.httpStatusCode;
  if (status && !msg.includes(String(status))) msg += ` (HTTP ${status})`;
  return msg.replace(/\s+/g, ' ').trim().slice(0, 500);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export async function deliver(
  channel: string,
  attempt: (signal: AbortSignal) => Promise<void>,
  o: DeliveryOptions,
): Promise<DeliveryResult> {
  let attempts = 0;
  for (;;) {
    attempts++;
    const signal = AbortSignal.timeout(o.timeoutMs);
    try {
      // The race makes the timeout hold even for a client that ignores the signal.
      await Promise.race([
        attempt(signal),
        new Promise<never>((_, reject) =>
          signal.addEventListener('abort', () => reject(new DeliveryError(`timed out after ${o.timeoutMs / 1000} s`, true))),
        ),
      ]);
      return { channel, ok: true, attempts };
    } catch (e) {
      if (attempts > o.retries || !isTransient(e)) {
        const why = describe(e) + (attempts > 1 ? ` (after ${attempts} attempts)` : '');
        return { channel, ok: false, attempts, error: redact(why, o.secrets) };
      }
      // Exponential backoff with jitter: 0.5 s, 1 s, 2 s … ±25 %.
      await sleep(o.backoffMs * 2 ** (attempts - 1) * (0.75 + Math.random() * 0.5));
    }
  }
}
