// A backup killed mid-upload leaves no backup: the repository lists exactly what it listed
// before, and the previous backup still restores. Ctrl-C (SIGINT) also aborts the S3 multipart
// upload; SIGKILL cannot, and leaves it for prune.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { Repository } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import type { Store } from '../src/store/store.ts';
import type { S3Store } from '../src/store/s3.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Store } from './helpers/s3.ts';
import { BIN, diffTrees, isolatedEnv, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('interrupt');
const env = isolatedEnv(path.join(work, 'home'));
const small = path.join(work, 'small');
fs.mkdirSync(small);
fs.writeFileSync(path.join(small, 'keep.txt'), 'the previous backup\n');
// Big and incompressible, so the upload takes long enough to be interrupted.
const big = path.join(work, 'big');
fs.mkdirSync(big);
for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(big, `blob-${i}.bin`), pseudoRandom(48 << 20, 1000 + i));

after(() => fs.rmSync(work, { recursive: true, force: true }));

/** Run the CLI with `args`, wait until `ready()` says it is under way, then send `signal`. */
async function interrupted(args: string[], extraEnv: NodeJS.ProcessEnv, ready: () => Promise<boolean>, signal: NodeJS.Signals) {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let sent = false;
  for (let i = 0; i < 600 && child.exitCode === null; i++) {
    if (await ready()) {
      child.kill(signal);
      sent = true;
      break;
    }
    await sleep(25);
  }
  const code = await exited;
  assert.ok(sent, `${args[0]} finished before it could be interrupted (exit ${code}): ${stderr}`);
  return { code, stderr, pid: child.pid! };
}

/** A backup of the big tree, interrupted once `ready()` says data is flowing. */
function interruptedBackup(repo: string, extraEnv: NodeJS.ProcessEnv, ready: () => Promise<boolean>, signal: NodeJS.Signals) {
  return interrupted(['backup', big, '--repo', repo, '--compression', 'none'], extraEnv, ready, signal);
}

async function listIds(store: Store): Promise<string[]> {
  return (await Repository.open(store)).snapshotIds();
}

describe('interrupted backups', () => {
  test('local store: SIGKILL mid-write leaves no backup; the previous one restores', async () => {
    const repoDir = path.join(work, 'local-repo');
    const first = await runCli(['backup', small, '--repo', repoDir, '--json'], { env });
    assert.equal(first.code, 0, first.stderr);
    const store = new LocalStore(repoDir);
    const before = await listIds(store);
    const archives = path.join(repoDir, 'archives');
    // Its own temporary directory, to see what the killed backup leaves there.
    const tmp = path.join(work, 'tmp');
    fs.mkdirSync(tmp);
    const { code, pid } = await interruptedBackup(
      repoDir,
      { TMPDIR: tmp },
      async () => {
        // A temporary archive file with data in it means the upload is under way.
        const names = fs.existsSync(archives) ? fs.readdirSync(archives) : [];
        return names.some((n) => n.startsWith('.tmp-') && fs.statSync(path.join(archives, n)).size > 8 << 20);
      },
      'SIGKILL',
    );
    assert.equal(code, null, 'killed by the signal');
    assert.deepEqual(await listIds(store), before);
    const target = tempDir('after-kill');
    await runRestore({ store, snapshot: 'latest', target });
    assert.deepEqual(diffTrees(small, path.join(target, 'small')), []);
    // Its entries went to the store as segments while it ran: no partly written manifest is
    // left in the temp dir. What it had read is (the other group's manifest, its segments and
    // the content index built from them, for content stored once); the next s3backup process
    // removes it (test/temp-dirs.test.ts), and the next backup leaves nothing of its own.
    const left = () => fs.readdirSync(tmp).filter((n) => n.startsWith('s3backup-'));
    const reading = /^s3backup-(manifest|segments|content)-/;
    assert.deepEqual(
      left().filter((n) => !reading.test(n)),
      [],
      `left in the temp dir by ${pid}`,
    );
    const next = await runCli(['backup', small, '--repo', repoDir, '--json'], { env: { ...env, TMPDIR: tmp } });
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(left(), []);
  });

  test('SIGINT mid-restore: exit 1 naming the partly restored target; restoring again with --overwrite completes it', async () => {
    const repoDir = path.join(work, 'restore-repo');
    const backup = await runCli(['backup', big, '--repo', repoDir, '--compression', 'none'], { env });
    assert.equal(backup.code, 0, backup.stderr);
    const target = path.join(work, 'restore-target');
    const restored = path.join(target, 'big');
    // Interrupted once the first file is being written.
    const { code, stderr } = await interrupted(
      ['restore', 'latest', '--repo', repoDir, '--target', target],
      {},
      async () => fs.existsSync(restored) && fs.readdirSync(restored).length > 0,
      'SIGINT',
    );
    assert.equal(code, 1, stderr);
    assert.match(
      stderr,
      new RegExp(
        `error: restore interrupted: ${target.replace(/[/.]/g, '\\$&')} holds part of the backup\n  hint: run the same restore again with --overwrite`,
      ),
    );
    assert.ok(fs.readdirSync(restored).length < 6, 'interrupted before the end');
    const again = await runCli(['restore', 'latest', '--repo', repoDir, '--target', target, '--overwrite'], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(diffTrees(big, restored), []);
  });

  describe('on S3 (Ceph RGW)', () => {
    const s3env = s3CliEnv();
    let bucket = '';
    after(async () => {
      if (bucket) await deleteTestBucket(bucket);
    });

    async function uploads(store: S3Store): Promise<number> {
      let n = 0;
      for await (const _ of store.listMultipartUploads()) n++;
      return n;
    }

    test('SIGKILL mid-upload: no backup listed, the previous one restores', async () => {
      bucket = await createTestBucket('interrupt');
      const url = `s3://${bucket}/repo`;
      const store = testS3Store(bucket, 'repo');
      const first = await runCli(['backup', small, '--repo', url], { env: { ...env, ...s3env } });
      assert.equal(first.code, 0, first.stderr);
      const before = await listIds(store);
      assert.equal(before.length, 1);
      const { code } = await interruptedBackup(url, s3env, async () => (await uploads(store)) > 0, 'SIGKILL');
      assert.equal(code, null);
      assert.deepEqual(await listIds(store), before);
      const target = tempDir('after-kill-s3');
      await runRestore({ store, snapshot: 'latest', target });
      assert.deepEqual(diffTrees(small, path.join(target, 'small')), []);
      // What a kill leaves: an incomplete multipart upload (for prune), never a manifest.
      assert.ok((await uploads(store)) >= 1);
      for await (const u of store.listMultipartUploads()) await store.abortMultipartUpload(u.key, u.uploadId);
      await store.close();
    });

    test('SIGINT mid-upload: exits non-zero, records nothing, aborts its multipart upload', async () => {
      const url = `s3://${bucket}/repo`;
      const store = testS3Store(bucket, 'repo');
      const before = await listIds(store);
      const { code, stderr } = await interruptedBackup(url, s3env, async () => (await uploads(store)) > 0, 'SIGINT');
      assert.equal(code, 1, stderr);
      assert.match(stderr, /interrupted; nothing was recorded/);
      assert.deepEqual(await listIds(store), before);
      assert.equal(await uploads(store), 0, 'the multipart upload was aborted');
      let archives = 0;
      for await (const o of store.list('archives/')) if (!before.some((id) => o.key.includes(id))) archives++;
      assert.equal(archives, 0, 'no archive of the interrupted run is left');
      await store.close();
    });
  });
});
