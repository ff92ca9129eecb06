// The fault-injecting proxy (test/helpers/fault-proxy.ts), proven with the real AWS SDK talking to
// Ceph RGW through it: each action has the effect on the client it is meant to have, and S3
// itself (read by a second client, without the proxy) did or did not do the work. The count
// selectors and the seeded probabilities pick the same requests on every run.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import { after, before, describe, test, type TestContext } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { type FaultProxy, type ProxyLogEntry, startFaultProxy } from './helpers/fault-proxy.ts';
import { createTestBucket, deleteTestBucket, s3TestConfig, testS3Client } from './helpers/s3.ts';
import { pseudoRandom } from './helpers/tree.ts';

const MiB = 1024 * 1024;
const direct = testS3Client();
let bucket = '';

before(async () => {
  bucket = await createTestBucket('fault-proxy');
});

after(async () => {
  direct.destroy();
  await deleteTestBucket(bucket);
});

async function proxyFor(t: TestContext, seed = 1): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ upstream: s3TestConfig().endpoint, seed });
  t.after(() => proxy.close());
  return proxy;
}

/** The real SDK, configured as the project's S3Store configures it for S3-compatible servers, with the proxy as its endpoint. */
function clientThrough(t: TestContext, proxy: FaultProxy, opts: { maxAttempts?: number; socketTimeout?: number } = {}): S3Client {
  const client = new S3Client({
    ...s3TestConfig(),
    endpoint: proxy.url,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: opts.maxAttempts ?? 3,
    requestHandler: { connectionTimeout: 2000, socketTimeout: opts.socketTimeout ?? 10_000 },
  });
  t.after(() => client.destroy());
  return client;
}

/** The rejection of p (fails the test if p resolves). */
async function rejection(
  p: Promise<unknown>,
): Promise<Error & { $metadata?: { httpStatusCode?: number; attempts?: number }; code?: string }> {
  const outcome = await p.then(
    () => ({ ok: true as const }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  if (outcome.ok) assert.fail('expected the request to fail');
  return outcome.e as Error;
}

async function existsInCeph(key: string): Promise<boolean> {
  try {
    await direct.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (e) {
    if ((e as Error).name === 'NotFound') return false;
    throw e;
  }
}

async function cephBody(key: string): Promise<Buffer> {
  const r = await direct.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

/** Reads a body stream to its end or its error: how many bytes came, and the error if any. */
async function drain(body: Readable): Promise<{ bytes: number; error?: Error }> {
  let bytes = 0;
  try {
    for await (const chunk of body) bytes += (chunk as Buffer).length;
    return { bytes };
  } catch (e) {
    return { bytes, error: e as Error };
  }
}

/** Polls until cond holds; bounded. */
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); ) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** p, or a failure after ms: nothing in these tests waits unbounded. */
async function within<T>(p: Promise<T>, what: string, ms = 3000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

describe('fault proxy', () => {
  test('without rules it relays as it is: signatures hold, an 8 MiB part streams through, keep-alive connections are reused', async (t) => {
    const proxy = await proxyFor(t);
    const client = clientThrough(t, proxy);
    for (let i = 0; i < 3; i++) await client.send(new PutObjectCommand({ Bucket: bucket, Key: `plain/${i}`, Body: `body ${i}` }));
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'plain/2' }));
    assert.equal(await got.Body!.transformToString(), 'body 2');
    // Four requests, one connection: the SDK's keep-alive works through the proxy.
    assert.equal(proxy.counters.requests, 4);
    assert.equal(proxy.counters.connections, 1);

    const part1 = pseudoRandom(8 * MiB + 5, 11);
    const part2 = pseudoRandom(1000, 12);
    const key = 'plain/multipart';
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const e1 = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: part1 }));
    const e2 = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 2, Body: part2 }));
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: e1.ETag! },
            { PartNumber: 2, ETag: e2.ETag! },
          ],
        },
      }),
    );
    assert.equal(md5(await cephBody(key)), md5(Buffer.concat([part1, part2])));
    assert.equal(proxy.counters.faults, 0);
    assert.deepEqual(
      proxy.log.map((e) => e.method),
      ['PUT', 'PUT', 'PUT', 'GET', 'POST', 'PUT', 'PUT', 'POST'],
    );
    assert.ok(proxy.log.every((e) => e.status === 200 && e.upstreamStatus === 200 && !e.fault));
    assert.match(proxy.log[4]!.query, /(^|&)uploads(=|&|$)/);
    assert.match(proxy.log[5]!.query, /partNumber=1/);
  });

  test('bodies stream both ways and headers pass as sent: the upstream gets half a request before the client sends the rest, the client half an answer', async (t) => {
    // A local upstream, since Ceph cannot be watched mid-body.
    let received = 0;
    let upstreamHeaders: string[] = [];
    let finishAnswer: (() => void) | undefined;
    const upstream = http.createServer((req, res) => {
      upstreamHeaders = req.rawHeaders;
      req.on('data', (c: Buffer) => (received += c.length));
      req.on('end', () => {
        res.writeHead(200, { 'content-length': 2000 });
        res.write('a'.repeat(1000));
        finishAnswer = () => res.end('b'.repeat(1000));
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    t.after(() => {
      upstream.closeAllConnections();
      upstream.close();
    });
    const proxy = await startFaultProxy({ upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` });
    t.after(() => proxy.close());

    const req = http.request({
      host: '127.0.0.1',
      port: proxy.port,
      method: 'PUT',
      path: '/bucket/some/key',
      headers: { Host: 'signed-host.example:7480', 'Content-Length': 2000, 'X-Amz-Meta-Case': 'Kept' },
      agent: false,
    });
    const response = new Promise<http.IncomingMessage>((r) => req.on('response', r));
    req.write('x'.repeat(1000));
    await until(() => received === 1000, 'the first half of the request at the upstream');
    req.end('y'.repeat(1000));
    const res = await within(response, "the answer's headers at the client");
    let got = 0;
    res.on('data', (c: Buffer) => (got += c.length));
    await until(() => got === 1000, 'the first half of the answer at the client');
    assert.equal(received, 2000);
    finishAnswer!();
    await within(new Promise((r) => res.on('end', r)), 'the end of the answer');
    assert.equal(got, 2000);
    assert.deepEqual(upstreamHeaders.slice(0, 6), [
      'Host',
      'signed-host.example:7480',
      'Content-Length',
      '2000',
      'X-Amz-Meta-Case',
      'Kept',
    ]);
    assert.ok(!upstreamHeaders.some((h) => /^close$/i.test(h)), "the client's Connection: close stays on its own hop");
  });

  test('status: a 503 SlowDown is retried and the retry succeeds; a spurious 404 NoSuchKey is believed; a 500 every time exhausts the attempts', async (t) => {
    const proxy = await proxyFor(t);
    const client = clientThrough(t, proxy, { maxAttempts: 3 });

    proxy.addRule({ method: 'PUT', path: /\/status\/slow$/, count: { nth: 1 }, action: { kind: 'status', status: 503 } });
    const put = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'status/slow', Body: 'slow' }));
    assert.equal(put.$metadata.attempts, 2);
    assert.equal((await cephBody('status/slow')).toString(), 'slow');
    assert.deepEqual(
      proxy.log.map((e) => [e.fault, e.status]),
      [
        ['status', 503],
        [undefined, 200],
      ],
    );

    proxy.clearRules();
    proxy.addRule({ method: 'GET', path: /\/status\/slow$/, action: { kind: 'status', status: 404 } });
    const notFound = await rejection(client.send(new GetObjectCommand({ Bucket: bucket, Key: 'status/slow' })));
    assert.equal(notFound.name, 'NoSuchKey');
    assert.equal(notFound.$metadata?.attempts, 1);
    assert.ok(await existsInCeph('status/slow'), 'the object is there all the same');

    proxy.clearRules();
    proxy.addRule({ method: 'PUT', action: { kind: 'status', status: 500, code: 'InternalError' } });
    const before = proxy.counters.requests;
    const failed = await rejection(client.send(new PutObjectCommand({ Bucket: bucket, Key: 'status/never', Body: 'x' })));
    assert.equal(failed.name, 'InternalError');
    assert.equal(failed.$metadata?.httpStatusCode, 500);
    assert.equal(failed.$metadata?.attempts, 3);
    assert.equal(proxy.counters.requests - before, 3);
    assert.equal(await existsInCeph('status/never'), false);
    assert.equal(proxy.counters.byKind.status, 5);
    assert.equal(proxy.counters.forwarded, 1);
  });

  test('reset-before: the connection resets before S3 sees the request; the object is not stored, and a retry stores it', async (t) => {
    const proxy = await proxyFor(t);
    const once = clientThrough(t, proxy, { maxAttempts: 1 });
    proxy.addRule({ method: 'PUT', count: { nth: 1 }, action: { kind: 'reset-before' } });
    const e = await rejection(once.send(new PutObjectCommand({ Bucket: bucket, Key: 'reset/lost', Body: 'lost' })));
    assert.match(`${e.name} ${e.message} ${e.code ?? ''}`, /ECONNRESET|socket hang up/);
    assert.equal(await existsInCeph('reset/lost'), false);
    assert.equal(proxy.counters.forwarded, 0);

    const retrying = clientThrough(t, proxy, { maxAttempts: 2 });
    proxy.clearRules();
    proxy.addRule({ method: 'PUT', count: { nth: 1 }, action: { kind: 'reset-before' } });
    const put = await retrying.send(new PutObjectCommand({ Bucket: bucket, Key: 'reset/retried', Body: 'retried' }));
    assert.equal(put.$metadata.attempts, 2);
    assert.equal((await cephBody('reset/retried')).toString(), 'retried');
  });

  test('forward-drop on a create-only PutObject: S3 stores it, the client never hears, and its retry meets 412', async (t) => {
    const proxy = await proxyFor(t);
    const client = clientThrough(t, proxy, { maxAttempts: 3 });
    const body = pseudoRandom(10_000, 3);
    proxy.addRule({
      method: 'PUT',
      path: /\/drop\/lock$/,
      when: (r) => r.headers['if-none-match'] === '*',
      count: { nth: 1 },
      action: { kind: 'forward-drop' },
    });
    const e = await rejection(client.send(new PutObjectCommand({ Bucket: bucket, Key: 'drop/lock', Body: body, IfNoneMatch: '*' })));
    assert.equal(e.$metadata?.httpStatusCode, 412);
    assert.equal(e.name, 'PreconditionFailed');
    assert.equal(e.$metadata?.attempts, 2);
    assert.equal(md5(await cephBody('drop/lock')), md5(body), 'the first attempt, whose answer was lost, stored the object');
    assert.deepEqual(
      proxy.log.map((x) => [x.fault, x.upstreamStatus, x.status]),
      [
        ['forward-drop', 200, undefined],
        [undefined, 412, 412],
      ],
    );
  });

  test('reset-mid-body and truncate on GetObject: the answer starts, then the body stream fails part way', async (t) => {
    const proxy = await proxyFor(t);
    const client = clientThrough(t, proxy);
    const size = 256 * 1024;
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'cut/object', Body: pseudoRandom(size, 5) }));
    const get = () => client.send(new GetObjectCommand({ Bucket: bucket, Key: 'cut/object' }));

    // Control: the same read without a fault gets every byte.
    assert.deepEqual(await drain((await get()).Body as Readable), { bytes: size });

    const truncate = proxy.addRule({ method: 'GET', count: { nth: 1 }, action: { kind: 'truncate', bytes: 100_000 } });
    const short = await get();
    assert.equal(short.ContentLength, size, 'the real Content-Length');
    const s = await drain(short.Body as Readable);
    assert.ok(s.error, 'a short body is an error');
    assert.equal(s.bytes, 100_000, 'after a clean close, every byte sent arrived');
    truncate.remove();

    proxy.addRule({ method: 'GET', count: { nth: 1 }, action: { kind: 'reset-mid-body', fraction: 0.25 } });
    const reset = await get();
    assert.equal(reset.$metadata.httpStatusCode, 200);
    const r = await drain(reset.Body as Readable);
    assert.ok(r.error, 'a reset body is an error');
    assert.ok(r.bytes <= size / 4, `${r.bytes} bytes arrived, at most a quarter was sent`);
    assert.deepEqual(
      proxy.log.map((e) => [e.fault, e.status]),
      [
        [undefined, 200],
        ['truncate', 200],
        ['reset-mid-body', 200],
      ],
    );
  });

  test('on the wire: truncate closes with FIN after the bytes it sends, the resets with RST', async (t) => {
    const proxy = await proxyFor(t);
    /** An unsigned GET (S3 answers it with an XML error of known length) on a raw socket: what came, and how it ended. */
    const rawGet = () =>
      new Promise<{ data: string; ended: 'fin' | string }>((resolve) => {
        const chunks: Buffer[] = [];
        const socket = net.connect(proxy.port, '127.0.0.1', () =>
          socket.write(`GET /${bucket}/raw/none HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`),
        );
        const timer = setTimeout(() => socket.destroy(new Error('no end within 3 s')), 3000);
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('end', () => {
          clearTimeout(timer);
          socket.destroy();
          resolve({ data: Buffer.concat(chunks).toString('latin1'), ended: 'fin' });
        });
        socket.on('error', (e: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          resolve({ data: Buffer.concat(chunks).toString('latin1'), ended: e.code ?? e.message });
        });
      });

    proxy.addRule({ method: 'GET', count: { nth: 1 }, action: { kind: 'truncate', bytes: 20 } });
    const truncated = await rawGet();
    assert.equal(truncated.ended, 'fin');
    const [head, body] = truncated.data.split('\r\n\r\n') as [string, string];
    assert.ok(Number(/content-length: (\d+)/i.exec(head)?.[1]) > 20, head);
    assert.equal(body.length, 20);

    proxy.clearRules();
    proxy.addRule({ method: 'GET', count: { nth: 1 }, action: { kind: 'reset-mid-body', bytes: 20 } });
    const midReset = await rawGet();
    assert.equal(midReset.ended, 'ECONNRESET');

    proxy.clearRules();
    proxy.addRule({ method: 'GET', count: { nth: 1 }, action: { kind: 'reset-before' } });
    const resetBefore = await rawGet();
    assert.deepEqual(resetBefore, { data: '', ended: 'ECONNRESET' });

    proxy.clearRules();
    // Control: unfaulted, the whole answer and a clean close (asked for with Connection: close).
    const unfaulted = await rawGet();
    assert.equal(unfaulted.ended, 'fin');
    const [wholeHead, wholeBody] = unfaulted.data.split('\r\n\r\n') as [string, string];
    assert.equal(wholeBody.length, Number(/content-length: (\d+)/i.exec(wholeHead)?.[1]));
    assert.equal(proxy.log.length, 4);
  });

  test('stall: the SDK times out on a silent server, stall-mid-body times out the body read, close() frees stalled connections', async (t) => {
    const proxy = await proxyFor(t);
    const client = clientThrough(t, proxy, { maxAttempts: 1, socketTimeout: 300 });
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'stall/object', Body: pseudoRandom(64 * 1024, 6) }));

    const stall = proxy.addRule({ method: 'HEAD', action: { kind: 'stall' } });
    let started = Date.now();
    const e = await rejection(client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'stall/object' })));
    assert.equal(e.name, 'TimeoutError');
    assert.match(e.message, /timed out after 300 ms of inactivity/);
    assert.ok(Date.now() - started < 3000);
    stall.remove();

    proxy.addRule({ method: 'GET', action: { kind: 'stall-mid-body', bytes: 1000 } });
    started = Date.now();
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'stall/object' }));
    const read = await drain(got.Body as Readable);
    assert.equal(read.error?.name, 'TimeoutError');
    assert.match(read.error.message, /timed out after 300 ms of inactivity/);
    assert.equal(read.bytes, 1000);
    assert.ok(Date.now() - started < 3000);

    // A client that would wait a minute: only close() can end its request.
    const patient = await proxyFor(t);
    patient.addRule({ action: { kind: 'stall' } });
    const waiting = clientThrough(t, patient, { maxAttempts: 1, socketTimeout: 60_000 });
    const pending = rejection(waiting.send(new HeadObjectCommand({ Bucket: bucket, Key: 'stall/object' })));
    await until(() => patient.log.length === 1, 'the stalled request to arrive');
    started = Date.now();
    await within(patient.close(), 'close() with a stalled connection');
    const gaveUp = await within(pending, 'the stalled request to fail');
    // The SDK names a reset TimeoutError too; the message tells a hang-up from its own timeout.
    assert.equal(gaveUp.message, 'socket hang up');
    assert.ok(Date.now() - started < 3000, 'the client heard at once that the connection was gone');
  });

  test('count selectors, filters and rules switched on and off between commands', async (t) => {
    const proxy = await proxyFor(t);
    const client = clientThrough(t, proxy, { maxAttempts: 1 });
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'count/object', Body: 'x' }));
    const heads = async (n: number) => {
      let pattern = '';
      for (let i = 0; i < n; i++) {
        pattern += await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'count/object' })).then(
          () => '.',
          () => 'F',
        );
      }
      return pattern;
    };
    const nth = proxy.addRule({ method: 'HEAD', count: { nth: 3 }, action: { kind: 'status', status: 500 } });
    assert.equal(await heads(6), '..F...');
    nth.remove();
    const first = proxy.addRule({ method: 'HEAD', count: { first: 2 }, action: { kind: 'status', status: 500 } });
    assert.equal(await heads(4), 'FF..');
    assert.deepEqual([first.matched, first.fired], [4, 2]);
    first.remove();
    const every = proxy.addRule({ method: 'HEAD', action: { kind: 'status', status: 500 } });
    assert.equal(await heads(3), 'FFF');
    proxy.removeRule(every);
    assert.equal(await heads(2), '..');
    assert.equal(proxy.rules.length, 0);

    // Path, query presence and absence: only the UploadPart of one key is faulted.
    proxy.addRule({ method: 'PUT', path: /\/count\/mp$/, query: ['uploadId', 'partNumber'], action: { kind: 'status', status: 500 } });
    proxy.addRule({ method: 'PUT', path: /\/count\/elsewhere$/, withoutQuery: 'partNumber', action: { kind: 'status', status: 503 } });
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'count/mp', Body: 'whole' }));
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'count/mp' }));
    const partFailed = await rejection(
      client.send(new UploadPartCommand({ Bucket: bucket, Key: 'count/mp', UploadId, PartNumber: 1, Body: 'part' })),
    );
    assert.equal(partFailed.$metadata?.httpStatusCode, 500);
    const elsewhere = await rejection(client.send(new PutObjectCommand({ Bucket: bucket, Key: 'count/elsewhere', Body: 'x' })));
    assert.equal(elsewhere.$metadata?.httpStatusCode, 503);
    assert.deepEqual(
      proxy.log.slice(-4).map((e) => [e.method, e.fault, e.status]),
      [
        ['PUT', undefined, 200],
        ['POST', undefined, 200],
        ['PUT', 'status', 500],
        ['PUT', 'status', 503],
      ],
    );
  });

  test('probability with a seed: the same seed faults the same requests, another seed others', async (t) => {
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'p/object', Body: 'x' }));
    const run = async (seed: number) => {
      const proxy = await proxyFor(t, seed);
      const client = clientThrough(t, proxy, { maxAttempts: 1 });
      proxy.addRule({ method: 'HEAD', count: { probability: 0.5 }, action: { kind: 'status', status: 500 } });
      let pattern = '';
      for (let i = 0; i < 24; i++) {
        pattern += await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'p/object' })).then(
          () => '.',
          () => 'F',
        );
      }
      await proxy.close();
      return pattern;
    };
    const a = await run(11);
    assert.match(a, /F/);
    assert.match(a, /\./);
    assert.equal(await run(11), a);
    assert.notEqual(await run(12), a);
  });

  test('random mode: faults on some requests, never on exempted ones, the same ones again with the same seed; counters and summary agree with the log', async (t) => {
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'random/kept', Body: 'kept' }));
    const run = async (round: number) => {
      const proxy = await proxyFor(t, 5);
      const client = clientThrough(t, proxy, { maxAttempts: 1 });
      proxy.random({
        p: 0.4,
        actions: [{ kind: 'status', status: 503 }, { kind: 'status', status: 500 }, { kind: 'reset-before' }],
        exempt: (r) => r.method === 'GET',
      });
      for (let i = 0; i < 20; i++) {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `random/${round}/${i}`, Body: 'x' })).catch(() => {});
        const kept = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'random/kept' }));
        assert.equal(await kept.Body!.transformToString(), 'kept');
      }
      await proxy.close();
      return proxy;
    };
    const first = await run(1);
    const faulted = first.log.filter((e) => e.fault);
    assert.ok(faulted.length >= 3 && faulted.length <= 17, `${faulted.length} of 20 PUTs faulted at p = 0.4`);
    assert.ok(faulted.every((e) => e.method === 'PUT'));
    assert.equal(first.counters.requests, 40);
    assert.equal(first.counters.faults, faulted.length);
    const kinds = (l: readonly ProxyLogEntry[]) => l.map((e) => (e.fault === 'status' ? e.status : e.fault));
    assert.ok(new Set(kinds(faulted)).size >= 2, 'the action is picked from the list');
    assert.equal(first.counters.byKind.status + first.counters.byKind['reset-before'], faulted.length);
    assert.equal(
      first.summary(),
      `40 requests, ${faulted.length} faults injected (status ${first.counters.byKind.status}, reset-before ${first.counters.byKind['reset-before']})`,
    );
    // Stored in S3 exactly the PUTs that were not faulted.
    for (const e of first.log.filter((x) => x.method === 'PUT').slice(0, 8)) {
      assert.equal(await existsInCeph(e.path.slice(bucket.length + 2)), !e.fault, e.path);
    }
    const second = await run(2);
    assert.deepEqual(kinds(second.log), kinds(first.log));
  });

  test('delay: the answer comes after the delay, unchanged', async (t) => {
    const proxy = await proxyFor(t);
    const client = clientThrough(t, proxy);
    await direct.send(new PutObjectCommand({ Bucket: bucket, Key: 'delay/object', Body: 'late' }));
    proxy.addRule({ method: 'GET', count: { nth: 1 }, action: { kind: 'delay', ms: 400 } });
    const started = Date.now();
    const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'delay/object' }));
    assert.equal(await got.Body!.transformToString(), 'late');
    assert.ok(Date.now() - started >= 400);
    assert.deepEqual(
      proxy.log.map((e) => [e.fault, e.status]),
      [['delay', 200]],
    );
  });
});
