import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { StoreAccessError, UsageError } from '../src/errors.ts';
import { LocalStore } from '../src/store/local.ts';
import { openStore, parseRepositoryUrl } from '../src/store/open.ts';
import { S3Store } from '../src/store/s3.ts';

describe('parseRepositoryUrl', () => {
  it('parses s3://bucket/prefix', () => {
    assert.deepEqual(parseRepositoryUrl('s3://my-bucket/backups/laptop'), {
      kind: 's3',
      bucket: 'my-bucket',
      prefix: 'backups/laptop',
    });
  });

  it('parses s3://bucket with and without a trailing slash', () => {
    assert.deepEqual(parseRepositoryUrl('s3://my-bucket'), { kind: 's3', bucket: 'my-bucket', prefix: '' });
    assert.deepEqual(parseRepositoryUrl('s3://my-bucket/'), { kind: 's3', bucket: 'my-bucket', prefix: '' });
  });

  it('drops slashes at the ends of the prefix and doubled slashes inside it', () => {
    assert.deepEqual(parseRepositoryUrl('s3://b.example.com/a/b/'), { kind: 's3', bucket: 'b.example.com', prefix: 'a/b' });
    assert.deepEqual(parseRepositoryUrl('s3://bkt//a//b'), { kind: 's3', bucket: 'bkt', prefix: 'a/b' });
  });

  it('accepts an upper-case scheme and keeps the bucket and prefix case', () => {
    assert.deepEqual(parseRepositoryUrl('S3://Legacy_Bucket/Some/Prefix'), {
      kind: 's3',
      bucket: 'Legacy_Bucket',
      prefix: 'Some/Prefix',
    });
  });

  it('parses file:///abs/path, decoding percent escapes', () => {
    assert.deepEqual(parseRepositoryUrl('file:///srv/backups'), { kind: 'local', path: '/srv/backups' });
    assert.deepEqual(parseRepositoryUrl('file:///srv/my%20backups/'), { kind: 'local', path: '/srv/my backups' });
    assert.deepEqual(parseRepositoryUrl('file://localhost/srv/x'), { kind: 'local', path: '/srv/x' });
  });

  it('takes plain paths, resolving relative ones against the current directory', () => {
    assert.deepEqual(parseRepositoryUrl('/var/backups/repo'), { kind: 'local', path: '/var/backups/repo' });
    assert.deepEqual(parseRepositoryUrl('repo'), { kind: 'local', path: path.resolve('repo') });
    assert.deepEqual(parseRepositoryUrl('./a/../b/'), { kind: 'local', path: path.resolve('b') });
    assert.deepEqual(parseRepositoryUrl('~/backups'), { kind: 'local', path: path.join(homedir(), 'backups') });
    // A colon without "//" is part of a file name, not a scheme.
    assert.deepEqual(parseRepositoryUrl('backup:2024'), { kind: 'local', path: path.resolve('backup:2024') });
  });

  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['   ', /empty/],
    ['s3://', /names no bucket/],
    ['s3:///prefix', /names no bucket/],
    ['s3:bucket/prefix', /malformed S3 repository URL/],
    ['s3:/bucket', /malformed S3 repository URL/],
    ['s3://127.0.0.1:9000/bucket', /host or port where the bucket goes/],
    ['s3://user@bucket/x', /host or port where the bucket goes/],
    ['s3://a/x', /not a valid S3 bucket name/],
    ['s3://bad bucket/x', /not a valid S3 bucket name/],
    ['s3://-bucket/x', /not a valid S3 bucket name/],
    ['s3://bucket/a/../b', /must not contain "\." or "\.\."/],
    ['gs://bucket/prefix', /unsupported repository URL scheme "gs:"/],
    ['https://s3.amazonaws.com/bucket', /unsupported repository URL scheme "https:"/],
    ['file:relative/path', /malformed file URL/],
    ['file://otherhost/srv/x', /malformed file URL/],
  ];
  for (const [url, message] of bad) {
    it(`rejects ${JSON.stringify(url)} with a UsageError`, () => {
      assert.throws(
        () => parseRepositoryUrl(url),
        (e) => e instanceof UsageError && e.exitCode === 2 && message.test(e.message) && !!e.hint,
      );
    });
  }

  // Slips that would otherwise back up into a local directory named after them.
  const typos: [string, string][] = [
    ['s3//bucket/x', 'did you mean s3://bucket/x?'],
    ['S3//bucket/x', 'did you mean s3://bucket/x?'],
    ['s3/bucket/x', 'did you mean s3://bucket/x?'],
    ['s3/', 'did you mean s3://BUCKET/PREFIX?'],
    ['s3:', 'did you mean s3://BUCKET/PREFIX?'],
    ['s3:bucket', 'did you mean s3://bucket?'],
    ['s3:bucket/prefix', 'did you mean s3://bucket/prefix?'],
    ['s3:/bucket/x', 'did you mean s3://bucket/x?'],
    ['s3;//bucket/x', 'did you mean s3://bucket/x?'],
    ['S3;bucket', 'did you mean s3://bucket?'],
    ['s3:://bucket', 'did you mean s3://bucket?'],
    ['file:/srv/x', 'did you mean file:///srv/x?'],
    ['file//srv/x', 'did you mean file:///srv/x?'],
    ['FILE;///srv/x', 'did you mean file:///srv/x?'],
    ['file:relative/path', 'did you mean file:///ABSOLUTE/PATH, or just relative/path?'],
    ['http//127.0.0.1:9000/bkt/x', 'did you mean --endpoint http://127.0.0.1:9000 --repo s3://bkt/x?'],
    ['https//minio.example/bkt', 'did you mean --endpoint https://minio.example --repo s3://bkt?'],
    ['http:/minio.example:9000/', 'did you mean --endpoint http://minio.example:9000 --repo s3://BUCKET/PREFIX?'],
    ['http;//host', 'did you mean --endpoint http://host --repo s3://BUCKET/PREFIX?'],
  ];
  for (const [url, intent] of typos) {
    it(`refuses the mistyped URL ${JSON.stringify(url)}, naming the likely intent`, () => {
      assert.throws(
        () => parseRepositoryUrl(url),
        (e) =>
          e instanceof UsageError &&
          e.exitCode === 2 &&
          e.message.endsWith(`: ${intent}`) &&
          e.message.includes(JSON.stringify(url)) &&
          (e.hint ?? '').includes(`write ./${url} (or its absolute path)`),
      );
    });
  }

  it('takes a name that only starts like a scheme, or an explicit ./, ~/ or absolute path, as a directory', () => {
    for (const p of ['./s3//bucket/x', './s3/bucket/x', '../s3:bucket', '~/s3//x', '/s3//bucket/x', '/srv/file:/x']) {
      const r = parseRepositoryUrl(p);
      assert.equal(r.kind, 'local', p);
    }
    assert.deepEqual(parseRepositoryUrl('./s3//bucket/x'), { kind: 'local', path: path.resolve('s3/bucket/x') });
    assert.deepEqual(parseRepositoryUrl('~/s3//x'), { kind: 'local', path: path.join(homedir(), 's3/x') });
    for (const p of ['s3', 's3-data/x', 's3.old/x', 's3backup/repo', 'file', 'file/x', 'files//x', 'http/x', 'httpd//x', 'backup:2024']) {
      assert.deepEqual(parseRepositoryUrl(p), { kind: 'local', path: path.resolve(p) }, p);
    }
  });

  it('hints at --endpoint for an http URL', () => {
    assert.throws(
      () => parseRepositoryUrl('http://127.0.0.1:9000/bucket'),
      (e) => e instanceof UsageError && /--endpoint/.test(e.hint ?? ''),
    );
  });
});

describe('openStore', () => {
  it('opens a LocalStore for paths and file URLs', async () => {
    const s = await openStore('file:///tmp/some-repo');
    assert.ok(s instanceof LocalStore);
    assert.equal(s.location, '/tmp/some-repo');
    await s.close();
    const r = await openStore('rel/repo');
    assert.ok(r instanceof LocalStore);
    assert.equal(r.location, path.resolve('rel/repo'));
  });

  it('opens an S3Store with the bucket, prefix and options', async () => {
    const s = await openStore('s3://bkt/a/b/', { endpoint: 'http://127.0.0.1:1', region: 'eu-west-1' });
    assert.ok(s instanceof S3Store);
    assert.equal(s.bucket, 'bkt');
    assert.equal(s.prefix, 'a/b');
    assert.equal(s.location, 's3://bkt/a/b');
    assert.equal(s.endpoint, 'http://127.0.0.1:1');
    assert.equal(await s.client.config.region(), 'eu-west-1');
    await s.close();
  });

  it('rejects an endpoint that is not an http(s) URL', async () => {
    await assert.rejects(openStore('s3://bkt', { endpoint: '127.0.0.1:9000' }), UsageError);
  });

  it('never shows a password given in the endpoint URL', async () => {
    const s = await openStore('s3://bkt', { endpoint: 'https://user:hunter2@minio.example:9000/' });
    assert.ok(s instanceof S3Store);
    assert.equal(s.endpoint, 'https://minio.example:9000');
    await s.close();
  });
});

/** A loopback HTTP server answering every request with answer(); counts the requests. */
async function answering(
  answer: (req: IncomingMessage, res: ServerResponse, n: number) => void,
): Promise<{ endpoint: string; requests: () => number; close: () => Promise<void> }> {
  let n = 0;
  const srv = createServer((req, res) => {
    req.resume();
    req.on('end', () => answer(req, res, ++n));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(srv.address() as { port: number }).port}`,
    requests: () => n,
    close: () =>
      new Promise<void>((resolve) => {
        srv.closeAllConnections();
        srv.close(() => resolve());
      }),
  };
}

function storeAt(endpoint: string): S3Store {
  return new S3Store({
    bucket: 'bkt',
    prefix: 'p',
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'k', secretAccessKey: 's' },
  });
}

const PAGE = '<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>Welcome</h1><br></body></html>';

describe('S3Store at an endpoint that is not S3', () => {
  it('an answer with S3\'s request id but a body the SDK cannot read: "does not answer like an S3 server", exit 2', async () => {
    const server = await answering((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html', 'x-amz-request-id': 'abc' });
      res.end(PAGE);
    });
    const store = storeAt(server.endpoint);
    try {
      const e = await (async () => {
        try {
          for await (const _ of store.list('')) break;
        } catch (err) {
          return err;
        }
        assert.fail('the listing succeeded');
      })();
      assert.ok(e instanceof StoreAccessError, String(e));
      assert.equal(e.exitCode, 2);
      assert.equal(e.message, `${server.endpoint} does not answer like an S3 server (HTTP 200: not S3's XML, content type text/html)`);
      assert.match(e.hint ?? '', /check --endpoint/);
    } finally {
      await store.close();
      await server.close();
    }
  });

  it("a proxy's 502 page is an outage, not a wrong endpoint: retried, then the usual S3 failure", async () => {
    const server = await answering((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html', server: 'nginx' });
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>');
    });
    const store = storeAt(server.endpoint);
    try {
      await assert.rejects(store.head('x'), (e: Error) => /HTTP 502/.test(e.message) && !/does not answer like/.test(e.message));
      assert.ok(server.requests() >= 2, `requests: ${server.requests()}`);
    } finally {
      await store.close();
      await server.close();
    }
  });

  it('once the endpoint answered like S3, later answers are left to the SDK', async () => {
    const server = await answering((_req, res, n) => {
      if (n === 1) res.writeHead(404, { 'content-type': 'application/xml', 'x-amz-request-id': 'abc' });
      else res.writeHead(404, { 'content-type': 'text/html' });
      res.end();
    });
    const store = storeAt(server.endpoint);
    try {
      assert.equal(await store.head('a'), undefined);
      assert.equal(await store.head('b'), undefined);
    } finally {
      await store.close();
      await server.close();
    }
  });

  it('before that, the same web page 404 is refused', async () => {
    const server = await answering((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html', server: 'SimpleHTTP/0.6' });
      res.end();
    });
    const store = storeAt(server.endpoint);
    try {
      await assert.rejects(
        store.head('a'),
        (e) =>
          e instanceof StoreAccessError &&
          e.exitCode === 2 &&
          e.message ===
            `${server.endpoint} does not answer like an S3 server (HTTP 404: a web page, content type text/html, server "SimpleHTTP/0.6")`,
      );
      assert.equal(server.requests(), 1, 'not retried');
    } finally {
      await store.close();
      await server.close();
    }
  });
});
