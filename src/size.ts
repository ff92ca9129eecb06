import { UsageError } from './errors.ts';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * A byte count as people write it: 123, "512MiB", "64GiB", "1.5T", "100 MB". Units are binary
 * (K, M, G, T; with or without "iB"/"B": storage sizes here are all powers of two).
 */
export function parseByteSize(v: string | number, what: string, min: number, max: number): number {
  let n: number;
  if (typeof v === 'number') n = v;
  else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(v);
    if (!m) throw new UsageError(`${what} must be a size such as 64GiB, 512MiB or a number of bytes, not ${JSON.stringify(v)}`);
    n = Math.round(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  }
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${what} must be from ${sizeText(min)} to ${sizeText(max)}, not ${typeof v === 'string' ? v : `${v} bytes`}`);
  }
  return n;
}

function sizeText(n: number): string {
  for (const [u, f] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const)
    if (n >= f && n % f === 0) return `${n / f} ${u}`;
  return `${n} bytes`;
}

const DURATION_UNITS: Record<string, number> = { w: 7 * 86_400_000, d: 86_400_000, h: 3_600_000, min: 60_000, s: 1000 };

/**
 * A duration in milliseconds as people write it: "0", or numbers with units w, d, h, min, s
 * ("6h", "90min", "1d12h", "30s"); a plain number is seconds. "m" is refused as ambiguous
 * (keep-within uses it for months).
 */
export function parseDuration(v: string | number, what: string): number {
  if (typeof v === 'number') {
    if (!(Number.isFinite(v) && v >= 0)) throw new UsageError(`${what} must be 0 or more seconds, not ${v}`);
    return Math.round(v * 1000);
  }
  const text = String(v).trim();
  if (text === '0') return 0;
  if (!/^(\d+(w|d|h|min|s))+$/.test(text)) {
    throw new UsageError(`${what}: ${JSON.stringify(v)} is not a duration`, {
      hint: /^\d+m$/.test(text)
        ? `write ${text.slice(0, -1)}min for minutes`
        : 'write it as numbers with units w, d, h, min, s: 6h, 90min, 1d, 30s (or 0)',
    });
  }
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)(w|d|h|min|s)/g)) ms += Number(n) * DURATION_UNITS[unit!]!;
  return ms;
}

/** parseDuration for a bound that must be more than 0 (a timeout). */
export function parsePositiveDuration(v: string | number, what: string): number {
  const ms = parseDuration(v, what);
  if (ms <= 0) throw new UsageError(`${what} must be more than 0, not ${JSON.stringify(v)}`, { hint: 'e.g. 90s or 10min' });
  return ms;
}

/** A whole number from min to max given as text (a flag), else a usage error naming it (`what`). */
export function parseWholeNumber(v: string, what: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${what} must be a whole number from ${min} to ${max}, not ${v}`);
  return n;
}

/** 1 TiB/s: a limit above any link, refused past it as a likely slip (a rate given in bytes). */
const MAX_LIMIT_KIBPS = 2 ** 30;

/** A bandwidth limit in KiB/s (--limit-upload, --limit-download): a whole number from 1 to 2^30. */
export function parseLimit(v: string | number, what: string): number {
  return parseWholeNumber(String(v).trim(), what, 1, MAX_LIMIT_KIBPS);
}
