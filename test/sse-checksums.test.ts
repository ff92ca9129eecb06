// S3 server-side encryption and upload checksums.
// - SSE-KMS proven on Ceph RGW itself: scripts/ceph-rgw.sh configures RGW's "testing" KMS
//   backend, so objects written with --sse aws:kms really are encrypted by the server, which says
//   so on HEAD; a restore reads them back.
// - SSE-S3 (AES256): Ceph 16 has no SSE-S3 backend (it accepts the header and ignores it), so
//   the proof is the requests the real SDK sends: a loopback proxy in front of Ceph records them,
//   and every PutObject and CreateMultipartUpload carries x-amz-server-side-encryption.
// - Checksums: every single PUT and every multipart part carries Content-MD5; the same proxy
//   flips one byte of a part on its way and Ceph refuses it: the backup fails and records
//   nothing. Ceph refuses a part whose Content-MD5 does not match (BadDigest).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { createTestBucket, deleteTestBucket, s3CliEnv, s3TestConfig, testS3Client } from './helpers/s3.ts';
import { diffTrees, isolatedEnv, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('sse');
const upstream = new URL(s3TestConfig().endpoint);
const client = testS3Client();
interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  md5Ok?: boolean;
}
let recorded: Recorded[] = [];
/** Flip one byte in the body of the next UploadPart passing through. */
let corruptNextPart = false;
/** Flip one byte in the answer to the next whole-object GET of a manifest. */
let corruptNextManifestGet = false;
let proxy: http.Server;
let bucket = '';

before(async () => {
  proxy = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      const rec: Recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers };
      const md5 = req.headers['content-md5'];
      if (typeof md5 === 'string') rec.md5Ok = createHash('md5').update(body).digest('base64') === md5;
      recorded.push(rec);
      if (corruptNextPart && req.method === 'PUT' && /[?&]partNumber=/.test(rec.url) && body.length > 100) {
        corruptNextPart = false;
        body = Buffer.from(body);
        body[body.length >> 1]! ^= 0x01;
      }
      // To Ceph unchanged otherwise (the Host header too, so signatures still match).
      const up = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
        (ur) => {
          if (
            corruptNextManifestGet &&
            req.method === 'GET' &&
            !req.headers.range &&
            rec.url.includes('/snapshots/') &&
            ur.statusCode === 200
          ) {
            corruptNextManifestGet = false;
            const parts: Buffer[] = [];
            ur.on('data', (d: Buffer) => parts.push(d));
            ur.on('end', () => {
              const b = Buffer.concat(parts);
              b[b.length - 3]! ^= 0x10;
              res.writeHead(200, ur.headers);
              res.end(b);
            });
            return;
          }
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  bucket = await createTestBucket('sse');
});

after(async () => {
  proxy.close();
  client.destroy();
  if (bucket) await deleteTestBucket(bucket);
  fs.rmSync(work, { recursive: true, force: true });
});

function env(viaProxy: boolean): NodeJS.ProcessEnv {
  const e = { ...s3CliEnv() };
  if (viaProxy) e.AWS_ENDPOINT_URL_S3 = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  return isolatedEnv(path.join(work, 'home'), e);
}

/** 20 MiB of random bytes: the archive goes up in several 16 MiB multipart parts. */
function makeSource(name: string): string {
  const dir = path.join(work, name, 'data');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'a.txt'), 'alpha\n');
  fs.writeFileSync(path.join(dir, 'big.bin'), pseudoRandom(20 << 20, 11));
  return dir;
}

async function objects(prefix: string): Promise<string[]> {
  const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key!);
}

const isPutObject = (r: Recorded) => r.method === 'PUT' && !/[?&]partNumber=/.test(r.url);
const isCreateMultipart = (r: Recorded) => r.method === 'POST' && /[?&]uploads(=|&|$)/.test(r.url);
const isUploadPart = (r: Recorded) => r.method === 'PUT' && /[?&]partNumber=/.test(r.url);

describe('server-side encryption and checksums', () => {
  test('--sse aws:kms on Ceph: every object is encrypted by the server with the named key, and restores', async () => {
    const src = makeSource('kms');
    const repo = `s3://${bucket}/sse-kms`;
    const sse = ['--sse', 'aws:kms', '--sse-kms-key-id', 's3backup-test-key'];
    const b = await runCli(['backup', src, '--repo', repo, '--no-forget', ...sse], { env: env(false) });
    assert.equal(b.code, 0, b.stderr);
    const keys = await objects('sse-kms/');
    // config, archive, manifest and the run record (the lock is gone): all server-encrypted.
    assert.deepEqual(
      keys.map((k) => k.split('/')[1]).sort(),
      ['archives', 'config.json', 'entries', 'history', 'snapshots'],
      keys.join(', '),
    );
    for (const key of keys) {
      const h = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(h.ServerSideEncryption, 'aws:kms', key);
      assert.equal(h.SSEKMSKeyId, 's3backup-test-key', key);
    }
    const t = path.join(work, 'kms-restore');
    const r = await runCli(['restore', 'latest', '--target', t, '--repo', repo], { env: env(false) });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(diffTrees(src, path.join(t, 'data')), []);
  });

  test('--sse AES256: every PutObject and CreateMultipartUpload asks for it; every upload carries a Content-MD5 that matches', async () => {
    const src = makeSource('aes');
    const repo = `s3://${bucket}/sse-aes`;
    recorded = [];
    const b = await runCli(['backup', src, '--repo', repo, '--no-forget', '--sse', 'AES256'], { env: env(true) });
    assert.equal(b.code, 0, b.stderr);
    const puts = recorded.filter(isPutObject);
    const creates = recorded.filter(isCreateMultipart);
    const parts = recorded.filter(isUploadPart);
    assert.ok(puts.length >= 3, `PutObject requests: ${puts.length}`); // probe, config, lock, manifest
    assert.equal(creates.length, 1);
    assert.ok(parts.length >= 2, `UploadPart requests: ${parts.length}`);
    for (const r of [...puts, ...creates]) assert.equal(r.headers['x-amz-server-side-encryption'], 'AES256', `${r.method} ${r.url}`);
    for (const r of [...puts, ...parts]) assert.equal(r.md5Ok, true, `Content-MD5 on ${r.method} ${r.url}`);
    // Without --sse nothing asks for it.
    recorded = [];
    const b2 = await runCli(['backup', src, '--repo', repo, '--no-forget', '--full'], { env: env(true) });
    assert.equal(b2.code, 0, b2.stderr);
    assert.ok(
      recorded.filter((r) => isPutObject(r) || isCreateMultipart(r)).every((r) => r.headers['x-amz-server-side-encryption'] === undefined),
    );
  });

  test('a part damaged on the way is refused by the server: the backup fails and records nothing; Ceph enforces Content-MD5 on parts', async () => {
    const src = makeSource('md5');
    const repo = `s3://${bucket}/md5`;
    recorded = [];
    corruptNextPart = true;
    const b = await runCli(['backup', src, '--repo', repo, '--no-forget'], { env: env(true) });
    assert.equal(corruptNextPart, false, 'a part went through the proxy');
    assert.equal(b.code, 1, b.stderr);
    // Over plain HTTP the SDK also signs the payload's SHA-256, which catches it first; over
    // HTTPS it sends UNSIGNED-PAYLOAD and the Content-MD5 is what the server checks (below).
    assert.match(b.stderr, /S3 put of archives\/[^ ]+ .* failed: (XAmzContentSHA256Mismatch|BadDigest)/);
    const keys = await objects('md5/');
    assert.deepEqual(
      keys.filter((k) => k.includes('snapshots/') || k.includes('archives/')),
      [],
      'no backup, no archive left',
    );
    // Ceph checks Content-MD5 on parts: a part whose MD5 does not match is refused.
    const key = 'md5/raw-part-check';
    const mp = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    await assert.rejects(
      client.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId: mp.UploadId,
          PartNumber: 1,
          Body: Buffer.from('part data'),
          ContentMD5: createHash('md5').update('other data').digest('base64'),
        }),
      ),
      (e: Error) => e.name === 'BadDigest',
    );
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: mp.UploadId }));
    // The same backup without the damage goes through.
    const ok = await runCli(['backup', src, '--repo', repo, '--no-forget'], { env: env(true) });
    assert.equal(ok.code, 0, ok.stderr);
  });

  test('a whole-object download is checked against its ETag (the MD5 S3 stored): damage on the way is reported', async () => {
    const src = makeSource('etag');
    const repo = `s3://${bucket}/etag`;
    const b = await runCli(['backup', src, '--repo', repo, '--no-forget'], { env: env(true) });
    assert.equal(b.code, 0, b.stderr);
    corruptNextManifestGet = true;
    const v = await runCli(['verify', 'latest', '--repo', repo, '--json'], { env: env(true) });
    assert.equal(corruptNextManifestGet, false, 'the manifest went through the proxy');
    assert.equal(v.code, 1, v.stdout + v.stderr);
    assert.match(
      JSON.stringify(JSON.parse(v.stdout)),
      /snapshots\/[^ ]+\.ndjson\.zst arrived with MD5 [0-9a-f]{32}, but S3 stored it with ETag [0-9a-f]{32}/,
    );
    const ok = await runCli(['verify', 'latest', '--repo', repo, '--deep'], { env: env(true) });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  });

  test('--sse on a local repository, or a KMS key id without aws:kms, is a usage error', async () => {
    const local = await runCli(['list', '--repo', path.join(work, 'local-repo'), '--sse', 'AES256'], { env: env(false) });
    assert.equal(local.code, 2);
    assert.match(local.stderr, /--sse AES256 applies to S3 repositories/);
    const key = await runCli(['list', '--repo', `s3://${bucket}/x`, '--sse-kms-key-id', 'k'], { env: env(false) });
    assert.equal(key.code, 2);
    assert.match(key.stderr, /--sse-kms-key-id needs --sse aws:kms/);
  });
});
