import type { BackupResult } from '../backup/backup.ts';
import type { ResolvedConfig } from '../config/config.ts';
import { publishMetrics } from '../metrics/metrics.ts';
import type { BackupEvent } from '../monitor/types.ts';
import { Repository } from '../repo/repository.ts';
import type { Store } from '../store/store.ts';
import type { DeliveryResult } from '../notify/deliver.ts';
import { backupEvent, failureEvent, selectEvent } from '../notify/events.ts';
import { sendNotifications } from '../notify/notify.ts';
import { type MetricsSettings, metricsSettings, type NotifySettings, notifySettings } from '../notify/settings.ts';

/** What was told about a run: one result per notification channel and per metrics sink. */
export interface RunReport {
  notifications: DeliveryResult[];
  metrics: DeliveryResult[];
}

export interface ReportLog {
  info(msg: string): void;
  warn(msg: string): void;
}

const reports = new WeakMap<object, RunReport>();

/** The report made about a failed run, for `--json` of the error (see main.ts). */
export function reportOf(error: unknown): RunReport | undefined {
  return typeof error === 'object' && error !== null ? reports.get(error) : undefined;
}

export function deliveryFailed(r: RunReport | undefined): boolean {
  return !!r && [...r.notifications, ...r.metrics].some((x) => !x.ok);
}

/**
 * Notifications and metrics after each backup run, for `s3backup backup` and the scheduler.
 * Settings are checked when it is made (a configuration error before the backup starts); after
 * the run nothing here throws.
 */
export class RunReporter {
  readonly notify: NotifySettings;
  readonly metrics: MetricsSettings;
  private readonly o: { repository: string; host?: string | undefined; sources: string[]; log: ReportLog; logFile?: string | undefined };

  constructor(
    cfg: ResolvedConfig,
    o: { sources: string[]; log: ReportLog; logFile?: string | undefined; notifyOn?: string | readonly string[] | undefined },
  ) {
    this.notify = notifySettings(cfg, { notifyOn: o.notifyOn });
    this.metrics = metricsSettings(cfg);
    // The host backups are recorded under (--host, S3BACKUP_HOST, config host), for failures too.
    this.o = { repository: cfg.repository, host: cfg.host?.trim() || undefined, sources: o.sources, log: o.log, logFile: o.logFile };
  }

  private get notifying(): boolean {
    return this.notify.on.size > 0 && !!(this.notify.sns || this.notify.slack || this.notify.webhook || this.notify.email);
  }

  /** After a successful backup, with its store still open (the message counts the backups). */
  async success(result: BackupResult, store: Store): Promise<RunReport> {
    let backupCount = 0;
    if (this.notifying) {
      try {
        backupCount = (await Repository.backupIds(store)).length;
      } catch (e) {
        this.o.log.warn(`could not count the backups for the notification: ${(e as Error).message}`);
      }
    }
    return this.send(
      backupEvent(result, { repository: result.repository, sources: this.o.sources, backupCount, host: result.host ?? this.o.host }),
    );
  }

  /** After a failed backup; the report is also kept with the error (reportOf). */
  async failure(error: unknown): Promise<RunReport> {
    const report = await this.send(
      failureEvent(error, { repository: this.o.repository, host: this.o.host, sources: this.o.sources, logFile: this.o.logFile }),
    );
    if (typeof error === 'object' && error !== null) reports.set(error, report);
    return report;
  }

  private async send(event: BackupEvent): Promise<RunReport> {
    const chosen = selectEvent(event, this.notify.on);
    const [notifications, metrics] = await Promise.all([
      chosen && this.notifying ? sendNotifications(chosen, this.notify, this.o.log) : [],
      publishMetrics(event, this.metrics, this.o.log),
    ]);
    return { notifications, metrics };
  }
}
