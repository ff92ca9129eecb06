// The storage-only cost model the cost tests compare ours with: "100 GB of monthly backups cost
// $2.30/month without lifecycle and ~$0.85 with, 63% saved", from a table of storage prices
// alone (no requests, minimum durations or overhead). STORAGE_ONLY_PRICES and
// storageOnlyExample give its figures; monthlyBackupScenario runs the same backups through
// s3backup's own engine (src/cost/lifecycle.ts).
import { archiveRules, type BackupRecord, MONTH_MS, projectBackups, type ScenarioResult, simulate } from '../../src/cost/lifecycle.ts';
import { DAY_MS, GB, type Prices, type StorageClass } from '../../src/cost/pricing.ts';

/**
 * Storage only, $/GB-month. Its "Glacier" price is what S3 Glacier Instant Retrieval costs;
 * Glacier Flexible Retrieval is $0.0036.
 */
export const STORAGE_ONLY_PRICES = { STANDARD: 0.023, STANDARD_IA: 0.0125, GLACIER: 0.004 } as const;

export interface StorageOnlyExample {
  totalGB: number;
  withoutLifecycle: number;
  withLifecycle: number;
  savedPercent: number;
}

const round2 = (x: number) => Math.round(x * 100 + Number.EPSILON * 100) / 100;

/**
 * The example's figures from its prices. The timeline is the one that yields them exactly with
 * 30- and 90-day transitions: monthly backups each kept 8 months, so of the stored data 1/8 is
 * in its first month (Standard), 2/8 in months 2-3 (IA) and 5/8 in months 4-8 (Glacier).
 */
export function storageOnlyExample(totalGB = 100, months = { standard: 1, ia: 2, glacier: 5 }): StorageOnlyExample {
  const n = months.standard + months.ia + months.glacier;
  const withoutLifecycle = totalGB * STORAGE_ONLY_PRICES.STANDARD;
  const withLifecycle =
    (totalGB *
      (months.standard * STORAGE_ONLY_PRICES.STANDARD +
        months.ia * STORAGE_ONLY_PRICES.STANDARD_IA +
        months.glacier * STORAGE_ONLY_PRICES.GLACIER)) /
    n;
  return {
    totalGB,
    withoutLifecycle: round2(withoutLifecycle),
    withLifecycle: round2(withLifecycle),
    savedPercent: Math.round((1 - withLifecycle / withoutLifecycle) * 100),
  };
}

/**
 * The example's backups in s3backup's model: `totalGB` of monthly full backups, the newest
 * `keepMonths` kept (keep-last), so `totalGB` is what is stored at any time; under
 * `transitions` on archives/, simulated over `months` from a steady state. Returns the month
 * average.
 */
export function monthlyBackupScenario(o: {
  totalGB: number;
  keepMonths: number;
  transitions: { days: number; storageClass: StorageClass }[];
  prices: Prices;
  months?: number;
  now?: number;
}): ScenarioResult {
  const now = o.now ?? Date.UTC(2026, 0, 1);
  const months = o.months ?? 24;
  const size = Math.round((o.totalGB * GB) / o.keepMonths);
  const backups: BackupRecord[] = [];
  for (let k = o.keepMonths - 1; k >= 0; k--) {
    // The newest one a little before now, so that the next is due within the first month.
    const t = Math.round(now - k * MONTH_MS - DAY_MS);
    const id = `monthly-${k}`;
    backups.push({
      id,
      time: t,
      host: 'example',
      sources: ['/data'],
      tags: [],
      kind: 'full',
      refs: [`archives/${id}.tar.zst`],
      manifest: { key: `snapshots/${id}.ndjson.zst`, size: 0, lastModified: t, storageClass: 'STANDARD' },
      archives: [{ key: `archives/${id}.tar.zst`, size, lastModified: t, storageClass: 'STANDARD' }],
    });
  }
  const rules = archiveRules('archives/', o.transitions, 'example');
  const p = projectBackups({
    backups,
    policy: { last: o.keepMonths },
    now,
    months,
    bucketKey: (k) => k,
    currentRules: () => [],
    uploadClassOf: () => 'STANDARD',
  });
  // The example counts only the backups' data: leave the (empty) manifests' requests out too.
  const objects = p.objects.filter((x) => x.category === 'archives');
  // Existing archives are in the class their age gives under the rules (steady state).
  return simulate(objects, { name: 'example', rules, match: (x) => (x.inArchives ? rules : []) }, o.prices, now, months);
}
