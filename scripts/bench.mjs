#!/usr/bin/env node
// Benchmark: s3backup beside `tar | zstd -3 -T0` and restic, in the same run, on one source tree:
// full backup (local and S3), no-change backup (time, peak RSS, bytes of new repository data),
// a 1 % change backup (the tree changed by mutate-dataset.sh, and put back), restore into tmpfs,
// lookups (`ls` of one directory, `cat` of one file, `restore --include` of one directory), the
// bytes read to restore one ~1 MiB file, peak RSS per file (for --files N); then full
// backups to an encrypted repository against a plain one (interleaved, so load changes hit both).
//
//   npm run bench -- DIR [--no-s3] [--runs N] [--compression zstd|gzip|none] [--no-encryption | --encryption-only]
//       [--no-xattr-cost]   (skip the interleaved full backups with and without --no-xattrs)
//       [--mutate-script SCRIPT]   (for the 1 % change; default ../shared/bench/mutate-dataset.sh)
//       [--no-build]   (use dist/ as it is instead of building it first)
//       [--no-stored-once]   (skip the content-stored-once rows: a 256 MiB directory renamed, 1 % appended
//                             to a 256 MiB file, 1 MiB rewritten in a 1 GiB file, each backed up again)
//   npm run bench -- --stored-once-only   those rows alone (no DIR needed)
//       [--stored-once-scale N]   (1, 2, 4, 8 or 16: their sizes divided by N, for a quick run)
//   npm run bench -- --files 1000000 [DIR] [--seed S] …   the tree of scripts/make-tree.mjs (made
//       in DIR, default $TMPDIR/s3b-bench-tree-N-S, unless it is there already; kept after)
//   … --also-files N[:DIR][,N2[:DIR2]…]   then the local rows (no S3, encryption, xattr or stored-once
//       rows) again on make-tree trees of N files (in DIR, as for --files), each in a bench of its
//       own, in the same table, with the memory growth per file between the tree sizes
//
// restic: the one on PATH or RESTIC_BIN (Debian: apt-get install restic); without it its cells say so. Its
// repositories are encrypted (restic always is) with zstd (restic 0.14's default "auto").
// S3: uses S3_BENCH_ENDPOINT (or S3_TEST_ENDPOINT) with S3_TEST_ACCESS_KEY_ID/SECRET (default
// testkey/testsecret); without one it starts scripts/ceph-rgw.sh on port 7480 and stops it after.
// Restores go into --restore-dir (default /dev/shm when it is a tmpfs): on these VMs creating
// files on ext4 soon after a big tree was deleted is several times slower, which would measure
// the disk's state rather than the tool. Peak RSS: of the whole process tree (a pipeline's
// processes together), sampled from /proc every 100 ms, or if larger the maxRSS of its largest
// process (getrusage: s3backup's own, or GNU time's for the others when /usr/bin/time exists).
// Medians of N runs (default 1) for full backups and restores. Warm cache: the tree is read once
// before timing. The load average is printed: on a shared machine times are "under load".
import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launcherNodeFlags, median, sampleTreeRss, tarOf, warmTree } from './bench-common.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const VALUED = new Set([
  '--runs',
  '--compression',
  '--files',
  '--seed',
  '--restore-dir',
  '--mutate-script',
  '--also-files',
  '--rows-json',
  '--stored-once-scale',
]);
const dirArg = args.find((a, i) => !a.startsWith('--') && !VALUED.has(args[i - 1]));
const flag = (n) => args.includes(n);
const opt = (n, d) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1] : d;
};
const treeFiles = opt('--files') === undefined ? undefined : Number(opt('--files'));
const seed = Number(opt('--seed', '1'));
const storedOnceOnly = flag('--stored-once-only');
const onceScale = Number(opt('--stored-once-scale', '1'));
if (![1, 2, 4, 8, 16].includes(onceScale)) {
  console.error('--stored-once-scale takes 1, 2, 4, 8 or 16');
  process.exit(2);
}
if (
  (treeFiles === undefined && !storedOnceOnly && (!dirArg || !fs.existsSync(dirArg))) ||
  (treeFiles !== undefined && !(Number.isInteger(treeFiles) && treeFiles > 0))
) {
  console.error(
    'usage: npm run bench -- DIR | --files N [DIR] [--seed S]  [--no-s3] [--runs N] [--compression zstd|gzip|none] [--no-encryption | --encryption-only] [--no-xattr-cost] [--restore-dir DIR] [--mutate-script SCRIPT] [--no-build]',
  );
  process.exit(2);
}
const runs = Number(opt('--runs', '1'));
const encryption = !flag('--no-encryption');
const encryptionOnly = flag('--encryption-only');
const compression = opt('--compression', 'zstd');

/** The tree of make-tree.mjs for --files N: made unless a finished one (its summary beside it) is there. */
function scaleTree() {
  const d = path.resolve(dirArg ?? path.join(os.tmpdir(), `s3b-bench-tree-${treeFiles}-${seed}`));
  const summary = `${d}.tree.json`;
  if (fs.existsSync(summary)) {
    const s = JSON.parse(fs.readFileSync(summary, 'utf8'));
    if (s.files === treeFiles && s.seed === seed) return d;
  }
  if (fs.existsSync(d) && fs.readdirSync(d).length > 0) {
    console.error(`${d} exists but is not a finished tree of ${treeFiles} files (seed ${seed}): remove it, or name another DIR`);
    process.exit(1);
  }
  console.error(`making ${d} (${treeFiles} files, seed ${seed}) …`);
  const r = spawnSync(
    process.execPath,
    [path.join(root, 'scripts/make-tree.mjs'), '--files', String(treeFiles), '--seed', String(seed), d],
    { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' },
  );
  if (r.status !== 0) process.exit(1);
  fs.writeFileSync(summary, r.stdout);
  console.error(r.stdout.trim());
  return d;
}
const src = treeFiles !== undefined ? scaleTree() : dirArg ? path.resolve(dirArg) : undefined;

// --no-build: dist/ as it is (npm test builds it first, and other test files run the CLI from
// it meanwhile: a build would rewrite it under them).
if (!flag('--no-build')) {
  const build = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (build.status !== 0) process.exit(1);
}

const nodeFlags = launcherNodeFlags(root);
const logs = ['--log-dir', path.join(os.tmpdir(), 's3b-bench-logs')];

function isTmpfs(d) {
  try {
    return fs
      .readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[1] === d && l.split(' ')[2] === 'tmpfs');
  } catch {
    return false;
  }
}
const gnuTime = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const restoreDir = opt('--restore-dir', isTmpfs('/dev/shm') ? '/dev/shm' : os.tmpdir());

/** The commands being measured (stopped if the bench is interrupted). */
const running = new Set();
/** The benches of --also-files trees (told to stop if this one is interrupted). */
const childBenches = new Set();

/**
 * Run a command, timed, with the peak RSS of its process tree: { ms, maxRssMiB, out, err, code }.
 * Rejects when it exits with another code than those in `ok`.
 */
function measured(cmd, argv, { env = {}, fd3 = false, ok = [0] } = {}) {
  // Under GNU time when there is one: its maxRSS (the largest single process, exact) is the floor
  // of the sampled figure, which misses commands shorter than the sampling interval.
  const timeOut = gnuTime && !fd3 ? path.join(os.tmpdir(), `s3b-bench-time-${process.pid}`) : undefined;
  if (timeOut) [cmd, argv] = [gnuTime, ['-f', '%M', '-o', timeOut, cmd, ...argv]];
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', ...(fd3 ? ['pipe'] : [])] });
    running.add(child);
    const rss = sampleTreeRss(child.pid);
    let out = '';
    let err = '';
    let usage = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    if (fd3) child.stdio[3].on('data', (d) => (usage += d));
    child.on('error', reject);
    child.on('close', (code) => {
      running.delete(child);
      const ms = performance.now() - t0;
      const peak = rss.stop();
      if (!ok.includes(code)) return reject(new Error(`${path.basename(cmd)} ${argv.join(' ')} exited ${code}: ${err.slice(-2000)}`));
      let u = usage ? JSON.parse(usage) : { maxRssKiB: 0, cpuMs: NaN };
      if (timeOut) {
        u = { maxRssKiB: Number(fs.readFileSync(timeOut, 'utf8').trim().split('\n').at(-1)) || 0, cpuMs: NaN };
        fs.rmSync(timeOut, { force: true });
      }
      resolve({ ms, out, err, code, maxRssMiB: Math.max(peak / 1048576, u.maxRssKiB / 1024), cpuMs: u.cpuMs });
    });
  });
}

/** s3backup, through its launcher and with its node flags, as a user runs it; --json output parsed. */
async function cli(argv, env = {}) {
  const r = await measured(process.execPath, [...nodeFlags, path.join(root, 'scripts/bench-child.mjs'), ...argv], {
    env,
    fd3: true,
    ok: [0, 3],
  });
  return { ...r, doc: JSON.parse(r.out) };
}

/** A shell pipeline (tar, zstd), its processes' RSS summed. */
const shell = (script) => measured('bash', ['-c', `set -o pipefail; ${script}`]);

// RESTIC_BIN: another restic than the one on PATH.
const resticBin = process.env.RESTIC_BIN ?? 'restic';
const resticVersion = (() => {
  const r = spawnSync(resticBin, ['version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().split(' ').slice(0, 2).join(' ') : undefined;
})();
const resticCache = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-restic-cache-'));
// restic always encrypts; a fixed password for the bench's own repositories.
const resticEnv = (extra = {}) => ({ RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: resticCache, ...extra });
/** restic with --json: its output lines parsed, the last "summary" one as doc. */
async function restic(repo, argv, env = {}) {
  const r = await measured(resticBin, ['-r', repo, ...argv], { env: resticEnv(env) });
  let doc;
  for (const line of r.out.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line);
      if (j.message_type === 'summary') doc = j;
    } catch {}
  }
  return { ...r, doc };
}

function treeBytes(d) {
  let bytes = 0;
  let files = 0;
  const walk = (p) => {
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const q = path.join(p, e.name);
      if (e.isDirectory()) walk(q);
      else if (e.isFile()) {
        files++;
        bytes += fs.statSync(q).size;
      }
    }
  };
  walk(d);
  return { bytes, files };
}

const warm = () => warmTree(src);

/** A file near 1 MiB, for the single-file restore figure. */
function pickOneMiBFile() {
  let best;
  const walk = (p, rel) => {
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const q = path.join(p, e.name);
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(q, r);
      else if (e.isFile()) {
        const s = fs.statSync(q).size;
        if (!best || Math.abs(s - (1 << 20)) < Math.abs(best.size - (1 << 20))) best = { rel: r, size: s };
      }
    }
  };
  walk(src, path.basename(src));
  return best;
}

/**
 * The directory for the `ls` row: down the middle of the tree (the middle subdirectory, by name,
 * at each level) to one with no subdirectories; relative to the source's parent.
 */
function pickDirectory() {
  let rel = path.basename(src);
  for (;;) {
    const subs = fs
      .readdirSync(path.join(path.dirname(src), rel), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
    if (subs.length === 0) return rel;
    rel = `${rel}/${subs[Math.floor(subs.length / 2)]}`;
  }
}

/** Bytes under a local directory (a repository's growth). */
function duBytes(d) {
  let n = 0;
  const walk = (p) => {
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const q = path.join(p, e.name);
      if (e.isDirectory()) walk(q);
      else if (e.isFile()) n += fs.statSync(q).size;
    }
  };
  walk(d);
  return n;
}

const mib = (b) => b / 1048576;
/** Decimal units, as S3 bills them. */
const mb = (b) => (Math.abs(b) < 1e6 ? `${(b / 1e3).toFixed(1)} kB` : `${(b / 1e6).toFixed(1)} MB`);
const { bytes: srcBytes, files: srcFiles } = src ? treeBytes(src) : { bytes: 0, files: 0 };
/** The comparison table: [work, s3backup, tar | zstd, restic, notes]. */
// Each row is also shown on stderr as soon as it is measured: a long run stopped midway keeps them.
const rows = [];
const pushRow = rows.push.bind(rows);
rows.push = (...r) => {
  for (const row of r) console.error(`row: ${row.join(' | ')}`);
  return pushRow(...r);
};
/** The encryption table: [step, seconds, MiB/s, peak RSS MiB, notes]. */
const encRows = [];
/** The extended-attributes table, same columns. */
const xattrRows = [];
const cleanup = [];
/** s3backup's peak RSS per command, for the memory lines: [work, MiB]. */
const memoryRuns = [];
const NO_RESTIC = 'restic not installed';
const cell = (r, extra = '') => (r ? `${(r.ms / 1000).toFixed(r.ms < 10_000 ? 2 : 1)} s, ${r.maxRssMiB.toFixed(0)} MiB${extra}` : '');
/** The median run by time, with the largest peak RSS of all runs (RSS is the figure to bound). */
const medianRun = (xs) =>
  xs.length === 0
    ? undefined
    : { ...xs.find((x) => x.ms === median(xs.map((y) => y.ms))), maxRssMiB: Math.max(...xs.map((x) => x.maxRssMiB)) };

/** A fresh directory for a restore; on tmpfs it is removed right after, elsewhere at the end. */
function restoreTarget() {
  return fs.mkdtempSync(path.join(restoreDir, 's3b-bench-restore-'));
}
function doneWith(target) {
  if (isTmpfs(restoreDir)) spawnSync('rm', ['-rf', target]);
  else cleanup.push(target);
}

// The 1 % change rows: a mutation script with the interface of ../shared/bench/mutate-dataset.sh
// (`SCRIPT DIR PERCENT` with MUTATE_JOURNAL=J saves what it touches; `SCRIPT --undo DIR J` puts
// it back). --mutate-script names another; without one the rows say so.
const mutateScript = (() => {
  const given = opt('--mutate-script');
  if (given !== undefined) return path.resolve(given);
  const shared = path.join(root, '../shared/bench/mutate-dataset.sh');
  return fs.existsSync(shared) ? shared : undefined;
})();
/** The journal of a mutation not yet undone: put back on any exit, the tree is the user's. */
let pendingUndo;
function undoMutation() {
  if (!pendingUndo) return;
  const journal = pendingUndo;
  pendingUndo = undefined;
  const r = spawnSync('bash', [mutateScript, '--undo', src, journal], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) {
    console.error(`could not put ${src} back as it was: run "${mutateScript} --undo ${src} ${journal}"`);
    return;
  }
  fs.rmSync(journal, { recursive: true, force: true });
}
// Interrupted: stop the command being measured, put the tree back, remove what the run made.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    for (const child of running) child.kill('SIGKILL');
    // A bench of another tree puts its own tree back: told to stop, not killed.
    for (const child of childBenches) child.kill('SIGTERM');
    undoMutation();
    for (const d of cleanup) spawnSync('rm', ['-rf', d]);
    spawnSync('rm', ['-rf', resticCache]);
    process.exit(128 + os.constants.signals[signal]);
  });
}
process.on('exit', undoMutation);

/** Change ~`percent` % of the source's files, run `fn`, and put the tree back whatever happens. */
async function whileMutated(percent, fn) {
  const journal = path.join(os.tmpdir(), `s3b-bench-mutate-journal-${process.pid}`);
  fs.rmSync(journal, { recursive: true, force: true });
  pendingUndo = journal;
  try {
    const r = spawnSync('bash', [mutateScript, src, String(percent)], {
      env: { ...process.env, MUTATE_JOURNAL: journal },
      stdio: ['ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`${mutateScript} ${src} ${percent} exited ${r.status}: ${r.stderr.slice(-2000)}`);
    return await fn();
  } finally {
    undoMutation();
  }
}

/**
 * A backup after ~1 % of the files changed (mutate-dataset.sh's mix: appends, overwrites,
 * rewrites, deletions, new files), by s3backup (an incremental of the no-change backup) and
 * restic: time, peak RSS, the bytes each added to its repository, s3backup's manifest data.
 */
async function benchChange(name, t, resticRepo) {
  if (!mutateScript) {
    rows.push([`1 % change backup, ${name}`, 'no mutate script', '', '', 'needs ../shared/bench/mutate-dataset.sh or --mutate-script']);
    return;
  }
  await whileMutated(1, async () => {
    spawnSync('sync');
    warm();
    const before = await t.s3bBytes();
    const s = await cli(['backup', src, '--repo', t.s3bRepo, '--json', '--no-forget', ...logs], t.env);
    const s3bAdded = (await t.s3bBytes()) - before;
    let r;
    let resticAdded;
    if (resticRepo) {
      spawnSync('sync');
      warm();
      const rBefore = await t.resticBytes(resticRepo);
      r = await restic(resticRepo, ['backup', src, '--json'], t.resticEnv);
      resticAdded = (await t.resticBytes(resticRepo)) - rBefore;
    }
    const d = s.doc;
    memoryRuns.push([`1 % change backup, ${name}`, s.maxRssMiB]);
    rows.push([
      `1 % change backup, ${name}`,
      cell(s, `, +${mb(s3bAdded)} new (manifest data ${mb(d.manifestBytes ?? 0)})`),
      '',
      r ? cell(r, `, +${mb(resticAdded)} new`) : resticVersion ? '' : NO_RESTIC,
      `${d.changedFiles} changed, ${d.newFiles} new, ${d.deletedFiles} deleted of ${d.files} files; ${mb(d.bytesIn)} read` +
        (r ? `; s3backup/restic time ${(s.ms / r.ms).toFixed(2)}` : ''),
    ]);
  });
}

/**
 * 256 MiB of incompressible files (deterministic, AES-CTR of zeros) in `dir`: 64 small ones of
 * 4 KiB (below the content index's threshold, stored again when renamed) and the rest from
 * 64 KiB to 16 MiB, as a photo or data directory has them.
 */
function makeRenameTree(dir, total) {
  fs.mkdirSync(dir, { recursive: true });
  let left = total;
  let i = 0;
  const write = (size) => {
    // A counter block far from every other file's: no two files share keystream.
    const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), createHash('md5').update(String(i)).digest());
    fs.writeFileSync(path.join(dir, `file-${String(i).padStart(4, '0')}.bin`), cipher.update(Buffer.alloc(size)));
    i++;
    left -= size;
  };
  for (let k = 0; k < 64; k++) write(4096);
  const sizes = [64 << 10, 300 << 10, 1 << 20, 3 << 20, 7 << 20, 16 << 20];
  for (let k = 0; left > 0; k++) write(Math.min(left, sizes[k % sizes.length] + k * 4096));
  return total;
}

/** `size` bytes of deterministic incompressible data (AES-CTR of zeros under `seed`), written in 16 MiB pieces. */
function writeNoise(file, size, seed, flags = 'w') {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 9), createHash('md5').update(seed).digest());
  const fd = fs.openSync(file, flags);
  try {
    for (let left = size; left > 0; ) {
      const n = Math.min(left, 16 << 20);
      fs.writeSync(fd, cipher.update(Buffer.alloc(n)));
      left -= n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Issue 25's targets, one row each: a tree is made, backed up by s3backup (local repository)
 * and restic (local, encrypted, zstd), changed, and backed up again by each: the bytes each
 * added to its repository by the second backup, as a share of `size`.
 */
async function benchStoredOnce(work, { make, change, size, note }) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-once-'));
  cleanup.push(base);
  const tree = path.join(base, 'tree');
  fs.mkdirSync(tree);
  make(tree);
  const s3bRepo = path.join(base, 's3b');
  const resticRepo = path.join(base, 'restic');
  const s3b = () => cli(['backup', tree, '--repo', s3bRepo, '--json', '--no-forget', ...logs]);
  await s3b();
  if (resticVersion) {
    await restic(resticRepo, ['init'], {});
    await restic(resticRepo, ['backup', tree, '--json'], {});
  }
  change(tree);
  spawnSync('sync');
  const before = duBytes(s3bRepo);
  const s = await s3b();
  const added = duBytes(s3bRepo) - before;
  let r;
  let resticAdded;
  if (resticVersion) {
    const rBefore = duBytes(resticRepo);
    r = await restic(resticRepo, ['backup', tree, '--json'], {});
    resticAdded = duBytes(resticRepo) - rBefore;
  }
  const pct = (b) => `${((100 * b) / size).toFixed(2)} %`;
  rows.push([
    work,
    cell(s, `, +${mb(added)} new (${pct(added)})`),
    '',
    r ? cell(r, `, +${mb(resticAdded)} new (${pct(resticAdded)})`) : NO_RESTIC,
    note(s.doc),
  ]);
  spawnSync('rm', ['-rf', base]);
}

const read = (d) => `${mb(d.bytesIn)} read into the archive`;

/** 256 MiB, 1 GiB: a size as the rows name it. */
const sizeLabel = (b) => (b >= 1 << 30 ? `${b / 2 ** 30} GiB` : `${b / 2 ** 20} MiB`);

/**
 * Renaming a 256 MiB directory (target < 1 %), appending 1 % to a 256 MiB file (≤ 2 %), rewriting
 * 1 MiB in the middle of a 1 GiB file (≤ 1 %); with --stored-once-scale N, every size but the
 * rewrite's 1 MiB divided by N (a quick run; the image stays ≥ 64 MiB, the size chunked at).
 */
async function benchContentStoredOnce() {
  const renamed = (256 << 20) / onceScale;
  await benchStoredOnce(`rename a ${sizeLabel(renamed)} directory, local`, {
    make: (tree) => makeRenameTree(path.join(tree, 'photos-2025'), renamed),
    change: (tree) => fs.renameSync(path.join(tree, 'photos-2025'), path.join(tree, 'photos-archive')),
    size: renamed,
    note: (d) => `${d.foundFiles} of ${d.newFiles} renamed files found (${mb(d.foundBytes)}), ${read(d)}; target < 1 %`,
  });
  const log = (256 << 20) / onceScale;
  await benchStoredOnce(`append 1 % to a ${sizeLabel(log)} file, local`, {
    make: (tree) => writeNoise(path.join(tree, 'app.log'), log, 'log'),
    change: (tree) => writeNoise(path.join(tree, 'app.log'), Math.round(log / 100), 'log tail', 'a'),
    size: log,
    note: (d) => `${read(d)}; target ≤ 2 %`,
  });
  const image = (1 << 30) / onceScale;
  await benchStoredOnce(`rewrite 1 MiB amid a ${sizeLabel(image)} file, local`, {
    make: (tree) => writeNoise(path.join(tree, 'disk.img'), image, 'image'),
    change: (tree) => {
      const fd = fs.openSync(path.join(tree, 'disk.img'), 'r+');
      const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 9), createHash('md5').update('rewrite').digest());
      fs.writeSync(fd, cipher.update(Buffer.alloc(1 << 20)), 0, 1 << 20, image / 2 + 12345);
      fs.closeSync(fd);
    },
    size: image,
    note: (d) => `${read(d)}; target ≤ 1 %`,
  });
}

/** s3backup with its output kept as text (a file's content, for `cat`). */
const cliRaw = (argv, env = {}) =>
  measured(process.execPath, [...nodeFlags, path.join(root, 'scripts/bench-child.mjs'), ...argv], { env, fd3: true });

/**
 * Lookups in the full backup, each beside tar's (which reads the whole archive) and restic's:
 * `ls` of one directory (the middle one of the tree), `cat` of one file in it, and
 * `restore --include 'DIR/**'` of that directory.
 */
async function benchLookups(name, t, last, resticRepo, archive) {
  const dirRel = pickDirectory();
  const abs = (rel) => path.join(path.dirname(src), rel);
  const ls = await cli(['ls', last.id, dirRel, '--repo', t.s3bRepo, '--json'], t.env);
  const lsTar = t.local ? await shell(`zstd -dc "${archive}" | tar -tf - "${dirRel}" > /dev/null`) : undefined;
  const lsRestic = resticRepo ? await restic(resticRepo, ['ls', 'latest', abs(dirRel)], t.resticEnv) : undefined;
  const listed = Array.isArray(ls.doc) ? ls.doc.length : (ls.doc.entries?.length ?? '?');
  const resticCell = (r) => (r ? cell(r) : resticVersion ? '' : NO_RESTIC);
  rows.push([`ls of one directory, ${name}`, cell(ls), lsTar ? cell(lsTar) : '', resticCell(lsRestic), `${dirRel}: ${listed} entries`]);

  const fileName = fs
    .readdirSync(abs(dirRel), { withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name)
    .sort()[0];
  if (fileName !== undefined) {
    const fileRel = `${dirRel}/${fileName}`;
    const size = fs.statSync(abs(fileRel)).size;
    const cat = await cliRaw(['cat', last.id, fileRel, '--repo', t.s3bRepo], t.env);
    if (cat.out.length === 0 && size > 0) throw new Error(`s3backup cat ${fileRel} wrote nothing for a file of ${size} bytes`);
    const catTar = t.local ? await shell(`zstd -dc "${archive}" | tar -xOf - "${fileRel}" > /dev/null`) : undefined;
    const dump = resticRepo ? await restic(resticRepo, ['dump', 'latest', abs(fileRel)], t.resticEnv) : undefined;
    rows.push([
      `cat of one file, ${name}`,
      cell(cat),
      catTar ? cell(catTar) : '',
      resticCell(dump),
      `${fileRel}: ${size} bytes (restic: dump)`,
    ]);
  }

  const target = restoreTarget();
  const inc = await cli(['restore', last.id, '--repo', t.s3bRepo, '--target', target, '--include', `${dirRel}/**`, '--json'], t.env);
  doneWith(target);
  let incTar;
  if (t.local) {
    const tt = restoreTarget();
    incTar = await shell(`zstd -dc "${archive}" | tar -xf - -C "${tt}" "${dirRel}"`);
    doneWith(tt);
  }
  let incRestic;
  if (resticRepo) {
    const rt = restoreTarget();
    incRestic = await restic(resticRepo, ['restore', 'latest', '--target', rt, '--include', abs(dirRel)], t.resticEnv);
    doneWith(rt);
  }
  rows.push([
    `restore --include of one directory, ${name}`,
    cell(inc),
    incTar ? cell(incTar) : '',
    resticCell(incRestic),
    `'${dirRel}/**': ${inc.doc.files ?? '?'} files, ${mib(inc.doc.bytesFetched ?? 0).toFixed(2)} MiB read in ${inc.doc.requests ?? '?'} GET(s)`,
  ]);
}

/**
 * One store (local directory or S3): full backups, a no-change backup, restores, `ls` of one
 * directory and a one-file restore, by s3backup, by restic, and (local only) by tar and zstd.
 * t: { s3bRepo, env (s3backup's), resticRepo(i) (a fresh one per full run), resticEnv,
 * s3bBytes() and resticBytes(repo) (bytes stored in each repository, for what a backup adds),
 * local }.
 */
async function benchTarget(name, t) {
  const full = { s3b: [], tar: [], restic: [] };
  let last;
  let lastRestic;
  const archive = path.join(path.dirname(t.local ? t.s3bRepo : os.tmpdir()), `s3b-bench-reference-${process.pid}.tar.zst`);
  if (t.local) cleanup.push(archive);
  for (let i = 0; i < runs; i++) {
    spawnSync('sync');
    warm();
    // --full: every run stores everything (otherwise runs 2… would be no-change backups).
    const b = await cli(
      ['backup', src, '--repo', t.s3bRepo, '--json', '--full', '--no-forget', '--compression', compression, ...logs],
      t.env,
    );
    full.s3b.push(b);
    last = b.doc;
    if (t.local) {
      spawnSync('sync');
      warm();
      full.tar.push(await shell(`${tarOf(src)} | zstd -3 -T0 -q -f -o "${archive}"`));
    }
    if (resticVersion) {
      const repo = t.resticRepo(i);
      await restic(repo, ['init'], t.resticEnv);
      spawnSync('sync');
      warm();
      full.restic.push(await restic(repo, ['backup', src, '--json'], t.resticEnv));
      lastRestic = repo;
    }
  }
  const s3bStored = await t.s3bBytes();
  const resticStored = lastRestic ? await t.resticBytes(lastRestic) : undefined;
  const tarStored = t.local ? fs.statSync(archive).size : undefined;
  // Each backup against the reference run right after it: the machine's drift hits both.
  const pair = full.tar.length > 0 ? median(full.s3b.map((b, i) => b.ms / full.tar[i].ms)) : undefined;
  rows.push([
    `full backup, ${name}`,
    cell(medianRun(full.s3b)),
    t.local ? cell(medianRun(full.tar)) : '',
    resticVersion ? cell(medianRun(full.restic)) : NO_RESTIC,
    `stored: s3backup ${mb(last.bytesStored)}` +
      (tarStored !== undefined ? `, tar|zstd ${mb(tarStored)}` : '') +
      (resticStored !== undefined ? `, restic ${mb(resticStored)}` : '') +
      (pair !== undefined ? `; s3backup/tar|zstd ${pair.toFixed(2)} (median of pairs)` : ''),
  ]);

  // No-change backups: what they cost and what they add to the repository (s3backup: the new
  // manifest; restic: its snapshot, and tree and index blobs if any changed).
  spawnSync('sync');
  warm();
  const inc = await cli(['backup', src, '--repo', t.s3bRepo, '--json', '--no-forget', ...logs], t.env);
  const s3bAdded = (await t.s3bBytes()) - s3bStored;
  let rinc;
  let resticAdded;
  if (lastRestic) {
    spawnSync('sync');
    warm();
    rinc = await restic(lastRestic, ['backup', src, '--json'], t.resticEnv);
    resticAdded = (await t.resticBytes(lastRestic)) - resticStored;
  }
  rows.push([
    `no-change backup, ${name}`,
    cell(inc, `, +${mb(s3bAdded)} new (manifest data ${mb(inc.doc.manifestBytes ?? 0)})`),
    '',
    rinc ? cell(rinc, `, +${mb(resticAdded)} new`) : resticVersion ? '' : NO_RESTIC,
    `${inc.doc.unchangedFiles} files unchanged, ${mb(inc.doc.bytesIn)} read; new = bytes added to the repository${rinc ? `; s3backup/restic time ${(inc.ms / rinc.ms).toFixed(2)}` : ''}`,
  ]);

  memoryRuns.push([`full backup, ${name}`, medianRun(full.s3b).maxRssMiB], [`no-change backup, ${name}`, inc.maxRssMiB]);
  await benchChange(name, t, lastRestic);

  // Restores: all after the backups (a restore leaves dirty pages being written back, which
  // would slow the next backup's writes).
  const restores = { s3b: [], tar: [], restic: [] };
  for (let i = 0; i < runs; i++) {
    spawnSync('sync');
    let target = restoreTarget();
    restores.s3b.push(await cli(['restore', last.id, '--repo', t.s3bRepo, '--target', target, '--json'], t.env));
    doneWith(target);
    if (t.local) {
      spawnSync('sync');
      target = restoreTarget();
      restores.tar.push(await shell(`zstd -dc "${archive}" | tar -xf - -C "${target}"`));
      doneWith(target);
    }
    if (lastRestic) {
      spawnSync('sync');
      target = restoreTarget();
      restores.restic.push(await restic(lastRestic, ['restore', 'latest', '--target', target], t.resticEnv));
      doneWith(target);
    }
  }
  const rs = medianRun(restores.s3b);
  memoryRuns.push([`restore, ${name}`, rs.maxRssMiB]);
  const rt = medianRun(restores.tar);
  const rr = medianRun(restores.restic);
  rows.push([
    `restore, ${name}${isTmpfs(restoreDir) ? ' (into tmpfs)' : ''}`,
    cell(rs),
    rt ? cell(rt) : '',
    rr ? cell(rr) : resticVersion ? '' : NO_RESTIC,
    `${(mib(srcBytes) / (rs.ms / 1000)).toFixed(0)} MiB/s${rt ? `; s3backup/(zstd -dc | tar -x) ${(rs.ms / rt.ms).toFixed(2)}` : ''}${rr ? `; s3backup/restic ${(rs.ms / rr.ms).toFixed(2)}` : ''}`,
  ]);

  await benchLookups(name, t, last, lastRestic, archive);

  const one = pickOneMiBFile();
  const target = fs.mkdtempSync(path.join(restoreDir, 's3b-bench-one-'));
  const r1 = await cli(['restore', last.id, '--repo', t.s3bRepo, '--target', target, '--include', one.rel, '--json'], t.env);
  spawnSync('rm', ['-rf', target]);
  rows.push([
    `restore one file, ${name}`,
    cell(r1),
    '',
    '',
    `${(one.size / 1024).toFixed(0)} KiB file: ${mib(r1.doc.bytesFetched).toFixed(2)} MiB read in ${r1.doc.requests} GET(s) = ${((100 * r1.doc.bytesFetched) / last.archiveBytes).toFixed(2)}% of the archive`,
  ]);
}

/**
 * Full backups of the source, A and B in turn with A first in even rounds and B first in odd
 * ones, so that a busy machine slows both alike: each side's runs (the --json result with its
 * CPU time and peak RSS), at least two each. `a` and `b`: the repository and extra arguments.
 */
async function interleavedBackups(a, b, env = {}) {
  const runsOf = { a: [], b: [] };
  for (let i = 0; i < Math.max(runs, 2); i++) {
    for (const which of i % 2 ? ['b', 'a'] : ['a', 'b']) {
      spawnSync('sync');
      warm();
      const side = which === 'a' ? a : b;
      const r = await cli(
        ['backup', src, '--repo', side.repo, '--json', '--full', '--no-forget', '--compression', compression, ...side.args, ...logs],
        env,
      );
      runsOf[which].push({ ...r.doc, cpuMs: r.cpuMs, rssMiB: r.maxRssMiB });
    }
  }
  return [runsOf.a, runsOf.b];
}

/**
 * Each run of `xs` against the run of `ys` beside it: a slow stretch of the machine slows both
 * runs of a pair, so the median of these ratios is steadier than the ratio of medians.
 */
const pairPct = (xs, ys, key) => `${(100 * (median(xs.map((x, i) => x[key] / ys[i][key])) - 1)).toFixed(1)}%`;
const runsText = (xs) => xs.map((d) => `${(d.durationMs / 1000).toFixed(1)}/${(d.cpuMs / 1000).toFixed(1)}`).join(' ');

/**
 * Full backups to a plain and to an encrypted repository, alternating which goes first, so that
 * a busy machine slows both alike; medians and their ratio, of wall time (the backup's own
 * durationMs) and of CPU time (all threads; much steadier when other jobs share the cores).
 * Both include opening the repository, i.e. for the encrypted one the passphrase's scrypt
 * (two lanes of N=2^16 by default), a fixed cost per command, measured apart as the CPU time of
 * a `list`. Peak RSS: medians, the scrypt's 128 MiB included.
 */
async function benchEncryption(name, plainRepo, encRepo, env) {
  const encEnv = { ...env, S3BACKUP_PASSWORD: 'bench passphrase' };
  await cli(['init', '--repo', encRepo, '--encrypt', '--json', ...logs], encEnv);
  const [plain, enc] = await interleavedBackups({ repo: plainRepo, args: [] }, { repo: encRepo, args: [] }, encEnv);
  // The fixed cost: opening the encrypted repository (list of an almost empty one) vs the plain one.
  const listCpu = async (repo) => {
    const xs = [];
    for (let i = 0; i < 3; i++) xs.push((await cli(['list', '--repo', repo, '--json', ...logs], encEnv)).cpuMs);
    return median(xs);
  };
  const unlockCpu = (await listCpu(encRepo)) - (await listCpu(plainRepo));
  const pm = median(plain.map((d) => d.durationMs));
  const em = median(enc.map((d) => d.durationMs));
  const pc = median(plain.map((d) => d.cpuMs));
  const ec = median(enc.map((d) => d.cpuMs));
  const pct = (a, b) => `${((100 * (a - b)) / b).toFixed(1)}%`;
  const lastEnc = enc.at(-1);
  const rss = (xs) => median(xs.map((d) => d.rssMiB)).toFixed(0);
  encRows.push([
    `${name} backup, plain (interleaved)`,
    (pm / 1000).toFixed(1),
    (mib(srcBytes) / (pm / 1000)).toFixed(0),
    rss(plain),
    `wall/CPU s per run: ${runsText(plain)}; CPU median ${(pc / 1000).toFixed(1)} s`,
  ]);
  encRows.push([
    `${name} backup, encrypted`,
    (em / 1000).toFixed(1),
    (mib(srcBytes) / (em / 1000)).toFixed(0),
    rss(enc),
    `wall/CPU s per run: ${runsText(enc)}; CPU median ${(ec / 1000).toFixed(1)} s; vs plain: wall ${pct(em, pm)}, CPU ${pct(ec, pc)} ` +
      `(median of the ${enc.length} pairs: wall ${pairPct(enc, plain, 'durationMs')}, CPU ${pairPct(enc, plain, 'cpuMs')}) ` +
      `(CPU ${pct(ec - unlockCpu, pc)} without the ${(unlockCpu / 1000).toFixed(2)} s of passphrase unlock); ${mib(lastEnc.bytesStored).toFixed(0)} MiB stored`,
  ]);
}

/**
 * What storing extended attributes costs a backup: full backups with and without --no-xattrs
 * to two local repositories, interleaved (interleavedBackups), medians of wall
 * and CPU time and the median of the pair ratios. On the bench tree files have no attributes:
 * the figure is the cost of asking (one list call per entry), which is what most trees pay.
 */
async function benchXattrs(name, onRepo, offRepo) {
  const [on, off] = await interleavedBackups({ repo: onRepo, args: [] }, { repo: offRepo, args: ['--no-xattrs'] });
  for (const [label, xs, extra] of [
    [`${name} backup, --no-xattrs (interleaved)`, off, ''],
    [
      `${name} backup, attributes stored (default)`,
      on,
      `; vs --no-xattrs, median of the ${on.length} pairs: wall ${pairPct(on, off, 'durationMs')}, CPU ${pairPct(on, off, 'cpuMs')}`,
    ],
  ]) {
    const wall = median(xs.map((d) => d.durationMs));
    xattrRows.push([
      label,
      (wall / 1000).toFixed(1),
      (mib(srcBytes) / (wall / 1000)).toFixed(0),
      median(xs.map((d) => d.rssMiB)).toFixed(0),
      `wall/CPU s per run: ${runsText(xs)}${extra}`,
    ]);
  }
}

// A failure part way (the S3 server stops answering, the disk fills) still prints what was
// measured, and leaves neither the repositories and restores (GBs) nor a Ceph it started.
let started = false;
let failure;
const loadBefore = os.loadavg()[0];
try {
  if (!flag('--no-stored-once')) await benchContentStoredOnce();
  if (!encryptionOnly && !storedOnceOnly) {
    const localRepo = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-repo-'));
    const resticBase = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-restic-'));
    cleanup.push(localRepo, resticBase);
    await benchTarget('local', {
      local: true,
      s3bRepo: localRepo,
      env: {},
      resticRepo: (i) => {
        // One repository at a time: the previous full run's is not needed any more.
        fs.rmSync(path.join(resticBase, String(i - 1)), { recursive: true, force: true });
        return path.join(resticBase, String(i));
      },
      resticEnv: {},
      s3bBytes: async () => duBytes(localRepo),
      resticBytes: async (repo) => duBytes(repo),
    });
  }
  if (!encryptionOnly && !storedOnceOnly && !flag('--no-xattr-cost')) {
    const onRepo = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-xattrs-'));
    const offRepo = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-no-xattrs-'));
    cleanup.push(onRepo, offRepo);
    await benchXattrs('local', onRepo, offRepo);
  }
  if ((encryption || encryptionOnly) && !storedOnceOnly) {
    const plainRepo = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-plain-'));
    const encRepo = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-enc-'));
    fs.rmdirSync(encRepo); // init creates it
    cleanup.push(plainRepo, encRepo);
    await benchEncryption('local', plainRepo, encRepo, {});
  }

  if (!flag('--no-s3') && !encryptionOnly && !storedOnceOnly) {
    let endpoint = process.env.S3_BENCH_ENDPOINT ?? process.env.S3_TEST_ENDPOINT;
    if (!endpoint) {
      const r = spawnSync('bash', [path.join(root, 'scripts/ceph-rgw.sh'), 'start', '7480'], {
        stdio: ['ignore', 'pipe', 'inherit'],
        encoding: 'utf8',
      });
      if (r.status !== 0) process.exit(1);
      endpoint = /S3_ENDPOINT=(\S+)/.exec(r.stdout)[1];
      started = true;
    }
    const env = {
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_ACCESS_KEY_ID: process.env.S3_TEST_ACCESS_KEY_ID ?? 'testkey',
      AWS_SECRET_ACCESS_KEY: process.env.S3_TEST_SECRET_ACCESS_KEY ?? 'testsecret',
      AWS_REGION: 'us-east-1',
    };
    const bucket = `bench-${Date.now().toString(36)}`;
    const { S3Client, CreateBucketCommand, ListObjectsV2Command, DeleteObjectsCommand, DeleteBucketCommand } = await import(
      '@aws-sdk/client-s3'
    );
    const client = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
    });
    const listAll = async (prefix) => {
      const out = [];
      let token;
      do {
        const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        out.push(...(r.Contents ?? []));
        token = r.NextContinuationToken;
      } while (token);
      return out;
    };
    const bytesUnder = async (prefix) => (await listAll(prefix)).reduce((n, o) => n + (o.Size ?? 0), 0);
    const emptyPrefix = async (prefix) => {
      const keys = (await listAll(prefix)).map((o) => ({ Key: o.Key }));
      for (let i = 0; i < keys.length; i += 1000)
        await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000) } }));
    };
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    try {
      const resticS3Env = { AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY };
      await benchTarget('S3 (Ceph)', {
        local: false,
        s3bRepo: `s3://${bucket}/bench`,
        env,
        resticRepo: (i) => `s3:${endpoint.replace(/\/$/, '')}/${bucket}/restic-${i}`,
        resticEnv: resticS3Env,
        s3bBytes: () => bytesUnder('bench/'),
        resticBytes: (repo) => bytesUnder(`${repo.split('/').at(-1)}/`),
      });
    } finally {
      await emptyPrefix('').catch(() => {});
      await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
      client.destroy();
    }
  }
} catch (e) {
  failure = e;
} finally {
  for (const d of cleanup) spawnSync('rm', ['-rf', d]);
  spawnSync('rm', ['-rf', resticCache]);
  if (started) spawnSync('bash', [path.join(root, 'scripts/ceph-rgw.sh'), 'stop', '7480'], { stdio: 'inherit' });
}

/** --also-files: [{ files, dir? }]. */
const alsoTrees = (opt('--also-files') ?? '')
  .split(',')
  .filter(Boolean)
  .map((spec) => {
    const [n, dir] = spec.split(/:(.*)/s);
    if (!(Number.isInteger(Number(n)) && Number(n) > 0)) {
      console.error(`--also-files takes N[:DIR],…: ${JSON.stringify(spec)}`);
      process.exit(2);
    }
    return { files: Number(n), dir };
  });
/** The memory of every tree's runs, for the growth per file: [{ files, runs: [work, MiB][] }]. */
const memoryBySize = srcFiles > 0 ? [{ files: srcFiles, runs: memoryRuns }] : [];
for (const t of failure ? [] : alsoTrees) {
  const out = path.join(os.tmpdir(), `s3b-bench-rows-${process.pid}-${t.files}.json`);
  const argv = ['--files', String(t.files), ...(t.dir ? [t.dir] : []), '--seed', String(seed), '--runs', String(runs)];
  argv.push('--no-s3', '--no-encryption', '--no-xattr-cost', '--no-stored-once', '--no-build', '--rows-json', out);
  if (opt('--mutate-script')) argv.push('--mutate-script', opt('--mutate-script'));
  if (opt('--restore-dir')) argv.push('--restore-dir', opt('--restore-dir'));
  // Its table goes to stderr as progress; its rows come back in the JSON file.
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...argv], { stdio: ['ignore', 2, 2] });
  childBenches.add(child);
  const [code] = await new Promise((resolve) => child.on('close', (...a) => resolve(a)));
  childBenches.delete(child);
  if (code !== 0 || !fs.existsSync(out)) {
    failure = new Error(`the bench of the ${t.files}-file tree exited ${code}`);
    break;
  }
  const got = JSON.parse(fs.readFileSync(out, 'utf8'));
  fs.rmSync(out, { force: true });
  const label = `${got.files.toLocaleString('en')} files`;
  for (const [work, ...cells] of got.rows) pushRow([`${work}, ${label}`, ...cells]);
  memoryBySize.push({ files: got.files, runs: got.memoryRuns });
}
if (opt('--rows-json')) fs.writeFileSync(opt('--rows-json'), JSON.stringify({ files: srcFiles, rows, memoryRuns }));

function printTable(head, body) {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => String(r[i]).length)));
  for (const r of [head, ...body])
    console.log(
      r
        .map((c, i) => String(c).padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    );
}
const load = `load average ${loadBefore.toFixed(1)} at the start, ${os.loadavg()[0].toFixed(1)} at the end on ${os.cpus().length} cores`;
if (src)
  console.log(
    `\nsource: ${src}: ${srcFiles} files, ${mib(srcBytes).toFixed(0)} MiB; s3backup compression ${compression} (default level), ` +
      `reference tar | zstd -3 -T0, ${resticVersion ?? 'restic not installed (Debian: apt-get install restic)'}; median of ${runs} run(s); ${load}\n`,
  );
if (rows.length > 0) printTable(['work', 's3backup', 'tar + zstd -3 -T0', resticVersion ?? 'restic', 'notes'], rows);
if (encRows.length > 0) {
  console.log('');
  printTable(['step', 'seconds', 'MiB/s', 'peak RSS MiB', 'notes'], encRows);
}
if (xattrRows.length > 0) {
  console.log('');
  printTable(['step', 'seconds', 'MiB/s', 'peak RSS MiB', 'notes'], xattrRows);
}
if (treeFiles !== undefined && memoryRuns.length > 0) {
  // What a command holds at rest, before any file: subtracted so that the figure per file is
  // what the work adds (an upper bound of the growth: fixed buffers count in it too).
  const fixed = (await cliRaw(['--version'])).maxRssMiB;
  console.log(`\nmemory at ${srcFiles} files (s3backup --version: ${fixed.toFixed(0)} MiB at rest):`);
  printTable(
    ['work', 'peak RSS MiB', 'bytes per file', 'above rest, per file', '10M files, projected'],
    memoryRuns.map(([work, m]) => {
      const perFile = ((m - fixed) * 1048576) / srcFiles;
      return [
        work,
        m.toFixed(0),
        ((m * 1048576) / srcFiles).toFixed(0),
        perFile.toFixed(0),
        `≤ ${(fixed + (perFile * 1e7) / 1048576).toFixed(0)} MiB`,
      ];
    }),
  );
  console.log(
    'projection: rest + 10M × (peak − rest) / files, an upper bound (fixed buffers are counted as per file); the growth itself is\n' +
      '(peak₂ − peak₁) / (files₂ − files₁) from two runs, e.g. --files 100000 and --files 1000000 (target ≤ 16 B per file).',
  );
}
if (memoryBySize.length > 1) {
  // Each work's peak at the smallest and the largest tree: the memory each more file costs. With
  // two --also-files trees or more, theirs only: trees of one generator, unlike the main one.
  const sizes = (memoryBySize.length > 2 ? memoryBySize.slice(1) : memoryBySize).sort((a, b) => a.files - b.files);
  const [small, large] = [sizes[0], sizes.at(-1)];
  console.log(`\nmemory growth per file, from ${small.files} to ${large.files} files (target ≤ 16 B per file):`);
  printTable(
    ['work', `peak MiB at ${small.files}`, `peak MiB at ${large.files}`, 'bytes per file more', '10M files, projected'],
    large.runs.flatMap(([work, m]) => {
      const base = small.runs.find(([w]) => w === work);
      if (!base) return [];
      const growth = ((m - base[1]) * 1048576) / (large.files - small.files);
      return [
        [work, base[1].toFixed(0), m.toFixed(0), growth.toFixed(1), `${(m + (growth * (1e7 - large.files)) / 1048576).toFixed(0)} MiB`],
      ];
    }),
  );
}
if (failure) {
  console.error(`\nbench stopped early: ${failure.stack ?? failure}`);
  process.exit(1);
}
