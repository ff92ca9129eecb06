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
  /** high: act now (encryption, mass deletion, a truncated backup); warning: worth a look. */
  severity: 'warning' | 'high';
  /**
   * The normalized score, one unit across signals (docs/anomaly-detection.md "Severity and
   * score"): a warning scores 1 to below 2, a high finding 2 to below 3, higher within its band
   * the further past its threshold it is. `score` keeps the signal's own measure.
   */
  level: number;
  /**
   * A ransomware-class finding (change ratio, compression collapse of rewritten files, a known
   * ransomware extension, mass deletion): retention of its group is held until acknowledged.
   */
  ransomware?: boolean;
}

/** What notification channels and metrics sinks are told about. */
export type BackupEvent =
  | ({ type: 'success' } & BackupEventCommon & BackupEventStats)
  | ({ type: 'anomaly' } & BackupEventCommon & BackupEventStats & { findings: AnomalyFinding[]; retentionHold?: RetentionHold })
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

/**
 * Retention suspended for a group because a backup raised a ransomware-class finding
 * (docs/anomaly-detection.md "Anomaly hold"): no backup of the host and sources is forgotten,
 * by the automatic retention or by forget without --force, until the finding is acknowledged.
 */
export interface RetentionHold {
  /** The backup whose findings placed the hold (the id `s3backup anomalies ack` takes). */
  backupId: string;
  /** ISO time of that backup. */
  time: string;
  host: string;
  sources: string[];
  /** Stable key of the source set (RunRecord.sourceKey). */
  sourceKey: string;
  /** The ransomware-class findings, in a few words each (metric: message). */
  reasons: string[];
}
