import type { Command } from 'commander';
import { detectorOptions } from '../../backup/options.ts';
import { generatedHostWarning, type HostIdentityWarning } from '../../backup/host-identity.ts';
import { bytes, duration, fitTable, TABLE_WIDTH } from '../../format.ts';
import { readHistory } from '../../monitor/history.ts';
import { heldBy } from '../../monitor/holds.ts';
import type { AnomalyFinding, RetentionHold } from '../../monitor/types.ts';
import { describeFilter, groupId, groupJson, groupLabel, isEmptyFilter, matchesFilter, shortId } from '../../repo/groups.ts';
import { Repository } from '../../repo/repository.ts';
import { type SurveyedBackup, surveyBackups } from '../../verify/broken.ts';
import { type CommonOpts, EXIT, emitJson, exitWith, note, out, setup, withCommon, withStore } from '../common.ts';
import { type FilterOpts, filterOf, withFilters } from '../filters.ts';
import { holdJson, holdLines, openHolds } from './anomaly-hold.ts';
import { anomalyCell, findingsById } from './history.ts';

// s3backup list [--host H] [--path P] [--tag T]: the backups, oldest first, with their group
// (host, sources, tags), short id and anomaly count, in 120 columns.

type Surveyed = Extract<SurveyedBackup, { header: unknown }>;
type Damaged = Extract<SurveyedBackup, { error: string }>;

function minuteTime(iso: string): string {
  return iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, '');
}

/** The run history's findings by backup id (undefined: history turned off or unreadable; it never fails list). */
async function findingsOf(
  repo: Repository,
  opts: { enabled: boolean; detector: ReturnType<typeof detectorOptions> },
): Promise<Map<string, AnomalyFinding[]> | undefined> {
  if (!opts.enabled) return undefined;
  try {
    const records = await readHistory(repo.store, { crypto: repo.historyCrypto() });
    return findingsById(records, opts.detector);
  } catch (e) {
    note(`warning: the run history cannot be read, so no anomaly counts: ${(e as Error).message}`);
    return undefined;
  }
}

/** Whether an anomaly hold suspends retention for the backup's group. */
function isHeld(holds: readonly RetentionHold[], h: Surveyed['header']): boolean {
  return (
    heldBy(
      holds,
      h.host,
      h.sources.map((s) => s.path),
    ) !== undefined
  );
}

function listRow(i: SurveyedBackup, findings: Map<string, AnomalyFinding[]> | undefined, holds: readonly RetentionHold[]): string[] {
  // The error without the manifest's location (it is in the full message on stderr).
  if ('error' in i) return [shortId(i.id), '-', i.error.replace(/^manifest \S+ (?=[a-z])/, ''), 'DAMAGED', '-', '-', '-', '-', ''];
  const h = i.header;
  const kind = h.kind === 'incremental' ? 'incr' : h.kind;
  return [
    shortId(h.id),
    minuteTime(h.time),
    groupLabel({ host: h.host, sources: h.sources.map((s) => s.path), tags: h.tags }),
    (i.problems.length > 0 ? `${kind} BROKEN` : kind) + (isHeld(holds, h) ? ' HELD' : ''),
    String(h.stats.files),
    bytes(h.stats.bytesIn),
    bytes(h.stats.bytesStored),
    duration(h.stats.durationMs),
    findings ? anomalyCell(findings.get(h.id)) : '-',
  ];
}

function backupJson(i: SurveyedBackup, findings: Map<string, AnomalyFinding[]> | undefined, holds: readonly RetentionHold[]) {
  if ('error' in i) return { id: i.id, shortId: shortId(i.id), damaged: true, error: i.error };
  const h = i.header;
  const sources = h.sources.map((s) => s.path);
  const found = findings?.get(h.id);
  return {
    id: h.id,
    shortId: shortId(h.id),
    time: h.time,
    kind: h.kind,
    host: h.host,
    sources,
    tags: h.tags,
    group: groupJson({ host: h.host, sources }),
    files: h.stats.files,
    bytesIn: h.stats.bytesIn,
    bytesStored: h.stats.bytesStored,
    durationMs: h.stats.durationMs,
    compressionRatio: h.stats.compressionRatio,
    warnings: h.stats.warnings,
    // null: no judgement recorded (history off, or the backup has no run record).
    anomalies: findings ? (found?.length ?? (findings.has(h.id) ? 0 : null)) : null,
    held: isHeld(holds, h),
    broken: i.problems.length > 0,
    ...(i.problems.length > 0 ? { problems: i.problems } : {}),
  };
}

async function cmdList(opts: CommonOpts & FilterOpts): Promise<void> {
  const { cfg, store, keys } = await setup(opts, 'list');
  const filter = filterOf(opts);
  const { all, findings, holds } = await withStore(store, async () => {
    const repo = await Repository.open(store, keys);
    const all = await surveyBackups(repo);
    const enabled = cfg.anomaly?.enabled !== false;
    return { all, findings: await findingsOf(repo, { enabled, detector: detectorOptions(cfg.anomaly) }), holds: await openHolds(repo) };
  });
  const filtered = !isEmptyFilter(filter);
  // A damaged manifest names no host or source: it is shown only when nothing is filtered.
  const items = filtered
    ? all.filter(
        (i): i is Surveyed => 'header' in i && matchesFilter({ ...i.header, sources: i.header.sources.map((s) => s.path) }, filter),
      )
    : all;
  const damaged = items.filter((i): i is Damaged => 'error' in i);
  const broken = items.filter((i): i is Surveyed => 'problems' in i && i.problems.length > 0);
  const headers = items.flatMap((i) => ('header' in i ? [i.header] : []));
  const groups = new Set(headers.map((h) => groupId({ host: h.host, sources: h.sources.map((s) => s.path) })));
  const hostWarning = generatedHostWarning(
    headers.map((h) => ({ id: h.id, time: h.time, host: h.host, sources: h.sources.map((s) => s.path) })),
  );
  if (opts.json) {
    emitJson({
      ok: damaged.length === 0 && broken.length === 0,
      repository: store.location,
      ...(filtered ? { filter } : {}),
      groups: groups.size,
      ...(hostWarning ? { hostWarning } : {}),
      retentionHolds: holds.map(holdJson),
      backups: items.map((i) => backupJson(i, findings, holds)),
    });
  } else if (items.length === 0) {
    out(filtered ? `no backups in ${store.location} match ${describeFilter(filter)}` : `no backups in ${store.location}`);
  } else {
    out(
      fitTable(
        ['ID', 'TIME (UTC)', 'HOST: SOURCES [TAGS]', 'KIND', 'FILES', 'SIZE IN', 'STORED', 'DURATION', 'ANOM'],
        items.map((i) => listRow(i, findings, holds)),
        [false, false, false, false, true, true, true, true, true],
        // A group is cut in its middle (host and last source stay), an error at its end.
        { maxWidth: TABLE_WIDTH, flex: [2], minFlex: 20, middle: (row, column) => column === 2 && 'header' in items[row]! },
      ),
    );
    out(
      `${items.length} backup(s) of ${groups.size} group(s) in ${store.location}${filtered ? ` (${describeFilter(filter)}; ${all.length} in all)` : ''}`,
    );
  }
  if (!opts.json) for (const l of holdLines(holds)) out(l);
  noteProblems(damaged, broken, hostWarning);
  if (damaged.length || broken.length) exitWith(EXIT.warnings);
}

function noteProblems(damaged: Damaged[], broken: Surveyed[], hostWarning: HostIdentityWarning | undefined): void {
  for (const d of damaged) note(`backup ${d.id} is DAMAGED: ${d.error}`);
  if (damaged.length) note(`${damaged.length} backup manifest(s) could not be read; run "s3backup verify ID" on them`);
  for (const b of broken) {
    const p = b.problems[0]!;
    note(`backup ${b.id} is BROKEN: ${p.key}: ${p.problem}${b.problems.length > 1 ? ` (and ${b.problems.length - 1} more)` : ''}`);
  }
  if (broken.length) note(`${broken.length} backup(s) cannot be fully restored; "s3backup verify --all" lists what each lacks`);
  if (hostWarning) {
    note(`warning: ${hostWarning.message}`);
    note(`  hint: ${hostWarning.hint}`);
  }
}

export function registerList(program: Command): void {
  withCommon(
    withFilters(
      program
        .command('list')
        .alias('ls-backups')
        .description('list the backups in a repository, oldest first, with their group (host, sources, tags)'),
    ).addHelpText(
      'after',
      `
Columns: short id, start time, group (host: sources [tags]), kind (full or incr), files, bytes
read, bytes stored, duration, anomalies (findings when the backup was judged against its
group's history; "!" when one is of high severity). Long groups are cut with "…" so the table
fits 120 columns; --json has everything. Use an id (the short id, any unique part of the full
id, or "latest") with restore, ls, cat, diff and verify.
A backup whose manifest cannot be read, or is damaged (a field missing or of the wrong type), is listed
as DAMAGED with what is wrong; the others are listed as usual, and the exit code is 3.

Examples:
  s3backup list
  s3backup list --host web1 --path /srv/projects
  s3backup list --json | jq '.backups[] | select(.anomalies > 0) | .id'`,
    ),
  ).action(cmdList);
}
