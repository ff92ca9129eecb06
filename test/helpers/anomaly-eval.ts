// Scoring the anomaly detector on synthetic histories: detection per injected event type and
// false alarms per 100 normal backups (docs/anomaly-detection.md "Evaluation").
import { type DetectorOptions, evaluateHistory, mean, stddev } from '../../src/monitor/anomaly.ts';
import type { AnomalyFinding, RunRecord } from '../../src/monitor/types.ts';
import { EVENT_TYPES, type EventType, generateHistory, type GeneratorOptions } from './synthetic-history.ts';

export interface EvalRow {
  type: EventType;
  injected: number;
  detected: number;
  /** Metrics that fired on the event's backups, with how often. */
  signals: Map<string, number>;
}

export interface EvalResult {
  rows: EvalRow[];
  injected: number;
  detected: number;
  normal: number;
  falseAlarms: number;
  /** Normal backups flagged, with the metrics that fired (for diagnosis). */
  falseAlarmDetails: { seed: number; day: number; record: RunRecord; findings: AnomalyFinding[] }[];
  misses: { seed: number; type: EventType; start: number }[];
}

/** The z-score rule alone: bytes read or duration more than k·σ from the mean of the last 30 comparable backups. */
export function zScoreRuleOnly(records: RunRecord[], k = 2, window = 30, minHistory = 7): boolean[] {
  const out: boolean[] = [];
  const prior = new Map<string, RunRecord[]>();
  for (const r of records) {
    const key = `${r.sourceKey}/${r.kind}`;
    const h = (prior.get(key) ?? []).slice(-window);
    let flag = false;
    if (h.length >= minHistory) {
      for (const m of ['bytesIn', 'bytesStored', 'durationMs'] as const) {
        const xs = h.map((x) => x[m]);
        const sd = stddev(xs);
        if (sd > 0 && Math.abs(r[m] - mean(xs)) > k * sd) flag = true;
      }
    }
    out.push(flag);
    prior.set(key, [...(prior.get(key) ?? []), r]);
  }
  return out;
}

export function evaluate(
  seeds: number[],
  gen: (seed: number) => GeneratorOptions,
  detector: DetectorOptions | 'zscore-rule' = {},
): EvalResult {
  const rows = new Map<EventType, EvalRow>(EVENT_TYPES.map((t) => [t, { type: t, injected: 0, detected: 0, signals: new Map() }]));
  let normal = 0;
  let falseAlarms = 0;
  const falseAlarmDetails: EvalResult['falseAlarmDetails'] = [];
  const misses: EvalResult['misses'] = [];
  for (const seed of seeds) {
    const h = generateHistory(gen(seed));
    const flagged: AnomalyFinding[][] =
      detector === 'zscore-rule'
        ? zScoreRuleOnly(h.records).map((f) => (f ? [{ metric: 'zscore-rule' } as AnomalyFinding] : []))
        : evaluateHistory(h.records, detector).map((e) => e.findings);
    for (const ev of h.events) {
      const row = rows.get(ev.type)!;
      row.injected++;
      let hit = false;
      for (let i = 0; i < h.records.length; i++) {
        const d = h.days[i]!;
        if (d < ev.start || d > ev.end) continue;
        if (flagged[i]!.length) hit = true;
        for (const f of flagged[i]!) row.signals.set(f.metric, (row.signals.get(f.metric) ?? 0) + 1);
      }
      if (hit) row.detected++;
      else misses.push({ seed, type: ev.type, start: ev.start });
    }
    for (let i = 0; i < h.records.length; i++) {
      const d = h.days[i]!;
      if (h.events.some((e) => d >= e.start && d <= e.echoUntil)) continue;
      normal++;
      if (flagged[i]!.length) {
        falseAlarms++;
        falseAlarmDetails.push({ seed, day: d, record: h.records[i]!, findings: flagged[i]! });
      }
    }
  }
  const list = [...rows.values()];
  return {
    rows: list,
    injected: list.reduce((a, r) => a + r.injected, 0),
    detected: list.reduce((a, r) => a + r.detected, 0),
    normal,
    falseAlarms,
    falseAlarmDetails,
    misses,
  };
}

const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(1)} %` : '-');

/** The evaluation as a Markdown table (what docs/anomaly-detection.md shows). */
export function markdownTable(r: EvalResult, baseline?: EvalResult): string {
  const lines = ['| Event | Injected | Detected | Rate | Signals that fired (backups) |', '|---|---:|---:|---:|---|'];
  for (const row of r.rows) {
    const sig = [...row.signals]
      .sort((a, b) => b[1] - a[1])
      .map(([m, n]) => `${m} ${n}`)
      .join(', ');
    lines.push(`| ${row.type} | ${row.injected} | ${row.detected} | ${pct(row.detected, row.injected)} | ${sig} |`);
  }
  lines.push(`| **all events** | ${r.injected} | ${r.detected} | **${pct(r.detected, r.injected)}** | |`);
  lines.push('');
  lines.push(
    `Normal backups: ${r.normal}; false alarms: ${r.falseAlarms} = **${((100 * r.falseAlarms) / r.normal).toFixed(2)} per 100 normal backups**.`,
  );
  if (baseline) {
    lines.push(
      `The z-score rule alone (bytes read, bytes stored or duration beyond mean ± 2σ of the last 30 comparable backups, no gates): ` +
        `${pct(baseline.detected, baseline.injected)} of events detected, ${((100 * baseline.falseAlarms) / baseline.normal).toFixed(2)} false alarms per 100 normal backups.`,
    );
  }
  return lines.join('\n');
}
