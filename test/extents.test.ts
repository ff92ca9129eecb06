// Extents: a file that grew by appending stores its tail, a large file changed in place its
// changed chunks; every backup of such a chain restores byte-exact (whole, --include, cat, dump)
// and verifies deep, on the local store and on Ceph, plain and encrypted; prune keeps what the
// others need after the backup that stored the prefix is forgotten; copy carries the chain; a
// damaged tail is reported as the file's; a full backup still extracts whole with tar.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import { type BackupResult, runBackup } from '../src/backup/backup.ts';
import { copyBackups } from '../src/backup/copy.ts';
import { CHUNKED_MIN_SIZE } from '../src/backup/extents.ts';
import { FrameTable } from '../src/archive/reader.ts';
import { forget, prune } from '../src/prune/prune.ts';
import { type Entry, EXTENTS_MANIFEST_VERSION, SEGMENTED_MANIFEST_VERSION } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { runCat } from '../src/restore/cat.ts';
import { runDump } from '../src/restore/dump.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { getBuffer, type Store } from '../src/store/store.ts';
import { runVerify } from '../src/verify/verify.ts';
import { testBackends } from './helpers/store.ts';
import { pseudoRandom, tempDir } from './helpers/tree.ts';

const work = tempDir('extents');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const BIG = CHUNKED_MIN_SIZE + (3 << 20);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
type Keys = { passphrase: string } | undefined;

/** Every file under `root`, by path relative to it, with the SHA-256 of its content. */
function treeHashes(root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const rel of fs.readdirSync(root, { recursive: true }) as string[]) {
    const abs = path.join(root, rel);
    if (fs.lstatSync(abs).isFile()) out.set(rel, sha(fs.readFileSync(abs)));
  }
  return new Map([...out].sort());
}

/** Overwrite `length` bytes at `at` of a file with new random bytes. */
function rewrite(file: string, at: number, length: number, seed: number): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, pseudoRandom(length, seed), 0, length, at);
  fs.closeSync(fd);
}

interface Step {
  result: BackupResult;
  /** The source as it was backed up: path under the source → SHA-256. */
  expected: Map<string, string>;
}

/** The entries of a backup, by path, and its manifest version. */
async function entriesOf(
  store: Store,
  id: string,
  keys: Keys,
): Promise<{ byPath: Map<string, Entry>; version: number; archives: string[] }> {
  const repo = await Repository.open(store, keys);
  const m = await repo.loadManifest(id);
  try {
    const byPath = new Map<string, Entry>();
    for await (const e of m.entries()) byPath.set(e.path, e);
    return { byPath, version: m.header.version, archives: m.archives.map((a) => a.key) };
  } finally {
    await m.dispose();
  }
}

/**
 * A chain on `store`: a full; a renamed directory, an appended log and 1 MiB rewritten in the
 * middle of a large file; another change in place and another append; then a full.
 */
async function chain(store: Store, keys: Keys, label: string): Promise<{ src: string; steps: Step[] }> {
  const src = path.join(work, `${label}-data`);
  fs.mkdirSync(path.join(src, 'photos'), { recursive: true });
  fs.mkdirSync(path.join(src, 'logs'));
  fs.writeFileSync(path.join(src, 'logs/app.log'), pseudoRandom(300_000, 1));
  for (const n of [0, 1]) fs.writeFileSync(path.join(src, `photos/p${n}.jpg`), pseudoRandom(100_000 + n, 10 + n));
  fs.writeFileSync(path.join(src, 'db.bin'), pseudoRandom(BIG, 2));
  fs.writeFileSync(path.join(src, 'small.txt'), 'small\n');
  const steps: Step[] = [];
  const backup = async (full = false) => {
    const result = await runBackup({ store, ...(keys ? { keys } : {}), sources: [src], ...(full ? { full: true } : {}) });
    steps.push({ result, expected: treeHashes(src) });
    return result;
  };
  const first = await backup();
  assert.equal(first.kind, 'full');

  fs.renameSync(path.join(src, 'photos'), path.join(src, 'pictures'));
  fs.appendFileSync(path.join(src, 'logs/app.log'), pseudoRandom(3_000, 3));
  rewrite(path.join(src, 'db.bin'), BIG / 2, 1 << 20, 4);
  const second = await backup();
  assert.equal(second.kind, 'incremental');
  assert.equal(second.changedFiles, 2);
  assert.equal(second.foundFiles, 2, 'the renamed pictures are found');
  // The tail (3,000 bytes) and 1–3 chunks of the large file (at most 4 MiB each).
  assert.ok(second.bytesIn >= 3_000 + (1 << 20) && second.bytesIn <= 3_000 + 3 * (4 << 20), `bytes read in: ${second.bytesIn}`);
  assert.ok(second.archiveBytes < BIG / 8, `archive ${second.archiveBytes} bytes`);

  rewrite(path.join(src, 'db.bin'), 5 << 20, 200_000, 5);
  rewrite(path.join(src, 'db.bin'), BIG - 100_000, 100_000, 6);
  fs.appendFileSync(path.join(src, 'logs/app.log'), pseudoRandom(7_000, 7));
  const third = await backup();
  assert.equal(third.changedFiles, 2);
  assert.ok(third.bytesIn <= 7_000 + 4 * (4 << 20), `bytes read in: ${third.bytesIn}`);

  const full = await backup(true);
  assert.equal(full.kind, 'full');
  return { src, steps };
}

/** Restore `id` whole, --include, cat, dump: each byte-exact against `expected`; verify --deep passes. */
async function checkRestores(store: Store, keys: Keys, name: string, step: Step): Promise<void> {
  const id = step.result.id;
  const k = keys ? { keys } : {};
  const target = tempDir('extents-restore');
  try {
    await runRestore({ store, ...k, snapshot: id, target });
    assert.deepEqual(treeHashes(path.join(target, name)), step.expected, `restore of ${id}`);
    const part = tempDir('extents-include');
    await runRestore({ store, ...k, snapshot: id, target: part, include: [`${name}/logs/**`, `${name}/db.bin`] });
    const wanted = new Map([...step.expected].filter(([p]) => p.startsWith('logs/') || p === 'db.bin'));
    assert.deepEqual(treeHashes(path.join(part, name)), wanted, `restore --include of ${id}`);
    fs.rmSync(part, { recursive: true, force: true });
    for (const file of ['logs/app.log', 'db.bin']) {
      const out = new PassThrough();
      const hash = createHash('sha256');
      out.on('data', (c: Buffer) => hash.update(c));
      const r = await runCat({ store, ...k, snapshot: id, path: `${name}/${file}`, output: out });
      assert.equal(hash.digest('hex'), step.expected.get(file), `cat ${file} of ${id}`);
      assert.equal(r.sha256, step.expected.get(file));
    }
    const dumped = tempDir('extents-dump');
    const out = new PassThrough();
    const tar = path.join(dumped, 'dump.tar');
    const file = fs.createWriteStream(tar);
    out.pipe(file);
    await runDump({ store, ...k, snapshot: id, path: '', output: out });
    out.end();
    await new Promise<void>((resolve) => file.on('close', () => resolve()));
    execFileSync('tar', ['-xf', tar, '-C', dumped]);
    fs.rmSync(tar);
    assert.deepEqual(treeHashes(path.join(dumped, name)), step.expected, `dump of ${id}`);
    fs.rmSync(dumped, { recursive: true, force: true });
    const v = await runVerify({ store, ...k, snapshot: id, deep: true });
    assert.deepEqual(v.problems, [], `verify --deep of ${id}`);
  } finally {
    fs.rmSync(target, { recursive: true, force: true });
  }
}

/** The entries of the chain are what it says: tails and chunks in extents, version 4, the full whole. */
async function checkEntries(store: Store, keys: Keys, name: string, steps: Step[]): Promise<void> {
  const [b1, b2, b3, b4] = await Promise.all(steps.map((s) => entriesOf(store, s.result.id, keys)));
  assert.equal(b1!.version, SEGMENTED_MANIFEST_VERSION, 'nothing in extents: version 3');
  assert.ok(b1!.byPath.get(`${name}/db.bin`)?.chunks, 'a large file keeps its chunk list from the full on');
  const log2 = b2!.byPath.get(`${name}/logs/app.log`)!;
  assert.equal(b2!.version, EXTENTS_MANIFEST_VERSION);
  assert.equal(log2.extents?.length, 2, JSON.stringify(log2.extents));
  assert.equal(log2.archive, undefined);
  assert.equal(b2!.archives[log2.extents![0]![0]], steps[0]!.result.archiveKey, 'the prefix is the full’s copy');
  assert.deepEqual(log2.extents![1]!.slice(0, 1), [0], 'the tail is in its own archive');
  assert.equal(log2.extents![1]![2], 3_000);
  const db2 = b2!.byPath.get(`${name}/db.bin`)!;
  assert.ok(db2.extents && db2.extents.length >= 3, JSON.stringify(db2.extents));
  const log3 = b3!.byPath.get(`${name}/logs/app.log`)!;
  assert.equal(log3.extents?.length, 3);
  assert.equal(b3!.archives[log3.extents![1]![0]], steps[1]!.result.archiveKey, 'the first tail stays where it was stored');
  assert.equal(b4!.version, SEGMENTED_MANIFEST_VERSION, 'a full backup stores whole files');
  for (const e of b4!.byPath.values()) assert.equal(e.extents, undefined, e.path);
}

for (const backend of testBackends('extents', 'x')) {
  describe(`extents on ${backend.name}`, () => {
    test('a chain of renames, appends and changes in place: every backup restores byte-exact; copy, prune, damage', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const label = backend.name.split(' ')[0]!;
        const { src, steps } = await chain(store, undefined, label);
        const name = path.basename(src);
        await checkEntries(store, undefined, name, steps);
        for (const step of steps) await checkRestores(store, undefined, name, step);

        // A full backup's archive still extracts with tar into the whole tree.
        const full = steps[3]!.result;
        const tarDir = tempDir('extents-tar');
        fs.writeFileSync(path.join(tarDir, 'a.tar.zst'), await getBuffer(store, full.archiveKey));
        execFileSync('sh', ['-c', 'zstd -dc a.tar.zst | tar -x && rm a.tar.zst'], { cwd: tarDir });
        assert.deepEqual(treeHashes(path.join(tarDir, name)), steps[3]!.expected);
        // An incremental's archive shows the tail as a file of its own, which cat reassembles.
        fs.writeFileSync(path.join(tarDir, 'b.tar.zst'), await getBuffer(store, steps[1]!.result.archiveKey));
        const listing = execFileSync('sh', ['-c', 'zstd -dc b.tar.zst | tar -t'], { cwd: tarDir, encoding: 'utf8' });
        assert.ok(listing.includes(`${name}/logs/app.log.s3backup-tail-300000\n`), listing);
        assert.ok(listing.includes(`${name}/db.bin.s3backup-chunk-`), listing);
        fs.rmSync(tarDir, { recursive: true, force: true });

        // copy carries the chain: each backup restores byte-exact from the copy.
        const copyDir = tempDir('extents-copy');
        const to = await Repository.openOrInit(new LocalStore(copyDir));
        const copied = await copyBackups({ from: await Repository.open(store), to: to.repo });
        assert.equal(copied.copied.length, 4);
        for (const step of steps.slice(1, 3)) await checkRestores(new LocalStore(copyDir), undefined, name, step);
        fs.rmSync(copyDir, { recursive: true, force: true });

        // The full that first stored the log's and the database's prefix is forgotten and pruned:
        // its archive stays, the later backups list it.
        const repo = await Repository.open(store);
        const f = await forget(repo, { policy: { last: 3 } });
        assert.deepEqual(f.removed, [steps[0]!.result.id]);
        const p = await prune(repo, { graceMs: 0, forgotten: f.removed });
        assert.ok(!p.archives.deleted.some((o) => o.key === steps[0]!.result.archiveKey));
        assert.ok(await store.head(steps[0]!.result.archiveKey));
        for (const step of steps.slice(1, 3)) await checkRestores(store, undefined, name, step);

        // A damaged tail: verify --deep names the file in every backup that points at it, restore fails naming it.
        const b2 = steps[1]!.result;
        const { byPath } = await entriesOf(store, b2.id, undefined);
        const tail = byPath.get(`${name}/logs/app.log`)!.extents![1]!;
        const ref = (await (await Repository.open(store)).loadManifest(b2.id)).archives[tail[0]]!;
        const table = new FrameTable(ref);
        const frame = table.frameOf(tail[1]);
        const bytes = Buffer.from(await getBuffer(store, ref.key));
        const pos = table.cStart[frame]! + Math.floor(ref.frames[frame]![0] / 2);
        bytes[pos] = bytes[pos]! ^ 0x5a;
        await store.put(ref.key, bytes);
        for (const id of [b2.id, steps[2]!.result.id]) {
          const v = await runVerify({ store, snapshot: id, deep: true });
          assert.equal(v.ok, false);
          assert.ok(
            v.problems.some((q) => q.where === `${name}/logs/app.log`),
            `${id}: the appended file is named: ${JSON.stringify(v.problems)}`,
          );
        }
        const target = tempDir('extents-damaged');
        await assert.rejects(runRestore({ store, snapshot: b2.id, target, include: [`${name}/logs/**`] }), (e: Error) =>
          e.message.includes(`${name}/logs/app.log`),
        );
        fs.rmSync(target, { recursive: true, force: true });
      } finally {
        await cleanup();
      }
    });
  });
}

describe('extents in an encrypted repository', () => {
  test('the same chain restores byte-exact and verifies deep', async () => {
    const dir = tempDir('extents-enc-repo');
    const store = new LocalStore(dir);
    const keys = { passphrase: 'extents test' };
    await Repository.init(store, { encryption: { ...keys, kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } } });
    try {
      const { src, steps } = await chain(store, keys, 'enc');
      const name = path.basename(src);
      await checkEntries(store, keys, name, steps);
      for (const step of steps.slice(1, 3)) await checkRestores(store, keys, name, step);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('--no-extents', () => {
  test('stores changed files whole, and their manifests stay version 3; an unchanged file keeps its extents', async () => {
    const dir = tempDir('extents-off-repo');
    const store = new LocalStore(dir);
    const src = path.join(work, 'off-data');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'app.log'), pseudoRandom(200_000, 1));
    try {
      await runBackup({ store, sources: [src], extents: false });
      fs.appendFileSync(path.join(src, 'app.log'), pseudoRandom(1_000, 2));
      const r = await runBackup({ store, sources: [src], extents: false });
      assert.equal(r.bytesIn, 201_000, 'stored whole');
      const { byPath, version } = await entriesOf(store, r.id, undefined);
      assert.equal(version, SEGMENTED_MANIFEST_VERSION);
      assert.equal(byPath.get('off-data/app.log')?.extents, undefined);
      // With extents, the next append stores its tail alone.
      fs.appendFileSync(path.join(src, 'app.log'), pseudoRandom(2_000, 3));
      const t = await runBackup({ store, sources: [src] });
      assert.equal(t.bytesIn, 2_000);
      // Unchanged since: the entry keeps its extents, each archive reused, nothing read or stored again.
      const same = await runBackup({ store, sources: [src] });
      assert.equal(same.bytesIn, 0);
      assert.equal(same.unchangedFiles, 1);
      const [before, now] = [await entriesOf(store, t.id, undefined), await entriesOf(store, same.id, undefined)];
      assert.equal(now.version, EXTENTS_MANIFEST_VERSION, 'an unchanged entry in extents keeps the manifest at version 4');
      const runs = (m: typeof now) => m.byPath.get('off-data/app.log')!.extents!.map(([a, o, l]) => [m.archives[a], o, l]);
      assert.deepEqual(runs(now), runs(before));
      assert.equal(runs(now).length, 2);
      const target = tempDir('extents-off-restore');
      await runRestore({ store, snapshot: same.id, target });
      assert.equal(sha(fs.readFileSync(path.join(target, 'off-data/app.log'))), sha(fs.readFileSync(path.join(src, 'app.log'))));
      fs.rmSync(target, { recursive: true, force: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
