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

/** The repositories to show: --repo given once or more, else dashboard.repositories, else the usual one. */
function repositoryList(given: readonly string[], configured: readonly string[] | undefined): (string | undefined)[] {
  if (given.length) return [...new Set(given)];
  if (configured?.length) return [...new Set(configured)];
  return [undefined];
}

/** When a group's newest backup counts as stale, if a setting or the schedule says (else each group's own usual gap). */
function maxAgeOf(maxAge: string | undefined, schedule: { backup?: string; timezone?: string } | undefined) {
  if (maxAge !== undefined) return { maxAgeMs: durationMs(maxAge, '--max-age'), maxAgeBasis: 'setting' as const };
  if (schedule?.backup) {
    const ms = maxAgeFromCron(schedule.backup, schedule.timezone);
    if (ms !== undefined) return { maxAgeMs: ms, maxAgeBasis: 'schedule' as const };
  }
  return {};
}

async function cmdDashboard(opts: DashboardOpts, given: readonly string[]): Promise<void> {
  // Loaded here, not with the CLI: the web server and its page are not needed by other commands.
  const [{ DashboardData }, { checkExposure, startDashboard }, { costSource, monitorSource }] = await Promise.all([
    import('../../dashboard/data.ts'),
    import('../../dashboard/server.ts'),
    import('../../dashboard/sources.ts'),
  ]);
  let first = await setup(given.length ? { ...opts, repo: given[0] } : opts, 'dashboard');
  const { cfg } = first;
  const { host, port, maxAge, repositories } = resolveSettings(DashboardSettings, {
    flags: flagValues(DashboardSettings, opts),
    file: cfg.dashboard,
  });
  const token = opts.token ?? (process.env.S3BACKUP_DASHBOARD_TOKEN || undefined);
  checkExposure(host, token);
  const freshness = maxAgeOf(maxAge, cfg.schedule);
  // The restore command the page offers must reach the same S3 server; never with credentials.
  const commandFlags: string[] = [];
  if (cfg.endpoint) {
    const u = new URL(cfg.endpoint);
    u.username = '';
    u.password = '';
    commandFlags.push('--endpoint', u.toString().replace(/\/$/, ''));
  }
  const monitor = monitorSource(cfg.anomaly);
  const list = repositoryList(given, repositories);
  if (!given.length && list[0] !== undefined) {
    // dashboard.repositories: the config's own repository is not one of them unless listed.
    await first.store.close();
    first = await setup({ ...opts, repo: list[0] }, 'dashboard');
  }
  const setups = [first];
  for (const location of list.slice(1)) setups.push(await setup({ ...opts, repo: location }, 'dashboard'));
  const opened = [];
  for (const { store, keys } of setups) {
    const cost = costSource(cfg, { ...keys, prompt: undefined });
    const data = new DashboardData(store, {
      keys,
      ...freshness,
      monitor: monitor.source,
      monitorReason: monitor.reason,
      cost: cost.source,
      costReason: cost.reason,
      // Each repository's own restore command names it (--repo is in the command already).
      commandFlags,
    });
    opened.push({ store, data });
  }
  // Fail now, not at the first page load, if a repository is not there; the backup lists are
  // read in the background meanwhile (2,000 manifest headers over S3 take a while).
  for (const { data } of opened) await data.open();
  const server = await startDashboard({ data: opened.map((o) => o.data), host, port, token });
  const locations = opened.map((o) => o.store.location);
  if (opts.json) {
    emitJson({
      ok: true,
      repository: locations[0],
      ...(locations.length > 1 ? { repositories: locations } : {}),
      url: server.url,
      tokenRequired: !!token,
    });
  } else out(server.url);
  note(
    `s3backup dashboard for ${locations.join(', ')} at ${server.url} (read-only${token ? '; requests need the token: open it once as ?token=… or send Authorization: Bearer' : ''}); ` +
      `${freshness.maxAgeMs !== undefined ? `a group's newest backup is stale after ${duration(freshness.maxAgeMs)}; ` : ''}Ctrl-C stops it`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
  for (const { data, store } of opened) {
    await data.close();
    await store.close();
  }
}

export function registerDashboard(program: Command): void {
  const dashboard = settingOptions(DashboardSettings);
  // --repo once or more: commander keeps only the last value of an option, so each is noted here.
  const repos: string[] = [];
  const cmd = withCommon(
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

Several repositories (--repo given more than once, or dashboard.repositories in the config)
share one fleet overview, each group naming its repository; they share the endpoint,
credentials and passphrase source, so an encrypted one can sit beside plain ones.

Examples:
  s3backup dashboard --repo s3://my-bucket/backups
  s3backup dashboard --repo s3://my-bucket/office --repo s3://my-bucket/servers
  s3backup dashboard --port 9000 --max-age 26h
  S3BACKUP_DASHBOARD_TOKEN=$(openssl rand -hex 24) s3backup dashboard --host 0.0.0.0`,
      ),
  );
  cmd.on('option:repo', (v: string) => repos.push(v));
  cmd.action((opts: DashboardOpts) => cmdDashboard(opts, repos.splice(0)));
}
