import type { Command } from 'commander';
import { DashboardSettings } from '../../config/dashboard-settings.ts';
import { type FlagOptions, resolveSettings } from '../../config/settings.ts';
import { parseCalendarDuration } from '../../retention/policy.ts';
import { parseCron } from '../../schedule/scheduler.ts';
import { type CommonOpts, emitJson, note, out, setup, withCommon } from '../common.ts';
import { duration } from '../../format.ts';
import { flagValues, settingOptions } from '../settings.ts';

// s3backup dashboard: a local, read-only web page over the repository's backups, anomalies
// and cost (src/dashboard/).

type DashboardOpts = CommonOpts & FlagOptions<typeof DashboardSettings> & { token?: string };

/** A duration such as "26h" or "2d" in milliseconds (months as 30 days, years as 365). */
export function durationMs(s: string, what: string): number {
  const d = parseCalendarDuration(s, what);
  return ((d.years * 365 + d.months * 30 + d.days) * 24 + d.hours) * 3_600_000;
}

/** One schedule interval plus half of one: a backup that is a little late is not yet "stale". */
export function maxAgeFromCron(expr: string, timezone: string | undefined): number | undefined {
  const cron = parseCron(expr, timezone, 'schedule.backup');
  try {
    const [a, b] = cron.nextRuns(2);
    if (!a || !b) return undefined;
    return Math.round((b.getTime() - a.getTime()) * 1.5);
  } finally {
    cron.stop();
  }
}

async function cmdDashboard(opts: DashboardOpts): Promise<void> {
  // Loaded here, not with the CLI: the web server and its page are not needed by other commands.
  const [{ DashboardData }, { checkExposure, startDashboard }, { costSource, monitorSource }] = await Promise.all([
    import('../../dashboard/data.ts'),
    import('../../dashboard/server.ts'),
    import('../../dashboard/sources.ts'),
  ]);
  const { cfg, store, keys } = await setup(opts, 'dashboard');
  const { host, port, maxAge } = resolveSettings(DashboardSettings, { flags: flagValues(DashboardSettings, opts), file: cfg.dashboard });
  const token = opts.token ?? (process.env.S3BACKUP_DASHBOARD_TOKEN || undefined);
  checkExposure(host, token);

  let maxAgeMs: number | undefined;
  let maxAgeBasis: 'setting' | 'schedule' | undefined;
  if (maxAge !== undefined) {
    maxAgeMs = durationMs(maxAge, '--max-age');
    maxAgeBasis = 'setting';
  } else if (cfg.schedule?.backup) {
    maxAgeMs = maxAgeFromCron(cfg.schedule.backup, cfg.schedule.timezone);
    if (maxAgeMs !== undefined) maxAgeBasis = 'schedule';
  }
  // The restore command the page offers must reach the same S3 server; never with credentials.
  const commandFlags: string[] = [];
  if (cfg.endpoint) {
    const u = new URL(cfg.endpoint);
    u.username = '';
    u.password = '';
    commandFlags.push('--endpoint', u.toString().replace(/\/$/, ''));
  }
  const monitor = monitorSource(cfg.anomaly);
  const cost = costSource(cfg, { ...keys, prompt: undefined });
  const data = new DashboardData(store, {
    keys,
    ...(maxAgeMs !== undefined ? { maxAgeMs, maxAgeBasis } : {}),
    monitor: monitor.source,
    monitorReason: monitor.reason,
    cost: cost.source,
    costReason: cost.reason,
    commandFlags,
  });
  // Fail now, not at the first page load, if the repository is not there; the backup list is
  // read in the background meanwhile (2,000 manifest headers over S3 take a while).
  await data.open();
  const server = await startDashboard({ data, host, port, token });
  if (opts.json) emitJson({ ok: true, repository: store.location, url: server.url, tokenRequired: !!token });
  else out(server.url);
  note(
    `s3backup dashboard for ${store.location} at ${server.url} (read-only${token ? '; requests need the token: open it once as ?token=… or send Authorization: Bearer' : ''}); ` +
      `${maxAgeMs !== undefined ? `newest backup is stale after ${duration(maxAgeMs)}; ` : ''}Ctrl-C stops it`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
  await data.close();
  await store.close();
}

export function registerDashboard(program: Command): void {
  const dashboard = settingOptions(DashboardSettings);
  withCommon(
    program
      .command('dashboard')
      .description('serve a local, read-only web page over the backups, anomalies and cost')
      .addOption(dashboard.host)
      .addOption(dashboard.port)
      .option(
        '--token <secret>',
        'require this token on every request, at least 16 characters (better: env S3BACKUP_DASHBOARD_TOKEN, which ps does not show)',
      )
      .addOption(dashboard.maxAge)
      .addHelpText(
        'after',
        `
The page shows the backups timeline (size read and stored, duration, with the mean ± 2σ band
and anomalies marked), each backup's details (files new/changed/deleted, warnings, the archives
it needs and their storage classes, its file tree with a "restore this file" command line to
copy), how old the newest backup is, the last failure and the anomalies from the run history,
and storage and monthly cost by storage class with lifecycle savings and a forecast (the
cost.* settings, as "s3backup cost" uses them). It only reads the repository: nothing is ever
written or deleted.

It listens on 127.0.0.1 unless told otherwise. To reach it from another machine, bind another
address and set a token; every request then needs it (open the page once as /?token=TOKEN, or
send "Authorization: Bearer TOKEN"). Better still, keep it on loopback and use ssh -L 8080:127.0.0.1:8080.

Examples:
  s3backup dashboard --repo s3://my-bucket/backups
  s3backup dashboard --port 9000 --max-age 26h
  S3BACKUP_DASHBOARD_TOKEN=$(openssl rand -hex 24) s3backup dashboard --host 0.0.0.0`,
      ),
  ).action(cmdDashboard);
}
