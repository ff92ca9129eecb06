import * as path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { displayName, jsonName, nameToBytes } from '../archive/names.ts';
import type { BackupResult } from '../backup/backup.ts';
import type { HostIdentityWarning } from '../backup/host-identity.ts';
import type { PlannedEntry } from '../backup/plan.ts';
import { ArchiveSettings } from '../config/archive-settings.ts';
import { BackupSettings, FullBackupSettings, ObjectLockSettings } from '../config/backup-settings.ts';
import { HookSettings } from '../config/hook-settings.ts';
import { NotificationSettings } from '../config/notify-settings.ts';
import { type FlagOptions, resolveSettings } from '../config/settings.ts';
import { defaultRepository, resolveConfig } from '../config/config.ts';
import { S3BackupError, UsageError } from '../errors.ts';
import { RunLog } from '../log/runlog.ts';
import type { RunReport } from '../run/report.ts';
import { VERSION } from '../version.ts';
import type { SubsetOpts } from './commands/verify-subset.ts';
import {
  type CommonOpts,
  checkRequiredOptionsLast,
  EXIT,
  emitJson,
  ExitNow,
  exitWith,
  globalFlagsAfterCommand,
  interruptSignal,
  isJsonMode,
  note,
  out,
  setup,
  withCommon,
  withStore,
} from './common.ts';
import { bytes, duration, leftOutLine, rate } from '../format.ts';
import { Progress } from './progress.ts';
import { type FilterOpts, filterOf, withFilters } from './filters.ts';
import { isEmptyFilter, matchesFilter } from '../repo/groups.ts';
import { flagValues, settingOptions } from './settings.ts';
import type { StreamFlags } from './stream-flags.ts';

/** The options of `s3backup backup`, by the names commander gives them. */
type BackupOpts = CommonOpts &
  FlagOptions<typeof BackupSettings> &
  FlagOptions<typeof ArchiveSettings> &
  FlagOptions<typeof FullBackupSettings> &
  FlagOptions<typeof ObjectLockSettings> &
  FlagOptions<typeof NotificationSettings> &
  FlagOptions<typeof HookSettings> & {
    full?: boolean;
    parent?: string;
    rehash?: boolean;
    xattrs?: boolean;
    extents?: boolean;
    dryRun?: boolean;
    forget?: boolean;
  } & StreamFlags;

async function cmdBackup(paths: string[], opts: BackupOpts): Promise<void> {
  const [{ streamOfFlags }, { streamSourcePath }] = await Promise.all([import('./stream-flags.ts'), import('../backup/stream-source.ts')]);
  const stream = streamOfFlags(paths, opts);
  const { cfg, location, store, log, keys, showProgress } = await setup(opts, 'backup', flagValues(BackupSettings, opts));
  const sourcePaths = stream ? [streamSourcePath(stream.name)] : paths;
  const { backupOptionsFromConfig } = await import('../backup/options.ts');
  const base = backupOptionsFromConfig(cfg, sourcePaths, { location, archiveFlags: flagValues(ArchiveSettings, opts) });
  // The lock flags go together, and replace "objectLock" of the config file as a whole.
  const lock = flagValues(ObjectLockSettings, opts);
  if ((lock.days === undefined) !== (lock.mode === undefined)) {
    throw new UsageError('Object Lock needs both --object-lock-days and --object-lock-mode', {
      hint: 'e.g. --object-lock-days 30 --object-lock-mode GOVERNANCE',
    });
  }
  if (lock.days !== undefined && lock.mode !== undefined) base.objectLock = { days: lock.days, mode: lock.mode };
  const { sources, excludes = [], excludePaths = [] } = base;
  if (opts.dryRun) return dryRunBackup(sources, excludes, excludePaths, !!opts.json);
  // What a backup runs on is loaded here, not at start-up (see CORE_COMMANDS).
  const [{ RunReporter, reportOf, deliveryFailed }, { hooksOf }, { backupAndReport }, { SourceWalk, makeExcluder }, { resolveSources }] =
    await Promise.all([
      import('../run/report.ts'),
      import('../run/hooks.ts'),
      import('../run/after-backup.ts'),
      import('../backup/walk.ts'),
      import('../backup/backup.ts'),
    ]);
  const [{ findingLines }, { holdLines }] = await Promise.all([import('./commands/history.ts'), import('./commands/anomaly-hold.ts')]);
  // Notification and metrics settings are checked now: a typo is a configuration error, not a lost alert.
  const reporter = new RunReporter(cfg, { sources, log, logFile: log.errorFile, notifyOn: opts.notifyOn });
  const hooks = hooksOf(resolveSettings(HookSettings, { flags: flagValues(HookSettings, opts), file: cfg.hooks }));
  if (cfg.repositorySource === 'default') note(`s3backup: no repository given; using the local default ${cfg.repository}`);
  let progress: Progress | undefined;
  if (showProgress && process.stderr.isTTY && !stream) {
    // A quick metadata-only pass for totals, so the bar can show a percentage and ETA.
    let total = 0;
    for (const { item } of new SourceWalk(resolveSources(sources), makeExcluder(excludes, excludePaths)))
      if (item?.st.isFile()) total += item.st.size;
    progress = new Progress(true, 'backup ', total);
  }
  const { retention, ...options } = base;
  let result: BackupResult;
  let report: RunReport;
  try {
    ({ result, report } = await withStore(store, () =>
      backupAndReport(
        {
          ...options,
          store,
          keys,
          ...(opts.full ? { full: true } : {}),
          ...(opts.parent ? { parent: opts.parent } : {}),
          ...(opts.fullEvery !== undefined ? { fullEvery: opts.fullEvery } : {}),
          ...(opts.fullAfter !== undefined ? { fullAfterDays: opts.fullAfter } : {}),
          ...(opts.rehash ? { rehash: true } : {}),
          ...(opts.xattrs === false ? { xattrs: false } : {}),
          ...(opts.extents === false ? { extents: false } : {}),
          ...(stream ? { stream } : {}),
          onProgress: (p) => progress?.update(p.bytesDone, p.files),
          signal: interruptSignal(),
        },
        // The retention policy (config "keep", default keep-last 5) runs after each backup
        // unless autoForget: false or --no-forget.
        { log, reporter, hooks, retention: opts.forget === false ? undefined : retention },
      ),
    ));
  } catch (e) {
    progress?.stop();
    const failed = reportOf(e);
    for (const r of [...(failed?.notifications ?? []), ...(failed?.metrics ?? [])])
      if (!r.ok) note(`warning: ${r.channel} not delivered: ${r.error}`);
    throw e;
  }
  progress?.stop();
  if (opts.json) {
    emitJson({ ok: true, ...result, warningCount: result.warnings.length, ...report });
  } else {
    out(`backup ${result.id} (${result.kind}) saved to ${result.repository}${result.repositoryCreated ? ' (new repository)' : ''}`);
    if (result.kind === 'incremental') {
      out(
        `  against ${result.parent ?? 'content other backups stored'}: ${result.newFiles} new, ${result.changedFiles} changed, ${result.unchangedFiles} unchanged (not read), ${result.deletedFiles} deleted` +
          (result.foundFiles ? `; ${result.foundFiles} found in the repository (${bytes(result.foundBytes ?? 0)} not stored again)` : ''),
      );
    }
    out(
      `  ${result.files} files, ${result.dirs} dirs, ${result.symlinks} symlinks, ${result.hardlinks} hard links; ` +
        `${bytes(result.bytesIn)} in, ${bytes(result.bytesStored)} stored (ratio ${result.compressionRatio}); ` +
        `${duration(result.durationMs)} (${rate(result.bytesIn, result.durationMs)})`,
    );
    const leftOut = leftOutLine(result.skipped, result.changedWhileRead ?? 0, log.errorFile);
    if (leftOut) out(`  ${leftOut}`);
    if (result.retention && 'removed' in result.retention && result.retention.removed.length) {
      out(`  retention: forgot ${result.retention.removed.length} older backup(s), freed ${bytes(result.retention.bytesFreed)}`);
    }
    if (result.anomalies?.length) {
      out(`  anomalies: ${result.anomalies.length} finding(s) against the history of comparable backups (s3backup anomalies ${result.id})`);
      for (const l of findingLines(result.anomalies)) out(l);
    }
    if (result.retentionHold) for (const l of holdLines([result.retentionHold])) out(`  ${l}`);
    if (result.warnings.length) {
      note(`${result.warnings.length} warning(s); the backup is recorded and valid, and lacks only the entries named here:`);
      for (const w of result.warnings.slice(0, 20)) note(`  ${w}`);
      if (result.warnings.length > 20) note(`  … and ${result.warnings.length - 20} more (see ${log.errorFile})`);
    }
    for (const r of [...report.notifications, ...report.metrics]) if (!r.ok) note(`warning: ${r.channel} not delivered: ${r.error}`);
  }
  if (result.hostWarning) noteHostWarning(result.hostWarning);
  if (result.warnings.length || deliveryFailed(report)) exitWith(EXIT.warnings);
}

/** The host-name warning on stderr (its --json form is the hostWarning field). Advice: no exit code. */
function noteHostWarning(w: HostIdentityWarning): void {
  note(`warning: ${w.message}`);
  note(`  hint: ${w.hint}`);
}

/** backup --dry-run: what would be backed up, from the walk alone; no repository is touched. */
async function dryRunBackup(sources: string[], excludes: string[], excludePaths: string[], json: boolean): Promise<void> {
  const { planBackup } = await import('../backup/plan.ts');
  const entries: PlannedEntry[] = [];
  // Listed as they are found, in batches (a write per line costs more than the walk).
  let lines: string[] = [];
  const flush = () => {
    if (lines.length) process.stdout.write(`${lines.join('\n')}\n`);
    lines = [];
  };
  const plan = planBackup({
    sources,
    excludes,
    excludePaths,
    onEntry: (e) => {
      if (json) entries.push({ ...e, ...jsonName('path', e.path) } as PlannedEntry);
      else if (lines.push(displayName(e.type === 'dir' ? `${e.path}/` : e.path)) >= 1000) flush();
    },
  });
  if (json) emitJson({ ok: true, dryRun: true, ...plan, warningCount: plan.warnings.length, entries });
  else {
    flush();
    note(
      `dry run: ${plan.files} files (${bytes(plan.bytes)}), ${plan.dirs} dirs, ${plan.symlinks} symlinks, ${plan.hardlinks} hard links ` +
        'would be backed up; nothing was read or written',
    );
    const leftOut = leftOutLine(plan.skipped, 0, '', true);
    if (leftOut) note(`  ${leftOut}`);
    for (const w of plan.warnings) note(`  warning: ${w}`);
  }
  if (plan.warnings.length) exitWith(EXIT.warnings);
}

async function cmdRestore(
  id: string,
  opts: CommonOpts &
    FilterOpts & {
      target: string;
      include?: string[];
      overwrite?: boolean;
      skipDamaged?: boolean;
      requestThaw?: boolean;
      tier?: string;
      days?: number;
      wait?: boolean;
    },
): Promise<void> {
  const filter = filterOf(opts);
  const { store, log, keys, showProgress } = await setup(opts, 'restore');
  const { runRestore } = await import('../restore/restore.ts');
  log.info(`restore of ${id} from ${store.location} to ${path.resolve(opts.target)} started`);
  let progress: Progress | undefined;
  const result = await withStore(store, () =>
    runRestore({
      store,
      keys,
      snapshot: id,
      filter,
      target: opts.target,
      include: opts.include ?? [],
      overwrite: opts.overwrite ?? false,
      skipDamaged: opts.skipDamaged ?? false,
      ...(opts.requestThaw
        ? { thaw: { days: opts.days ?? 7, tier: (opts.tier ?? 'Standard') as 'Bulk' | 'Standard' | 'Expedited', wait: opts.wait ?? false } }
        : {}),
      onProgress: (p) => {
        if (!progress && showProgress) progress = new Progress(true, 'restore', p.totalBytes);
        progress?.update(p.bytes, p.files);
      },
      signal: interruptSignal(),
    }).finally(() => progress?.stop()),
  );
  log.info(`restore of ${result.id} done: ${result.files} files, ${bytes(result.bytes)} to ${result.target}`);
  for (const d of result.damaged) log.error(`restore of ${result.id}: ${d.path} left out, damaged: ${d.problem}`);
  if (opts.json) {
    // Paths that are not UTF-8: shown with \xHH, exact as base64 beside (see jsonName).
    const exactSkipped = result.skipped.some((p) => !p.isWellFormed());
    emitJson({
      ok: true,
      ...result,
      ...(exactSkipped ? { skippedBase64: result.skipped.map((p) => nameToBytes(p).toString('base64')) } : {}),
      damaged: result.damaged.map((d) => ({ ...jsonName('path', d.path), problem: d.problem })),
    });
  } else {
    out(`restored backup ${result.id} to ${result.target}`);
    out(
      `  ${result.files} files, ${result.dirs} dirs, ${result.symlinks} symlinks, ${result.hardlinks} hard links; ` +
        `${bytes(result.bytes)} written, ${bytes(result.bytesFetched)} read from the repository in ${result.requests} request(s); ${duration(result.durationMs)}`,
    );
    if (result.skipped.length) {
      note(
        `${result.skipped.length} entr${result.skipped.length === 1 ? 'y was' : 'ies were'} not in the backup (unreadable or special at backup time):`,
      );
      for (const p of result.skipped.slice(0, 20)) note(`  ${p}`);
    }
    for (const w of result.warnings) note(`warning: ${w}`);
    if (result.damaged.length) {
      note(
        `${result.damaged.length} file(s) left out: their content is damaged in the repository${result.damaged.length > 20 ? ' (the first 20; all are in backup-errors.log and --json)' : ''}:`,
      );
      for (const d of result.damaged.slice(0, 20)) note(`  ${d.path}`);
    }
  }
  for (const w of result.warnings) log.warn(`restore of ${result.id}: ${w}`);
  if (result.skipped.length || result.damaged.length || result.warnings.length) exitWith(EXIT.warnings);
}

async function cmdVerify(
  id: string | undefined,
  opts: CommonOpts & FilterOpts & SubsetOpts & { deep?: boolean; all?: boolean; readDataSubset?: string },
): Promise<void> {
  if (opts.readDataSubset !== undefined) {
    const [{ cmdVerifySubset }, { parseSubset }] = await Promise.all([
      import('./commands/verify-subset.ts'),
      import('../verify/subset.ts'),
    ]);
    return cmdVerifySubset(id, parseSubset(opts.readDataSubset), opts);
  }
  if (opts.requestThaw)
    throw new UsageError('verify --request-thaw goes with --read-data-subset (a shallow or --deep verify reads no cold archive)');
  if (opts.all) return verifyAll(id, opts);
  if (id === undefined) throw new UsageError('verify needs a backup id, "latest", or --all');
  const filter = filterOf(opts);
  const { store, log, keys, showProgress } = await setup(opts, 'verify');
  const { runVerify } = await import('../verify/verify.ts');
  let progress: Progress | undefined;
  const result = await withStore(store, () =>
    runVerify({
      store,
      keys,
      snapshot: id,
      filter,
      deep: opts.deep ?? false,
      onProgress: (p) => {
        if (!progress && showProgress) progress = new Progress(true, 'verify ', { bytes: p.totalBytes, files: p.totalFiles });
        progress?.update(p.bytes, p.files);
      },
    }).finally(() => progress?.stop()),
  );
  for (const p of result.problems) log.error(`verify ${result.id}: ${p.where}: ${p.problem}`);
  log.info(`verify ${result.id}${result.deep ? ' --deep' : ''}: ${result.ok ? 'ok' : `${result.problems.length} problem(s)`}`);
  // A problem's path that is not UTF-8: its display form, and its exact bytes in whereBase64.
  if (opts.json) emitJson({ ...result, problems: result.problems.map((p) => ({ ...p, ...jsonName('where', p.where) })) });
  else if (result.ok) {
    out(
      result.deep
        ? `backup ${result.id} is intact: ${result.archives} archive(s), ${result.filesChecked} files (${bytes(result.bytesChecked)}) checked against their SHA-256`
        : `backup ${result.id} looks intact: manifest readable, ${result.entries} entries, ${result.archives} archive(s) present with the right size (use --deep to check content)`,
    );
  } else {
    out(`backup ${result.id} has ${result.problems.length} problem(s):`);
    for (const p of result.problems) out(`  ${p.where}: ${p.problem}`);
  }
  if (!result.ok) exitWith(EXIT.failed);
}

/** verify --all: every backup, shallow (manifest head, archives present with their sizes); a few requests per backup. */
async function verifyAll(id: string | undefined, opts: CommonOpts & FilterOpts & { deep?: boolean }): Promise<void> {
  if (id !== undefined) throw new UsageError('verify --all checks every backup: give no id with it');
  if (opts.deep)
    throw new UsageError('verify --all is shallow; --deep checks one backup at a time', {
      hint: 'run "s3backup verify ID --deep" for each backup to read back',
    });
  const filter = filterOf(opts);
  const { store, log, keys } = await setup(opts, 'verify');
  const [{ surveyBackups }, { Repository }] = await Promise.all([import('../verify/broken.ts'), import('../repo/repository.ts')]);
  const t0 = performance.now();
  // With a filter, only the backups it selects (a damaged manifest names no group: left out).
  const items = (await withStore(store, async () => surveyBackups(await Repository.open(store, keys)))).filter(
    (i) => isEmptyFilter(filter) || ('header' in i && matchesFilter({ ...i.header, sources: i.header.sources.map((s) => s.path) }, filter)),
  );
  const bad = items.filter((i) => 'error' in i || i.problems.length > 0);
  const problemsOf = (i: (typeof items)[number]) =>
    'error' in i ? [{ where: i.id, problem: i.error }] : i.problems.map((p) => ({ where: p.key, problem: p.problem }));
  for (const b of bad) for (const p of problemsOf(b)) log.error(`verify ${b.id}: ${p.where}: ${p.problem}`);
  log.info(`verify --all: ${items.length} backup(s), ${bad.length} with problems`);
  if (opts.json) {
    emitJson({
      ok: bad.length === 0,
      repository: store.location,
      backups: items.length,
      broken: bad.map((b) => ({ id: b.id, problems: problemsOf(b) })),
      durationMs: Math.round(performance.now() - t0),
    });
  } else if (bad.length === 0) {
    out(
      `all ${items.length} backup(s) in ${store.location} look intact: manifests readable, every archive present with the right size (verify ID --deep checks content)`,
    );
  } else {
    out(`${bad.length} of ${items.length} backup(s) in ${store.location} cannot be fully restored:`);
    for (const b of bad) {
      out(`  ${b.id}`);
      for (const p of problemsOf(b)) out(`    ${p.where}: ${p.problem}`);
    }
  }
  if (bad.length) exitWith(EXIT.failed);
}

const collect = (v: string, prev: string[] = []) => [...prev, v];
const wholeNumber = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a whole number, not ${v}`);
  return n;
};

/**
 * The commands in their own modules (src/cli/commands/*.ts), each module's register function by
 * a name. A run loads only the module of its command: start-up is most of a lookup's time in a
 * large backup, and the whole program is ~290 modules where `ls` needs ~170
 * (docs/performance.md, "Lookups in a large backup"). The full help loads them all.
 */
const COMMAND_MODULES: Record<string, () => Promise<(program: Command) => void>> = {
  list: async () => (await import('./commands/list.ts')).registerList,
  ls: async () => (await import('./commands/ls.ts')).registerLs,
  cat: async () => (await import('./commands/cat.ts')).registerCat,
  diff: async () => (await import('./commands/diff.ts')).registerDiff,
  schedule: async () => (await import('./commands/schedule.ts')).registerSchedule,
  forget: async () => (await import('./commands/forget.ts')).registerForget,
  prune: async () => (await import('./commands/prune.ts')).registerPrune,
  unlock: async () => (await import('./commands/unlock.ts')).registerUnlock,
  notify: async () => (await import('./commands/notify.ts')).registerNotify,
  cost: async () => (await import('./commands/cost.ts')).registerCost,
  history: async () => (await import('./commands/history.ts')).registerHistory,
  dashboard: async () => (await import('./commands/dashboard.ts')).registerDashboard,
  init: async () => (await import('./commands/init.ts')).registerInit,
  key: async () => (await import('./commands/key.ts')).registerKey,
  copy: async () => (await import('./commands/copy.ts')).registerCopy,
  dump: async () => (await import('./commands/dump.ts')).registerDump,
  // (end of command modules)
};
/** Commands registered by a module of another name. */
const MODULE_OF_COMMAND: Record<string, string> = { anomalies: 'history' };
/** The commands defined here, always registered: their definitions are cheap, their work is loaded when they run. */
const CORE_COMMANDS = new Set(['backup', 'restore', 'verify']);

/**
 * The register functions a run needs: those of the module of `command` (none for the core
 * commands), or all of them when there is no command word (help, --version, a typo).
 */
async function commandModules(command: string | undefined): Promise<Map<string, (program: Command) => void>> {
  const own = command === undefined ? undefined : (MODULE_OF_COMMAND[command] ?? command);
  const names =
    own !== undefined && CORE_COMMANDS.has(own) ? [] : own !== undefined && own in COMMAND_MODULES ? [own] : Object.keys(COMMAND_MODULES);
  return new Map(await Promise.all(names.map(async (n) => [n, await COMMAND_MODULES[n]!()] as const)));
}

/**
 * The program: the core commands, and the commands of the modules loaded for `command` (see
 * commandModules; every command when it is undefined), in the order the help lists them.
 */
export async function buildProgram(command?: string): Promise<Command> {
  const modules = await commandModules(command);
  const register = (program: Command, ...names: string[]) => {
    for (const n of names) modules.get(n)?.(program);
  };
  const archiveOptions = settingOptions(ArchiveSettings);
  const backupOptions = settingOptions(BackupSettings);
  const fullOptions = settingOptions(FullBackupSettings);
  const lockOptions = settingOptions(ObjectLockSettings);
  const notifyOptions = settingOptions(NotificationSettings);
  const hookOptions = settingOptions(HookSettings);
  const program = new Command('s3backup')
    .version(VERSION)
    .description('Compressed, verifiable backups of directories to Amazon S3, S3-compatible stores or a local directory.')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride() // set before the subcommands, which inherit it: usage errors become exit 2
    .configureOutput({ outputError: (message, write) => write(`s3backup: ${message}`) })
    .addHelpText(
      'after',
      `
Repository: --repo, else S3BACKUP_REPO, else s3://$BUCKET_NAME, else repository: in s3backup.yaml,
else the local default ${defaultRepository()}.
The options every command takes (--repo, --config, --json, …) may also come before the command:
  s3backup --repo s3://bucket/team list

Examples:
  s3backup backup ./my-data                          first backup, to the local default repository
  s3backup backup ./my-data --repo s3://bucket/team  to S3 (credentials from the usual AWS settings)
  s3backup list --repo s3://bucket/team
  s3backup restore latest --repo s3://bucket/team --target ./restored
  s3backup verify latest --repo s3://bucket/team --deep
  s3backup init --repo s3://bucket/private --encrypt  an encrypted repository (passphrase asked)

Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 finished with warnings
(141: stdout was closed early, e.g. by | head).`,
    );

  withCommon(
    program
      .command('backup')
      .description('back up files and directories (each source is stored under its own name)')
      .argument(
        '[paths...]',
        'files or directories to back up (default: "sources" from the config file); with --stdin-from-command, the command and its arguments, after "--"',
      )
      .option('--stdin', 'back up standard input as one file (see --stdin-filename)')
      .option('--stdin-filename <name>', 'the name the stream is stored under (default: "stdin", or the command\'s name)')
      .option(
        '--stdin-from-command',
        'run the command given after "--" and back up its output as one file; a non-zero exit fails the backup',
      )
      .addOption(backupOptions.exclude)
      .addOption(backupOptions.excludeFile)
      .addOption(backupOptions.tags)
      .addOption(archiveOptions.compression)
      .addOption(archiveOptions.level)
      .addOption(archiveOptions.archiveSize)
      .option('--full', 'store every file, even if an earlier backup of the same sources exists')
      .option('--parent <id>', 'compare with this backup instead of the newest one of the same host, sources and tags')
      .addOption(backupOptions.host)
      .addOption(fullOptions.fullEvery)
      .addOption(fullOptions.fullAfter)
      .option('--rehash', 'read and hash every file instead of trusting size, times and inode')
      .option(
        '--no-xattrs',
        'do not store extended attributes and POSIX ACLs (stored by default: capabilities, ACLs, user.*, trusted.*, SELinux labels)',
      )
      .option(
        '--no-extents',
        'store changed files whole, not only an appended tail or the changed chunks of a large file (config "extents: false")',
      )
      .option('--dry-run', 'list what would be backed up (excludes applied, directories end in /) and count it; no repository is touched')
      .option('--no-forget', 'do not apply the retention policy (config "keep", default: keep the last 5) afterwards')
      .addOption(notifyOptions.on)
      .addOption(lockOptions.days)
      .addOption(lockOptions.mode)
      .addOption(hookOptions.before)
      .addOption(hookOptions.after)
      .addOption(hookOptions.timeout)
      .addHelpText(
        'after',
        `
The backup is written as one archive (a standard tar, compressed in independent frames; one
per 64 GiB of tar for larger backups, see --archive-size) and one manifest. It exists only
once its manifest is written: an interrupted backup leaves no backup.
Backups are incremental once an earlier backup of the same host, sources and tags exists
(the host is --host, S3BACKUP_HOST or "host" in the config, else the machine's host name):
files whose size, modification time, change time and inode are unchanged are not read again;
the manifest points at the archive that already holds them, and still lists the whole tree, so
any backup restores on its own. A full backup is made again when the last one is older than
30 days (--full-after), so old archives stop being needed and can expire or tier to Glacier.
Extended attributes and POSIX ACLs (file capabilities, ACLs, user.*, trusted.*, SELinux labels)
are stored with each entry, as pax SCHILY.xattr records that GNU tar --xattrs restores too;
--no-xattrs leaves them out.
Nothing is left out silently: every entry not backed up (unreadable, a special file, gone
between listing and reading, a name that is not UTF-8) and every file that changed while read
is named in a warning (also in backup-errors.log) and counted in the summary; exit code 3, and
the backup is still valid.
In a container or a CI job the host name changes every run: give a fixed --host NAME there,
or every backup is a full one and retention removes none (backup, list and cost warn when
they see that pattern).
An encrypted repository (s3backup init --encrypt) needs its passphrase: S3BACKUP_PASSWORD,
--password-file FILE, or asked on a terminal; a wrong one stops before anything is written.
Afterwards the configured notification channels (SNS_TOPIC_ARN, SLACK_WEBHOOK_URL, WEBHOOK_URL,
SMTP_URL) and metrics (CLOUDWATCH_NAMESPACE, PROMETHEUS_TEXTFILE) are told, failures included;
one that cannot be reached is a warning (exit 3), never a failed backup. Check them with
"s3backup notify test".

Examples:
  s3backup backup ~/projects --exclude node_modules --exclude '*.log' --tag nightly
  s3backup backup /etc /home --repo s3://my-bucket/host1 --json
  s3backup backup /srv/data --notify-on failure,anomaly     no message when all is well
  s3backup backup ~/projects --exclude node_modules --dry-run | less   try excludes out
  s3backup backup --stdin-filename mydb.sql --stdin-from-command -- pg_dump mydb   a dump, no copy on disk
  pg_dump mydb | s3backup backup --stdin --stdin-filename mydb.sql               the same from a pipe`,
      ),
  ).action(cmdBackup);

  register(program, 'list');

  withCommon(
    withFilters(
      program
        .command('restore')
        .description('restore a backup (or some of its files) into a directory')
        .argument('<id>', 'backup id, its 8-character short id, a unique part of it, or "latest"; ID^ is its parent')
        .requiredOption('--target <dir>', 'directory to restore into (created if missing; must be empty unless --overwrite)')
        .option('-i, --include <glob>', 'restore only matching paths (a matching directory brings its contents); repeatable', collect)
        .option('--overwrite', 'allow a non-empty target and replace files that are in the way')
        .option(
          '--skip-damaged',
          'restore everything else when some files are damaged in the repository; they are listed and the exit code is 3',
        )
        .option('--request-thaw', 'archives needed in GLACIER/DEEP_ARCHIVE: request restored copies (RestoreObject), then stop (or --wait)')
        .addOption(
          new Option('--tier <tier>', 'retrieval tier for --request-thaw').choices(['Bulk', 'Standard', 'Expedited']).default('Standard'),
        )
        .option('--days <n>', 'keep the restored copies this many days (--request-thaw, default 7)', wholeNumber('--days'))
        .option('--wait', 'with --request-thaw: poll until the archives are readable, then restore')
        .addHelpText(
          'after',
          `
Paths inside a backup start with the source's name: backing up /home/me/my-data stores
my-data/…, so "--target /tmp/r" gives /tmp/r/my-data/…. Every file is checked against its
SHA-256 as it is written; modes, times, symlinks and hard links are restored (owners too when
run as root). Nothing is ever written outside the target. A file whose content is damaged in
the repository stops the restore, naming it; with --skip-damaged it is left out and listed,
the rest is restored, and the exit code is 3 ("s3backup verify ID --deep" lists them first).
Extended attributes and POSIX ACLs are set after each entry's content, owner and mode. Only
root may set security.* (file capabilities, SELinux labels) and trusted.*: another user gets
user.* and ACLs, and one warning (exit code 3) counting the rest; so does a target whose file
system has no extended attributes.

Examples:
  s3backup restore latest --target ./restored
  s3backup restore latest --host web1 --path /srv/projects --target ./r   newest backup of that group
  s3backup restore 20261126T101500.123Z-1a2b3c4d --target /tmp/r --include 'my-data/docs/**'`,
        ),
    ),
  ).action(cmdRestore);

  withCommon(
    withFilters(
      program
        .command('verify')
        .description('check that a backup is complete and restorable')
        .argument('[id]', 'backup id, its 8-character short id, a unique part of it, or "latest"; ID^ is its parent')
        .option('--deep', 'download and decompress everything and check every SHA-256 (reads the whole archive)')
        .option(
          '--all',
          'check every backup (shallow): name each one whose manifest cannot be read or whose archives are missing or of the wrong size',
        )
        .option(
          '--read-data-subset <share|n/t>',
          'read back part of the stored data and check every SHA-256 in it: 5% (random frames) or n/t (the n-th of t fixed slices; t runs cover everything); of every backup unless an id is given',
        )
        .option(
          '--request-thaw',
          'with --read-data-subset: request restored copies of chosen archives in GLACIER/DEEP_ARCHIVE, for a later run',
        )
        .addOption(
          new Option('--tier <tier>', 'retrieval tier for --request-thaw').choices(['Bulk', 'Standard', 'Expedited']).default('Standard'),
        )
        .option('--days <n>', 'keep the restored copies this many days (--request-thaw, default 7)', wholeNumber('--days'))
        .addHelpText(
          'after',
          '\nWithout --deep: the manifest reads and every archive is present with its recorded size.\n--read-data-subset: archives in cold storage are skipped and counted (exit code 3) unless --request-thaw.\nExit code 1 if any problem is found; each is named.\n\nExamples:\n  s3backup verify latest --deep\n  s3backup verify --all          every backup, a few requests each\n  s3backup verify latest --host web1 --deep   the newest backup of host web1\n  s3backup verify --read-data-subset 1/4    a quarter of all stored data; 2/4, 3/4, 4/4 the next weeks',
        ),
    ),
  ).action(cmdVerify);

  // The other commands in their own modules (COMMAND_MODULES), in the order the help lists them:
  register(program, ...Object.keys(COMMAND_MODULES).filter((n) => n !== 'list'));

  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const args = globalFlagsAfterCommand(argv);
    const program = await buildProgram(args[0]?.startsWith('-') === false ? args[0] : undefined);
    checkRequiredOptionsLast(program);
    await program.parseAsync(args, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof ExitNow) return e.code;
    if (e instanceof CommanderError) {
      // --help and --version end here with code 0; everything else is a usage error.
      return e.exitCode === 0 ? 0 : EXIT.usage;
    }
    const err = e instanceof S3BackupError ? e : undefined;
    const code = err?.exitCode ?? EXIT.failed;
    // Names in messages show their bytes that are not UTF-8 as \xHH (see src/archive/names.ts).
    const message = displayName(err ? err.message : `unexpected error: ${(e as Error)?.stack ?? String(e)}`);
    process.stderr.write(`s3backup: error: ${message}\n`);
    if (err?.hint) process.stderr.write(`  hint: ${displayName(err.hint)}\n`);
    if (isJsonMode()) {
      emitJson({
        ok: false,
        error: { message: err ? err.message : String((e as Error)?.message ?? e), hint: err?.hint, exitCode: code },
        ...(await import('../run/report.ts')).reportOf(e),
      });
    }
    try {
      const cmd = argv[0] ?? 's3backup';
      new RunLog(resolveLogDirQuietly(), cmd).error(message);
    } catch {
      // logging must never mask the real error
    }
    return code;
  }
}

function resolveLogDirQuietly(): string {
  try {
    const i = process.argv.indexOf('--log-dir');
    return resolveConfig({ flags: { logDir: i > 0 ? process.argv[i + 1] : undefined } }).logDir;
  } catch {
    // Ignore the (possibly broken) settings from the environment, but keep its XDG/HOME dirs.
    return resolveConfig({ flags: {}, env: { HOME: process.env.HOME, XDG_STATE_HOME: process.env.XDG_STATE_HOME } }).logDir;
  }
}

// A reader that stops early (`s3backup list | head -1`) closes the pipe. Node ignores SIGPIPE, so
// the next write fails with EPIPE instead, which unhandled is a stack trace. On stdout, stop
// there, as a Unix tool killed by SIGPIPE does (128 + 13): the output has nowhere to go. On
// stderr, carry on without the diagnostics: a backup must not die because nobody reads them.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(EXIT.outputClosed);
  throw e;
});
process.stderr.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
});

const code = await main(process.argv.slice(2));
// Exit explicitly (worker threads or sockets must not keep a finished command alive), but only
// once stdout and stderr are flushed: on a pipe, process.exit would cut long output short.
await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((r) => s.write('', () => r()))));
process.exit(code);
