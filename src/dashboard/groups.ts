import type { AnomalyFinding, RetentionHold, RunRecord } from '../monitor/types.ts';
import { groupId } from '../repo/groups.ts';
import type { BackupRow, Freshness, MonitorData, Panel } from './data.ts';

/**
 * The fleet overview: one entry per group of a repository (src/repo/groups.ts: host + sources;
 * tags are shown, they do not split a group), each judged on its own backups. Freshness is the
 * group's own (its own cadence, or the schedule or --max-age that applies to every group), so a
 * daily group beside an hourly one is neither a false alarm nor hidden by the other's backups.
 */

/** Points of the size trend each group carries (its newest backups). */
export const TREND_POINTS = 30;

export interface GroupEntry {
  /** groupId: 16 hex digits, the run history's sourceKey. */
  id: string;
  host: string;
  sources: string[];
  /** Every tag its backups carry, sorted. */
  tags: string[];
  backups: number;
  storedBytes: number;
  freshness: Freshness;
  lastBackup: {
    id: string;
    time: string;
    endTime: string;
    kind: 'full' | 'incremental';
    files: number;
    bytesIn: number;
    bytesTotal: number;
    bytesStored: number;
  } | null;
  /** The group's newest run in the run history (a failure shows here), else its newest backup. */
  lastResult: { ok: boolean; id: string; time: string; error?: string; operation?: string; from: 'history' | 'backups' } | null;
  /** The snapshot size (bytesTotal) of its newest backups, oldest first, with their start times (epoch s). */
  trend: { t: number[]; bytesTotal: number[] };
  /** Backups of the group the anomaly detector flagged; null when there is no run history to judge by. */
  anomalies: number | null;
  lastAnomaly: { id: string; time: string; severity: 'high' | 'warning' } | null;
  /** An open anomaly hold: the group's retention is suspended until acknowledged. */
  hold: { backupId: string; time: string; reasons: string[] } | null;
}

interface Building {
  host: string;
  sources: string[];
  tags: Set<string>;
  rows: BackupRow[];
  runs: RunRecord[];
}

const severityOf = (fs: readonly AnomalyFinding[]): 'high' | 'warning' => (fs.some((f) => f.severity === 'high') ? 'high' : 'warning');

/** Backups (oldest first) and run records placed in their groups, in a stable order (host, then sources). */
function collect(rows: readonly BackupRow[], runs: readonly RunRecord[]): Map<string, Building> {
  const groups = new Map<string, Building>();
  const at = (host: string, sources: readonly string[]) => {
    const id = groupId({ host, sources });
    let g = groups.get(id);
    if (!g) {
      g = { host, sources: [...sources].sort(), tags: new Set(), rows: [], runs: [] };
      groups.set(id, g);
    }
    return g;
  };
  for (const r of rows) {
    const g = at(r.host, r.sources);
    g.rows.push(r);
    for (const t of r.tags) g.tags.add(t);
  }
  // A group whose every run failed has no backup, and is exactly one to show.
  for (const run of runs) at(run.host, run.sources).runs.push(run);
  return new Map(
    [...groups.entries()].sort(([, a], [, b]) =>
      a.host !== b.host ? (a.host < b.host ? -1 : 1) : a.sources.join('\0') < b.sources.join('\0') ? -1 : 1,
    ),
  );
}

/**
 * The fleet overview of one repository. `freshnessOf` judges a group's own backups (oldest
 * first), as the repository-wide freshness judges all of them.
 */
export function groupEntries(
  rows: readonly BackupRow[],
  monitor: Panel<MonitorData>,
  freshnessOf: (rows: BackupRow[]) => Freshness,
): GroupEntry[] {
  const mon = monitor.status === 'ok' ? monitor.data : undefined;
  const holds = new Map<string, RetentionHold>();
  for (const h of mon?.holds ?? []) holds.set(groupId(h), h);
  const out: GroupEntry[] = [];
  for (const [id, g] of collect(rows, mon?.runs ?? [])) {
    const last = g.rows.at(-1);
    const lastRun = g.runs.at(-1);
    const flagged = g.runs.filter((r) => r.ok && (mon?.findings[r.id]?.length ?? 0) > 0);
    const lastFlagged = flagged.at(-1);
    const hold = holds.get(id);
    const trendRows = g.rows.slice(-TREND_POINTS);
    out.push({
      id,
      host: g.host,
      sources: g.sources,
      tags: [...g.tags].sort(),
      backups: g.rows.length,
      storedBytes: g.rows.reduce((a, r) => a + r.bytesStored, 0),
      freshness: freshnessOf(g.rows),
      lastBackup: last
        ? {
            id: last.id,
            time: last.time,
            endTime: last.endTime,
            kind: last.kind,
            files: last.files,
            bytesIn: last.bytesIn,
            bytesTotal: last.bytesTotal,
            bytesStored: last.bytesStored,
          }
        : null,
      lastResult: lastRun
        ? {
            ok: lastRun.ok,
            id: lastRun.id,
            time: lastRun.time,
            ...(lastRun.error !== undefined ? { error: lastRun.error } : {}),
            ...(lastRun.operation !== undefined ? { operation: lastRun.operation } : {}),
            from: 'history',
          }
        : last
          ? { ok: true, id: last.id, time: last.endTime || last.time, from: 'backups' }
          : null,
      trend: { t: trendRows.map((r) => Date.parse(r.time) / 1000), bytesTotal: trendRows.map((r) => r.bytesTotal) },
      anomalies: mon ? flagged.length : null,
      lastAnomaly: lastFlagged
        ? { id: lastFlagged.id, time: lastFlagged.time, severity: severityOf(mon!.findings[lastFlagged.id]!) }
        : null,
      hold: hold ? { backupId: hold.backupId, time: hold.time, reasons: hold.reasons } : null,
    });
  }
  return out;
}

/**
 * The repository's freshness as the fleet's: the worst of its groups (a stale group makes it
 * stale, named in `group`), else the group with the newest backup. Never the usual gap of all
 * groups mixed, which both raised false alarms and hid a group that had stopped.
 */
export function fleetFreshness(groups: readonly GroupEntry[]): Freshness & { group?: { id: string; host: string; sources: string[] } } {
  const rank = { stale: 0, ok: 1, unknown: 2 } as const;
  const judged = groups.filter((g) => g.freshness.newest);
  const worst = [...judged].sort(
    (a, b) =>
      rank[a.freshness.status] - rank[b.freshness.status] ||
      Date.parse(b.freshness.newest!.endTime || b.freshness.newest!.time) -
        Date.parse(a.freshness.newest!.endTime || a.freshness.newest!.time),
  )[0];
  if (!worst) return { status: 'unknown' };
  return { ...worst.freshness, group: { id: worst.id, host: worst.host, sources: worst.sources } };
}
