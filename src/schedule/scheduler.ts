import { Cron } from 'croner';
import type { BackupResult } from '../backup/backup.ts';
import type { ConfiguredBackup } from '../backup/options.ts';
export { backupOptionsFromConfig } from '../backup/options.ts';
import { backupAndReport } from '../run/after-backup.ts';
import { bytes, duration } from '../format.ts';
import { S3BackupError, UsageError } from '../errors.ts';
import type { Store } from '../store/store.ts';
import { tagOperation } from '../backup/operation.ts';
import type { RunReporter } from '../run/report.ts';
import type { Hooks } from '../run/hooks.ts';
import { analyzeCost, appendCsv, type CostOptions, usd } from '../cost/report.ts';
import { copyBackups } from '../backup/copy.ts';
import { Repository } from '../repo/repository.ts';
import type { KeySource } from '../crypto/keys.ts';

/**
 * `s3backup schedule`: runs the configured jobs on cron expressions (croner), in the
 * foreground, for Docker/compose and plain servers.
 *
 * - One job at a time per repository: a run that comes due while another job on the same
 *   repository is still running is skipped and logged as missed.
 * - A run that fires late (the process was blocked or the machine asleep) runs once; the times
 *   it slept through are logged as missed.
 * - stop() stops the timers and waits for the running job to finish; abortRunning() makes the
 *   running job stop early (a backup then records nothing).
 */

export type JobName = 'backup' | 'cost' | 'copy';
export const JOB_NAMES: readonly JobName[] = ['backup', 'cost', 'copy'];

export interface SchedulerLog {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface JobOutcome {
  /** Exit code the run would have as a command: 0 ok, 1 failed, 3 finished with warnings. */
  code: number;
  /** One line for the log: what the run did. */
  summary: string;
  /** Extra details, e.g. the backup result (for --json). */
  details?: Record<string, unknown>;
}

export interface JobSpec {
  name: JobName;
  /** Cron expression (5 fields, or 6 with seconds first); undefined: only for runOnce. */
  cron?: string | undefined;
  /** Set when the job cannot run in this version: each due run is logged and skipped. */
  unavailable?: string;
  run(signal: AbortSignal): Promise<JobOutcome>;
}

export interface JobStats {
  runs: number;
  ok: number;
  warnings: number;
  failed: number;
  missed: number;
  skipped: number;
}

export interface SchedulerOptions {
  jobs: JobSpec[];
  /** IANA time zone for the cron expressions; UTC by default. */
  timezone?: string | undefined;
  /** The repository's location: jobs on the same repository never run at the same time. */
  repository: string;
  log: SchedulerLog;
}

/** Time zone check: a clear error instead of a RangeError at the first run. */
export function checkTimezone(tz: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw new UsageError(`unknown time zone ${JSON.stringify(tz)} in schedule.timezone`, {
      hint: 'use an IANA name such as UTC, Europe/Berlin or America/New_York',
    });
  }
}

/** A croner job for an expression (no timer), or a UsageError naming the setting. */
export function parseCron(expr: string, timezone: string | undefined, what: string): Cron {
  try {
    return new Cron(expr, { timezone: timezone ?? 'UTC', mode: '5-or-6-parts', paused: true });
  } catch (e) {
    throw new UsageError(
      `${what}: invalid cron expression ${JSON.stringify(expr)}: ${(e as Error).message.replace(/^CronPattern: /, '')}`,
      {
        hint: 'five fields "minute hour day-of-month month day-of-week" (e.g. "0 2 * * *" for 02:00 daily), or six with seconds first',
      },
    );
  }
}

/** Repository → the job running on it (one job at a time per repository, in this process). */
const running = new Map<string, { job: JobName; started: Date; dueAt: Date }>();

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

export class Scheduler {
  readonly stats = new Map<JobName, JobStats>();
  private readonly opts: SchedulerOptions;
  private readonly crons = new Map<JobName, Cron>();
  /** The due time each job's last firing was for (start: when its timer was set). */
  private readonly lastDue = new Map<JobName, Date>();
  private readonly active = new Set<Promise<void>>();
  private abort = new AbortController();
  private stopping = false;

  constructor(opts: SchedulerOptions) {
    this.opts = opts;
    if (opts.timezone) checkTimezone(opts.timezone);
    for (const j of opts.jobs) {
      this.stats.set(j.name, { runs: 0, ok: 0, warnings: 0, failed: 0, missed: 0, skipped: 0 });
      if (j.cron !== undefined) parseCron(j.cron, opts.timezone, `schedule.${j.name}`).stop();
    }
  }

  get timezone(): string {
    return this.opts.timezone ?? 'UTC';
  }

  /** The next `n` run times of every scheduled job. */
  nextRuns(n = 3): { job: JobName; cron: string; times: Date[] }[] {
    return this.opts.jobs
      .filter((j) => j.cron !== undefined)
      .map((j) => {
        const c = this.crons.get(j.name) ?? parseCron(j.cron!, this.opts.timezone, `schedule.${j.name}`);
        const times = c.nextRuns(n);
        if (!this.crons.has(j.name)) c.stop();
        return { job: j.name, cron: j.cron!, times };
      });
  }

  /** Start the timers. */
  start(): void {
    for (const j of this.opts.jobs) {
      if (j.cron === undefined) continue;
      if (j.unavailable) this.opts.log.warn(`${j.name} job: ${j.unavailable}; its scheduled runs will be skipped`);
      const created = new Date();
      const c = new Cron(
        j.cron,
        {
          timezone: this.timezone,
          mode: '5-or-6-parts',
          catch: (e) => this.opts.log.error(`${j.name} job: internal error: ${(e as Error)?.stack ?? String(e)}`),
        },
        () => this.due(j),
      );
      this.crons.set(j.name, c);
      this.lastDue.set(j.name, created); // croner aims at the first due time after this
    }
  }

  /** A job's timer fired. Never throws (croner would have nowhere to report it). */
  private due(job: JobSpec): void {
    if (this.stopping) return;
    const now = new Date();
    const cron = this.crons.get(job.name)!;
    const stats = this.stats.get(job.name)!;
    // The time this firing is for: the latest due time not after now (croner fires on time or late).
    const dueAt = cron.previousRuns(1, new Date(now.getTime() + 1))[0] ?? now;
    // Due times between the previous firing and this one were slept through (the timer fired
    // late: process blocked, machine suspended); croner runs once for all of them.
    const late: Date[] = [];
    const last = this.lastDue.get(job.name)!;
    for (let t = cron.nextRun(last); t && t.getTime() < dueAt.getTime() && late.length < 100_000; t = cron.nextRun(t)) late.push(t);
    this.lastDue.set(job.name, dueAt);
    if (late.length) {
      stats.missed += late.length;
      const shown = late.slice(0, 5).map(iso).join(', ') + (late.length > 5 ? `, … (${late.length} in all)` : '');
      this.opts.log.warn(
        `${job.name} run(s) due at ${shown} missed: the scheduler was not running then (process blocked or machine asleep); running the one due at ${iso(dueAt)} now, ${((now.getTime() - dueAt.getTime()) / 1000).toFixed(1)} s late`,
      );
    }
    if (job.unavailable) {
      stats.skipped++;
      this.opts.log.warn(`${job.name} run due at ${iso(dueAt)} skipped: ${job.unavailable}`);
      return;
    }
    const busy = running.get(this.opts.repository);
    if (busy) {
      stats.missed++;
      this.opts.log.warn(
        `${job.name} run due at ${iso(dueAt)} missed: the ${busy.job} run started at ${iso(busy.started)} on ${this.opts.repository} is still running (one job at a time per repository)`,
      );
      return;
    }
    const p: Promise<void> = this.execute(job, dueAt).then(
      () => {},
      (e) => this.opts.log.error(`${job.name} job: internal error: ${(e as Error)?.stack ?? String(e)}`),
    );
    this.active.add(p);
    void p.finally(() => this.active.delete(p));
  }

  private async execute(job: JobSpec, dueAt: Date): Promise<JobOutcome | undefined> {
    const stats = this.stats.get(job.name)!;
    const started = new Date();
    running.set(this.opts.repository, { job: job.name, started, dueAt });
    stats.runs++;
    this.opts.log.info(`${job.name} run due at ${iso(dueAt)} started`);
    try {
      const outcome = await job.run(this.abort.signal);
      if (outcome.code === 0) stats.ok++;
      else if (outcome.code === 3) stats.warnings++;
      else stats.failed++;
      const line = `${job.name} run due at ${iso(dueAt)} ${outcome.code === 0 ? 'done' : outcome.code === 3 ? 'done with warnings' : 'failed'}: ${outcome.summary}${this.nextNote(job.name)}`;
      if (outcome.code === 0) this.opts.log.info(line);
      else if (outcome.code === 3) this.opts.log.warn(line);
      else this.opts.log.error(line);
      return outcome;
    } catch (e) {
      stats.failed++;
      const err = e as Error;
      const hint = e instanceof S3BackupError && e.hint ? ` (hint: ${e.hint})` : '';
      this.opts.log.error(
        `${job.name} run due at ${iso(dueAt)} failed: ${e instanceof S3BackupError ? err.message : (err?.stack ?? String(e))}${hint}${this.nextNote(job.name)}`,
      );
      return undefined;
    } finally {
      running.delete(this.opts.repository);
    }
  }

  private nextNote(name: JobName): string {
    if (this.stopping) return '';
    const next = this.crons.get(name)?.nextRun();
    return next ? `; next run at ${iso(next)}` : '';
  }

  /** Run one job now (for --once), under the same one-job-per-repository rule. */
  async runOnce(name: JobName): Promise<JobOutcome> {
    const job = this.opts.jobs.find((j) => j.name === name);
    if (!job) throw new UsageError(`unknown job ${JSON.stringify(name)}`, { hint: `jobs: ${JOB_NAMES.join(', ')}` });
    if (job.unavailable) {
      this.opts.log.warn(`${name} run skipped: ${job.unavailable}`);
      throw new S3BackupError(`the ${name} job cannot run: ${job.unavailable}`);
    }
    const busy = running.get(this.opts.repository);
    if (busy) throw new S3BackupError(`a ${busy.job} run on ${this.opts.repository} is still running`);
    const started = new Date();
    running.set(this.opts.repository, { job: name, started, dueAt: started });
    const stats = this.stats.get(name)!;
    stats.runs++;
    this.opts.log.info(`${name} run (--once) started`);
    const run = job.run(this.abort.signal);
    // Tracked like a scheduled run, so that stop() and busy see it.
    const tracked: Promise<void> = run.then(
      () => {},
      () => {},
    );
    this.active.add(tracked);
    void tracked.finally(() => this.active.delete(tracked));
    try {
      const outcome = await run;
      if (outcome.code === 0) stats.ok++;
      else if (outcome.code === 3) stats.warnings++;
      else stats.failed++;
      const line = `${name} run (--once) ${outcome.code === 0 ? 'done' : 'done with warnings'}: ${outcome.summary}`;
      if (outcome.code === 0) this.opts.log.info(line);
      else this.opts.log.warn(line);
      return outcome;
    } catch (e) {
      stats.failed++;
      this.opts.log.error(`${name} run (--once) failed: ${(e as Error)?.message ?? String(e)}`);
      throw e;
    } finally {
      running.delete(this.opts.repository);
    }
  }

  /** Is a job of this scheduler running now? */
  get busy(): { job: JobName; started: Date } | undefined {
    return this.active.size > 0 ? running.get(this.opts.repository) : undefined;
  }

  /** Stop the timers; resolves once the running job, if any, has finished. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const c of this.crons.values()) c.stop();
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
  }

  /** Ask the running job to stop early (a backup then records nothing). */
  abortRunning(): void {
    this.abort.abort();
    this.abort = new AbortController();
  }
}

/**
 * The backup job: what `s3backup backup` does (src/run/after-backup.ts), opening the store for
 * the run and closing it after, with warnings and the result in the log (backup.log).
 */
export function backupJob(o: {
  openStore: () => Promise<Store>;
  options: ConfiguredBackup;
  /** The log backup runs write to (RunLog for command "backup"). */
  log: SchedulerLog;
  /** Every result, e.g. to print it. */
  onResult?: (r: BackupResult) => void;
  /** Notifications and metrics after each run (success, anomaly or failure). */
  reporter?: RunReporter;
  /** Commands around each run (config "hooks"). */
  hooks?: Hooks;
}): JobSpec['run'] {
  const { retention, ...options } = o.options;
  const after = { log: o.log, reporter: o.reporter, retention, hooks: o.hooks };
  return async (signal) => {
    let store: Store | undefined;
    try {
      store = await o.openStore().catch(async (e: unknown) => {
        // Not even opened: reported as the backup's failure before anything ran.
        await o.reporter?.failure(tagOperation(e, 'pre-flight'));
        throw e;
      });
      const { result: r, report } = await backupAndReport({ ...options, store, signal }, after);
      const undelivered = [...report.notifications, ...report.metrics].filter((x) => !x.ok).map((x) => x.channel);
      const counts = `${r.files} files, ${bytes(r.bytesIn)} in, ${bytes(r.bytesStored)} stored, ${duration(r.durationMs)}, ${r.warnings.length} warnings`;
      const summary = `backup ${r.id} (${r.kind}): ${counts}${undelivered.length ? `; not delivered to ${undelivered.join(', ')}` : ''}`;
      o.onResult?.(r);
      return {
        code: r.warnings.length || undelivered.length ? 3 : 0,
        summary,
        details: { ...r, warningCount: r.warnings.length, ...report },
      };
    } finally {
      await store?.close();
    }
  };
}

/**
 * The cost job: what `s3backup cost` does (src/cost/report.ts), with the report's totals and
 * warnings in the log and, with a CSV file, one row appended to it per run.
 */
export function costJob(o: {
  openStore: () => Promise<Store>;
  options: Omit<CostOptions, 'onProgress'>;
  saveCsv?: string | undefined;
  log: SchedulerLog;
}): JobSpec['run'] {
  return async () => {
    const store = await o.openStore();
    try {
      o.log.info(`cost analysis of ${store.location} started`);
      const r = await analyzeCost(store, o.options);
      if (o.saveCsv) appendCsv(o.saveCsv, r);
      for (const w of r.warnings) o.log.warn(`cost: ${w.message}`);
      const summary =
        `cost of ${r.repository}: ${r.totalObjects} objects, ${bytes(r.totalBytes)}, ${usd(r.current.monthlyCost)}/month now; ` +
        `lifecycle saves ${usd(r.savings.currentVsNone.monthly)}/month, recommended ${usd(r.savings.recommendedVsNone.monthly)}/month` +
        (o.saveCsv ? `; row appended to ${o.saveCsv}` : '');
      o.log.info(summary);
      return { code: 0, summary, details: { report: r } };
    } finally {
      await store.close();
    }
  };
}

/** The copy job: every backup the second repository does not have yet (s3backup copy --all). */
export function copyJob(o: {
  openStores: () => Promise<{ from: Store; to: Store }>;
  keys: { from: KeySource; to: KeySource };
  log: SchedulerLog;
}): JobSpec['run'] {
  return async (signal) => {
    const { from, to } = await o.openStores();
    try {
      const r = await copyBackups({
        from: await Repository.open(from, o.keys.from),
        to: await Repository.open(to, o.keys.to),
        signal,
        onProgress: (p) => o.log.info(`copy: ${p.id} (${p.index + 1} of ${p.total}) to ${to.location}`),
      });
      const summary = `copy to ${r.to}: ${r.copied.length} backup(s) copied, ${r.archivesCopied} archive(s) sent (${bytes(r.bytesWritten)}), ${r.present.length} already there`;
      return { code: 0, summary, details: { copy: r } };
    } finally {
      await from.close();
      await to.close();
    }
  };
}
