#!/usr/bin/env node
// Benchmark: backup and restore throughput and peak RSS for a source tree, to the local store
// and to S3 (Ceph RGW), plus the bytes read to restore one ~1 MiB file, and full backups to an
// encrypted repository against a plain one (interleaved, so load changes hit both alike).
//
//   npm run bench -- DIR [--no-s3] [--runs N] [--compression zstd|gzip|none] [--no-encryption | --encryption-only]
//
// S3: uses S3_BENCH_ENDPOINT (or S3_TEST_ENDPOINT) with S3_TEST_ACCESS_KEY_ID/SECRET (default
// testkey/testsecret); without one it starts scripts/ceph-rgw.sh on port 7480 and stops it after.
// Medians of N runs (default 1). Warm cache: the tree is read once before timing.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launcherNodeFlags, median, tarOf, warmTree } from './bench-common.mjs';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const dir = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a));
const flag = (n) => args.includes(n);
const opt = (n, d) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1] : d;
};
if (!dir || !fs.existsSync(dir)) {
  console.error('usage: npm run bench -- DIR [--no-s3] [--runs N] [--compression zstd|gzip|none]');
  process.exit(2);
}
const runs = Number(opt('--runs', '1'));
const encryption = !flag('--no-encryption');
const encryptionOnly = flag('--encryption-only');
const compression = opt('--compression', 'zstd');
const src = path.resolve(dir);

const build = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(1);

const nodeFlags = launcherNodeFlags(root);

function cli(argv, env = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [...nodeFlags, path.join(root, 'scripts/bench-child.mjs'), ...argv], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let rss = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.stdio[3].on('data', (d) => (rss += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0 && code !== 3) return reject(new Error(`s3backup ${argv.join(' ')} exited ${code}: ${err}`));
      const usage = JSON.parse(rss || '{"maxRssKiB":0,"cpuMs":0}');
      resolve({ ms, doc: JSON.parse(out), maxRssMiB: usage.maxRssKiB / 1024, cpuMs: usage.cpuMs });
    });
  });
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

const mib = (b) => b / 1048576;
const { bytes: srcBytes, files: srcFiles } = treeBytes(src);
const rows = [];
const cleanup = [];

/**
 * The same tree through GNU tar and the zstd CLI at our default level, on all cores, into a file
 * beside the repository: how fast this machine is right now (these VMs drift by 20 % within an
 * hour), to read the backup's figure against. Undefined if zstd is not installed.
 */
function referenceRun(outDir) {
  if (spawnSync('zstd', ['--version']).status !== 0) return undefined;
  const out = path.join(outDir, `s3b-bench-reference-${process.pid}.tar.zst`);
  const t0 = performance.now();
  const r = spawnSync('bash', ['-c', `set -o pipefail; ${tarOf(src)} | zstd -2 -T0 -q -f -o "${out}"`]);
  const ms = performance.now() - t0;
  fs.rmSync(out, { force: true });
  return r.status === 0 ? ms : undefined;
}

async function benchTarget(name, repo, env) {
  const backups = [];
  const restores = [];
  const references = [];
  let last;
  // All backups first, then all restores: a restore leaves 1 GiB of dirty pages being written
  // back, which would slow the next backup's disk writes and skew it.
  const logs = ['--log-dir', path.join(os.tmpdir(), 's3b-bench-logs')];
  for (let i = 0; i < runs; i++) {
    spawnSync('sync');
    warm();
    // --full: every run stores everything (otherwise runs 2… would be no-change incrementals).
    const b = await cli(['backup', src, '--repo', repo, '--json', '--full', '--no-forget', '--compression', compression, ...logs], env);
    backups.push(b);
    last = b.doc;
    if (name === 'local') {
      spawnSync('sync');
      warm();
      const ms = referenceRun(path.dirname(repo));
      if (ms !== undefined) references.push(ms);
    }
  }
  spawnSync('sync');
  warm();
  const inc = await cli(['backup', src, '--repo', repo, '--json', '--no-forget', ...logs], env);
  for (let i = 0; i < runs; i++) {
    spawnSync('sync');
    const target = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-restore-'));
    const r = await cli(['restore', last.id, '--repo', repo, '--target', target, '--json'], env);
    restores.push(r);
    // Removed at the end: on these VMs, creating files right after deleting a big tree is
    // several times slower for minutes, which would skew the next run.
    cleanup.push(target);
  }
  const bms = median(backups.map((x) => x.ms));
  const rms = median(restores.map((x) => x.ms));
  rows.push([`${name} backup`, (bms / 1000).toFixed(1), (mib(srcBytes) / (bms / 1000)).toFixed(0), Math.max(...backups.map((x) => x.maxRssMiB)).toFixed(0), `${mib(last.bytesStored).toFixed(0)} MiB stored, ratio ${last.compressionRatio}`]);
  if (references.length > 0) {
    const rms = median(references);
    // Each backup against the reference run right after it: the machine's drift hits both.
    const pair = median(backups.map((b, i) => b.ms / references[i]));
    rows.push([
      'reference: tar | zstd -2 -T0',
      (rms / 1000).toFixed(1),
      (mib(srcBytes) / (rms / 1000)).toFixed(0),
      '',
      `GNU tar into the zstd CLI, to a file, after each backup (the machine's speed, not s3backup's); backup/reference: ${pair.toFixed(2)} (median of pairs)`,
    ]);
  }
  rows.push([
    `${name} no-change incremental`,
    (inc.ms / 1000).toFixed(1),
    '',
    inc.maxRssMiB.toFixed(0),
    `${inc.doc.unchangedFiles} files unchanged, ${(inc.doc.bytesIn / 1048576).toFixed(1)} MiB read, ${(inc.doc.bytesStored / 1048576).toFixed(1)} MiB stored`,
  ]);
  rows.push([`${name} restore`, (rms / 1000).toFixed(1), (mib(srcBytes) / (rms / 1000)).toFixed(0), Math.max(...restores.map((x) => x.maxRssMiB)).toFixed(0), '']);
  const one = pickOneMiBFile();
  const target = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-one-'));
  const r1 = await cli(['restore', last.id, '--repo', repo, '--target', target, '--include', one.rel, '--json'], env);
  spawnSync('rm', ['-rf', target]);
  rows.push([
    `${name} restore one file`,
    (r1.ms / 1000).toFixed(2),
    '',
    r1.maxRssMiB.toFixed(0),
    `${(one.size / 1024).toFixed(0)} KiB file: ${mib(r1.doc.bytesFetched).toFixed(2)} MiB read in ${r1.doc.requests} GET(s) = ${((100 * r1.doc.bytesFetched) / last.archiveBytes).toFixed(2)}% of the archive`,
  ]);
}

/**
 * Full backups to a plain and to an encrypted repository, alternating which goes first, so that
 * a busy machine slows both alike; medians and their ratio, of wall time (the backup's own
 * durationMs) and of CPU time (all threads; much steadier when other jobs share the cores).
 * Both include opening the repository, i.e. for the encrypted one the passphrase's scrypt
 * (two lanes of N=2^16 by default), a fixed cost per command, measured apart as the CPU time of
 * a `list`. Peak RSS: medians, the scrypt's 128 MiB included.
 */
async function benchEncryption(name, plainRepo, encRepo, env) {
  const logs = ['--log-dir', path.join(os.tmpdir(), 's3b-bench-logs')];
  const encEnv = { ...env, S3BACKUP_PASSWORD: 'bench passphrase' };
  await cli(['init', '--repo', encRepo, '--encrypt', '--json', ...logs], encEnv);
  const plain = [];
  const enc = [];
  for (let i = 0; i < Math.max(runs, 2); i++) {
    for (const which of i % 2 ? ['enc', 'plain'] : ['plain', 'enc']) {
      spawnSync('sync');
      warm();
      const repo = which === 'enc' ? encRepo : plainRepo;
      const b = await cli(['backup', src, '--repo', repo, '--json', '--full', '--no-forget', '--compression', compression, ...logs], encEnv);
      (which === 'enc' ? enc : plain).push({ ...b.doc, cpuMs: b.cpuMs, rssMiB: b.maxRssMiB });
    }
  }
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
  // Each encrypted run against the plain run beside it: a slow stretch of the machine slows
  // both runs of a pair, so the median of these ratios is steadier than the ratio of medians.
  const pairPct = (key) => `${(100 * (median(enc.map((e, i) => e[key] / plain[i][key])) - 1)).toFixed(1)}%`;
  const last = enc.at(-1);
  const runsText = (xs) => xs.map((d) => `${(d.durationMs / 1000).toFixed(1)}/${(d.cpuMs / 1000).toFixed(1)}`).join(' ');
  const rss = (xs) => median(xs.map((d) => d.rssMiB)).toFixed(0);
  rows.push([`${name} backup, plain (interleaved)`, (pm / 1000).toFixed(1), (mib(srcBytes) / (pm / 1000)).toFixed(0), rss(plain), `wall/CPU s per run: ${runsText(plain)}; CPU median ${(pc / 1000).toFixed(1)} s`]);
  rows.push([
    `${name} backup, encrypted`,
    (em / 1000).toFixed(1),
    (mib(srcBytes) / (em / 1000)).toFixed(0),
    rss(enc),
    `wall/CPU s per run: ${runsText(enc)}; CPU median ${(ec / 1000).toFixed(1)} s; vs plain: wall ${pct(em, pm)}, CPU ${pct(ec, pc)} ` +
      `(median of the ${enc.length} pairs: wall ${pairPct('durationMs')}, CPU ${pairPct('cpuMs')}) ` +
      `(CPU ${pct(ec - unlockCpu, pc)} without the ${(unlockCpu / 1000).toFixed(2)} s of passphrase unlock); ${mib(last.bytesStored).toFixed(0)} MiB stored`,
  ]);
}

// A failure part way (the S3 server stops answering, the disk fills) still prints what was
// measured, and leaves neither the repositories and restores (GBs) nor a Ceph it started.
let started = false;
let failure;
try {
  const localRepo = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-repo-'));
  cleanup.push(localRepo);
  if (!encryptionOnly) await benchTarget('local', localRepo, {});
  if (encryption || encryptionOnly) {
    const plainRepo = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-plain-'));
    const encRepo = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-bench-enc-'));
    fs.rmdirSync(encRepo); // init creates it
    cleanup.push(plainRepo, encRepo);
    await benchEncryption('local', plainRepo, encRepo, {});
  }

  if (!flag('--no-s3') && !encryptionOnly) {
    let endpoint = process.env.S3_BENCH_ENDPOINT ?? process.env.S3_TEST_ENDPOINT;
    if (!endpoint) {
      const r = spawnSync('bash', [path.join(root, 'scripts/ceph-rgw.sh'), 'start', '7480'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
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
    const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY } });
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    client.destroy();
    await benchTarget('s3 (Ceph)', `s3://${bucket}/bench`, env);
  }
} catch (e) {
  failure = e;
} finally {
  for (const d of cleanup) spawnSync('rm', ['-rf', d]);
  if (started) spawnSync('bash', [path.join(root, 'scripts/ceph-rgw.sh'), 'stop', '7480'], { stdio: 'inherit' });
}
const head = ['step', 'seconds', 'MiB/s', 'peak RSS MiB', 'notes'];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
console.log(`\nsource: ${src}: ${srcFiles} files, ${mib(srcBytes).toFixed(0)} MiB; compression ${compression}; ${os.cpus().length} cores; median of ${runs} run(s)\n`);
for (const r of [head, ...rows]) console.log(r.map((c, i) => String(c).padEnd(widths[i])).join('  '));
if (failure) {
  console.error(`\nbench stopped early: ${failure.stack ?? failure}`);
  process.exit(1);
}
