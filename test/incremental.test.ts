// Incremental backups: only new and changed files are read and stored; every manifest still
// lists (and restores) its whole snapshot; deleted and renamed files come out right.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { Repository } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { runVerify } from '../src/verify/verify.ts';
import { testBackends } from './helpers/store.ts';
import { diffTrees, makeTree, pseudoRandom, tempDir } from './helpers/tree.ts';

const work = tempDir('incr');
after(() => {
  execFileSync('chmod', ['-R', 'u+w', work]);
  fs.rmSync(work, { recursive: true, force: true });
});

/** A copy of a tree as it is now, to compare an older backup's restore with. */
function copyTree(from: string, to: string): void {
  execFileSync('cp', ['-a', from, to]);
}

const backends = testBackends('incr', 'r');

for (const backend of backends) {
  describe(`incremental backups on ${backend.name}`, () => {
    test('new, changed, unchanged, deleted and renamed files; each backup restores its own snapshot', async () => {
      const { store, cleanup } = await backend.open();
      try {
        const src = path.join(work, `src-${backend.name.split(' ')[0]}`);
        makeTree(src);
        const first = await runBackup({ store, sources: [src] });
        assert.equal(first.kind, 'full');
        assert.equal(first.kindReason, 'first backup of these sources');
        const snap1 = `${src}.snap1`;
        copyTree(src, snap1);

        // Change things.
        fs.appendFileSync(path.join(src, 'hello.txt'), 'more\n'); // changed
        fs.writeFileSync(path.join(src, 'brand-new.bin'), pseudoRandom(200_000, 77)); // new
        fs.rmSync(path.join(src, 'docs/deep'), { recursive: true }); // deleted (1 file)
        fs.renameSync(path.join(src, 'data/exact-block.bin'), path.join(src, 'data/renamed.bin')); // deleted + new (inode same, path new)
        const second = await runBackup({ store, sources: [src] });
        assert.equal(second.kind, 'incremental');
        assert.equal(second.parent, first.id);
        assert.equal(second.changedFiles, 1, 'hello.txt');
        assert.equal(second.newFiles, 2, 'brand-new.bin and renamed.bin');
        assert.equal(second.deletedFiles, 2, 'deep/…/file.txt and exact-block.bin');
        assert.equal(second.unchangedFiles, first.files - 3);
        const expectedRead = fs.statSync(path.join(src, 'hello.txt')).size + 200_000 + 4096;
        assert.equal(second.bytesIn, expectedRead, 'only new and changed content is read');
        assert.ok(second.archiveBytes < first.archiveBytes / 20, `${second.archiveBytes} vs ${first.archiveBytes}`);
        assert.equal(second.bytesTotal, first.bytesTotal! + 200_000 + 5 - 5, 'one file appended to, one added, one of 5 bytes deleted');

        // Both snapshots restore exactly.
        const r2 = tempDir('incr-r2');
        const res2 = await runRestore({ store, snapshot: second.id, target: r2 });
        assert.deepEqual(diffTrees(src, path.join(r2, path.basename(src))), []);
        assert.ok(res2.requests >= 2, 'content came from both archives');
        const r1 = tempDir('incr-r1');
        await runRestore({ store, snapshot: first.id, target: r1 });
        assert.deepEqual(diffTrees(snap1, path.join(r1, path.basename(src))), []);

        // No change at all: nothing read, an archive with headers only.
        const third = await runBackup({ store, sources: [src] });
        assert.equal(third.kind, 'incremental');
        assert.equal(third.parent, second.id);
        assert.equal(third.bytesIn, 0);
        assert.equal(third.newFiles! + third.changedFiles! + third.deletedFiles!, 0);
        const repo = await Repository.open(store);
        const m3 = await repo.loadManifest(third.id);
        assert.deepEqual(
          m3.archives.map((a) => a.id),
          [third.id, second.id, first.id],
          'its own archive, then the older ones it points into',
        );
        await m3.dispose();
        const r3 = tempDir('incr-r3');
        await runRestore({
          store,
          snapshot: third.id,
          target: r3,
          include: [`${path.basename(src)}/hello.txt`, `${path.basename(src)}/data/**`],
        });
        assert.equal(fs.readFileSync(path.join(r3, path.basename(src), 'hello.txt'), 'utf8'), 'hello, world\nmore\n');
        assert.ok(fs.existsSync(path.join(r3, path.basename(src), 'data/random.bin')));
        const v = await runVerify({ store, snapshot: third.id, deep: true });
        assert.deepEqual(v.problems, []);
        assert.equal(v.archives, 3);

        // --full stores everything again; a different tag has no parent, but its first backup
        // points at the large files the untagged ones stored (docs/format.md "Content stored once").
        const full = await runBackup({ store, sources: [src], full: true });
        assert.equal(full.kind, 'full');
        assert.equal(full.bytesIn, full.bytesTotal);
        const tagged = await runBackup({ store, sources: [src], tags: ['other'] });
        assert.equal(tagged.parent, undefined);
        assert.equal(tagged.kind, 'incremental');
        assert.ok(tagged.foundFiles! > 0 && tagged.bytesIn + tagged.foundBytes! === tagged.bytesTotal, JSON.stringify(tagged));
        for (const d of [r1, r2, r3]) execFileSync('chmod', ['-R', 'u+w', d]);
      } finally {
        await store.close();
        await cleanup();
      }
    });
  });
}

describe('chain length and rehash', () => {
  test('--full-every bounds the chain', async () => {
    const src = path.join(work, 'chain');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.txt'), 'a\n');
    const store = new LocalStore(tempDir('chain-repo'));
    const kinds: string[] = [];
    for (let i = 0; i < 5; i++) kinds.push((await runBackup({ store, sources: [src], fullEvery: 3 })).kind);
    assert.deepEqual(kinds, ['full', 'incremental', 'incremental', 'full', 'incremental']);
  });

  test("--full-after: a full backup once the chain's full one is older than the limit", async () => {
    const src = path.join(work, 'full-after');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.txt'), 'a\n');
    const store = new LocalStore(tempDir('full-after-repo'));
    const day = 86_400_000;
    const at = (daysAgo: number) => new Date(Date.now() - daysAgo * day);
    const full = await runBackup({ store, sources: [src], startedAt: at(40) });
    const incr = await runBackup({ store, sources: [src], startedAt: at(20) });
    assert.equal(incr.kind, 'incremental', 'the full one is 20 days older: within the default 30');
    // The chain started 40 days ago: over the default 30 days, but not over 50.
    const kept = await runBackup({ store, sources: [src], fullAfterDays: 50 });
    assert.equal(kept.kind, 'incremental');
    assert.equal(kept.parent, incr.id);
    const renewed = await runBackup({ store, sources: [src] });
    assert.equal(renewed.kind, 'full');
    assert.equal(renewed.kindReason, 'last full backup older than 30 days');
    // 100 days after that full one: 0 = never, whatever the age; the default renews it.
    const never = await runBackup({ store, sources: [src], startedAt: at(-100), fullAfterDays: 0 });
    assert.equal(never.kind, 'incremental');
    assert.equal((await runBackup({ store, sources: [src], startedAt: at(-101) })).kind, 'full');
    assert.equal(full.kind, 'full');
  });

  test('--rehash: a touched file with the same content is not stored again; a changed one is', async () => {
    const src = path.join(work, 'rehash');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'same.txt'), 'same content\n');
    fs.writeFileSync(path.join(src, 'edited.txt'), 'version 1\n');
    const store = new LocalStore(tempDir('rehash-repo'));
    await runBackup({ store, sources: [src] });
    const later = Date.now() / 1000 + 10;
    fs.utimesSync(path.join(src, 'same.txt'), later, later);
    fs.writeFileSync(path.join(src, 'edited.txt'), 'version 2\n'); // same size, other content
    const plain = await runBackup({ store, sources: [src], parent: 'latest' });
    assert.equal(plain.changedFiles, 2, 'metadata says both changed');
    fs.utimesSync(path.join(src, 'same.txt'), later + 10, later + 10);
    fs.writeFileSync(path.join(src, 'edited.txt'), 'version 3\n');
    const re = await runBackup({ store, sources: [src], rehash: true });
    assert.equal(re.unchangedFiles, 1, 'same.txt: same hash');
    assert.equal(re.changedFiles, 1, 'edited.txt');
    const target = tempDir('rehash-r');
    await runRestore({ store, snapshot: re.id, target });
    assert.equal(fs.readFileSync(path.join(target, 'rehash/edited.txt'), 'utf8'), 'version 3\n');
    assert.equal(fs.statSync(path.join(target, 'rehash/same.txt')).mtimeMs, (later + 10) * 1000);
  });
});
