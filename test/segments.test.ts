// Entry segments (docs/format.md "Entry segments", "Layers"): a backup that changed nothing
// stores no entry segment; a change, scattered or not, stores a layer of its size, and after 8
// layers a backup writes a new base; ls, cat and restore --include
// of one directory read only the segments that hold it; prune keeps every segment a remaining
// manifest lists and deletes the others; encrypted segments cannot be swapped; and the
// repositories older versions wrote (manifest versions 1 and 2, plain and encrypted) still open,
// restore byte-exact, and are the parents of new backups.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { IntegrityError } from '../src/errors.ts';
import { forget, prune } from '../src/prune/prune.ts';
import { ENTRIES, Repository } from '../src/repo/repository.ts';
import { zstdContentSize } from '../src/repo/segments.ts';
import { runCat } from '../src/restore/cat.ts';
import { runLs } from '../src/restore/ls.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import type { ByteRange, ObjectInfo, Store } from '../src/store/store.ts';
import { runVerify } from '../src/verify/verify.ts';
import { DelegatingStore, testBackends } from './helpers/store.ts';
import { diffTrees, isolatedEnv, json, ROOT, runCli, tempDir } from './helpers/tree.ts';
import { Writable } from 'node:stream';
import * as zlib from 'node:zlib';

const work = tempDir('segments');
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** 60 directories of 100 small files: 6,061 entries, several segments. */
function makeWideTree(root: string): void {
  for (let d = 0; d < 60; d++) {
    const dir = path.join(root, `d${String(d).padStart(2, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 100; f++) fs.writeFileSync(path.join(dir, `f${f}.txt`), `directory ${d} file ${f}\n`.repeat(1 + (f % 7)));
  }
}

/** Counts the GETs of entry segments that pass through it. */
class CountingStore extends DelegatingStore {
  segmentGets = 0;
  override get(key: string, range?: ByteRange): Promise<Readable> {
    if (key.startsWith(ENTRIES)) this.segmentGets++;
    return super.get(key, range);
  }
}

async function listed(store: Store, prefix: string): Promise<Map<string, ObjectInfo>> {
  const out = new Map<string, ObjectInfo>();
  for await (const o of store.list(prefix)) out.set(o.key, o);
  return out;
}

async function restoreTo(store: Store, snapshot: string, include?: string[]): Promise<string> {
  const target = tempDir('segments-restore');
  await runRestore({ store, snapshot, target, ...(include ? { include } : {}) });
  return target;
}

for (const backend of testBackends('segments', 'r')) {
  describe(`entry segments on ${backend.name}`, () => {
    test('no change stores no segment; one change stores one; lookups read only what holds them; prune keeps what is listed', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const src = path.join(work, `src-${backend.name.split(' ')[0]}`);
        makeWideTree(src);
        await runBackup({ store, sources: [src] });
        const afterFirst = await listed(store, '');
        const segments = [...afterFirst.keys()].filter((k) => k.startsWith(ENTRIES));
        assert.ok(segments.length >= 3, `several segments: ${segments.length}`);

        // Nothing changed: no segment stored, and what the stats say was added is exactly what was added.
        const second = await runBackup({ store, sources: [src] });
        assert.equal(second.kind, 'incremental');
        const afterSecond = await listed(store, '');
        const added = [...afterSecond.values()].filter((o) => !afterFirst.has(o.key) && !o.key.startsWith('history/'));
        assert.deepEqual(
          added.filter((o) => o.key.startsWith(ENTRIES)),
          [],
          'no new entry segment',
        );
        const manifest = afterSecond.get(second.manifestKey)!;
        assert.equal(second.manifestBytes, manifest.size, 'manifestBytes is the manifest object alone');
        assert.ok(manifest.size < 2000, `the manifest is its head: ${manifest.size} bytes`);
        assert.equal(
          second.bytesStored,
          added.reduce((n, o) => n + o.size, 0),
          'bytesStored is what the backup added',
        );

        // One file changed: one segment stored, the layer that holds the change.
        fs.appendFileSync(path.join(src, 'd30', 'f5.txt'), 'changed\n');
        const snap3 = `${src}.snap3`;
        execFileSync('cp', ['-a', src, snap3]);
        const third = await runBackup({ store, sources: [src] });
        assert.equal(third.changedFiles, 1);
        const afterThird = await listed(store, '');
        const newSegments = [...afterThird.values()].filter((o) => o.key.startsWith(ENTRIES) && !afterSecond.has(o.key));
        assert.equal(newSegments.length, 1, 'the layer of the change');
        assert.equal(
          third.bytesStored,
          [...afterThird.values()].filter((o) => !afterSecond.has(o.key) && !o.key.startsWith('history/')).reduce((n, o) => n + o.size, 0),
        );

        // Lookups of one directory read only the segments that hold it.
        const counting = new CountingStore(store);
        const paths: string[] = [];
        const ls = await runLs({
          store: counting,
          snapshot: third.id,
          path: `${path.basename(src)}/d30`,
          onEntry: (e) => void paths.push(e.path),
        });
        assert.equal(ls.files, 100);
        assert.equal(ls.dirs, 1);
        assert.ok(
          counting.segmentGets <= 2 && counting.segmentGets < segments.length,
          `ls read ${counting.segmentGets} of ${segments.length} segments`,
        );
        counting.segmentGets = 0;
        const out: Buffer[] = [];
        const cat = await runCat({
          store: counting,
          snapshot: third.id,
          path: `${path.basename(src)}/d30/f5.txt`,
          output: new Writable({
            write(chunk, _enc, cb) {
              out.push(chunk);
              cb();
            },
          }),
        });
        assert.equal(Buffer.concat(out).toString(), fs.readFileSync(path.join(src, 'd30', 'f5.txt'), 'utf8'));
        assert.equal(cat.size, fs.statSync(path.join(src, 'd30', 'f5.txt')).size);
        assert.ok(counting.segmentGets <= 2, `cat read ${counting.segmentGets} segments`);
        counting.segmentGets = 0;
        const partial = await restoreTo(counting, third.id, [`${path.basename(src)}/d30/**`]);
        assert.ok(counting.segmentGets <= 4, `restore --include read ${counting.segmentGets} segment GETs (plan and restore)`);
        assert.deepEqual(diffTrees(path.join(snap3, 'd30'), path.join(partial, path.basename(src), 'd30')), []);
        assert.deepEqual(fs.readdirSync(path.join(partial, path.basename(src))), ['d30']);
        // A glob that names no directory reads them all, and still finds what it should.
        counting.segmentGets = 0;
        const everywhere = await restoreTo(counting, third.id, ['**/f99.txt']);
        assert.equal(fs.readdirSync(path.join(everywhere, path.basename(src))).length, 60);
        assert.ok(counting.segmentGets >= segments.length);

        // A whole restore reads the entries twice (plan, then content): from S3 each segment is
        // fetched once and read again from a temporary copy; a local repository's own files are
        // read again instead (no copies).
        counting.segmentGets = 0;
        await restoreTo(counting, third.id);
        const listedSegments = segments.length + 1;
        if (backend.name === 'local') assert.equal(counting.segmentGets, 2 * listedSegments, 'local: read twice, no copies');
        else assert.equal(counting.segmentGets, listedSegments, 'S3: each segment fetched once');

        // prune: forget the first two backups; their segments stay, as the third lists them (its base, under its layer).
        const repo = await Repository.open(store);
        await forget(repo, { policy: { last: 1 } });
        const pr = await prune(repo, { graceMs: 0 });
        const afterPrune = await listed(store, ENTRIES);
        assert.equal(pr.segments.deleted.length, 0, 'every segment is the third backup’s');
        assert.equal(afterPrune.size, segments.length + 1);
        assert.deepEqual(pr.missing, []);
        // What is left restores byte-exact and verifies.
        const whole = await restoreTo(store, third.id);
        assert.deepEqual(diffTrees(snap3, path.join(whole, path.basename(src))), []);
        const v = await runVerify({ store, snapshot: third.id, deep: true });
        assert.equal(v.ok, true, JSON.stringify(v.problems));

        // A missing segment: verify and restore name it; prune reports it.
        const gone = [...afterPrune.keys()][0]!;
        await store.delete([gone]);
        const broken = await runVerify({ store, snapshot: third.id });
        assert.equal(broken.ok, false);
        await assert.rejects(restoreTo(store, third.id));
        const pr2 = await prune(repo, { graceMs: 0 });
        assert.deepEqual(
          pr2.missing.map((m) => m.key),
          [gone],
        );
      } finally {
        await cleanup();
      }
    });
  });
}

/** The segments line (line 3) of a backup's manifest, read from the store. */
async function segmentsLine(
  store: Store,
  id: string,
): Promise<{ segments: [string, string, number][]; layers?: [string, string, number][][] }> {
  const repo = await Repository.open(store);
  const m = await repo.loadManifest(id);
  try {
    return { segments: [...m.segments!.refs], ...(m.segments!.layers.length ? { layers: m.segments!.layers.map((l) => [...l]) } : {}) };
  } finally {
    await m.dispose();
  }
}

/** Change one file in every 6th directory of the wide tree (all over it), delete one and add one in another. */
function scatterChange(src: string, round: number): void {
  for (let d = round % 6; d < 60; d += 6) {
    const dir = path.join(src, `d${String(d).padStart(2, '0')}`);
    fs.appendFileSync(path.join(dir, `f${round}.txt`), `round ${round}\n`);
  }
  const dir = path.join(src, `d${String((round * 7) % 60).padStart(2, '0')}`);
  fs.rmSync(path.join(dir, `f${50 + round}.txt`));
  fs.writeFileSync(path.join(dir, `new-${round}.txt`), `new in round ${round}\n`);
}

for (const backend of testBackends('layers', 'l')) {
  describe(`layers on ${backend.name}`, () => {
    test('scattered changes store layers of their size; the 9th backup writes a new base; every backup restores byte-exact', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const src = path.join(work, `layers-${backend.name.split(' ')[0]}`);
        makeWideTree(src);
        const full = await runBackup({ store, sources: [src] });
        const base = await segmentsLine(store, full.id);
        assert.equal(base.layers, undefined);
        const segmentBytes = async () => {
          let n = 0;
          for (const o of (await listed(store, ENTRIES)).values()) n += o.size;
          return n;
        };
        const fullSegmentBytes = await segmentBytes();
        const snaps: { id: string; tree: string }[] = [];
        for (let round = 1; round <= 9; round++) {
          scatterChange(src, round);
          const before = await segmentBytes();
          const r = await runBackup({ store, sources: [src] });
          const added = (await segmentBytes()) - before;
          const tree = `${src}.round${round}`;
          execFileSync('cp', ['-a', src, tree]);
          snaps.push({ id: r.id, tree });
          const line = await segmentsLine(store, r.id);
          if (round <= 8) {
            // 10 files changed in 10 directories, 1 deleted, 1 added: the layer holds those
            // lines, the directories whose times moved, and one tombstone.
            assert.equal(r.changedFiles, 10);
            assert.equal(line.layers?.length, round, `round ${round}: one more layer`);
            assert.deepEqual(line.segments, base.segments, 'the base stays the full backup’s');
            const layer = line.layers!.at(-1)!;
            const lines = layer.reduce((n, ref) => n + ref[2], 0);
            assert.ok(lines >= 12 && lines <= 24, `round ${round}: ${lines} lines in the layer`);
            assert.ok(added > 0 && added * 20 < fullSegmentBytes, `round ${round}: ${added} bytes of segments against ${fullSegmentBytes}`);
          } else {
            assert.equal(line.layers, undefined, 'the parent has 8 layers: a new base');
            assert.notDeepEqual(line.segments, base.segments);
          }
        }
        // Every backup, layered or not, restores its own tree; a lookup sees deletions and additions.
        for (const { id, tree } of [snaps[0]!, snaps[3]!, snaps[7]!, snaps[8]!]) {
          const out = await restoreTo(store, id);
          assert.deepEqual(diffTrees(tree, path.join(out, path.basename(src))), [], `backup ${id}`);
        }
        const v = await runVerify({ store, snapshot: snaps[7]!.id, deep: true });
        assert.equal(v.ok, true, JSON.stringify(v.problems));
        const seen: string[] = [];
        const d07 = `${path.basename(src)}/d07`; // round 1 deleted f51 and added new-1 there
        await runLs({ store, snapshot: snaps[7]!.id, path: d07, onEntry: (e) => void seen.push(e.path) });
        assert.ok(seen.includes(`${d07}/new-1.txt`) && !seen.includes(`${d07}/f51.txt`), seen.join(' '));
        assert.equal(seen.length, fs.readdirSync(path.join(snaps[7]!.tree, 'd07')).length + 1);

        // A change of a fifth of the files: its layer holds more lines than 1/8 of the base, so
        // the next backup, which changes nothing, writes a new base.
        for (let d = 0; d < 60; d++) {
          for (let f = 0; f < 20; f++) fs.appendFileSync(path.join(src, `d${String(d).padStart(2, '0')}`, `f${f}.txt`), 'big\n');
        }
        const big = await runBackup({ store, sources: [src] });
        assert.equal((await segmentsLine(store, big.id)).layers?.length, 1);
        const next = await runBackup({ store, sources: [src] });
        assert.equal((await segmentsLine(store, next.id)).layers, undefined);

        // prune after forgetting all but the 8-layer backup and the last: what they list stays.
        const repo = await Repository.open(store);
        const keep = new Set([snaps[7]!.id, next.id]);
        const gone = [full.id, big.id, ...snaps.map((x) => x.id)].filter((id) => !keep.has(id));
        await store.delete(gone.map((id) => repo.manifestKey(id)));
        const pr = await prune(repo, { graceMs: 0 });
        assert.deepEqual(pr.missing, []);
        const again = await restoreTo(store, snaps[7]!.id);
        assert.deepEqual(diffTrees(snaps[7]!.tree, path.join(again, path.basename(src))), []);
      } finally {
        await cleanup();
      }
    });
  });
}

describe('encrypted entry segments', () => {
  test('names say nothing of the entries, a no-change backup stores none, and a swapped segment fails authentication', async () => {
    const repoDir = path.join(work, 'enc-repo');
    const src = path.join(work, 'enc-src');
    makeWideTree(src);
    const env = isolatedEnv(path.join(work, 'enc-home'), { S3BACKUP_PASSWORD: 'correct horse battery staple' });
    const init = await runCli(['init', '--repo', repoDir, '--encrypt'], { env });
    assert.equal(init.code, 0, init.stderr);
    const b1 = await runCli(['backup', src, '--repo', repoDir, '--json'], { env });
    assert.equal(b1.code, 0, b1.stderr);
    const names = fs.readdirSync(path.join(repoDir, 'entries'));
    assert.ok(names.length >= 3);
    for (const n of names) {
      assert.match(n, /^[0-9a-f]{64}\.ndjson\.zst\.enc$/);
      const bytes = fs.readFileSync(path.join(repoDir, 'entries', n));
      assert.equal(bytes.subarray(0, 8).toString(), 'S3BKSEG1');
      assert.ok(!bytes.includes(Buffer.from('d30/')), 'no path in clear');
    }
    const b2 = await runCli(['backup', src, '--repo', repoDir, '--json'], { env });
    assert.equal(b2.code, 0, b2.stderr);
    assert.deepEqual(fs.readdirSync(path.join(repoDir, 'entries')).sort(), [...names].sort(), 'no new segment');
    const ok = await runCli(['ls', 'latest', '--repo', repoDir], { env });
    assert.equal(ok.code, 0, ok.stderr);
    // A scattered change and a deletion: a layer, sealed as the base is, with its tombstone; it restores byte-exact.
    scatterChange(src, 1);
    const b3 = await runCli(['backup', src, '--repo', repoDir, '--json'], { env });
    assert.equal(b3.code, 0, b3.stderr);
    const layered = fs.readdirSync(path.join(repoDir, 'entries')).filter((n) => !names.includes(n));
    assert.equal(layered.length, 1, 'one layer segment');
    assert.ok(!fs.readFileSync(path.join(repoDir, 'entries', layered[0]!)).includes(Buffer.from('deleted')), 'no tombstone in clear');
    const target = path.join(work, 'enc-restored');
    const restored = await runCli(['restore', json(b3.stdout).id, '--repo', repoDir, '--target', target], { env });
    assert.equal(restored.code, 0, restored.stderr);
    assert.deepEqual(diffTrees(src, path.join(target, path.basename(src))), []);
    // Swap two segments' bytes: each is sealed for its own id.
    const [a, b] = names.map((n) => path.join(repoDir, 'entries', n));
    const aBytes = fs.readFileSync(a!);
    fs.writeFileSync(a!, fs.readFileSync(b!));
    fs.writeFileSync(b!, aBytes);
    const r = await runCli(['ls', 'latest', '--repo', repoDir], { env });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /entry segment .* fails authentication/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
});

describe('segment frames declare their text size', () => {
  test('zstdContentSize reads every width of the header field; a frame without one (a stream) or not zstd gives undefined', () => {
    for (const n of [0, 1, 255, 256, 65_791, 65_792, 300_017, 5 << 20]) {
      assert.equal(zstdContentSize(zlib.zstdCompressSync(Buffer.alloc(n, 97))), n, `${n} bytes`);
    }
    const stream = zlib.createZstdCompress();
    const parts: Buffer[] = [];
    stream.on('data', (d: Buffer) => parts.push(d));
    stream.end(Buffer.alloc(1000, 1));
    return new Promise<void>((resolve) =>
      stream.on('end', () => {
        assert.equal(zstdContentSize(Buffer.concat(parts)), undefined);
        assert.equal(zstdContentSize(Buffer.from('not a zstd frame')), undefined);
        assert.equal(zstdContentSize(Buffer.alloc(3)), undefined);
        resolve();
      }),
    );
  });

  test("a backup's segments say their size, which a reader decompresses into at once", async () => {
    const repoDir = path.join(work, 'sized-repo');
    const src = path.join(work, 'sized-src');
    makeWideTree(src);
    await runBackup({ store: new LocalStore(repoDir), sources: [src] });
    const files = fs.readdirSync(path.join(repoDir, 'entries'));
    assert.ok(files.length > 1, `${files.length} segments`);
    for (const f of files) {
      const stored = fs.readFileSync(path.join(repoDir, 'entries', f));
      assert.equal(zstdContentSize(stored), zlib.zstdDecompressSync(stored).length, f);
    }
  });
});

describe('a plain segment that does not match its id', () => {
  test('is refused by name (damaged or replaced)', async () => {
    const repoDir = path.join(work, 'plain-repo');
    const src = path.join(work, 'plain-src');
    makeWideTree(src);
    const b = await runBackup({ store: new LocalStore(repoDir), sources: [src] });
    const names = fs.readdirSync(path.join(repoDir, 'entries'));
    const [a, other] = names.map((n) => path.join(repoDir, 'entries', n));
    fs.copyFileSync(other!, a!);
    await assert.rejects(
      restoreTo(new LocalStore(repoDir), b.id),
      (e: unknown) => e instanceof IntegrityError && /entry segment [0-9a-f]{64} does not match its id/.test(e.message),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Repositories written by s3backup before entry segments (test/fixtures/old-repos: made by the
// version before, from a tree with a name that is not UTF-8, a symlink, a hard link and an
// incremental backup; expected.json holds each backup's tree: path bytes in hex → type, SHA-256
// or target, mode).

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'old-repos');
type TreeFacts = Record<string, string[]>;
interface Expected {
  passphrase: string | null;
  backups: { id: string; version: number; source: string; tree: TreeFacts }[];
}

/** The facts of a tree as expected.json holds them. */
function treeFacts(root: string): TreeFacts {
  const out: TreeFacts = {};
  const walk = (dir: Buffer, rel: Buffer | undefined) => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' })) {
      const p = Buffer.concat([dir, Buffer.from('/'), name]);
      const r = rel ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const st = fs.lstatSync(p);
      const mode = `0o${(st.mode & 0o7777).toString(8)}`;
      if (st.isSymbolicLink()) out[r.toString('hex')] = ['symlink', fs.readlinkSync(p, { encoding: 'buffer' }).toString('hex')];
      else if (st.isDirectory()) {
        out[r.toString('hex')] = ['dir', mode];
        walk(p, r);
      } else out[r.toString('hex')] = ['file', createHash('sha256').update(fs.readFileSync(p)).digest('hex'), mode];
    }
  };
  walk(Buffer.from(root), undefined);
  return out;
}

const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')) as Record<string, Expected>;

describe('repositories of manifest versions 1 and 2', () => {
  for (const [name, exp] of Object.entries(expected)) {
    test(`${name}: every backup lists, verifies deep and restores byte-exact; a new backup takes one as its parent`, async () => {
      const repoDir = path.join(work, `old-${name}`);
      fs.cpSync(path.join(FIXTURES, name), repoDir, { recursive: true });
      const env = isolatedEnv(path.join(work, `old-home-${name}`), exp.passphrase ? { S3BACKUP_PASSWORD: exp.passphrase } : {});
      const list = await runCli(['list', '--repo', repoDir, '--json'], { env });
      assert.equal(list.code, 0, list.stderr);
      assert.deepEqual(
        json(list.stdout).backups.map((b: { id: string }) => b.id),
        exp.backups.map((b) => b.id),
      );
      for (const b of exp.backups) {
        const target = path.join(work, `old-restore-${name}-${b.id}`);
        const r = await runCli(['restore', b.id, '--repo', repoDir, '--target', target], { env });
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(treeFacts(path.join(target, b.source)), b.tree);
        const v = await runCli(['verify', b.id, '--repo', repoDir, '--deep'], { env });
        assert.equal(v.code, 0, v.stdout + v.stderr);
      }
      // A version 3 backup whose parent is the newest old one (its entries read the old way).
      const last = exp.backups.at(-1)!;
      const src = path.join(work, `old-src-${name}`);
      const restored = path.join(work, `old-restore-${name}-${last.id}`, last.source);
      fs.cpSync(restored, path.join(src, last.source), { recursive: true, verbatimSymlinks: true });
      const nb = await runCli(['backup', path.join(src, last.source), '--repo', repoDir, '--parent', last.id, '--json'], { env });
      assert.equal(nb.code, 0, nb.stderr);
      const doc = json(nb.stdout);
      assert.equal(doc.kind, 'incremental');
      assert.equal(doc.parent, last.id);
      const target = path.join(work, `old-new-restore-${name}`);
      const r = await runCli(['restore', doc.id, '--repo', repoDir, '--target', target], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(treeFacts(path.join(target, last.source)), last.tree);
    });
  }
});
