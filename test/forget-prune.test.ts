// forget, prune and locks, on the local store and on Ceph RGW: the policy removes exactly the
// backups it should, prune deletes exactly the archives no remaining manifest lists (never one a
// kept manifest still references, never one younger than the grace period unless its backup was
// just forgotten), leftovers and stale multipart uploads go, a SIGKILL in the middle of a prune
// leaves every kept backup restorable, and locks keep two pruners (or a pruner and a backup)
// apart.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { runBackup } from '../src/backup/backup.ts';
import {
  acquireExclusiveLock,
  acquireSharedLock,
  listLocks,
  lockKey,
  removeLocks,
  RepositoryLockedError,
  withLock,
} from '../src/repo/locks.ts';
import { encodeManifestHead } from '../src/repo/manifest.ts';
import { ARCHIVES, archiveIdOf, archiveName, ENCRYPTED_SUFFIX, newSnapshotId, Repository } from '../src/repo/repository.ts';
import { ARCHIVE_SUFFIX, CODECS } from '../src/archive/codec.ts';
import { forget, prune } from '../src/prune/prune.ts';
import { readManifestHead } from '../src/repo/manifest-head.ts';
import { runRestore } from '../src/restore/restore.ts';
import type { KeepPolicy } from '../src/retention/policy.ts';
import { LocalStore } from '../src/store/local.ts';
import type { Store } from '../src/store/store.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Client, testS3Store } from './helpers/s3.ts';
import { BIN, diffTrees, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('forget-prune');
const env = isolatedEnv(path.join(work, 'home'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

let sourceCount = 0;
/** A small source tree; `version` changes one file's content. */
function makeSource(version = 0): string {
  const dir = path.join(work, `src-${sourceCount++}`, 'data');
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'a.txt'), 'alpha\n');
  fs.writeFileSync(path.join(dir, 'sub', 'b.bin'), pseudoRandom(70_000, 5));
  fs.writeFileSync(path.join(dir, 'v.txt'), `version ${version}\n`);
  return dir;
}

async function full(store: Store, src: string, extra: { tags?: string[]; host?: string } = {}) {
  return runBackup({ store, sources: [src], full: true, ...extra });
}

async function keys(store: Store, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out.sort();
}

async function restoresAs(store: Store, id: string, expected: string): Promise<void> {
  const target = tempDir('fp-restore');
  try {
    await runRestore({ store, snapshot: id, target });
    assert.deepEqual(diffTrees(expected, path.join(target, path.basename(expected))), [], `backup ${id} restores`);
  } finally {
    fs.rmSync(target, { recursive: true, force: true });
  }
}

/** An unreferenced file with an archive name under archives/, modified `ageMs` ago. */
function fakeArchive(repoDir: string, when: Date, size: number, ageMs: number): string {
  const key = `archives/${newSnapshotId(when)}.tar.zst`;
  const file = path.join(repoDir, key);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.alloc(size, 7));
  const t = (Date.now() - ageMs) / 1000;
  fs.utimesSync(file, t, t);
  return key;
}

const HOUR = 3_600_000;

/** What "s3backup forget" does: forget, then prune the removed backups' data, under one lock. */
async function forgetAndPrune(repo: Repository, policy: KeepPolicy, allowEmpty = false) {
  return withLock(repo.store, { exclusive: true, command: 'forget' }, async (lock) => {
    const f = await forget(repo, { policy, allowEmpty, lock });
    return { ...f, prune: await prune(repo, { forgotten: f.removed, lock }) };
  });
}

// The four groups use separate repositories and run side by side; tests within a group run in turn.
describe('forget, prune and locks', { concurrency: true }, () => {
  describe('forget and prune on a local repository', { concurrency: 1 }, () => {
    test('forget applies the policy; prune deletes exactly the archives of the removed backups', async () => {
      const src = makeSource();
      const repoDir = path.join(work, 'repo-policy');
      const store = new LocalStore(repoDir);
      const backups = [];
      for (let i = 0; i < 4; i++) backups.push(await full(store, src));
      const ids = backups.map((b) => b.id);

      // A dry run says what it would do and changes nothing.
      const dry = await runCli(['forget', '--repo', repoDir, '--keep-last', '2', '--dry-run'], { env });
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /policy: keep-last 2 \(from the --keep-\* flags\)/);
      assert.match(dry.stdout, /ID\s+TIME \(UTC\)\s+TAGS\s+ACTION\s+REASONS/);
      // Short ids (the last 8 characters of each), so the table fits 120 columns.
      for (const id of ids.slice(0, 2)) assert.match(dry.stdout, new RegExp(`${id.slice(-8)}.*\\bremove\\b`));
      for (const id of ids.slice(2)) assert.match(dry.stdout, new RegExp(`${id.slice(-8)}.*\\bkeep\\s+last 2`));
      assert.match(dry.stdout, /would remove 2 backup\(s\)/);
      for (const b of backups.slice(0, 2)) assert.match(dry.stdout, new RegExp(`would delete ${b.archiveKey.replace(/\./g, '\\.')}`));
      assert.equal((await keys(store, 'snapshots/')).length, 4);
      assert.equal((await keys(store, 'archives/')).length, 4);

      const r = await runCli(['forget', '--repo', repoDir, '--keep-last', '2', '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      const doc = json(r.stdout);
      assert.equal(doc.ok, true);
      assert.deepEqual(doc.removed, ids.slice(0, 2));
      assert.equal(doc.groups.length, 1);
      assert.deepEqual(
        doc.groups[0].backups.map((x: any) => [x.id, x.keep, x.reasons]),
        ids.map((id, i) => [id, i >= 2, i >= 2 ? ['last 2'] : []]),
      );
      // Just-forgotten backups' archives need no grace period: they go at once, and nothing else.
      assert.deepEqual(
        doc.prune.archives.deleted.map((o: any) => o.key).sort(),
        backups
          .slice(0, 2)
          .map((b) => b.archiveKey)
          .sort(),
      );
      assert.equal(doc.prune.bytesFreed, backups[0]!.archiveBytes + backups[1]!.archiveBytes);
      assert.deepEqual(
        await keys(store, 'archives/'),
        backups
          .slice(2)
          .map((b) => b.archiveKey)
          .sort(),
      );
      assert.deepEqual(
        await keys(store, 'snapshots/'),
        backups
          .slice(2)
          .map((b) => b.manifestKey)
          .sort(),
      );
      for (const id of ids.slice(2)) await restoresAs(store, id, src);
      assert.deepEqual(await listLocks(store), [], 'the lock is released');
    });

    test('an archive a kept manifest still references is never deleted (constructed and incremental references)', async () => {
      const src = makeSource(1);
      const repoDir = path.join(work, 'repo-shared');
      const store = new LocalStore(repoDir);
      const a = await full(store, src);
      const b = await full(store, src);
      // C: a manifest whose archives line is A's (and whose entries are A's): it needs A's archive.
      const repo = await Repository.open(store);
      const ma = await repo.loadManifest(a.id);
      const cId = newSnapshotId(new Date(Date.parse(b.time) + 1));
      try {
        const head = encodeManifestHead({ ...ma.header, id: cId, time: new Date(Date.parse(b.time) + 1).toISOString() }, ma.archives, {
          refs: ma.segments!.refs,
        });
        await store.put(repo.manifestKey(cId), head, { createOnly: true });
      } finally {
        await ma.dispose();
      }
      assert.deepEqual(
        (await readManifestHead(repo, cId)).archives.map((x) => x.key),
        [a.archiveKey],
      );

      // keep-last 2 keeps B and C, removes A: A's archive stays, C restores from it.
      const f1 = await forgetAndPrune(repo, { last: 2 });
      assert.deepEqual(f1.removed, [a.id]);
      assert.deepEqual(f1.prune.archives.deleted, []);
      assert.equal(f1.prune.archives.referenced, 2);
      assert.deepEqual(await keys(store, 'archives/'), [a.archiveKey, b.archiveKey].sort());
      await restoresAs(store, cId, src);

      // An incremental D on top of C (one file changed) references A's archive for the rest.
      fs.writeFileSync(path.join(src, 'v.txt'), 'version 2\n');
      const d = await runBackup({ store, sources: [src] });
      assert.equal(d.kind, 'incremental');
      const dRefs = (await readManifestHead(repo, d.id)).archives.map((x) => x.key);
      assert.ok(dRefs.includes(a.archiveKey), `D references A's archive: ${dRefs.join(', ')}`);

      // keep-last 1 keeps D only: B's archive goes, A's stays (D needs it), D's own stays.
      const f2 = await forgetAndPrune(repo, { last: 1 });
      assert.deepEqual(f2.removed, [b.id, cId].sort());
      assert.deepEqual(
        f2.prune.archives.deleted.map((o) => o.key),
        [b.archiveKey],
      );
      assert.deepEqual(await keys(store, 'archives/'), [...new Set(dRefs)].sort());
      await restoresAs(store, d.id, src);
    });

    test('grace period: young unreferenced archives and temp files survive; old ones go; strangers are left alone', async () => {
      const src = makeSource();
      const repoDir = path.join(work, 'repo-grace');
      const store = new LocalStore(repoDir);
      const kept = await full(store, src);
      const now = new Date();
      const oldArchive = fakeArchive(repoDir, new Date(now.getTime() - 7 * HOUR), 1000, 7 * HOUR);
      const youngArchive = fakeArchive(repoDir, new Date(now.getTime() - 60_000), 2000, 60_000);
      const stranger = path.join(repoDir, 'archives', 'notes.txt');
      fs.writeFileSync(stranger, 'not an archive\n');
      fs.utimesSync(stranger, 0, 0);
      // Temporary files of killed writes: one old (in archives/), one fresh (in snapshots/).
      const oldTmp = path.join(repoDir, 'archives', '.tmp-0123456789abcdef');
      fs.writeFileSync(oldTmp, Buffer.alloc(300));
      fs.utimesSync(oldTmp, (now.getTime() - 7 * HOUR) / 1000, (now.getTime() - 7 * HOUR) / 1000);
      const youngTmp = path.join(repoDir, 'snapshots', '.tmp-fedcba9876543210');
      fs.writeFileSync(youngTmp, Buffer.alloc(50));
      fs.utimesSync(youngTmp, (now.getTime() - 60_000) / 1000, (now.getTime() - 60_000) / 1000);

      const dry = await prune(await Repository.open(store), { dryRun: true });
      assert.deepEqual(
        dry.archives.deleted.map((o) => o.key),
        [oldArchive],
      );
      assert.ok(fs.existsSync(path.join(repoDir, oldArchive)) && fs.existsSync(oldTmp), 'a dry run deletes nothing');

      const r = await runCli(['prune', '--repo', repoDir, '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      const doc = json(r.stdout);
      assert.deepEqual(
        doc.archives.deleted.map((o: any) => o.key),
        [oldArchive],
      );
      assert.deepEqual(
        doc.archives.recent.map((o: any) => o.key),
        [youngArchive],
      );
      assert.deepEqual(doc.archives.unrecognized, ['archives/notes.txt']);
      assert.deepEqual(
        doc.leftovers.deleted.map((o: any) => o.key),
        ['archives/.tmp-0123456789abcdef'],
      );
      assert.deepEqual(
        doc.leftovers.recent.map((o: any) => o.key),
        ['snapshots/.tmp-fedcba9876543210'],
      );
      assert.equal(doc.bytesFreed, 1000 + 300);
      assert.equal(doc.graceMs, 6 * HOUR);
      assert.ok(!fs.existsSync(path.join(repoDir, oldArchive)) && !fs.existsSync(oldTmp));
      assert.ok(fs.existsSync(path.join(repoDir, youngArchive)) && fs.existsSync(youngTmp) && fs.existsSync(stranger));
      assert.ok(fs.existsSync(path.join(repoDir, kept.archiveKey)));

      // A shorter grace period lets the young ones go too.
      const bad = await runCli(['prune', '--repo', repoDir, '--grace', '30m'], { env });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /30min/);
      const r2 = await prune(await Repository.open(store), { graceMs: 30_000 });
      assert.deepEqual(
        r2.archives.deleted.map((o) => o.key),
        [youngArchive],
      );
      assert.deepEqual(
        r2.leftovers.deleted.map((o) => o.key),
        ['snapshots/.tmp-fedcba9876543210'],
      );
      assert.deepEqual(await keys(store, 'archives/'), [kept.archiveKey, 'archives/notes.txt'].sort());
      await restoresAs(store, kept.id, src);
    });

    test('a policy that would remove every backup is refused unless --allow-empty', async () => {
      const src = makeSource();
      const repoDir = path.join(work, 'repo-empty');
      const store = new LocalStore(repoDir);
      const b1 = await full(store, src, { tags: ['nightly'] });
      const b2 = await full(store, src, { tags: ['nightly'] });
      const refused = await runCli(['forget', '--repo', repoDir, '--keep-tag', 'release'], { env });
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, /would remove every backup of .*: .*data \(2 backups\)/);
      assert.match(refused.stderr, /--allow-empty/);
      assert.equal((await keys(store, 'snapshots/')).length, 2);
      assert.deepEqual(await listLocks(store), [], 'a refused forget leaves no lock');

      const r = await forgetAndPrune(await Repository.open(store), { last: 0 }, true);
      assert.deepEqual(r.removed, [b1.id, b2.id]);
      assert.deepEqual(await keys(store, 'snapshots/'), []);
      assert.deepEqual(await keys(store, 'archives/'), []);
    });

    test('the policy comes from the config file when no flag is given, else keep-last 5', async () => {
      const src = makeSource();
      const repoDir = path.join(work, 'repo-config');
      const store = new LocalStore(repoDir);
      const ids = [];
      for (let i = 0; i < 7; i++) ids.push((await full(store, src, { tags: i === 0 ? ['release'] : [] })).id);
      const dflt = json((await runCli(['forget', '--repo', repoDir, '--dry-run', '--json'], { env })).stdout);
      assert.equal(dflt.policySource, 'the default');
      assert.deepEqual(dflt.policy, { last: 5 });
      assert.deepEqual(dflt.removed, ids.slice(0, 2));
      const cfg = path.join(work, 'keep.yaml');
      fs.writeFileSync(cfg, 'keep:\n  last: 3\n  tags: [release]\n');
      const r = await runCli(['forget', '--repo', repoDir, '--config', cfg, '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      const doc = json(r.stdout);
      assert.match(doc.policySource, /keep\.yaml/);
      assert.deepEqual(doc.removed, ids.slice(1, 4));
      assert.deepEqual(doc.groups[0].backups[0].reasons, ['tag release']);
      assert.deepEqual(
        await keys(store, 'snapshots/'),
        [ids[0]!, ...ids.slice(4)].map((id) => `snapshots/${id}.ndjson.zst`),
      );
    });

    test('a manifest that cannot be read makes prune refuse to delete anything', async () => {
      const src = makeSource();
      const repoDir = path.join(work, 'repo-damaged');
      const store = new LocalStore(repoDir);
      await full(store, src);
      const garbage = fakeArchive(repoDir, new Date(Date.now() - 8 * HOUR), 500, 8 * HOUR);
      const badId = newSnapshotId(new Date(Date.now() - 9 * HOUR));
      await store.put(`snapshots/${badId}.ndjson.zst`, Buffer.from('this is not a manifest'));
      const r = await runCli(['prune', '--repo', repoDir], { env });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`prune refused: manifest snapshots/${badId.replace(/\./g, '\\.')}\\.ndjson\\.zst cannot be read`));
      assert.match(r.stderr, /nothing was deleted/);
      assert.ok(fs.existsSync(path.join(repoDir, garbage)));
      // forget still removes what its policy says, then reports the refused prune.
      const f = await runCli(['forget', '--repo', repoDir, '--keep-last', '1', '--json'], { env });
      assert.equal(f.code, 1);
      const doc = json(f.stdout);
      assert.equal(doc.ok, false);
      assert.deepEqual(
        doc.damaged.map((d: any) => d.id),
        [badId],
      );
      assert.match(doc.error.message, /prune refused/);
      assert.ok(fs.existsSync(path.join(repoDir, garbage)));
      // Without the damaged manifest, prune goes ahead.
      await store.delete([`snapshots/${badId}.ndjson.zst`]);
      const ok = await prune(await Repository.open(store));
      assert.deepEqual(
        ok.archives.deleted.map((o) => o.key),
        [garbage],
      );
    });
  });

  describe('locks', { concurrency: 1 }, () => {
    test('a live exclusive lock blocks a second prune (and forget); a dry run still works', async () => {
      const src = makeSource();
      const repoDir = path.join(work, 'repo-lock');
      const store = new LocalStore(repoDir);
      await full(store, src);
      await full(store, src);
      const garbage = fakeArchive(repoDir, new Date(Date.now() - 8 * HOUR), 100, 8 * HOUR);
      const held = await acquireExclusiveLock(store, 'prune');
      try {
        const r = await runCli(['prune', '--repo', repoDir], { env });
        assert.equal(r.code, 1, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(`is locked: prune needs an exclusive lock, but prune \\(exclusive\\) by pid ${process.pid}.* on ${os.hostname()}`),
        );
        assert.match(r.stderr, /s3backup unlock/);
        assert.ok(fs.existsSync(path.join(repoDir, garbage)), 'nothing deleted');
        await assert.rejects(forget(await Repository.open(store), { policy: { last: 1 } }), RepositoryLockedError);
        assert.equal((await keys(store, 'snapshots/')).length, 2);
        const dry = await prune(await Repository.open(store), { dryRun: true });
        assert.deepEqual(
          dry.archives.deleted.map((o) => o.key),
          [garbage],
        );
        // In-process, too: the holder is named.
        await assert.rejects(
          acquireExclusiveLock(store, 'forget'),
          (e: unknown) => e instanceof RepositoryLockedError && e.holder.id === held.id,
        );
        await assert.rejects(acquireSharedLock(store), RepositoryLockedError);
      } finally {
        await held.release();
      }
      const r = await prune(await Repository.open(store));
      assert.deepEqual(
        r.archives.deleted.map((o) => o.key),
        [garbage],
      );
    });

    test('shared locks (backups) coexist, and keep forget and prune out', async () => {
      const repoDir = path.join(work, 'repo-shared-lock');
      const store = new LocalStore(repoDir);
      await full(store, makeSource());
      const s1 = await acquireSharedLock(store, 'backup');
      const s2 = await acquireSharedLock(store, 'backup');
      try {
        const r = await runCli(['forget', '--repo', repoDir, '--keep-last', '1'], { env });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /forget needs an exclusive lock, but backup \(shared\)/);
        await assert.rejects(prune(await Repository.open(store)), RepositoryLockedError);
      } finally {
        await s1.release();
        await s2.release();
      }
      // Waiting: a shared lock taken once the exclusive holder is done.
      const ex = await acquireExclusiveLock(store, 'prune');
      setTimeout(() => void ex.release(), 300);
      const waited = await acquireSharedLock(store, 'backup', { waitMs: 5000, pollMs: 50 });
      await waited.release();
      assert.deepEqual(await listLocks(store), []);
    });

    test('a holder refreshes its lock while it runs, and notices when unlock --all took it away', async () => {
      const repoDir = path.join(work, 'repo-refresh');
      const store = new LocalStore(repoDir);
      await full(store, makeSource());
      // Refreshes every 250 ms keep a 3 s TTL alive; generous, so a loaded machine (slow fsyncs,
      // late timers) does not make a live lock look stale.
      const lock = await acquireExclusiveLock(store, 'prune', { ttlMs: 3000, refreshMs: 250 });
      try {
        const firstExpiry = lock.info.expires;
        await sleep(3500); // longer than the TTL: only refreshes keep it live
        const [status] = await listLocks(store);
        assert.equal(status?.id, lock.id);
        assert.equal(status?.stale, false, 'refreshed, so still live');
        assert.ok(status!.info!.expires > firstExpiry);
        await assert.rejects(prune(await Repository.open(store)), RepositoryLockedError);
      } finally {
        await lock.release();
      }
      assert.deepEqual(await listLocks(store), []);
      // (Default refresh interval here, so no refresh races the removal.)
      const taken = await acquireExclusiveLock(store, 'prune');
      try {
        await taken.check();
        assert.deepEqual(
          (await removeLocks(store, { all: true })).removed.map((l) => l.id),
          [taken.id],
        );
        await assert.rejects(taken.check(), /was removed by someone else/);
        assert.throws(() => taken.assertHeld(), /nothing more is deleted/);
      } finally {
        await taken.release();
      }
    });

    test('stale locks are ignored; unlock removes them; --all removes live ones with a warning', async () => {
      const repoDir = path.join(work, 'repo-unlock');
      const store = new LocalStore(repoDir);
      await full(store, makeSource());
      const write = async (id: string, info: object) => store.put(lockKey(id), Buffer.from(JSON.stringify(info)));
      const past = new Date(Date.now() - HOUR).toISOString();
      const future = new Date(Date.now() + HOUR).toISOString();
      const base = { format: 's3backup-lock', command: 'prune', exclusive: true, time: past };
      // Expired (another host), and taken on this host by a process that is gone.
      const expiredId = newSnapshotId(new Date(Date.now() - 2 * HOUR));
      await write(expiredId, { ...base, id: expiredId, host: 'elsewhere', pid: 1, expires: past });
      const gone = spawn(process.execPath, ['-e', '0']);
      const gonePid = gone.pid!;
      await new Promise((resolve) => gone.on('exit', resolve));
      const goneId = newSnapshotId(new Date(Date.now() - HOUR));
      await write(goneId, { ...base, id: goneId, host: os.hostname(), pid: gonePid, expires: future });
      const locks = await listLocks(store);
      assert.deepEqual(
        locks.map((l) => [l.id, l.stale, l.staleReason]).sort(),
        [
          [expiredId, true, 'expired'],
          [goneId, true, 'process gone'],
        ].sort(),
      );
      await prune(await Repository.open(store)); // stale locks do not block

      // A live one (another host, not expired).
      const liveId = newSnapshotId();
      await write(liveId, { ...base, id: liveId, host: 'otherhost', pid: 4242, expires: future });
      const blocked = await runCli(['prune', '--repo', repoDir], { env });
      assert.equal(blocked.code, 1);
      assert.match(blocked.stderr, /by pid 4242 on otherhost/);

      const u = await runCli(['unlock', '--repo', repoDir, '--json'], { env });
      assert.equal(u.code, 0, u.stderr);
      const doc = json(u.stdout);
      assert.deepEqual(doc.removed.map((l: any) => l.id).sort(), [expiredId, goneId].sort());
      assert.deepEqual(
        doc.kept.map((l: any) => l.id),
        [liveId],
      );
      assert.deepEqual(await keys(store, 'locks/'), [lockKey(liveId)]);

      const all = await runCli(['unlock', '--repo', repoDir, '--all'], { env });
      assert.equal(all.code, 0, all.stderr);
      assert.match(all.stdout, /removed live lock: prune \(exclusive\) by pid 4242 on otherhost/);
      assert.match(all.stderr, /warning: removed 1 live lock/);
      assert.deepEqual(await keys(store, 'locks/'), []);
      await prune(await Repository.open(store));
    });
  });

  describe('kill -9 in the middle of a prune', { concurrency: 1 }, () => {
    test('every kept backup still restores; the next prune finishes the job', async (t) => {
      const src = makeSource(3);
      const repoDir = path.join(work, 'repo-kill');
      const store = new LocalStore(repoDir);
      const kept = [await full(store, src), await full(store, src)];
      // Lots of unreferenced archives, so the deletions take long enough to be interrupted (3,000
      // were once all gone before the kill landed, on a CI machine busy with other test files).
      const GARBAGE = 10_000;
      const archivesDir = path.join(repoDir, 'archives');
      const t0 = Date.parse('2020-01-01T00:00:00Z');
      for (let i = 0; i < GARBAGE; i++) fs.writeFileSync(path.join(archivesDir, `${newSnapshotId(new Date(t0 + i))}.tar.zst`), 'x');
      const keptArchives = new Set(kept.map((b) => path.basename(b.archiveKey)));

      const child = spawn(process.execPath, [BIN, 'prune', '--repo', repoDir, '--grace', '0'], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.on('close', (code, signal) => resolve({ code, signal })),
      );
      // Kill it as soon as the first archive disappears (prune only deletes in there: any event
      // is a deletion, and listing 10,000 names per event would only delay the kill).
      const watcher = fs.watch(archivesDir, () => child.kill('SIGKILL'));
      const { code, signal } = await exited;
      watcher.close();
      assert.equal(signal, 'SIGKILL', `prune was killed (exit ${code}): ${stderr}`);
      const left = fs.readdirSync(archivesDir).filter((n) => !keptArchives.has(n)).length;
      assert.ok(left > 0 && left < GARBAGE, `killed in the middle: ${left} of ${GARBAGE} unreferenced archives left`);
      t.diagnostic(`killed with ${left} of ${GARBAGE} unreferenced archives left`);
      for (const b of kept) {
        assert.ok(fs.existsSync(path.join(repoDir, b.archiveKey)));
        await restoresAs(store, b.id, src);
      }
      // Its lock stays behind, but its process is gone: stale, so the next prune runs.
      const locks = await listLocks(store);
      assert.equal(locks.length, 1);
      assert.equal(locks[0]!.staleReason, 'process gone');
      const again = await prune(await Repository.open(store), { graceMs: 0 });
      assert.equal(again.archives.deleted.length, left);
      assert.deepEqual(fs.readdirSync(archivesDir).sort(), [...keptArchives].sort());
      for (const b of kept) await restoresAs(store, b.id, src);
      const u = await removeLocks(store);
      assert.deepEqual(
        u.removed.map((l) => l.staleReason),
        ['process gone'],
      );
      assert.deepEqual(await listLocks(store), []);
    });
  });

  describe('on S3 (Ceph RGW)', { concurrency: 1 }, () => {
    let bucket = '';
    after(async () => {
      if (bucket) await deleteTestBucket(bucket);
    });

    test("forget + prune delete exactly the removed backups' archives; a stale multipart upload is aborted", async () => {
      bucket = await createTestBucket('forget-prune');
      const s3env = { ...env, ...s3CliEnv() };
      const url = `s3://${bucket}/repo`;
      const store = testS3Store(bucket, 'repo');
      try {
        const src = makeSource(4);
        const backups = [await full(store, src), await full(store, src), await full(store, src)];
        // An upload a killed backup left behind (a part uploaded, never completed).
        const client = testS3Client();
        const stuckKey = `archives/${newSnapshotId(new Date(Date.now() - 60_000))}.tar.zst`;
        let uploadId: string;
        try {
          const up = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: `repo/${stuckKey}` }));
          uploadId = up.UploadId!;
          await client.send(
            new UploadPartCommand({
              Bucket: bucket,
              Key: `repo/${stuckKey}`,
              UploadId: uploadId,
              PartNumber: 1,
              Body: Buffer.alloc(1024, 1),
            }),
          );
        } finally {
          client.destroy();
        }
        const uploads = async () => {
          const out: string[] = [];
          for await (const u of store.listMultipartUploads()) out.push(u.uploadId);
          return out;
        };
        assert.deepEqual(await uploads(), [uploadId]);

        const r = await runCli(['forget', '--repo', url, '--keep-last', '1', '--json'], { env: s3env });
        assert.equal(r.code, 0, r.stderr);
        const doc = json(r.stdout);
        assert.deepEqual(
          doc.removed,
          backups.slice(0, 2).map((b) => b.id),
        );
        assert.deepEqual(
          doc.prune.archives.deleted.map((o: any) => o.key).sort(),
          backups
            .slice(0, 2)
            .map((b) => b.archiveKey)
            .sort(),
        );
        // The upload is younger than the grace period: left alone.
        assert.deepEqual(doc.prune.uploads.aborted, []);
        assert.deepEqual(
          doc.prune.uploads.recent.map((u: any) => u.uploadId),
          [uploadId],
        );
        assert.deepEqual(await uploads(), [uploadId]);
        assert.deepEqual(await keys(store, 'archives/'), [backups[2]!.archiveKey]);
        assert.deepEqual(await keys(store, 'snapshots/'), [backups[2]!.manifestKey]);
        assert.deepEqual(await keys(store, 'locks/'), []);

        // Once it is older than the grace period, prune aborts it.
        await sleep(1500);
        const p = await runCli(['prune', '--repo', url, '--grace', '1s', '--json'], { env: s3env });
        assert.equal(p.code, 0, p.stderr);
        const pd = json(p.stdout);
        assert.deepEqual(
          pd.uploads.aborted.map((u: any) => [u.key, u.uploadId]),
          [[stuckKey, uploadId]],
        );
        assert.deepEqual(await uploads(), []);
        assert.deepEqual(pd.archives.deleted, []);
        await restoresAs(store, backups[2]!.id, src);

        // Library: a live lock on S3 blocks prune, and forget's dry run needs none.
        const held = await acquireExclusiveLock(store, 'forget');
        try {
          await assert.rejects(prune(await Repository.open(store)), /is locked: prune needs an exclusive lock, but forget \(exclusive\)/);
          const dry = await forget(await Repository.open(store), { policy: { last: 1 }, dryRun: true });
          assert.deepEqual(dry.removed, []);
        } finally {
          await held.release();
        }
        assert.deepEqual(await keys(store, 'locks/'), []);
      } finally {
        await store.close();
      }
    });
  });
});

test('archiveIdOf reads the backup id back from every archive key a repository writes, and from nothing else', async () => {
  const id = newSnapshotId(new Date('2026-11-26T09:50:33.123Z'));
  for (const encrypted of [false, true]) {
    for (const codec of CODECS) {
      for (const part of [1, 2, 12]) {
        const key = `${ARCHIVES}${archiveName(id, part)}${ARCHIVE_SUFFIX[codec]}${encrypted ? ENCRYPTED_SUFFIX : ''}`;
        assert.equal(archiveIdOf(key), id, key);
      }
    }
  }
  for (const other of [
    `snapshots/${id}.ndjson.zst`,
    `archives/${id}.0.tar.zst`,
    `archives/${id}.tar.zst.tmp`,
    'archives/x.tar.zst',
    `archives/sub/${id}.tar`,
    `${id}.tar`,
  ]) {
    assert.equal(archiveIdOf(other), undefined, other);
  }
});
