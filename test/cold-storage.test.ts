// Archives in GLACIER / DEEP_ARCHIVE: restore names them instead of failing half way, and with
// --request-thaw asks for exactly the archives it needs (RestoreObject), also for a file held as
// extents in several archives (a log appended to). Ceph RGW stores data
// but has no archive tier, so the real SDK talks to a small HTTP proxy in front of Ceph that
// reports archive objects as GLACIER and answers RestoreObject (the one part with no local peer).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runBackup } from '../src/backup/backup.ts';
import { ColdStorageError, runRestore } from '../src/restore/restore.ts';
import { S3Store } from '../src/store/s3.ts';
import { createTestBucket, deleteTestBucket, s3TestConfig, testS3Store } from './helpers/s3.ts';
import { diffTrees, tempDir } from './helpers/tree.ts';

/**
 * No test here may wait forever: past this a test fails (and its t.signal stops the restore's
 * poll loop); the proxy gives up on Ceph sooner, so a stuck request becomes an error first.
 */
const TEST_TIMEOUT_MS = 120_000;
const UPSTREAM_TIMEOUT_MS = 30_000;

const work = tempDir('cold');
const cfg = s3TestConfig();
const upstream = new URL(cfg.endpoint);
/** Per object path: undefined = frozen, 'ongoing', 'available'. */
const thaw = new Map<string, 'ongoing' | 'available'>();
const restoreRequests: { path: string; body: string }[] = [];
/** What the fake archive service was asked, in order: lets a test wait for a state instead of a time. */
const events: { kind: 'restore' | 'head'; path: string; state?: 'ongoing' | 'available' | undefined }[] = [];
const upstreamAgent = new http.Agent({ keepAlive: true });
const stores: S3Store[] = [];
let proxy: http.Server;
let bucket = '';

before(
  async () => {
    proxy = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const isArchive = url.pathname.includes('/archives/');
      req.on('error', () => res.destroy());
      if (req.method === 'POST' && url.searchParams.has('restore')) {
        let body = '';
        req.on('data', (d) => (body += d));
        req.on('end', () => {
          restoreRequests.push({ path: url.pathname, body });
          events.push({ kind: 'restore', path: url.pathname });
          const state = thaw.get(url.pathname);
          if (state === 'ongoing') {
            res.writeHead(409, { 'content-type': 'application/xml' });
            res.end('<?xml version="1.0"?><Error><Code>RestoreAlreadyInProgress</Code><Message>in progress</Message></Error>');
            return;
          }
          // As S3 does: 202 starts a restore; 200 for a copy that is already readable (only
          // its expiry is extended: it does not go back to "in progress").
          if (state === 'available') {
            res.writeHead(200);
            res.end();
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
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent: upstreamAgent },
        (ur) => {
          const headers = { ...ur.headers };
          if (isArchive && req.method === 'HEAD' && ur.statusCode === 200) {
            headers['x-amz-storage-class'] = 'GLACIER';
            const state = thaw.get(url.pathname);
            events.push({ kind: 'head', path: url.pathname, state });
            if (state === 'ongoing') headers['x-amz-restore'] = 'ongoing-request="true"';
            if (state === 'available') headers['x-amz-restore'] = 'ongoing-request="false", expiry-date="Fri, 01 Jan 2100 00:00:00 GMT"';
          }
          res.writeHead(ur.statusCode ?? 502, headers);
          // A response cut off by Ceph must reach the client as an error, not as a body that never ends.
          ur.on('error', () => res.destroy());
          ur.pipe(res);
        },
      );
      up.setTimeout(UPSTREAM_TIMEOUT_MS, () =>
        up.destroy(new Error(`Ceph did not answer ${req.method} ${req.url} within ${UPSTREAM_TIMEOUT_MS} ms`)),
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    bucket = await createTestBucket('cold');
  },
  { timeout: TEST_TIMEOUT_MS },
);

after(
  async () => {
    for (const s of stores) await s.close().catch(() => {});
    if (proxy) {
      // Keep-alive connections (and requests a failed test left behind) would keep close() waiting.
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    }
    upstreamAgent.destroy();
    if (bucket) await deleteTestBucket(bucket);
    fs.rmSync(work, { recursive: true, force: true });
  },
  { timeout: TEST_TIMEOUT_MS },
);

/** Wait for cond, checking every 20 ms; fail with `what` after ms. */
async function until(what: string, cond: () => boolean, ms: number, signal: AbortSignal): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for: ${what}`);
    await sleep(20, undefined, { signal });
  }
}

function coldStore(prefix = 'repo'): S3Store {
  const { port } = proxy.address() as AddressInfo;
  return track(new S3Store({ bucket, prefix, endpoint: `http://127.0.0.1:${port}`, region: cfg.region, credentials: cfg.credentials }));
}

/** Closed in after() too, so a failed test leaves no client behind. */
function track(store: S3Store): S3Store {
  stores.push(store);
  return store;
}

describe('restore from archive storage', () => {
  let src = '';
  let first = '';
  let second = '';
  before(
    async () => {
      src = path.join(work, 'src');
      fs.mkdirSync(path.join(src, 'old'), { recursive: true });
      fs.writeFileSync(path.join(src, 'old', 'a.txt'), 'old data\n');
      const direct = track(testS3Store(bucket, 'repo'));
      first = (await runBackup({ store: direct, sources: [src] })).id;
      fs.writeFileSync(path.join(src, 'new.txt'), 'new data\n');
      second = (await runBackup({ store: direct, sources: [src] })).id;
      await direct.close();
    },
    { timeout: TEST_TIMEOUT_MS },
  );

  test('without --request-thaw: a clear error naming the archives, nothing written', { timeout: TEST_TIMEOUT_MS }, async () => {
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

  test('--request-thaw asks for exactly the archives needed: one file from the new archive needs only it', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const store = coldStore();
    const err = await runRestore({
      store,
      snapshot: second,
      target: path.join(work, 't2'),
      include: ['src/new.txt'],
      thaw: { tier: 'Bulk', days: 3 },
    }).then(
      () => assert.fail('restore should stop after requesting'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ColdStorageError);
    assert.match(err.message, /restore from archive storage requested \(Bulk, kept 3 days\) for 1 archive/);
    assert.deepEqual(
      restoreRequests.map((r) => r.path),
      [`/${bucket}/repo/archives/${second}.tar.zst`],
    );
    assert.match(restoreRequests[0]!.body, /<Days>3<\/Days>/);
    assert.match(restoreRequests[0]!.body, /<Tier>Bulk<\/Tier>/);
    // Asked again while in progress: no second request for it.
    await runRestore({ store, snapshot: second, target: path.join(work, 't3'), include: ['src/new.txt'], thaw: {} }).catch(() => {});
    assert.equal(restoreRequests.length, 1);
    await store.close();
  });

  test('--wait polls until the copies are readable, then restores', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const store = coldStore();
    const target = path.join(work, 't4');
    const since = events.length;
    let settled = false;
    const done = runRestore({ store, snapshot: second, target, thaw: { wait: true, pollMs: 50 }, signal: t.signal }).finally(
      () => (settled = true),
    );
    done.catch(() => {}); // awaited below; a failure while we wait must not surface as an unhandled rejection first
    // The restore service finishes once the restore has asked for its copies and is polling:
    // a status check after a restore request comes from the wait loop (requests all go first).
    // Waiting for that, not for a fixed time, keeps a request from arriving after the copies
    // are readable; a restore that stopped waiting fails here instead of hanging.
    const polling = () => {
      const mine = events.slice(since);
      const lastRequest = mine.findLastIndex((e) => e.kind === 'restore');
      return lastRequest >= 0 && mine.slice(lastRequest + 1).some((e) => e.kind === 'head' && e.state === 'ongoing');
    };
    await until('the restore to request its archives and poll them', () => polling() || settled, TEST_TIMEOUT_MS / 2, t.signal);
    if (settled) assert.fail(`the restore ended before the copies were readable: ${await done.then((r) => JSON.stringify(r), String)}`);
    for (const id of [first, second]) thaw.set(`/${bucket}/repo/archives/${id}.tar.zst`, 'available');
    const r = await done;
    assert.equal(r.files, 2);
    assert.deepEqual(diffTrees(src, path.join(target, 'src')), []);
    assert.ok(
      restoreRequests.some((q) => q.path.endsWith(`${first}.tar.zst`)),
      'the parent archive was requested too',
    );
    await store.close();
  });

  test('an interrupt ends --wait at once, not after the poll interval', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    for (const id of [first, second]) thaw.delete(`/${bucket}/repo/archives/${id}.tar.zst`); // frozen again
    const store = coldStore();
    const target = path.join(work, 't5');
    const since = events.length;
    const stop = new AbortController();
    t.signal.addEventListener('abort', () => stop.abort()); // a failed test leaves no hour-long wait behind
    let settled = false;
    const done = runRestore({ store, snapshot: second, target, thaw: { wait: true, pollMs: 3_600_000 }, signal: stop.signal }).finally(
      () => (settled = true),
    );
    done.catch(() => {});
    // Both requested: the restore is now in its first hour-long pause.
    await until(
      'the restore to request both archives',
      () => events.slice(since).filter((e) => e.kind === 'restore').length === 2 || settled,
      TEST_TIMEOUT_MS / 2,
      t.signal,
    );
    if (settled) assert.fail(`the restore ended before it was interrupted: ${await done.then((r) => JSON.stringify(r), String)}`);
    stop.abort();
    // Ending within the test's timeout, not after the hour, is what shows the pause was cut short.
    await assert.rejects(done, /restore interrupted while waiting for archive storage/);
    assert.ok(!fs.existsSync(target), 'nothing was written');
    await store.close();
  });
});

describe('a file in extents (a log appended to) from archive storage', () => {
  test('restore names, and asks to thaw, every archive its extents use and no other', { timeout: TEST_TIMEOUT_MS }, async () => {
    const src = path.join(work, 'ext-src');
    fs.mkdirSync(src, { recursive: true });
    const log = path.join(src, 'app.log');
    const line = (n: number) => `${String(n).padStart(8, '0')} request served in ${n % 97} ms\n`;
    const append = (from: number, to: number) => {
      let text = '';
      for (let n = from; n < to; n++) text += line(n);
      fs.appendFileSync(log, text);
    };
    append(0, 4000); // ~170 KB: above the 64 KiB below which a changed file is stored whole
    const direct = track(testS3Store(bucket, 'repo-ext'));
    const ids: string[] = [];
    for (const [from, to] of [
      [4000, 4000],
      [4000, 4300],
      [4300, 4600],
    ] as const) {
      append(from, to);
      ids.push((await runBackup({ store: direct, sources: [src] })).id);
    }
    // A fourth backup changes only another file: its archive holds nothing of the log.
    fs.writeFileSync(path.join(src, 'other.txt'), 'not the log\n');
    ids.push((await runBackup({ store: direct, sources: [src] })).id);
    await direct.close();
    const keyOf = (id: string) => `archives/${id}.tar.zst`;

    const store = coldStore('repo-ext');
    const err = await runRestore({ store, snapshot: ids[3]!, target: path.join(work, 'ext-t1'), include: ['ext-src/app.log'] }).then(
      () => assert.fail('restore should refuse'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ColdStorageError, String(err));
    for (const id of ids.slice(0, 3)) assert.match(err.message, new RegExp(`${keyOf(id).replace(/\./g, '\\.')} \\(GLACIER\\)`));
    assert.doesNotMatch(err.message, new RegExp(ids[3]!), 'the fourth archive holds nothing of the log');

    const since = restoreRequests.length;
    await runRestore({
      store,
      snapshot: ids[3]!,
      target: path.join(work, 'ext-t2'),
      include: ['ext-src/app.log'],
      thaw: { tier: 'Bulk', days: 1 },
    }).catch(() => {});
    assert.deepEqual(
      restoreRequests
        .slice(since)
        .map((r) => r.path)
        .sort(),
      ids
        .slice(0, 3)
        .map((id) => `/${bucket}/repo-ext/${keyOf(id)}`)
        .sort(),
    );
    // Thawed: the log comes back whole from its three archives.
    for (const id of ids.slice(0, 3)) thaw.set(`/${bucket}/repo-ext/${keyOf(id)}`, 'available');
    const target = path.join(work, 'ext-t3');
    await runRestore({ store, snapshot: ids[3]!, target, include: ['ext-src/app.log'] });
    assert.deepEqual(fs.readFileSync(path.join(target, 'ext-src', 'app.log')), fs.readFileSync(log));
    await store.close();
  });
});
