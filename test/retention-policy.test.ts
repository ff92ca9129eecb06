// The retention policy as a table: fixed lists of backup times → exactly the kept set, with the
// reasons, for each rule, combinations, calendar boundaries (UTC days, ISO weeks across years,
// month ends) and the split into groups by host and source set.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../src/errors.ts';
import {
  applyPolicy,
  describePolicy,
  isoWeek,
  type KeepPolicy,
  parseCalendarDuration,
  type RetentionBackup,
} from '../src/retention/policy.ts';

interface Opts {
  host?: string;
  sources?: string[];
  tags?: string[];
}

/** A backup named `id` taken at `iso` (UTC). */
function b(id: string, iso: string, o: Opts = {}): RetentionBackup {
  return { id, time: new Date(iso), host: o.host ?? 'h1', sources: o.sources ?? ['/data'], tags: o.tags ?? [] };
}

/** id → reasons, for every kept backup (removed ones are absent). */
function kept(backups: RetentionBackup[], policy: KeepPolicy | undefined, allowEmpty = false): Record<string, string[]> {
  const r = applyPolicy(backups, policy, { allowEmpty });
  assert.equal(r.decisions.length, backups.length);
  const out: Record<string, string[]> = {};
  for (const d of r.decisions) {
    assert.equal(d.keep, d.reasons.length > 0, `${d.backup.id}: keep iff it has a reason`);
    if (d.keep) out[d.backup.id] = d.reasons;
  }
  return out;
}

interface Case {
  name: string;
  backups: RetentionBackup[];
  policy: KeepPolicy | undefined;
  want: Record<string, string[]>;
}

const hours = [
  b('a', '2026-11-20T09:59:59.999Z'),
  b('b', '2026-11-20T10:05:00Z'),
  b('c', '2026-11-20T10:55:00Z'),
  b('d', '2026-11-20T11:00:00Z'),
  b('e', '2026-11-20T11:30:00Z'),
];

// Several backups a day, a day without any, and both sides of midnight UTC.
const days = [
  b('d1', '2026-11-18T10:00:00Z'),
  b('d1b', '2026-11-18T22:00:00Z'),
  b('d2', '2026-11-19T08:00:00Z'),
  // 2026-11-20: none
  b('d3', '2026-11-21T01:00:00Z'),
  b('d3b', '2026-11-21T23:59:59.999Z'),
  b('d4', '2026-11-22T00:00:00.000Z'),
];

// ISO weeks: 2026-11-22 is a Sunday (W47), 2026-11-23 a Monday (W48).
const weeks = [
  b('w46', '2026-11-15T12:00:00Z'), // Sunday, W46
  b('w47a', '2026-11-16T00:00:00Z'), // Monday, W47
  b('w47b', '2026-11-22T23:59:59Z'), // Sunday, W47
  b('w48a', '2026-11-23T00:00:00Z'), // Monday, W48
  b('w48b', '2026-11-28T09:00:00Z'), // Saturday, W48
];

// Around new year: 2025-12-28 (Sun) is 2025-W52; 2025-12-29 (Mon) and 2026-01-01 (Thu) are
// 2026-W01; 2027-01-01 (Fri) is 2026-W53; 2027-01-04 (Mon) is 2027-W01.
const newYear = [
  b('y1', '2025-12-28T12:00:00Z'),
  b('y2', '2025-12-29T12:00:00Z'),
  b('y3', '2026-01-01T12:00:00Z'),
  b('y4', '2027-01-01T12:00:00Z'),
  b('y5', '2027-01-04T12:00:00Z'),
];

const months = [
  b('m1', '2026-08-31T23:59:59Z'),
  b('m2', '2026-09-01T00:00:00Z'),
  b('m3', '2026-09-15T00:00:00Z'),
  b('m4', '2026-11-02T00:00:00Z'),
  b('m5', '2026-11-30T00:00:00Z'),
];

const years = [
  b('Y1', '2023-06-01T00:00:00Z'),
  b('Y2', '2024-12-31T23:59:59Z'),
  b('Y3', '2025-01-01T00:00:00Z'),
  b('Y4', '2025-07-01T00:00:00Z'),
  b('Y5', '2026-03-01T00:00:00Z'),
];

const within = [
  b('old', '2026-10-01T00:00:00Z'),
  b('edge', '2026-10-27T10:00:00Z'), // exactly 30 days before the newest: not within (restic: strictly newer)
  b('inside', '2026-10-27T10:00:00.001Z'),
  b('mid', '2026-11-12T10:00:00Z'), // exactly 14 days before: not within 2w
  b('recent', '2026-11-25T22:00:01Z'),
  b('newest', '2026-11-26T10:00:00Z'),
];

const tagged = [
  b('t1', '2026-11-01T00:00:00Z', { tags: ['release', 'v1'] }),
  b('t2', '2026-11-02T00:00:00Z', { tags: ['nightly'] }),
  b('t3', '2026-11-03T00:00:00Z', { tags: ['release'] }),
  b('t4', '2026-11-04T00:00:00Z', { tags: ['v1'] }),
  b('t5', '2026-11-05T00:00:00Z'),
];

const cases: Case[] = [
  {
    name: 'keep-last 3: the three newest',
    backups: days,
    policy: { last: 3 },
    want: { d4: ['last 3'], d3b: ['last 3'], d3: ['last 3'] },
  },
  {
    name: 'keep-last more than there are: all',
    backups: days.slice(0, 2),
    policy: { last: 10 },
    want: { d1: ['last 10'], d1b: ['last 10'] },
  },
  {
    name: 'keep-hourly 2: newest of each of the two most recent hours',
    backups: hours,
    policy: { hourly: 2 },
    want: { e: ['hourly 2026-11-20T11'], c: ['hourly 2026-11-20T10'] },
  },
  {
    name: 'keep-hourly 3 reaches back across 10:00 exactly',
    backups: hours,
    policy: { hourly: 3 },
    want: { e: ['hourly 2026-11-20T11'], c: ['hourly 2026-11-20T10'], a: ['hourly 2026-11-20T09'] },
  },
  {
    name: 'keep-daily 3: newest per UTC day, days without backups do not count',
    backups: days,
    policy: { daily: 3 },
    want: { d4: ['daily 2026-11-22'], d3b: ['daily 2026-11-21'], d2: ['daily 2026-11-19'] },
  },
  {
    name: 'keep-daily 10 with 4 days of backups: one per day',
    backups: days,
    policy: { daily: 10 },
    want: { d4: ['daily 2026-11-22'], d3b: ['daily 2026-11-21'], d2: ['daily 2026-11-19'], d1b: ['daily 2026-11-18'] },
  },
  {
    name: 'keep-weekly 2: ISO weeks start on Monday',
    backups: weeks,
    policy: { weekly: 2 },
    want: { w48b: ['weekly 2026-W48'], w47b: ['weekly 2026-W47'] },
  },
  {
    name: 'keep-weekly 3: Sunday before Monday belongs to the earlier week',
    backups: weeks,
    policy: { weekly: 3 },
    want: { w48b: ['weekly 2026-W48'], w47b: ['weekly 2026-W47'], w46: ['weekly 2026-W46'] },
  },
  {
    name: 'keep-weekly across new year: ISO week-years',
    backups: newYear,
    policy: { weekly: 10 },
    want: {
      y5: ['weekly 2027-W01'],
      y4: ['weekly 2026-W53'],
      y3: ['weekly 2026-W01'],
      y1: ['weekly 2025-W52'],
    },
  },
  {
    name: 'keep-weekly and keep-monthly across new year: a backup dropped by one is kept by the other',
    backups: newYear.slice(0, 3),
    policy: { weekly: 2, monthly: 2 },
    want: {
      y3: ['weekly 2026-W01', 'monthly 2026-01'],
      y2: ['monthly 2025-12'],
      y1: ['weekly 2025-W52'],
    },
  },
  {
    name: 'keep-monthly 2: months without backups do not count',
    backups: months,
    policy: { monthly: 2 },
    want: { m5: ['monthly 2026-11'], m3: ['monthly 2026-09'] },
  },
  {
    name: 'keep-monthly 3: the last second of August is August',
    backups: months,
    policy: { monthly: 3 },
    want: { m5: ['monthly 2026-11'], m3: ['monthly 2026-09'], m1: ['monthly 2026-08'] },
  },
  {
    name: 'keep-yearly 3',
    backups: years,
    policy: { yearly: 3 },
    want: { Y5: ['yearly 2026'], Y4: ['yearly 2025'], Y2: ['yearly 2024'] },
  },
  {
    name: 'keep-within 30d: relative to the newest backup, strictly newer than the cut-off',
    backups: within,
    policy: { within: '30d' },
    want: { inside: ['within 30d'], mid: ['within 30d'], recent: ['within 30d'], newest: ['within 30d'] },
  },
  {
    name: 'keep-within 2w',
    backups: within,
    policy: { within: '2w' },
    want: { recent: ['within 2w'], newest: ['within 2w'] },
  },
  {
    name: 'keep-within 12h',
    backups: within,
    policy: { within: '12h' },
    want: { recent: ['within 12h'], newest: ['within 12h'] },
  },
  {
    name: 'keep-within 1y6m: years and months on the calendar',
    backups: [b('x1', '2025-05-26T09:59:59Z'), b('x2', '2025-05-26T10:00:01Z'), b('x3', '2026-11-26T10:00:00Z')],
    policy: { within: '1y6m' },
    want: { x2: ['within 1y6m'], x3: ['within 1y6m'] },
  },
  {
    name: 'keep-within 1m from March 31: Feb 31 rolls over to March 3 (as restic/Go AddDate)',
    backups: [b('f1', '2026-03-02T23:59:59Z'), b('f2', '2026-03-03T00:00:00.001Z'), b('f3', '2026-03-31T00:00:00Z')],
    policy: { within: '1m' },
    want: { f2: ['within 1m'], f3: ['within 1m'] },
  },
  {
    name: 'keep-tag: any backup carrying the tag',
    backups: tagged,
    policy: { tags: ['release'] },
    want: { t1: ['tag release'], t3: ['tag release'] },
  },
  {
    name: 'keep-tag "release,v1": carrying both; several keep-tags: any of them',
    backups: tagged,
    policy: { tags: ['release,v1', 'nightly'] },
    want: { t1: ['tag release,v1'], t2: ['tag nightly'] },
  },
  {
    name: 'combination: last + daily + weekly + tag, every reason listed',
    backups: [...weeks, b('tagged', '2026-11-01T00:00:00Z', { tags: ['release'] })],
    policy: { last: 1, daily: 2, weekly: 3, tags: ['release'] },
    want: {
      w48b: ['last 1', 'daily 2026-11-28', 'weekly 2026-W48'],
      w48a: ['daily 2026-11-23'],
      w47b: ['weekly 2026-W47'],
      w46: ['weekly 2026-W46'],
      tagged: ['tag release'],
    },
  },
  {
    name: 'combination: within + monthly reaches past the window',
    backups: months,
    policy: { within: '3d', monthly: 3 },
    want: { m5: ['monthly 2026-11', 'within 3d'], m3: ['monthly 2026-09'], m1: ['monthly 2026-08'] },
  },
  {
    name: 'group split: host and source set (in any order) form separate groups',
    backups: [
      b('h1-old', '2026-11-01T00:00:00Z'),
      b('h1-new', '2026-11-02T00:00:00Z'),
      b('h2-old', '2026-11-03T00:00:00Z', { host: 'h2' }),
      b('h2-new', '2026-11-04T00:00:00Z', { host: 'h2' }),
      b('two-old', '2026-11-05T00:00:00Z', { sources: ['/etc', '/data'] }),
      b('two-new', '2026-11-06T00:00:00Z', { sources: ['/data', '/etc'] }),
      b('newest', '2026-11-07T00:00:00Z', { host: 'h3' }),
    ],
    policy: { last: 1 },
    want: { 'h1-new': ['last 1'], 'h2-new': ['last 1'], 'two-new': ['last 1'], newest: ['last 1'] },
  },
  {
    name: 'group split: keep-within counts from the newest backup of each group',
    backups: [
      b('a-old', '2026-01-01T00:00:00Z', { host: 'a' }),
      b('a-new', '2026-01-02T00:00:00Z', { host: 'a' }),
      b('b-old', '2026-11-01T00:00:00Z', { host: 'b' }),
      b('b-new', '2026-11-26T00:00:00Z', { host: 'b' }),
    ],
    policy: { within: '7d' },
    want: { 'a-old': ['within 7d'], 'a-new': ['within 7d'], 'b-new': ['within 7d'] },
  },
  {
    name: 'no policy: keep-last 5',
    backups: [...hours, b('f', '2026-11-20T12:00:00Z'), b('g', '2026-11-20T13:00:00Z')],
    policy: undefined,
    want: { c: ['last 5'], d: ['last 5'], e: ['last 5'], f: ['last 5'], g: ['last 5'] },
  },
  {
    name: 'empty policy (no rule, empty tag list): keep-last 5',
    backups: [...hours, b('f', '2026-11-20T12:00:00Z')],
    policy: { tags: [] },
    want: { b: ['last 5'], c: ['last 5'], d: ['last 5'], e: ['last 5'], f: ['last 5'] },
  },
  {
    name: 'a zero count is a rule that keeps nothing, not "unset"',
    backups: hours,
    policy: { last: 0, hourly: 1 },
    want: { e: ['hourly 2026-11-20T11'] },
  },
];

describe('retention policy (table)', () => {
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(kept(c.backups, c.policy), c.want);
    });
  }

  test('the result does not depend on the input order; decisions keep it', () => {
    const shuffled = [days[3]!, days[0]!, days[5]!, days[2]!, days[4]!, days[1]!];
    const r = applyPolicy(shuffled, { daily: 2 });
    assert.deepEqual(
      r.decisions.map((d) => d.backup.id),
      shuffled.map((x) => x.id),
    );
    assert.deepEqual(kept(shuffled, { daily: 2 }), kept(days, { daily: 2 }));
    // Groups list their backups oldest first.
    assert.deepEqual(
      r.groups[0]!.decisions.map((d) => d.backup.id),
      ['d1', 'd1b', 'd2', 'd3', 'd3b', 'd4'],
    );
    assert.equal(r.groups[0]!.kept, 2);
    assert.equal(r.groups[0]!.removed, 4);
  });

  test('groups are reported with host and sorted sources', () => {
    const r = applyPolicy(
      [b('x', '2026-01-01T00:00:00Z', { host: 'h9', sources: ['/z', '/a'] }), b('y', '2026-01-02T00:00:00Z', { host: 'h8' })],
      { last: 1 },
    );
    assert.deepEqual(
      r.groups.map((g) => [g.host, g.sources, g.kept, g.removed]),
      [
        ['h9', ['/a', '/z'], 1, 0],
        ['h8', ['/data'], 1, 0],
      ],
    );
    assert.equal(r.defaulted, false);
    assert.equal(applyPolicy([], undefined).defaulted, true);
    assert.deepEqual(applyPolicy([], undefined).policy, { last: 5 });
  });
});

describe('refusing to empty a group', () => {
  test('keep-last 0 would remove everything: refused, naming the group', () => {
    assert.throws(
      () => applyPolicy(days, { last: 0 }),
      (e: unknown) =>
        e instanceof UsageError &&
        e.exitCode === 2 &&
        /every backup of h1: \/data \(6 backups\)/.test(e.message) &&
        /--allow-empty/.test(e.hint ?? ''),
    );
  });

  test('with allowEmpty it removes them all', () => {
    assert.deepEqual(kept(days, { last: 0 }, true), {});
  });

  test('one emptied group refuses the whole policy, even if other groups keep something', () => {
    const list = [...tagged, b('other', '2026-11-09T00:00:00Z', { host: 'h2' })];
    assert.throws(() => applyPolicy(list, { tags: ['release'] }), /every backup of h2: \/data \(1 backup\)/);
    assert.deepEqual(kept(list, { tags: ['release'] }, true), { t1: ['tag release'], t3: ['tag release'] });
  });

  test('keep-within 0d keeps nothing (the newest is not newer than itself)', () => {
    assert.throws(() => applyPolicy(within, { within: '0d' }), UsageError);
  });

  test('an empty list is not refused', () => {
    assert.deepEqual(applyPolicy([], { last: 0 }).decisions, []);
  });
});

describe('policy values', () => {
  test('bad counts and durations are usage errors', () => {
    assert.throws(() => applyPolicy(days, { last: -1 }), /keep-last must be a whole number/);
    assert.throws(() => applyPolicy(days, { daily: 1.5 }), /keep-daily must be a whole number/);
    assert.throws(() => applyPolicy(days, { within: '30 days' }), UsageError);
    assert.throws(() => applyPolicy(days, { within: '' }), UsageError);
    assert.throws(() => applyPolicy(days, { tags: ['a,'] }), UsageError);
  });

  test('durations: y, m/M (months), w, d, h', () => {
    assert.deepEqual(parseCalendarDuration('1y6m'), { years: 1, months: 6, days: 0, hours: 0 });
    assert.deepEqual(parseCalendarDuration('2M'), { years: 0, months: 2, days: 0, hours: 0 });
    assert.deepEqual(parseCalendarDuration('2w3d12h'), { years: 0, months: 0, days: 17, hours: 12 });
  });

  test('ISO weeks in UTC', () => {
    const w = (iso: string) => {
      const x = isoWeek(new Date(iso));
      return `${x.year}-W${x.week}`;
    };
    assert.equal(w('2025-12-28T23:59:59Z'), '2025-W52');
    assert.equal(w('2025-12-29T00:00:00Z'), '2026-W1');
    assert.equal(w('2026-01-04T23:59:59Z'), '2026-W1');
    assert.equal(w('2026-01-05T00:00:00Z'), '2026-W2');
    assert.equal(w('2026-12-31T12:00:00Z'), '2026-W53');
    assert.equal(w('2027-01-03T12:00:00Z'), '2026-W53');
    assert.equal(w('2027-01-04T00:00:00Z'), '2027-W1');
    assert.equal(w('2020-12-31T00:00:00Z'), '2020-W53');
    assert.equal(w('2021-01-01T00:00:00Z'), '2020-W53');
  });

  test('describePolicy names every rule', () => {
    assert.equal(
      describePolicy({ last: 2, daily: 7, within: '30d', tags: ['a', 'b,c'] }),
      'keep-last 2, keep-daily 7, keep-within 30d, keep-tag a, keep-tag b,c',
    );
  });
});
