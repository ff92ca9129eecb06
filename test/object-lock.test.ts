// S3 Object Lock on Ceph RGW (which implements it): init detects a lock-enabled bucket and
// records the retention; backups write archives and manifests with retain-until; a delete of a
// locked version fails on the server; forget + prune report the locked versions instead of
// failing, the kept backups still restore, and nothing a lock protects is gone.
// GOVERNANCE mode, so that the test can clean up with x-amz-bypass-governance-retention.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
} from '@aws-sdk/client-s3';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Client } from './helpers/s3.ts';
import { diffTrees, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('objlock');
const client = testS3Client();
const lockBucket = `objlock-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
let plainBucket = '';

before(async () => {
  await client.send(new CreateBucketCommand({ Bucket: lockBucket, ObjectLockEnabledForBucket: true }));
  plainBucket = await createTestBucket('objlock-plain');
});

after(async () => {
  // Every version, with the governance bypass (what an administrator could do; COMPLIANCE could not).
  for (let round = 0; round < 100; round++) {
    const v = await client.send(new ListObjectVersionsCommand({ Bucket: lockBucket }));
    const all = [...(v.Versions ?? []), ...(v.DeleteMarkers ?? [])];
    if (all.length === 0) break;
    for (const o of all) {
      await client.send(
        new DeleteObjectCommand({ Bucket: lockBucket, Key: o.Key!, VersionId: o.VersionId!, BypassGovernanceRetention: true }),
      );
    }
  }
  await client.send(new DeleteBucketCommand({ Bucket: lockBucket }));
  await deleteTestBucket(plainBucket);
  client.destroy();
  fs.rmSync(work, { recursive: true, force: true });
});

const env = () => isolatedEnv(path.join(work, 'home'), s3CliEnv());

async function versionsOf(key: string) {
  const v = await client.send(new ListObjectVersionsCommand({ Bucket: lockBucket, Prefix: key }));
  return { versions: (v.Versions ?? []).filter((x) => x.Key === key), markers: (v.DeleteMarkers ?? []).filter((x) => x.Key === key) };
}

test('init detects Object Lock; --object-lock-days on a bucket without it is refused before anything is written', async () => {
  const plain = await runCli(['init', '--repo', `s3://${plainBucket}/r`, '--object-lock-days', '1', '--object-lock-mode', 'GOVERNANCE'], {
    env: env(),
  });
  assert.equal(plain.code, 2, plain.stderr);
  assert.match(plain.stderr, /does not have Object Lock enabled/);
  const r = await runCli(['init', '--repo', `s3://${plainBucket}/r`, '--json'], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(json(r.stdout).objectLock, { bucketEnabled: false });
  const onLock = await runCli(['init', '--repo', `s3://${lockBucket}/detect`], { env: env() });
  assert.equal(onLock.code, 0, onLock.stderr);
  assert.match(onLock.stdout, /Object Lock: enabled on the bucket; give --object-lock-days to backups to use it/);
});

test('archives and manifests are locked until retain-until; deleting a locked version fails; prune reports locked versions and does not fail', async () => {
  const repo = `s3://${lockBucket}/repo`;
  const init = await runCli(['init', '--repo', repo, '--object-lock-days', '1', '--object-lock-mode', 'GOVERNANCE', '--json'], {
    env: env(),
  });
  assert.equal(init.code, 0, init.stderr);
  assert.deepEqual(json(init.stdout).objectLock, { bucketEnabled: true, days: 1, mode: 'GOVERNANCE' });

  const src = path.join(work, 'src', 'data');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'b.bin'), pseudoRandom(3 << 20, 8));
  const ids: string[] = [];
  for (let i = 0; i < 2; i++) {
    fs.writeFileSync(path.join(src, 'v.txt'), `version ${i}\n`);
    const t0 = Date.now();
    const b = await runCli(['backup', src, '--repo', repo, '--no-forget', '--full', '--json'], { env: env() });
    assert.equal(b.code, 0, b.stderr);
    const doc = json(b.stdout);
    ids.push(doc.id);
    for (const key of [doc.archiveKey, doc.manifestKey]) {
      const h = await client.send(new HeadObjectCommand({ Bucket: lockBucket, Key: `repo/${key}` }));
      assert.equal(h.ObjectLockMode, 'GOVERNANCE', key);
      const until = h.ObjectLockRetainUntilDate!.getTime();
      assert.ok(Math.abs(until - (t0 + 86_400_000)) < 120_000, `${key} retained until ${h.ObjectLockRetainUntilDate!.toISOString()}`);
    }
  }
  const firstArchive = `repo/archives/${ids[0]}.tar.zst`;
  const firstManifest = `repo/snapshots/${ids[0]}.ndjson.zst`;

  // The server refuses to delete a locked version.
  const { versions } = await versionsOf(firstArchive);
  assert.equal(versions.length, 1);
  await assert.rejects(
    client.send(new DeleteObjectCommand({ Bucket: lockBucket, Key: firstArchive, VersionId: versions[0]!.VersionId! })),
    (e: Error) => e.name === 'AccessDenied',
  );

  // forget the first backup and prune: the run succeeds and names what the lock keeps.
  const f = await runCli(['forget', '--repo', repo, '--keep-last', '1', '--grace', '0', '--json'], { env: env() });
  assert.equal(f.code, 0, f.stderr + f.stdout);
  const doc = json(f.stdout);
  assert.deepEqual(doc.removed, [ids[0]]);
  const locked = doc.prune.versions.locked.map((l: { key: string }) => l.key).sort();
  assert.deepEqual(locked, [`archives/${ids[0]}.tar.zst`, `snapshots/${ids[0]}.ndjson.zst`]);
  assert.ok(doc.prune.versions.deleted > 0, 'unlocked old versions (probes, locks) were deleted');
  for (const l of doc.prune.versions.locked) {
    assert.equal(l.mode, 'GOVERNANCE');
    assert.ok(Date.parse(l.retainUntil) > Date.now(), l.retainUntil);
  }
  // The locked bytes are still there (behind delete markers); the kept backup restores.
  for (const key of [firstArchive, firstManifest]) assert.equal((await versionsOf(key)).versions.length, 1, key);
  const list = await runCli(['list', '--repo', repo, '--json'], { env: env() });
  assert.deepEqual(
    json(list.stdout).backups.map((b: { id: string }) => b.id),
    [ids[1]],
  );
  const t = path.join(work, 'restore');
  const r = await runCli(['restore', 'latest', '--target', t, '--repo', repo], { env: env() });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(diffTrees(src, path.join(t, 'data')), []);

  // Text output says the same, and a second prune is just as calm.
  const p = await runCli(['prune', '--repo', repo, '--grace', '0'], { env: env() });
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /Object Lock keeps 2 object version\(s\) no backup needs: .*\(GOVERNANCE until 20/);
  assert.match(p.stdout, /a prune after their retention ends removes them/);
  // What no lock protects is really gone: the write probes' and old locks' versions.
  const probes = await client.send(new ListObjectVersionsCommand({ Bucket: lockBucket, Prefix: 'repo/.probe-' }));
  assert.equal((probes.Versions ?? []).length + (probes.DeleteMarkers ?? []).length, 0, 'probe versions purged');
  const locks = await client.send(new ListObjectVersionsCommand({ Bucket: lockBucket, Prefix: 'repo/locks/' }));
  assert.ok((locks.Versions ?? []).length <= 1, `lock versions left: ${(locks.Versions ?? []).length} (only this prune's own)`);
});
