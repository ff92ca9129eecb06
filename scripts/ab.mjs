#!/usr/bin/env node
// A/B of full backups between two checkouts (or two sets of options), for changes whose effect
// is smaller than this kind of VM's drift: runs alternate A, B / B, A, pair after pair, and the
// medians of the per-pair ratios are printed beside the medians of each side.
//
//   npm run ab -- DIR --a CHECKOUT [--b CHECKOUT] [--runs N] [--a-args "…"] [--b-args "…"] [--no-change]
//
// --no-change: no-change backups instead (each side's repository gets one full backup first,
// by its own checkout, untimed; then every timed run is an incremental of the one before).
//
// CHECKOUT: a clone or `git worktree` of s3backup, built (`npm run build` there); --b defaults
// to this one. --a-args/--b-args: extra backup options per side, e.g. --a-args "--level 1".
// S3BACKUP_PASSWORD and the like pass through; each side gets its own fresh local repository
// unless --repo is in its args. Needs GNU time (/usr/bin/time) for CPU and peak RSS.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launcherNodeFlags, median, warmTree } from './bench-common.mjs';

const here = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (n, d) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1] : d;
};
const dir = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
const a = opt('--a');
if (!dir || !a || !fs.existsSync('/usr/bin/time')) {
  console.error(
    'usage: npm run ab -- DIR --a CHECKOUT [--b CHECKOUT] [--runs N] [--a-args "…"] [--b-args "…"] [--no-change] (needs /usr/bin/time)',
  );
  process.exit(2);
}
const runs = Number(opt('--runs', '6'));
const noChange = args.includes('--no-change');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-ab-'));
const sides = [
  { name: 'A', checkout: path.resolve(a), extra: (opt('--a-args') ?? '').split(/\s+/).filter(Boolean), results: [] },
  { name: 'B', checkout: path.resolve(opt('--b', here)), extra: (opt('--b-args') ?? '').split(/\s+/).filter(Boolean), results: [] },
];

/** One full backup by one side, timed by GNU time; its figures go into side.results. */
function run(side, record = true) {
  const repo = side.extra.includes('--repo') ? [] : ['--repo', path.join(tmp, `repo-${side.name}`)];
  const timeFile = path.join(tmp, 'time');
  const argv = [
    '-f',
    '%e %U %S %M',
    '-o',
    timeFile,
    process.execPath,
    ...launcherNodeFlags(side.checkout),
    path.join(side.checkout, 'bin/s3backup.js'),
  ];
  argv.push(
    'backup',
    dir,
    ...repo,
    ...(noChange && record ? [] : ['--full']),
    '--no-forget',
    '--json',
    '--log-dir',
    path.join(tmp, 'logs'),
    ...side.extra,
  );
  const r = spawnSync('/usr/bin/time', argv, { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0 && r.status !== 3) throw new Error(`side ${side.name} failed (${r.status}): ${r.stderr}`);
  const [wall, user, sys, rssKiB] = fs.readFileSync(timeFile, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
  const doc = JSON.parse(r.stdout);
  if (record) side.results.push({ wall, cpu: user + sys, rss: rssKiB / 1024, stored: doc.bytesStored });
}

try {
  warmTree(dir);
  if (noChange) for (const side of sides) run(side, false);
  for (let i = 0; i < runs; i++) {
    for (const side of i % 2 ? [...sides].reverse() : sides) run(side);
    process.stderr.write(`pair ${i + 1}/${runs}: ${sides.map((s) => `${s.name} ${s.results.at(-1).wall.toFixed(2)} s`).join(', ')}\n`);
  }
  const [A, B] = sides;
  for (const s of sides) {
    const m = (k) => median(s.results.map((x) => x[k]));
    console.log(
      `${s.name} ${s.checkout} ${s.extra.join(' ')}\n  wall ${m('wall').toFixed(2)} s, CPU ${m('cpu').toFixed(2)} s, peak RSS ${m('rss').toFixed(0)} MiB (max ${Math.max(...s.results.map((x) => x.rss)).toFixed(0)}), ${(m('stored') / 2 ** 20).toFixed(1)} MiB stored; wall per run: ${s.results.map((x) => x.wall.toFixed(2)).join(' ')}`,
    );
  }
  const ratio = (k) => `${(100 * (median(B.results.map((x, i) => x[k] / A.results[i][k])) - 1)).toFixed(1)}%`;
  console.log(`B against A, median of the ${runs} pairs: wall ${ratio('wall')}, CPU ${ratio('cpu')}`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
