// Stream puts to S3 from a fixed set of part buffers (src/store/s3-multipart.ts), on the real
// Ceph RGW, through the fault proxy where an answer must get lost or a request be refused.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { StoreAccessError } from '../src/errors.ts';
import { PartBuffers, StreamUpload } from '../src/store/s3-multipart.ts';
import { getBuffer } from '../src/store/store.ts';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.ts';
import { createTestBucket, deleteTestBucket, s3TestConfig, testS3Store } from './helpers/s3.ts';
import { pseudoRandom } from './helpers/tree.ts';

const MiB = 1024 * 1024;
let bucket = '';
let proxy: FaultProxy;

before(async () => {
  bucket = await createTestBucket('multipart');
  proxy = await startFaultProxy({ upstream: s3TestConfig().endpoint, seed: 24 });
});
after(async () => {
  await proxy?.close();
  if (bucket) await deleteTestBucket(bucket);
});

/** A store reaching Ceph through the proxy, with S3's smallest parts. */
const proxied = (prefix: string) => testS3Store(bucket, prefix, { endpoint: proxy.url, partSize: 5 * MiB, queueSize: 2 });

/** `data` as a stream of 1 MiB chunks that are never reused: what was read stays as it was. */
const chunked = (data: Buffer) =>
  Readable.from(Array.from({ length: Math.ceil(data.length / MiB) }, (_, i) => data.subarray(i * MiB, (i + 1) * MiB)));

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

/** The proxy log's requests since `from`, as "METHOD kind". */
function requests(from: number): string[] {
  return proxy.log.slice(from).map((r) => {
    const q = new URLSearchParams(r.query);
    const kind = q.has('partNumber')
      ? 'part'
      : q.has('uploads')
        ? 'create'
        : q.has('uploadId')
          ? r.method === 'POST'
            ? 'complete'
            : 'abort'
          : 'object';
    return `${r.method} ${kind}`;
  });
}

async function uploadsLeft(prefix: string): Promise<number> {
  const store = testS3Store(bucket, prefix);
  let n = 0;
  for await (const _ of store.listMultipartUploads()) n++;
  await store.close();
  return n;
}

describe('S3 stream puts from a fixed set of part buffers', () => {
  test('26 MiB in 6 parts from 3 buffers, each reused; every byte reported consumed as it is copied; read back identical', async () => {
    const data = pseudoRandom(26 * MiB, 1);
    const store = proxied('pool');
    const distinct = new Set<ArrayBufferLike>();
    const buffers = new (class extends PartBuffers {
      override take(size: number): Buffer {
        const b = super.take(size);
        distinct.add(b.buffer);
        return b;
      }
    })(3);
    const consumed: number[] = [];
    const from = proxy.log.length;
    const upload = new StreamUpload({
      client: store.client,
      params: { Bucket: bucket, Key: 'pool/object' },
      shape: { partSize: 5 * MiB, queueSize: 2, smallParts: 0 },
      buffers,
      putWhole: () => assert.fail('a 26 MiB stream is not one PutObject'),
      onConsumed: (n) => consumed.push(n),
    });
    await upload.run(chunked(data));
    assert.equal(upload.sent, data.length);
    assert.equal(distinct.size, 3, 'two parts in flight and one filling');
    assert.deepEqual(
      consumed,
      Array.from({ length: 26 }, (_, i) => (i + 1) * MiB),
    );
    assert.deepEqual(requests(from), ['POST create', ...Array(6).fill('PUT part'), 'POST complete']);
    assert.equal(md5(await getBuffer(store, 'object')), md5(data));
    await store.close();
  });

  test('parts that grow: 5 MiB ones first, then the part size, from buffers of the size being filled', async () => {
    const data = pseudoRandom(26 * MiB + 123, 3);
    const store = proxied('grow');
    const taken: number[] = [];
    const buffers = new (class extends PartBuffers {
      override take(size: number): Buffer {
        const b = super.take(size);
        assert.equal(b.length, size);
        taken.push(size / MiB);
        return b;
      }
    })(3);
    const from = proxy.log.length;
    const upload = new StreamUpload({
      client: store.client,
      params: { Bucket: bucket, Key: 'grow/object' },
      shape: { partSize: 6 * MiB, queueSize: 2, smallParts: 2 },
      buffers,
      putWhole: () => assert.fail('a 26 MiB stream is not one PutObject'),
    });
    await upload.run(chunked(data));
    // 5 + 5 + 6 + 6 + 4 MiB and a bit: the last part's buffer is a 6 MiB one.
    assert.deepEqual(taken, [5, 5, 6, 6, 6]);
    assert.deepEqual(requests(from), ['POST create', ...Array(5).fill('PUT part'), 'POST complete']);
    assert.equal(md5(await getBuffer(store, 'object')), md5(data));
    await store.close();
  });

  test('a stream that fits in one part is one PutObject; an empty one too, and one of strings', async () => {
    const store = proxied('single');
    const from = proxy.log.length;
    const data = pseudoRandom(5 * MiB, 2); // exactly one part: nothing follows it
    await store.put('whole', chunked(data));
    await store.put('empty', Readable.from([]));
    assert.deepEqual(requests(from), ['PUT object', 'HEAD object', 'PUT object', 'HEAD object']);
    assert.equal(md5(await getBuffer(store, 'whole')), md5(data));
    assert.equal((await store.head('empty'))?.size, 0);
    await store.put('strings', Readable.from(['a stream ', 'of strings']));
    assert.equal((await getBuffer(store, 'strings')).toString(), 'a stream of strings');
    await store.close();
  });

  test("an UploadPart's and the CompleteMultipartUpload's answers lost: retried, the object is whole", async () => {
    const store = proxied('lost');
    const data = pseudoRandom(12 * MiB, 3);
    const part = proxy.addRule({ method: 'PUT', query: 'partNumber', count: { nth: 2 }, action: { kind: 'forward-drop' } });
    const complete = proxy.addRule({ method: 'POST', query: 'uploadId', count: { nth: 1 }, action: { kind: 'forward-drop' } });
    try {
      await store.put('object', chunked(data));
    } finally {
      part.remove();
      complete.remove();
    }
    assert.equal(part.fired, 1);
    assert.equal(complete.fired, 1, 'the retry of the completion met NoSuchUpload, and the object was found whole');
    assert.equal(md5(await getBuffer(store, 'object')), md5(data));
    assert.equal(await uploadsLeft('lost/'), 0);
    await store.close();
  });

  test('a part refused: the put fails with a clear error, the stream is destroyed with it, the multipart upload is aborted', async () => {
    const store = proxied('refused');
    const from = proxy.log.length;
    const refuse = proxy.addRule({
      method: 'PUT',
      query: 'partNumber',
      count: { nth: 2 },
      action: { kind: 'status', status: 403, code: 'AccessDenied', message: 'Access Denied' },
    });
    const body = chunked(pseudoRandom(40 * MiB, 4)); // still being read when part 2 is refused
    try {
      const e = await store.put('object', body).then(
        () => assert.fail('the put succeeded'),
        (x: unknown) => x,
      );
      assert.ok(e instanceof StoreAccessError, String(e));
      assert.match(e.message, /access denied|write objects/i);
      assert.equal(body.errored, e, "the producer sees the store's error");
    } finally {
      refuse.remove();
    }
    assert.ok(requests(from).includes('DELETE abort'), requests(from).join(', '));
    assert.equal(await uploadsLeft('refused/'), 0);
    assert.equal(await store.head('object'), undefined);
    await store.close();
  });

  test('the stream fails half-way: its error is the put’s, and the multipart upload is aborted', async () => {
    const store = proxied('source');
    const data = pseudoRandom(12 * MiB, 5);
    const failing = Readable.from(
      (async function* () {
        yield data.subarray(0, 6 * MiB);
        yield data.subarray(6 * MiB, 11 * MiB);
        throw new Error('the source broke');
      })(),
    );
    await assert.rejects(store.put('object', failing), /the source broke/);
    assert.equal(await uploadsLeft('source/'), 0);
    assert.equal(await store.head('object'), undefined);
    await store.close();
  });
});
