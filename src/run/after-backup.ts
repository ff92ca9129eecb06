import { type BackupOptions, type BackupResult, recordBackup } from '../backup/backup.ts';
import type { RetentionSetting } from '../backup/options.ts';
import { bytes, duration } from '../format.ts';
import { errTextWithHint } from '../errors.ts';
import { beforeHookError, type Hooks, type HookStage, runHooks } from './hooks.ts';
import { tagOperation } from '../backup/operation.ts';
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
  /** Commands before, after, on failure and always (src/run/hooks.ts); none when undefined. */
  hooks?: Hooks | undefined;
}

/**
 * One backup, then: retention (never a failed backup: a warning), the after and always hooks
 * (a failure is a warning), the log lines, and the notifications and metrics of the outcome. A
 * failed backup (a failing before hook included: nothing is written then) runs the onFailure
 * and always hooks, is reported (notifications, metrics; see reportOf for the report) and its
 * error thrown.
 */
export async function backupAndReport(options: BackupOptions, after: AfterBackup): Promise<{ result: BackupResult; report: RunReport }> {
  const log = after.log;
  const hook = hookRunner(options, after);
  log.info(`backup of ${options.sources.join(', ')} to ${options.store.location} started`);
  let recorded: Awaited<ReturnType<typeof recordBackup>>;
  try {
    const [failure] = await hook('before', { S3BACKUP_STATUS: 'running' });
    if (failure) throw tagOperation(beforeHookError(failure), 'pre-flight');
    recorded = await recordBackup({ ...options, onWarning: (w) => log.warn(w) });
  } catch (e) {
    const failed = { S3BACKUP_STATUS: 'failure', S3BACKUP_ERROR: errText(e) };
    await hook('onFailure', failed);
    await hook('always', failed);
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
  for (const stage of ['after', 'always'] as const) {
    for (const f of await hook(stage, resultFacts(result))) result.warnings.push(f);
  }
  log.info(
    `backup ${result.id} done: ${result.files} files, ${bytes(result.bytesIn)} in, ${bytes(result.bytesStored)} stored, ${duration(result.durationMs)}, ` +
      `${result.skipped} not backed up, ${result.changedWhileRead ?? 0} changed while read, ${result.warnings.length} warnings`,
  );
  for (const f of result.anomalies ?? []) log.warn(`anomaly in backup ${result.id}: ${f.metric}: ${f.message}`);
  if (result.hostWarning) log.warn(`${result.hostWarning.message}; ${result.hostWarning.hint}`);
  const report = (await after.reporter?.success(result, options.store)) ?? { notifications: [], metrics: [] };
  return { result, report };
}

/** The hooks of a stage with the run's common facts (repository, sources, host); a no-op without hooks. */
function hookRunner(options: BackupOptions, after: AfterBackup) {
  const common: Record<string, string> = {
    S3BACKUP_REPO: options.store.location,
    // One source a line: a path may hold spaces, hardly ever a newline.
    S3BACKUP_SOURCES: options.sources.join('\n'),
    ...(options.host ? { S3BACKUP_HOST: options.host } : {}),
  };
  // An interrupt stops a before hook (a long dump for a backup that will not run); the hooks
  // after it still run, to clean up and tell of the interrupted run.
  return async (stage: HookStage, facts: Record<string, string>): Promise<string[]> =>
    after.hooks
      ? runHooks(stage, after.hooks, { ...common, ...facts }, { log: after.log, signal: stage === 'before' ? options.signal : undefined })
      : [];
}

/** What the after and always hooks are told about a recorded backup. */
function resultFacts(r: BackupResult): Record<string, string> {
  return {
    S3BACKUP_STATUS: r.warnings.length ? 'warning' : 'success',
    S3BACKUP_BACKUP_ID: r.id,
    S3BACKUP_BACKUP_KIND: r.kind,
    ...(r.host ? { S3BACKUP_HOST: r.host } : {}),
    S3BACKUP_FILES: String(r.files),
    S3BACKUP_BYTES_IN: String(r.bytesIn),
    S3BACKUP_BYTES_STORED: String(r.bytesStored),
    S3BACKUP_DURATION_MS: String(r.durationMs),
    S3BACKUP_WARNINGS: String(r.warnings.length),
  };
}

/** An error's message on one line, for S3BACKUP_ERROR. */
function errText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');
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
        const f = await forget(repo, { policy: retention.policy, lock, onWarning: warn });
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
