// s3backup copy, end to end through the real CLI: a local plain repository into an encrypted one
// on Ceph, and that one back into a local plain one (and into a second encrypted one with
// another passphrase); every copied backup restores byte-exact and passes verify --deep, an
// archive listed by two backups is sent once, run records come along, retention stays separate,
// and a copy stopped midway (before a manifest, or between backups) is resumed without sending
// again what is already there.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { copyBackups } from '../src/backup/copy.ts';
import { readHistory } from '../src/monitor/history.ts';
import { Repository } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, s3TestConfig, testS3Store } from './helpers/s3.ts';
import { diffTrees, isolatedEnv, json, makeTree, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('copy');
const PASS = 'copy test passphrase one';
const PASS2 = 'copy test passphrase two';
let bucket: string;

before(async () => {
  bucket = await createTestBucket('copy');
  fs.writeFileSync(path.join(work, 'pass1'), `${PASS}\n`);
  fs.writeFileSync(path.join(work, 'pass2'), `${PASS2}\n`);
});
after(async () => {
  await deleteTestBucket(bucket);
  fs.rmSync(work, { recursive: true, force: true });
});

function env(): NodeJS.ProcessEnv {
  return isolatedEnv(path.join(work, 'home'), { ...s3CliEnv() });
}

async function cli(...args: string[]): Promise<string> {
  const r = await runCli(args, { env: env() });
  assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

/** A tree of every entry type, with a 9 MiB random file over three frames. */
function makeSource(name: string): string {
  const dir = path.join(work, name, 'data');
  makeTree(dir);
  fs.writeFileSync(path.join(dir, 'random-9m.bin'), pseudoRandom(9 << 20, 7));
  return dir;
}

async function backup(repo: string, src: string, pass?: string): Promise<string> {
  const p = pass ? ['--password-file', pass] : [];
  return json(await cli('backup', src, '--repo', repo, '--json', '--no-forget', ...p)).id as string;
}

/** Restore `id` from `repo` and compare with `src`; then verify --deep. */
async function checkRestores(repo: string, id: string, src: string, pass?: string): Promise<void> {
  const p = pass ? ['--password-file', pass] : [];
  const target = path.join(work, 'restores', `${id}-${Math.random().toString(36).slice(2)}`);
  await cli('restore', id, '--target', target, '--repo', repo, ...p);
  assert.deepEqual(diffTrees(src, path.join(target, 'data')), []);
  const v = json(await cli('verify', id, '--deep', '--repo', repo, '--json', ...p));
  assert.equal(v.ok, true, JSON.stringify(v));
  assert.deepEqual(v.problems, []);
}

async function copy(from: string, to: string, args: string[], pass?: { from?: string; to?: string }) {
  const p = [...(pass?.from ? ['--password-file', pass.from] : []), ...(pass?.to ? ['--to-password-file', pass.to] : [])];
  return json(await cli('copy', ...args, '--repo', from, '--to', to, '--json', ...p));
}

describe('copy between repositories', { concurrency: false }, () => {
  const local = path.join(work, 'local-plain');
  const s3 = () => `s3://${bucket}/enc`;
  const back = path.join(work, 'local-back');
  const src = makeSource('src');
  const ids: string[] = [];
  const trees: string[] = [];

  test('local plain → Ceph encrypted: every backup, archives shared by an incremental sent once', async () => {
    ids.push(await backup(local, src));
    // The first backup's tree as the tool restores it from the source repository (checked against the source).
    const snap1 = path.join(work, 'snap1');
    await cli('restore', ids[0]!, '--target', snap1, '--repo', local);
    assert.deepEqual(diffTrees(src, path.join(snap1, 'data')), []);
    trees.push(path.join(snap1, 'data'));
    fs.writeFileSync(path.join(src, 'added.txt'), 'a file of the second backup\n');
    ids.push(await backup(local, src));
    trees.push(src);
    await cli('init', '--repo', s3(), '--encrypt', '--scrypt-n', '16384', '--password-file', path.join(work, 'pass1'));

    const dry = await copy(local, s3(), ['--all', '--dry-run'], { to: path.join(work, 'pass1') });
    assert.deepEqual(dry.copied, ids);
    assert.equal(dry.archivesCopied, 0);
    assert.deepEqual(await Repository.backupIds(testS3Store(bucket, 'enc')), []);

    const r = await copy(local, s3(), ['--all'], { to: path.join(work, 'pass1') });
    assert.deepEqual(r.copied, ids);
    // The incremental lists the first backup's archive and its own: two archives, each sent once.
    assert.equal(r.archivesCopied, 2);
    assert.equal(r.runRecords, 2);
    const to = await Repository.open(testS3Store(bucket, 'enc'), { passphrase: PASS });
    assert.deepEqual(await to.snapshotIds(), ids);
    const history = await readHistory(to.store, { crypto: to.historyCrypto() });
    assert.deepEqual(
      history.map((h) => h.id),
      ids,
    );
    for (const [i, id] of ids.entries()) await checkRestores(s3(), id, trees[i]!, path.join(work, 'pass1'));

    const again = await copy(local, s3(), ['--all'], { to: path.join(work, 'pass1') });
    assert.deepEqual(again.copied, []);
    assert.deepEqual(again.present, ids);
  });

  test('Ceph encrypted → local plain; forget on one leaves the other', async () => {
    await cli('init', '--repo', back);
    const r = await copy(s3(), back, [ids[1]!], { from: path.join(work, 'pass1') });
    assert.deepEqual(r.copied, [ids[1]]);
    assert.equal(r.archivesCopied, 2);
    await checkRestores(back, ids[1]!, trees[1]!);
    const all = await copy(s3(), back, ['--all'], { from: path.join(work, 'pass1') });
    assert.deepEqual(all.copied, [ids[0]]);
    assert.equal(all.archivesCopied, 0, 'the first backup archive came with the incremental');
    await checkRestores(back, ids[0]!, trees[0]!);

    await cli('forget', '--keep-last', '1', '--repo', back, '--no-prune');
    assert.deepEqual(await Repository.backupIds(new LocalStore(back)), [ids[1]]);
    assert.deepEqual(await Repository.backupIds(testS3Store(bucket, 'enc')), ids);
  });

  test('a stopped copy is resumed: encrypted → encrypted under another key, nothing sent twice', async () => {
    const other = path.join(work, 'local-enc');
    await cli('init', '--repo', other, '--encrypt', '--scrypt-n', '16384', '--password-file', path.join(work, 'pass2'));
    const from = await Repository.open(testS3Store(bucket, 'enc'), { passphrase: PASS });
    const to = await Repository.open(new LocalStore(other), { passphrase: PASS2 });
    // Stopped between the two backups: the first is listed, the second not.
    const ac = new AbortController();
    await assert.rejects(
      copyBackups({ from, to, signal: ac.signal, onProgress: (p) => (p.index === 1 ? ac.abort() : undefined) }),
      (e: Error) => e.name === 'AbortError',
    );
    assert.deepEqual(await to.snapshotIds(), [ids[0]]);
    // Killed after the archives and segments, before the manifest: what a copy stopped there leaves.
    const first = await copyBackups({ from, to, ids: [ids[1]!] });
    assert.equal(first.archivesCopied, 1);
    await to.store.delete([to.manifestKey(ids[1]!)]);
    assert.deepEqual(await to.snapshotIds(), [ids[0]]);

    const resumed = json(
      await cli(
        'copy',
        '--all',
        '--repo',
        s3(),
        '--to',
        other,
        '--json',
        '--password-file',
        path.join(work, 'pass1'),
        '--to-password-file',
        path.join(work, 'pass2'),
      ),
    );
    assert.deepEqual(resumed.copied, [ids[1]]);
    assert.equal(resumed.archivesCopied, 0);
    assert.equal(resumed.archivesPresent, 2);
    assert.equal(resumed.segmentBytesWritten, 0, 'the segments stored before the stop are not sent again');
    for (const [i, id] of ids.entries()) await checkRestores(other, id, trees[i]!, path.join(work, 'pass2'));
  });

  test("the scheduler's copy job (schedule --once copy) copies what copy.to lacks, from the config", async () => {
    const offsite = path.join(work, 'offsite');
    await cli('init', '--repo', offsite, '--encrypt', '--scrypt-n', '16384', '--password-file', path.join(work, 'pass2'));
    const config = path.join(work, 's3backup.yaml');
    fs.writeFileSync(
      config,
      `repository: ${local}\ncopy:\n  to: ${offsite}\n  passwordFile: ${path.join(work, 'pass2')}\nschedule:\n  copy: "0 4 * * *"\n`,
    );
    const once = await runCli(['schedule', '--once', 'copy', '--config', config], { env: env() });
    assert.equal(once.code, 0, once.stderr);
    assert.match(once.stdout + once.stderr, /copy to .*offsite: 2 backup\(s\) copied/);
    const to = await Repository.open(new LocalStore(offsite), { passphrase: PASS2 });
    assert.deepEqual(await to.snapshotIds(), ids);
    await checkRestores(offsite, ids[1]!, trees[1]!, path.join(work, 'pass2'));
    // copy.to is the copy command's default destination too.
    const again = json(await cli('copy', '--all', '--config', config, '--json'));
    assert.deepEqual(again.present, ids);
  });

  test('bad input: no --to, a missing destination, the same repository', async () => {
    const noTo = await runCli(['copy', '--all', '--repo', local], { env: env() });
    assert.equal(noTo.code, 2, noTo.stderr);
    assert.match(noTo.stderr, /--to/);
    const missing = await runCli(['copy', '--all', '--repo', local, '--to', path.join(work, 'nowhere')], { env: env() });
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /no s3backup repository at .*nowhere/);
    const same = await runCli(['copy', '--all', '--repo', local, '--to', local], { env: env() });
    assert.equal(same.code, 2, same.stderr);
    assert.match(same.stderr, /same repository/);
  });

  test('another provider: --to-endpoint, --to-region and --to-profile are the destination’s alone', async () => {
    // No S3 setting in the environment: the destination's endpoint and keys come only from the
    // flags (a credentials profile in a file of its own), the source is local.
    const c = s3TestConfig();
    const awsDir = path.join(work, 'aws');
    fs.mkdirSync(awsDir, { recursive: true });
    fs.writeFileSync(
      path.join(awsDir, 'credentials'),
      `[offsite]\naws_access_key_id = ${c.credentials.accessKeyId}\naws_secret_access_key = ${c.credentials.secretAccessKey}\n`,
      { mode: 0o600 },
    );
    const bare = isolatedEnv(path.join(work, 'home-bare'), {
      AWS_SHARED_CREDENTIALS_FILE: path.join(awsDir, 'credentials'),
      AWS_CONFIG_FILE: path.join(awsDir, 'config'),
    });
    const offsite = `s3://${bucket}/offsite`;
    const s3Flags = ['--endpoint', c.endpoint, '--region', c.region, '--profile', 'offsite'];
    const init = await runCli(['init', '--repo', offsite, ...s3Flags], { env: bare });
    assert.equal(init.code, 0, init.stderr);
    const toFlags = ['--to-endpoint', c.endpoint, '--to-region', c.region, '--to-profile', 'offsite'];
    // The flags are used: a closed port on loopback for an endpoint fails the copy, and nothing is listed there.
    const refused = await runCli(
      [
        'copy',
        '--all',
        '--repo',
        local,
        '--to',
        offsite,
        '--to-endpoint',
        'http://127.0.0.1:1',
        '--to-region',
        c.region,
        '--to-profile',
        'offsite',
      ],
      { env: bare },
    );
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.doesNotMatch(refused.stderr, /\n\s+at /);
    assert.deepEqual(await Repository.backupIds(testS3Store(bucket, 'offsite')), []);
    const r = await runCli(['copy', '--all', '--repo', local, '--to', offsite, ...toFlags, '--json'], { env: bare });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(json(r.stdout).copied, ids);
    const target = path.join(work, 'restores', 'offsite');
    const restored = await runCli(['restore', ids[1]!, '--repo', offsite, '--target', target, ...s3Flags], { env: bare });
    assert.equal(restored.code, 0, restored.stderr);
    assert.deepEqual(diffTrees(trees[1]!, path.join(target, 'data')), []);
  });
});
