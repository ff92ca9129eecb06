import { type BackupOptions, type BackupResult, recordBackup } from '../backup/backup.ts';
import type { RetentionSetting } from '../backup/options.ts';
import { bytes, duration } from '../format.ts';
import { errTextWithHint } from '../errors.ts';
import type { RunReport, RunReporter } from './report.ts';
import { forget, prune } from '../prune/prune.ts';
import { withLock } from '../repo/locks.ts';
import type { Repository } from '../repo/repository.ts';

// A backup and the steps after it, the one path of `s3backup backup` and the scheduler's backup
// job: retention, the log lines, notifications and metrics. (The run's history record and
// anomaly detection are the backup's own last stage: src/backup/history.ts.) It sits above
// backup, prune and notify and below cli and schedule, which call it.

/** Where the steps after a backup go. */
export interface AfterBackup {
  /** The backup's log (backup.log): its start, warnings, "done" line, anomalies, host warning. */
  log: { info(msg: string): void; warn(msg: string): void };
  /** Notifications and metrics, success or failure (their settings are checked when it is made). */
  reporter?: RunReporter | undefined;
  /** Forget and prune by this policy once the backup is recorded; none when undefined. */
  retention?: RetentionSetting | undefined;
}

/**
 * One backup, then: retention (never a failed backup: a warning), the log lines, and the
 * notifications and metrics of the outcome. A failed backup is reported (notifications, metrics;
 * see reportOf for the report) and its error thrown.
 */
export async function backupAndReport(options: BackupOptions, after: AfterBackup): Promise<{ result: BackupResult; report: RunReport }> {
  const log = after.log;
  log.info(`backup of ${options.sources.join(', ')} to ${options.store.location} started`);
  let recorded: Awaited<ReturnType<typeof recordBackup>>;
  try {
    recorded = await recordBackup({ ...options, onWarning: (w) => log.warn(w) });
  } catch (e) {
    await after.reporter?.failure(e);
    throw e;
  }
  const { result, repo, lockLeft } = recorded;
  const warn = (m: string) => {
    result.warnings.push(m);
    log.warn(m);
  };
  if (after.retention && lockLeft) {
    // Forget needs the repository to itself, and this run's own lock is still there: waiting
    // for it would only end in a "locked" error minutes later.
    const error = "this backup's own lock is still in the repository (see the warning above), and forget needs the repository to itself";
    warn(`retention policy not applied after backup ${result.id}: ${error}`);
    result.retention = { error };
  } else if (after.retention) result.retention = await applyRetention(repo, after.retention, result.id, warn);
  log.info(
    `backup ${result.id} done: ${result.files} files, ${bytes(result.bytesIn)} in, ${bytes(result.bytesStored)} stored, ${duration(result.durationMs)}, ` +
      `${result.skipped} not backed up, ${result.changedWhileRead ?? 0} changed while read, ${result.warnings.length} warnings`,
  );
  for (const f of result.anomalies ?? []) log.warn(`anomaly in backup ${result.id}: ${f.metric}: ${f.message}`);
  if (result.hostWarning) log.warn(`${result.hostWarning.message}; ${result.hostWarning.hint}`);
  const report = (await after.reporter?.success(result, options.store)) ?? { notifications: [], metrics: [] };
  return { result, report };
}

/**
 * Forget and prune after a backup: under an exclusive lock, waiting for other backups to
 * finish. Reported, never thrown: the backup itself is already safely recorded.
 */
async function applyRetention(
  repo: Repository,
  retention: RetentionSetting,
  id: string,
  warn: (m: string) => void,
): Promise<BackupResult['retention']> {
  try {
    const opts = { exclusive: true, command: 'forget (after backup)', waitMs: 5 * 60_000 };
    const unreleased = (e: unknown) =>
      warn(
        `the lock of the retention after backup ${id} could not be removed (${errTextWithHint(e)}); "s3backup unlock" removes it once it is stale`,
      );
    return await withLock(
      repo.store,
      opts,
      async (lock) => {
        const f = await forget(repo, { policy: retention.policy, lock });
        const p = await prune(repo, { forgotten: f.removed, lock });
        return { removed: f.removed, bytesFreed: p.bytesFreed };
      },
      unreleased,
    );
  } catch (e) {
    // A denied delete names the permission and where it is missing (its hint): say both.
    warn(`retention policy not applied after backup ${id}: ${errTextWithHint(e)}`);
    return { error: (e as Error).message };
  }
}
