import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { S3BackupError, UsageError } from '../../errors.ts';
import { detectorOptions } from '../../backup/options.ts';
import {
  DEFAULT_DETECTOR_OPTIONS as D,
  DetectorOptionsSchema,
  type DetectorOptions,
  detectAnomalies,
  evaluateHistory,
} from '../../monitor/anomaly.ts';
import { compactHistory, historyCsv, readHistory } from '../../monitor/history.ts';
import { activeHolds, readHolds } from '../../monitor/holds.ts';
import { holdJson, holdLines, registerAnomalyAck } from './anomaly-hold.ts';
import type { KeySource } from '../../crypto/keys.ts';
import { type HistoryCrypto, Repository, RepositoryMissingError } from '../../repo/repository.ts';
import type { Store } from '../../store/store.ts';
import type { AnomalyFinding, RunRecord } from '../../monitor/types.ts';
import { type CommonOpts, EXIT, emitJson, exitWith, note, out, setup, withCommon, withStore } from '../common.ts';
import { bytes, duration, fitTable, TABLE_WIDTH, truncateMiddle } from '../../format.ts';
import { describeFilter, groupJson, groupLabel, isEmptyFilter, matchesFilter, shortId } from '../../repo/groups.ts';
import { type FilterOpts, filterOf, withFilters } from '../filters.ts';

// s3backup history [--csv FILE] [--json] [--compact]: every backup attempt recorded in the
// repository. s3backup anomalies [ID|--all] [--json]: judge runs against their history.

interface HistoryOpts extends CommonOpts, FilterOpts {
  csv?: string;
  last?: number;
  compact?: boolean;
}

function shortTime(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, '');
}

/**
 * An encrypted repository's history needs its key (the passphrase, as for a restore); a plain
 * one, or a location with no repository yet (which has no history either), does not.
 */
export async function historyCrypto(store: Store, keys: KeySource): Promise<HistoryCrypto | undefined> {
  // open() reads config.json and asks for the key only if the repository is encrypted.
  const repo = await Repository.open(store, keys).catch((e: unknown) => {
    if (e instanceof RepositoryMissingError) return undefined;
    throw e;
  });
  return repo?.historyCrypto();
}

/** Per run id: the findings of judging it against the runs of its group before it (anomalies --all). */
export function findingsById(records: RunRecord[], detector: DetectorOptions): Map<string, AnomalyFinding[]> {
  return new Map(evaluateHistory(records, detector).map((e) => [e.record.id, e.findings]));
}

/** A run's findings as a table cell: their count, with "!" when one is of high severity; "" for none. */
export function anomalyCell(findings: AnomalyFinding[] | undefined): string {
  if (!findings?.length) return '';
  return `${findings.length}${findings.some((f) => f.severity === 'high') ? '!' : ''}`;
}

/** The group of a run as the tables show it. */
function runGroup(r: RunRecord): string {
  return groupLabel({ host: r.host, sources: r.sources, tags: r.tags });
}

function historyRow(r: RunRecord, findings: Map<string, AnomalyFinding[]>): string[] {
  return [
    shortId(r.id),
    shortTime(r.time).slice(0, 16),
    runGroup(r),
    r.kind === 'incremental' ? 'incr' : r.kind,
    r.ok ? (r.warnings ? `ok, ${r.warnings} warn` : 'ok') : `FAILED (${r.operation ?? '?'}): ${r.error ?? ''}`,
    duration(r.durationMs),
    String(r.files),
    bytes(r.bytesIn),
    bytes(r.bytesStored),
    String(r.newFiles + r.changedFiles + r.deletedFiles),
    anomalyCell(findings.get(r.id)),
  ];
}

async function cmdHistory(opts: HistoryOpts): Promise<void> {
  const filter = filterOf(opts);
  const { cfg, store, log, keys } = await setup(opts, 'history');
  const warnings: string[] = [];
  const { all, compacted } = await withStore(store, async () => {
    const crypto = await historyCrypto(store, keys);
    const compacted = opts.compact ? await compactHistory(store, { maxSegments: 0, crypto }) : undefined;
    return { all: await readHistory(store, { onWarning: (w) => warnings.push(w), crypto }), compacted };
  });
  for (const w of warnings) log.warn(w);
  // Every run is judged against its own group's runs, so filtering afterwards changes no finding.
  const findings = findingsById(all, detectorOptions(cfg.anomaly));
  const records = all.filter((r) => matchesFilter(r, filter));
  if (opts.csv) {
    const text = historyCsv(records);
    if (opts.csv === '-') {
      if (opts.json) throw new UsageError('--csv - and --json both want stdout', { hint: 'give --csv a file name, or drop --json' });
      process.stdout.write(text);
    } else {
      try {
        fs.mkdirSync(path.dirname(path.resolve(opts.csv)), { recursive: true });
        fs.writeFileSync(opts.csv, text);
      } catch (e) {
        throw new S3BackupError(`cannot write ${opts.csv}: ${(e as Error).message}`, { hint: 'choose a writable path for --csv' });
      }
      note(`wrote ${records.length} run(s) to ${opts.csv}`);
    }
  }
  const shown = opts.last !== undefined ? records.slice(-opts.last) : records;
  if (opts.json) {
    emitJson({
      ok: true,
      repository: store.location,
      ...(isEmptyFilter(filter) ? {} : { filter }),
      runs: shown.map((r) => ({
        ...r,
        shortId: shortId(r.id),
        group: groupJson(r),
        anomalies: r.ok ? (findings.get(r.id)?.length ?? 0) : null,
      })),
      count: records.length,
      ...(opts.csv ? { csv: opts.csv } : {}),
      ...(compacted ? { compacted } : {}),
      warnings,
    });
  } else if (opts.csv !== '-') {
    if (compacted)
      note(
        `compacted ${compacted.runsMerged} run record(s) and ${compacted.segmentsMerged} segment(s) into ${compacted.segment ?? 'nothing'}`,
      );
    const where = `${store.location}${isEmptyFilter(filter) ? '' : ` matching ${describeFilter(filter)}`}`;
    if (records.length === 0) out(`no backup runs recorded in ${where}`);
    else {
      out(
        fitTable(
          ['ID', 'TIME (UTC)', 'HOST: SOURCES [TAGS]', 'KIND', 'RESULT', 'DURATION', 'FILES', 'SIZE IN', 'STORED', 'CHANGED', 'ANOM'],
          shown.map((r) => historyRow(r, findings)),
          [false, false, false, false, false, true, true, true, true, true, true],
          { maxWidth: TABLE_WIDTH, flex: [2, 4], middle: (_row, column) => column === 2 },
        ),
      );
      const flagged = shown.filter((r) => findings.get(r.id)?.length).length;
      out(`${records.length} run(s) in ${where}${shown.length < records.length ? ` (last ${shown.length} shown)` : ''}`);
      if (flagged) out(`${flagged} of them flagged as anomalous (ANOM: findings, "!" high severity; "s3backup anomalies ID" says why)`);
    }
  }
  for (const w of warnings) note(`warning: ${w}`);
  if (warnings.length) exitWith(EXIT.warnings);
}

/** Findings as a short indented block for terminals (backup and anomalies share it). */
export function findingLines(findings: AnomalyFinding[]): string[] {
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`  [${f.severity} ${f.level.toFixed(2)}] ${f.metric}: ${f.message}`);
    lines.push(`    → ${f.recommendation}`);
  }
  return lines;
}

interface AnomaliesOpts extends CommonOpts {
  all?: boolean;
  sigma?: number;
  robustThreshold?: number;
  minHistory?: number;
}

function matchRun(records: RunRecord[], ref: string): RunRecord {
  if (ref === 'latest') {
    const last = records.filter((r) => r.ok).at(-1);
    if (!last)
      throw new S3BackupError('no successful backup runs recorded yet', { hint: 'run "s3backup history" to see what is recorded' });
    return last;
  }
  const exact = records.find((r) => r.id === ref);
  if (exact) return exact;
  const m = records.filter((r) => r.id.startsWith(ref) || r.id.endsWith(`-${ref}`));
  if (m.length === 1) return m[0]!;
  if (m.length > 1)
    throw new UsageError(
      `run id "${ref}" is ambiguous: ${m
        .slice(0, 5)
        .map((r) => r.id)
        .join(', ')}`,
    );
  throw new S3BackupError(`no run "${ref}" in the history`, { hint: 'run "s3backup history" to see the run ids' });
}

async function cmdAnomalies(id: string | undefined, opts: AnomaliesOpts): Promise<void> {
  if (id && opts.all) throw new UsageError('give a run id or --all, not both');
  const { cfg, store, keys } = await setup(opts, 'anomalies');
  const fromFlags: DetectorOptions = {
    ...(opts.sigma !== undefined ? { sigma: opts.sigma } : {}),
    ...(opts.robustThreshold !== undefined ? { robustThreshold: opts.robustThreshold } : {}),
    ...(opts.minHistory !== undefined ? { minHistory: opts.minHistory } : {}),
  };
  const checked = DetectorOptionsSchema.safeParse(fromFlags);
  if (!checked.success)
    throw new UsageError(`invalid threshold: ${checked.error.issues[0]!.path.join('.')}: ${checked.error.issues[0]!.message}`);
  const detector = { ...detectorOptions(cfg.anomaly), ...checked.data };
  const warnings: string[] = [];
  const { records, holds } = await withStore(store, async () => {
    const crypto = await historyCrypto(store, keys);
    const records = await readHistory(store, { onWarning: (w) => warnings.push(w), crypto });
    return { records, holds: activeHolds(await readHolds(store, crypto, (w) => warnings.push(w))) };
  });
  const evaluated = opts.all
    ? evaluateHistory(records, detector)
    : (() => {
        const run = matchRun(records, id ?? 'latest');
        if (!run.ok)
          throw new S3BackupError(`run ${run.id} failed (${run.error ?? 'no error recorded'}); only successful backups are judged`);
        return [{ record: run, findings: detectAnomalies(run, records, detector) }];
      })();
  const flagged = evaluated.filter((e) => e.findings.length > 0);
  if (opts.json) {
    emitJson({
      ok: true,
      repository: store.location,
      evaluated: evaluated.length,
      flagged: flagged.length,
      runs: (opts.all ? flagged : evaluated).map((e) => ({
        id: e.record.id,
        shortId: shortId(e.record.id),
        time: e.record.time,
        host: e.record.host,
        kind: e.record.kind,
        sources: e.record.sources,
        group: groupJson(e.record),
        findings: e.findings,
      })),
      retentionHolds: holds.map(holdJson),
      warnings,
    });
  } else {
    for (const e of opts.all ? flagged : evaluated) {
      const r = e.record;
      const head = `${shortId(r.id)} ${shortTime(r.time)} UTC ${r.kind} of `;
      const tail = `: ${e.findings.length === 0 ? 'nothing unusual' : `${e.findings.length} finding(s)`}`;
      out(head + truncateMiddle(runGroup(r), TABLE_WIDTH - head.length - tail.length) + tail);
      for (const l of findingLines(e.findings)) out(l);
    }
    if (opts.all) out(`${flagged.length} of ${evaluated.length} successful run(s) flagged`);
    for (const l of holdLines(holds)) out(l);
    for (const w of warnings) note(`warning: ${w}`);
  }
  if (flagged.length || warnings.length) exitWith(EXIT.warnings);
}

const count = (flag: string) => (v: string) => {
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} must be a whole number, not ${JSON.stringify(v)}`);
  return Number(v);
};
const positive = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number, not ${JSON.stringify(v)}`);
  return n;
};

export function registerHistory(program: Command): void {
  withCommon(
    withFilters(
      program
        .command('history')
        .description('every backup attempt recorded in the repository (successes and failures, all hosts), oldest first')
        .option('--csv <file>', 'also write the history as a CSV time series to FILE ("-" for stdout)')
        .option('--last <n>', 'show only the last N runs (the CSV and the count are always complete)', count('--last'))
        .option('--compact', 'merge the small per-run records into one segment now (done automatically as they pile up)')
        .addHelpText(
          'after',
          `
Each backup leaves a small run record under history/ in the repository: time, host, kind,
duration, files, bytes read and stored, compression ratio, files new/changed/deleted,
warnings, and for a failure the error and the step that failed. The history outlives the
retention policy (forget and prune never touch it), so anomaly detection has a long memory.
CSV columns: ${'timestamp,id,host,sources,kind,ok,duration_seconds,files,bytes_in,bytes_total,bytes_stored,compression_ratio,new_files,changed_files,deleted_files,warnings,error'}.

Examples:
  s3backup history --last 20
  s3backup history --csv backup-history.csv
  s3backup history --host web1 --path /srv/projects
  s3backup history --json | jq '.runs[] | select(.ok == false)'`,
        ),
    ),
  ).action(cmdHistory);

  const anomalies = withCommon(
    program
      .command('anomalies')
      .description('judge a backup (default: the latest) or every backup (--all) against the history of comparable backups')
      .argument('[id]', 'run id, a unique part of it, or "latest"')
      .option('--all', 're-evaluate every successful run, each against the runs before it; prints the flagged ones')
      .option('--sigma <k>', `the mean ± k·σ rule (default ${D.sigma}; config anomaly.sigma)`, positive('--sigma'))
      .option(
        '--robust-threshold <r>',
        `robust (median/MAD) score threshold (default ${D.robustThreshold}; config anomaly.robustThreshold)`,
        positive('--robust-threshold'),
      )
      .option(
        '--min-history <n>',
        `comparable backups needed before judging (default ${D.minHistory}; config anomaly.minHistory)`,
        count('--min-history'),
      )
      .addHelpText(
        'after',
        `
Comparable backups: same host and sources, same kind (full and incremental apart), earlier
and successful. Signals: size and duration (mean ± 2σ and median/MAD, after weekday rhythm
and growth), change ratio, compression collapse, mass deletion, file-count drop, unusual
file extensions, slow drift. Each finding gives current vs expected, the score, the history
it was judged on, and a recommended action. Thresholds: the anomaly: section of s3backup.yaml
(docs/anomaly-detection.md). Exit code 3 when anything is flagged.

Examples:
  s3backup anomalies
  s3backup anomalies 20261126T101500.123Z-1a2b3c4d --json
  s3backup anomalies --all --robust-threshold 5
  s3backup anomalies ack 20261126T101500.123Z-1a2b3c4d`,
      ),
  ).action(cmdAnomalies);
  registerAnomalyAck(anomalies);
}
