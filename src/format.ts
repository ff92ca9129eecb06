/** Human-readable sizes, durations and tables for terminal output. */

export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  const rs = Math.round(s - m * 60);
  if (m < 60) return `${m}m${String(rs).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return `${h}h${String(m - h * 60).padStart(2, '0')}m`;
}

export function rate(bytesCount: number, ms: number): string {
  return ms > 0 ? `${bytes((bytesCount * 1000) / ms)}/s` : '-';
}

/** Left-aligned text columns, right-aligned where `right[i]`. */
export function table(head: string[], rows: string[][], right: boolean[] = []): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n');
}

/**
 * The summary's line about what a backup left out (undefined when nothing): entries not backed
 * up, files that changed while being read; each is also a warning, named in `where`. With
 * dryRun, what a backup would leave out.
 */
export function leftOutLine(skipped: number, changedWhileRead: number, where: string, dryRun = false): string | undefined {
  const parts: string[] = [];
  if (skipped > 0) parts.push(`${skipped} entr${skipped === 1 ? 'y' : 'ies'} ${dryRun ? 'would not be' : 'not'} backed up`);
  if (changedWhileRead > 0)
    parts.push(`${changedWhileRead} file${changedWhileRead === 1 ? '' : 's'} changed while being read (stored as read)`);
  return parts.length ? `${parts.join(', ')}: each named in the warnings${where ? ` and in ${where}` : ''}` : undefined;
}
