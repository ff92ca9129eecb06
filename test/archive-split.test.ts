// A backup larger than the archive size is split into several archives at file boundaries
// (S3 allows 10,000 parts to an upload, so one archive cannot grow without bound). Small
// archive sizes here (1 MiB) make a few-MiB tree split many times, on the local store and on
// Ceph RGW: every archive is a standalone tar, restore/verify/cat/incremental/prune/encryption
// all work across them, a failure deletes every archive the run wrote.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { InventoryBuilder } from '../src/cost/inventory.ts';
import { forget, prune } from '../src/prune/prune.ts';
import type { ArchiveRef } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { runCat } from '../src/restore/cat.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { getBuffer, type PutOptions, type Store } from '../src/store/store.ts';
import { runVerify } from '../src/verify/verify.ts';
import { DelegatingStore, testBackends } from './helpers/store.ts';
import { diffTrees, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const MiB = 1 << 20;
const work = tempDir('split');
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** 12 incompressible files of 300 kB (three to a 1 MiB archive), one of 2.5 MiB, links, an empty dir. */
function makeSource(name: string): string {
  const src = path.join(work, name, 'data');
  fs.mkdirSync(path.join(src, 'd'), { recursive: true });
  fs.mkdirSync(path.join(src, 'empty'));
  for (let i = 0; i < 12; i++) fs.writeFileSync(path.join(src, 'd', `f${String(i).padStart(2, '0')}`), pseudoRandom(300_000, i + 1));
  fs.writeFileSync(path.join(src, 'big.bin'), pseudoRandom(2.5 * MiB, 99));
  fs.writeFileSync(path.join(src, 'small.txt'), 'small\n');
  // A hard link whose first name is several archives back, and a symlink.
  fs.linkSync(path.join(src, 'd', 'f00'), path.join(src, 'z-link'));
  fs.symlinkSync('d/f01', path.join(src, 'sym'));
  return src;
}

async function manifestArchives(store: Store, id: string): Promise<ArchiveRef[]> {
  const repo = await Repository.open(store);
  const m = await repo.loadManifest(id);
  try {
    return m.archives;
  } finally {
    await m.dispose();
  }
}

function tarList(file: string): string[] {
  const r = spawnSync('bash', ['-c', `zstd -dc "${file}" | tar -tf -`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

/** Fails the upload of one archive key (after reading some of it), as a full disk or a dropped connection would. */
class FailingArchiveStore extends DelegatingStore {
  failing: RegExp | undefined;
  override put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    if (this.failing?.test(key) && !Buffer.isBuffer(body)) {
      return new Promise((_, reject) => {
        let seen = 0;
        body.on('data', (c: Buffer) => {
          seen += c.length;
          if (seen > 100_000) {
            // As a real store's pipeline does: the body is destroyed with the error.
            const e = new Error(`upload of ${key} failed: no space left on device`);
            body.destroy(e);
            reject(e);
          }
        });
        body.on('end', () => reject(new Error(`upload of ${key} failed at the end`)));
      });
    }
    return super.put(key, body, opts);
  }
}

const backends = testBackends('split', 'split/host');

for (const backend of backends) {
  describe(`archive split (${backend.name})`, () => {
    test('a backup over the archive size is several standalone tars; restore, verify, cat, incremental and prune span them', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const src = makeSource(`src-${backend.name.split(' ')[0]}`);
        const r = await runBackup({ store, sources: [src], archiveSize: MiB, history: false });
        // data/ alone (the next file, big.bin, does not fit beside it), big.bin alone, then
        // three files of 300 kB per archive: at least 6 archives.
        assert.ok(r.archiveKeys.length >= 6, `archives: ${r.archiveKeys.join(', ')}`);
        assert.equal(r.archiveKey, r.archiveKeys[0]);
        assert.deepEqual(
          r.archiveKeys.map((k) => k.replace(r.id, 'ID')),
          r.archiveKeys.map((_, i) => (i === 0 ? 'archives/ID.tar.zst' : `archives/ID.${i + 1}.tar.zst`)),
        );
        const refs = await manifestArchives(store, r.id);
        assert.deepEqual(
          refs.map((a) => a.key),
          r.archiveKeys,
        );
        assert.deepEqual(
          refs.map((a) => a.part),
          r.archiveKeys.map((_, i) => (i === 0 ? undefined : i + 1)),
        );
        let stored = 0;
        for (const a of refs) {
          assert.equal((await store.head(a.key))!.size, a.size);
          stored += a.size;
          // At most the archive size of tar, except the one holding big.bin alone.
          if (a.uncompressedSize > MiB) assert.ok(a.uncompressedSize < 2.6 * MiB, `${a.key}: ${a.uncompressedSize}`);
        }
        assert.equal(r.archiveBytes, stored);
        // Its manifest, and the entry segments (new in a first backup).
        let segmentBytes = 0;
        for await (const o of store.list('entries/')) segmentBytes += o.size;
        assert.ok(segmentBytes > 0);
        assert.equal(r.manifestBytes, (await store.head(r.manifestKey))!.size + segmentBytes);
        assert.equal(r.bytesStored, stored + r.manifestBytes);

        // Each archive is a tar of its own; extracted in order with GNU tar they make the tree,
        // hard link included (tar links to the first name, from an earlier archive).
        const listed: string[] = [];
        const plain = path.join(work, `tar-${backend.name.split(' ')[0]}`);
        fs.mkdirSync(plain);
        for (const a of refs) {
          const file = path.join(work, 'one-archive.tar.zst');
          fs.writeFileSync(file, await getBuffer(store, a.key));
          listed.push(...tarList(file));
          const x = spawnSync('bash', ['-c', `zstd -dc "${file}" | tar -x -p -C "${plain}"`], { encoding: 'utf8' });
          assert.equal(x.status, 0, x.stderr);
        }
        assert.equal(new Set(listed).size, listed.length, 'no entry is in two archives');
        assert.ok(listed.includes('data/z-link') && listed.includes('data/big.bin') && listed.includes('data/empty/'), listed.join(' '));
        assert.deepEqual(diffTrees(src, path.join(plain, 'data'), { mtimes: false }), []);
        assert.equal(fs.statSync(path.join(plain, 'data', 'z-link')).ino, fs.statSync(path.join(plain, 'data', 'd', 'f00')).ino);

        const target = path.join(work, `restore-${backend.name.split(' ')[0]}`);
        await runRestore({ store, snapshot: r.id, target });
        assert.deepEqual(diffTrees(src, path.join(target, 'data')), []);
        assert.equal(fs.statSync(path.join(target, 'data', 'z-link')).ino, fs.statSync(path.join(target, 'data', 'd', 'f00')).ino);
        const v = await runVerify({ store, snapshot: r.id, deep: true });
        assert.deepEqual(v.problems, []);
        assert.equal(v.archives, refs.length);

        // One file from a later archive: one read, of that archive only (one frame: it is small).
        const chunks: Buffer[] = [];
        const sink = new Writable({
          write: (c, _e, cb) => {
            chunks.push(c);
            cb();
          },
        });
        const c = await runCat({ store, snapshot: r.id, path: 'data/d/f10', output: sink });
        assert.ok(Buffer.concat(chunks).equals(fs.readFileSync(path.join(src, 'd', 'f10'))));
        assert.equal(c.requests, 1);
        assert.ok(c.bytesFetched <= c.archiveSize && c.archiveSize < MiB, JSON.stringify(c));

        // An incremental with one changed file points into all of them and writes one small archive.
        fs.writeFileSync(path.join(src, 'd', 'f05'), pseudoRandom(300_000, 500));
        const inc = await runBackup({ store, sources: [src], archiveSize: MiB, history: false });
        assert.equal(inc.kind, 'incremental');
        assert.equal(inc.archiveKeys.length, 1);
        const incRefs = await manifestArchives(store, inc.id);
        assert.ok(incRefs.length >= refs.length, `${incRefs.length} archives listed`);
        const target2 = path.join(work, `restore2-${backend.name.split(' ')[0]}`);
        await runRestore({ store, snapshot: inc.id, target: target2 });
        assert.deepEqual(diffTrees(src, path.join(target2, 'data')), []);

        // Forget both: prune deletes every part (they are archives, not unknown objects).
        const repo = await Repository.open(store);
        const f = await forget(repo, { policy: { last: 0 }, allowEmpty: true });
        assert.equal(f.removed.length, 2);
        const p = await prune(repo, { forgotten: f.removed });
        assert.deepEqual(p.archives.unrecognized, []);
        assert.deepEqual(p.archives.deleted.map((o) => o.key).sort(), [...r.archiveKeys, ...inc.archiveKeys].sort());
        const left: string[] = [];
        for await (const o of store.list('archives/')) left.push(o.key);
        assert.deepEqual(left, []);
      } finally {
        await cleanup();
      }
    });

    test('a failure in a later archive deletes every archive of the run; no backup is recorded', async () => {
      const { store: inner, cleanup } = await backend.open();
      const store = new FailingArchiveStore(inner);
      try {
        const src = makeSource(`fail-${backend.name.split(' ')[0]}`);
        const first = await runBackup({ store, sources: [src], archiveSize: MiB, history: false });
        store.failing = /\.4\.tar\.zst$/;
        await assert.rejects(runBackup({ store, sources: [src], archiveSize: MiB, full: true, history: false }), /no space left on device/);
        const archives: string[] = [];
        for await (const o of inner.list('archives/')) archives.push(o.key);
        assert.deepEqual(archives.sort(), [...first.archiveKeys].sort(), "only the first backup's archives remain");
        assert.deepEqual(await (await Repository.open(inner)).snapshotIds(), [first.id]);
      } finally {
        await cleanup();
      }
    });
  });
}

test("encrypted: each part has its own key; a part put in another's place fails authentication, naming it", async () => {
  const store = new LocalStore(path.join(work, 'repo-enc'));
  await Repository.init(store, { encryption: { passphrase: 'split test', kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } } });
  const keys = { passphrase: 'split test' };
  const src = makeSource('src-enc');
  const r = await runBackup({ store, keys, sources: [src], archiveSize: MiB, history: false });
  assert.ok(r.archiveKeys.length >= 6);
  assert.ok(
    r.archiveKeys.every((k, i) => k.endsWith(i === 0 ? `${r.id}.tar.zst.enc` : `${r.id}.${i + 1}.tar.zst.enc`)),
    r.archiveKeys.join(' '),
  );
  const target = path.join(work, 'restore-enc');
  await runRestore({ store, keys, snapshot: r.id, target });
  assert.deepEqual(diffTrees(src, path.join(target, 'data')), []);
  // Two parts of the same size (three 300 kB files each), swapped: same sizes, wrong keys.
  const sized = await Promise.all(r.archiveKeys.map(async (k) => ({ k, size: (await store.head(k))!.size })));
  const [a, b] = sized.filter((x, _, all) => all.filter((y) => y.size === x.size).length > 1);
  assert.ok(a && b && a.size === b.size, JSON.stringify(sized));
  const [ba, bb] = [await getBuffer(store, a.k), await getBuffer(store, b.k)];
  await store.put(a.k, bb);
  await store.put(b.k, ba);
  const v = await runVerify({ store, keys, snapshot: r.id, deep: true });
  assert.ok(
    v.problems.some((p) => p.where === a.k || p.problem.includes(a.k)),
    JSON.stringify(v.problems),
  );
  assert.ok(
    v.problems.every((p) => /authentication|SHA-256/.test(p.problem)),
    JSON.stringify(v.problems),
  );
});

test('CLI and config: --archive-size and archiveSize take sizes; a bad one is a usage error naming it', async () => {
  const home = tempDir('split-home');
  const env = isolatedEnv(home);
  const src = makeSource('src-cli');
  const repo = path.join(home, 'repo');
  const r = await runCli(['backup', src, '--repo', repo, '--archive-size', '1MiB', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(json(r.stdout).archiveKeys.length >= 6, r.stdout);
  const small = await runCli(['backup', src, '--repo', repo, '--archive-size', '1000', '--json'], { env });
  assert.equal(small.code, 2);
  assert.match(small.stderr, /--archive-size must be from 1 MiB to 1 TiB, not 1000/);
  const cfg = path.join(home, 's3backup.yaml');
  fs.writeFileSync(cfg, `repository: ${repo}\narchiveSize: 2 MiB\n`);
  const viaFile = await runCli(['backup', src, '--full', '--json', '--config', cfg], { env });
  assert.equal(viaFile.code, 0, viaFile.stderr);
  const doc = json(viaFile.stdout);
  assert.ok(doc.archiveKeys.length >= 3 && doc.archiveKeys.length < json(r.stdout).archiveKeys.length, viaFile.stdout);
  fs.writeFileSync(cfg, `repository: ${repo}\narchiveSize: 12 parsecs\n`);
  const bad = await runCli(['backup', src, '--json', '--config', cfg], { env });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /archiveSize: must be a size such as 64GiB/);
  fs.rmSync(home, { recursive: true, force: true });
});

test("cost inventory: a split backup's further archives count as that backup's", () => {
  const inv = new InventoryBuilder([], 'list');
  const id = '20261127T010203.456Z-0a1b2c3d';
  const t = Date.parse('2026-11-27T01:02:03Z');
  for (const k of [`archives/${id}.tar.zst`, `archives/${id}.2.tar.zst`, `archives/${id}.13.tar.zst.enc`, `snapshots/${id}.ndjson.zst`]) {
    inv.add({ bucketKey: `b/${k}`, repoKey: k, size: 1000, lastModified: t, storageClass: 'STANDARD' });
  }
  assert.deepEqual([...inv.backups.keys()], [id]);
  assert.deepEqual(
    inv.backups.get(id)!.archives.map((a) => a.bucketKey),
    [`b/archives/${id}.tar.zst`, `b/archives/${id}.2.tar.zst`, `b/archives/${id}.13.tar.zst.enc`],
  );
  assert.equal(inv.cohorts.size, 0, 'nothing left over as an object of no backup');
});
