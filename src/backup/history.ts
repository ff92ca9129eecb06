import * as os from 'node:os';
import { detectAnomalies } from '../monitor/anomaly.ts';
import { appendRun, readHistory, sourceKeyOf } from '../monitor/history.ts';
import { holdFor, placeHold } from '../monitor/holds.ts';
import type { RunRecord } from '../monitor/types.ts';
import { type HistoryCrypto, newSnapshotId, Repository } from '../repo/repository.ts';
import type { Store } from '../store/store.ts';
import { LevelError } from './compression.ts';
import type { BackupOperation } from './operation.ts';
import type { BackupOptions, BackupResult } from './types.ts';

// Stage "history": the run record of every backup (history/), a success judged against earlier
// comparable runs first (anomalies), a failure recorded with where it failed. Never fails a backup.

/** Keep the record small: the most common extensions only. */
const MAX_EXTENSIONS = 20;

/** What the run is doing (for a failure record) and what it has counted beside the stats. */
export interface RunState {
  operation: BackupOperation;
  kind: 'full' | 'incremental';
  /** New and changed files by lower-case extension. */
  extensions: Map<string, number>;
  /** The repository exists (opened or created): failures may be recorded in it. */
  repoOpen: boolean;
  /** An encrypted repository's sealing of run records. */
  historyCrypto?: HistoryCrypto | undefined;
}

/**
 * The failure record of a run that failed (best effort, and never in place of the real error),
 * if there is somewhere to put it.
 */
export async function recordFailedRun(
  opts: BackupOptions,
  e: unknown,
  paths: string[],
  started: Date,
  t0: number,
  run: RunState,
): Promise<void> {
  // A level that does not fit its codec is refused before anything is written, and leaves
  // nothing behind: no failure record either.
  if (opts.history === false || e instanceof LevelError) return;
  // Only into an s3backup repository that exists: never create one, or write into something
  // else, just to say that a backup failed. An encrypted one only once it is open (its
  // records are sealed with its key).
  const ok = run.repoOpen || (await plainRepositoryExists(opts.store));
  if (ok) await recordFailure(opts, e, paths, started, t0, run);
}

/** A failure record: best effort, and never in place of the real error. */
async function recordFailure(opts: BackupOptions, e: unknown, paths: string[], started: Date, t0: number, run: RunState): Promise<void> {
  const host = opts.host ?? os.hostname();
  const record: RunRecord = {
    ...emptyRecord(),
    id: newSnapshotId(started),
    time: started.toISOString(),
    host,
    sources: [...paths].sort(),
    sourceKey: sourceKeyOf(host, paths),
    tags: opts.tags ?? [],
    kind: run.kind,
    ok: false,
    durationMs: Math.round(performance.now() - t0),
    error: e instanceof Error ? e.message : String(e),
    operation: run.operation,
  };
  await appendRun(opts.store, record, { crypto: run.historyCrypto }).catch((err: unknown) =>
    opts.onWarning?.(`run history: failure record not written: ${(err as Error).message}`),
  );
}

/** Whether an unencrypted s3backup repository is there (its config.json says so). */
async function plainRepositoryExists(store: Store): Promise<boolean> {
  return Repository.readConfig(store).then(
    (config) => !config.encryption,
    () => false,
  );
}

function emptyRecord(): Omit<RunRecord, 'id' | 'time' | 'host' | 'sources' | 'sourceKey' | 'tags' | 'kind' | 'ok'> {
  return {
    durationMs: 0,
    files: 0,
    bytesIn: 0,
    bytesTotal: 0,
    bytesStored: 0,
    compressionRatio: 1,
    newFiles: 0,
    changedFiles: 0,
    deletedFiles: 0,
    warnings: 0,
  };
}

/** The run record of a successful backup (what the history keeps of it). */
export function runRecordOf(
  result: BackupResult,
  host: string,
  sources: string[],
  tags: string[],
  extensions: Record<string, number> = {},
): RunRecord {
  const paths = [...sources].sort();
  return {
    id: result.id,
    time: result.time,
    host,
    sources: paths,
    sourceKey: sourceKeyOf(host, paths),
    tags,
    kind: result.kind,
    ok: true,
    durationMs: result.durationMs,
    files: result.files,
    bytesIn: result.bytesIn,
    bytesTotal: result.bytesTotal ?? 0,
    bytesStored: result.bytesStored,
    compressionRatio: result.compressionRatio,
    newFiles: result.newFiles ?? 0,
    changedFiles: result.changedFiles ?? 0,
    deletedFiles: result.deletedFiles ?? 0,
    warnings: result.warnings.length,
    extensions,
  };
}

/**
 * Judge the backup against the history (result.anomalies), then add its record. A failure here
 * is a warning: the backup itself is already safely recorded.
 */
export async function recordRun(opts: BackupOptions, result: BackupResult, sources: { path: string }[], run: RunState): Promise<void> {
  const top = [...run.extensions].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_EXTENSIONS);
  const record = runRecordOf(
    result,
    opts.host ?? os.hostname(),
    sources.map((s) => s.path),
    opts.tags ?? [],
    Object.fromEntries(top),
  );
  const warn = warnerOf(result, opts.onWarning);
  try {
    const history = await readHistory(opts.store, { crypto: run.historyCrypto });
    result.anomalies = detectAnomalies(record, history, opts.history ? (opts.history.detector ?? {}) : {});
  } catch (e) {
    warn(`run history could not be read, no anomaly detection for backup ${result.id}: ${(e as Error).message}`);
  }
  // A ransomware-class finding holds retention of this host and sources until acknowledged:
  // written before the run record, so the retention after this backup already sees it.
  const hold = holdFor(record, result.anomalies ?? []);
  if (hold) {
    try {
      await placeHold(opts.store, hold, run.historyCrypto);
      result.retentionHold = hold;
    } catch (e) {
      warn(`anomaly hold of backup ${result.id} not written, retention is NOT suspended: ${(e as Error).message}`);
    }
  }
  try {
    await appendRun(opts.store, record, { crypto: run.historyCrypto, onWarning: warn });
  } catch (e) {
    warn(`run record of backup ${result.id} not written to the history: ${(e as Error).message}`);
  }
}

/** A warning of a finished backup: kept in its result, and passed on as it happens. */
export function warnerOf(result: { warnings: string[] }, onWarning: ((m: string) => void) | undefined): (m: string) => void {
  return (m) => {
    result.warnings.push(m);
    onWarning?.(m);
  };
}
