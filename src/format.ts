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

/** The terminal width tables of groups (list, history, forget) fit in: long fields are cut with "…". */
export const TABLE_WIDTH = 120;

/** s cut to at most `width` characters, ending in "…" when cut. */
export function truncate(s: string, width: number): string {
  if (s.length <= width) return s;
  return width <= 1 ? '…'.slice(0, width) : `${s.slice(0, width - 1)}…`;
}

/**
 * s cut to at most `width` characters in the middle: its first third and its end, joined by
 * "…". For a group ("host: /srv/a, /srv/b") the host's start and the last source's end stay.
 */
export function truncateMiddle(s: string, width: number): string {
  if (s.length <= width) return s;
  if (width < 8) return truncate(s, width);
  const head = Math.floor((width - 1) / 3);
  return `${s.slice(0, head)}…${s.slice(s.length - (width - 1 - head))}`;
}

/**
 * A table no wider than `maxWidth` (when it can be): the `flex` columns (long texts such as
 * a group or an error) give up width, the widest first but none below `minFlex`, and their
 * cells are cut with "…": at the end, or in the middle where `middle(row, column)` says so.
 */
export function fitTable(
  head: string[],
  rows: string[][],
  right: boolean[],
  opts: { maxWidth: number; flex: number[]; minFlex?: number; middle?: (row: number, column: number) => boolean },
): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const minFlex = opts.minFlex ?? 12;
  let total = widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
  while (total > opts.maxWidth) {
    const widest = opts.flex.filter((i) => widths[i]! > Math.max(minFlex, head[i]!.length)).sort((a, b) => widths[b]! - widths[a]!)[0];
    if (widest === undefined) break;
    widths[widest]!--;
    total--;
  }
  return table(
    head,
    rows.map((r, n) => r.map((c, i) => (opts.middle?.(n, i) ? truncateMiddle(c, widths[i]!) : truncate(c, widths[i]!)))),
    right,
  );
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
