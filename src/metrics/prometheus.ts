import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunMetrics } from './metrics.ts';

/**
 * The node_exporter textfile-collector file: HELP/TYPE lines and one sample per metric per
 * (repository, source), rewritten after every run through a temporary file and a rename, so
 * the collector never reads half a file, and under a lock file (withFileLock) so that runs
 * finishing together do not drop each other's samples. Samples of other repositories or
 * sources already in the file are kept (several jobs can share one file). After a failed run
 * only the success gauge and the last-run time change; the others keep describing the last
 * successful backup.
 */

export const PROM_METRICS = [
  ['s3backup_backup_success', 'Whether the last backup run succeeded (1) or failed (0).'],
  ['s3backup_backup_duration_seconds', 'Duration of the last successful backup.'],
  ['s3backup_backup_size_bytes', 'Bytes the last successful backup stored in the repository.'],
  ['s3backup_backup_files', 'Files in the last successful backup.'],
  ['s3backup_backup_anomaly_score', 'Largest anomaly score of the last successful backup (0: nothing unusual).'],
  ['s3backup_last_success_timestamp_seconds', 'Unix time the last successful backup ended.'],
  ['s3backup_last_run_timestamp_seconds', 'Unix time the last backup run (successful or not) ended.'],
] as const;

type Labels = Record<string, string>;
interface Sample {
  name: string;
  labels: Labels;
  value: string;
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

function parseLabels(text: string): Labels | undefined {
  const labels: Labels = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/y;
  let i = 0;
  while (i < text.length) {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) return undefined;
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    i = re.lastIndex;
  }
  return labels;
}

/** Samples of a textfile (ours or anything in the same format); lines it cannot read are dropped. */
export function parseTextfile(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$/.exec(line);
    if (!m) continue;
    const labels = parseLabels(m[2] ?? '');
    if (labels) out.push({ name: m[1]!, labels, value: m[3]! });
  }
  return out;
}

const labelKey = (l: Labels) => JSON.stringify(Object.entries(l).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
const fmt = (n: number) => (Number.isInteger(n) ? String(n) : String(Math.round(n * 1000) / 1000));

export function renderTextfile(samples: Sample[]): string {
  const lines: string[] = [];
  for (const [name, help] of PROM_METRICS) {
    const mine = samples.filter((s) => s.name === name);
    if (mine.length === 0) continue;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const s of mine) {
      const l = Object.entries(s.labels)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(',');
      lines.push(`${name}{${l}} ${s.value}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export function writePrometheusTextfile(file: string, m: RunMetrics): void {
  const dir = path.dirname(file);
  if (!fs.existsSync(dir)) throw new Error(`directory ${dir} does not exist (create it, or fix PROMETHEUS_TEXTFILE)`);
  withFileLock(file, () => updateTextfile(file, dir, m));
}

/** A lock older than this was left by a run that died holding it (a rewrite takes milliseconds). */
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 10_000;

/**
 * Run fn holding `<file>.lock` (created exclusively; the collector reads only *.prom). Runs of
 * different sources that share one textfile each read it, change their own samples and write it
 * back: without the lock, two finishing together would each drop the other's new samples.
 */
function withFileLock(file: string, fn: () => void): void {
  const lock = `${file}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      fs.closeSync(fs.openSync(lock, 'wx'));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let age = 0;
    try {
      age = Date.now() - fs.statSync(lock).mtimeMs;
    } catch {
      continue; // released meanwhile
    }
    if (age > STALE_LOCK_MS) {
      fs.rmSync(lock, { force: true });
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(`${file} stayed locked by another run for ${LOCK_WAIT_MS / 1000} s (remove ${lock} if no s3backup is running)`);
    Atomics.wait(pause, 0, 0, 10); // a synchronous 10 ms sleep: the whole rewrite is synchronous
  }
  try {
    fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

function updateTextfile(file: string, dir: string, m: RunMetrics): void {
  let previous: Sample[] = [];
  try {
    previous = parseTextfile(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const labels: Labels = { repository: m.repository, source: m.source };
  const key = labelKey(labels);
  const known = new Set<string>(PROM_METRICS.map(([n]) => n));
  const kept = previous.filter((s) => known.has(s.name) && labelKey(s.labels) !== key);
  const before = new Map(previous.filter((s) => labelKey(s.labels) === key).map((s) => [s.name, s.value]));
  const seconds = fmt(m.time.getTime() / 1000);
  const value = (name: string, now: number | undefined): string | undefined => (now !== undefined ? fmt(now) : before.get(name));
  const mine: [string, string | undefined][] = [
    ['s3backup_backup_success', m.ok ? '1' : '0'],
    [
      's3backup_backup_duration_seconds',
      m.ok ? value('s3backup_backup_duration_seconds', m.durationSeconds) : before.get('s3backup_backup_duration_seconds'),
    ],
    ['s3backup_backup_size_bytes', m.ok ? value('s3backup_backup_size_bytes', m.sizeBytes) : before.get('s3backup_backup_size_bytes')],
    ['s3backup_backup_files', m.ok ? value('s3backup_backup_files', m.files) : before.get('s3backup_backup_files')],
    [
      's3backup_backup_anomaly_score',
      m.ok ? value('s3backup_backup_anomaly_score', m.anomalyScore) : before.get('s3backup_backup_anomaly_score'),
    ],
    ['s3backup_last_success_timestamp_seconds', m.ok ? seconds : before.get('s3backup_last_success_timestamp_seconds')],
    ['s3backup_last_run_timestamp_seconds', seconds],
  ];
  const samples = [
    ...kept,
    ...mine.filter((x): x is [string, string] => x[1] !== undefined).map(([name, v]) => ({ name, labels, value: v })),
  ];
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`); // not *.prom: the collector skips it
  try {
    fs.writeFileSync(tmp, renderTextfile(samples), { mode: 0o644 });
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
