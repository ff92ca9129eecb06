import { analyzeCost, readCsvHistory } from '../cost/report.ts';
import { costSettingsOf } from '../cost/settings.ts';
import { type DetectorOptions, evaluateHistory } from '../monitor/anomaly.ts';
import { readHistory } from '../monitor/history.ts';
import { activeHolds, readHolds } from '../monitor/holds.ts';
import type { AnomalyFinding } from '../monitor/types.ts';
import type { CostSource, MonitorSource } from './data.ts';
import type { KeySource } from '../crypto/keys.ts';

/**
 * Where the dashboard's history/anomaly and cost panels get their data: the library functions
 * of their own modules (run history + anomaly detection in src/monitor, cost in src/cost), not
 * a second implementation. A panel whose source is off says why it is empty.
 */

/** Run history (all hosts) with every successful run judged by the anomaly detector on the runs before it. */
export function monitorSource(anomaly: (DetectorOptions & { enabled?: boolean | undefined }) | undefined): {
  source?: MonitorSource;
  reason: string;
} {
  const { enabled, ...detector } = anomaly ?? {};
  if (enabled === false) return { reason: 'anomaly.enabled is false in the configuration' };
  return {
    reason: '',
    source: {
      async load(store, crypto) {
        const runs = await readHistory(store, { crypto });
        const findings: Record<string, AnomalyFinding[]> = {};
        for (const { record, findings: f } of evaluateHistory(runs, detector)) if (f.length) findings[record.id] = f;
        return { runs, findings, holds: activeHolds(await readHolds(store, crypto)) };
      },
    },
  };
}

/** Months the dashboard's cost forecast looks ahead. */
export const FORECAST_MONTHS = 6;

/**
 * The cost report of `s3backup cost` (same price table, region, horizon and retention policy
 * from the config), its forecast fed by the cost.saveCsv history when there is one. The price
 * file is read now, so a bad one is a usage error at start, not a broken panel.
 */
export function costSource(cfg: Parameters<typeof costSettingsOf>[0], keys?: KeySource): { source?: CostSource; reason: string } {
  const cost = costSettingsOf(cfg);
  const prices = cost.pricesFor(cost.region);
  const csv = cost.saveCsv;
  return {
    reason: '',
    source: {
      async load(store) {
        const report = await analyzeCost(store, {
          keys,
          prices,
          months: cost.months,
          policy: cost.policy,
          policySource: cost.policySource,
          history: csv ? readCsvHistory(csv, store.location) : [],
          forecastMonths: FORECAST_MONTHS,
        });
        return { ...report, historySource: csv ?? null };
      },
    },
  };
}
