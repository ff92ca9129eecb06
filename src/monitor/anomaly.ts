import { z } from 'zod';
import type { AnomalyFinding, RunRecord } from './types.ts';

/**
 * Anomaly detection over the run history (docs/anomaly-detection.md).
 *
 * A backup is compared with earlier successful backups of the same source set and kind (full
 * and incremental apart). Two kinds of metric:
 *   - flow metrics of incrementals (bytes read, bytes stored, duration): how much happened
 *     today. Judged in log space after removing the weekday rhythm (median per weekday) and
 *     growth (Theil–Sen trend), so a quiet Sunday or a busy Monday is not news;
 *   - level metrics (file count, snapshot size; for fulls also bytes read/stored and duration):
 *     judged by their step from the previous comparable backup against the usual steps, so one
 *     legitimate jump (an import) is flagged once and the next backup is judged from the new
 *     level instead of raising the alarm for weeks.
 * On those residuals: the z-score rule (|x − mean| > k·σ of recent history) and a robust
 * variant (median/MAD), which one earlier outlier cannot blind; either flags, but only when the
 * change is also large enough to matter (minRelativeChange, minLevelChange, byte/time floors):
 * on normal data ±2σ alone flags about 5 % of backups per metric, far too many alarms.
 * Rules catch what size alone misses: change ratio, compression collapse, mass deletion, a
 * file-count drop, a burst of unusual extensions, and slow drift (growth beyond the usual over
 * the last few backups).
 */

export const DetectorOptionsSchema = z
  .object({
    /** Comparable successful backups needed before statistical judgement (fulls: half; rules need 1–2). */
    minHistory: z.int().min(2),
    /** How many recent comparable backups the statistics look at. */
    window: z.int().min(5),
    /** z-score rule: flag beyond this many standard deviations from the mean. */
    sigma: z.number().positive(),
    /** Robust rule: flag beyond this robust z (median/MAD·1.4826). */
    robustThreshold: z.number().positive(),
    /** Flow metrics (incremental size, duration): ignore rises smaller than this fraction of expected. */
    minRelativeChange: z.number().min(0),
    /**
     * Flow metrics: the expected value is never taken below this share of the median of all
     * comparable incrementals, whatever their weekday: a weekday bucket learnt from a few quiet
     * examples must not make an ordinary day's change look like many times the usual.
     */
    flowFloor: z.number().min(0).max(1),
    /** Level metrics (file count, snapshot size): ignore steps within this fraction of expected. */
    minLevelChange: z.number().min(0),
    /** Size deviations smaller than this many bytes are never reported (drift too: its growth beyond the usual). */
    minBytes: z.int().min(0),
    /** File-count deviations smaller than this many files are never reported (a toy source of 6 files gains one). */
    minFiles: z.int().min(0),
    /** Duration deviations smaller than this are never reported. */
    minDurationMs: z.int().min(0),
    /** Change ratio (new+changed+deleted / files) at or above this, and unusual, is flagged. */
    changeRatio: z.number().positive().max(1),
    /** Compression collapse: the saving (ratio − 1) fell by more than this share of its usual value (encrypted data?). */
    compressionDrop: z.number().positive().max(1),
    /** Deleted files above this share of the previous backup's files: mass deletion. */
    massDeletion: z.number().positive().max(1),
    /** File count below (1 − this) × the previous comparable backup's: a drop (truncated backup?). */
    fileDrop: z.number().positive().max(1),
    /** Extension burst: at least this many new/changed files with one extension … */
    extensionMinFiles: z.int().min(1),
    /** … making up at least this share of the new/changed files … */
    extensionShare: z.number().positive().max(1),
    /** … and this many times more than its usual count per backup. */
    extensionFactor: z.number().min(1),
    /** Drift: growth beyond the usual, summed over the last driftDays days, above this fraction. */
    drift: z.number().positive(),
    driftDays: z.int().min(3),
  })
  .strict()
  .partial();

export type DetectorOptions = z.infer<typeof DetectorOptionsSchema>;

export const DEFAULT_DETECTOR_OPTIONS: Required<DetectorOptions> = {
  minHistory: 10,
  window: 60,
  sigma: 2,
  robustThreshold: 3.5,
  minRelativeChange: 4,
  flowFloor: 0.25,
  minLevelChange: 0.05,
  minBytes: 1 << 20,
  minFiles: 5,
  minDurationMs: 30_000,
  changeRatio: 0.02,
  compressionDrop: 0.6,
  massDeletion: 0.05,
  fileDrop: 0.1,
  extensionMinFiles: 20,
  extensionShare: 0.2,
  extensionFactor: 10,
  drift: 0.05,
  driftDays: 14,
};

/** Extensions ransomware commonly appends; a burst of one of these is high severity. */
const RANSOM_EXTENSIONS = new Set([
  'locked',
  'encrypted',
  'enc',
  'crypt',
  'crypted',
  'cry',
  'crypto',
  'locky',
  'zepto',
  'cerber',
  'wncry',
  'wnry',
  'ryk',
  'ryuk',
  'conti',
  'lockbit',
  'akira',
  'basta',
  'djvu',
  'stop',
  'ransom',
  'pay',
  'xtbl',
  'aes',
  'rsa',
  'vault',
  'r5a',
]);

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/**
 * Findings about `current`, judged on the comparable runs in `history`: same sourceKey and
 * kind, successful, before `current` (history may hold anything; current itself is ignored).
 */
export function detectAnomalies(current: RunRecord, history: RunRecord[], opts: DetectorOptions = {}): AnomalyFinding[] {
  const o = { ...DEFAULT_DETECTOR_OPTIONS, ...opts };
  if (!current.ok) return [];
  const before = history.filter((r) => r.ok && r.sourceKey === current.sourceKey && r.id !== current.id && isBefore(r, current));
  before.sort(byTime);
  const prev = before.at(-1);
  return detect(current, before, o, prev ? detect(prev, before.slice(0, -1), o, []) : []);
}

export interface EvaluatedRun {
  record: RunRecord;
  findings: AnomalyFinding[];
}

/** Every successful run judged on the runs before it (`anomalies --all`), oldest first. */
export function evaluateHistory(history: RunRecord[], opts: DetectorOptions = {}): EvaluatedRun[] {
  const o = { ...DEFAULT_DETECTOR_OPTIONS, ...opts };
  const sorted = [...history].sort(byTime);
  const bySource = new Map<string, RunRecord[]>();
  const lastFindings = new Map<string, AnomalyFinding[]>();
  const out: EvaluatedRun[] = [];
  for (const r of sorted) {
    if (!r.ok) continue;
    const prior = bySource.get(r.sourceKey) ?? [];
    const findings = detect(r, prior, o, lastFindings.get(r.sourceKey) ?? []);
    lastFindings.set(r.sourceKey, findings);
    out.push({ record: r, findings });
    prior.push(r);
    bySource.set(r.sourceKey, prior);
  }
  return out;
}

function byTime(a: RunRecord, b: RunRecord): number {
  return a.time < b.time ? -1 : a.time > b.time ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
function isBefore(a: RunRecord, b: RunRecord): boolean {
  return byTime(a, b) < 0;
}

// ---------------------------------------------------------------------------------------------

interface Ctx {
  cur: RunRecord;
  /** Successful runs of the same sources, any kind, oldest first, before cur. */
  all: RunRecord[];
  /** Of those, the same kind, the last `window`. */
  comp: RunRecord[];
  o: Required<DetectorOptions>;
  /** Weekday/first-after-full group of each comparable run and of cur. */
  group: (r: RunRecord, i: number) => string;
  curGroup: string;
  statsReady: boolean;
}

/** Findings about `cur` given the earlier runs of its sources (`all`) and the findings about the last of them. */
function detect(cur: RunRecord, all: RunRecord[], o: Required<DetectorOptions>, previousFindings: AnomalyFinding[]): AnomalyFinding[] {
  const sameKind = all.filter((r) => r.kind === cur.kind);
  const comp = sameKind.slice(-o.window);
  // The first incremental after a full can differ systematically (weekly jobs, a chain restart):
  // it gets its own group once there are enough of them, else it joins its weekday.
  const firstAfterFull = new Set<string>();
  for (let i = 1; i < all.length; i++) if (all[i]!.kind === 'incremental' && all[i - 1]!.kind === 'full') firstAfterFull.add(all[i]!.id);
  const curFirst = cur.kind === 'incremental' && all.at(-1)?.kind === 'full';
  const firstCount = comp.filter((r) => firstAfterFull.has(r.id)).length;
  const groupOf = (r: RunRecord, first: boolean): string => {
    if (r.kind === 'full') return 'full';
    if (first && firstCount >= 3) return 'first';
    return WEEKDAYS[new Date(r.time).getUTCDay()]!;
  };
  const ctx: Ctx = {
    cur,
    all,
    comp,
    o,
    group: (r) => groupOf(r, firstAfterFull.has(r.id)),
    curGroup: groupOf(cur, curFirst),
    // Fulls are rarer (weekly, monthly) and judged by their steps, which are steadier: half the history will do.
    statsReady: comp.length >= (cur.kind === 'full' ? Math.ceil(o.minHistory / 2) : o.minHistory),
  };
  const findings: AnomalyFinding[] = [];
  const add = (f: AnomalyFinding | undefined) => {
    if (f && !findings.some((x) => x.metric === f.metric)) findings.push(f);
  };
  // Rules first: where a rule and a statistic see the same metric, the rule's finding is clearer.
  add(compressionCollapse(ctx));
  add(massDeletion(ctx));
  add(fileDrop(ctx));
  add(changeRatio(ctx));
  for (const f of extensionBurst(ctx)) add(f);
  if (ctx.statsReady) {
    if (cur.kind === 'incremental') {
      add(flowMetric(ctx, 'bytesIn'));
      add(flowMetric(ctx, 'bytesStored'));
      add(flowMetric(ctx, 'durationMs'));
    } else {
      add(levelMetric(ctx, 'bytesIn'));
      add(levelMetric(ctx, 'bytesStored'));
      add(levelMetric(ctx, 'durationMs'));
    }
    add(compressionShift(ctx));
    add(drift(ctx));
  }
  // File count and snapshot size mean the same in a full and an incremental: judged on the
  // steps between consecutive backups of any kind, so the first incremental after a full is
  // judged from the full's level, and a full from the backup before it.
  const levels: Ctx = { ...ctx, comp: all.slice(-o.window) };
  if (levels.comp.length >= o.minHistory) {
    add(levelMetric(levels, 'files'));
    add(levelMetric(levels, 'bytesTotal'));
  }
  return advise(findings, cur, all, previousFindings, o);
}

/**
 * The advice made concrete: the backup's own id and its predecessor's in place of {id} and
 * {prev}; and a backup that undoes the previous one's event (the files that vanished or were
 * rewritten came back, compressing again) is described as the recovery it is, not as a new
 * attack: its findings are warnings that hold nothing, and the advice is to check it against
 * the last backup before the event and acknowledge that event.
 */
function advise(
  findings: AnomalyFinding[],
  cur: RunRecord,
  all: RunRecord[],
  previousFindings: AnomalyFinding[],
  o: Required<DetectorOptions>,
): AnomalyFinding[] {
  const prev = all.at(-1);
  // Without an earlier backup, ID^ names the one before it in the repository, if any (s3backup diff resolves it).
  const fill = (text: string) => text.replaceAll('{id}', cur.id).replaceAll('{prev}', prev?.id ?? `${cur.id}^`);
  const personal = findings.map((f) => ({ ...f, recommendation: fill(f.recommendation) }));
  if (!prev || !isRecovery(cur, prev, previousFindings, personal, o)) return personal;
  const before = all.at(-2);
  const clean = before ? `${before.id}, the last backup before it` : 'the last backup before it';
  return personal.map((f) => {
    const { ransomware: _held, ...rest } = f;
    return {
      ...rest,
      message: `${f.message} This backup looks like a recovery: what changed or vanished in backup ${prev.id} came back.`,
      recommendation: `If the files were restored after the event of backup ${prev.id}, check that this backup matches ${clean} (s3backup diff ${before?.id ?? prev.id} ${cur.id}), then acknowledge the event: s3backup anomalies ack ${prev.id}. If nothing was restored, this is a new event: ${f.recommendation}`,
      severity: 'warning',
      level: round(1 + (f.level % 1), 2),
    };
  });
}

/**
 * Whether `cur` undoes an event of `prev`: prev had a ransomware-class finding or lost files,
 * no known ransomware extension shows today, and either the files that vanished came back (new
 * files for half of prev's deletions, without the extension most of prev's new files had: a
 * second wave of renaming brings that one again) or the files rewritten in place were
 * rewritten again and the data compresses better than in prev.
 */
function isRecovery(
  cur: RunRecord,
  prev: RunRecord,
  previousFindings: AnomalyFinding[],
  findings: AnomalyFinding[],
  o: Required<DetectorOptions>,
): boolean {
  if (!previousFindings.some((f) => f.ransomware || f.metric === 'files')) return false;
  if (findings.some((f) => f.metric === 'extensions' && f.ransomware)) return false;
  const [burst, burstCount] = Object.entries(prev.extensions ?? {}).sort((a, b) => b[1] - a[1])[0] ?? ['', 0];
  const burstAgain = burstCount >= 0.5 * (prev.newFiles + prev.changedFiles) && (cur.extensions?.[burst] ?? 0) >= 0.1 * burstCount;
  const cameBack = prev.deletedFiles >= o.extensionMinFiles && cur.newFiles >= 0.5 * prev.deletedFiles && !burstAgain;
  const rewrittenBack =
    prev.changedFiles >= o.extensionMinFiles &&
    cur.changedFiles >= 0.5 * prev.changedFiles &&
    cur.compressionRatio > 1.05 * prev.compressionRatio;
  return cameBack || rewrittenBack;
}

type NumericMetric = 'bytesIn' | 'bytesStored' | 'durationMs' | 'files' | 'bytesTotal';

const METRIC_NAMES: Record<NumericMetric, string> = {
  bytesIn: 'bytes read',
  bytesStored: 'bytes stored',
  durationMs: 'duration',
  files: 'file count',
  bytesTotal: 'snapshot size',
};

function fmt(metric: string, v: number): string {
  if (metric === 'durationMs') return v < 120_000 ? `${(v / 1000).toFixed(1)} s` : `${(v / 60_000).toFixed(1)} min`;
  if (metric === 'files' || metric === 'deletedFiles') return String(Math.round(v));
  if (metric === 'compressionRatio') return `${v.toFixed(2)}×`;
  if (metric === 'changeRatio') return `${(v * 100).toFixed(1)} %`;
  if (metric.startsWith('bytes')) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    let x = v;
    while (Math.abs(x) >= 1024 && i < units.length - 1) {
      x /= 1024;
      i++;
    }
    return i === 0 ? `${Math.round(x)} B` : `${x.toFixed(x < 10 ? 2 : 1)} ${units[i]}`;
  }
  return String(round(v, 3));
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// ---------------------------------------------------------------------------------------------
// Statistics

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
export function stddev(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
}
/** Median absolute deviation scaled to σ for normal data (×1.4826). */
export function madSigma(xs: number[]): number {
  const m = median(xs);
  return 1.4826 * median(xs.map((x) => Math.abs(x - m)));
}

/** Theil–Sen slope: the median of pairwise slopes (robust to a few outliers). */
function theilSen(ts: number[], ys: number[]): number {
  const slopes: number[] = [];
  for (let i = 0; i < ts.length; i++)
    for (let j = i + 1; j < ts.length; j++) if (ts[j] !== ts[i]) slopes.push((ys[j]! - ys[i]!) / (ts[j]! - ts[i]!));
  return slopes.length ? median(slopes) : 0;
}

const log = (x: number) => Math.log(Math.max(x, 0) + 1);
const DAY = 86_400_000;

interface Scores {
  /** z-score rule: (r − mean)/σ of the history residuals. */
  z: number;
  /** (r − median)/MAD-σ. */
  robust: number;
  sigma: number;
}

/** Scores of residual `r` against history residuals; spreads floored so a flat history does not make every wobble infinite. */
function scores(r: number, hist: number[], floor: number): Scores {
  const sd = Math.max(stddev(hist), floor);
  const ms = Math.max(madSigma(hist), floor);
  return { z: (r - mean(hist)) / sd, robust: (r - median(hist)) / ms, sigma: sd };
}

/** Per-group offsets (median of the group minus the overall median), for groups with ≥ 3 members. */
function seasonal(values: number[], groups: string[]): Map<string, number> {
  const all = median(values);
  const by = new Map<string, number[]>();
  values.forEach((v, i) => {
    const g = groups[i]!;
    if (!by.has(g)) by.set(g, []);
    by.get(g)!.push(v);
  });
  const out = new Map<string, number>();
  for (const [g, vs] of by) if (vs.length >= 3) out.set(g, median(vs) - all);
  return out;
}

/** A statistical finding if the z-score rule or the robust rule fires (z-score preferred when both do). */
function judge(
  ctx: Ctx,
  metric: string,
  current: number,
  expected: number,
  s: Scores,
  direction: 'up' | 'both',
  gate: boolean,
  describe: (how: string) => string,
  recommendation: string,
): AnomalyFinding | undefined {
  if (!gate) return undefined;
  // Few points estimate mean and σ poorly: widen k as Student's t does for df = n − 1
  // (Cornish–Fisher: t ≈ z + (z³ + z)/(4·df)), so the first weeks do not cry wolf.
  const df = Math.max(1, ctx.comp.length - 1);
  const sigma = ctx.o.sigma + (ctx.o.sigma ** 3 + ctx.o.sigma) / (4 * df);
  const robustThreshold = ctx.o.robustThreshold + (ctx.o.robustThreshold ** 3 + ctx.o.robustThreshold) / (4 * df);
  const up = direction === 'up';
  // The z-score rule, confirmed by the median-based score at the same k: on heavy-tailed data
  // (one big file changed on a quiet day) the mean and σ alone give many false alarms.
  const zFires = up
    ? s.z > sigma && s.robust > sigma
    : Math.abs(s.z) > sigma && Math.abs(s.robust) > sigma && Math.sign(s.z) === Math.sign(s.robust);
  const rFires = up ? s.robust > robustThreshold : Math.abs(s.robust) > robustThreshold;
  if (!zFires && !rFires) return undefined;
  const method = zFires ? 'zscore' : 'robust';
  const score = round(zFires ? s.z : s.robust, 2);
  const how = zFires
    ? `${Math.abs(score)}σ from the mean of ${ctx.comp.length} comparable backups (robust score ${round(s.robust, 1)})`
    : `robust score ${score} (median/MAD) on ${ctx.comp.length} comparable backups; the mean ± ${round(sigma, 2)}σ rule misses it (${round(s.z, 1)}σ), its σ inflated by earlier outliers`;
  return {
    metric,
    method,
    current: round(current, 3),
    expected: round(expected, 3),
    score,
    threshold: round(zFires ? sigma : robustThreshold, 2),
    historySize: ctx.comp.length,
    message: describe(how),
    recommendation,
    // Growth, a slow run or a quiet day is worth a look, never an emergency on its own; a
    // snapshot that lost files or data far beyond the usual is.
    ...graded(
      !up && current < expected && (metric === 'files' || metric === 'bytesTotal') && Math.abs(s.robust) > 2 * robustThreshold
        ? 'high'
        : 'warning',
      zFires ? Math.abs(s.z) / sigma : Math.abs(s.robust) / robustThreshold,
    ),
  };
}

/**
 * The severity and the normalized score of a finding (docs/anomaly-detection.md "Severity and
 * score"): a warning scores from 1 to below 2, a high finding from 2 to below 3, and within its
 * band by how far past its threshold it is (`excess` = measure / threshold, ≥ 1): 1 − 1/excess.
 * One unit across signals, so "alert when the score is ≥ 2" means "a high finding".
 */
function graded(severity: AnomalyFinding['severity'], excess: number): Pick<AnomalyFinding, 'severity' | 'level'> {
  const within = Number.isFinite(excess) && excess > 1 ? Math.min(0.99, 1 - 1 / excess) : 0;
  return { severity, level: round((severity === 'high' ? 2 : 1) + within, 2) };
}

/** What the operator should do while retention of the group is held (docs/anomaly-detection.md "Anomaly hold"). */
const HOLD_ADVICE =
  'Retention of this group is suspended (no backup of it is forgotten) until you acknowledge this finding: s3backup anomalies ack {id}.';

function ratioText(current: number, expected: number): string {
  if (expected <= 0) return 'from nothing';
  const r = current / expected;
  if (r >= 2) return `${round(r, 1)}× expected`;
  return r >= 1 ? `${round((r - 1) * 100, 1)} % above expected` : `${round((1 - r) * 100, 1)} % below expected`;
}

function floorFor(metric: NumericMetric, o: Required<DetectorOptions>): number {
  return metric === 'durationMs' ? o.minDurationMs : metric === 'files' ? o.minFiles : o.minBytes;
}

const RECOMMEND: Record<NumericMetric, { up: string; down: string }> = {
  bytesIn: {
    up: 'Check what changed (s3backup diff {prev} {id}): a large import or new data set explains it; unexpected rewrites of many files may be encryption by ransomware. Keep older backups until this is understood (s3backup forget --keep-within).',
    down: 'Check that every source was mounted and readable (the backup warnings; s3backup diff {prev} {id} lists what is gone).',
  },
  bytesStored: {
    up: 'Check what was added and whether it still compresses (encrypted or already-compressed data stores larger); look at storage costs if this is the new normal.',
    down: 'Check that every source was mounted and readable and the backup is complete (s3backup diff {prev} {id}, s3backup verify {id}).',
  },
  durationMs: {
    up: 'Check the host and network (load, bandwidth to the store, throttling) and whether much more data was read; if backups keep getting slower, move the schedule or raise the bandwidth.',
    down: 'If much less data was read too, check that the backup is complete.',
  },
  files: {
    up: 'Check where the new files came from (s3backup diff {prev} {id}); a planned import needs no action, runaway caches or logs should be excluded (--exclude).',
    down: 'Check the sources: a missing mount, a deleted directory or a new exclude removes files from the backup. See what is missing (s3backup diff {prev} {id}) and restore it from {prev}.',
  },
  bytesTotal: {
    up: 'Check what grew (s3backup diff {prev} {id}); a planned import needs no action, a runaway cache or log should be excluded.',
    down: 'Check the sources for deleted or missing data (s3backup diff {prev} {id}) and restore what was lost.',
  },
};

/**
 * Indexes (into ctx.comp) of the backups of the same kind of day as the current one (Monday to
 * Friday, or the weekend), or of all comparable backups while that kind has fewer than two.
 */
function peerIndexes(ctx: Ctx): number[] {
  const weekend = (r: RunRecord) => [0, 6].includes(new Date(r.time).getUTCDay());
  const pooled = ctx.comp.flatMap((r, i) => (weekend(r) === weekend(ctx.cur) ? [i] : []));
  return pooled.length >= 2 ? pooled : ctx.comp.map((_, i) => i);
}

/** The 90th percentile (linear): what a kind of day reaches on its busy days, an outlier or two aside. */
function upperEnvelope(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const at = 0.9 * (s.length - 1);
  const lo = Math.floor(at);
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (at - lo);
}

/** Incremental flow metric: log value vs weekday rhythm and trend. Only rises are alarming. */
function flowMetric(ctx: Ctx, metric: NumericMetric): AnomalyFinding | undefined {
  const { comp, cur, o } = ctx;
  const ys = comp.map((r) => log(r[metric]));
  const groups = comp.map((r, i) => ctx.group(r, i));
  const season = seasonal(ys, groups);
  const ds = ys.map((y, i) => y - (season.get(groups[i]!) ?? 0));
  const ts = comp.map((r) => Date.parse(r.time) / DAY);
  const tCur = Date.parse(cur.time) / DAY;
  // Growth from the most recent 30 (Theil–Sen is quadratic in the points).
  const slope = theilSen(ts.slice(-30), ds.slice(-30));
  const intercept = median(ds.map((d, i) => d - slope * ts[i]!));
  const resid = ds.map((d, i) => d - intercept - slope * ts[i]!);
  const modelLog = intercept + slope * tCur + (season.get(ctx.curGroup) ?? 0);
  // The model's expectation, raised to what this kind of day has already reached (the upper
  // envelope of its peers) and to a share of the group's usual daily change: a weekday bucket
  // of a few examples, or one whose days are either quiet or busy (large files changing on
  // some weekends), otherwise makes an ordinary busy day read as many times the usual.
  const raw = comp.map((r) => r[metric]);
  const reference = Math.max(upperEnvelope(peerIndexes(ctx).map((i) => raw[i]!)), o.flowFloor * median(raw));
  const predLog = Math.max(modelLog, log(reference) - median(resid));
  const rCur = log(cur[metric]) - predLog;
  const s = scores(rCur, resid, 0.05);
  const expected = Math.max(0, Math.exp(predLog + median(resid)) - 1);
  const current = cur[metric];
  const gate = current - expected > Math.max(floorFor(metric, o), o.minRelativeChange * expected);
  const name = METRIC_NAMES[metric];
  return judge(
    ctx,
    metric,
    current,
    expected,
    s,
    'up',
    gate,
    (how) =>
      `${name} ${fmt(metric, current)} is ${ratioText(current, expected)} (${fmt(metric, expected)} for a ${ctx.curGroup === 'first' ? 'first incremental after a full' : `${ctx.curGroup} incremental`}): ${how}.`,
    RECOMMEND[metric].up,
  );
}

/** Level metric: the step from the previous comparable backup vs the usual steps. */
function levelMetric(ctx: Ctx, metric: NumericMetric): AnomalyFinding | undefined {
  const { comp, cur, o } = ctx;
  if (comp.length < 3) return undefined;
  const steps: number[] = [];
  const groups: string[] = [];
  for (let i = 1; i < comp.length; i++) {
    steps.push(log(comp[i]![metric]) - log(comp[i - 1]![metric]));
    groups.push(ctx.group(comp[i]!, i));
  }
  const season = seasonal(steps, groups);
  const base = median(steps);
  const resid = steps.map((s, i) => s - base - (season.get(groups[i]!) ?? 0));
  const expectedStep = base + (season.get(ctx.curGroup) ?? 0);
  const prev = comp.at(-1)![metric];
  const current = cur[metric];
  const rCur = log(current) - log(prev) - expectedStep;
  // A file count moves in whole files: on a constant history of 6 files the MAD is 0 and one
  // more file scored 67 against the 0.002 floor. One file's step is the least spread there is.
  const floor = metric === 'files' ? Math.max(0.002, Math.log((prev + 2) / (prev + 1))) : 0.002;
  const s = scores(rCur, resid, floor);
  const expected = Math.max(0, (prev + 1) * Math.exp(expectedStep) - 1);
  // Durations are noisy (load, network): a full's duration is judged with the flow threshold.
  const minChange = metric === 'durationMs' ? o.minRelativeChange : o.minLevelChange;
  const gate = Math.abs(current - expected) > Math.max(floorFor(metric, o), minChange * expected);
  const name = METRIC_NAMES[metric];
  const down = current < expected;
  return judge(
    ctx,
    metric,
    current,
    expected,
    s,
    'both',
    gate,
    (how) =>
      `${name} ${fmt(metric, current)} is ${ratioText(current, expected)} (previous ${ctx.comp.at(-1)!.kind} backup ${fmt(metric, prev)}, usual step ${round((Math.exp(expectedStep) - 1) * 100, 2)} %): ${how}.`,
    down ? RECOMMEND[metric].down : RECOMMEND[metric].up,
  );
}

/** The previous successful run of these sources, any kind: an incremental's parent. */
function previousRun(ctx: Ctx): RunRecord | undefined {
  return ctx.all.at(-1);
}

function compressionCollapse(ctx: Ctx): AnomalyFinding | undefined {
  const { cur, comp, o } = ctx;
  if (comp.length < 2 || cur.bytesIn < o.minBytes) return undefined;
  const hist = comp.filter((r) => r.bytesIn >= o.minBytes).map((r) => r.compressionRatio);
  if (hist.length < 2) return undefined;
  const expected = median(hist);
  // Judged on what compression saves (ratio − 1): data that usually compresses 1.3× and now
  // 1.05× has lost most of its compressible part. Data that never compressed cannot collapse.
  if (expected < 1.1) return undefined;
  const limit = 1 + (expected - 1) * (1 - o.compressionDrop);
  if (cur.compressionRatio >= limit) return undefined;
  // An incremental's ratio depends on which files changed: one big photo makes a poor ratio.
  // Encryption rewrites many files, so for incrementals it takes many more files than usual.
  let many = '';
  // Encryption rewrites or replaces files that were there; an import of photos or archives
  // only adds files that never compressed. The second is no ransomware-class finding.
  let rewrite = true;
  if (cur.kind === 'incremental') {
    const touched = cur.newFiles + cur.changedFiles;
    const usual = median(comp.map((r) => r.newFiles + r.changedFiles));
    if (touched < Math.max(o.extensionMinFiles, 3 * usual)) return undefined;
    many = ` in ${touched} new or changed files (usually ${Math.round(usual)})`;
    rewrite = rewroteFiles(ctx);
  }
  return {
    metric: 'compressionRatio',
    method: 'rule',
    current: round(cur.compressionRatio, 3),
    expected: round(expected, 3),
    score: round((cur.compressionRatio - 1) / (expected - 1), 3),
    threshold: round(1 - o.compressionDrop, 3),
    historySize: hist.length,
    message: `compression ratio collapsed to ${fmt('compressionRatio', cur.compressionRatio)} from a usual ${fmt('compressionRatio', expected)} (median of ${hist.length} comparable backups) over ${fmt('bytesIn', cur.bytesIn)} read${many}: ${rewrite ? 'the new data does not compress, as encrypted data does not' : 'the files added do not compress (media, archives, or encrypted copies), while few existing files changed'}.`,
    recommendation: rewrite
      ? `Treat as possible ransomware until explained: check the changed files (s3backup diff {prev} {id}, open a few) and restore from the last backup before the change ({prev}) if files were encrypted. ${HOLD_ADVICE}`
      : 'Check what the new files are (s3backup diff {prev} {id}): an import of photos, videos or archives explains it (they do not compress); encrypted copies of existing files do not.',
    ...graded(rewrite ? 'high' : 'warning', (1 - (cur.compressionRatio - 1) / (expected - 1)) / o.compressionDrop),
    ...(rewrite ? { ransomware: true } : {}),
  };
}

/**
 * A full's compression ratio stepping down from the previous full's (weaker than a collapse):
 * part of the data stopped compressing. Fulls only: an incremental's ratio depends on which
 * files happened to change. Step-based, so a legitimate change of the mix is flagged once.
 */
function compressionShift(ctx: Ctx): AnomalyFinding | undefined {
  const { cur, comp, o } = ctx;
  if (cur.kind !== 'full' || cur.bytesIn < o.minBytes) return undefined;
  const hist = comp.filter((r) => r.bytesIn >= o.minBytes);
  if (hist.length < o.minHistory) return undefined;
  const ys = hist.map((r) => Math.log(Math.max(r.compressionRatio, 1e-6)));
  const steps = ys.slice(1).map((y, i) => y - ys[i]!);
  const prev = hist.at(-1)!.compressionRatio;
  if (prev < 1.1) return undefined;
  const r = Math.log(Math.max(cur.compressionRatio, 1e-6)) - ys.at(-1)!;
  const s = scores(r, steps, 0.001);
  if (!(s.robust < -o.robustThreshold && cur.compressionRatio < prev * 0.995)) return undefined;
  return {
    metric: 'compressionRatio',
    method: 'robust',
    current: round(cur.compressionRatio, 3),
    expected: round(prev, 3),
    score: round(s.robust, 2),
    threshold: o.robustThreshold,
    historySize: hist.length,
    message: `compression ratio ${fmt('compressionRatio', cur.compressionRatio)} is ${ratioText(cur.compressionRatio, prev)} (previous full ${fmt('compressionRatio', prev)}): robust score ${round(s.robust, 1)} on ${hist.length} comparable backups; part of the data no longer compresses.`,
    recommendation:
      'Check which files changed and whether they are now encrypted or compressed (s3backup diff {prev} {id}); if some were encrypted without your doing, restore them from an earlier backup ({prev} or older) and keep older backups (--no-forget) until this is understood.',
    ...graded('warning', s.robust / -o.robustThreshold),
  };
}

function massDeletion(ctx: Ctx): AnomalyFinding | undefined {
  const { cur, o } = ctx;
  if (cur.kind !== 'incremental') return undefined;
  const prev = previousRun(ctx);
  if (!prev || prev.files <= 0) return undefined;
  const share = cur.deletedFiles / prev.files;
  if (share <= o.massDeletion || cur.deletedFiles < o.extensionMinFiles) return undefined;
  const usual = ctx.comp.length ? median(ctx.comp.map((r) => r.deletedFiles)) : 0;
  return {
    metric: 'deletedFiles',
    method: 'rule',
    current: cur.deletedFiles,
    expected: round(usual, 1),
    score: round(share, 4),
    threshold: o.massDeletion,
    historySize: ctx.comp.length,
    message: `${cur.deletedFiles} files (${round(share * 100, 1)} % of the ${prev.files} in the previous backup) are gone since it; usually ${round(usual, 1)} per backup.`,
    recommendation: `Check whether the deletion was intended (s3backup diff {prev} {id} lists the removed files); if not, restore the missing files from the previous backup {prev}. ${HOLD_ADVICE}`,
    ...graded(share > 4 * o.massDeletion ? 'high' : 'warning', share / o.massDeletion),
    ransomware: true,
  };
}

function fileDrop(ctx: Ctx): AnomalyFinding | undefined {
  const { cur, comp, o } = ctx;
  const prev = previousRun(ctx);
  if (!prev || prev.files < o.extensionMinFiles) return undefined;
  const limit = prev.files * (1 - o.fileDrop);
  if (cur.files >= limit) return undefined;
  const drop = 1 - cur.files / prev.files;
  return {
    metric: 'files',
    method: 'rule',
    current: cur.files,
    expected: prev.files,
    score: round(drop, 4),
    threshold: o.fileDrop,
    historySize: comp.length,
    message: `file count fell ${round(drop * 100, 1)} % to ${cur.files} from ${prev.files} in the previous backup${cur.warnings ? `, with ${cur.warnings} warning(s)` : ''}: the backup may be truncated or a source incomplete.`,
    recommendation:
      'Check that every source was mounted and fully readable (the backup warnings, excludes), see what is missing against the previous backup (s3backup diff {prev} {id}), and run a new backup once the sources are complete; restore missing files from {prev}.',
    ...graded(drop > 2 * o.fileDrop ? 'high' : 'warning', drop / o.fileDrop),
  };
}

/** A change ratio is news only at this many times the median of the same kind of day (docs: "Method"). */
const CHANGE_FACTOR = 3;

function changeRatio(ctx: Ctx): AnomalyFinding | undefined {
  const { cur, comp, o } = ctx;
  if (cur.kind !== 'incremental') return undefined;
  const prev = previousRun(ctx);
  const ratioOf = (r: RunRecord, base: number) => (r.newFiles + r.changedFiles + r.deletedFiles) / Math.max(1, base, r.files);
  const current = ratioOf(cur, prev?.files ?? 0);
  if (current < o.changeRatio || cur.newFiles + cur.changedFiles + cur.deletedFiles < o.extensionMinFiles) return undefined;
  if (!ctx.statsReady) return undefined;
  const hist = comp.map((r) => ratioOf(r, r.files));
  const groups = comp.map((r, i) => ctx.group(r, i));
  const ys = hist.map((x) => Math.log(x + 1e-4));
  const season = seasonal(ys, groups);
  // Judged among the same kind of day only: a weekend's handful of changes (a ratio near 0,
  // far apart in log space) would otherwise widen the spread a weekday is judged by.
  const peers = peerIndexes(ctx);
  const resid = peers.map((i) => ys[i]! - (season.get(groups[i]!) ?? 0));
  const rCur = Math.log(current + 1e-4) - (season.get(ctx.curGroup) ?? 0);
  const s = scores(rCur, resid, 0.05);
  const expected = Math.exp(median(resid) + (season.get(ctx.curGroup) ?? 0)) - 1e-4;
  // A busy day changes two or three times the files of an ordinary one (with 3,000 files, 100
  // instead of 40): the change must also be CHANGE_FACTOR times the usual of this kind of day,
  // and the scores are widened for short histories as judge() does.
  const usual = Math.max(expected, median(peers.map((i) => hist[i]!)));
  if (current < CHANGE_FACTOR * usual) return undefined;
  const df = Math.max(1, resid.length - 1);
  const widen = (k: number) => k + (k ** 3 + k) / (4 * df);
  const zFires = s.z > widen(o.sigma) && current > 2 * expected;
  const rFires = s.robust > widen(o.robustThreshold);
  if (!zFires && !rFires) return undefined;
  const rewrite = rewroteFiles(ctx);
  return {
    metric: 'changeRatio',
    method: zFires ? 'zscore' : 'robust',
    current: round(current, 4),
    expected: round(expected, 4),
    score: round(zFires ? s.z : s.robust, 2),
    threshold: zFires ? o.sigma : o.robustThreshold,
    historySize: comp.length,
    message: `${fmt('changeRatio', current)} of the files are new, changed or deleted (${cur.newFiles} new, ${cur.changedFiles} changed, ${cur.deletedFiles} deleted), ${ratioText(current, expected)} (${fmt('changeRatio', expected)}): ${zFires ? `${round(s.z, 1)}σ` : `robust score ${round(s.robust, 1)}`} on ${comp.length} comparable backups.`,
    recommendation: rewrite
      ? `Check which files changed (s3backup diff {prev} {id}): a software update or reorganisation explains it; many documents rewritten at once may be ransomware. ${HOLD_ADVICE}`
      : 'Mostly new files, few changed or deleted: check what was added (s3backup diff {prev} {id}); an import or a new data set explains it.',
    ...graded(
      rewrite && s.robust > 2 * o.robustThreshold ? 'high' : 'warning',
      zFires ? s.z / widen(o.sigma) : s.robust / widen(o.robustThreshold),
    ),
    ...(rewrite ? { ransomware: true } : {}),
  };
}

/**
 * Whether existing files were rewritten or replaced (changed + deleted at least 3× the usual,
 * and at least extensionMinFiles), as encryption does; an import only adds files. A first
 * backup's judgement (no history) counts any such change.
 */
function rewroteFiles(ctx: Ctx): boolean {
  const { cur, comp, o } = ctx;
  const rewritten = cur.changedFiles + cur.deletedFiles;
  const usual = comp.length ? median(comp.map((r) => r.changedFiles + r.deletedFiles)) : 0;
  return rewritten >= Math.max(o.extensionMinFiles, 3 * usual);
}

function extensionBurst(ctx: Ctx): AnomalyFinding[] {
  const { cur, comp, o } = ctx;
  const ext = cur.extensions;
  if (!ext) return [];
  const withExt = comp.filter((r) => r.extensions);
  const changed = cur.newFiles + cur.changedFiles;
  if (changed < o.extensionMinFiles) return [];
  const out: AnomalyFinding[] = [];
  for (const [e, count] of Object.entries(ext)) {
    const ransom = RANSOM_EXTENSIONS.has(e);
    // A share of the new/changed files, except for a known ransomware extension: in a full
    // every file counts as new, and 5 % of them renamed .locked is already the alarm.
    if (count < o.extensionMinFiles || (!ransom && count / changed < o.extensionShare)) continue;
    // Without enough history only a known ransomware extension is judged.
    if (withExt.length < o.minHistory && !ransom) continue;
    const usual = withExt.length ? mean(withExt.map((r) => r.extensions![e] ?? 0)) : 0;
    if (count < o.extensionFactor * (usual + 1)) continue;
    const label = e === '' ? '(no extension)' : `.${e}`;
    out.push({
      metric: 'extensions',
      method: 'rule',
      current: count,
      expected: round(usual, 2),
      score: round(count / (usual + 1), 2),
      threshold: o.extensionFactor,
      historySize: withExt.length,
      message: `${count} new or changed files have the extension ${label} (${Math.round((count / changed) * 100)} % of ${changed}); usually ${round(usual, 1)} per backup${ransom ? ` — ${label} is an extension ransomware uses` : ''}.`,
      recommendation: ransom
        ? `Treat as ransomware: isolate the host, then see which files were renamed (s3backup diff {prev} {id}) and restore from the last backup before they appeared ({prev}, if it has none). ${HOLD_ADVICE}`
        : `Check where the ${label} files come from (s3backup ls {id} '**/*${e ? `.${e}` : ''}'): a new tool or data set explains it; otherwise inspect a few of them.`,
      ...graded(ransom ? 'high' : 'warning', count / (usual + 1) / o.extensionFactor),
      ...(ransom ? { ransomware: true } : {}),
    });
    if (out.length >= 3) break;
  }
  return out;
}

/**
 * Slow drift: the steps of the backups in the last driftDays days add up to more growth than
 * the usual steps explain, each too small to flag on its own.
 */
function drift(ctx: Ctx): AnomalyFinding | undefined {
  const { comp, cur, o } = ctx;
  const metric: NumericMetric = 'bytesTotal';
  const series = [...comp, cur];
  const since = Date.parse(cur.time) - o.driftDays * DAY;
  // Steps ending inside the window, and the usual steps from before it.
  const steps: number[] = [];
  const groups: string[] = [];
  let firstInWindow = -1;
  for (let i = 1; i < series.length; i++) {
    steps.push(log(series[i]![metric]) - log(series[i - 1]![metric]));
    groups.push(i === series.length - 1 ? ctx.curGroup : ctx.group(series[i]!, i));
    if (firstInWindow < 0 && Date.parse(series[i]!.time) > since) firstInWindow = i - 1;
  }
  if (firstInWindow < 0) return undefined;
  const L = steps.length - firstInWindow;
  if (L < 4 || firstInWindow < o.minHistory) return undefined;
  const baseSteps = steps.slice(0, firstInWindow);
  const baseGroups = groups.slice(0, firstInWindow);
  const season = seasonal(baseSteps, baseGroups);
  const base = median(baseSteps);
  const baseResid = baseSteps.map((s, i) => s - base - (season.get(baseGroups[i]!) ?? 0));
  const spread = Math.max(madSigma(baseResid), 0.0005);
  // Steps that are outliers on their own (an import, a deletion) had their own finding: a
  // one-off jump is not drift, so they are left out of the sum.
  let excess = 0;
  let used = 0;
  for (let i = firstInWindow; i < steps.length; i++) {
    const r = steps[i]! - base - (season.get(groups[i]!) ?? 0);
    // Only a step that could have its own finding (it also passes the minBytes gate there) is
    // left out: on a small snapshot 10 % steps of 0.2 MiB are no finding, so they are drift.
    const stepBytes = Math.abs(series[i + 1]![metric] - series[i]![metric]);
    if (Math.abs(r) / spread > o.robustThreshold && Math.abs(r) > Math.log1p(o.minLevelChange) && stepBytes > o.minBytes) continue;
    excess += r;
    used++;
  }
  const growth = Math.exp(excess) - 1;
  // Growth only: after a period of fast growth the usual step is briefly overestimated, which
  // would read as shrinking; losses show as steps (file drop, mass deletion) instead.
  if (used < L / 2 || growth <= o.drift) return undefined;
  // The growth beyond the usual in bytes, as for any size finding: on a toy snapshot of a few
  // MiB with a constant history, 0.2 MiB more scored 50 against the spread floor.
  const extraBytes = cur[metric] * (1 - Math.exp(-excess));
  if (extraBytes < o.minBytes) return undefined;
  const robust = excess / (spread * Math.sqrt(used));
  if (robust <= o.robustThreshold) return undefined;
  const first = series[firstInWindow]!;
  const usualGrowth = Math.exp(base * L) - 1;
  const actual = cur[metric] / Math.max(1, first[metric]) - 1;
  const skipped = L - used;
  return {
    metric: 'drift',
    method: 'robust',
    current: round(cur[metric] / Math.max(1, first[metric]) - 1, 4),
    expected: round(usualGrowth, 4),
    score: round(robust, 2),
    threshold: o.robustThreshold,
    historySize: comp.length,
    // The sizes shown are the window's ends; steps that had their own finding (an import) are
    // in those sizes but not in the drift, so the message says both and how many were left out.
    message: `snapshot size went from ${fmt('bytesTotal', first[metric])} to ${fmt('bytesTotal', cur[metric])} over the last ${o.driftDays} days (${L} ${cur.kind} backups, ${actual >= 0 ? '+' : '−'}${round(Math.abs(actual) * 100, 1)} %); without ${skipped ? `the ${skipped} step(s) big enough for a finding of their own and ` : ''}the usual growth (${round(usualGrowth * 100, 1)} %) it still grew ${round(growth * 100, 1)} % (${fmt('bytesTotal', extraBytes)}), robust score ${round(robust, 1)}: a slow drift no single backup shows.`,
    recommendation:
      'Find what keeps growing (s3backup diff OLDER {id}, OLDER a backup from before the growth in s3backup list): a log or cache that is never cleaned should be excluded or rotated; planned growth needs no action but raises storage costs.',
    ...graded('warning', robust / o.robustThreshold),
  };
}
