import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import * as path from 'node:path';
import { UsageError } from '../src/errors.ts';
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
