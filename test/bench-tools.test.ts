// The benchmark's own tools, which its figures rest on: scripts/make-tree.mjs makes the same tree
// for the same arguments (whatever the thread count), and bench-common.mjs's treeRss counts every
// process of a tree (a pipeline's, a process and its children).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { once } from 'node:events';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers/tree.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const makeTree = path.join(root, 'scripts/make-tree.mjs');
const work = tempDir('bench-tools');
after(() => spawnSync('rm', ['-rf', work]));

interface TreeSummary {
  files: number;
  seed: number;
  dirs: number;
  bytes: number;
  fingerprint: string;
}

function make(dir: string, ...args: string[]): { status: number | null; stderr: string; summary?: TreeSummary } {
  const r = spawnSync(process.execPath, [makeTree, ...args, dir], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr, ...(r.status === 0 ? { summary: JSON.parse(r.stdout) as TreeSummary } : {}) };
}

/** What is on disk, read back: every entry's path, type, mode, mtime, size and content digest. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out.push(`d ${r} ${mode} ${st.mtimeMs}`);
        walk(r);
      } else {
        assert.ok(st.isFile(), `${r} is a regular file`);
        const digest = createHash('sha256')
          .update(fs.readFileSync(path.join(dir, r)))
          .digest('hex');
        out.push(`f ${r} ${mode} ${st.mtimeMs} ${st.size} ${digest}`);
      }
    }
  };
  walk('');
  return out;
}

test('make-tree.mjs: the same files, seed and content whatever the thread count; another seed, another tree', () => {
  const one = make(path.join(work, 'one'), '--files', '600', '--seed', '7', '--threads', '1');
  const two = make(path.join(work, 'two'), '--files', '600', '--seed', '7', '--threads', '3');
  assert.equal(one.status, 0, one.stderr);
  assert.equal(two.status, 0, two.stderr);
  const a = listing(path.join(work, 'one'));
  assert.deepEqual(listing(path.join(work, 'two')), a);
  assert.equal(two.summary!.fingerprint, one.summary!.fingerprint);
  // The summary says what is there.
  const files = a.filter((l) => l.startsWith('f '));
  assert.equal(files.length, 600);
  assert.equal(one.summary!.files, 600);
  assert.equal(one.summary!.dirs, a.length - files.length);
  assert.equal(
    one.summary!.bytes,
    files.reduce((n, l) => n + Number(l.split(' ')[4]), 0),
  );
  // Text and incompressible files, modes other than 644, several levels of directories.
  assert.ok(files.some((l) => / 600 /.test(l)) && files.some((l) => / 644 /.test(l)));
  assert.ok(a.some((l) => /^d t000\/m00\/[a-z]+-\d\d /.test(l)));

  const other = make(path.join(work, 'other'), '--files', '600', '--seed', '8');
  assert.equal(other.status, 0, other.stderr);
  assert.notEqual(other.summary!.fingerprint, one.summary!.fingerprint);
  assert.notDeepEqual(listing(path.join(work, 'other')), a);
});

test('make-tree.mjs: refuses a directory that is not empty, and touches nothing in it', () => {
  const dir = path.join(work, 'occupied');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'keep.txt'), 'mine');
  const r = make(dir, '--files', '10');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /exists and is not empty/);
  assert.deepEqual(fs.readdirSync(dir), ['keep.txt']);
  assert.equal(fs.readFileSync(path.join(dir, 'keep.txt'), 'utf8'), 'mine');
  const bad = make(path.join(work, 'bad'), '--files', 'many');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /usage/);
  assert.equal(fs.existsSync(path.join(work, 'bad')), false);
});

test("bench-common.mjs treeRss: a process's RSS with its children's", async () => {
  // A parent and its child, each holding 64 MiB of touched memory.
  const hold = `const b = Buffer.alloc(64 << 20, 1); process.stdout.write('ready\\n'); setInterval(() => b[0]++, 1000);`;
  const parent = spawn(
    process.execPath,
    [
      '-e',
      `const { spawn } = require('node:child_process');
       const child = spawn(process.execPath, ['-e', ${JSON.stringify(hold)}], { stdio: ['ignore', 'pipe', 'inherit'] });
       child.stdout.once('data', () => { process.stdout.write(child.pid + '\\n'); ${hold} });
       process.on('SIGTERM', () => { child.kill(); process.exit(0); });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    let text = '';
    while (!/ready/.test(text)) text += String((await once(parent.stdout!, 'data'))[0]);
    const childPid = Number(text.split('\n')[0]);
    const measure = (pid: number) => {
      const r = spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { treeRss } from ${JSON.stringify(path.join(root, 'scripts/bench-common.mjs'))}; console.log(treeRss(${pid}))`,
        ],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(r.status, 0, r.stderr);
      return Number(r.stdout) / 1048576;
    };
    const both = measure(parent.pid!);
    const childAlone = measure(childPid);
    assert.ok(childAlone >= 64, `the child alone: ${childAlone} MiB`);
    assert.ok(both >= childAlone + 64, `parent and child: ${both} MiB, the child alone ${childAlone} MiB`);
    assert.equal(measure(2 ** 22 + 12345), 0); // no such process
  } finally {
    parent.kill('SIGTERM');
    await once(parent, 'close');
  }
});

/**
 * A mutation script with mutate-dataset.sh's interface, for a tree of the test's own: appends to
 * the first three files, adds one; MUTATE_JOURNAL keeps a copy of the tree, `--undo DIR J` puts
 * the copy back (times and modes kept).
 */
function writeMutateScript(dir: string): string {
  const script = path.join(dir, 'mutate.sh');
  fs.writeFileSync(
    script,
    `#!/usr/bin/env bash
set -euo pipefail
if [[ $1 == --undo ]]; then
  find "$2" -mindepth 1 -delete
  cp -a "$3/tree/." "$2/"
  exit 0
fi
mkdir -p "$MUTATE_JOURNAL"
cp -a "$1/." "$MUTATE_JOURNAL/tree/"
# sed reads all its input (head would close the pipe early: SIGPIPE under pipefail).
find "$1" -type f | sort | sed -n 1,3p | while read -r f; do echo changed >> "$f"; done
echo new > "$(find "$1" -mindepth 1 -type d | sort | sed -n 1p)/added-by-mutate.txt"
`,
    { mode: 0o755 },
  );
  return script;
}

/** The bench on dist/ as npm test built it (other test files run the CLI from it meanwhile). */
function runBench(args: string[]): ReturnType<typeof spawn> {
  return spawn(process.execPath, [path.join(root, 'scripts/bench.mjs'), '--no-build', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

test('bench.mjs on a small tree: every row beside restic and tar, the 1 % change, the lookups, memory; the tree put back', async () => {
  const tree = path.join(work, 'bench-tree');
  const before = (() => {
    const r = make(tree, '--files', '400');
    assert.equal(r.status, 0, r.stderr);
    return listing(tree);
  })();
  const script = writeMutateScript(work);
  // --files N on a tree that exists with its summary: it is used as is.
  fs.writeFileSync(`${tree}.tree.json`, JSON.stringify({ files: 400, seed: 1 }));
  // A second tree size: its rows in the same table, and the memory growth per file between the two.
  const small = path.join(work, 'bench-tree-200');
  const bench = runBench([
    '--files',
    '400',
    tree,
    '--no-s3',
    '--no-encryption',
    '--no-xattr-cost',
    '--mutate-script',
    script,
    '--also-files',
    `200:${small}`,
    '--stored-once-scale',
    '16',
  ]);
  let out = '';
  let err = '';
  bench.stdout!.on('data', (d) => (out += d));
  bench.stderr!.on('data', (d) => (err += d));
  const [code] = (await once(bench, 'close')) as [number];
  assert.equal(code, 0, err.slice(-3000));
  const row = (work: string) => {
    const line = out.split('\n').find((l) => l.startsWith(work));
    assert.ok(line, `a row "${work}" in:\n${out}`);
    return line;
  };
  assert.match(
    row('no-change backup, local'),
    /s, \d+ MiB, \+[\d.]+ kB new \(manifest data [\d.]+ kB\).*s, \d+ MiB, \+[\d.]+ kB new.*s3backup\/restic time/,
  );
  // The test's mutation: three files changed, one added, nothing deleted.
  assert.match(
    row('1 % change backup, local'),
    /s, \d+ MiB, \+[\d.]+ kB new \(manifest data [\d.]+ kB\).*s, \d+ MiB, \+[\d.]+ kB new +3 changed, 1 new, 0 deleted of 401 files/,
  );
  const dir = /ls of one directory, local +.* (bench-tree\/\S+): (\d+) entries/.exec(row('ls of one directory, local'));
  assert.ok(dir);
  const onDisk = fs.readdirSync(path.join(work, dir[1]!));
  assert.equal(Number(dir[2]), onDisk.length + 1); // the directory itself and what is in it
  assert.match(row('cat of one file, local'), new RegExp(`s, \\d+ MiB .*s, \\d+ MiB .*s, \\d+ MiB +${dir[1]}/\\S+: \\d+ bytes`));
  assert.match(
    row('restore --include of one directory, local'),
    new RegExp(`s, \\d+ MiB .*s, \\d+ MiB .*s, \\d+ MiB +'${dir[1]}/\\*\\*': ${onDisk.length} files`),
  );
  // Content stored once: what each tool's second backup added, as a share of the data.
  // (a sixteenth of their sizes: the rows' machinery, not their figures)
  for (const work of ['rename a 16 MiB directory', 'append 1 % to a 16 MiB file', 'rewrite 1 MiB amid a 64 MiB file'])
    assert.match(
      row(`${work}, local`),
      /s, \d+ MiB, \+[\d.]+ [kM]B new \([\d.]+ %\) .*s, \d+ MiB, \+[\d.]+ [kM]B new \([\d.]+ %\) .*target/,
    );
  const memory = out.slice(out.indexOf('memory at 400 files'));
  for (const work of ['full backup, local', 'no-change backup, local', '1 % change backup, local', 'restore, local'])
    assert.match(memory, new RegExp(`${work} +\\d+ +\\d+ +-?\\d+ +≤ -?\\d+ MiB`));
  assert.match(row('full backup, local, 200 files'), /s, \d+ MiB .*s, \d+ MiB .*s, \d+ MiB +stored: /);
  assert.match(row('restore, local (into tmpfs), 200 files'), /s, \d+ MiB/);
  const growth = out.slice(out.indexOf('memory growth per file, from 200 to 400 files'));
  for (const work of ['full backup, local', 'no-change backup, local', '1 % change backup, local', 'restore, local'])
    assert.match(growth, new RegExp(`${work} +\\d+ +\\d+ +-?[\\d.]+ +-?\\d+ MiB`));
  assert.deepEqual(listing(tree), before);
  assert.ok(fs.existsSync(`${small}.tree.json`), 'the second tree made by make-tree, its summary beside it');
});

test('bench.mjs interrupted while the tree is changed: the tree is put back', async () => {
  const tree = path.join(work, 'interrupted-tree');
  const r = make(tree, '--files', '200');
  assert.equal(r.status, 0, r.stderr);
  const before = listing(tree);
  const script = writeMutateScript(work);
  // The mutation tells the test it is done by a line on a FIFO the test reads.
  const fifo = path.join(work, 'mutated.fifo');
  spawnSync('mkfifo', [fifo]);
  const signalling = path.join(work, 'mutate-signalling.sh');
  fs.writeFileSync(signalling, `#!/usr/bin/env bash\nset -e\n"${script}" "$@"\n[[ $1 == --undo ]] || echo mutated > "${fifo}"\n`, {
    mode: 0o755,
  });
  const bench = runBench([tree, '--no-s3', '--no-encryption', '--no-xattr-cost', '--no-stored-once', '--mutate-script', signalling]);
  let err = '';
  bench.stderr!.on('data', (d) => (err += d));
  const closed = once(bench, 'close');
  // A bench that ends before it mutates: open the FIFO for writing too, so the read ends.
  void closed.then(() => fs.closeSync(fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK)));
  assert.equal((await fs.promises.readFile(fifo, 'utf8')).trim(), 'mutated', err);
  assert.notDeepEqual(listing(tree), before);
  bench.kill('SIGTERM');
  const [code] = (await closed) as [number];
  assert.equal(code, 143, err.slice(-3000));
  assert.deepEqual(listing(tree), before);
});
