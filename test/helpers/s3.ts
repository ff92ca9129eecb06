// Helpers for tests that need a real S3 server. `npm test` (scripts/test.mjs) starts Ceph RGW and
// sets S3_TEST_ENDPOINT / S3_TEST_ACCESS_KEY_ID / S3_TEST_SECRET_ACCESS_KEY; without them the
// helpers throw, so S3 tests fail loudly instead of being skipped.
import { randomBytes } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { S3Store } from '../../src/store/s3.ts';
import type { S3StoreOptions } from '../../src/store/s3.ts';

export interface S3TestConfig {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

export function s3TestConfig(): S3TestConfig {
  const endpoint = process.env.S3_TEST_ENDPOINT;
  const accessKeyId = process.env.S3_TEST_ACCESS_KEY_ID;
  const secretAccessKey = process.env.S3_TEST_SECRET_ACCESS_KEY;
  if (!endpoint || !accessKeyId || !secretAccessKey) {
    const missing = [
      !endpoint && 'S3_TEST_ENDPOINT',
      !accessKeyId && 'S3_TEST_ACCESS_KEY_ID',
      !secretAccessKey && 'S3_TEST_SECRET_ACCESS_KEY',
    ].filter(Boolean);
    throw new Error(
      `no S3 test server: ${missing.join(', ')} not set. Run the tests with "npm test" (it starts Ceph RGW ` +
        'via scripts/ceph-rgw.sh), or point S3_TEST_ENDPOINT (and the two key variables) at a running S3 server.',
    );
  }
  return { endpoint, region: 'us-east-1', credentials: { accessKeyId, secretAccessKey } };
}

/** A raw SDK client on the test server, for setup and for checks the Store interface cannot make. */
export function testS3Client(): S3Client {
  const c = s3TestConfig();
  return new S3Client({
    ...c,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Create a bucket with a unique name starting with prefixName (made bucket-name safe). */
export async function createTestBucket(prefixName: string): Promise<string> {
  const base =
    prefixName
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 30) || 'test';
  const name = `${base}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const client = testS3Client();
  try {
    await client.send(new CreateBucketCommand({ Bucket: name }));
  } finally {
    client.destroy();
  }
  return name;
}

/** Empty a test bucket (objects and unfinished multipart uploads) and delete it. */
export async function deleteTestBucket(bucket: string): Promise<void> {
  const client = testS3Client();
  try {
    // Pages of up to 1000 keys; bounded so that a server refusing deletes cannot loop forever.
    for (let round = 0; round < 1000; round++) {
      const r = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
      const objects = (r.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (objects.length === 0) break;
      const d = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }));
      if (d.Errors?.length) throw new Error(`emptying test bucket ${bucket}: ${d.Errors[0]?.Code} for ${d.Errors[0]?.Key}`);
    }
    for (let round = 0; round < 100; round++) {
      const u = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      if (!u.Uploads?.length) break;
      for (const up of u.Uploads) {
        await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: up.Key!, UploadId: up.UploadId! }));
      }
    }
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

/** An S3Store on the test server. */
export function testS3Store(bucket: string, prefix: string, extra: Partial<S3StoreOptions> = {}): S3Store {
  return new S3Store({ ...s3TestConfig(), bucket, prefix, ...extra });
}

/** Environment for the CLI to reach the test server the standard AWS way. */
export function s3CliEnv(): NodeJS.ProcessEnv {
  const c = s3TestConfig();
  return {
    AWS_ACCESS_KEY_ID: c.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: c.credentials.secretAccessKey,
    AWS_REGION: c.region,
    AWS_ENDPOINT_URL_S3: c.endpoint,
  };
}
