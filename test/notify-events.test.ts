// The events built from real backup runs on real S3 (Ceph): success, anomaly, and failures
// tagged with the operation that failed (a store that refuses one kind of write).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { failedOperation } from '../src/backup/operation.ts';
import { resolveConfig } from '../src/config/config.ts';
import type { AnomalyFinding } from '../src/monitor/types.ts';
import { backupEvent, failureEvent } from '../src/notify/events.ts';
import { textBody } from '../src/notify/format.ts';
import { RunReporter } from '../src/run/report.ts';
import { backupJob } from '../src/schedule/scheduler.ts';
import type { PutOptions, Store } from '../src/store/store.ts';
import { createTestBucket, deleteTestBucket, testS3Store } from './helpers/s3.ts';
import { type Receiver, startReceiver } from './helpers/fake-aws.ts';
import { DelegatingStore, splitBackup } from './helpers/store.ts';
import { tempDir } from './helpers/tree.ts';

class RefusingStore extends DelegatingStore {
  private readonly prefix: string;
  constructor(inner: Store, prefix: string) {
    super(inner);
    this.prefix = prefix;
  }
  override put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    if (!key.startsWith(this.prefix)) return super.put(key, body, opts);
    // As a server that takes the upload and then refuses it: the body is read to the end first.
    const refuse = () => Promise.reject(new Error(`injected: refusing to write ${key}`));
    if (Buffer.isBuffer(body)) return refuse();
    return (async () => {
      for await (const _ of body);
      return refuse();
    })();
  }
}

let bucket = '';
let src = '';
let rx: Receiver;
before(async () => {
  bucket = await createTestBucket('notify-events');
  src = path.join(tempDir('notify-events'), 'data');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f.txt'), 'content\n');
  rx = await startReceiver();
});
after(async () => {
  await deleteTestBucket(bucket);
  await rx.close();
});

describe('events from real backups', () => {
  test('success: the result fields; an anomaly event when the detector found something', async () => {
    const store = testS3Store(bucket, 'ok');
    const r = await runBackup({ store, sources: [src] });
    const ev = backupEvent(r, { repository: store.location, sources: [src], backupCount: 1, host: 'h1' });
    assert.equal(ev.type, 'success');
    if (ev.type !== 'success') return;
    assert.equal(ev.archive, r.archiveKey);
    assert.equal(ev.backupId, r.id);
    assert.equal(ev.bytesStored, r.bytesStored);
    assert.equal(ev.files, 1);
    assert.equal(ev.repository, `s3://${bucket}/ok`);
    const f: AnomalyFinding = {
      metric: 'files',
      method: 'rule',
      current: 1,
      expected: 100,
      score: 0.01,
      threshold: 0.5,
      historySize: 5,
      message: 'm',
      recommendation: 'r',
      severity: 'warning',
      level: 1.5,
    };
    const an = backupEvent({ ...r, anomalies: [f] }, { repository: store.location, sources: [src], backupCount: 1 });
    assert.equal(an.type, 'anomaly');
    assert.deepEqual(an.type === 'anomaly' && an.findings, [f]);
    assert.equal(backupEvent({ ...r, anomalies: [] }, { repository: store.location, sources: [src], backupCount: 1 }).type, 'success');
    assert.equal('archives' in ev, false, 'one archive: no list');
    await store.close();
  });

  test('a backup split into several archives: the event and its message name every one', async () => {
    const store = testS3Store(bucket, 'split');
    const big = path.join(tempDir('notify-split'), 'big');
    const r = await splitBackup(store, big);
    const ev = backupEvent(r, { repository: store.location, sources: [big], backupCount: 1 });
    assert.ok(ev.type === 'success');
    assert.deepEqual(ev.type === 'success' && ev.archives, r.archiveKeys);
    assert.equal(ev.type === 'success' && ev.archive, r.archiveKeys[0]);
    const text = textBody(ev);
    for (const k of r.archiveKeys) assert.ok(text.includes(k), `${k} in\n${text}`);
    assert.match(text, new RegExp(`Archives: +${r.archiveKeys.length} parts: `));
    await store.close();
  });

  for (const [prefix, operation] of [
    ['archives/', 'upload'],
    ['snapshots/', 'manifest'],
  ] as const) {
    test(`a refused write under ${prefix}: the failure is tagged "${operation}"`, async () => {
      const store = new RefusingStore(testS3Store(bucket, `fail-${operation}`), prefix);
      const err = await runBackup({ store, sources: [src] }).then(
        () => assert.fail('the backup should fail'),
        (e: unknown) => e,
      );
      assert.match((err as Error).message, /injected: refusing to write/);
      assert.equal(failedOperation(err), operation);
      const ev = failureEvent(err, { repository: store.location, sources: [src], logFile: '/logs/backup-errors.log' });
      assert.equal(ev.type, 'failure');
      assert.equal(ev.type === 'failure' && ev.operation, operation);
      assert.equal(ev.type === 'failure' && ev.logFile, '/logs/backup-errors.log');
      await store.close();
    });
  }

  test('a missing bucket and a missing source are pre-flight failures', async () => {
    const gone = testS3Store(`${bucket}-missing`, 'x');
    const e1 = await runBackup({ store: gone, sources: [src] }).catch((e: unknown) => e);
    assert.equal(failedOperation(e1), 'pre-flight');
    const e2 = await runBackup({ store: testS3Store(bucket, 'x'), sources: ['/no/such/source'] }).catch((e: unknown) => e);
    assert.equal(failedOperation(e2), 'pre-flight');
  });

  test('RunReporter: counts the backups of the repository for the message; failure reports are kept with the error', async () => {
    const store = testS3Store(bucket, 'reporter');
    const cfg = resolveConfig({
      flags: { repository: `s3://${bucket}/reporter` },
      env: { HOME: '/nonexistent', WEBHOOK_URL: `${rx.url}/hook` },
      cwd: '/nonexistent',
    });
    const lines: string[] = [];
    const reporter = new RunReporter(cfg, {
      sources: [src],
      log: { info: () => {}, warn: (m) => lines.push(m) },
      logFile: '/l/backup-errors.log',
    });
    rx.reset();
    await runBackup({ store, sources: [src] });
    const r2 = await runBackup({ store, sources: [src] });
    const rep = await reporter.success(r2, store);
    assert.deepEqual(rep.notifications, [{ channel: 'webhook', ok: true, attempts: 1 }]);
    assert.equal(JSON.parse(rx.posts[0]!.body).backupCount, 2);
    const err = new Error('boom');
    const frep = await reporter.failure(err);
    assert.equal(JSON.parse(rx.posts[1]!.body).operation, 'backup', 'an error from outside runBackup: the generic operation');
    assert.deepEqual(frep.notifications, [{ channel: 'webhook', ok: true, attempts: 1 }]);
    assert.deepEqual(lines, []);
    await store.close();
  });

  test('scheduler backup job: a store that cannot be opened is a notified pre-flight failure; a success reports its channels', async () => {
    const cfg = resolveConfig({
      flags: { repository: `s3://${bucket}/job` },
      env: { HOME: '/nonexistent', WEBHOOK_URL: `${rx.url}/hook` },
      cwd: '/nonexistent',
    });
    const log = { info: () => {}, warn: () => {}, error: () => {} };
    const reporter = new RunReporter(cfg, { sources: [src], log });
    rx.reset();
    const broken = backupJob({ openStore: () => Promise.reject(new Error('no credentials')), options: { sources: [src] }, log, reporter });
    await assert.rejects(broken(new AbortController().signal), /no credentials/);
    const ev = JSON.parse(rx.posts[0]!.body);
    assert.equal(ev.type, 'failure');
    assert.equal(ev.operation, 'pre-flight');
    assert.equal(ev.error, 'no credentials');
    const ok = backupJob({ openStore: async () => testS3Store(bucket, 'job'), options: { sources: [src] }, log, reporter });
    const outcome = await ok(new AbortController().signal);
    assert.equal(outcome.code, 0);
    assert.deepEqual(outcome.details?.notifications, [{ channel: 'webhook', ok: true, attempts: 1 }]);
    assert.equal(JSON.parse(rx.posts[1]!.body).type, 'success');
  });
});
