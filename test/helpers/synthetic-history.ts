// Synthetic backup histories for evaluating the anomaly detector (docs/anomaly-detection.md).
//
// A file population is simulated day by day (sizes, extensions, how well each file compresses)
// and backed up once a day: a full every `fullEvery` days, incrementals in between, with the
// same counting rules as runBackup (a full counts every file as new; an incremental counts new,
// changed and deleted files against its parent). Normal life has a weekly rhythm (quiet
// weekends), growth whose rate wanders, noisy daily activity, weekly maintenance right after
// each full, and throughput noise in durations. Events are injected on known days, so a test
// can count what the detector found and what it flagged that was normal.
import type { RunRecord } from '../../src/monitor/types.ts';
import { sourceKeyOf } from '../../src/monitor/history.ts';
import { prng } from './tree.ts';

export type EventType = 'ransomware' | 'ransomware-rename' | 'mass-deletion' | 'truncated' | 'drift' | 'import';
export const EVENT_TYPES: EventType[] = ['ransomware', 'ransomware-rename', 'mass-deletion', 'truncated', 'drift', 'import'];

export interface InjectedEvent {
  type: EventType;
  /** First and last day (inclusive) the event acts on the backups. */
  start: number;
  end: number;
  /** Days after `end` whose findings are consequences of the event (neither detection nor false alarm). */
  echoUntil: number;
}

export interface SyntheticHistory {
  records: RunRecord[];
  /** Day index of each record (records[i] is day days[i]). */
  days: number[];
  events: InjectedEvent[];
}

export interface GeneratorOptions {
  seed: number;
  days?: number;
  fullEvery?: number;
  initialFiles?: number;
  /** Events to inject (default: each type once, in shuffled order, about 45 days apart from day 60). */
  events?: EventType[];
  /** Days between event starts (default 45). */
  spacing?: number;
}

// Extensions with their share of new files, mean size and compression ratio.
const EXTS: { ext: string; weight: number; size: number; ratio: number }[] = [
  { ext: 'txt', weight: 10, size: 8_000, ratio: 3.5 },
  { ext: 'md', weight: 5, size: 6_000, ratio: 3.2 },
  { ext: 'docx', weight: 10, size: 60_000, ratio: 1.25 },
  { ext: 'xlsx', weight: 6, size: 40_000, ratio: 1.2 },
  { ext: 'pdf', weight: 8, size: 300_000, ratio: 1.15 },
  { ext: 'csv', weight: 6, size: 200_000, ratio: 4.5 },
  { ext: 'json', weight: 6, size: 30_000, ratio: 6 },
  { ext: 'log', weight: 6, size: 400_000, ratio: 8 },
  { ext: 'ts', weight: 10, size: 5_000, ratio: 4 },
  { ext: 'py', weight: 6, size: 6_000, ratio: 3.8 },
  { ext: 'jpg', weight: 8, size: 900_000, ratio: 1.01 },
  { ext: 'png', weight: 4, size: 300_000, ratio: 1.02 },
  { ext: 'zip', weight: 2, size: 2_000_000, ratio: 1.0 },
  { ext: 'sqlite', weight: 1, size: 3_000_000, ratio: 2.5 },
  { ext: '', weight: 3, size: 10_000, ratio: 2.5 },
];
const EXT_TOTAL = EXTS.reduce((a, e) => a + e.weight, 0);
const WEEKDAY_ACTIVITY = [0.2, 1.1, 1.0, 1.0, 1.0, 0.85, 0.3]; // Sunday first
const START = Date.UTC(2025, 0, 5, 2, 0, 0); // a Sunday, 02:00 UTC

export function generateHistory(opts: GeneratorOptions): SyntheticHistory {
  const rnd = prng(opts.seed);
  const gauss = () => {
    const u = Math.max(rnd(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
  };
  const lognormal = (sigma: number) => Math.exp(sigma * gauss());
  const days = opts.days ?? 365;
  const fullEvery = opts.fullEvery ?? 7;
  const host = `host-${opts.seed}`;
  const sources = ['/srv/data'];
  const sourceKey = sourceKeyOf(host, sources);

  // The population: parallel arrays (fast even at tens of thousands of files).
  const size: number[] = [];
  const ext: number[] = [];
  const ratio: number[] = [];
  const alive: boolean[] = [];
  const aliveIdx: number[] = []; // indices of live files (swap-remove)
  const pos: number[] = [];
  const lastSeen: number[] = []; // day each file was last in a backup (-1 never)
  let total = 0;
  const pickExt = () => {
    let r = rnd() * EXT_TOTAL;
    for (let i = 0; i < EXTS.length; i++) if ((r -= EXTS[i]!.weight) < 0) return i;
    return EXTS.length - 1;
  };
  const addFile = (e = pickExt(), s?: number, q?: number) => {
    const i = size.length;
    const sz = Math.round(s ?? EXTS[e]!.size * lognormal(1));
    size.push(sz);
    ext.push(e);
    ratio.push(q ?? EXTS[e]!.ratio * lognormal(0.08));
    alive.push(true);
    lastSeen.push(-1);
    pos.push(aliveIdx.length);
    aliveIdx.push(i);
    total += sz;
    return i;
  };
  const removeFile = (i: number) => {
    if (!alive[i]) return;
    alive[i] = false;
    total -= size[i]!;
    const p = pos[i]!;
    const last = aliveIdx.pop()!;
    if (last !== i) {
      aliveIdx[p] = last;
      pos[last] = p;
    }
  };
  const randomAlive = () => aliveIdx[Math.floor(rnd() * aliveIdx.length)]!;
  for (let i = 0; i < (opts.initialFiles ?? 20_000); i++) addFile();
  // Most daily changes hit a working set (the documents, databases and logs in use); the rest
  // are spread over everything. Files join and leave the working set over time.
  const hot: number[] = [];
  for (let k = 0; k < aliveIdx.length * 0.03; k++) hot.push(randomAlive());
  const pickChanged = () => {
    if (rnd() < 0.75) {
      const h = Math.floor(rnd() * hot.length);
      if (alive[hot[h]!]) return hot[h]!;
      hot[h] = randomAlive();
      return hot[h]!;
    }
    return randomAlive();
  };

  // Events.
  const types = opts.events ?? shuffle([...EVENT_TYPES], rnd);
  const spacing = opts.spacing ?? 45;
  const events: InjectedEvent[] = types.map((type, k) => {
    const start = 60 + k * spacing + Math.floor(rnd() * 10);
    const end = type === 'drift' ? start + 29 : start;
    // Consequences: the next backup of each kind after the event (the first full sees the
    // change again; the day after a truncated backup or a restore sees it undone), and for
    // drift the drift window, over which the extra growth still shows.
    const echoUntil = end + (type === 'drift' ? 15 : fullEvery + 1);
    return { type, start, end, echoUntil };
  });
  const eventOn = (d: number) => events.find((e) => d >= e.start && d <= e.end);

  const records: RunRecord[] = [];
  const dayList: number[] = [];
  let growth = 0.0015; // new files per day, as a share of the population (wanders)
  let restoreTomorrow: { idx: number; ratio: number; ext: number }[] = [];
  let prevFiles = 0;
  let prevTruncated = false;
  for (let d = 0; d < days; d++) {
    const time = START + d * 86_400_000 + Math.floor(rnd() * 20 * 60_000);
    const weekday = new Date(time).getUTCDay();
    const kind: RunRecord['kind'] = d % fullEvery === 0 ? 'full' : 'incremental';
    const firstAfterFull = d % fullEvery === 1;
    const activity = WEEKDAY_ACTIVITY[weekday]! * lognormal(0.25) * (firstAfterFull ? 1.4 : 1);
    growth = Math.min(0.004, Math.max(0.0005, growth * lognormal(0.05)));
    const n = aliveIdx.length;
    const touched = new Set<number>(); // changed (existing before today)
    const created = new Set<number>();
    const deleted = new Set<number>();
    // Yesterday's victims restored from backup: their old content comes back (a change).
    for (const r of restoreTomorrow) {
      if (!alive[r.idx]) continue;
      if (ext[r.idx] !== r.ext) {
        // renamed by the ransomware: the restore brings back the original name, the encrypted copy goes
        removeFile(r.idx);
        deleted.add(r.idx);
        created.add(addFile(r.ext, size[r.idx], r.ratio));
      } else {
        ratio[r.idx] = r.ratio;
        touched.add(r.idx);
      }
    }
    restoreTomorrow = [];
    // Normal life.
    const changes = Math.round(n * 0.006 * activity);
    if (rnd() < 0.2) hot[Math.floor(rnd() * hot.length)] = randomAlive();
    for (let k = 0; k < changes; k++) {
      const i = pickChanged();
      const old = size[i]!;
      size[i] = Math.max(0, Math.round(old * lognormal(0.1)));
      total += size[i]! - old;
      touched.add(i);
    }
    const news = Math.round(n * growth * activity);
    for (let k = 0; k < news; k++) created.add(addFile());
    const dels = Math.round(n * 0.0006 * activity);
    for (let k = 0; k < dels; k++) {
      const i = randomAlive();
      if (created.has(i)) continue;
      removeFile(i);
      deleted.add(i);
    }
    // Events.
    const ev = eventOn(d);
    let visible: ((i: number) => boolean) | undefined;
    if (ev?.type === 'ransomware' || ev?.type === 'ransomware-rename') {
      const victims = Math.round(n * 0.05);
      const rename = ev.type === 'ransomware-rename';
      const lockedExt = EXTS.length; // a new extension index
      for (let k = 0; k < victims; k++) {
        const i = randomAlive();
        if (created.has(i) || deleted.has(i)) continue;
        restoreTomorrow.push({ idx: i, ratio: ratio[i]!, ext: ext[i]! });
        const grown = size[i]! + 16 + Math.floor(rnd() * 512);
        if (rename) {
          removeFile(i);
          deleted.add(i);
          const j = addFile(lockedExt, grown, 1.0);
          created.add(j);
          restoreTomorrow[restoreTomorrow.length - 1]!.idx = j;
        } else {
          total += grown - size[i]!;
          size[i] = grown;
          ratio[i] = 1.0;
          touched.add(i);
        }
      }
    } else if (ev?.type === 'mass-deletion') {
      const victims = Math.round(n * 0.25);
      for (let k = 0; k < victims; k++) {
        const i = randomAlive();
        if (created.has(i)) continue;
        removeFile(i);
        deleted.add(i);
        touched.delete(i);
      }
    } else if (ev?.type === 'import') {
      const target = total * 0.3;
      let added = 0;
      const photo = EXTS.findIndex((e) => e.ext === 'jpg');
      while (added < target) {
        const i = addFile(rnd() < 0.8 ? photo : pickExt());
        created.add(i);
        added += size[i]!;
      }
    } else if (ev?.type === 'drift') {
      // Growth speeding up slowly (a project dumping more and more data, a cache nobody
      // cleans): extra new files of the usual mix, ramping from nothing to 0.8 % of the data
      // a day over 30 days. No single day looks odd; the total grows about 12 %.
      const target = total * 0.008 * ((d - ev.start + 1) / 30);
      let added = 0;
      while (added < target) {
        const i = addFile();
        created.add(i);
        added += size[i]!;
      }
    } else if (ev?.type === 'truncated') {
      // A source only partly readable (a mount lost mid-walk): the backup sees a prefix of it.
      const keep = 0.3 + rnd() * 0.4;
      visible = (i: number) => pos[i]! < keep * aliveIdx.length;
    }

    // The backup, counted as runBackup counts it.
    const seen = visible ?? (() => true);
    let files = 0;
    let bytesTotal = 0;
    let bytesIn = 0;
    let stored = 0;
    let newFiles = 0;
    let changedFiles = 0;
    const extCount = new Map<string, number>();
    const count = (i: number) => {
      const e = ext[i]! < EXTS.length ? EXTS[ext[i]!]!.ext : 'locked';
      extCount.set(e, (extCount.get(e) ?? 0) + 1);
      bytesIn += size[i]!;
      stored += size[i]! / ratio[i]!;
    };
    let stillThere = 0;
    if (kind === 'incremental' && !visible && !prevTruncated) {
      // Fast path: yesterday's backup saw every file, so "seen yesterday" = "not created today".
      files = aliveIdx.length;
      bytesTotal = total;
      for (const i of created) {
        if (!alive[i]) continue;
        newFiles++;
        count(i);
      }
      for (const i of touched) {
        if (!alive[i] || created.has(i)) continue;
        changedFiles++;
        count(i);
      }
      stillThere = files - newFiles;
    } else {
      for (const i of aliveIdx) {
        if (!seen(i)) continue;
        files++;
        bytesTotal += size[i]!;
        const wasSeen = prevTruncated ? lastSeen[i] === d - 1 : !created.has(i);
        if (wasSeen) stillThere++;
        lastSeen[i] = d;
        if (kind === 'full') {
          newFiles++;
          count(i);
        } else if (!wasSeen) {
          newFiles++;
          count(i);
        } else if (touched.has(i)) {
          changedFiles++;
          count(i);
        }
      }
    }
    prevTruncated = visible !== undefined;
    const deletedFiles = kind === 'incremental' ? prevFiles - stillThere : 0;
    prevFiles = files;
    const manifest = files * 45; // compressed manifest bytes per entry
    const archive = Math.round(stored) + 1024;
    const throughput = 60e6 * lognormal(0.12); // bytes/s
    const durationMs = Math.round(1500 + files * 0.04 + (bytesIn / throughput) * 1000 + 400 * lognormal(0.5));
    const top = [...extCount].sort((a, b) => b[1] - a[1]).slice(0, 20);
    records.push({
      id: `${new Date(time).toISOString().replace(/[-:]/g, '')}-${(opts.seed >>> 0).toString(16).padStart(8, '0').slice(-8)}`,
      time: new Date(time).toISOString(),
      host,
      sources,
      sourceKey,
      tags: [],
      kind,
      ok: true,
      durationMs,
      files,
      bytesIn,
      bytesTotal,
      bytesStored: archive + manifest,
      compressionRatio: bytesIn > 0 ? Math.round((bytesIn / archive) * 1000) / 1000 : 1,
      newFiles,
      changedFiles,
      deletedFiles,
      warnings: 0,
      extensions: Object.fromEntries(top),
    });
    dayList.push(d);
  }
  return { records, days: dayList, events };
}

function shuffle<T>(xs: T[], rnd: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}
