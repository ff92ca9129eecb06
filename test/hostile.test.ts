// Hostile repositories: manifests and archives crafted by hand (a real pax tar in a zstd frame,
// a manifest encoded exactly as the backup writes it) that try to make restore write outside its
// target. Each must be refused with an error naming the offending path, and the directory
// outside the target must stay untouched.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import { FrameWriter } from '../src/archive/frames.ts';
import { copyBackups } from '../src/backup/copy.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from '../src/archive/tar.ts';
import { IntegrityError, S3BackupError } from '../src/errors.ts';
import { type ArchiveRef, type Entry, emptyStats, encodeManifestHead, MANIFEST_FORMAT, type ManifestHeader } from '../src/repo/manifest.ts';
import { newSnapshotId, Repository } from '../src/repo/repository.ts';
import { encodeLegacyManifest, LEGACY_MANIFEST_VERSION, LegacyEntryWriter } from './helpers/legacy-manifest.ts';
import { runCat } from '../src/restore/cat.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { runVerify } from '../src/verify/verify.ts';
import { snapshotTree, tempDir } from './helpers/tree.ts';

const work = tempDir('hostile');
after(() => fs.rmSync(work, { recursive: true, force: true }));

interface Item {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  /** File content (written to the archive). */
  content?: Buffer;
  /** Symlink target, or the first link's path for a hard link. */
  target?: string;
  /** Changes applied to the manifest entry after it is built (e.g. a wrong sha256). */
  entry?: Partial<Entry>;
  /** Changes that depend on where the content went (its offset), applied after `entry`. */
  tweak?: (e: Entry) => void;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * A repository in a fresh LocalStore holding one snapshot of these items: a real tar archive
 * (one zstd frame, correct frame table) and its manifest, put create-only under the right keys.
 */
async function craftRepo(
  items: Item[],
  tweakRef?: (ref: ArchiveRef) => void,
): Promise<{ store: LocalStore; id: string; archiveKey: string }> {
  const store = new LocalStore(fs.mkdtempSync(path.join(work, 'repo-')));
  const { repo } = await Repository.openOrInit(store);
  const id = newSnapshotId();
  const archiveKey = repo.archiveKey(id, 'zstd');
  const output = new PassThrough();
  const chunks: Buffer[] = [];
  output.on('data', (c: Buffer) => chunks.push(c));
  const fw = new FrameWriter({ codec: 'zstd', frameSize: 1 << 20, output });
  const mtime = 1_700_000_000;
  const entries: Entry[] = [];
  const byPath = new Map<string, Entry>();
  for (const it of items) {
    const content = it.content ?? Buffer.alloc(0);
    const th: TarHeader = {
      path: it.path,
      type: it.type,
      mode: it.type === 'dir' ? 0o755 : 0o644,
      uid: 0,
      gid: 0,
      size: it.type === 'file' ? content.length : 0,
      mtime,
      linkname: it.target,
    };
    const e: Entry = {
      path: it.path,
      type: it.type,
      mode: th.mode,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      mtime: mtime * 1000,
      ctime: mtime * 1000,
      ino: entries.length + 1,
      size: 0,
      header: fw.offset,
    };
    await fw.write(encodeHeader(th));
    if (it.type === 'file') {
      e.size = content.length;
      e.archive = 0;
      e.offset = fw.offset;
      e.sha256 = sha(content);
      await fw.write(content);
      await fw.write(Buffer.alloc(padding(content.length)));
    } else if (it.type === 'symlink') {
      e.target = it.target!;
    } else if (it.type === 'hardlink') {
      e.target = it.target!;
      const first = byPath.get(it.target!);
      if (first) Object.assign(e, { size: first.size, sha256: first.sha256, archive: 0, offset: first.offset });
    }
    Object.assign(e, it.entry ?? {});
    it.tweak?.(e);
    entries.push(e);
    byPath.set(e.path, e);
  }
  await fw.write(END_OF_ARCHIVE);
  const res = await fw.finish();
  const archive = Buffer.concat(chunks);
  assert.equal(archive.length, res.compressedSize);
  await store.put(archiveKey, archive);
  const ref: ArchiveRef = {
    id,
    key: archiveKey,
    codec: 'zstd',
    size: res.compressedSize,
    sha256: res.sha256,
    uncompressedSize: res.uncompressedSize,
    frames: res.frames,
  };
  tweakRef?.(ref);
  const now = new Date().toISOString();
  const header: ManifestHeader = {
    format: MANIFEST_FORMAT,
    version: LEGACY_MANIFEST_VERSION,
    id,
    time: now,
    endTime: now,
    kind: 'full',
    host: 'mallory',
    sources: [{ path: '/home/mallory/src', name: 'src' }],
    tags: [],
    toolVersion: '0.1.0',
    options: { codec: 'zstd', frameSize: 1 << 20, excludes: [] },
    stats: { ...emptyStats(), archiveBytes: res.compressedSize },
    warnings: [],
  };
  const writer = await LegacyEntryWriter.create();
  try {
    for (const e of entries) await writer.add(e);
    await writer.finish();
    const manifest = await encodeLegacyManifest(encodeManifestHead(header, [ref]), writer);
    await store.put(repo.manifestKey(id), manifest, { createOnly: true, contentType: 'application/zstd' });
  } finally {
    await writer.dispose();
  }
  return { store, id, archiveKey };
}

/**
 * A sandbox: <dir>/target (the restore target, not created yet) next to <dir>/outside, which
 * holds one decoy file. `untouched()` asserts nothing changed outside the target.
 */
function sandbox(label: string) {
  const dir = fs.mkdtempSync(path.join(work, `${label}-`));
  const target = path.join(dir, 'target');
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'decoy.txt'), 'do not touch\n');
  const before = snapshotTree(dir);
  const untouched = () => {
    const now = snapshotTree(dir);
    for (const [p, item] of now) {
      if (p === 'target' || p.startsWith('target/')) continue;
      assert.deepEqual(item, before.get(p), `${p} was created or changed outside the target`);
    }
    for (const p of before.keys()) assert.ok(now.has(p), `${p} disappeared`);
    // The decoy was never linked to from the target (a hard link would raise its link count).
    assert.equal(fs.statSync(path.join(outside, 'decoy.txt')).nlink, 1);
    assert.equal(fs.readFileSync(path.join(outside, 'decoy.txt'), 'utf8'), 'do not touch\n');
  };
  return { dir, target, outside, untouched };
}

/** Run the restore expecting it to fail; return the error for further checks. */
async function restoreFails(store: LocalStore, target: string, opts: { overwrite?: boolean } = {}): Promise<S3BackupError> {
  try {
    await runRestore({ store, snapshot: 'latest', target, ...opts });
  } catch (e) {
    assert.ok(e instanceof S3BackupError, `expected an S3BackupError, got ${(e as Error)?.stack ?? String(e)}`);
    return e;
  }
  assert.fail('restore succeeded on a hostile repository');
}

const good = { path: 'src', type: 'dir' } as const;
const goodFile = { path: 'src/ok.txt', type: 'file', content: Buffer.from('fine\n') } as const;

describe('entry paths that leave the target are refused before anything is written', () => {
  const cases: { name: string; bad: (outside: string) => string }[] = [
    { name: 'parent directory', bad: () => '../x' },
    { name: 'parent through a subdirectory', bad: () => 'a/../../x' },
    { name: 'parent of the target root', bad: () => 'src/../../outside/x' },
    { name: 'absolute path into the outside dir', bad: (outside) => `${outside}/x` },
    { name: 'a lone ..', bad: () => '..' },
    { name: 'a "." component', bad: () => 'src/./x' },
    { name: 'an empty component', bad: () => 'src//x' },
    { name: 'a NUL byte', bad: () => 'src/x\0y' },
  ];
  for (const c of cases) {
    test(`${c.name}`, async () => {
      const s = sandbox('path');
      const bad = c.bad(s.outside);
      const { store } = await craftRepo([good, goodFile, { path: bad, type: 'file', content: Buffer.from('pwned\n') }]);
      const err = await restoreFails(store, s.target);
      assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(JSON.stringify(bad)), `message names the path: ${err.message}`);
      assert.ok(!fs.existsSync(s.target), 'the target was not even created');
      s.untouched();
      // verify flags the same entry.
      const v = await runVerify({ store, snapshot: 'latest' });
      assert.equal(v.ok, false);
      assert.ok(
        v.problems.some((p) => p.where === bad),
        JSON.stringify(v.problems),
      );
    });
  }

  test('a bad directory entry is refused the same way', async () => {
    const s = sandbox('dir');
    const { store } = await craftRepo([good, { path: '../escaped-dir', type: 'dir' }]);
    const err = await restoreFails(store, s.target);
    assert.ok(err instanceof IntegrityError);
    assert.match(err.message, /"\.\.\/escaped-dir"/);
    s.untouched();
  });

  test('a bad symlink entry path is refused the same way', async () => {
    const s = sandbox('symlink-path');
    const { store } = await craftRepo([good, { path: '../evil-link', type: 'symlink', target: s.outside }]);
    const err = await restoreFails(store, s.target);
    assert.ok(err instanceof IntegrityError);
    assert.match(err.message, /"\.\.\/evil-link"/);
    s.untouched();
  });
});

describe('symlinks cannot redirect writes', () => {
  test('symlink evil -> outside, then a file evil/pwned.txt: outside stays empty', async () => {
    for (const overwrite of [false, true]) {
      const s = sandbox('symlink-then-file');
      const { store } = await craftRepo([
        good,
        { path: 'src/evil', type: 'symlink', target: s.outside },
        { path: 'src/evil/pwned.txt', type: 'file', content: Buffer.from('pwned\n') },
      ]);
      const err = await restoreFails(store, s.target, { overwrite });
      assert.ok(err.message.includes(path.join('src', 'evil')), `overwrite=${overwrite}: ${err.message}`);
      assert.ok(!fs.existsSync(path.join(s.outside, 'pwned.txt')));
      s.untouched();
      // Whatever is left in the target is no symlink out of it.
      const evil = path.join(s.target, 'src', 'evil');
      if (fs.existsSync(evil)) assert.ok(!fs.lstatSync(evil).isSymbolicLink(), 'src/evil must not be a symlink out');
    }
  });

  test('a file under the symlink listed before the symlink changes nothing', async () => {
    const s = sandbox('file-then-symlink');
    const { store } = await craftRepo([
      good,
      { path: 'src/evil/pwned.txt', type: 'file', content: Buffer.from('pwned\n') },
      { path: 'src/evil', type: 'symlink', target: s.outside },
    ]);
    const err = await restoreFails(store, s.target);
    assert.ok(err.message.includes(path.join('src', 'evil')), err.message);
    s.untouched();
  });

  test('a symlink under a symlink is refused (no symlink is followed while creating another)', async () => {
    const s = sandbox('symlink-chain');
    const { store } = await craftRepo([
      good,
      { path: 'src/evil', type: 'symlink', target: s.outside },
      { path: 'src/evil/planted', type: 'symlink', target: '/etc/passwd' },
    ]);
    const err = await restoreFails(store, s.target);
    assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
    assert.ok(err.message.includes('src/evil'), err.message);
    assert.ok(!fs.existsSync(path.join(s.outside, 'planted')));
    s.untouched();
  });

  test('a hard link under a symlink does not land outside', async () => {
    const s = sandbox('hardlink-under-symlink');
    const { store } = await craftRepo([
      good,
      goodFile,
      { path: 'src/evil', type: 'symlink', target: s.outside },
      { path: 'src/evil/linked.txt', type: 'hardlink', target: 'src/ok.txt' },
    ]);
    const err = await restoreFails(store, s.target);
    assert.ok(err.message.includes(path.join('src', 'evil')), err.message);
    assert.ok(!fs.existsSync(path.join(s.outside, 'linked.txt')));
    s.untouched();
  });

  test('a symlink pointing outside is restored as a link, and nothing is written through it', async () => {
    const s = sandbox('symlink-only');
    const { store } = await craftRepo([good, goodFile, { path: 'src/out', type: 'symlink', target: s.outside }]);
    const r = await runRestore({ store, snapshot: 'latest', target: s.target });
    assert.equal(r.symlinks, 1);
    assert.equal(fs.readlinkSync(path.join(s.target, 'src/out')), s.outside);
    s.untouched();
  });
});

describe('hard links', () => {
  for (const linkTarget of ['../../outside/decoy.txt', '../outside/decoy.txt', 'src/../../outside/decoy.txt', '/etc/passwd']) {
    test(`a hard link to ${linkTarget} is refused`, async () => {
      const s = sandbox('hardlink');
      const { store } = await craftRepo([good, goodFile, { path: 'src/passwd', type: 'hardlink', target: linkTarget }]);
      const err = await restoreFails(store, s.target);
      assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes(JSON.stringify(linkTarget)), err.message);
      assert.ok(!fs.existsSync(s.target), 'refused before anything was written');
      s.untouched();
    });
  }

  test('verify reports a hard link whose target leaves the snapshot', async () => {
    const s = sandbox('hardlink-verify');
    const { store } = await craftRepo([good, goodFile, { path: 'src/passwd', type: 'hardlink', target: '../../etc/passwd' }]);
    const v = await runVerify({ store, snapshot: 'latest' });
    assert.equal(v.ok, false, 'verify must not pass a snapshot that restore refuses');
    assert.ok(
      v.problems.some((p) => p.where === 'src/passwd' && p.problem.includes('../../etc/passwd')),
      JSON.stringify(v.problems),
    );
    s.untouched();
  });
});

describe('content that does not match the manifest', () => {
  test('a file whose SHA-256 does not match fails, naming it, and is not left behind', async () => {
    const s = sandbox('hash');
    const { store } = await craftRepo([
      good,
      goodFile,
      {
        path: 'src/tampered.txt',
        type: 'file',
        content: Buffer.from('evil content\n'),
        entry: { sha256: sha(Buffer.from('good content\n')) },
      },
    ]);
    const err = await restoreFails(store, s.target);
    assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
    assert.ok(err.message.includes('src/tampered.txt'), err.message);
    assert.ok(!fs.existsSync(path.join(s.target, 'src/tampered.txt')), 'the bad file was removed');
    assert.equal(fs.readFileSync(path.join(s.target, 'src/ok.txt'), 'utf8'), 'fine\n', 'files before it were restored');
    s.untouched();
    // Deep verify finds it too; shallow verify cannot (the archive is intact).
    const deep = await runVerify({ store, snapshot: 'latest', deep: true });
    assert.equal(deep.ok, false);
    assert.ok(
      deep.problems.some((p) => p.where === 'src/tampered.txt'),
      JSON.stringify(deep.problems),
    );
  });

  test('a hard link whose SHA-256 does not match (restored alone) fails and is not left behind', async () => {
    const s = sandbox('hash-hardlink');
    const { store } = await craftRepo([
      good,
      goodFile,
      { path: 'src/second.txt', type: 'hardlink', target: 'src/ok.txt', entry: { sha256: sha(Buffer.from('other\n')) } },
    ]);
    try {
      await runRestore({ store, snapshot: 'latest', target: s.target, include: ['src/second.txt'] });
      assert.fail('restore succeeded');
    } catch (e) {
      assert.ok(e instanceof IntegrityError, String(e));
      assert.ok(e.message.includes('src/second.txt'), e.message);
    }
    assert.ok(!fs.existsSync(path.join(s.target, 'src/second.txt')));
    s.untouched();
  });

  test('an entry pointing beyond the end of the archive is refused before anything is written', async () => {
    const s = sandbox('beyond');
    const content = Buffer.from('x'.repeat(100));
    const { store } = await craftRepo([good, goodFile, { path: 'src/far.bin', type: 'file', content, entry: { offset: 10_000_000 } }]);
    const err = await restoreFails(store, s.target);
    assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
    assert.ok(err.message.includes('src/far.bin'), err.message);
    assert.ok(!fs.existsSync(s.target));
    s.untouched();
    const deep = await runVerify({ store, snapshot: 'latest', deep: true });
    assert.equal(deep.ok, false, 'deep verify must notice');
  });

  test('an entry in a frame the stored archive does not have fails, naming it, and is not left behind', async () => {
    // The frame table (and uncompressedSize) claim a second frame the object does not contain.
    const s = sandbox('phantom-frame');
    const content = Buffer.from('y'.repeat(100));
    let realSize = 0;
    const { store } = await craftRepo(
      [good, goodFile, { path: 'src/phantom.bin', type: 'file', content, entry: { offset: 1 << 20 } }],
      (ref) => {
        realSize = ref.uncompressedSize;
        ref.frames.push([4096, 1 << 20]);
        ref.uncompressedSize += 1 << 20;
        ref.size += 4096;
      },
    );
    assert.ok(realSize < 1 << 20);
    const err = await restoreFails(store, s.target);
    assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
    assert.ok(err.message.includes('src/phantom.bin'), `message names the file: ${err.message}`);
    assert.ok(!fs.existsSync(path.join(s.target, 'src/phantom.bin')), 'no partial file left behind');
    assert.equal(fs.readFileSync(path.join(s.target, 'src/ok.txt'), 'utf8'), 'fine\n', 'the file in the frame that is there was restored');
    s.untouched();
    // Shallow verify sees the size mismatch.
    const v = await runVerify({ store, snapshot: 'latest' });
    assert.equal(v.ok, false);
  });

  test('an archive index the manifest does not list is refused', async () => {
    const s = sandbox('no-archive');
    const { store } = await craftRepo([good, { path: 'src/a.txt', type: 'file', content: Buffer.from('a'), entry: { archive: 3 } }]);
    const err = await restoreFails(store, s.target);
    assert.ok(err instanceof IntegrityError);
    assert.ok(err.message.includes('src/a.txt'), err.message);
    s.untouched();
  });
});

describe('hostile extents', () => {
  const content = Buffer.from('0123456789'.repeat(10));
  /** The file's content as extents: its runs as `runs` says, from its offset; archive and offset removed. */
  const asExtents = (runs: (offset: number) => [number, number, number][]) => (e: Entry) => {
    e.extents = runs(e.offset!);
    delete e.archive;
    delete e.offset;
  };

  test('extents that are right restore the file (the crafted repository is sound)', async () => {
    const s = sandbox('extents-ok');
    // The second half first, then the first: the file is the runs in order, not the archive's order.
    const { store } = await craftRepo([
      good,
      {
        path: 'src/two.bin',
        type: 'file',
        content,
        tweak: (e) => {
          asExtents((o) => [
            [0, o + 50, 50],
            [0, o, 50],
          ])(e);
          e.sha256 = sha(Buffer.concat([content.subarray(50), content.subarray(0, 50)]));
        },
      },
    ]);
    await runRestore({ store, snapshot: 'latest', target: s.target });
    assert.deepEqual(fs.readFileSync(path.join(s.target, 'src/two.bin')), Buffer.concat([content.subarray(50), content.subarray(0, 50)]));
    s.untouched();
    assert.equal((await runVerify({ store, snapshot: 'latest', deep: true })).ok, true);
  });

  for (const [name, runs, problem] of [
    [
      'past the end of the archive',
      (o: number) => [
        [0, o, 50],
        [0, 10_000_000, 50],
      ],
      'extent 2 lies beyond the end of its archive',
    ],
    [
      'of the wrong total length',
      (o: number) => [
        [0, o, 60],
        [0, o + 60, 30],
      ],
      'has extents of 90 bytes in all, where its size is 100',
    ],
    [
      'naming an archive the manifest does not list',
      (o: number) => [
        [0, o, 50],
        [1, o + 50, 50],
      ],
      'extent 2 refers to archive 1, which the manifest does not list',
    ],
    [
      'of a negative length',
      (o: number) => [
        [0, o, 150],
        [0, o, -50],
      ],
      'extent 2 has an invalid offset or length',
    ],
    ['with none', () => [], 'has 0 extents'],
  ] as const) {
    test(`extents ${name} are refused before anything is written, by restore, cat and verify`, async () => {
      const s = sandbox(`extents-${name.split(' ').at(-1)}`);
      const { store } = await craftRepo([
        good,
        goodFile,
        { path: 'src/bad.bin', type: 'file', content, tweak: asExtents((o) => runs(o) as [number, number, number][]) },
      ]);
      const err = await restoreFails(store, s.target);
      assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
      assert.ok(err.message.includes('src/bad.bin') && err.message.includes(problem), err.message);
      assert.ok(!fs.existsSync(s.target), 'nothing written');
      s.untouched();
      await assert.rejects(runCat({ store, snapshot: 'latest', path: 'src/bad.bin', output: new PassThrough() }), (e: Error) =>
        e.message.includes(problem),
      );
      const v = await runVerify({ store, snapshot: 'latest' });
      assert.ok(
        v.problems.some((p) => p.where === 'src/bad.bin' && p.problem.includes(problem)),
        JSON.stringify(v.problems),
      );
      // copy re-indexes each extent's archive: it refuses the backup too, and lists nothing where it copies to.
      const toStore = new LocalStore(path.join(s.dir, 'copy-to'));
      await assert.rejects(
        copyBackups({ from: await Repository.open(store), to: await Repository.init(toStore) }),
        (e: Error) => e.message.includes('src/bad.bin') && e.message.includes(problem),
      );
      assert.deepEqual(await Repository.backupIds(toStore), []);
    });
  }
});

describe('restoring with --overwrite over existing symlinks in the target', () => {
  test('a symlink src -> outside in the target is not written through', async () => {
    for (const items of [
      [good, goodFile],
      [goodFile], // no directory entry: the parent is made implicitly
    ]) {
      const s = sandbox('overwrite-dir-link');
      fs.mkdirSync(s.target);
      fs.symlinkSync(s.outside, path.join(s.target, 'src'));
      const { store } = await craftRepo(items);
      const err = await restoreFails(store, s.target, { overwrite: true });
      assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
      assert.match(err.message, /\bsrc\b.*symlink/);
      assert.ok(!fs.existsSync(path.join(s.outside, 'ok.txt')), 'nothing written through the link');
      s.untouched();
      assert.equal(fs.readlinkSync(path.join(s.target, 'src')), s.outside, 'the existing link is left as it was');
    }
  });

  test('a deeper symlinked directory in the target is not written through', async () => {
    const s = sandbox('overwrite-deep-link');
    fs.mkdirSync(path.join(s.target, 'src'), { recursive: true });
    fs.symlinkSync(s.outside, path.join(s.target, 'src', 'sub'));
    const { store } = await craftRepo([
      good,
      { path: 'src/sub', type: 'dir' },
      { path: 'src/sub/f.txt', type: 'file', content: Buffer.from('f\n') },
    ]);
    const err = await restoreFails(store, s.target, { overwrite: true });
    assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
    assert.ok(err.message.includes('src/sub'), err.message);
    s.untouched();
  });

  test('a symlinked file in the target is replaced, not written through', async () => {
    const s = sandbox('overwrite-file-link');
    fs.mkdirSync(path.join(s.target, 'src'), { recursive: true });
    fs.symlinkSync(path.join(s.outside, 'decoy.txt'), path.join(s.target, 'src', 'ok.txt'));
    fs.symlinkSync(path.join(s.outside, 'new.txt'), path.join(s.target, 'src', 'dangling.txt'));
    const { store } = await craftRepo([good, goodFile, { path: 'src/dangling.txt', type: 'file', content: Buffer.from('restored\n') }]);
    const r = await runRestore({ store, snapshot: 'latest', target: s.target, overwrite: true });
    assert.equal(r.files, 2);
    for (const [name, text] of [
      ['ok.txt', 'fine\n'],
      ['dangling.txt', 'restored\n'],
    ] as const) {
      const p = path.join(s.target, 'src', name);
      assert.ok(fs.lstatSync(p).isFile(), `${name} is now a regular file`);
      assert.equal(fs.readFileSync(p, 'utf8'), text);
    }
    s.untouched();
  });

  test('without --overwrite a non-empty target is refused', async () => {
    const s = sandbox('no-overwrite');
    fs.mkdirSync(s.target);
    fs.symlinkSync(s.outside, path.join(s.target, 'src'));
    const { store } = await craftRepo([good, goodFile]);
    const err = await restoreFails(store, s.target);
    assert.match(err.message, /not empty/);
    s.untouched();
  });
});
