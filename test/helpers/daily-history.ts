// Short daily histories of small file trees, shaped like the workloads of an independent
// evaluation (issue 26) rather than like the detector's own generator (synthetic-history.ts):
// a few thousand files, 60–90 daily backups, some large files that dominate a day's bytes on
// the days they change, and thin weekday buckets (8–13 examples of each weekday at most).
//
//   office:  3,000 files in unevenly sized folders, a weekday rhythm, a 40 MiB mailbox and a
//            2 MiB database that change every weekday and on some weekend days; events on
//            weekdays: encryption renaming files to a new extension, mass deletion, 8 % of the
//            files silently overwritten, a large import, a vanished subdirectory.
//   weekend: 1,500 files plus six large media/VM files (150 MiB–1 GiB) that change only at
//            weekends; events on weekdays and weekends: encryption to .locked, mass deletion,
//            8 % overwritten, a vanished mount (back the next day), a large import.
//
// Each backup is counted as runBackup counts it (a full counts every file as new; an incremental
// counts new, changed and deleted files against its parent, and reads new and changed files
// whole). Attacks are undone the day after (the files restored from a backup), as an operator
// would; the restore is a consequence of the event, judged neither as detection nor as alarm.
import type { RunRecord } from '../../src/monitor/types.ts';
import { sourceKeyOf } from '../../src/monitor/history.ts';
import { prng } from './tree.ts';

export type DailyShape = 'office' | 'weekend';
export type DailyEventType = 'encryption' | 'mass-deletion' | 'overwrite' | 'import' | 'vanished';
export const DAILY_EVENT_TYPES: DailyEventType[] = ['encryption', 'mass-deletion', 'overwrite', 'import', 'vanished'];

export interface DailyEvent {
  type: DailyEventType;
  day: number;
  /** Days after the event whose findings are its consequences (the undo, the next full). */
  echoes: number[];
}

export interface DailyHistory {
  records: RunRecord[];
  days: number[];
  events: DailyEvent[];
}

export interface DailyOptions {
  shape: DailyShape;
  seed: number;
  /** Days between fulls (default 30, s3backup's --full-after). */
  fullEvery?: number;
}

interface Kind {
  ext: string;
  weight: number;
  size: number;
  ratio: number;
}
const OFFICE_KINDS: Kind[] = [
  { ext: 'docx', weight: 20, size: 45_000, ratio: 1.25 },
  { ext: 'xlsx', weight: 10, size: 35_000, ratio: 1.2 },
  { ext: 'pdf', weight: 12, size: 250_000, ratio: 1.15 },
  { ext: 'txt', weight: 12, size: 6_000, ratio: 3.5 },
  { ext: 'csv', weight: 6, size: 120_000, ratio: 4.5 },
  { ext: 'jpg', weight: 12, size: 700_000, ratio: 1.01 },
  { ext: 'png', weight: 6, size: 200_000, ratio: 1.02 },
  { ext: 'md', weight: 6, size: 5_000, ratio: 3.2 },
  { ext: 'pptx', weight: 4, size: 900_000, ratio: 1.1 },
  { ext: 'zip', weight: 2, size: 1_500_000, ratio: 1.0 },
];
const START = Date.UTC(2026, 2, 1, 1, 30); // a Sunday, 01:30 UTC

export function generateDaily(opts: DailyOptions): DailyHistory {
  const rnd = prng(opts.seed * 7919 + (opts.shape === 'office' ? 1 : 2));
  const gauss = () => Math.sqrt(-2 * Math.log(Math.max(rnd(), 1e-12))) * Math.cos(2 * Math.PI * rnd());
  const lognormal = (s: number) => Math.exp(s * gauss());
  const office = opts.shape === 'office';
  const days = office ? 60 : 90;
  const fullEvery = opts.fullEvery ?? 30;
  const host = `${opts.shape}-${opts.seed}`;
  const sources = [office ? '/home/office' : '/data'];
  const sourceKey = sourceKeyOf(host, sources);

  // The population: parallel arrays indexed by file.
  const size: number[] = [];
  const ratio: number[] = [];
  const ext: string[] = [];
  const dir: number[] = [];
  const alive: boolean[] = [];
  const pickKind = () => {
    let r = rnd() * OFFICE_KINDS.reduce((a, k) => a + k.weight, 0);
    for (const k of OFFICE_KINDS) if ((r -= k.weight) < 0) return k;
    return OFFICE_KINDS[0]!;
  };
  // Folders of Zipf-like sizes: folder d gets a share ∝ 1/(d+1).
  const dirs = 30;
  const dirWeights = Array.from({ length: dirs }, (_, d) => 1 / (d + 1));
  const dirTotal = dirWeights.reduce((a, b) => a + b, 0);
  const pickDir = () => {
    let r = rnd() * dirTotal;
    for (let d = 0; d < dirs; d++) if ((r -= dirWeights[d]!) < 0) return d;
    return dirs - 1;
  };
  const addFile = (k: Kind = pickKind(), d = pickDir(), s?: number, q?: number): number => {
    size.push(Math.round(s ?? k.size * lognormal(0.9)));
    ratio.push(q ?? k.ratio * lognormal(0.05));
    ext.push(k.ext);
    dir.push(d);
    alive.push(true);
    return size.length - 1;
  };
  const liveFiles = () => {
    const out: number[] = [];
    for (let i = 0; i < alive.length; i++) if (alive[i]) out.push(i);
    return out;
  };
  // Special files: the mailbox and the database (office), the large weekend files (weekend).
  const mailbox = office ? addFile({ ext: 'mbox', weight: 0, size: 0, ratio: 3 }, 0, 40 << 20, 3) : -1;
  const database = office ? addFile({ ext: 'sqlite', weight: 0, size: 0, ratio: 2.5 }, 0, 2 << 20, 2.5) : -1;
  const large: number[] = [];
  if (!office)
    for (let k = 0; k < 6; k++)
      large.push(
        addFile(
          { ext: k % 2 ? 'qcow2' : 'mov', weight: 0, size: 0, ratio: 1.3 },
          1,
          Math.round((150 + rnd() * 870) * 2 ** 20),
          k % 2 ? 1.6 : 1.02,
        ),
      );
  const special = new Set([mailbox, database, ...large]);
  for (let i = 0; i < (office ? 3000 : 1500); i++) addFile();
  const hot = liveFiles()
    .filter((i) => !special.has(i))
    .filter(() => rnd() < 0.05);

  // Events: office on weekdays, weekend shape on both; spaced through the second half.
  const events = placeEvents(office, days, rnd, fullEvery);
  const eventOn = (d: number) => events.find((e) => e.day === d);

  const records: RunRecord[] = [];
  const dayList: number[] = [];
  let parentSeen = new Set<number>();
  let undo: (() => Set<number>) | undefined;
  let hidden = new Set<number>(); // a vanished mount: files there but not seen
  for (let d = 0; d < days; d++) {
    const time = START + d * 86_400_000 + Math.floor(rnd() * 15 * 60_000);
    const weekday = new Date(time).getUTCDay();
    const weekend = weekday === 0 || weekday === 6;
    const kind: RunRecord['kind'] = d % fullEvery === 0 ? 'full' : 'incremental';
    const touched = new Set<number>();
    if (undo) for (const i of undo()) touched.add(i);
    undo = undefined;
    hidden = new Set();
    // Normal life.
    const activity = (weekend ? 0.06 : weekday === 5 ? 0.8 : 1) * lognormal(0.3);
    const live = liveFiles().filter((i) => !special.has(i));
    const changes = Math.round((office ? 40 : 20) * activity);
    for (let k = 0; k < changes; k++) {
      const i = rnd() < 0.7 ? hot[Math.floor(rnd() * hot.length)]! : live[Math.floor(rnd() * live.length)]!;
      if (!alive[i]) continue;
      size[i] = Math.max(100, Math.round(size[i]! * lognormal(0.05)));
      touched.add(i);
    }
    const news = Math.round((office ? 8 : 4) * activity * lognormal(0.4));
    for (let k = 0; k < news; k++) touched.add(addFile());
    const dels = Math.round((office ? 3 : 2) * activity * lognormal(0.4));
    for (let k = 0; k < dels; k++) {
      const i = live[Math.floor(rnd() * live.length)]!;
      if (!touched.has(i)) alive[i] = false;
    }
    if (office) {
      // Mail arrives every weekday and on some weekend days; the database changes likewise.
      if (!weekend || rnd() < 0.35) {
        size[mailbox] = size[mailbox]! + Math.round(2e5 * lognormal(0.5));
        touched.add(mailbox);
      }
      if (!weekend || rnd() < 0.4) touched.add(database);
    } else if (weekend && rnd() < 0.6) {
      const n = 1 + Math.floor(rnd() * 3);
      for (let k = 0; k < n; k++) touched.add(large[Math.floor(rnd() * large.length)]!);
    }
    const ev = eventOn(d);
    if (ev) undo = inject(ev.type, { office, rnd, size, ratio, ext, dir, alive, live, touched, hidden, addFile });

    // The backup.
    const seenNow = new Set<number>();
    let files = 0;
    let bytesTotal = 0;
    let bytesIn = 0;
    let stored = 0;
    let newFiles = 0;
    let changedFiles = 0;
    const extCount = new Map<string, number>();
    for (let i = 0; i < alive.length; i++) {
      if (!alive[i] || hidden.has(i)) continue;
      seenNow.add(i);
      files++;
      bytesTotal += size[i]!;
      const isNew = kind === 'full' || !parentSeen.has(i);
      if (!isNew && !touched.has(i)) continue;
      if (isNew) newFiles++;
      else changedFiles++;
      bytesIn += size[i]!;
      stored += size[i]! / ratio[i]!;
      extCount.set(ext[i]!, (extCount.get(ext[i]!) ?? 0) + 1);
    }
    let deletedFiles = 0;
    if (kind === 'incremental') for (const i of parentSeen) if (!seenNow.has(i)) deletedFiles++;
    parentSeen = seenNow;
    const archive = Math.round(stored) + 1024;
    const durationMs = Math.round(800 + files * 0.05 + (bytesIn / (50e6 * lognormal(0.15))) * 1000 + 300 * lognormal(0.4));
    records.push({
      id: `${new Date(time)
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d+Z$/, 'Z')}-${(opts.seed >>> 0).toString(16).padStart(8, '0')}`,
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
      bytesStored: archive + files * 45,
      compressionRatio: bytesIn > 0 ? Math.round((bytesIn / archive) * 1000) / 1000 : 1,
      newFiles,
      changedFiles,
      deletedFiles,
      warnings: 0,
      extensions: Object.fromEntries([...extCount].sort((a, b) => b[1] - a[1]).slice(0, 20)),
    });
    dayList.push(d);
  }
  return { records, days: dayList, events };
}

/** Five events, one of each type, on days 22–days−4; office: weekdays only. */
function placeEvents(office: boolean, days: number, rnd: () => number, fullEvery: number): DailyEvent[] {
  const types = [...DAILY_EVENT_TYPES];
  for (let i = types.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [types[i], types[j]] = [types[j]!, types[i]!];
  }
  const first = 22;
  const spacing = Math.floor((days - 4 - first) / types.length);
  return types.map((type, k) => {
    let day = first + k * spacing + Math.floor(rnd() * Math.max(1, spacing - 3));
    const weekday = new Date(START + day * 86_400_000).getUTCDay();
    if (office && (weekday === 0 || weekday === 6)) day += weekday === 6 ? 2 : 1;
    // Not on a full's day: with one earlier full there is nothing to judge a full by but the
    // rules (docs/anomaly-detection.md, "Limits").
    if (day % fullEvery === 0) day += office && weekday === 5 ? 3 : 1;
    // Consequences: the next backup (the undo, or the first judged on the new level) and the
    // next full (it sees the change again against the previous full).
    const nextFull = Math.ceil((day + 1) / fullEvery) * fullEvery;
    return { type, day, echoes: [day + 1, nextFull] };
  });
}

interface World {
  office: boolean;
  rnd: () => number;
  size: number[];
  ratio: number[];
  ext: string[];
  dir: number[];
  alive: boolean[];
  live: number[];
  touched: Set<number>;
  hidden: Set<number>;
  addFile: (k?: Kind, d?: number, s?: number, q?: number) => number;
}

/** Apply one event; returns how the next day undoes it (the touched files), if it is undone. */
function inject(type: DailyEventType, w: World): (() => Set<number>) | undefined {
  const { rnd, live } = w;
  const sample = (share: number) => live.filter(() => rnd() < share);
  if (type === 'encryption') {
    // Files renamed to a new extension with content that does not compress; restored the next
    // day under their old names (the encrypted copies deleted).
    const newExt = w.office ? 'x7k2p' : 'locked';
    const victims = sample(w.office ? 0.2 : 0.15);
    const copies = victims.map((i) => {
      w.alive[i] = false;
      const j = w.addFile({ ext: newExt, weight: 0, size: 0, ratio: 1 }, w.dir[i], w.size[i]! + 512, 1);
      w.touched.add(j);
      return j;
    });
    return () => {
      for (const j of copies) w.alive[j] = false;
      for (const i of victims) w.alive[i] = true;
      // Restored files come back as new files (they were gone from the parent).
      return new Set<number>();
    };
  }
  if (type === 'overwrite') {
    // 8 % of the files overwritten in place with content that does not compress.
    const victims = sample(0.08);
    const old = victims.map((i) => w.ratio[i]!);
    for (const i of victims) {
      w.ratio[i] = 1;
      w.touched.add(i);
    }
    return () => {
      victims.forEach((i, k) => {
        w.ratio[i] = old[k]!;
      });
      return new Set(victims);
    };
  }
  if (type === 'mass-deletion') {
    for (const i of sample(0.3)) w.alive[i] = false;
    return undefined;
  }
  if (type === 'import') {
    // A legitimate import of half as many files again (photos and documents), kept.
    const n = Math.round(live.length * 0.5);
    for (let k = 0; k < n; k++) w.touched.add(w.addFile(rnd() < 0.6 ? { ext: 'jpg', weight: 0, size: 600_000, ratio: 1.01 } : undefined));
    return undefined;
  }
  // vanished: office — the third-largest subdirectory (about 8 % of the files) deleted, restored the next day; weekend — a
  // mount with the two largest folders not mounted for one backup (its files back the next day).
  const gone = live.filter((i) => (w.office ? w.dir[i] === 2 : w.dir[i]! <= 1));
  if (w.office) for (const i of gone) w.alive[i] = false;
  else for (const i of gone) w.hidden.add(i);
  return () => {
    for (const i of gone) w.alive[i] = true;
    return new Set<number>();
  };
}
