import { type DetectorOptions, evaluateHistory } from '../monitor/anomaly.ts';
import { readHistory } from '../monitor/history.ts';
import type { AnomalyFinding } from '../monitor/types.ts';
import type { CostSource, MonitorSource } from './data.ts';

/**
 * Where the dashboard's history/anomaly and cost panels get their data: the library functions
 * of their own modules (run history + anomaly detection in src/monitor, cost in src/cost), not
 * a second implementation. A panel whose source is off says why it is empty.
 */

/** Run history (all hosts) with every successful run judged by the anomaly detector on the runs before it. */
export function monitorSource(anomaly: (DetectorOptions & { enabled?: boolean | undefined }) | undefined): { source?: MonitorSource; reason: string } {
  const { enabled, ...detector } = anomaly ?? {};
  if (enabled === false) return { reason: 'anomaly.enabled is false in the configuration' };
  return {
    reason: '',
    source: {
      async load(store) {
        const runs = await readHistory(store);
        const findings: Record<string, AnomalyFinding[]> = {};
        for (const { record, findings: f } of evaluateHistory(runs, detector)) if (f.length) findings[record.id] = f;
        return { runs, findings };
      },
    },
  };
}

export function costSource(): { source?: CostSource; reason: string } {
  return { reason: 'cost analysis is not part of this build yet' };
}
