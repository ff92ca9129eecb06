// The cost model without a server: the storage-only example's figures (test/helpers/
// storage-only-model.ts) reproduced exactly and the same scenario in our model, minimum storage durations and minimum billable sizes at their edges,
// archive overhead, transition rules, the S3 Inventory CSV parser, the price override file, the
// CSV history and the forecast.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { forecast, MIN_FORECAST_POINTS } from '../src/cost/forecast.ts';
import { parseCsvLine } from '../src/cost/inventory.ts';
import { projectBackups, type BackupRecord, type SimObject, simulate, timeline, MONTH_MS } from '../src/cost/lifecycle.ts';
import { DAY_MS, GB, loadPriceTable, MONTH_DAYS, type Prices, selectPrices, type StorageClass } from '../src/cost/pricing.ts';
import { appendCsv, CSV_COLUMNS, readCsvHistory, type CostReport } from '../src/cost/report.ts';
import { UsageError } from '../src/errors.ts';
import type { LifecycleRule } from '../src/store/store.ts';
import { monthlyBackupScenario, STORAGE_ONLY_PRICES, storageOnlyExample } from './helpers/storage-only-model.ts';
import { tempDir } from './helpers/tree.ts';

const work = tempDir('cost-model');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const prices: Prices = selectPrices(loadPriceTable().table, 'us-east-1');
const KiB = 1024;
const T0 = Date.UTC(2026, 0, 1);

function obj(o: Partial<SimObject> & { bytes: number }): SimObject {
  return {
    category: 'archives',
    uploadClass: 'STANDARD',
    birth: T0,
    count: 1,
    small: o.bytes < 128 * KiB,
    currentRules: [],
    inArchives: true,
    deleteAt: Infinity,
    existing: true,
    ...o,
  };
}

function rule(transitions: { days: number; storageClass: string }[], extra: Partial<LifecycleRule> = {}): LifecycleRule {
  return { enabled: true, prefix: 'archives/', tagFilter: false, transitions, ignored: [], ...extra };
}

const run = (o: SimObject, rules: LifecycleRule[] = [], months = 12) =>
  simulate([o], { name: 't', rules, match: () => rules }, prices, T0, months);

describe('the storage-only example', () => {
  test('its table and its figures: $2.30 without lifecycle, $0.85 with, 63% saved', () => {
    assert.deepEqual({ ...STORAGE_ONLY_PRICES }, { STANDARD: 0.023, STANDARD_IA: 0.0125, GLACIER: 0.004 });
    assert.deepEqual(storageOnlyExample(100), { totalGB: 100, withoutLifecycle: 2.3, withLifecycle: 0.85, savedPercent: 63 });
    // The same arithmetic, not a lookup: 200 GB costs twice as much.
    assert.deepEqual(storageOnlyExample(200), { totalGB: 200, withoutLifecycle: 4.6, withLifecycle: 1.7, savedPercent: 63 });
  });

  test('our model on the same scenario: same storage with its prices, less with Glacier Flexible, plus requests', () => {
    // The example's prices in our engine: storage only, no requests, minimums or overhead.
    const storageOnly: Prices = structuredClone(selectPrices(loadPriceTable().table, 'us-east-1'));
    for (const c of Object.keys(storageOnly.classes) as StorageClass[]) {
      Object.assign(storageOnly.classes[c], {
        put: 0,
        get: 0,
        transition: 0,
        minDays: 0,
        minBillableBytes: 0,
        overheadClassBytes: 0,
        overheadStandardBytes: 0,
      });
    }
    storageOnly.classes.STANDARD.storage = STORAGE_ONLY_PRICES.STANDARD;
    storageOnly.classes.STANDARD_IA.storage = STORAGE_ONLY_PRICES.STANDARD_IA;
    storageOnly.classes.GLACIER.storage = STORAGE_ONLY_PRICES.GLACIER;
    const transitions = [
      { days: 30, storageClass: 'STANDARD_IA' as const },
      { days: 90, storageClass: 'GLACIER' as const },
    ];
    const exampleInOurs = monthlyBackupScenario({ totalGB: 100, keepMonths: 8, transitions, prices: storageOnly });
    // Days instead of whole months (30 days in Standard of a 30.4-day month): within a cent.
    assert.ok(Math.abs(exampleInOurs.monthlyAverage - 0.85) < 0.01, `storage-only prices in our engine: ${exampleInOurs.monthlyAverage}`);
    const exampleNone = monthlyBackupScenario({ totalGB: 100, keepMonths: 8, transitions: [], prices: storageOnly });
    assert.ok(Math.abs(exampleNone.monthlyAverage - 2.3) < 0.001, `${exampleNone.monthlyAverage}`);

    const ours = monthlyBackupScenario({ totalGB: 100, keepMonths: 8, transitions, prices });
    const oursNone = monthlyBackupScenario({ totalGB: 100, keepMonths: 8, transitions: [], prices });
    // Glacier Flexible Retrieval is $0.0036, not $0.004: the Glacier share (5/8 of 100 GB for
    // 153.5 of 243.5 days) costs 10% less.
    const glacierShare = (100 * (243.5 - 90)) / 243.5;
    const expectStorage = (100 * (30 * 0.023 + 60 * 0.0125)) / 243.5 + glacierShare * 0.0036;
    assert.ok(Math.abs(ours.storage / 24 - expectStorage) < 0.005, `storage ${ours.storage / 24} vs ${expectStorage}`);
    // Each 12.5 GiB archive is a multipart upload of 1,000 parts of 5 MiB and 975 of 8 MiB
    // (uploadShape): 1,977 PUTs a month.
    assert.ok(Math.abs(ours.requests / 24 - (1977 * 0.005) / 1000) < 0.0002, `requests ${ours.requests / 24}`);
    assert.ok(ours.transitionFees > 0 && ours.earlyDeletion === 0);
    assert.ok(ours.monthlyAverage < exampleInOurs.monthlyAverage && ours.monthlyAverage > 0.8, `ours ${ours.monthlyAverage}`);
    assert.ok(oursNone.monthlyAverage > 2.3 && oursNone.monthlyAverage < 2.31);
  });
});

describe('minimum storage durations', () => {
  const gb = GB;
  test('STANDARD_IA deleted after 10 days pays 20 more days; after exactly 30 days nothing', () => {
    const r10 = run(obj({ bytes: gb, uploadClass: 'STANDARD_IA', deleteAt: T0 + 10 * DAY_MS }));
    assert.ok(Math.abs(r10.earlyDeletion - (0.0125 * 20) / MONTH_DAYS) < 1e-9, `${r10.earlyDeletion}`);
    assert.ok(Math.abs(r10.storage - (0.0125 * 10) / MONTH_DAYS) < 1e-9);
    const r30 = run(obj({ bytes: gb, uploadClass: 'STANDARD_IA', deleteAt: T0 + 30 * DAY_MS }));
    assert.equal(r30.earlyDeletion, 0);
    const r29 = run(obj({ bytes: gb, uploadClass: 'STANDARD_IA', deleteAt: T0 + 29 * DAY_MS }));
    assert.ok(Math.abs(r29.earlyDeletion - 0.0125 / MONTH_DAYS) < 1e-9);
  });

  test('a transition out of a class before its minimum is charged too (IA at 30 days, GLACIER_IR at 45)', () => {
    const r = run(obj({ bytes: gb }), [
      rule([
        { days: 30, storageClass: 'STANDARD_IA' },
        { days: 45, storageClass: 'GLACIER_IR' },
      ]),
    ]);
    assert.ok(Math.abs(r.earlyDeletion - (0.0125 * 15) / MONTH_DAYS) < 1e-9, `${r.earlyDeletion}`);
    assert.deepEqual(r.transitionCount, { STANDARD_IA: 1, GLACIER_IR: 1 });
    assert.ok(Math.abs(r.transitionFees - (0.01 + 0.02) / 1000) < 1e-12);
  });

  test('GLACIER (90 days) and DEEP_ARCHIVE (180 days)', () => {
    const g = run(obj({ bytes: gb, deleteAt: T0 + 100 * DAY_MS }), [rule([{ days: 90, storageClass: 'GLACIER' }])]);
    assert.ok(Math.abs(g.earlyDeletion - (0.0036 * 80) / MONTH_DAYS) < 1e-9, `${g.earlyDeletion}`);
    const d = run(obj({ bytes: gb, uploadClass: 'DEEP_ARCHIVE', deleteAt: T0 + 179 * DAY_MS }));
    assert.ok(Math.abs(d.earlyDeletion - 0.00099 / MONTH_DAYS) < 1e-9, `${d.earlyDeletion}`);
    const d180 = run(obj({ bytes: gb, uploadClass: 'DEEP_ARCHIVE', deleteAt: T0 + 180 * DAY_MS }));
    assert.equal(d180.earlyDeletion, 0);
  });

  test('a deletion after the horizon is not charged inside it', () => {
    const r = run(obj({ bytes: gb, uploadClass: 'GLACIER_IR', birth: T0 + 11 * MONTH_MS, deleteAt: T0 + 13 * MONTH_MS }));
    assert.equal(r.earlyDeletion, 0);
  });
});

describe('minimum billable size and archive overhead', () => {
  const oneMonth = (o: SimObject) => run({ ...o, birth: T0, deleteAt: Infinity }, [], 12).months[0]!;
  test('IA, One Zone-IA and Glacier IR bill objects under 128 KiB as 128 KiB; 128 KiB and more as they are', () => {
    for (const cls of ['STANDARD_IA', 'ONEZONE_IA', 'GLACIER_IR'] as const) {
      assert.equal(oneMonth(obj({ bytes: 1 * KiB, uploadClass: cls })).bytesByClass[cls], 128 * KiB, cls);
      assert.equal(oneMonth(obj({ bytes: 128 * KiB - 1, uploadClass: cls })).bytesByClass[cls], 128 * KiB, cls);
      assert.equal(oneMonth(obj({ bytes: 128 * KiB + 1, uploadClass: cls })).bytesByClass[cls], 128 * KiB + 1, cls);
    }
    // A cohort of 1000 small objects: 1000 × 128 KiB.
    assert.equal(
      oneMonth(obj({ bytes: 1000 * 10 * KiB, count: 1000, small: true, uploadClass: 'STANDARD_IA' })).bytesByClass.STANDARD_IA,
      1000 * 128 * KiB,
    );
    assert.equal(oneMonth(obj({ bytes: KiB })).bytesByClass.STANDARD, KiB, 'STANDARD has no minimum');
  });

  test('GLACIER and DEEP_ARCHIVE add 32 KiB per object at their price and 8 KiB at STANDARD', () => {
    const m = oneMonth(obj({ bytes: 1000 * GB, count: 1000, uploadClass: 'GLACIER' }));
    assert.equal(m.bytesByClass.GLACIER, 1000 * GB + 1000 * 32 * KiB);
    assert.equal(m.bytesByClass.STANDARD, 1000 * 8 * KiB);
  });

  test('lifecycle does not transition objects under 128 KiB unless the rule filters on size', () => {
    const r = [rule([{ days: 30, storageClass: 'STANDARD_IA' }])];
    const small = obj({ bytes: 100 * KiB });
    assert.equal(timeline(small, r).segments.length, 1);
    assert.equal(timeline(obj({ bytes: 128 * KiB }), r).segments.at(-1)!.cls, 'STANDARD_IA');
    const sized = [rule([{ days: 30, storageClass: 'STANDARD_IA' }], { sizeGreaterThan: 1024 })];
    assert.equal(timeline(small, sized).segments.at(-1)!.cls, 'STANDARD_IA');
    // Never to a warmer class: GLACIER uploads stay put under an IA rule.
    assert.equal(timeline(obj({ bytes: GB, uploadClass: 'GLACIER' }), r).segments.length, 1);
  });

  test('expiration deletes at its age and is reported when retention still needs the object', () => {
    const o = obj({ bytes: GB, deleteAt: T0 + 400 * DAY_MS });
    const t = timeline(o, [rule([], { expirationDays: 365 })]);
    assert.equal(t.end, T0 + 365 * DAY_MS);
    const r = simulate([o], { name: 'x', rules: [], match: () => [rule([], { expirationDays: 365 })] }, prices, T0, 13);
    assert.deepEqual(r.expiredWhileNeeded, { objects: 1, archives: 1, manifests: 0 });
  });
});

describe('S3 Inventory CSV', () => {
  test('quoted fields, doubled quotes, empty fields', () => {
    assert.deepEqual(parseCsvLine('"b","repo/archives/a%20b.tar.zst","123","2026-11-01T00:00:00.000Z","STANDARD_IA","e"'), [
      'b',
      'repo/archives/a%20b.tar.zst',
      '123',
      '2026-11-01T00:00:00.000Z',
      'STANDARD_IA',
      'e',
    ]);
    assert.deepEqual(parseCsvLine('a,"x ""y"", z",,'), ['a', 'x "y", z', '', '']);
    assert.throws(() => parseCsvLine('"open'), /unterminated/);
  });
});

describe('price table', () => {
  test('the shipped table says where it comes from and when, and has the documented minimums', () => {
    const { table } = loadPriceTable();
    assert.match(table.source, /aws\.amazon\.com\/s3\/pricing/);
    assert.match(table.date, /^\d{4}-\d{2}-\d{2}$/);
    const p = table.regions['us-east-1']!;
    assert.deepEqual(
      [p.STANDARD_IA.minDays, p.ONEZONE_IA.minDays, p.GLACIER_IR.minDays, p.GLACIER.minDays, p.DEEP_ARCHIVE.minDays],
      [30, 30, 90, 90, 180],
    );
    assert.deepEqual([p.STANDARD_IA.minBillableBytes, p.GLACIER_IR.minBillableBytes], [128 * KiB, 128 * KiB]);
    const other = selectPrices(table, 'ap-south-1');
    assert.equal(other.regionFallback, 'us-east-1');
  });

  test('an override file replaces what it names and keeps the rest; a bad one is a usage error', () => {
    const f = path.join(work, 'prices.json');
    fs.writeFileSync(f, JSON.stringify({ version: 'mine-1', regions: { 'eu-central-1': { STANDARD: { storage: 0.0245 } } } }));
    const { table } = loadPriceTable(f);
    const p = selectPrices(table, 'eu-central-1', f);
    assert.equal(p.regionFallback, undefined);
    assert.equal(p.classes.STANDARD.storage, 0.0245);
    assert.equal(p.classes.STANDARD.put, 0.005, 'unnamed fields kept');
    assert.equal(p.classes.GLACIER.storage, 0.0036, 'unnamed classes kept');
    assert.equal(p.table.version, 'mine-1');
    fs.writeFileSync(f, JSON.stringify({ regions: { 'us-east-1': { GLACIER_DEEP: { storage: 1 } } } }));
    assert.throws(
      () => loadPriceTable(f),
      (e: unknown) => e instanceof UsageError && /unknown storage class "GLACIER_DEEP"/.test(e.message),
    );
    fs.writeFileSync(f, '{ not json');
    assert.throws(() => loadPriceTable(f), UsageError);
  });
});

describe('CSV history', () => {
  const report = (date: string, bytes: number, cost: number) =>
    ({
      generatedAt: date,
      repository: 's3://b/p',
      scope: 'repository',
      prices: { region: 'us-east-1', version: 'v' },
      totalObjects: 3,
      totalBytes: bytes,
      current: { monthlyCost: cost, classes: [{ storageClass: 'STANDARD_IA', bytes, monthlyCost: cost }] },
      savings: { currentVsNone: { monthly: 0.5 }, recommendedVsNone: { monthly: 0.75 } },
    }) as unknown as CostReport;

  test('one header, one row per run; read back as history', () => {
    const f = path.join(work, 'reports', 'cost_report.csv');
    appendCsv(f, report('2026-11-01T00:00:00.000Z', 100, 1));
    appendCsv(f, report('2026-11-08T00:00:00.000Z', 200, 2));
    const lines = fs.readFileSync(f, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.equal(lines[0], CSV_COLUMNS.join(','));
    const row = Object.fromEntries(CSV_COLUMNS.map((c, i) => [c, lines[2]!.split(',')[i]]));
    assert.equal(row.standard_ia_bytes, '200');
    assert.equal(row.lifecycle_savings_usd_month, '0.500000');
    assert.deepEqual(readCsvHistory(f), [
      { time: Date.parse('2026-11-01T00:00:00.000Z'), bytes: 100, monthlyCost: 1 },
      { time: Date.parse('2026-11-08T00:00:00.000Z'), bytes: 200, monthlyCost: 2 },
    ]);
    assert.deepEqual(readCsvHistory(f, 's3://other/x'), []);
  });

  test('a file with another header is refused and left as it was', () => {
    const f = path.join(work, 'foreign.csv');
    fs.writeFileSync(f, 'a,b\n1,2\n');
    assert.throws(() => appendCsv(f, report('2026-11-01T00:00:00.000Z', 1, 1)), /header differs/);
    assert.equal(fs.readFileSync(f, 'utf8'), 'a,b\n1,2\n');
  });
});

describe('forecast', () => {
  const week = 7 * DAY_MS;
  test('a straight line is continued, with an interval that holds the truth and widens', () => {
    // 10 weekly points of 100 GB + 2 GB/week, with a little deterministic noise.
    const pts = Array.from({ length: 10 }, (_, i) => ({ t: T0 + i * week, v: 100 + 2 * i + (i % 2 ? 0.3 : -0.3) }));
    const f = forecast(pts, 6);
    assert.ok(!('unavailable' in f));
    const perMonth = (2 / 7) * MONTH_DAYS;
    for (const [m, p] of f.ahead.entries()) {
      const truth = 100 + 2 * 9 + perMonth * (m + 1);
      assert.ok(p.low <= truth && truth <= p.high, `month ${m + 1}: ${truth} not in [${p.low}, ${p.high}]`);
      assert.ok(Math.abs(p.value - truth) < 0.03 * truth, `month ${m + 1}: ${p.value} vs ${truth}`);
    }
    const w = f.ahead.map((p) => p.high - p.low);
    assert.ok(
      w.every((x, i) => i === 0 || x > w[i - 1]!),
      'interval widens with the horizon',
    );
    assert.ok(Math.abs(f.trendPerDay - 2 / 7) < 0.1 * (2 / 7), `trend ${f.trendPerDay * 7}/week`);
  });

  test('irregular spacing is resampled; a missed week does not bend the trend', () => {
    const pts = [0, 1, 2, 4, 5, 6, 7].map((i) => ({ t: T0 + i * week, v: 50 + 10 * i }));
    const f = forecast(pts, 1);
    assert.ok(!('unavailable' in f));
    assert.ok(Math.abs(f.ahead[0]!.value - (50 + 70 + (10 / 7) * MONTH_DAYS)) < 1, `${f.ahead[0]!.value}`);
  });

  // Linear growth with deterministic noise (a seeded generator): the forecast must stay near the
  // line and the line must lie inside the 95 % interval, whatever the cadence of the rows.
  const MiB = 2 ** 20;
  function noisyLine(stepDays: number, n: number, perDay: number, noise: number, seed: number) {
    let s = seed;
    const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const now = T0 + 400 * DAY_MS;
    const line = (t: number) => 19 * MiB + (perDay * (t - now)) / DAY_MS;
    const pts = Array.from({ length: n }, (_, i) => {
      const t = now - (n - 1 - i) * stepDays * DAY_MS;
      return { t, v: line(t) + noise * rnd() };
    });
    return { pts, line };
  }
  function assertNearLine(label: string, pts: { t: number; v: number }[], line: (t: number) => number, months: number, tolerance: number) {
    const f = forecast(pts, months, { nonNegative: true });
    assert.ok(!('unavailable' in f), label);
    const tLast = Math.max(...pts.map((p) => p.t));
    for (const [m, p] of f.ahead.entries()) {
      const t = Date.parse(p.time);
      assert.ok(Math.abs(t - (tLast + (m + 1) * MONTH_DAYS * DAY_MS)) < 1000, `${label}: month ${m + 1} counts from the newest row`);
      const truth = line(t);
      const growth = truth - line(tLast);
      assert.ok(
        Math.abs(p.value - truth) <= tolerance * growth,
        `${label}: month ${m + 1}: ${(p.value / MiB).toFixed(1)} MiB, the line ${(truth / MiB).toFixed(1)} MiB (alpha ${f.alpha}, beta ${f.beta})`,
      );
      assert.ok(
        p.low <= truth && truth <= p.high,
        `${label}: month ${m + 1}: the line ${(truth / MiB).toFixed(1)} MiB not in [${(p.low / MiB).toFixed(1)}, ${(p.high / MiB).toFixed(1)}]`,
      );
    }
    return f;
  }

  test('weekly rows of linear growth (19 MiB now, 4 MiB a week): 6 months ahead is near the line, ~123 MiB', () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const { pts, line } = noisyLine(7, 8, (4 * MiB) / 7, 1.5 * MiB, seed);
      assertNearLine(`weekly, seed ${seed}`, pts, line, 6, 0.25);
    }
    const exact = noisyLine(7, 5, (4 * MiB) / 7, 0, 1);
    const f = assertNearLine('weekly, exact', exact.pts, exact.line, 6, 0.01);
    assert.ok(!('unavailable' in f) && Math.abs(f.ahead[5]!.value / MiB - (19 + (4 * (6 * MONTH_DAYS)) / 7)) < 0.5);
  });

  test('daily rows of linear growth: near the line a month and six months ahead, within the interval', () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const { pts, line } = noisyLine(1, 30, (4 * MiB) / 7, 1 * MiB, seed);
      assertNearLine(`daily, seed ${seed}`, pts, line, 6, 0.25);
    }
  });

  test('monthly rows of linear growth: near the line, within the interval', () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const { pts, line } = noisyLine(MONTH_DAYS, 6, (4 * MiB) / 7, 3 * MiB, seed);
      assertNearLine(`monthly, seed ${seed}`, pts, line, 6, 0.4);
    }
  });

  test('several runs on one day count once and do not shrink the step to minutes; this run is never dropped', () => {
    const week = 7 * DAY_MS;
    const now = T0 + 100 * DAY_MS;
    const line = (t: number) => 19 * MiB + (4 * MiB * (t - now)) / week;
    // Four weekly rows, then five runs this morning a minute apart, then this run three days later.
    const pts = [4, 3, 2, 1].map((w) => ({ t: now - w * week - 3 * DAY_MS, v: line(now - w * week - 3 * DAY_MS) }));
    for (let i = 5; i >= 1; i--) pts.push({ t: now - 3 * DAY_MS - i * 60_000, v: line(now - 3 * DAY_MS - i * 60_000) });
    pts.push({ t: now, v: line(now) });
    const f = assertNearLine('weekly + same-day runs', pts, line, 6, 0.02);
    assert.ok(!('unavailable' in f) && f.points === 6 && Math.abs(f.stepDays - 7) < 1, `${!('unavailable' in f) && f.stepDays} days`);
  });

  test(`fewer than ${MIN_FORECAST_POINTS} points: no forecast, and it says why`, () => {
    const f = forecast(
      [1, 2, 3, 4].map((i) => ({ t: T0 + i * week, v: i })),
      3,
    );
    assert.ok('unavailable' in f);
    assert.match(f.unavailable, /at least 5 points.*there are 4/);
    const same = forecast(
      Array.from({ length: 6 }, () => ({ t: T0, v: 1 })),
      3,
    );
    assert.ok('unavailable' in same && /there is 1/.test(same.unavailable));
  });

  test('stored bytes never go below zero', () => {
    const pts = Array.from({ length: 6 }, (_, i) => ({ t: T0 + i * week, v: 100 - 20 * i }));
    const f = forecast(pts, 6, { nonNegative: true });
    assert.ok(!('unavailable' in f) && f.ahead.every((p) => p.value >= 0 && p.low >= 0));
  });
});

describe('projected backups', () => {
  test('a backup split into several archives is projected as that many objects, not one of their total size', () => {
    const now = Date.parse('2026-11-27T00:00:00Z');
    const GiB = 2 ** 30;
    // Weekly full backups of ~200 GiB, each split into 4 archives (archives are bounded at 64 GiB of tar).
    const backups: BackupRecord[] = [0, 1, 2, 3].map((w) => {
      const time = now - (4 - w) * 7 * DAY_MS;
      const id = `${new Date(time)
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.(\d{3})Z$/, '.$1Z')}-0000000${w}`;
      const archives = [1, 2, 3, 4].map((part) => ({
        key: `repo/archives/${id}${part > 1 ? `.${part}` : ''}.tar.zst`,
        size: 50 * GiB,
        lastModified: time,
        storageClass: 'STANDARD',
      }));
      return {
        id,
        time,
        host: 'h',
        sources: ['/data'],
        tags: [],
        kind: 'full' as const,
        chainStart: time,
        refs: archives.map((a) => a.key),
        archives,
        manifest: { key: `repo/snapshots/${id}.ndjson.zst`, size: 1 << 20, lastModified: time, storageClass: 'STANDARD' },
      };
    });
    const p = projectBackups({
      backups,
      policy: undefined,
      now,
      months: 2,
      bucketKey: (k) => `repo/${k}`,
      currentRules: () => [],
      uploadClassOf: () => 'STANDARD',
    });
    const future = p.objects.filter((o) => !o.existing);
    const archives = future.filter((o) => o.category === 'archives');
    const manifests = future.filter((o) => o.category === 'manifests');
    assert.ok(archives.length >= 7, `about 8 weekly backups in 2 months, got ${archives.length}`);
    for (const a of archives) {
      assert.equal(a.count, 4);
      assert.equal(a.bytes, 200 * GiB);
      assert.equal(a.small, false);
    }
    for (const m of manifests) assert.equal(m.count, 1);
    // Per-object charges follow: a transition to Glacier is paid once per archive.
    const toGlacier: LifecycleRule = {
      id: 'g',
      enabled: true,
      prefix: 'repo/archives/',
      tagFilter: false,
      transitions: [{ days: 1, storageClass: 'GLACIER' }],
      ignored: [],
    };
    const scenario = { name: 'g', rules: [toGlacier], match: (o: SimObject) => (o.inArchives ? [toGlacier] : []) };
    const r = simulate(archives, scenario, prices, now, 2);
    assert.equal(r.transitionCount.GLACIER, 4 * archives.filter((a) => a.birth + DAY_MS < now + 2 * MONTH_MS).length);
  });
});
