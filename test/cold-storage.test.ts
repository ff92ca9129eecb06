// Archives in GLACIER / DEEP_ARCHIVE: restore names them instead of failing half way, and with
// --request-thaw asks for exactly the archives it needs (RestoreObject). Ceph RGW stores data
// but has no archive tier, so the real SDK talks to a small HTTP proxy in front of Ceph that
// reports archive objects as GLACIER and answers RestoreObject (the one part with no local peer).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { ColdStorageError, runRestore } from '../src/restore/restore.ts';
import { S3Store } from '../src/store/s3.ts';
import { createTestBucket, deleteTestBucket, s3TestConfig, testS3Store } from './helpers/s3.ts';
import { diffTrees, tempDir } from './helpers/tree.ts';

const work = tempDir('cold');
const cfg = s3TestConfig();
const upstream = new URL(cfg.endpoint);
/** Per object path: undefined = frozen, 'ongoing', 'available'. */
const thaw = new Map<string, 'ongoing' | 'available'>();
const restoreRequests: { path: string; body: string }[] = [];
let proxy: http.Server;
let bucket = '';

before(async () => {
  proxy = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const isArchive = url.pathname.includes('/archives/');
    if (req.method === 'POST' && url.searchParams.has('restore')) {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        restoreRequests.push({ path: url.pathname, body });
        if (thaw.get(url.pathname) === 'ongoing') {
          res.writeHead(409, { 'content-type': 'application/xml' });
          res.end('<?xml version="1.0"?><Error><Code>RestoreAlreadyInProgress</Code><Message>in progress</Message></Error>');
          return;
        }
        thaw.set(url.pathname, 'ongoing');
        res.writeHead(202);
        res.end();
      });
      return;
    }
    // Everything else goes to Ceph unchanged (the Host header too, so signatures still match).
    const up = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        const headers = { ...ur.headers };
        if (isArchive && req.method === 'HEAD' && ur.statusCode === 200) {
          headers['x-amz-storage-class'] = 'GLACIER';
          const state = thaw.get(url.pathname);
          if (state === 'ongoing') headers['x-amz-restore'] = 'ongoing-request="true"';
          if (state === 'available') headers['x-amz-restore'] = 'ongoing-request="false", expiry-date="Fri, 01 Jan 2100 00:00:00 GMT"';
        }
        res.writeHead(ur.statusCode ?? 502, headers);
        ur.pipe(res);
      },
    );
    req.pipe(up);
    up.on('error', () => res.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  bucket = await createTestBucket('cold');
});

after(async () => {
  proxy.close();
  if (bucket) await deleteTestBucket(bucket);
  fs.rmSync(work, { recursive: true, force: true });
});

function coldStore(): S3Store {
  const { port } = proxy.address() as AddressInfo;
  return new S3Store({ bucket, prefix: 'repo', endpoint: `http://127.0.0.1:${port}`, region: cfg.region, credentials: cfg.credentials });
}

describe('restore from archive storage', () => {
  let src = '';
  let first = '';
  let second = '';
  before(async () => {
    src = path.join(work, 'src');
    fs.mkdirSync(path.join(src, 'old'), { recursive: true });
    fs.writeFileSync(path.join(src, 'old', 'a.txt'), 'old data\n');
    const direct = testS3Store(bucket, 'repo');
    first = (await runBackup({ store: direct, sources: [src] })).id;
    fs.writeFileSync(path.join(src, 'new.txt'), 'new data\n');
    second = (await runBackup({ store: direct, sources: [src] })).id;
    await direct.close();
  });

  test('without --request-thaw: a clear error naming the archives, nothing written', async () => {
    const target = path.join(work, 't1');
    const store = coldStore();
    const err = await runRestore({ store, snapshot: second, target }).then(
      () => assert.fail('restore should refuse'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ColdStorageError, String(err));
    assert.match(err.message, new RegExp(`archives/${second}\\.tar\\.zst \\(GLACIER\\)`));
    assert.match(err.message, new RegExp(`archives/${first}\\.tar\\.zst`), 'the incremental needs its parent archive too');
    assert.match(err.hint ?? '', /--request-thaw/);
    assert.ok(!fs.existsSync(target), 'the target was not even created');
    assert.equal(restoreRequests.length, 0);
    await store.close();
  });

  test('--request-thaw asks for exactly the archives needed: one file from the new archive needs only it', async () => {
    const store = coldStore();
    const err = await runRestore({ store, snapshot: second, target: path.join(work, 't2'), include: ['src/new.txt'], thaw: { tier: 'Bulk', days: 3 } }).then(
      () => assert.fail('restore should stop after requesting'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ColdStorageError);
    assert.match(err.message, /restore from archive storage requested \(Bulk, kept 3 days\) for 1 archive/);
    assert.deepEqual(restoreRequests.map((r) => r.path), [`/${bucket}/repo/archives/${second}.tar.zst`]);
    assert.match(restoreRequests[0]!.body, /<Days>3<\/Days>/);
    assert.match(restoreRequests[0]!.body, /<Tier>Bulk<\/Tier>/);
    // Asked again while in progress: no second request for it.
    await runRestore({ store, snapshot: second, target: path.join(work, 't3'), include: ['src/new.txt'], thaw: {} }).catch(() => {});
    assert.equal(restoreRequests.length, 1);
    await store.close();
  });

  test('--wait polls until the copies are readable, then restores', async () => {
    const store = coldStore();
    const target = path.join(work, 't4');
    const done = runRestore({ store, snapshot: second, target, thaw: { wait: true, pollMs: 50 } });
    // The restore service finishes a while later.
    setTimeout(() => {
      for (const id of [first, second]) thaw.set(`/${bucket}/repo/archives/${id}.tar.zst`, 'available');
    }, 300);
    const r = await done;
    assert.equal(r.files, 2);
    assert.deepEqual(diffTrees(src, path.join(target, 'src')), []);
    assert.ok(restoreRequests.some((q) => q.path.endsWith(`${first}.tar.zst`)), 'the parent archive was requested too');
    await store.close();
  });
});
