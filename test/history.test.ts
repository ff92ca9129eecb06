// Run history on the local store and on Ceph RGW: records from two hosts appended at the same
// time all arrive, compaction merges them into segments without losing or doubling any (also
// when it is interrupted, or runs twice at once), unreadable objects are reported and kept,
// and the history survives forget and prune. Backups write success and failure records; a
// history that cannot be written never fails a backup.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { runBackup } from '../src/backup/backup.ts';
import { forget, prune } from '../src/prune/prune.ts';
import { Repository } from '../src/repo/repository.ts';
import { runVerify } from '../src/verify/verify.ts';
import {
  appendRun,
  compactHistory,
  HISTORY_RUNS,
  HISTORY_SEGMENTS,
  historyCsv,
  readHistory,
  runKey,
  sourceKeyOf,
} from '../src/monitor/history.ts';
import type { RunRecord } from '../src/monitor/types.ts';
import { LocalStore } from '../src/store/local.ts';
import { StoreAccessError } from '../src/errors.ts';
import type { PutOptions, Store } from '../src/store/store.ts';
import { DelegatingStore } from './helpers/store.ts';
import { createTestBucket, deleteTestBucket, testS3Store } from './helpers/s3.ts';
import { tempDir } from './helpers/tree.ts';

const work = tempDir('history');
after(() => fs.rmSync(work, { recursive: true, force: true }));

let recordSeq = 0;
function record(host: string, i: number, extra: Partial<RunRecord> = {}): RunRecord {
  const time = new Date(Date.UTC(2026, 0, 1) + i * 3_600_000 + (recordSeq++ % 1000));
  const id = `${time.toISOString().replace(/[-:]/g, '')}-${(0x10000000 + recordSeq).toString(16)}`;
  return {
    id,
    time: time.toISOString(),
    host,
    sources: ['/data'],
    sourceKey: sourceKeyOf(host, ['/data']),
    tags: [],
    kind: i % 7 === 0 ? 'full' : 'incremental',
    ok: true,
    durationMs: 1000 + i,
    files: 100 + i,
    bytesIn: 5000 + i,
    bytesTotal: 50_000 + i,
    bytesStored: 2000 + i,
    compressionRatio: 2.5,
    newFiles: 1,
    changedFiles: 2,
    deletedFiles: 0,
    warnings: 0,
    ...extra,
  };
}

async function keys(store: Store, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out.sort();
}

const ids = (rs: RunRecord[]) => rs.map((r) => r.id);

/** A store that fails deletes (a compaction killed after writing its segment) or segment puts. */
class FailingStore extends DelegatingStore {
  failDelete = false;
  failPutPrefix: string | undefined;
  override put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    if (this.failPutPrefix && key.startsWith(this.failPutPrefix)) {
      // As a real store does: read the stream (and own its errors), then fail.
      if (!Buffer.isBuffer(body)) {
        body.on('error', () => {});
        body.resume();
      }
      return Promise.reject(new Error(`injected failure writing ${key}`));
    }
    return super.put(key, body, opts);
  }
  override delete(keys: string[]): Promise<void> {
    // (compaction's permission check deletes a key that does not exist: a crash comes after it)
    if (this.failDelete && !keys.every((k) => k.endsWith('.compaction-check')))
      return Promise.reject(new Error('injected failure deleting'));
    return super.delete(keys);
  }
}

/** Credentials that may write but not delete (a role without s3:DeleteObject on history/). */
class NoDeleteStore extends DelegatingStore {
  deletes = 0;
  override delete(keys: string[]): Promise<void> {
    this.deletes++;
    return Promise.reject(
      new StoreAccessError(`access denied: these S3 credentials may not delete objects (s3:DeleteObject): ${keys[0]}`, {
        hint: 'grant s3:DeleteObject on history/runs/*',
      }),
    );
  }
}

function historySuite(name: string, open: (label: string) => Promise<Store>): void {
  describe(name, { concurrency: 1 }, () => {
    test('two hosts append at once (with compaction running): every record once, oldest first', async () => {
      const store = await open('concurrent');
      try {
        const a = Array.from({ length: 30 }, (_, i) => record('host-a', i));
        const b = Array.from({ length: 30 }, (_, i) => record('host-b', i));
        // A low threshold so both hosts compact while the other still appends.
        await Promise.all([
          (async () => {
            for (const r of a) await appendRun(store, r, { compactThreshold: 8 });
          })(),
          (async () => {
            for (const r of b) await appendRun(store, r, { compactThreshold: 8 });
          })(),
        ]);
        const got = await readHistory(store);
        const want = [...a, ...b].sort((x, y) => (x.time < y.time ? -1 : x.time > y.time ? 1 : x.id < y.id ? -1 : 1));
        assert.deepEqual(ids(got), ids(want));
        assert.deepEqual(got[5], want[5]);
        assert.ok((await keys(store, HISTORY_SEGMENTS)).length >= 1, 'compaction wrote segments');
        assert.ok((await keys(store, HISTORY_RUNS)).length < 60, 'compaction removed merged run objects');
        // The same record appended twice (a retry) stays one record.
        await appendRun(store, a[3]!, { compactThreshold: 0 });
        assert.equal((await readHistory(store)).length, 60);
      } finally {
        await store.close();
      }
    });

    test('compaction: loose runs into a segment, many segments into one; nothing lost or doubled', async () => {
      const store = await open('compact');
      try {
        const rs = Array.from({ length: 25 }, (_, i) => record('h', i));
        for (const r of rs.slice(0, 10)) await appendRun(store, r, { compactThreshold: 0 });
        const c1 = await compactHistory(store);
        assert.equal(c1.runsMerged, 10);
        assert.equal(c1.records, 10);
        assert.deepEqual(await keys(store, HISTORY_RUNS), []);
        assert.deepEqual(await keys(store, HISTORY_SEGMENTS), [c1.segment]);
        // The segment is zstd NDJSON, one record per line.
        const { getBuffer } = await import('../src/store/store.ts');
        const lines = zlib
          .zstdDecompressSync(await getBuffer(store, c1.segment!))
          .toString('utf8')
          .trim()
          .split('\n');
        assert.deepEqual(
          lines.map((l) => JSON.parse(l).id),
          ids(rs.slice(0, 10)),
        );
        for (const r of rs.slice(10, 20)) await appendRun(store, r, { compactThreshold: 0 });
        await compactHistory(store);
        for (const r of rs.slice(20)) await appendRun(store, r, { compactThreshold: 0 });
        assert.equal((await keys(store, HISTORY_SEGMENTS)).length, 2);
        // Past maxSegments, the segments are merged too: one segment with everything.
        const c3 = await compactHistory(store, { maxSegments: 1 });
        assert.equal(c3.segmentsMerged, 2);
        assert.equal(c3.runsMerged, 5);
        assert.deepEqual(await keys(store, HISTORY_SEGMENTS), [c3.segment]);
        assert.deepEqual(ids(await readHistory(store)), ids(rs));
        // Nothing to do: nothing written.
        const c4 = await compactHistory(store);
        assert.equal(c4.runsMerged, 0);
        assert.deepEqual(await keys(store, HISTORY_SEGMENTS), [c3.segment]);
      } finally {
        await store.close();
      }
    });

    test('a compaction interrupted after its segment, or failing to write it, loses nothing', async () => {
      const inner = await open('crash');
      const store = new FailingStore(inner);
      try {
        const rs = Array.from({ length: 12 }, (_, i) => record('h', i));
        for (const r of rs) await appendRun(store, r, { compactThreshold: 0 });
        // Killed between writing the segment and deleting the merged runs.
        store.failDelete = true;
        await assert.rejects(compactHistory(store), /injected failure deleting/);
        assert.equal((await keys(store, HISTORY_SEGMENTS)).length, 1);
        assert.equal((await keys(store, HISTORY_RUNS)).length, 12);
        assert.deepEqual(ids(await readHistory(store)), ids(rs), 'segment and loose runs are merged without duplicates');
        // The next compaction finishes the job.
        store.failDelete = false;
        await compactHistory(store, { maxSegments: 0 });
        assert.deepEqual(await keys(store, HISTORY_RUNS), []);
        assert.equal((await keys(store, HISTORY_SEGMENTS)).length, 1);
        assert.deepEqual(ids(await readHistory(store)), ids(rs));
        // A segment that cannot be written: nothing is deleted.
        const more = Array.from({ length: 3 }, (_, i) => record('h', 100 + i));
        for (const r of more) await appendRun(store, r, { compactThreshold: 0 });
        store.failPutPrefix = HISTORY_SEGMENTS;
        await assert.rejects(compactHistory(store), /injected failure writing history\/segments\//);
        assert.equal((await keys(store, HISTORY_RUNS)).length, 3);
        assert.deepEqual(ids(await readHistory(store)), ids([...rs, ...more]));
        // appendRun's automatic compaction failing is no failure of the append.
        const last = record('h', 200);
        await appendRun(store, last, { compactThreshold: 1 });
        assert.ok((await readHistory(store)).some((r) => r.id === last.id));
      } finally {
        await store.close();
      }
    });

    test('compaction refused for lack of delete permission: a warning naming it, and no segment written', async () => {
      const inner = await open('nodelete');
      const store = new NoDeleteStore(inner);
      try {
        const rs = Array.from({ length: 6 }, (_, i) => record('h', i));
        for (const r of rs.slice(0, 5)) await appendRun(store, r, { compactThreshold: 0 });
        const warnings: string[] = [];
        await appendRun(store, rs[5]!, { compactThreshold: 3, onWarning: (w) => warnings.push(w) });
        assert.equal(warnings.length, 1, warnings.join('\n'));
        assert.match(
          warnings[0]!,
          /run history not compacted \(6 loose run records under history\/runs\/\): access denied.*s3:DeleteObject.*; grant s3:DeleteObject on history\/runs\/\*/,
        );
        // Found out before a segment was written: retries do not pile up copies of the records.
        assert.deepEqual(await keys(store, HISTORY_SEGMENTS), []);
        assert.equal((await keys(store, HISTORY_RUNS)).length, 6);
        assert.deepEqual(ids(await readHistory(store)), ids(rs));
      } finally {
        await store.close();
      }
    });

    test('unreadable records and segments are reported and skipped, and compaction keeps them', async () => {
      const store = await open('corrupt');
      try {
        const good = [record('h', 1), record('h', 2)];
        for (const r of good) await appendRun(store, r, { compactThreshold: 0 });
        await store.put(`${HISTORY_RUNS}garbage-h.json`, Buffer.from('{"not": "a record"}'));
        await store.put(`${HISTORY_SEGMENTS}bad_bad-00000000.ndjson.zst`, Buffer.from('not zstd'));
        const warnings: string[] = [];
        assert.deepEqual(ids(await readHistory(store, { onWarning: (w) => warnings.push(w) })), ids(good));
        assert.equal(warnings.length, 2, warnings.join('\n'));
        assert.match(warnings.join('\n'), /garbage-h\.json is not a valid run record/);
        assert.match(warnings.join('\n'), /bad_bad-00000000\.ndjson\.zst cannot be decompressed/);
        await compactHistory(store, { maxSegments: 0 });
        assert.deepEqual(await keys(store, HISTORY_RUNS), [`${HISTORY_RUNS}garbage-h.json`]);
        assert.ok((await keys(store, HISTORY_SEGMENTS)).includes(`${HISTORY_SEGMENTS}bad_bad-00000000.ndjson.zst`));
        assert.deepEqual(ids(await readHistory(store)), ids(good));
      } finally {
        await store.close();
      }
    });

    test('backups write run records that outlive forget and prune; verify and list ignore history/', async () => {
      const store = await open('backups');
      const src = path.join(work, `src-${name.replace(/\W+/g, '-')}`, 'data');
      fs.mkdirSync(src, { recursive: true });
      try {
        const results = [];
        for (let i = 0; i < 4; i++) {
          fs.writeFileSync(path.join(src, `f${i}.txt`), `file ${i}\n`.repeat(100));
          results.push(await runBackup({ store, sources: [src], host: 'h1' }));
        }
        for (const r of results) assert.deepEqual(r.anomalies, [], 'too little history to judge anything');
        const repo = await Repository.open(store);
        const f = await forget(repo, { policy: { last: 1 } });
        await prune(repo, { forgotten: f.removed, graceMs: 0 });
        assert.equal((await repo.snapshotIds()).length, 1);
        const hist = await readHistory(store);
        assert.deepEqual(
          ids(hist),
          results.map((r) => r.id),
        );
        const last = hist.at(-1)!;
        assert.equal(last.ok, true);
        assert.equal(last.kind, 'incremental');
        assert.equal(last.host, 'h1');
        assert.deepEqual(last.sources, [src]);
        assert.equal(last.sourceKey, sourceKeyOf('h1', [src]));
        assert.equal(last.newFiles, 1);
        assert.equal(last.files, 4);
        assert.equal(last.bytesStored, results[3]!.bytesStored);
        assert.deepEqual(last.extensions, { txt: 1 });
        assert.equal(hist[0]!.kind, 'full');
        assert.deepEqual(hist[0]!.extensions, { txt: 1 });
        assert.ok((await keys(store, 'history/')).length > 0);
        assert.equal((await runVerify({ store, snapshot: 'latest', deep: true })).ok, true);
        assert.equal((await repo.listBackups()).length, 1);
        // The CSV has a header and one line per run.
        const csv = historyCsv(hist).trim().split('\r\n');
        assert.equal(csv.length, 5);
        assert.match(csv[0]!, /^timestamp,id,host,sources,kind,ok,duration_seconds,files,bytes_in/);
        assert.ok(csv[4]!.startsWith(`${last.time},${last.id},h1,${src},incremental,true,`));
      } finally {
        await store.close();
      }
    });

    test('a failed backup leaves a failure record and its own error; a history that cannot be written only warns', async () => {
      const inner = await open('failures');
      const store = new FailingStore(inner);
      const src = path.join(work, `fsrc-${name.replace(/\W+/g, '-')}`, 'data');
      fs.mkdirSync(src, { recursive: true });
      fs.writeFileSync(path.join(src, 'a.txt'), 'a\n');
      try {
        await runBackup({ store, sources: [src], host: 'h2' });
        store.failPutPrefix = 'snapshots/';
        await assert.rejects(runBackup({ store, sources: [src], host: 'h2' }), /injected failure writing snapshots\//);
        const hist = await readHistory(store);
        assert.equal(hist.length, 2);
        const failed = hist[1]!;
        assert.equal(failed.ok, false);
        assert.match(failed.error!, /injected failure writing snapshots\//);
        assert.equal(failed.operation, 'manifest');
        assert.equal(failed.kind, 'incremental');
        assert.equal(failed.sourceKey, hist[0]!.sourceKey);
        assert.ok(!(await Repository.open(store).then((r) => r.snapshotIds())).includes(failed.id), 'a failure id names no manifest');
        // The archive upload failing mid-backup: the backup fails with the upload's error (not
        // a wait for the broken pipe to drain) and leaves a failure record.
        store.failPutPrefix = 'archives/';
        await assert.rejects(runBackup({ store, sources: [src], host: 'h2' }), /injected failure writing archives\//);
        const upload = (await readHistory(store)).at(-1)!;
        assert.equal(upload.ok, false);
        assert.equal(upload.operation, 'upload');
        assert.match(upload.error!, /injected failure writing archives\//);
        assert.equal((await readHistory(store)).length, 3);
        // History not writable: the backup still succeeds, with a warning.
        store.failPutPrefix = 'history/';
        const warnings: string[] = [];
        const ok = await runBackup({ store, sources: [src], host: 'h2', onWarning: (w) => warnings.push(w) });
        assert.match(warnings.join('\n'), /run record of backup .* not written to the history: injected failure writing history\/runs\//);
        assert.ok(ok.warnings.some((w) => w.includes('not written to the history')));
        // A source that is gone (an unmounted disk): its usage error, and a failure record.
        store.failPutPrefix = undefined;
        const gone = path.join(work, 'does-not-exist');
        await assert.rejects(runBackup({ store, sources: [gone], host: 'h2' }), /does not exist/);
        const missing = (await readHistory(store)).at(-1)!;
        assert.equal(missing.ok, false);
        assert.equal(missing.operation, 'pre-flight');
        assert.deepEqual(missing.sources, [gone]);
        assert.equal(missing.sourceKey, sourceKeyOf('h2', [gone]));
        // Both failing: the original error, not the history's.
        store.failPutPrefix = 'history/';
        await assert.rejects(runBackup({ store, sources: [gone], host: 'h2' }), /does not exist/);
        store.failPutPrefix = undefined;
        // history: false writes nothing.
        const before = (await keys(store, 'history/')).length;
        await runBackup({ store, sources: [src], host: 'h2', history: false });
        assert.equal((await keys(store, 'history/')).length, before);
        assert.equal(runKey({ id: 'x/y', host: 'a b' }), `${HISTORY_RUNS}x_y-a_b.json`);
        // No repository there: a failing backup writes nothing (no repository made just for that).
        const empty = await open('failures-empty');
        try {
          await assert.rejects(runBackup({ store: empty, sources: [gone], host: 'h2' }), /does not exist/);
          assert.deepEqual(await keys(empty, ''), []);
        } finally {
          await empty.close();
        }
      } finally {
        await store.close();
      }
    });
  });
}

describe('run history', { concurrency: true }, () => {
  historySuite('on a local store', async (label) => {
    const dir = path.join(work, 'local', label);
    fs.mkdirSync(dir, { recursive: true });
    return new LocalStore(dir);
  });

  let bucket = '';
  after(async () => {
    if (bucket) await deleteTestBucket(bucket);
  });
  historySuite('on S3 (Ceph RGW)', async (label) => {
    if (!bucket) bucket = await createTestBucket('history');
    return testS3Store(bucket, label);
  });
});
