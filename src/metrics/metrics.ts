import type { BackupEvent } from '../monitor/types.ts';
import { type DeliveryResult, deliver } from '../notify/deliver.ts';
import { anomalyScore } from '../notify/events.ts';
import type { MetricsSettings } from '../notify/settings.ts';
import { putCloudWatchMetrics } from './cloudwatch.ts';
import { writePrometheusTextfile } from './prometheus.ts';

/**
 * The numbers of one backup run, for CloudWatch and Prometheus. A failed run has only
 * ok = false: its size and file count would describe nothing that was kept.
 */
export interface RunMetrics {
  ok: boolean;
  /** When the run ended. */
  time: Date;
  repository: string;
  /** The sources, comma-separated (the "source" dimension / label). */
  source: string;
  durationSeconds?: number;
  sizeBytes?: number;
  files?: number;
  anomalyScore?: number;
}

export function runMetrics(event: BackupEvent): RunMetrics {
  const base = { time: new Date(event.time), repository: event.repository, source: event.sources.join(',') };
  if (event.type === 'failure') return { ...base, ok: false };
  return {
    ...base,
    ok: true,
    durationSeconds: Math.round(event.durationMs) / 1000,
    sizeBytes: event.bytesStored,
    files: event.files,
    anomalyScore: event.type === 'anomaly' ? anomalyScore(event.findings) : 0,
  };
}

export interface MetricsLog {
  info(msg: string): void;
  warn(msg: string): void;
}

/**
 * Write the run's metrics to every configured sink (CloudWatch, Prometheus textfile), in
 * parallel. Never throws: a sink that fails is logged as a warning and reported.
 */
export async function publishMetrics(event: BackupEvent, s: MetricsSettings, log: MetricsLog): Promise<DeliveryResult[]> {
  const m = runMetrics(event);
  const jobs: Promise<DeliveryResult>[] = [];
  const opts = { timeoutMs: s.timeoutMs, retries: s.retries, backoffMs: s.backoffMs, secrets: [] };
  if (s.cloudwatch) jobs.push(deliver('cloudwatch', (sig) => putCloudWatchMetrics(s.cloudwatch!, m, sig), opts));
  if (s.prometheus) {
    // A local file: one attempt, no retries.
    jobs.push(deliver('prometheus', async () => writePrometheusTextfile(s.prometheus!.textfile, m), { ...opts, retries: 0 }));
  }
  const results = await Promise.all(jobs);
  for (const r of results) {
    if (r.ok) log.info(`metrics written to ${r.channel}${r.channel === 'prometheus' ? ` (${s.prometheus!.textfile})` : ''}`);
    else log.warn(`metrics not written to ${r.channel}: ${r.error}`);
  }
  return results;
}
