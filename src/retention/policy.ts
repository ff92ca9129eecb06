import { UsageError } from '../errors.ts';
import { describeGroup, groupKey } from '../repo/groups.ts';

/**
 * Retention policies (restic's `forget` semantics), as a pure function of a list of backups.
 *
 * Backups are grouped by host and source set (src/repo/groups.ts); each group gets the policy on
 * its own. Within a group, newest first:
 *   last N                  the N newest backups
 *   hourly/daily/weekly/monthly/yearly N
 *                           the newest backup of each of the N most recent hours / days /
 *                           ISO weeks / months / years (UTC) that have a backup
 *   within D                every backup newer than (newest backup of the group − D)
 *   tags [T…]               every backup carrying the tag (a "a,b" entry: carrying all of them)
 * A backup is kept if any rule keeps it; the reasons say which ("last 5", "daily 2026-11-20",
 * "weekly 2026-W47", "within 30d", "tag release"). With no rule configured the default is
 * keep-last 5. A policy that would remove every backup of a group is refused unless allowEmpty.
 */

export interface RetentionBackup {
  id: string;
  time: Date;
  host: string;
  /** Absolute source paths (order does not matter). */
  sources: string[];
  tags: string[];
}

export interface KeepPolicy {
  last?: number | undefined;
  hourly?: number | undefined;
  daily?: number | undefined;
  weekly?: number | undefined;
  monthly?: number | undefined;
  yearly?: number | undefined;
  /** Duration, e.g. "30d", "2w", "1y6m", "12h" (y years, m or M months, w weeks, d days, h hours). */
  within?: string | undefined;
  /** Keep backups with this tag; "a,b" = with both a and b. */
  tags?: string[] | undefined;
}

export const DEFAULT_POLICY: Readonly<KeepPolicy> = Object.freeze({ last: 5 });

export interface RetentionDecision {
  backup: RetentionBackup;
  keep: boolean;
  /** Why it is kept (empty when removed). */
  reasons: string[];
  /** Group key (groupKey of src/repo/groups.ts). */
  group: string;
}

export interface RetentionGroup {
  key: string;
  host: string;
  /** Sorted source paths. */
  sources: string[];
  /** Oldest first. */
  decisions: RetentionDecision[];
  kept: number;
  removed: number;
}

export interface RetentionResult {
  /** The policy applied (DEFAULT_POLICY when the given one had no rule). */
  policy: KeepPolicy;
  defaulted: boolean;
  /** One per input backup, in input order. */
  decisions: RetentionDecision[];
  /** Groups in order of their oldest backup. */
  groups: RetentionGroup[];
}

const COUNT_RULES = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
type CountRule = (typeof COUNT_RULES)[number];

/** True if the policy sets no rule at all (then the default applies). */
export function isEmptyPolicy(p: KeepPolicy | undefined): boolean {
  if (!p) return true;
  return COUNT_RULES.every((k) => p[k] === undefined) && p.within === undefined && !(p.tags && p.tags.length > 0);
}

/** "keep-last 5, keep-daily 7, keep-within 30d, keep-tag release" */
export function describePolicy(p: KeepPolicy): string {
  const parts: string[] = [];
  for (const k of COUNT_RULES) if (p[k] !== undefined) parts.push(`keep-${k} ${p[k]}`);
  if (p.within !== undefined) parts.push(`keep-within ${p.within}`);
  for (const t of p.tags ?? []) parts.push(`keep-tag ${t}`);
  return parts.length ? parts.join(', ') : 'nothing';
}

export interface CalendarDuration {
  years: number;
  months: number;
  days: number;
  hours: number;
}

const DURATION_RE = /^(\d+[yMmwdh])+$/;

/**
 * Parse a keep-within duration: numbers with units y (years), m or M (months), w (weeks),
 * d (days), h (hours), e.g. "30d", "2w", "1y6m", "12h". As in restic, "m" is months.
 */
export function parseCalendarDuration(s: string, what = 'keep-within'): CalendarDuration {
  if (typeof s !== 'string' || !DURATION_RE.test(s)) {
    throw new UsageError(`${what}: ${JSON.stringify(s)} is not a duration`, {
      hint: 'write it as numbers with units y (years), m (months), w (weeks), d (days), h (hours): 30d, 2w, 1y6m, 12h',
    });
  }
  const d: CalendarDuration = { years: 0, months: 0, days: 0, hours: 0 };
  for (const [, n, unit] of s.matchAll(/(\d+)([yMmwdh])/g)) {
    const v = Number(n);
    if (unit === 'y') d.years += v;
    else if (unit === 'm' || unit === 'M') d.months += v;
    else if (unit === 'w') d.days += 7 * v;
    else if (unit === 'd') d.days += v;
    else d.hours += v;
  }
  return d;
}

/** t minus the duration, calendar-aware in UTC (Go's AddDate then Add, as restic does). */
export function subtractDuration(t: Date, d: CalendarDuration): Date {
  const r = new Date(t.getTime());
  r.setUTCFullYear(r.getUTCFullYear() - d.years, r.getUTCMonth() - d.months, r.getUTCDate() - d.days);
  return new Date(r.getTime() - d.hours * 3_600_000);
}

/** ISO 8601 week of a time, in UTC: { year, week }. */
export function isoWeek(t: Date): { year: number; week: number } {
  const day = Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate());
  const dow = (new Date(day).getUTCDay() + 6) % 7; // Monday = 0
  const thursday = new Date(day + (3 - dow) * 86_400_000);
  const year = thursday.getUTCFullYear();
  const jan1 = Date.UTC(year, 0, 1);
  const week = 1 + Math.floor((thursday.getTime() - jan1) / (7 * 86_400_000));
  return { year, week };
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** The bucket label of a time for each calendar rule (also the text of the reason). */
function bucketOf(rule: Exclude<CountRule, 'last'>, t: Date): string {
  const y = t.getUTCFullYear();
  switch (rule) {
    case 'yearly':
      return String(y);
    case 'monthly':
      return `${y}-${pad(t.getUTCMonth() + 1)}`;
    case 'weekly': {
      const w = isoWeek(t);
      return `${w.year}-W${pad(w.week)}`;
    }
    case 'daily':
      return `${y}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
    case 'hourly':
      return `${y}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}T${pad(t.getUTCHours())}`;
  }
}

function validate(p: KeepPolicy): void {
  for (const k of COUNT_RULES) {
    const v = p[k];
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) {
      throw new UsageError(`keep-${k} must be a whole number of 0 or more, not ${JSON.stringify(v)}`);
    }
  }
  if (p.within !== undefined) parseCalendarDuration(p.within);
  for (const t of p.tags ?? []) {
    if (typeof t !== 'string' || t.split(',').some((x) => x === '')) throw new UsageError(`keep-tag: ${JSON.stringify(t)} is not a tag`);
  }
}

/**
 * Decide, for each backup, whether the policy keeps it and why. Throws a UsageError if the
 * policy would remove every backup of some group, unless allowEmpty.
 */
export function applyPolicy(
  backups: readonly RetentionBackup[],
  policy: KeepPolicy | undefined,
  opts: { allowEmpty?: boolean } = {},
): RetentionResult {
  const defaulted = isEmptyPolicy(policy);
  const p: KeepPolicy = defaulted ? { ...DEFAULT_POLICY } : { ...policy };
  validate(p);
  const within = p.within !== undefined ? parseCalendarDuration(p.within) : undefined;
  const tagSets = (p.tags ?? []).map((t) => t.split(','));

  const decisions = new Map<RetentionBackup, RetentionDecision>();
  const byGroup = new Map<string, RetentionBackup[]>();
  for (const b of backups) {
    if (!(b.time instanceof Date) || Number.isNaN(b.time.getTime())) throw new TypeError(`backup ${b.id} has no valid time`);
    const k = groupKey(b);
    let g = byGroup.get(k);
    if (!g) byGroup.set(k, (g = []));
    g.push(b);
    decisions.set(b, { backup: b, keep: false, reasons: [], group: k });
  }

  const groups: RetentionGroup[] = [];
  for (const [key, members] of byGroup) {
    // Newest first; ties broken by id so the result never depends on the input order.
    const newestFirst = [...members].sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
    const cutoff = within ? subtractDuration(newestFirst[0]!.time, within) : undefined;
    const remaining = new Map<CountRule, number>();
    const lastBucket = new Map<CountRule, string>();
    for (const r of COUNT_RULES) if (p[r]) remaining.set(r, p[r]!);
    for (const b of newestFirst) {
      const d = decisions.get(b)!;
      for (const r of COUNT_RULES) {
        const left = remaining.get(r) ?? 0;
        if (left <= 0) continue;
        if (r === 'last') {
          d.reasons.push(`last ${p.last}`);
          remaining.set(r, left - 1);
          continue;
        }
        const bucket = bucketOf(r, b.time);
        if (bucket !== lastBucket.get(r)) {
          // The newest backup of a bucket not seen yet.
          lastBucket.set(r, bucket);
          remaining.set(r, left - 1);
          d.reasons.push(`${r} ${bucket}`);
        }
      }
      if (cutoff && b.time.getTime() > cutoff.getTime()) d.reasons.push(`within ${p.within}`);
      for (const set of tagSets) if (set.every((t) => b.tags.includes(t))) d.reasons.push(`tag ${set.join(',')}`);
      d.keep = d.reasons.length > 0;
    }
    const oldestFirst = [...newestFirst].reverse().map((b) => decisions.get(b)!);
    const kept = oldestFirst.filter((d) => d.keep).length;
    groups.push({
      key,
      host: members[0]!.host,
      sources: [...members[0]!.sources].sort(),
      decisions: oldestFirst,
      kept,
      removed: oldestFirst.length - kept,
    });
  }
  groups.sort((a, b) => a.decisions[0]!.backup.time.getTime() - b.decisions[0]!.backup.time.getTime() || (a.key < b.key ? -1 : 1));

  if (!opts.allowEmpty) {
    const emptied = groups.filter((g) => g.decisions.length > 0 && g.kept === 0);
    if (emptied.length > 0) {
      const names = emptied.map((g) => `${describeGroup(g)} (${g.decisions.length} backup${g.decisions.length === 1 ? '' : 's'})`);
      throw new UsageError(
        `the retention policy (${describePolicy(p)}) would remove every backup of ${names.slice(0, 5).join('; ')}${names.length > 5 ? `; and ${names.length - 5} more group(s)` : ''}`,
        { hint: 'keep something (e.g. --keep-last 1), or add --allow-empty if you really mean to remove them all' },
      );
    }
  }
  return { policy: p, defaulted, decisions: backups.map((b) => decisions.get(b)!), groups };
}
