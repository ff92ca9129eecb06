// --limit-upload / --limit-download on the local store and on Ceph RGW: transfers of a few
// seconds, at limits far below what the machine and the server do, average within 10 % of the
// limit (a correctness bound, not a speed test: a loaded machine is slower than the limit
// allows only by the last piece's timer), two transfers at once share one limit, and the flags
// and config keys reach a real backup and restore through the CLI.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { RateLimitedStore, TokenBucket } from '../src/store/rate-limit.ts';
import { locateRepository } from '../src/store/open.ts';
import { readAll, type Store } from '../src/store/store.ts';
import { testBackends } from './helpers/store.ts';
import { isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const LIMIT_KIBPS = 256;
/** Four seconds' worth at the limit. */
const SIZE = 4 * LIMIT_KIBPS * 1024;
const data = pseudoRandom(SIZE, 7);
const work = tempDir('rate-limit');
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** `body` in 64 KiB chunks, as a file or a frame writer hands them out. */
function chunked(body: Buffer): Readable {
  const chunks: Buffer[] = [];
  for (let at = 0; at < body.length; at += 64 << 10) chunks.push(body.subarray(at, at + (64 << 10)));
  return Readable.from(chunks, { objectMode: false });
}

/** KiB/s achieved moving `bytes` during `f`. */
async function rateOf(bytes: number, f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return bytes / 1024 / ((performance.now() - t0) / 1000);
}

function assertWithin10(rate: number, what: string): void {
  assert.ok(Math.abs(rate - LIMIT_KIBPS) <= LIMIT_KIBPS * 0.1, `${what}: ${rate.toFixed(1)} KiB/s for a limit of ${LIMIT_KIBPS}`);
}

test('the limits parse from flags, config values and the environment, and 0 or text is refused', () => {
  const loc = locateRepository(work, { limitUpload: 100, limitDownload: '2048' });
  assert.deepEqual(loc.limits, { uploadKiBps: 100, downloadKiBps: 2048 });
  assert.equal(locateRepository(work, {}).limits, undefined);
  const s3 = locateRepository('s3://bkt/x', { parallel: 4, limitUpload: 64 });
  assert.ok(s3.kind === 's3');
  assert.equal(s3.options.parallel, 4, '--parallel reaches the S3 store options (its queueSize)');
  assert.deepEqual(s3.limits, { uploadKiBps: 64, downloadKiBps: undefined });
  for (const bad of [0, '0', '1.5', 'fast', -3])
    assert.throws(() => locateRepository(work, { limitUpload: bad }), /--limit-upload must be a whole number/);
  assert.throws(() => new TokenBucket(0), /must be positive/);
});

describe('transfers hold the limit', { concurrency: true }, () => {
  for (const backend of testBackends('rate-limit', 'limited/repo')) {
    test(`on ${backend.name}: stream and buffer uploads, downloads, and two at once`, async () => {
      const { store: inner, cleanup } = await backend.open();
      const limited: Store = new RateLimitedStore(inner, { uploadKiBps: LIMIT_KIBPS, downloadKiBps: LIMIT_KIBPS });
      try {
        // The S3 client's first request sets it up (credentials, connection): not what is measured.
        await inner.head('data/none');
        const up = await rateOf(SIZE, () => limited.put('data/stream', chunked(data)));
        assertWithin10(up, 'stream upload');
        const down = await rateOf(SIZE, async () => assert.ok((await readAll(await limited.get('data/stream'))).equals(data)));
        assertWithin10(down, 'download');
        const buffer = await rateOf(SIZE, () => limited.put('data/buffer', data, { createOnly: true }));
        assertWithin10(buffer, 'buffer upload');
        const range = { start: 1000, end: 1000 + SIZE / 2 };
        const ranged = await rateOf(SIZE / 2, async () =>
          assert.equal((await readAll(await limited.get('data/buffer', range))).length, SIZE / 2),
        );
        assertWithin10(ranged, 'ranged download');
        const half = data.subarray(0, SIZE / 2);
        const both = await rateOf(SIZE, () => Promise.all([limited.put('data/a', chunked(half)), limited.put('data/b', chunked(half))]));
        assertWithin10(both, 'two uploads at once, together');
        // Unlimited, the same download is far faster: the limit, not the store, set the pace.
        const free = await rateOf(SIZE, async () => readAll(await inner.get('data/stream')));
        assert.ok(free > LIMIT_KIBPS * 4, `unlimited download at ${free.toFixed(0)} KiB/s`);
      } finally {
        await limited.close();
        await cleanup();
      }
    });
  }
});

describe('the CLI applies --limit-upload and the limitDownload config key', { concurrency: true }, () => {
  for (const backend of testBackends('rate-limit-cli', 'limited/cli')) {
    test(`on ${backend.name}`, async () => {
      const { store, repoArg, cliEnv, cleanup } = await backend.open();
      const home = tempDir('rate-limit-home');
      const src = path.join(home, 'src');
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, 'random.bin'), pseudoRandom(SIZE, 8));
      const env = { ...isolatedEnv(home), ...cliEnv };
      try {
        const t0 = performance.now();
        const b = await runCli(
          ['backup', src, '--repo', repoArg, '--limit-upload', String(LIMIT_KIBPS), '--compression', 'none', '--json'],
          { env },
        );
        const seconds = (performance.now() - t0) / 1000;
        assert.equal(b.code, 0, b.stderr);
        let stored = 0;
        for await (const o of store.list('')) stored += o.size;
        assert.ok(stored >= SIZE);
        assert.ok(stored / 1024 / seconds <= LIMIT_KIBPS * 1.1, `backup uploaded ${stored} bytes in ${seconds.toFixed(2)} s`);

        const config = path.join(home, 's3backup.yaml');
        fs.writeFileSync(config, `limitDownload: ${LIMIT_KIBPS}\n`);
        const t1 = performance.now();
        const r = await runCli(['restore', json(b.stdout).id, '--repo', repoArg, '--target', path.join(home, 'out'), '--config', config], {
          env,
        });
        const restoreSeconds = (performance.now() - t1) / 1000;
        assert.equal(r.code, 0, r.stderr);
        assert.ok(fs.readFileSync(path.join(home, 'out', 'src', 'random.bin')).equals(fs.readFileSync(path.join(src, 'random.bin'))));
        assert.ok(SIZE / 1024 / restoreSeconds <= LIMIT_KIBPS * 1.1, `restore read ${SIZE} bytes in ${restoreSeconds.toFixed(2)} s`);

        const bad = await runCli(['list', '--repo', repoArg, '--limit-download', '0'], { env });
        assert.equal(bad.code, 2);
        assert.match(bad.stderr, /--limit-download must be a whole number from 1/);
        fs.writeFileSync(config, 'limitUpload: fast\n');
        const badConfig = await runCli(['list', '--repo', repoArg, '--config', config], { env });
        assert.equal(badConfig.code, 2, badConfig.stderr);
        assert.match(badConfig.stderr, /limitUpload/);
      } finally {
        await store.close();
        await cleanup();
        fs.rmSync(home, { recursive: true, force: true });
      }
    });
  }
});
