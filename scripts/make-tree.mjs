#!/usr/bin/env node
// A deterministic tree of many small files, for the scale figures of the bench (1M files):
//
//   node scripts/make-tree.mjs --files 1000000 DIR [--seed 1] [--threads N]
//
// The same --files and --seed give the same tree (names, sizes, contents, modes, mtimes) whatever
// the thread count or machine: every file's properties come from a PRNG seeded with the seed and
// the file's number, its incompressible bytes from an AES-256-CTR keystream with a key derived
// the same way. Layout: leaf directories of 1 to ~2,000 files (most hold 8–64), 32 leaves per
// middle directory, 32 middle directories per top directory (1M files: 12,230 leaves under 12 top
// directories). Sizes: mean ~2.2 KB (1M files: ~2.2 GB), 2.7 % empty, 0.25 % of 32–128 KiB; 80 %
// of files are text (words and numbers, compressible ~3:1), 20 % incompressible.
//
// It prints one line of JSON: the counts and a fingerprint (SHA-256 over every file's path,
// size, mode, mtime and content digest, in tree order) that is the same on every run.
// DIR must not exist or be empty. Workers write whole leaf directories, in parallel.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';

const BASE_MTIME = 1700000000;
const MTIME_SPAN = 365 * 86400;
const LEAVES_PER_MIDDLE = 32;
const MIDDLES_PER_TOP = 32;

function hash32(...xs) {
  let h = 0x811c9dc5;
  for (const x of xs) {
    const s = String(x);
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    h ^= 0xff;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** sfc32: small, fast, and the same sequence on every platform (integer arithmetic only). */
class Rng {
  constructor(...seed) {
    this.a = hash32('a', ...seed);
    this.b = hash32('b', ...seed);
    this.c = hash32('c', ...seed);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.u32();
  }
  u32() {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  int(n) {
    return Math.floor((this.u32() / 4294967296) * n);
  }
  /** [[lo, hi, weight], …]: a bucket by weight, then uniform in [lo, hi). */
  bucket(buckets) {
    let total = 0;
    for (const b of buckets) total += b[2];
    let x = this.int(total);
    for (const [lo, hi, w] of buckets) {
      if (x < w) return lo + this.int(hi - lo);
      x -= w;
    }
    throw new Error('unreachable');
  }
}

// Weights in 1/10,000.
const FILES_PER_LEAF = [
  [1, 8, 2500],
  [8, 64, 5500],
  [64, 256, 1700],
  [256, 2048, 300],
];
const FILE_SIZE = [
  [0, 1, 270],
  [1, 512, 4000],
  [512, 2048, 3600],
  [2048, 8192, 1800],
  [8192, 32768, 250],
  [32768, 131072, 25],
];
const WORDS = `the of and to in is for that on with as by this be it are from or an at not which can if will
all one when has data value file name user type list get set new return error default config options result
request response item index key path string number object array map count size time id node tree cache buffer
stream read write open close start stop update create delete remove add find load save parse format check
handle process build run test call init reset clear copy move send receive connect session token auth client
server service manager handler model view route query filter sort page limit offset total status state event
message queue job task worker thread pool lock timeout retry delay schedule backup restore archive snapshot
chunk block segment hash digest account order invoice payment price amount product address city region zone`
  .split(/\s+/)
  .filter(Boolean);
const EXTS = ['txt', 'md', 'ts', 'js', 'json', 'log', 'csv', 'py', 'go', 'yaml'];
const BIN_EXTS = ['bin', 'png', 'gz', 'jpg'];

/** The leaf directories: [relative path, first file number, file count], in tree order. */
function planLeaves(files, seed) {
  const leaves = [];
  const r = new Rng('leaves', seed);
  let first = 0;
  for (let j = 0; first < files; j++) {
    const count = Math.min(files - first, r.bucket(FILES_PER_LEAF));
    const top = `t${String(Math.floor(j / (LEAVES_PER_MIDDLE * MIDDLES_PER_TOP))).padStart(3, '0')}`;
    const middle = `m${String(Math.floor(j / LEAVES_PER_MIDDLE) % MIDDLES_PER_TOP).padStart(2, '0')}`;
    const leaf = `${WORDS[j % WORDS.length]}-${String(j % LEAVES_PER_MIDDLE).padStart(2, '0')}`;
    leaves.push([`${top}/${middle}/${leaf}`, first, count]);
    first += count;
  }
  return leaves;
}

/** A fixed block of text lines that text files are cut from, at offsets of their own. */
function textPool(seed) {
  const r = new Rng('text', seed);
  const lines = [];
  let bytes = 0;
  while (bytes < 4 << 20) {
    const n = 3 + r.int(12);
    const words = [];
    for (let i = 0; i < n; i++)
      words.push(r.int(5) === 0 ? String(r.u32() % 100000) : WORDS[Math.floor((WORDS.length * r.int(1000) * r.int(1000)) / 1e6)]);
    const line = `${words.join(' ')}\n`;
    lines.push(line);
    bytes += line.length;
  }
  return Buffer.from(lines.join(''), 'latin1');
}

/** File number i: its name, mode, mtime and content. */
function fileOf(i, seed, pool) {
  const r = new Rng('file', seed, i);
  const size = r.bucket(FILE_SIZE);
  const binary = r.int(10) < 2;
  const ext = binary ? BIN_EXTS[r.int(BIN_EXTS.length)] : EXTS[r.int(EXTS.length)];
  const name = `${WORDS[r.int(WORDS.length)]}-${i.toString(36)}.${ext}`;
  const mode = r.int(20) === 0 ? 0o600 : r.int(20) === 0 ? 0o755 : 0o644;
  const mtime = BASE_MTIME + r.int(MTIME_SPAN);
  let content;
  if (size === 0) content = Buffer.alloc(0);
  else if (binary) {
    const key = crypto.createHash('sha256').update(`make-tree:${seed}:${i}`).digest();
    content = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
  } else {
    // A header line of its own (so no two files are equal), then the pool from an offset of its own.
    const head = Buffer.from(`${name} ${i} ${seed}\n`, 'latin1');
    content = Buffer.allocUnsafe(size);
    const h = head.copy(content, 0, 0, Math.min(head.length, size));
    let at = h;
    let from = r.int(pool.length);
    while (at < size) {
      const n = Math.min(size - at, pool.length - from);
      pool.copy(content, at, from, from + n);
      at += n;
      from = 0;
    }
  }
  return { name, mode, mtime, content };
}

/** Write one leaf directory; returns its digest (of names, sizes, modes, mtimes, contents). */
function writeLeaf(root, [rel, first, count], seed, pool) {
  const dir = path.join(root, rel);
  const files = [];
  for (let i = first; i < first + count; i++) files.push(fileOf(i, seed, pool));
  // Tree order, as a backup walks it: by name.
  files.sort((a, b) => (a.name < b.name ? -1 : 1));
  const digest = crypto.createHash('sha256');
  for (const f of files) {
    const fd = fs.openSync(path.join(dir, f.name), 'wx', f.mode);
    if (f.content.length > 0) fs.writeSync(fd, f.content);
    fs.futimesSync(fd, f.mtime, f.mtime);
    fs.closeSync(fd);
    digest.update(`${rel}/${f.name}\0${f.content.length}\0${f.mode}\0${f.mtime}\0`);
    digest.update(crypto.createHash('sha256').update(f.content).digest());
  }
  return digest.digest('hex');
}

if (!isMainThread) {
  const { root, files, seed, counter } = workerData;
  const leaves = planLeaves(files, seed);
  const pool = textPool(seed);
  const digests = [];
  for (;;) {
    const k = Atomics.add(counter, 0, 1);
    if (k >= leaves.length) break;
    const leaf = leaves[k];
    digests.push([k, writeLeaf(root, leaf, seed, pool)]);
  }
  parentPort.postMessage(digests);
} else {
  const args = process.argv.slice(2);
  const opt = (n, d) => {
    const i = args.indexOf(n);
    return i >= 0 ? args[i + 1] : d;
  };
  const valued = new Set(['--files', '--seed', '--threads']);
  const dir = args.find((a, i) => !a.startsWith('--') && !valued.has(args[i - 1]));
  const files = Number(opt('--files', '50000'));
  const seed = Number(opt('--seed', '1'));
  const threads = Number(opt('--threads', '1'));
  if (!dir || !Number.isInteger(files) || files < 1 || !Number.isInteger(seed) || !(threads >= 1)) {
    console.error('usage: node scripts/make-tree.mjs --files N DIR [--seed S] [--threads T]');
    process.exit(2);
  }
  const root = path.resolve(dir);
  if (fs.existsSync(root) && fs.readdirSync(root).length > 0) {
    console.error(`${root} exists and is not empty`);
    process.exit(1);
  }
  const t0 = performance.now();
  // Modes exactly as planned (open's mode is masked by the umask; workers share the process's).
  process.umask(0);
  const leaves = planLeaves(files, seed);
  for (const [rel] of leaves) fs.mkdirSync(path.join(root, rel), { recursive: true, mode: 0o755 });
  const counter = new Int32Array(new SharedArrayBuffer(4));
  const self = fileURLToPath(import.meta.url);
  const parts = await Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise((resolve, reject) => {
          const w = new Worker(self, { workerData: { root, files, seed, counter } });
          let got;
          w.on('message', (m) => (got = m));
          w.on('error', reject);
          w.on('exit', (code) => (code === 0 ? resolve(got) : reject(new Error(`worker exited ${code}`))));
        }),
    ),
  );
  const byLeaf = new Array(leaves.length);
  for (const part of parts) for (const [k, d] of part) byLeaf[k] = d;
  // Directory times last: creating files changed them. Deepest first, so a parent's time stays.
  const dirs = new Set();
  for (const [rel] of leaves) for (let d = rel; d !== '.'; d = path.dirname(d)) dirs.add(d);
  const dirList = [...dirs].sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? -1 : 1));
  for (const d of dirList) {
    const t = BASE_MTIME + (hash32('dir', seed, d) % MTIME_SPAN);
    fs.utimesSync(path.join(root, d), t, t);
  }
  const fingerprint = crypto.createHash('sha256');
  for (const d of byLeaf) fingerprint.update(d);
  // A file's size is the first draw of its PRNG (fileOf).
  let bytes = 0;
  for (let i = 0; i < files; i++) bytes += new Rng('file', seed, i).bucket(FILE_SIZE);
  console.log(
    JSON.stringify({
      dir: root,
      files,
      seed,
      dirs: dirs.size,
      leaves: leaves.length,
      bytes,
      fingerprint: fingerprint.digest('hex'),
      seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
      threads,
    }),
  );
}
