#!/usr/bin/env node
// What checking the shape of manifest entry lines costs (src/repo/manifest.ts, entryProblem):
// restore, ls and verify of a backup of a million files parse a million lines.
//
//   npm run build && node scripts/bench-manifest-schema.mjs [entries (default 1000000)] [rounds (default 7)]
//
// Parses the same realistic entry lines (90 % files with a SHA-256 and offsets, directories,
// symlinks, hard links) with JSON.parse alone, with the hand-written check s3backup uses, and
// with the equivalent zod schema; the variants take turns, each round, and the report gives the
// median and the best round of each in CPU time (less disturbed by other processes than wall
// time), as ns per line and as a percentage over JSON.parse alone. Then the whole read path
// for context: LocalManifest.entries() (decompress, split lines, parse, check) over a manifest
// of as many entries.
//
// Measured on the 2-core test VM (Node 24.21, zod 4.6.7; other jobs running, load 5), 1,000,000
// lines, 9 rounds, CPU medians per line:
//   JSON.parse alone                1,194 ns
//   + the hand check (entryProblem) 1,363 ns   +14 %   (best rounds: +15 %)
//   + zod z.object safeParse        2,108 ns   +77 %   (best rounds: +79 %)
// A loop over a table of the fields instead of the straight-line check: +23 % (keyed loads of
// changing names); zod's jitted parse still copies every object. Over the whole read path
// (LocalManifest.entries(): decompress, split, parse, check; 1M entries, 8 alternating runs,
// medians) the check is lost in the noise: 3.53 s without it, 3.62 s with it.
// zod's ~77 % is far over the 10-15 % budget for this hot path, hence the hand check for
// entries and zod for the objects read once (headers, archive lists, config, keys, locks, run
// records). The hand check is as strict: test/damaged-objects.test.ts compares the two.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';

const N = Number(process.argv[2] ?? 1_000_000);
const ROUNDS = Number(process.argv[3] ?? 7);
const dist = new URL('../dist/repo/manifest.js', import.meta.url);
if (!fs.existsSync(dist)) {
  console.error('run "npm run build" first (this measures the built dist/)');
  process.exit(2);
}
const { entryProblem, parseEntryLine, LocalManifest, EntrySchema } = await import(dist.href);

const hex = (i) => {
  let s = '';
  let x = i * 2654435761;
  while (s.length < 64) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += x.toString(16).padStart(8, '0');
  }
  return s.slice(0, 64);
};
// Entries as a backup writes them: its key order (path … size first, then what the kind of
// entry adds, in the order it is added), and so the same few shapes (hidden classes) V8 sees
// in a real manifest: directories, symlinks, new files, files unchanged since the parent
// (copied from it), hard links; sub-millisecond and whole-millisecond times, inodes past 2^31.
const lines = [];
let off = 0;
for (let i = 0; i < N; i++) {
  const r = i % 20;
  const base = {
    path: `data/projects/app-${i % 97}/src/module-${i % 13}/file-${i}.ts`,
    type: 'file',
    mode: 0o644,
    uid: 1000,
    gid: 1000,
    mtime: i % 3 === 0 ? 1732615233123 + i : 1732615233123.456 + i,
    ctime: 1732615233123.789 + i,
    ino: i % 2 ? 1234567 + i : 4_000_000_000 + i,
    size: 0,
  };
  let e;
  if (r === 0) e = { ...base, type: 'dir', mode: 0o755, header: off };
  else if (r === 1) e = { ...base, type: 'symlink', target: '../shared/config.ts', header: off };
  else if (r === 2)
    e = {
      ...base,
      type: 'hardlink',
      target: `data/projects/x/file-${i - 1}.ts`,
      size: 4096,
      archive: 0,
      offset: off - 4096,
      sha256: hex(i - 1),
      header: off,
    };
  else if (r < 12) {
    const size = (i * 7919) % 100000;
    e = { ...base, size, header: off, archive: 0, offset: off + 512, sha256: hex(i) };
    off += 1024 + size;
  } else e = { ...base, size: (i * 7919) % 100000, sha256: hex(i), archive: 1 + (i % 3), offset: i * 1536, header: i * 1536 - 512 };
  lines.push(JSON.stringify(e));
}

const variants = {
  'JSON.parse': (l) => JSON.parse(l),
  'JSON.parse + hand check (entryProblem)': (l) => {
    const x = JSON.parse(l);
    if (entryProblem(x) !== undefined) throw new Error('invalid');
    return x;
  },
  'parseEntryLine (what entries() calls)': (l) => parseEntryLine(l, 1, 'bench'),
  'JSON.parse + zod z.object safeParse': (l) => {
    const x = JSON.parse(l);
    if (!EntrySchema.safeParse(x).success) throw new Error('invalid');
    return x;
  },
};
const cpu = {};
for (const name of Object.keys(variants)) cpu[name] = [];
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, f] of Object.entries(variants)) {
    globalThis.gc?.();
    const c0 = process.cpuUsage();
    let s = 0;
    for (const l of lines) s += f(l).size;
    const c = process.cpuUsage(c0);
    if (!(s > 0)) throw new Error('nothing parsed');
    cpu[name].push(((c.user + c.system) * 1000) / N); // ns per line
  }
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const min = (a) => Math.min(...a);
const baseMed = median(cpu['JSON.parse']);
const baseMin = min(cpu['JSON.parse']);
console.log(
  `${N.toLocaleString('en')} entry lines, ${ROUNDS} rounds, CPU ns per line (Node ${process.version}, ${os.availableParallelism()} cores)`,
);
for (const [name, a] of Object.entries(cpu)) {
  const m = median(a);
  const b = min(a);
  const pct = (x, y) => `${x >= y ? '+' : ''}${(((x - y) / y) * 100).toFixed(1)} %`;
  console.log(
    `  ${name.padEnd(40)} median ${m.toFixed(0).padStart(5)} (${pct(m, baseMed).padStart(8)})   best ${b.toFixed(0).padStart(5)} (${pct(b, baseMin).padStart(8)})`,
  );
}

// The whole read path, for scale: a manifest of N entries read with LocalManifest.entries().
const head = {
  format: 's3backup-manifest',
  version: 1,
  id: '20261126T101500.123Z-1a2b3c4d',
  time: '2026-11-26T10:15:00.123Z',
  endTime: '2026-11-26T10:16:00.123Z',
  kind: 'full',
  host: 'bench',
  sources: [{ path: '/data', name: 'data' }],
  tags: [],
  toolVersion: 'bench',
  options: { codec: 'zstd', frameSize: 4194304, excludes: [] },
  stats: {
    files: N,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    skipped: 0,
    bytesIn: 0,
    bytesStored: 0,
    archiveBytes: 0,
    durationMs: 0,
    compressionRatio: 1,
    warnings: 0,
  },
  warnings: [],
};
const archives = {
  archives: [
    {
      id: head.id,
      key: `archives/${head.id}.tar.zst`,
      codec: 'zstd',
      size: off,
      sha256: hex(0),
      uncompressedSize: off + 1024,
      frames: [[off, off + 1024]],
    },
  ],
};
const manifest = Buffer.concat([
  zlib.zstdCompressSync(`${JSON.stringify(head)}\n${JSON.stringify(archives)}\n`),
  zlib.zstdCompressSync(`${lines.join('\n')}\n`),
]);
const m = await LocalManifest.fromStream(Readable.from([manifest]), 'bench');
try {
  const walls = [];
  for (let round = 0; round < Math.min(ROUNDS, 3); round++) {
    const t0 = performance.now();
    let n = 0;
    for await (const _ of m.entries()) n++;
    if (n !== N) throw new Error(`read ${n} entries`);
    walls.push(performance.now() - t0);
  }
  const checkShare = ((median(cpu['JSON.parse + hand check (entryProblem)']) - baseMed) * N) / 1e6;
  console.log(
    `  LocalManifest.entries() over ${N.toLocaleString('en')} entries: ${median(walls).toFixed(0)} ms (wall, median); the check's share ~${checkShare.toFixed(0)} ms`,
  );
} finally {
  await m.dispose();
}
