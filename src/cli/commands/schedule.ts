import type { Command } from 'commander';
import { resolveSources } from '../../backup/backup.ts';
import { UsageError } from '../../errors.ts';
import { RunLog } from '../../log/runlog.ts';
import { RunReporter } from '../../run/report.ts';
import { hooksOf } from '../../run/hooks.ts';
import { HookSettings } from '../../config/hook-settings.ts';
import {
  backupJob,
  backupOptionsFromConfig,
  copyJob,
  costJob,
  JOB_NAMES,
  type JobName,
  type JobSpec,
  Scheduler,
  type SchedulerLog,
} from '../../schedule/scheduler.ts';
import { BackupSettings } from '../../config/backup-settings.ts';
import { NotificationSettings } from '../../config/notify-settings.ts';
import { ScheduleSettings } from '../../config/schedule-settings.ts';
import { type FlagOptions, resolveSettings } from '../../config/settings.ts';
import { bucketLocation, openLocation, readOnlyLocation } from '../../store/open.ts';
import { readPasswordFile } from '../passphrase.ts';
import { destination } from './copy.ts';
import { costSettingsOf } from '../../cost/settings.ts';
import { type CommonOpts, EXIT, emitJson, exitWith, isJsonMode, out, setup, withCommon } from '../common.ts';
import { flagValues, settingOptions } from '../settings.ts';

// s3backup schedule: the configured jobs on their cron expressions, in the foreground
// (Docker/compose, plain servers); --once JOB runs one job now and exits (cron/systemd).

type ScheduleOpts = CommonOpts &
  FlagOptions<typeof ScheduleSettings> &
  Pick<FlagOptions<typeof BackupSettings>, 'host'> &
  FlagOptions<typeof NotificationSettings> & { once?: string };

/** Log lines go to backup.log (RunLog) and, timestamped, to the console (Docker logs). */
function echoing(log: RunLog): SchedulerLog {
  const echo = (level: string, msg: string) => {
    const line = `${new Date().toISOString()} ${level.padEnd(5)} ${msg}\n`;
    // stdout belongs to the one JSON document in --json mode.
    (isJsonMode() ? process.stderr : process.stdout).write(line);
  };
  return {
    info: (m) => {
      log.info(m);
      echo('INFO', m);
    },
    warn: (m) => {
      log.warn(m);
      echo('WARN', m);
    },
    error: (m) => {
      log.error(m);
      echo('ERROR', m);
    },
  };
}

/** The copy job: every new backup of the repository into copy.to, checked now rather than at 02:00. */
function copyJobSpec(
  cfg: Awaited<ReturnType<typeof setup>>['cfg'],
  location: Awaited<ReturnType<typeof setup>>['location'],
  keys: Awaited<ReturnType<typeof setup>>['keys'],
  cron: string | undefined,
  log: SchedulerLog,
): JobSpec {
  const to = cfg.copy?.to;
  if (!to) {
    throw new UsageError('the copy job needs copy.to in the configuration: the repository to copy backups into', {
      hint: 'add e.g. "copy: {to: s3://offsite-bucket/backups, passwordFile: /etc/s3backup/offsite.pass}" to s3backup.yaml',
    });
  }
  const toLocation = destination(to, cfg, {});
  const toPass = cfg.copy?.passwordFile ? { passphrase: readPasswordFile(cfg.copy.passwordFile, 'copy.passwordFile') } : {};
  return {
    name: 'copy',
    cron,
    run: copyJob({
      openStores: async () => ({ from: await openLocation(location), to: await openLocation(toLocation) }),
      // No prompt: nobody is at the terminal when a scheduled copy runs.
      keys: { from: { ...keys, prompt: undefined }, to: { ...toPass, kms: keys.kms } },
      log,
    }),
  };
}

async function cmdSchedule(paths: string[], opts: ScheduleOpts): Promise<void> {
  const { cfg, location, store, keys } = await setup(opts, 'schedule', flagValues(BackupSettings, opts));
  await store.close(); // each run opens its own
  const schedule = resolveSettings(ScheduleSettings, { flags: flagValues(ScheduleSettings, opts), file: cfg.schedule });
  if (opts.once !== undefined && !JOB_NAMES.includes(opts.once as JobName)) {
    throw new UsageError(`--once: unknown job ${JSON.stringify(opts.once)}`, { hint: `jobs: ${JOB_NAMES.join(', ')}` });
  }
  const log = echoing(new RunLog(cfg.logDir, 'schedule'));
  const backupLog = echoing(new RunLog(cfg.logDir, 'backup'));
  const wantBackup = opts.once === 'backup' || (opts.once === undefined && schedule.backup !== undefined);
  const jobs: JobSpec[] = [];
  if (wantBackup) {
    const options = backupOptionsFromConfig(cfg, paths, { location });
    resolveSources(options.sources); // a missing source is a configuration error now, not at 02:00
    jobs.push({
      name: 'backup',
      cron: schedule.backup,
      run: backupJob({
        openStore: () => openLocation(location),
        // No prompt: nobody is at the terminal when a scheduled backup runs.
        options: { ...options, keys: { ...keys, prompt: undefined } },
        log: backupLog,
        hooks: hooksOf(resolveSettings(HookSettings, { file: cfg.hooks })),
        reporter: new RunReporter(cfg, {
          sources: options.sources,
          log: backupLog,
          logFile: new RunLog(cfg.logDir, 'backup').errorFile,
          notifyOn: opts.notifyOn,
        }),
      }),
    });
  }
  if (opts.once === 'cost' || (opts.once === undefined && schedule.cost !== undefined)) {
    const cost = costSettingsOf(cfg);
    jobs.push({
      name: 'cost',
      cron: schedule.cost,
      run: costJob({
        openStore: () => openLocation(readOnlyLocation(location)),
        options: {
          keys: { ...keys, prompt: undefined },
          prices: cost.pricesFor(cost.region),
          months: cost.months,
          policy: cost.policy,
          policySource: cost.policySource,
          openBucket: (bucket) => openLocation(bucketLocation(location, bucket)),
        },
        saveCsv: cost.saveCsv,
        log,
      }),
    });
  }
  if (opts.once === 'copy' || (opts.once === undefined && schedule.copy !== undefined))
    jobs.push(copyJobSpec(cfg, location, keys, schedule.copy, log));
  if (jobs.length === 0) {
    throw new UsageError('nothing to schedule: no schedule.backup or schedule.cost in the configuration', {
      hint: "add e.g. \"schedule: {backup: '0 2 * * *'}\" to s3backup.yaml, or give --backup-cron '0 2 * * *' (or run one job now with --once backup)",
    });
  }
  if (opts.once !== undefined) {
    // Cron expressions do not matter for one run now.
    for (const j of jobs) delete j.cron;
  }
  const scheduler = new Scheduler({ jobs, timezone: schedule.timezone, repository: cfg.repository, log });

  // SIGTERM / Ctrl-C: let the running job finish, then exit 0. Again: interrupt it. A third time: exit now.
  let signals = 0;
  let interrupted = false;
  let finish = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    const busy = scheduler.busy;
    if (signals === 1) {
      log.info(
        busy
          ? `${sig} received: waiting for the ${busy.job} run started at ${busy.started.toISOString()} to finish, then exiting (send it again to interrupt the run)`
          : `${sig} received: no job running, exiting`,
      );
      void scheduler.stop().then(finish);
    } else if (signals === 2 && busy) {
      log.warn(`${sig} received again: interrupting the ${busy.job} run (a backup interrupted now records nothing)`);
      interrupted = true;
      scheduler.abortRunning();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  if (opts.once !== undefined) {
    const job = opts.once as JobName;
    const outcome = await scheduler.runOnce(job);
    if (opts.json) emitJson({ ok: true, job, ...outcome.details, code: outcome.code, summary: outcome.summary });
    else out(outcome.summary);
    if (interrupted) exitWith(130);
    if (outcome.code !== EXIT.ok) exitWith(outcome.code);
    return;
  }

  scheduler.start();
  const tz = scheduler.timezone;
  log.info(`scheduler started (pid ${process.pid}) for ${cfg.repository}; cron expressions in time zone ${tz}, times shown in UTC`);
  for (const n of scheduler.nextRuns(3)) {
    const j = jobs.find((x) => x.name === n.job)!;
    log.info(
      `${n.job} job "${n.cron}": ${j.unavailable ? `${j.unavailable}; runs will be skipped` : `next runs at ${n.times.map((t) => t.toISOString()).join(', ')}`}`,
    );
  }
  if (!opts.json) out('running in the foreground; SIGTERM or Ctrl-C stops it once the running job (if any) has finished');

  // Runs until a signal stops the scheduler.
  const keepAlive = setInterval(() => {}, 1 << 30);
  await finished;
  clearInterval(keepAlive);
  const stats = Object.fromEntries(scheduler.stats);
  const total = [...scheduler.stats.values()];
  log.info(
    `scheduler stopped: ${total.reduce((a, s) => a + s.runs, 0)} run(s), ${total.reduce((a, s) => a + s.failed, 0)} failed, ${total.reduce((a, s) => a + s.missed, 0)} missed`,
  );
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if (opts.json) emitJson({ ok: true, repository: cfg.repository, timezone: tz, jobs: stats });
  if (interrupted) exitWith(130);
}

export function registerSchedule(program: Command): void {
  const cron = settingOptions(ScheduleSettings);
  const host = settingOptions(BackupSettings, {
    host: 'record the backups under this host name instead of the machine\'s (env S3BACKUP_HOST, config "host"; see backup --help)',
  }).host;
  const notifyOn = settingOptions(NotificationSettings, {
    on: 'notify on these events: success,failure,anomaly (default all three, or notify.on)',
  }).on;
  withCommon(
    program
      .command('schedule')
      .description('run the configured jobs (schedule.backup, schedule.cost, schedule.copy) on their cron expressions, in the foreground')
      .argument('[paths...]', 'what the backup job backs up (default: "sources" from the config file)')
      .option('--once <job>', `run one job now and exit (${JOB_NAMES.join(' or ')}), e.g. from cron or a systemd timer`)
      .addOption(cron.backup)
      .addOption(cron.cost)
      .addOption(cron.copy)
      .addOption(cron.timezone)
      .addOption(host)
      .addOption(notifyOn)
      .addHelpText(
        'after',
        `
Configuration (s3backup.yaml):
  sources: [/srv/data]
  schedule:
    backup: "0 2 * * *"        # 02:00 every day; 6 fields = seconds first
    cost: "0 3 * * 0"          # s3backup cost; with cost.saveCsv each run appends a CSV row
    timezone: Europe/Berlin    # default UTC

Each run is what "s3backup backup" does with the configuration (sources, excludes, tags,
compression), logged to backup.log, with the same notifications and metrics; each cost run is
"s3backup cost" (a row appended to cost.saveCsv if set), logged there too. One job at a time
per repository: a run that comes due
while the previous one is still going is skipped and logged as missed, as are runs the
process slept through. SIGTERM or Ctrl-C lets a running job finish, then exits 0 (a second
signal interrupts the job; a backup interrupted that way records nothing).

Examples:
  s3backup schedule                                   jobs and times from s3backup.yaml
  s3backup schedule /srv/data --backup-cron '30 1 * * *' --repo s3://bucket/host1
  s3backup schedule --once backup                     one backup now, as configured
  s3backup schedule --once cost                       one cost analysis now`,
      ),
  ).action(cmdSchedule);
}
