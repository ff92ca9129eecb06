// The Store contract: one suite, run against every backend (LocalStore on a temp dir, S3Store on
// the Ceph RGW that `npm test` starts). A new backend is one more entry in `backends`.
// Then S3-only checks: error translation (credentials, missing bucket, unreachable endpoint),
// prefixes, storage classes and multipart-upload housekeeping.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Hash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { createServer as createHttpServer, type ServerResponse } from 'node:http';
import * as os from 'node:os';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import {
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { AlreadyExistsError, NotFoundError, S3BackupError, StoreAccessError } from '../src/errors.ts';
import { LOCAL_TEMP_PREFIX, LocalStore } from '../src/store/local.ts';
import { S3Store } from '../src/store/s3.ts';
import { partSizeAt, uploadRequestsOf, uploadShape } from '../src/store/s3-parts.ts';
import { uploadRequests } from '../src/cost/pricing.ts';
import { framesInFlight } from '../src/backup/archive-set.ts';
import { getBuffer, readAll } from '../src/store/store.ts';
import type { ObjectInfo, Store, StoreCapabilities } from '../src/store/store.ts';
import { DelegatingStore } from '../src/store/delegating.ts';
import { ReadOnlyStore } from '../src/store/readonly.ts';
import { createTestBucket, deleteTestBucket, s3TestConfig, testS3Client, testS3Store } from './helpers/s3.ts';
import { closedPort } from './helpers/fake-aws.ts';

const MiB = 1024 * 1024;

interface Harness {
  store: Store;
  /** Leftovers of unfinished writes: temporary files, or incomplete multipart uploads. */
  unfinishedWrites(): Promise<string[]>;
  /** How many parts the object was uploaded in, where the backend has such a notion. */
  partsOf?(key: string): Promise<number>;
  /** Storage class a plain put reports in head/list. */
  defaultStorageClass: string | undefined;
  /** The optional features (Store.capabilities) the backend declares. */
  capabilities: (keyof StoreCapabilities)[];
  cleanup(): Promise<void>;
}

const backends: { name: string; setup(): Promise<Harness> }[] = [
  {
    name: 'LocalStore',
    async setup() {
      const dir = await fs.mkdtemp(path.join(tmpdir(), 's3backup-contract-'));
      const store = new LocalStore(path.join(dir, 'repo'));
      return {
        store,
        defaultStorageClass: undefined,
        capabilities: ['localFiles', 'tempFiles'],
        async unfinishedWrites() {
          const names = await fs.readdir(dir, { recursive: true }).catch(() => [] as string[]);
          return names.filter((n) => path.basename(n).startsWith(LOCAL_TEMP_PREFIX));
        },
        async cleanup() {
          await store.close();
          await fs.rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: 'S3Store',
    async setup() {
      const bucket = await createTestBucket('contract');
      // The smallest part size S3 allows, so that the 40 MiB test really goes multipart.
      const store = testS3Store(bucket, 'repo/one', { partSize: 5 * MiB });
      const raw = testS3Client();
      return {
        store,
        defaultStorageClass: 'STANDARD',
        capabilities: ['bucket', 'thaw', 'uploads', 'versions'],
        async unfinishedWrites() {
          const out: string[] = [];
          for await (const u of store.listMultipartUploads()) out.push(`${u.key} (${u.uploadId})`);
          return out;
        },
        async partsOf(key: string) {
          // A multipart object's ETag is "<md5 of part md5s>-<part count>".
          const h = await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: `repo/one/${key}` }));
          const m = /-(\d+)"?$/.exec(h.ETag ?? '');
          return m ? Number(m[1]) : 1;
        },
        async cleanup() {
          raw.destroy();
          await store.close();
          await deleteTestBucket(bucket);
        },
      };
    },
  },
];

/** Deterministic data in 1 MiB chunks, each stamped with its index; optionally fails after failAt bytes. */
function dataStream(size: number, opts: { hash?: Hash; failAt?: number } = {}): Readable {
  const block = createHash('sha512').update('contract').digest();
  const base = Buffer.alloc(MiB);
  for (let i = 0; i < MiB; i += block.length) block.copy(base, i);
  let sent = 0;
  let index = 0;
  return new Readable({
    read() {
      if (opts.failAt !== undefined && sent >= opts.failAt) {
        this.destroy(new Error(`source failed after ${sent} bytes`));
        return;
      }
      if (sent >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(MiB, size - sent);
      const chunk = Buffer.from(base.subarray(0, n));
      if (n >= 4) chunk.writeUInt32BE(index, 0);
      index++;
      sent += n;
      opts.hash?.update(chunk);
      this.push(chunk);
    },
  });
}

async function listAll(store: Store, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const o of store.list(prefix)) out.push(o);
  return out;
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Run fn over items with at most n in flight. */
async function inParallel<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Run fn with every AWS_* variable removed from the environment but these; restore them after. */
async function withAwsEnv(vars: Record<string, string>, fn: () => Promise<void>): Promise<void> {
  const saved = Object.entries(process.env).filter(([k]) => k.startsWith('AWS_'));
  for (const [k] of saved) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    await fn();
  } finally {
    for (const k of Object.keys(vars)) delete process.env[k];
    for (const [k, v] of saved) process.env[k] = v;
  }
}

for (const backend of backends) {
  describe(`Store contract: ${backend.name}`, () => {
    let h: Harness;
    let store: Store;
    before(async () => {
      h = await backend.setup();
      store = h.store;
    });
    after(async () => {
      await h?.cleanup();
    });

    it('probe succeeds on a usable store', async () => {
      await store.probe();
      assert.deepEqual(await listAll(store, ''), [], 'the probe leaves nothing behind');
    });

    it('declares its capabilities as data; a wrapper forwards them, a read-only one keeps the bucket view and local files only', async () => {
      const declared = (s: Store) =>
        Object.entries(s.capabilities())
          .filter(([, v]) => v !== undefined)
          .map(([k]) => k)
          .sort();
      assert.deepEqual(declared(store), h.capabilities);
      const wrapped = new DelegatingStore(new DelegatingStore(store));
      assert.deepEqual(declared(wrapped), h.capabilities);
      assert.deepEqual(
        declared(new ReadOnlyStore(store)),
        h.capabilities.filter((c) => c === 'bucket' || c === 'localFiles'),
      );
      // Through two wrappers the features still reach the backend.
      const caps = wrapped.capabilities();
      await store.put('caps/x', Buffer.from('x'));
      if (caps.bucket) {
        const keys: string[] = [];
        for await (const o of caps.bucket.listBucket(caps.bucket.bucketKey('caps/'))) keys.push(o.key);
        assert.deepEqual(keys, [caps.bucket.bucketKey('caps/x')]);
        assert.equal(typeof (await caps.bucket.region()), 'string');
      }
      if (caps.versions) assert.deepEqual(await caps.versions.objectLockStatus(), { enabled: false });
      if (caps.uploads) for await (const u of caps.uploads.listMultipartUploads()) assert.fail(`no upload expected, found ${u.key}`);
      if (caps.tempFiles) for await (const t of caps.tempFiles.listTemp()) assert.fail(`no temporary file expected, found ${t.key}`);
      await store.delete(['caps/x']);
    });

    it('puts and gets a buffer, and a second put replaces it', async () => {
      const data = randomBytes(4096);
      await store.put('buf/one', data);
      assert.deepEqual(await getBuffer(store, 'buf/one'), data);
      await store.put('buf/one', Buffer.from('replaced'));
      assert.equal((await getBuffer(store, 'buf/one')).toString(), 'replaced');
    });

    it('puts and gets an empty object', async () => {
      await store.put('buf/empty', Buffer.alloc(0));
      assert.equal((await getBuffer(store, 'buf/empty')).length, 0);
      assert.equal((await store.head('buf/empty'))?.size, 0);
    });

    it('reports consumption of a stream body in growing counts never ahead of what was read, ending at the size', async () => {
      const size = 5 * MiB + 77;
      let produced = 0;
      const counted = dataStream(size, { hash: { update: (c: Buffer) => (produced += c.length) } as unknown as Hash });
      const reports: number[] = [];
      await store.put('stream/consumed', counted, {
        sizeHint: size,
        onConsumed: (n) => reports.push(n) && assert.ok(n <= produced, `${n} reported, ${produced} read`),
      });
      for (let i = 1; i < reports.length; i++) assert.ok(reports[i]! > reports[i - 1]!, `reports grow: ${reports.join(', ')}`);
      if (reports.length > 0) assert.equal(reports.at(-1), size);
      // The local store reports as each chunk is written, S3 as each is copied into a part buffer.
      assert.ok(reports.length > 0, `${backend.name}: no reports`);
      assert.equal((await store.head('stream/consumed'))?.size, size);
    });

    it('puts a stream and gets it back', async () => {
      const hash = createHash('sha256');
      await store.put('stream/small', dataStream(3 * MiB + 123, { hash }), { sizeHint: 3 * MiB + 123 });
      const back = await getBuffer(store, 'stream/small');
      assert.equal(back.length, 3 * MiB + 123);
      assert.equal(createHash('sha256').update(back).digest('hex'), hash.digest('hex'));
    });

    it('puts keys with spaces, punctuation and non-ASCII characters', async () => {
      const keys = ['odd/a b+c=d&e,f;g.txt', 'odd/ünïcødé/日本.txt', "odd/pct%20x~!*()'$@"];
      for (const k of keys) await store.put(k, Buffer.from(k));
      for (const k of keys) assert.equal((await getBuffer(store, k)).toString(), k);
      assert.deepEqual(
        (await listAll(store, 'odd/')).map((o) => o.key),
        [...keys].sort(byteOrder),
      );
    });

    it('gets byte ranges, including the end of the object', async () => {
      const data = randomBytes(1000);
      await store.put('range/obj', data);
      const cases: [number, number][] = [
        [0, 10],
        [100, 200],
        [999, 1000],
        [990, 1000],
        [0, 1000],
      ];
      for (const [start, end] of cases) {
        assert.deepEqual(await getBuffer(store, 'range/obj', { start, end }), data.subarray(start, end), `[${start}, ${end})`);
      }
      // Like a file read: a range past the end is cut short, or empty when it starts there.
      assert.deepEqual(await getBuffer(store, 'range/obj', { start: 990, end: 5000 }), data.subarray(990));
      assert.equal((await getBuffer(store, 'range/obj', { start: 1000, end: 1010 })).length, 0);
      assert.equal((await getBuffer(store, 'range/obj', { start: 5, end: 5 })).length, 0);
    });

    it('head reports size, time and storage class; undefined when missing', async () => {
      const t0 = Date.now();
      await store.put('head/obj', Buffer.alloc(777, 1));
      const info = await store.head('head/obj');
      assert.ok(info);
      assert.equal(info.key, 'head/obj');
      assert.equal(info.size, 777);
      assert.ok(info.lastModified instanceof Date);
      // Servers keep whole seconds; allow clock skew between test and server.
      assert.ok(Math.abs(info.lastModified.getTime() - t0) < 120_000, `lastModified ${info.lastModified.toISOString()}`);
      assert.equal(info.storageClass, h.defaultStorageClass);
      assert.equal(await store.head('head/missing'), undefined);
      assert.equal(await store.head('nowhere/at/all'), undefined);
    });

    it('get of a missing key throws NotFoundError', async () => {
      await assert.rejects(store.get('missing/key'), (e) => e instanceof NotFoundError && e.key === 'missing/key');
      await assert.rejects(store.get('missing/key', { start: 0, end: 10 }), NotFoundError);
      await assert.rejects(store.get('missing/key', { start: 3, end: 3 }), NotFoundError);
    });

    it('lists by prefix in ascending byte order', async () => {
      const keys = ['list/b', 'list/a/1', 'list/a-b', 'list/a/2', 'list/c/d/e', 'list/z', 'list/é', 'listx', 'lis'];
      for (const k of keys) await store.put(k, Buffer.from(k));
      const under = (p: string) => keys.filter((k) => k.startsWith(p)).sort(byteOrder);
      for (const p of ['list/', 'list/a', 'list/a/', 'list', 'list/c/d/e', 'list/q']) {
        const got = await listAll(store, p);
        assert.deepEqual(
          got.map((o) => o.key),
          under(p),
          `list(${JSON.stringify(p)})`,
        );
      }
      const one = (await listAll(store, 'list/c/'))[0];
      assert.equal(one?.size, 'list/c/d/e'.length);
      assert.ok(one?.lastModified instanceof Date);
      assert.equal(one?.storageClass, h.defaultStorageClass);
    });

    it('lists and deletes more than 1000 keys (S3 pages and batches)', async () => {
      const keys = Array.from({ length: 1005 }, (_, i) => `many/${String(i).padStart(4, '0')}`);
      await inParallel(keys, 16, (k) => store.put(k, Buffer.from('x')));
      const listed = await listAll(store, 'many/');
      assert.equal(listed.length, keys.length);
      assert.deepEqual(
        listed.map((o) => o.key),
        keys,
      );
      await store.delete(keys);
      assert.deepEqual(await listAll(store, 'many/'), []);
    });

    it('deletes many keys, missing ones included', async () => {
      for (const k of ['del/a', 'del/b', 'del/c']) await store.put(k, Buffer.from(k));
      await store.delete(['del/a', 'del/missing', 'del/c', 'never/was']);
      assert.deepEqual(
        (await listAll(store, 'del/')).map((o) => o.key),
        ['del/b'],
      );
      await store.delete([]);
      await store.delete(['del/b', 'del/b']);
      assert.deepEqual(await listAll(store, 'del/'), []);
    });

    it('create-only put: the second one fails with AlreadyExistsError and the first content stays', async () => {
      await store.put('locks/one', Buffer.from('first'), { createOnly: true });
      await assert.rejects(
        store.put('locks/one', Buffer.from('second'), { createOnly: true }),
        (e) => e instanceof AlreadyExistsError && e.key === 'locks/one',
      );
      assert.equal((await getBuffer(store, 'locks/one')).toString(), 'first');
      // Concurrent create-only puts: exactly one wins.
      const results = await Promise.allSettled(
        Array.from({ length: 5 }, (_, i) => store.put('locks/race', Buffer.from(`writer ${i}`), { createOnly: true })),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof AlreadyExistsError, String(r.reason));
    });

    it('puts a 40 MiB stream (multipart on S3) and reads it back byte-identical', async () => {
      const size = 40 * MiB + 12345;
      const hash = createHash('sha256');
      await store.put('big/forty', dataStream(size, { hash }));
      const want = hash.digest('hex');
      const got = createHash('sha256');
      let n = 0;
      for await (const chunk of await store.get('big/forty')) {
        got.update(chunk as Buffer);
        n += (chunk as Buffer).length;
      }
      assert.equal(n, size);
      assert.equal(got.digest('hex'), want);
      assert.equal((await store.head('big/forty'))?.size, size);
      if (h.partsOf) assert.equal(await h.partsOf('big/forty'), 9, 'uploaded in 5 MiB parts');
      // A range across a part boundary.
      const mid = await getBuffer(store, 'big/forty', { start: 5 * MiB - 10, end: 5 * MiB + 10 });
      assert.equal(mid.length, 20);
      await store.delete(['big/forty']);
    });

    it('takes larger parts when the size hint says the object could pass 10,000 parts', async () => {
      // A hint just over 9,500 parts of 5 MiB: parts of 6 MiB, so 12 MiB goes up in 2, not 3.
      const size = 12 * MiB;
      await store.put('big/hinted', dataStream(size), { sizeHint: 9500 * 5 * MiB + 1 });
      await store.put('big/unhinted', dataStream(size));
      assert.equal((await store.head('big/hinted'))?.size, size);
      if (h.partsOf) {
        assert.equal(await h.partsOf('big/unhinted'), 3, '5 MiB parts');
        assert.equal(await h.partsOf('big/hinted'), 2, '6 MiB parts');
      }
      await store.delete(['big/hinted', 'big/unhinted']);
    });

    it('a stream that fails half way leaves no object and no unfinished upload', async () => {
      await assert.rejects(store.put('big/broken', dataStream(40 * MiB, { failAt: 17 * MiB })), /source failed after/);
      assert.equal(await store.head('big/broken'), undefined);
      assert.deepEqual(await h.unfinishedWrites(), []);
      // The same for a failure before the first part is complete.
      await assert.rejects(store.put('big/broken2', dataStream(40 * MiB, { failAt: 2 * MiB })), /source failed after/);
      assert.equal(await store.head('big/broken2'), undefined);
      assert.deepEqual(await h.unfinishedWrites(), []);
    });

    it('rejects invalid keys', async () => {
      for (const k of ['', '/abs', 'a//b', 'a/../b', './a', 'a/']) {
        await assert.rejects(store.put(k, Buffer.from('x')), S3BackupError, JSON.stringify(k));
      }
    });
  });
}

describe('S3Store only', () => {
  let bucket: string;
  before(async () => {
    bucket = await createTestBucket('s3only');
  });
  after(async () => {
    if (bucket) await deleteTestBucket(bucket);
  });

  /** Resolves to the StoreAccessError the promise rejects with (fails the test otherwise). */
  async function accessError(p: Promise<unknown>): Promise<StoreAccessError> {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof StoreAccessError, `expected StoreAccessError, got ${String(e)}`);
      return e;
    }
    assert.fail('expected a StoreAccessError, but the call succeeded');
  }

  it('wrong secret: probe and every operation fail with "credentials were rejected", secret not shown', async () => {
    const cfg = s3TestConfig();
    const secret = `${cfg.credentials.secretAccessKey}-WRONG-s3cr3t`;
    const store = testS3Store(bucket, 'p', { credentials: { accessKeyId: cfg.credentials.accessKeyId, secretAccessKey: secret } });
    try {
      const e = await accessError(store.probe());
      assert.match(e.message, /S3 credentials were rejected: the secret access key does not match/);
      assert.match(e.hint ?? '', /access key ID and secret/);
      for (const err of [
        e,
        await accessError(store.get('x')),
        await accessError(store.put('x', Buffer.from('x'))),
        await accessError(listAll(store, '')),
        await accessError(store.delete(['x'])),
        await accessError(store.head('x')),
      ]) {
        assert.ok(!`${err.message} ${err.hint}`.includes(secret), 'the secret is never shown');
        assert.match(err.message, /credentials were rejected/);
      }
    } finally {
      await store.close();
    }
  });

  it('unknown access key: "credentials were rejected"', async () => {
    const store = testS3Store(bucket, 'p', { credentials: { accessKeyId: 'NOSUCHKEY', secretAccessKey: 'whatever' } });
    try {
      const e = await accessError(store.probe());
      assert.match(e.message, /S3 credentials were rejected.*access key ID/);
    } finally {
      await store.close();
    }
  });

  it('missing bucket: StoreAccessError naming the bucket', async () => {
    const name = `missing-${randomBytes(6).toString('hex')}`;
    const store = testS3Store(name, 'p');
    try {
      const e = await accessError(store.probe());
      assert.match(e.message, new RegExp(`bucket ${name} does not exist`));
      assert.match(e.hint ?? '', /create it|--repo/);
      const e2 = await accessError(store.put('x', Buffer.from('x')));
      assert.match(e2.message, new RegExp(`bucket ${name} does not exist`));
      const e3 = await accessError(listAll(store, ''));
      assert.match(e3.message, new RegExp(`bucket ${name} does not exist`));
    } finally {
      await store.close();
    }
  });

  it('unreachable endpoint: StoreAccessError "cannot reach S3 endpoint"', async () => {
    // A loopback port that was free a moment ago: connections are refused at once.
    const port = await closedPort();
    const store = testS3Store(bucket, 'p', { endpoint: `http://127.0.0.1:${port}` });
    try {
      const e = await accessError(store.probe());
      assert.match(e.message, new RegExp(`cannot reach S3 endpoint http://127\\.0\\.0\\.1:${port}`));
      assert.match(e.hint ?? '', /--endpoint/);
      assert.equal(e.exitCode, 2, 'never reached: a setting to fix');
      await accessError(store.get('x'));
    } finally {
      await store.close();
    }
  });

  /** A loopback "S3 server" that counts requests and answers each with respond(res), or never. */
  async function silentServer(
    respond?: (res: ServerResponse) => void,
  ): Promise<{ endpoint: string; requests: () => number; close: () => Promise<void> }> {
    let requests = 0;
    const srv = createHttpServer((_req, res) => {
      requests++;
      respond?.(res);
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    return {
      endpoint: `http://127.0.0.1:${(srv.address() as { port: number }).port}`,
      requests: () => requests,
      close: () =>
        new Promise<void>((resolve) => {
          srv.closeAllConnections();
          srv.close(() => resolve());
        }),
    };
  }

  it('a server that accepts requests and never answers: StoreAccessError after the socket timeout, retried, not a hang', async () => {
    const server = await silentServer();
    const store = testS3Store(bucket, 'p', { endpoint: server.endpoint, socketTimeoutMs: 300 });
    try {
      const e = await accessError(store.head('x'));
      assert.match(e.message, new RegExp(`cannot reach S3 endpoint ${server.endpoint.replace(/\./g, '\\.')}`));
      assert.match(e.message, /timed out after 300 ms of inactivity/);
      // The SDK's standard retries: the silence is treated like any transient failure.
      assert.ok(server.requests() >= 2, `requests: ${server.requests()}`);
    } finally {
      await store.close();
      await server.close();
    }
  });

  it('a download whose body keeps stopping mid-way is taken up where it stopped, then fails as a lost connection instead of waiting forever', async () => {
    // Each answer: the headers for the range asked, 100 bytes of it, then silence.
    const ranges: string[] = [];
    const server = await silentServer((res) => {
      const range = /bytes=(\d+)-(\d+)/.exec(String(res.req.headers.range))!;
      ranges.push(range[0]);
      const [from, to] = [Number(range[1]), Number(range[2])];
      res.writeHead(206, {
        'Content-Length': to - from + 1,
        'Content-Range': `bytes ${from}-${to}/5000`,
        ETag: '"0123456789abcdef0123456789abcdef"',
      });
      res.write(Buffer.alloc(100, from / 100));
    });
    const store = testS3Store(bucket, 'p', { endpoint: server.endpoint, socketTimeoutMs: 300 });
    try {
      const body = await store.get('x', { start: 0, end: 1000 });
      const got: Buffer[] = [];
      body.on('data', (c: Buffer) => got.push(c));
      const e = await accessError(new Promise((resolve, reject) => body.once('error', reject).once('end', resolve)));
      assert.match(e.message, /^lost the connection to S3 endpoint .* while reading s3:\/\/.*\/p\/x \(.*; 5 tries\)$/);
      assert.equal(e.exitCode, 1);
      // Five answers, each from the first byte not yet received (If-Match the same version).
      assert.deepEqual(ranges, ['bytes=0-999', 'bytes=100-999', 'bytes=200-999', 'bytes=300-999', 'bytes=400-999']);
      const bytes = Buffer.concat(got);
      assert.equal(bytes.length, 500);
      for (let i = 0; i < 5; i++)
        assert.ok(
          bytes.subarray(i * 100, i * 100 + 100).every((b) => b === i),
          `bytes of answer ${i} in order`,
        );
    } finally {
      await store.close();
      await server.close();
    }
  });

  it('an endpoint that answered and then went away: "lost the connection", exit code 1 (a failed run, not a setting)', async () => {
    const server = await silentServer((res) => {
      res.writeHead(404);
      res.end();
    });
    const store = testS3Store(bucket, 'p', { endpoint: server.endpoint, socketTimeoutMs: 300 });
    try {
      assert.equal(await store.head('x'), undefined, 'answered: 404');
      await server.close();
      const e = await accessError(store.head('y'));
      assert.match(e.message, new RegExp(`lost the connection to S3 endpoint ${server.endpoint.replace(/\./g, '\\.')}`));
      assert.equal(e.exitCode, 1);
      assert.match(e.hint ?? '', /answered earlier in this run/);
    } finally {
      await store.close();
    }
  });

  it('no credentials anywhere: StoreAccessError "no usable AWS credentials"', async () => {
    const cfg = s3TestConfig();
    await withAwsEnv(
      {
        AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
        AWS_CONFIG_FILE: '/nonexistent/config',
        AWS_EC2_METADATA_DISABLED: 'true',
      },
      async () => {
        const store = new S3Store({ bucket, prefix: 'p', endpoint: cfg.endpoint, region: cfg.region });
        try {
          const e = await accessError(store.probe());
          assert.match(e.message, /no usable AWS credentials/);
          assert.match(e.hint ?? '', /AWS_ACCESS_KEY_ID/);
        } finally {
          await store.close();
        }
      },
    );
  });

  it('uses AWS_ENDPOINT_URL_S3 and the AWS_* keys from the environment, us-east-1 by default', async () => {
    const cfg = s3TestConfig();
    const env = {
      AWS_ENDPOINT_URL_S3: cfg.endpoint,
      AWS_ACCESS_KEY_ID: cfg.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: cfg.credentials.secretAccessKey,
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/credentials',
      AWS_CONFIG_FILE: '/nonexistent/config',
    };
    await withAwsEnv(env, async () => {
      const store = new S3Store({ bucket, prefix: 'env' });
      try {
        assert.equal(store.endpoint, cfg.endpoint.replace(/\/$/, ''));
        await store.probe();
        await store.put('k', Buffer.from('v'));
        assert.equal((await getBuffer(store, 'k')).toString(), 'v');
        assert.equal(await store.client.config.region(), 'us-east-1');
        await store.delete(['k']);
      } finally {
        await store.close();
      }
    });
  });

  it('keeps each prefix to itself; prefix "" is the bucket root', async () => {
    const a = testS3Store(bucket, '/pre/fix/');
    const b = testS3Store(bucket, 'pre/fixed');
    const root = testS3Store(bucket, '');
    const raw = testS3Client();
    try {
      assert.equal(a.location, `s3://${bucket}/pre/fix`);
      assert.equal(root.location, `s3://${bucket}`);
      await a.put('k/1', Buffer.from('a'));
      await b.put('k/1', Buffer.from('b'));
      await root.put('top', Buffer.from('r'));
      const rawKeys = (await raw.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'pre/' }))).Contents?.map((o) => o.Key);
      assert.deepEqual(rawKeys, ['pre/fix/k/1', 'pre/fixed/k/1']);
      assert.deepEqual(
        (await listAll(a, '')).map((o) => o.key),
        ['k/1'],
      );
      assert.deepEqual(
        (await listAll(b, '')).map((o) => o.key),
        ['k/1'],
      );
      assert.equal((await getBuffer(a, 'k/1')).toString(), 'a');
      assert.deepEqual(
        (await listAll(root, 'pre/fix/')).map((o) => o.key),
        ['pre/fix/k/1'],
      );
      assert.equal((await getBuffer(root, 'top')).toString(), 'r');
      // S3 console "folder" placeholders are not objects of the store.
      await raw.send(new PutObjectCommand({ Bucket: bucket, Key: 'pre/fix/folder/', Body: Buffer.alloc(0) }));
      assert.deepEqual(
        (await listAll(a, '')).map((o) => o.key),
        ['k/1'],
      );
      await raw.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'pre/fix/folder/' }));
      await root.delete(['pre/fix/k/1', 'pre/fixed/k/1', 'top']);
    } finally {
      raw.destroy();
      await Promise.all([a.close(), b.close(), root.close()]);
    }
  });

  it('stores and reports storage classes', async () => {
    const store = testS3Store(bucket, 'sc');
    try {
      await store.put('ia', Buffer.from('cold'), { storageClass: 'STANDARD_IA' });
      await store.put('ia-stream', dataStream(1000), { storageClass: 'STANDARD_IA' });
      await store.put('std', Buffer.from('warm'));
      assert.equal((await store.head('ia'))?.storageClass, 'STANDARD_IA');
      assert.equal((await store.head('ia-stream'))?.storageClass, 'STANDARD_IA');
      assert.equal((await store.head('std'))?.storageClass, 'STANDARD');
      const listed = Object.fromEntries((await listAll(store, '')).map((o) => [o.key, o.storageClass]));
      assert.deepEqual(listed, { ia: 'STANDARD_IA', 'ia-stream': 'STANDARD_IA', std: 'STANDARD' });
      await store.delete(['ia', 'ia-stream', 'std']);
    } finally {
      await store.close();
    }
  });

  it('create-only put needs a Buffer body', async () => {
    const store = testS3Store(bucket, 'co');
    try {
      await assert.rejects(store.put('x', dataStream(10), { createOnly: true }), /needs a Buffer body/);
      assert.equal(await store.head('x'), undefined);
    } finally {
      await store.close();
    }
  });

  it('lists and aborts unfinished multipart uploads under its prefix only', async () => {
    const store = testS3Store(bucket, 'mpu');
    const raw = testS3Client();
    try {
      const mine = await raw.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'mpu/data/x' }));
      const other = await raw.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'mpux/y' }));
      const found = [];
      for await (const u of store.listMultipartUploads()) found.push(u);
      assert.equal(found.length, 1);
      assert.equal(found[0]?.key, 'data/x');
      assert.equal(found[0]?.uploadId, mine.UploadId);
      assert.ok(found[0]?.initiated instanceof Date);
      await store.abortMultipartUpload('data/x', mine.UploadId!);
      await store.abortMultipartUpload('data/x', mine.UploadId!); // already gone: fine
      const left = [];
      for await (const u of store.listMultipartUploads()) left.push(u);
      assert.deepEqual(left, []);
      const outside = testS3Store(bucket, '');
      try {
        await outside.abortMultipartUpload('mpux/y', other.UploadId!);
      } finally {
        await outside.close();
      }
    } finally {
      raw.destroy();
      await store.close();
    }
  });

  it('reads a get body as a Node Readable', async () => {
    const store = testS3Store(bucket, 'rd');
    try {
      await store.put('x', Buffer.from('hello'));
      const body = await store.get('x');
      assert.ok(body instanceof Readable);
      assert.equal((await readAll(body)).toString(), 'hello');
      await store.delete(['x']);
    } finally {
      await store.close();
    }
  });
});

describe('S3 upload shape', () => {
  it('5 MiB parts first, then the configured ones, unless the hint needs more than 9,500; then fewer in flight, at least 2', () => {
    const small = { partSize: 8 * MiB, queueSize: 4, smallParts: 1000 };
    assert.deepEqual(uploadShape(undefined, 8 * MiB, 4), small);
    assert.deepEqual(uploadShape((1000 * 5 + 8500 * 8) * MiB, 8 * MiB, 4), small);
    assert.deepEqual(uploadShape((1000 * 5 + 8500 * 8) * MiB + 1, 8 * MiB, 4), { partSize: 8 * MiB, queueSize: 4, smallParts: 0 });
    assert.deepEqual(uploadShape(9500 * 8 * MiB, 8 * MiB, 4), { partSize: 8 * MiB, queueSize: 4, smallParts: 0 });
    assert.deepEqual(uploadShape(9500 * 8 * MiB + 1, 8 * MiB, 4), { partSize: 9 * MiB, queueSize: 3, smallParts: 0 });
    assert.deepEqual(uploadShape(9500 * 16 * MiB, 8 * MiB, 4), { partSize: 16 * MiB, queueSize: 2, smallParts: 0 });
    // A 1 TiB file: 111 MiB parts, two at a time.
    assert.deepEqual(uploadShape(2 ** 40, 8 * MiB, 4), { partSize: 111 * MiB, queueSize: 2, smallParts: 0 });
    assert.deepEqual(uploadShape(2 ** 40, 8 * MiB, 1), { partSize: 111 * MiB, queueSize: 1, smallParts: 0 });
    // Configured at the minimum: nothing smaller to start with.
    assert.deepEqual(uploadShape(undefined, 5 * MiB, 2), { partSize: 5 * MiB, queueSize: 2, smallParts: 0 });
  });

  it('part sizes by part number, and the requests an upload makes (what the cost model prices)', () => {
    const shape = uploadShape(undefined, 8 * MiB, 2);
    assert.deepEqual(
      [1, 1000, 1001, 9500].map((n) => partSizeAt(shape, n) / MiB),
      [5, 5, 8, 8],
    );
    assert.equal(uploadRequestsOf(5 * MiB, shape), 1, 'one part: one PutObject');
    assert.equal(uploadRequestsOf(5 * MiB + 1, shape), 2 + 2);
    assert.equal(uploadRequestsOf(1000 * 5 * MiB, shape), 1000 + 2);
    assert.equal(uploadRequestsOf(1000 * 5 * MiB + 1, shape), 1001 + 2);
    assert.equal(uploadRequestsOf(1000 * 5 * MiB + 16 * MiB + 1, shape), 1003 + 2);
    assert.equal(uploadRequests(64 * MiB), 13 + 2, 'the cost model: 13 parts of 5 MiB');
  });
});

describe('frames a backup keeps ahead of its store', () => {
  it('one per core, at least 2, whatever the store', () => {
    assert.equal(framesInFlight(), Math.max(2, os.availableParallelism()));
  });
});
