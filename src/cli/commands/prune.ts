import type { Command } from 'commander';
import { DEFAULT_GRACE_MS, parseGrace, prune, type PruneResult } from '../../prune/prune.ts';
import { Repository } from '../../repo/repository.ts';
import { type CommonOpts, EXIT, emitJson, exitWith, interruptSignal, note, out, setup, withCommon, withStore } from '../common.ts';
import { bytes, duration } from '../../format.ts';
import type { RunLog } from '../../log/runlog.ts';

// s3backup prune [--dry-run] [--grace DURATION]: delete what no backup needs any more.

export function graceText(ms: number): string {
  if (ms === 0) return '0';
  for (const [unit, f] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['min', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % f === 0) return `${ms / f}${unit}`;
  }
  return duration(ms);
}

/** Human lines for a prune result: what was deleted on stdout, warnings on stderr. */
export function printPruneResult(r: PruneResult): void {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  for (const o of r.archives.deleted) out(`${verb} ${o.key} (${bytes(o.size)})`);
  for (const o of r.leftovers.deleted) out(`${verb} leftover ${o.key} (${bytes(o.size)}, from ${o.lastModified})`);
  for (const u of r.uploads.aborted) out(`${r.dryRun ? 'would abort' : 'aborted'} incomplete upload of ${u.key} (started ${u.initiated})`);
  const parts = [
    `${r.manifests} backup(s) checked`,
    `${r.archives.total} archive(s): ${r.archives.referenced} in use, ${r.archives.deleted.length} ${verb}`,
  ];
  if (r.archives.recent.length)
    parts.push(`${r.archives.recent.length} unreferenced but younger than the grace period (${graceText(r.graceMs)}), left for later`);
  if (r.leftovers.deleted.length || r.leftovers.recent.length) {
    parts.push(
      `${r.leftovers.deleted.length} leftover temporary file(s) ${verb}${r.leftovers.recent.length ? `, ${r.leftovers.recent.length} recent kept` : ''}`,
    );
  }
  if (r.uploads.aborted.length || r.uploads.recent.length) {
    parts.push(
      `${r.uploads.aborted.length} incomplete upload(s) ${r.dryRun ? 'would be ' : ''}aborted${r.uploads.recent.length ? `, ${r.uploads.recent.length} recent kept` : ''}`,
    );
  }
  if (r.versions) {
    parts.push(
      `${r.versions.deleted} noncurrent version(s) and delete marker(s) ${verb}` +
        (r.versions.locked.length ? `, ${r.versions.locked.length} kept by Object Lock` : ''),
    );
  }
  out(`prune${r.dryRun ? ' (dry run)' : ''}: ${parts.join('; ')}; ${bytes(r.bytesFreed)} ${r.dryRun ? 'would be ' : ''}freed`);
  if (r.segments.deleted.length || r.segments.recent.length) {
    // A line of its own: the summary above is one line of a 120-column terminal.
    const freed = r.segments.deleted.reduce((n, o) => n + o.size, 0);
    out(
      `  entry segments: ${r.segments.total}, ${r.segments.deleted.length} ${verb} (${bytes(freed)})` +
        (r.segments.recent.length ? `, ${r.segments.recent.length} unlisted but younger than the grace period, left for later` : ''),
    );
  }
  if (r.versions?.locked.length) {
    const first = r.versions.locked
      .slice(0, 5)
      .map((l) => `${l.key}${l.retainUntil ? ` (${l.mode ?? 'locked'} until ${l.retainUntil})` : ''}`);
    out(
      `Object Lock keeps ${r.versions.locked.length} object version(s) no backup needs: ${first.join(', ')}${r.versions.locked.length > 5 ? ', …' : ''}; ` +
        'a prune after their retention ends removes them',
    );
  }
  for (const m of r.missing) note(`warning: ${missingText(m)}`);
  if (r.archives.unrecognized.length) {
    note(
      `note: ${r.archives.unrecognized.length} object(s) under archives/ or entries/ are not s3backup objects and were left alone: ${r.archives.unrecognized.slice(0, 5).join(', ')}`,
    );
  }
}

function missingText(m: PruneResult['missing'][number]): string {
  return `${m.key.startsWith('entries/') ? 'entry segment' : 'archive'} ${m.key} is missing, but backup(s) ${m.backups.join(', ')} need it: they cannot be restored (check with "s3backup verify")`;
}

/** backup.log lines for a prune result. */
export function logPruneResult(r: PruneResult, log: RunLog): void {
  const verb = r.dryRun ? 'to delete' : 'deleted';
  log.info(
    `prune${r.dryRun ? ' --dry-run' : ''} of ${r.repository}: ${r.archives.deleted.length} archive(s), ${r.segments.deleted.length} entry segment(s) and ${r.leftovers.deleted.length} leftover(s) ${verb}, ` +
      `${r.uploads.aborted.length} upload(s) ${r.dryRun ? 'to abort' : 'aborted'}, ${bytes(r.bytesFreed)} ${r.dryRun ? 'to free' : 'freed'}`,
  );
  for (const m of r.missing) log.warn(missingText(m));
  if (r.versions?.locked.length)
    log.info(`prune: Object Lock keeps ${r.versions.locked.length} unneeded object version(s) until their retention ends`);
}

async function cmdPrune(opts: CommonOpts & { dryRun?: boolean; grace?: string }): Promise<void> {
  const graceMs = opts.grace !== undefined ? parseGrace(opts.grace) : DEFAULT_GRACE_MS;
  const { store, log, keys } = await setup(opts, 'prune');
  log.info(`prune${opts.dryRun ? ' --dry-run' : ''} of ${store.location} started (grace ${graceText(graceMs)})`);
  const result = await withStore(store, async () => {
    const repo = await Repository.open(store, keys);
    return prune(repo, { graceMs, dryRun: opts.dryRun ?? false, signal: interruptSignal() });
  });
  logPruneResult(result, log);
  if (opts.json) emitJson({ ok: result.missing.length === 0, ...result });
  else printPruneResult(result);
  if (result.missing.length) exitWith(EXIT.warnings);
}

export function registerPrune(program: Command): void {
  withCommon(
    program
      .command('prune')
      .description('delete data no backup needs any more: unreferenced archives, leftovers of killed runs, stale uploads')
      .option('-n, --dry-run', 'show what would be deleted, delete nothing')
      .option('--grace <duration>', 'leave unreferenced objects younger than this (units w, d, h, min, s; default 6h)')
      .addHelpText(
        'after',
        `
prune reads the archive list of every backup's manifest (its small head frame), then deletes:
  - archives under archives/ that no backup lists,
  - temporary files of unfinished writes (.tmp-*) and write probes left by killed processes,
  - incomplete S3 multipart uploads,
each only once it is older than the grace period: a running backup uploads its archive before
it writes its manifest. A manifest that cannot be read stops prune before it deletes anything.
prune takes the repository's exclusive lock: it refuses to run while a backup, forget or prune
holds a lock (see "s3backup unlock"). Backups are removed with "s3backup forget".

Exit codes: 0 ok, 1 failed (nothing unsafe was deleted), 2 usage, 3 some backup lists a missing archive.

Examples:
  s3backup prune --dry-run
  s3backup prune --repo s3://my-bucket/team-a
  s3backup prune --grace 1d --json`,
      ),
  ).action(cmdPrune);
}
