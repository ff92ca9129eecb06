import * as os from 'node:os';
import * as path from 'node:path';
import type { BackupResult } from '../backup/backup.ts';
import { failedOperation } from '../backup/operation.ts';
import type { NotifyEventType } from '../config/notify-settings.ts';
import { S3BackupError } from '../errors.ts';
import type { AnomalyFinding, BackupEvent } from '../monitor/types.ts';
import { isStreamSource } from '../repo/groups.ts';

/** What a run was, beyond its result: where and what it backed up. */
export interface RunContext {
  repository: string;
  sources: string[];
  host?: string | undefined;
}

/**
 * The event of a successful backup: an anomaly event when the detector found something (it
 * carries every field of the success event too), else a success event. One event per run, so
 * an anomalous backup sends one message, with the severity of its strongest finding, instead
 * of two. A hold the backup placed on retention goes with it.
 */
export function backupEvent(result: BackupResult, ctx: RunContext & { backupCount: number }): BackupEvent {
  const stats = {
    time: new Date().toISOString(),
    repository: result.repository || ctx.repository,
    // The host the backup is recorded under (--host / S3BACKUP_HOST), not the container's.
    host: ctx.host ?? result.host ?? os.hostname(),
    sources: ctx.sources.map(sourceOf),
    backupId: result.id,
    archive: result.archiveKey,
    ...(result.archiveKeys.length > 1 ? { archives: result.archiveKeys } : {}),
    kind: result.kind,
    files: result.files,
    bytesIn: result.bytesIn,
    bytesStored: result.bytesStored,
    durationMs: result.durationMs,
    backupCount: ctx.backupCount,
    warnings: result.warnings.length,
  };
  const findings = result.anomalies ?? [];
  if (!findings.length) return { type: 'success', ...stats };
  return { type: 'anomaly', ...stats, findings, ...(result.retentionHold ? { retentionHold: result.retentionHold } : {}) };
}

/** The event of a failed backup: the error, the operation that failed and the error log. */
export function failureEvent(error: unknown, ctx: RunContext & { logFile?: string | undefined; durationMs?: number }): BackupEvent {
  const message = error instanceof S3BackupError ? error.message : error instanceof Error ? error.message : String(error);
  const hint = error instanceof S3BackupError && error.hint ? ` (hint: ${error.hint})` : '';
  return {
    type: 'failure',
    time: new Date().toISOString(),
    repository: ctx.repository,
    host: ctx.host ?? os.hostname(),
    sources: ctx.sources.map(sourceOf),
    error: message + hint,
    operation: failedOperation(error) ?? 'backup',
    ...(ctx.logFile ? { logFile: ctx.logFile } : {}),
  };
}

/**
 * The event to send for the events the user asked for (--notify-on), or undefined. An anomaly
 * event goes out as such when "anomaly" is on; when only "success" is on it goes out as a plain
 * success message (the backup did succeed).
 */
export function selectEvent(event: BackupEvent, on: ReadonlySet<NotifyEventType>): BackupEvent | undefined {
  if (on.has(event.type)) return event;
  if (event.type === 'anomaly' && on.has('success')) {
    const { findings: _f, ...rest } = event;
    return { ...rest, type: 'success' };
  }
  return undefined;
}

/** A failure, or an anomaly with at least one high finding: an anomaly of warnings only is normal priority. */
export function isHighPriority(event: BackupEvent): boolean {
  return event.type === 'failure' || (event.type === 'anomaly' && event.findings.some((f) => f.severity === 'high'));
}

/**
 * The anomaly score of a run for metrics: the normalized score (`level`) of its strongest
 * finding, 0 when none; 1 to below 2 is a warning, 2 and above high (docs/anomaly-detection.md).
 */
export function anomalyScore(findings: readonly AnomalyFinding[] | undefined): number {
  let max = 0;
  for (const f of findings ?? []) if (Number.isFinite(f.level)) max = Math.max(max, f.level);
  return Math.round(max * 100) / 100;
}

/** A source as recorded: a path made absolute, a stream (`stdin:NAME`) as it is. */
function sourceOf(s: string): string {
  return isStreamSource(s) ? s : path.resolve(s);
}
