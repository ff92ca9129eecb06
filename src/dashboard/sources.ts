import type { CostSource, MonitorSource } from './data.ts';

/**
 * Where the dashboard's history/anomaly and cost panels get their data. Each is the library
 * function of its own module (run history + anomaly detection in src/monitor, cost in
 * src/cost); until that module is part of this build, the panel says why it is empty.
 */
export function monitorSource(): { source?: MonitorSource; reason: string } {
  return { reason: 'run history and anomaly detection are not part of this build yet' };
}

export function costSource(): { source?: CostSource; reason: string } {
  return { reason: 'cost analysis is not part of this build yet' };
}
