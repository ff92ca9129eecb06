// An encrypted repository whose key is wrapped by AWS KMS. No KMS runs locally, so the real SDK
// (@aws-sdk/client-kms, via AWS_ENDPOINT_URL_KMS) talks to a small fake of KMS's JSON protocol
// on 127.0.0.1 (GenerateDataKey, Decrypt; data keys really encrypted under the fake's own key,
// with the encryption context checked). The data goes to Ceph RGW as usual.
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { createTestBucket, deleteTestBucket, s3CliEnv } from './helpers/s3.ts';
import { diffTrees, isolatedEnv, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('kms');
const KEY_ARN = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const fakeRoot = randomBytes(32);
const calls: { target: string; input: any; signed: boolean }[] = [];
let denyDecrypt = false;
let kms: http.Server;
let bucket = '';

function seal(plain: Buffer, aad: string): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', fakeRoot, iv);
  c.setAAD(Buffer.from(aad));
  return Buffer.concat([iv, c.update(plain), c.final(), c.getAuthTag()]);
}
function unseal(blob: Buffer, aad: string): Buffer {
  const d = createDecipheriv('aes-256-gcm', fakeRoot, blob.subarray(0, 12));
  d.setAAD(Buffer.from(aad));
  d.setAuthTag(blob.subarray(blob.length - 16));
  return Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]);
}
const contextText = (c: Record<string, string> | undefined) => JSON.stringify(Object.entries(c ?? {}).sort());

before(async () => {
  kms = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const input = JSON.parse(body || '{}');
      calls.push({
        target,
        input,
        signed: /^AWS4-HMAC-SHA256 Credential=testkey\/\d{8}\/us-east-1\/kms\/aws4_request/.test(String(req.headers.authorization)),
      });
      const reply = (status: number, doc: unknown) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify(doc));
      };
      if (target === 'TrentService.GenerateDataKey') {
        if (input.KeySpec !== 'AES_256') return reply(400, { __type: 'ValidationException', message: 'KeySpec' });
        if (input.KeyId !== 'alias/s3backup-test' && input.KeyId !== KEY_ARN)
          return reply(400, { __type: 'NotFoundException', message: 'no such key' });
        const plaintext = randomBytes(32);
        const blob = seal(plaintext, contextText(input.EncryptionContext));
        return reply(200, { KeyId: KEY_ARN, Plaintext: plaintext.toString('base64'), CiphertextBlob: blob.toString('base64') });
      }
      if (target === 'TrentService.Decrypt') {
        if (denyDecrypt) return reply(400, { __type: 'AccessDeniedException', message: 'not allowed to kms:Decrypt' });
        try {
          const plaintext = unseal(Buffer.from(input.CiphertextBlob, 'base64'), contextText(input.EncryptionContext));
          return reply(200, { KeyId: KEY_ARN, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
        } catch {
          return reply(400, { __type: 'InvalidCiphertextException', message: '' });
        }
      }
      reply(400, { __type: 'UnknownOperationException', message: target });
    });
  });
  await new Promise<void>((r) => kms.listen(0, '127.0.0.1', r));
  bucket = await createTestBucket('kms');
});

after(async () => {
  kms.close();
  if (bucket) await deleteTestBucket(bucket);
  fs.rmSync(work, { recursive: true, force: true });
});

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const { port } = kms.address() as AddressInfo;
  return isolatedEnv(path.join(work, 'home'), {
    ...s3CliEnv(),
    AWS_ENDPOINT_URL_KMS: `http://127.0.0.1:${port}`,
    S3BACKUP_PASSWORD: '',
    ...extra,
  });
}

test('init --kms-key-id: backups open with KMS alone; a passphrase key added later opens them without KMS', async () => {
  const src = path.join(work, 'src', 'data');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
  fs.writeFileSync(path.join(src, 'b.bin'), pseudoRandom(5 << 20, 3));
  const repo = `s3://${bucket}/kms`;

  const init = await runCli(['init', '--repo', repo, '--kms-key-id', 'alias/s3backup-test', '--json'], { env: env() });
  assert.equal(init.code, 0, init.stderr);
  const doc = JSON.parse(init.stdout);
  assert.equal(doc.encrypted, true);
  const gen = calls.filter((c) => c.target === 'TrentService.GenerateDataKey');
  assert.equal(gen.length, 1);
  assert.ok(gen[0]!.signed, 'the SDK signed the request with the usual credentials');
  assert.deepEqual(gen[0]!.input.EncryptionContext, { 's3backup-repository': doc.id, 's3backup-key': doc.keyId });

  const b = await runCli(['backup', src, '--repo', repo, '--no-forget'], { env: env() });
  assert.equal(b.code, 0, b.stderr);
  assert.ok(
    calls.some((c) => c.target === 'TrentService.Decrypt' && c.input.KeyId === KEY_ARN),
    'opened with KMS Decrypt',
  );
  const t1 = path.join(work, 't1');
  const r1 = await runCli(['restore', 'latest', '--target', t1, '--repo', repo], { env: env() });
  assert.equal(r1.code, 0, r1.stderr);
  assert.deepEqual(diffTrees(src, path.join(t1, 'data')), []);

  // KMS refuses (and no other key): a clear error naming the permission.
  denyDecrypt = true;
  const denied = await runCli(['list', '--repo', repo], { env: env() });
  assert.equal(denied.code, 2, denied.stderr);
  assert.match(denied.stderr, /AWS KMS refused Decrypt \(AccessDeniedException\)/);
  assert.match(denied.stderr, /hint: grant these credentials kms:GenerateDataKey and kms:Decrypt/);
  denyDecrypt = false;

  const add = await runCli(['key', 'add', '--repo', repo, '--scrypt-n', '16384'], { env: env({ S3BACKUP_NEW_PASSWORD: 'kms-fallback' }) });
  assert.equal(add.code, 0, add.stderr);
  const list = await runCli(['key', 'list', '--repo', repo, '--json'], { env: env() });
  assert.deepEqual(
    JSON.parse(list.stdout)
      .keys.map((k: { kind: string }) => k.kind)
      .sort(),
    ['kms', 'passphrase'],
  );

  // KMS refuses: the passphrase is asked for, saying why; given, it opens the repository.
  denyDecrypt = true;
  const denied2 = await runCli(['list', '--repo', repo], { env: env() });
  assert.equal(denied2.code, 2, denied2.stderr);
  assert.match(denied2.stderr, /is encrypted: its passphrase is needed/);
  assert.match(denied2.stderr, /its KMS key failed: AWS KMS refused Decrypt \(AccessDeniedException\)/);
  const before = calls.length;
  const t2 = path.join(work, 't2');
  const r2 = await runCli(['restore', 'latest', '--target', t2, '--repo', repo], { env: env({ S3BACKUP_PASSWORD: 'kms-fallback' }) });
  assert.equal(r2.code, 0, r2.stderr);
  assert.deepEqual(diffTrees(src, path.join(t2, 'data')), []);
  assert.equal(calls.length, before, 'a given passphrase does not call KMS');
});
