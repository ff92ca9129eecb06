import type { Command } from 'commander';
import { KeepSettings } from '../../config/keep-settings.ts';
import type { FlagOptions } from '../../config/settings.ts';
import { S3BackupError } from '../../errors.ts';
import { DEFAULT_GRACE_MS, forget, type ForgetResult, parseGrace, prune, type PruneResult } from '../../prune/prune.ts';
import { type RepoLock, withLock } from '../../repo/locks.ts';
import { Repository } from '../../repo/repository.ts';
import { applyPolicy, describePolicy, isEmptyPolicy, type KeepPolicy } from '../../retention/policy.ts';
import { type BackupFilter, describeFilter, describeGroup, groupJson, isEmptyFilter, shortId } from '../../repo/groups.ts';
import { type FilterOpts, filterOf, withFilters } from '../filters.ts';
import { type CommonOpts, EXIT, emitJson, exitWith, interruptSignal, note, out, setup, withCommon, withStore } from '../common.ts';
import { fitTable, TABLE_WIDTH, truncateMiddle } from '../../format.ts';
import { flagValues, settingOptions } from '../settings.ts';
import { holdJson, holdLines } from './anomaly-hold.ts';
import { logPruneResult, printPruneResult } from './prune.ts';

// s3backup forget [--keep-* …] [--dry-run] [--allow-empty] [--no-prune]: apply a retention
// policy (remove the manifests of the backups it does not keep), then prune.

type ForgetOpts = CommonOpts &
  FilterOpts &
  FlagOptions<typeof KeepSettings> & {
    dryRun?: boolean;
    allowEmpty?: boolean;
    force?: boolean;
    prune?: boolean;
    grace?: string;
  };

function shortTime(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, '');
}

function printForget(f: ForgetResult, policySource: string, filter: BackupFilter): void {
  out(`policy: ${describePolicy(f.plan.policy)} (${policySource})`);
  if (!isEmptyFilter(filter)) out(truncateMiddle(`only the backups matching ${describeFilter(filter)}`, TABLE_WIDTH));
  for (const g of f.plan.groups) {
    out('');
    const counts = `: ${g.kept} kept, ${g.removed} ${f.dryRun ? 'to remove' : 'removed'}`;
    out(`group ${truncateMiddle(describeGroup(g), TABLE_WIDTH - 'group '.length - counts.length)}${counts}`);
    out(
      fitTable(
        ['ID', 'TIME (UTC)', 'TAGS', 'ACTION', 'REASONS'],
        g.decisions.map((d) => [
          shortId(d.backup.id),
          shortTime(d.backup.time.toISOString()),
          d.backup.tags.join(','),
          d.keep ? 'keep' : 'remove',
          d.reasons.join(', '),
        ]),
        [],
        { maxWidth: TABLE_WIDTH - 2, flex: [2, 4] },
      )
        .split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
    );
  }
  if (f.damaged.length) {
    out('');
    out(`${f.damaged.length} backup(s) whose manifest cannot be read (kept, in no group):`);
    for (const d of f.damaged) out(`  ${d.id}  ${d.error}`);
  }
  if (f.held.length) {
    out('');
    // The second line of each hold says how it ends: with --force, it was ignored instead.
    for (const l of holdLines(f.held)) out(f.force && l.startsWith('  ') ? '  ignored: --force' : l);
  }
  out('');
  out(
    f.removed.length === 0
      ? 'no backups to remove'
      : `${f.dryRun ? 'would remove' : 'removed'} ${f.removed.length} backup(s): ${f.removed.slice(0, 10).map(shortId).join(', ')}${f.removed.length > 10 ? ', …' : ''}`,
  );
}

function forgetJson(f: ForgetResult, policySource: string) {
  return {
    repository: f.repository,
    dryRun: f.dryRun,
    policy: f.plan.policy,
    policySource,
    groups: f.plan.groups.map((g) => ({
      group: groupJson(g),
      host: g.host,
      sources: g.sources,
      kept: g.kept,
      removed: g.removed,
      backups: g.decisions.map((d) => ({
        id: d.backup.id,
        shortId: shortId(d.backup.id),
        time: d.backup.time.toISOString(),
        tags: d.backup.tags,
        keep: d.keep,
        reasons: d.reasons,
      })),
    })),
    damaged: f.damaged,
    removed: f.removed,
    retentionHolds: f.held.map(holdJson),
    force: f.force,
  };
}

async function cmdForget(opts: ForgetOpts): Promise<void> {
  const graceMs = opts.grace !== undefined ? parseGrace(opts.grace) : DEFAULT_GRACE_MS;
  const filter = filterOf(opts);
  const { cfg, store, log, keys } = await setup(opts, 'forget');
  const flags: KeepPolicy = flagValues(KeepSettings, opts);
  let policy: KeepPolicy | undefined;
  let policySource: string;
  if (!isEmptyPolicy(flags)) {
    policy = flags;
    policySource = 'from the --keep-* flags';
  } else if (!isEmptyPolicy(cfg.keep)) {
    policy = cfg.keep;
    policySource = `from "keep" in ${cfg.configFile ?? 'the config file'}`;
  } else {
    policySource = 'the default';
  }
  if (policy) applyPolicy([], policy); // a bad value is a usage error before anything is contacted
  const dryRun = opts.dryRun ?? false;
  const doPrune = opts.prune !== false;
  const signal = interruptSignal();

  const { f, p, pruneError } = await withStore(store, async () => {
    const repo = await Repository.open(store, keys);
    const run = async (lock?: RepoLock) => {
      const f = await forget(repo, {
        policy,
        allowEmpty: opts.allowEmpty ?? false,
        dryRun,
        force: opts.force ?? false,
        filter,
        onWarning: (m) => note(`warning: ${m}`),
        ...(lock ? { lock } : {}),
      });
      log.info(
        `forget${dryRun ? ' --dry-run' : ''} in ${store.location} (${describePolicy(f.plan.policy)}): ${f.removed.length} backup(s) ${dryRun ? 'to remove' : 'removed'}${f.removed.length ? `: ${f.removed.join(', ')}` : ''}`,
      );
      let p: PruneResult | undefined;
      let pruneError: unknown;
      if (doPrune) {
        try {
          p = await prune(repo, { graceMs, dryRun, forgotten: f.removed, signal, ...(lock ? { lock } : {}) });
          logPruneResult(p, log);
        } catch (e) {
          pruneError = e;
          log.error(`prune after forget: ${(e as Error).message}`);
        }
      }
      return { f, p, pruneError };
    };
    // A dry run changes nothing, so it takes no lock (and runs beside backups).
    return dryRun ? run() : withLock(store, { exclusive: true, command: 'forget' }, run);
  });

  const err = pruneError instanceof S3BackupError ? pruneError : undefined;
  if (pruneError && !err) throw pruneError;
  if (opts.json) {
    emitJson({
      ok: !err && (p?.missing.length ?? 0) === 0 && f.damaged.length === 0,
      ...forgetJson(f, policySource),
      ...(isEmptyFilter(filter) ? {} : { filter }),
      prune: p ?? null,
      ...(err ? { error: { message: err.message, hint: err.hint, exitCode: err.exitCode } } : {}),
    });
  } else {
    printForget(f, policySource, filter);
    if (p) printPruneResult(p);
    else if (!doPrune && !dryRun && f.removed.length)
      out('their data stays until "s3backup prune" (archives younger than the grace period wait for a later one)');
  }
  if (err) {
    note(`s3backup: error: ${f.removed.length && !dryRun ? 'the backups above were removed, but ' : ''}${err.message}`);
    if (err.hint) note(`  hint: ${err.hint}`);
    exitWith(err.exitCode);
  }
  if (f.damaged.length) note(`${f.damaged.length} backup manifest(s) could not be read; run "s3backup verify ID" on them`);
  if (f.damaged.length || p?.missing.length) exitWith(EXIT.warnings);
}

export function registerForget(program: Command): void {
  const keep = settingOptions(KeepSettings);
  withCommon(
    withFilters(
      program
        .command('forget')
        .description('remove the backups a retention policy does not keep, then prune their data')
        .addOption(keep.last)
        .addOption(keep.hourly)
        .addOption(keep.daily)
        .addOption(keep.weekly)
        .addOption(keep.monthly)
        .addOption(keep.yearly)
        .addOption(keep.within)
        .addOption(keep.tags)
        .option('-n, --dry-run', 'show what would be removed and pruned, change nothing')
        .option('--allow-empty', 'allow a policy that removes every backup of a host and source set')
        .option('--force', 'apply the policy to a host and source set under an anomaly hold too (see "s3backup anomalies ack")')
        .option('--no-prune', 'only remove the backups; leave their data for a later "s3backup prune"')
        .option('--grace <duration>', 'prune: leave unreferenced objects younger than this (units w, d, h, min, s; default 6h)')
        .addHelpText(
          'after',
          `
The policy: the --keep-* flags if any are given, else "keep" in the config file, else
--keep-last 5. It applies to each host and source set separately; times are UTC. A backup is
kept if any rule keeps it, and the table says which rules did. A policy that would remove every
backup of a host and source set is refused unless --allow-empty. A host and source set whose
backup raised a ransomware-class anomaly is held: none of its backups is removed until the
anomaly is acknowledged ("s3backup anomalies ack ID") or --force is given.

forget removes the manifests of the other backups (they are gone from then on), then prunes:
archives no remaining backup lists are deleted (see "s3backup prune --help"). The archives of
the backups just removed go at once; other unreferenced data waits for the grace period.
forget takes the repository's exclusive lock (not with --dry-run).

Config file equivalent:
  keep: { last: 7, daily: 14, weekly: 8, monthly: 12, within: 2d, tags: [release] }

Examples:
  s3backup forget --dry-run
  s3backup forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12
  s3backup forget --keep-within 30d --keep-tag release --repo s3://my-bucket/team-a
  s3backup forget --keep-last 10 --no-prune --json
  s3backup forget --keep-daily 7 --host web1 --dry-run     only the groups of host web1`,
        ),
    ),
  ).action(cmdForget);
}
