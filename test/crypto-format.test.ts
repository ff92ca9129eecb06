// The encrypted format through the library on a local store: every codec round-trips; the
// sealed manifest has the size the stats promise; the last frame is sealed as last even when
// the tar data ends exactly on a frame boundary (an empty final frame); an archive cut after a
// whole frame, or a plain archive listed in an encrypted repository, is refused.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { createHash } from 'node:crypto';
import { ContentReader } from '../src/archive/content-reader.ts';
import { ObjectKey } from '../src/crypto/aead.ts';
import { FrameWriter } from '../src/archive/frames.ts';
import { runBackup } from '../src/backup/backup.ts';
import type { NewKeySpec } from '../src/crypto/keys.ts';
import { Repository } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import { runVerify } from '../src/verify/verify.ts';
import { LocalStore } from '../src/store/local.ts';
import { readAll } from '../src/store/store.ts';
import { diffTrees, pseudoRandom, tempDir } from './helpers/tree.ts';

const work = tempDir('crypto-format');
after(() => fs.rmSync(work, { recursive: true, force: true }));
const keys = { passphrase: 'format test' };
const cheap: NewKeySpec = { passphrase: 'format test', kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } };

function source(name: string): string {
  const dir = path.join(work, name, 'data');
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'a.txt'), 'alpha\n'.repeat(50_000));
  fs.writeFileSync(path.join(dir, 'sub', 'r.bin'), pseudoRandom(600_000, 4));
  fs.writeFileSync(path.join(dir, 'empty'), '');
  return dir;
}

for (const codec of ['zstd', 'gzip', 'none'] as const) {
  test(`encrypted ${codec} backup restores and verifies; stats count the sealed manifest exactly`, async () => {
    const store = new LocalStore(path.join(work, `repo-${codec}`));
    await Repository.init(store, { encryption: cheap });
    const src = source(`src-${codec}`);
    // Small frames: many of them, so the frame table and ranged reads are exercised.
    const r = await runBackup({ store, keys, sources: [src], codec, frameSize: 256 << 10 });
    const archive = (await store.head(r.archiveKey))!;
    const manifest = (await store.head(r.manifestKey))!;
    assert.match(r.archiveKey, /\.enc$/);
    // The manifest object and its entry segments (all new in a first backup), sealed.
    let segments = 0;
    for await (const o of store.list('entries/')) segments += o.size;
    assert.ok(segments > 0);
    assert.equal(r.manifestBytes, manifest.size + segments);
    assert.equal(r.bytesStored, archive.size + manifest.size + segments);
    const target = path.join(work, `t-${codec}`);
    await runRestore({ store, keys, snapshot: r.id, target });
    assert.deepEqual(diffTrees(src, path.join(target, 'data')), []);
    const v = await runVerify({ store, keys, snapshot: r.id, deep: true });
    assert.deepEqual(v.problems, []);
    await assert.rejects(
      runRestore({ store, snapshot: r.id, target: path.join(work, `nokey-${codec}`) }),
      /is encrypted: its passphrase is needed/,
    );
  });
}

test('tar data ending on a frame boundary gets an empty last frame, sealed as last', async () => {
  const key = ObjectKey.derive(Buffer.alloc(32, 1), 'archive', 'id', Buffer.alloc(16, 2));
  const out = new PassThrough();
  const collected = readAll(out);
  // Sealing runs on the content reader's worker: the frames' indexes and finality must survive it.
  const reader = new ContentReader({ sealKey: key });
  const seen: [number, boolean][] = [];
  const seal = reader.seal!;
  const w = new FrameWriter({
    codec: 'none',
    frameSize: 1024,
    output: out,
    storedHash: {
      update: (f, n) => reader.update(f, n),
      digest: () => reader.digest(),
      seal: (f, n, i, last) => {
        seen.push([i, last]);
        return seal(f, n, i, last);
      },
    },
  });
  await w.write(Buffer.alloc(2048, 7));
  const res = await w.finish();
  await reader.close();
  assert.deepEqual(seen, [
    [0, false],
    [1, false],
    [2, true],
  ]);
  assert.deepEqual(res.frames, [
    [1040, 1024],
    [1040, 1024],
    [16, 0],
  ]);
  const stored = await collected;
  assert.equal(stored.length, 1040 * 2 + 16);
  assert.equal(res.sha256, createHash('sha256').update(stored).digest('hex'));
  assert.deepEqual(key.open(stored.subarray(0, 1040), 0, false), Buffer.alloc(1024, 7));
  assert.deepEqual(key.open(stored.subarray(2080), 2, true), Buffer.alloc(0));
  // Cut after frame 1: frame 1 opened as the last one fails.
  assert.throws(() => key.open(stored.subarray(1040, 2080), 1, true), /authentication failed/);
  assert.deepEqual(key.open(stored.subarray(1040, 2080), 1, false), Buffer.alloc(1024, 7));
});

test('an archive cut after a whole frame, and a plain archive in an encrypted repository, are refused by verify', async () => {
  const store = new LocalStore(path.join(work, 'repo-cut'));
  await Repository.init(store, { encryption: cheap });
  const src = source('src-cut');
  const r = await runBackup({ store, keys, sources: [src], frameSize: 256 << 10 });
  const repo = await Repository.open(store, keys);
  const m = await repo.loadManifest(r.id);
  const ref = m.archives[0]!;
  await m.dispose();
  const file = path.join(work, 'repo-cut', r.archiveKey);
  const whole = fs.readFileSync(file);
  const lastSize = ref.frames.at(-1)![0];
  fs.writeFileSync(file, whole.subarray(0, whole.length - lastSize));
  const v = await runVerify({ store, keys, snapshot: r.id, deep: true });
  assert.ok(
    v.problems.some((p) => p.where === ref.key && /bytes, manifest says/.test(p.problem)),
    JSON.stringify(v.problems),
  );
  fs.writeFileSync(file, whole);
  assert.deepEqual((await runVerify({ store, keys, snapshot: r.id, deep: true })).problems, []);
  assert.throws(
    () => repo.frameOpener({ ...ref, encryption: undefined } as typeof ref),
    /listed without encryption in an encrypted repository/,
  );
});

test('a key rebuilt from its material (as the sealing worker does) seals the same bytes, in place too, and they open', async () => {
  const key = ObjectKey.derive(Buffer.alloc(32, 7), 'archive', 'id-worker', Buffer.alloc(16, 3));
  const copy = ObjectKey.fromMaterial(key.material());
  const other = ObjectKey.fromMaterial(ObjectKey.derive(Buffer.alloc(32, 7), 'archive', 'id-other', Buffer.alloc(16, 3)).material());
  for (const [size, index, last] of [
    [0, 0, true],
    [1000, 1, false],
    [3 << 20, 2 ** 40, true],
  ] as const) {
    const plain = pseudoRandom(size, index % 1000);
    const sealed = Buffer.concat(copy.sealParts(plain, index, last));
    assert.ok(sealed.equals(Buffer.concat(key.sealParts(plain, index, last))), `size ${size}, index ${index}`);
    const inPlace = Buffer.alloc(size + 16, 0xee);
    plain.copy(inPlace);
    assert.equal(copy.sealInPlace(inPlace, size, index, last), size + 16);
    assert.ok(inPlace.equals(sealed), `in place: size ${size}, index ${index}`);
    assert.throws(() => copy.sealInPlace(Buffer.alloc(size + 15), size, index, last), /no room for the authentication tag/);
    assert.ok(key.open(sealed, index, last).equals(plain));
    assert.throws(() => key.open(sealed, index, !last), /authentication failed/);
    assert.throws(() => other.open(sealed, index, last), /authentication failed/);
  }
});
