// Scoring the anomaly detector on synthetic histories: detection per injected event type and
// false alarms per 100 normal backups (docs/anomaly-detection.md "Evaluation").
import { type DetectorOptions, evaluateHistory, mean, stddev } from '../../src/monitor/anomaly.ts';
import type { AnomalyFinding, RunRecord } from '../../src/monitor/types.ts';
import { DAILY_EVENT_TYPES, type DailyEventType, type DailyShape, generateDaily } from './daily-history.ts';
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

export interface DailyEvalResult {
  shape: DailyShape;
  runs: number;
  rows: { type: DailyEventType; injected: number; detected: number; signals: Map<string, number> }[];
  injected: number;
  detected: number;
  normal: number;
  falseAlarms: number;
  falseAlarmDetails: { seed: number; day: number; record: RunRecord; findings: AnomalyFinding[] }[];
  misses: { seed: number; type: DailyEventType; day: number }[];
}

/**
 * The detector on the short daily histories of daily-history.ts: an event is found if its
 * backup has a finding; a false alarm is a finding on a backup that is neither an event's nor
 * one of its consequences (the undo the next day, the next full).
 */
export function evaluateDaily(shape: DailyShape, seeds: number[], detector: DetectorOptions = {}): DailyEvalResult {
  const rows = new Map(DAILY_EVENT_TYPES.map((t) => [t, { type: t, injected: 0, detected: 0, signals: new Map<string, number>() }]));
  const result: DailyEvalResult = {
    shape,
    runs: seeds.length,
    rows: [],
    injected: 0,
    detected: 0,
    normal: 0,
    falseAlarms: 0,
    falseAlarmDetails: [],
    misses: [],
  };
  for (const seed of seeds) {
    const h = generateDaily({ shape, seed });
    const judged = evaluateHistory(h.records, detector);
    for (const ev of h.events) {
      const row = rows.get(ev.type)!;
      row.injected++;
      const findings = judged[h.days.indexOf(ev.day)]!.findings;
      if (findings.length) row.detected++;
      else result.misses.push({ seed, type: ev.type, day: ev.day });
      for (const f of findings) row.signals.set(f.metric, (row.signals.get(f.metric) ?? 0) + 1);
    }
    h.days.forEach((d, i) => {
      if (h.events.some((e) => e.day === d || e.echoes.includes(d))) return;
      result.normal++;
      if (judged[i]!.findings.length) {
        result.falseAlarms++;
        result.falseAlarmDetails.push({ seed, day: d, record: h.records[i]!, findings: judged[i]!.findings });
      }
    });
  }
  result.rows = [...rows.values()];
  result.injected = result.rows.reduce((a, r) => a + r.injected, 0);
  result.detected = result.rows.reduce((a, r) => a + r.detected, 0);
  return result;
}

/** A daily evaluation as one Markdown table row per event type plus the false-alarm line. */
export function dailyMarkdown(r: DailyEvalResult): string {
  const lines = ['| Event | Injected | Found | Signals that fired (backups) |', '|---|---:|---:|---|'];
  for (const row of r.rows) {
    const sig = [...row.signals]
      .sort((a, b) => b[1] - a[1])
      .map(([m, n]) => `${m} ${n}`)
      .join(', ');
    lines.push(`| ${row.type} | ${row.injected} | ${row.detected} | ${sig} |`);
  }
  lines.push(`| **all events** | ${r.injected} | **${r.detected}** | |`);
  lines.push('');
  lines.push(
    `Normal backups: ${r.normal} in ${r.runs} histories; false alarms: ${r.falseAlarms} = **${((100 * r.falseAlarms) / r.normal).toFixed(2)} per 100 normal backups**.`,
  );
  return lines.join('\n');
}
