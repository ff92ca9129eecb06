// Client-side encryption, against Ceph RGW through the real CLI: an encrypted repository backs
// up and restores (whole and one file by ranged reads), nothing readable is left in the bucket,
// a wrong or missing passphrase writes nothing, passphrases rotate without re-encrypting, and
// changed bytes in an archive frame or a manifest (flipped, reordered, swapped between archives,
// cut) are reported naming the object, never accepted.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { Repository } from '../src/repo/repository.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Client, testS3Store } from './helpers/s3.ts';
import { diffTrees, isolatedEnv, json, makeTree, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('crypto');
const PASS = 'correct horse battery staple';
const MARKER = 'PLAINTEXT-MARKER-7f3a9c';
let bucket: string;
const client = testS3Client();

before(async () => {
  bucket = await createTestBucket('crypto');
});
after(async () => {
  await deleteTestBucket(bucket);
  client.destroy();
  fs.rmSync(work, { recursive: true, force: true });
});

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return isolatedEnv(path.join(work, 'home'), { ...s3CliEnv(), S3BACKUP_PASSWORD: PASS, ...extra });
}

async function raw(key: string): Promise<Buffer> {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}
async function putRaw(key: string, body: Buffer): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}
async function listKeys(prefix: string): Promise<string[]> {
  const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key!).sort();
}

/** A source with a marker in a file name and in content; `full`: every entry type and multi-frame files. */
function makeSource(name: string, kind: 'full' | 'small' | 'random' = 'small'): string {
  const dir = path.join(work, name, 'data');
  if (kind === 'full') makeTree(dir);
  fs.mkdirSync(path.join(dir, 'docs'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'docs', 'readme.md'), '# readme\n'.repeat(1000));
  fs.writeFileSync(path.join(dir, `${MARKER}.txt`), `${MARKER}\n`.repeat(100));
  // 12 MiB of random bytes: frames 1 and 2 of the archive hold nothing else.
  if (kind === 'random') fs.writeFileSync(path.join(dir, 'random-12m.bin'), pseudoRandom(12 << 20, 99));
  return dir;
}

async function init(prefix: string, extra: string[] = [], e = env()): Promise<string> {
  const repo = `s3://${bucket}/${prefix}`;
  // A cheap scrypt (stored in the key file) keeps the many CLI runs here fast; the default is two lanes of 2^16.
  const r = await runCli(['init', '--repo', repo, '--encrypt', '--scrypt-n', '16384', ...extra], { env: e });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /encrypted, passphrase key [0-9a-f]{16}/);
  return repo;
}

async function backup(repo: string, src: string, extra: string[] = [], e = env()): Promise<string> {
  const r = await runCli(['backup', src, '--repo', repo, '--json', '--no-forget', ...extra], { env: e });
  assert.equal(r.code, 0, r.stderr);
  return json(r.stdout).id;
}

async function openRepo(prefix: string): Promise<Repository> {
  return Repository.open(testS3Store(bucket, prefix), { passphrase: PASS });
}

describe('encrypted repository on Ceph', { concurrency: true }, () => {
  test('init --encrypt, backup, list, ls, cat, restore; the bucket holds no plaintext', async () => {
    const src = makeSource('roundtrip', 'full');
    const repo = await init('roundtrip');
    // Unencrypted tar inside (compression none) so that only encryption can hide the marker.
    const id = await backup(repo, src, ['--compression', 'none']);
    const list = await runCli(['list', '--repo', repo, '--json'], { env: env() });
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      json(list.stdout).backups.map((b: { id: string }) => b.id),
      [id],
    );

    const keys = await listKeys('roundtrip/');
    assert.deepEqual(
      keys.map((k) =>
        k
          .replace(/[0-9a-f]{16}\.json$/, 'K.json')
          .replace(/-h[0-9a-f]{16}\.json\.enc$/, '-H.json.enc')
          .replace(/entries\/[0-9a-f]{64}\./, 'entries/SEGMENT.')
          .replace(id, 'ID'),
      ),
      [
        'roundtrip/archives/ID.tar.enc',
        'roundtrip/config.json',
        'roundtrip/entries/SEGMENT.ndjson.zst.enc', // the entries, sealed for their keyed id
        'roundtrip/history/runs/ID-H.json.enc', // the run record, sealed, no host name
        'roundtrip/keys/K.json',
        'roundtrip/snapshots/ID.ndjson.zst.enc',
      ],
    );
    for (const k of keys.filter((k) => !k.endsWith('.json'))) {
      const b = await raw(k);
      assert.equal(b.indexOf(MARKER), -1, `${k} holds the marker in plaintext`);
      assert.equal(b.indexOf('hello, world'), -1, `${k} holds file content in plaintext`);
    }
    const config = json((await raw('roundtrip/config.json')).toString());
    assert.equal(config.version, 2);
    assert.deepEqual(config.encryption, { scheme: 'aes-256-gcm-v1' });

    const ls = await runCli(['ls', 'latest', 'data/docs', '--repo', repo], { env: env() });
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /data\/docs\/readme\.md/);

    const cat = await runCli(['cat', 'latest', 'data/docs/readme.md', '--repo', repo], { env: env() });
    assert.equal(cat.code, 0, cat.stderr);
    assert.equal(cat.stdout, '# readme\n'.repeat(1000));
    // One file by ranged reads: at most the two frames around it, of an archive over 16 MiB.
    const archiveSize = (await raw(keys.find((k) => k.includes('/archives/'))!)).length;
    assert.ok(archiveSize > 16 << 20, `archive is ${archiveSize} bytes`);
    const target = path.join(work, 'roundtrip-restore');
    const one = await runCli(
      ['restore', id, '--target', path.join(work, 'one'), '--include', 'data/modes/script.sh', '--repo', repo, '--json'],
      { env: env() },
    );
    assert.equal(one.code, 0, one.stderr);
    const oneJson = json(one.stdout);
    assert.ok(oneJson.bytesFetched <= 2 * (4 << 20) + 64, `single-file restore fetched ${oneJson.bytesFetched} bytes`);
    assert.equal(oneJson.requests, 1);
    assert.equal(fs.readFileSync(path.join(work, 'one/data/modes/script.sh'), 'utf8'), '#!/bin/sh\necho hi\n');

    const r = await runCli(['restore', id, '--target', target, '--repo', repo], { env: env() });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(diffTrees(src, path.join(target, 'data')), []);
    const v = await runCli(['verify', id, '--deep', '--repo', repo, '--json'], { env: env() });
    assert.equal(v.code, 0, v.stdout);
    assert.equal(json(v.stdout).ok, true);

    // An incremental in the encrypted repository refers into the first archive.
    fs.writeFileSync(path.join(src, 'new.txt'), 'new file\n');
    const id2 = await backup(repo, src);
    const t2 = path.join(work, 'roundtrip-restore2');
    const r2 = await runCli(['restore', id2, '--target', t2, '--repo', repo], { env: env() });
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(diffTrees(src, path.join(t2, 'data')), []);
  });

  test('wrong passphrase: one clear error, exit 1, nothing written; no passphrase: exit 2', async () => {
    const src = makeSource('wrong');
    const repo = await init('wrong');
    await backup(repo, src);
    const before = await listKeys('wrong/');
    const bad = env({ S3BACKUP_PASSWORD: 'not the passphrase' });
    for (const args of [
      ['backup', src],
      ['list'],
      ['restore', 'latest', '--target', path.join(work, 'wrong-t')],
      ['verify', 'latest'],
      ['key', 'list'],
    ]) {
      const r = await runCli([...args, '--repo', repo], { env: bad });
      assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
      assert.match(r.stderr, /^s3backup: error: wrong passphrase for repository s3:\/\/[^ ]+\/wrong /);
      assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('s3backup: error')).length, 1);
      assert.ok(!r.stderr.includes('not the passphrase') && !r.stdout.includes('not the passphrase'), 'the passphrase is never printed');
    }
    assert.ok(!fs.existsSync(path.join(work, 'wrong-t')), 'restore created nothing');
    assert.deepEqual(await listKeys('wrong/'), before, 'nothing was written to the bucket');

    const none = await runCli(['list', '--repo', repo], { env: env({ S3BACKUP_PASSWORD: '' }) });
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /is encrypted: its passphrase is needed/);
    assert.match(none.stderr, /hint: set S3BACKUP_PASSWORD, use --password-file FILE/);

    // --password-file works, and wins over the variable.
    const pf = path.join(work, 'pass.txt');
    fs.writeFileSync(pf, `${PASS}\n`);
    const withFile = await runCli(['list', '--repo', repo, '--password-file', pf], { env: bad });
    assert.equal(withFile.code, 0, withFile.stderr);
  });

  test('key add / list / remove: a new passphrase opens the same data, the removed one no longer does', async () => {
    const src = makeSource('rotate');
    const repo = await init('rotate', ['--key-label', 'first']);
    const id = await backup(repo, src);
    const NEW = 'a whole new passphrase';
    const add = await runCli(['key', 'add', '--repo', repo, '--label', 'second', '--scrypt-n', '16384', '--json'], {
      env: env({ S3BACKUP_NEW_PASSWORD: NEW }),
    });
    assert.equal(add.code, 0, add.stderr);
    const newId = json(add.stdout).added.id;
    const list = await runCli(['key', 'list', '--repo', repo, '--json'], { env: env() });
    const keys = json(list.stdout).keys;
    assert.deepEqual(keys.map((k: { label: string }) => k.label).sort(), ['first', 'second']);
    const oldId = keys.find((k: { label: string }) => k.label === 'first').id;
    assert.equal(keys.find((k: { current: boolean }) => k.current).id, oldId, 'opened with the first passphrase');

    // The key that opened the repository cannot remove itself.
    const self = await runCli(['key', 'remove', oldId, '--repo', repo], { env: env() });
    assert.equal(self.code, 2);
    assert.match(self.stderr, /is the one that opened the repository now/);
    const rm = await runCli(['key', 'remove', oldId, '--repo', repo], { env: env({ S3BACKUP_PASSWORD: NEW }) });
    assert.equal(rm.code, 0, rm.stderr);
    const last = await runCli(['key', 'remove', newId.slice(0, 6), '--repo', repo], { env: env({ S3BACKUP_PASSWORD: NEW }) });
    assert.equal(last.code, 2);

    const old = await runCli(['list', '--repo', repo], { env: env() });
    assert.equal(old.code, 1);
    assert.match(old.stderr, /wrong passphrase/);
    const t = path.join(work, 'rotate-restore');
    const r = await runCli(['restore', id, '--target', t, '--repo', repo], { env: env({ S3BACKUP_PASSWORD: NEW }) });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(diffTrees(src, path.join(t, 'data')), []);
  });

  test('a flipped bit in an archive frame, reordered frames, frames from another archive: detected, naming the archive', async () => {
    const src = makeSource('tamper-a', 'random');
    const repo = await init('tamper-a');
    const id1 = await backup(repo, src, ['--full']);
    const id2 = await backup(repo, src, ['--full']);
    const r = await openRepo('tamper-a');
    const m1 = await r.loadManifest(id1);
    const m2 = await r.loadManifest(id2);
    const a1 = m1.archives[0]!;
    const a2 = m2.archives[0]!;
    await m1.dispose();
    await m2.dispose();
    const k1 = `tamper-a/${a1.key}`;
    const k2 = `tamper-a/${a2.key}`;
    const orig1 = await raw(k1);
    const starts = [0];
    for (const [c] of a1.frames) starts.push(starts.at(-1)! + c);
    // Frames 1 and 2 hold only random bytes: same sealed size, so they can be swapped in place.
    assert.equal(a1.frames[1]![0], a1.frames[2]![0]);

    const verifyProblems = async (id: string) => {
      const v = await runCli(['verify', id, '--deep', '--repo', repo, '--json'], { env: env() });
      assert.equal(v.code, 1, v.stdout);
      return json(v.stdout).problems as { where: string; problem: string }[];
    };

    // 1. One bit flipped inside frame 2.
    const flipped = Buffer.from(orig1);
    flipped[starts[2]! + 1000]! ^= 0x01;
    await putRaw(k1, flipped);
    let problems = await verifyProblems(id1);
    assert.ok(
      problems.some((p) => p.where === a1.key && /frame 2 fails authentication/.test(p.problem)),
      JSON.stringify(problems),
    );
    const rs = await runCli(['restore', id1, '--target', path.join(work, 'tamper-a-t'), '--repo', repo], { env: env() });
    assert.equal(rs.code, 1);
    assert.match(rs.stderr, new RegExp(`${a1.key.replace(/\./g, '\\.')}: frame 2 fails authentication`));

    // 2. Frames 1 and 2 swapped (sizes match, so only the authenticated index tells).
    const swapped = Buffer.concat([
      orig1.subarray(0, starts[1]),
      orig1.subarray(starts[2]!, starts[3]),
      orig1.subarray(starts[1]!, starts[2]),
      orig1.subarray(starts[3]!),
    ]);
    assert.equal(swapped.length, orig1.length);
    await putRaw(k1, swapped);
    problems = await verifyProblems(id1);
    assert.ok(
      problems.some((p) => p.where === a1.key && /frame 1 fails authentication/.test(p.problem)),
      JSON.stringify(problems),
    );

    // 3. Frame 2 of the other backup's archive (same plaintext, same size) put in its place.
    const orig2 = await raw(k2);
    assert.equal(orig2.length, orig1.length);
    const mixed = Buffer.concat([orig1.subarray(0, starts[2]), orig2.subarray(starts[2]!, starts[3]), orig1.subarray(starts[3]!)]);
    await putRaw(k1, mixed);
    problems = await verifyProblems(id1);
    assert.ok(
      problems.some((p) => p.where === a1.key && /frame 2 fails authentication/.test(p.problem)),
      JSON.stringify(problems),
    );

    // 4. The other backup's whole archive under this name.
    await putRaw(k1, orig2);
    problems = await verifyProblems(id1);
    assert.ok(
      problems.some((p) => p.where === a1.key && /frame 0 fails authentication/.test(p.problem)),
      JSON.stringify(problems),
    );

    // Put back: intact again (the checks did not pass by accident).
    await putRaw(k1, orig1);
    const ok = await runCli(['verify', id1, '--deep', '--repo', repo, '--json'], { env: env() });
    assert.equal(ok.code, 0, ok.stdout);
  });

  test('a flipped bit in a manifest (header or entries) or a cut manifest: detected, naming the manifest', async () => {
    const src = makeSource('tamper-m');
    const repo = await init('tamper-m');
    const id = await backup(repo, src);
    const key = `tamper-m/snapshots/${id}.ndjson.zst.enc`;
    const orig = await raw(key);

    // In the entries (an entry segment of its own): list still reads the header; verify and restore fail.
    const [segmentKey] = await listKeys('tamper-m/entries/');
    const segment = await raw(segmentKey!);
    const inEntries = Buffer.from(segment);
    inEntries[inEntries.length - 40]! ^= 0x80;
    await putRaw(segmentKey!, inEntries);
    const list = await runCli(['list', '--repo', repo, '--json'], { env: env() });
    assert.equal(list.code, 0, list.stderr);
    const v = await runCli(['verify', id, '--repo', repo, '--json'], { env: env() });
    assert.equal(v.code, 1);
    assert.match(
      json(v.stdout).problems[0].problem,
      new RegExp(`entry segment s3://${bucket}/${segmentKey!.replace(/\./g, '\\.')} fails authentication`),
    );
    const rs = await runCli(['restore', id, '--target', path.join(work, 'tamper-m-t'), '--repo', repo], { env: env() });
    assert.equal(rs.code, 1);
    assert.match(rs.stderr, /entry segment .* fails authentication/);
    await putRaw(segmentKey!, segment);

    // In the header segment: list shows the backup as damaged (exit 3), the others are fine.
    const inHead = Buffer.from(orig);
    inHead[40]! ^= 0x04;
    await putRaw(key, inHead);
    const list2 = await runCli(['list', '--repo', repo, '--json'], { env: env() });
    assert.equal(list2.code, 3, list2.stderr);
    const b = json(list2.stdout).backups[0];
    assert.equal(b.damaged, true);
    assert.match(b.error, /fails authentication \(segment 0, its header\)/);

    // Cut after a complete segment: the "last" flag tells (a version 3 manifest is its header
    // segment, then an empty last one).
    const segLen = orig.readUInt32BE(24);
    assert.equal(orig.length, 24 + 4 + segLen + 4 + 16, 'the header segment, then the empty last segment');
    const cut = orig.subarray(0, 24 + 4 + segLen);
    await putRaw(key, cut);
    const v3 = await runCli(['verify', id, '--repo', repo, '--json'], { env: env() });
    assert.equal(v3.code, 1);
    assert.match(json(v3.stdout).problems[0].problem, /fails authentication at segment 1|truncated/);

    // An unencrypted manifest dropped in under the encrypted name is refused.
    await putRaw(key, Buffer.from('(\xb5/\xfd not sealed'));
    const v4 = await runCli(['verify', id, '--repo', repo, '--json'], { env: env() });
    assert.equal(v4.code, 1);
    assert.match(json(v4.stdout).problems[0].problem, /is not encrypted, but this repository is/);

    await putRaw(key, orig);
    const ok = await runCli(['verify', id, '--deep', '--repo', repo], { env: env() });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  });

  test('init refuses an existing repository; key commands on a plain repository say it is not encrypted', async () => {
    const repo = await init('twice');
    const again = await runCli(['init', '--repo', repo, '--encrypt'], { env: env() });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already holds an s3backup repository/);
    const plain = `s3://${bucket}/plain`;
    const p = await runCli(['init', '--repo', plain], { env: env() });
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /not encrypted/);
    const k = await runCli(['key', 'list', '--repo', plain], { env: env() });
    assert.equal(k.code, 2);
    assert.match(k.stderr, /is not encrypted; it has no keys/);
    const cfg = json((await raw('plain/config.json')).toString());
    assert.equal(cfg.version, 1);
    assert.equal(cfg.encryption, undefined);
  });
});
