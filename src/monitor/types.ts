// Types shared by run history, anomaly detection, notifications and metrics. Kept apart so
// each of those can be built and tested on its own; only types live here.

/** One backup attempt (success or failure), as kept in the repository's run history. */
export interface RunRecord {
  /** The backup id for a success; for a failure, an id of the same shape that names no manifest. */
  id: string;
  /** ISO time the attempt started. */
  time: string;
  host: string;
  /** The sources as given (absolute paths), sorted. */
  sources: string[];
  /** Stable key of the source set (same sources = comparable backups). */
  sourceKey: string;
  tags: string[];
  kind: 'full' | 'incremental';
  ok: boolean;
  durationMs: number;
  files: number;
  bytesIn: number;
  /** Bytes of file content in the snapshot (read or referenced). */
  bytesTotal: number;
  bytesStored: number;
  compressionRatio: number;
  newFiles: number;
  changedFiles: number;
  deletedFiles: number;
  warnings: number;
  /** Failures: the error message and the operation that failed. */
  error?: string;
  operation?: string;
  /** New and changed files counted by lower-case extension ("" for none), top entries only. */
  extensions?: Record<string, number>;
}

/** One thing the anomaly detector found about a backup. */
export interface AnomalyFinding {
  /** What was measured: bytesIn, bytesStored, durationMs, changeRatio, compressionRatio, files, deletedFiles, extensions, … */
  metric: string;
  /** zscore = the mean ± k·σ rule; robust = median/MAD; rule = a fixed-threshold signal. */
  method: 'zscore' | 'robust' | 'rule';
  current: number;
  expected: number;
  /** σ for zscore, robust z for robust, the measured ratio for rules. */
  score: number;
  threshold: number;
  /** How many earlier comparable backups it was judged on. */
  historySize: number;
  /** One sentence: what is unusual, with numbers. */
  message: string;
  /** What the operator should do about it. */
  recommendation: string;
  severity: 'warning' | 'high';
}

/** What notification channels and metrics sinks are told about. */
export type BackupEvent =
  | ({ type: 'success' } & BackupEventCommon & BackupEventStats)
  | ({ type: 'anomaly' } & BackupEventCommon & BackupEventStats & { findings: AnomalyFinding[] })
  | ({ type: 'failure' } & BackupEventCommon & { error: string; operation: string; logFile?: string });

export interface BackupEventCommon {
  /** ISO timestamp of the event. */
  time: string;
  /** Repository location (never contains a secret). */
  repository: string;
  host: string;
  sources: string[];
}

export interface BackupEventStats {
  backupId: string;
  /** The archive object's key (the "archive name" of the messages); the first one of a split backup. */
  archive: string;
  /** Every archive's key, when the backup was split into several (--archive-size). */
  archives?: string[];
  kind: 'full' | 'incremental';
  files: number;
  bytesIn: number;
  bytesStored: number;
  durationMs: number;
  /** Backups in the repository after this one (the "total backup count" of the messages). */
  backupCount: number;
  warnings: number;
}
