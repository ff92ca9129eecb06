// verify --read-data-subset on the local store and on Ceph RGW: the n/t slices partition every
// frame of every archive (and check every file exactly once over t runs), a share reads about
// that share of the stored bytes, a damaged frame in the chosen slice is found (in an encrypted
// repository, where each frame is authenticated), archives in cold storage are skipped and
// counted (or thawed with --request-thaw), and the CLI takes and refuses the forms.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FrameTable } from '../src/archive/reader.ts';
import { runBackup } from '../src/backup/backup.ts';
import type { NewKeySpec } from '../src/crypto/keys.ts';
import type { ArchiveRef, Entry } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { S3Store } from '../src/store/s3.ts';
import { getBuffer, type Store } from '../src/store/store.ts';
import { chooseGroups, frameGroups, frameSlice, parseSubset, runSubsetVerify, type SubsetResult } from '../src/verify/subset.ts';
import { runVerify } from '../src/verify/verify.ts';
import { createTestBucket, deleteTestBucket, s3TestConfig } from './helpers/s3.ts';
import { testBackends } from './helpers/store.ts';
import { isolatedEnv, json, prng, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const FRAME = 16 << 10;
const T = 4;
const work = tempDir('subset');
const src = path.join(work, 'src');
const FIRST_FILES = 4000;
const ADDED_FILES = 1000;
/** Small files of 200 B to 3 KiB (few reach past the frame they begin in), and one spanning many frames. */
function writeFiles(root: string, from: number, count: number): void {
  const size = prng(from + 1);
  for (let i = from; i < from + count; i++) {
    const dir = path.join(root, `d${i % 17}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `f${i}.bin`), pseudoRandom(200 + Math.floor(size() * 2900), i));
  }
}
writeFiles(src, 0, FIRST_FILES);
fs.writeFileSync(path.join(src, 'big.bin'), pseudoRandom(10 * FRAME + 123, 99));
const STORED_FILES = FIRST_FILES + 1 + ADDED_FILES;
const cheap: NewKeySpec = { passphrase: 'subset test', kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } };
const keys = { passphrase: 'subset test' };
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** A seeded random source, so a share's choice is the same on every run of the test. */
const seeded = (seed: number) => prng(seed);

/** Every (archive, frame) a set of results chose, with how many times. */
function chosenCounts(results: SubsetResult[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of results)
    for (const [key, frames] of Object.entries(r.chosen))
      for (const i of frames) counts.set(`${key}#${i}`, (counts.get(`${key}#${i}`) ?? 0) + 1);
  return counts;
}

test('the subset forms parse, and bad ones are refused with the forms named', () => {
  assert.deepEqual(parseSubset('5%'), { kind: 'share', percent: 5 });
  assert.deepEqual(parseSubset('0.5%'), { kind: 'share', percent: 0.5 });
  assert.deepEqual(parseSubset(' 3/7 '), { kind: 'slice', n: 3, t: 7 });
  for (const bad of ['0%', '101%', '0/4', '5/4', '1/0', 'half', '5', '-1/4', '1/2/3'])
    assert.throws(() => parseSubset(bad), /--read-data-subset .*(share|n\/t|n ≤ t)/, bad);
  // The slice of a frame depends on its archive and index only.
  assert.equal(frameSlice('archives/a', 3, 7), frameSlice('archives/a', 3, 7));
  const ref = { key: 'archives/x', frames: Array.from({ length: 1000 }, () => [100, 400]) } as unknown as ArchiveRef;
  // Files crossing frames 10-12 and 12-13 (overlapping: one group), 20-21 then 22-23 (touching:
  // two), and a chain of small files from 30 to 35 (cut after four frames).
  const chain: [number, number][] = [30, 31, 32, 33, 34].map((f) => [f, f + 1]);
  const groups = frameGroups(ref, [[12, 13], [10, 12], [22, 23], [20, 21], ...chain, [500, 600]]);
  assert.deepEqual(
    groups.filter((g) => g.last > g.first).map((g) => [g.first, g.last, g.bytes]),
    [
      [10, 13, 400],
      [20, 21, 200],
      [22, 23, 200],
      [30, 33, 400],
      [34, 35, 200],
      [500, 600, 10100],
    ],
  );
  assert.equal(groups.length, 1000 - 3 - 1 - 1 - 3 - 1 - 100);
  const perSlice = Array.from({ length: T }, (_, n) => chooseGroups(groups, { kind: 'slice', n: n + 1, t: T }));
  assert.equal(
    perSlice.reduce((sum, x) => sum + x.reduce((b, g) => b + g.last - g.first + 1, 0), 0),
    1000,
  );
  for (const slice of perSlice) assert.ok(slice.length > 150 && slice.length < 350, `slices of groups: ${perSlice.map((x) => x.length)}`);
  const share = chooseGroups(groups, { kind: 'share', percent: 5 }, prng(3));
  // Exactly the share: the 10100-byte group does not fit in it and is passed over.
  assert.equal(
    share.reduce((b, g) => b + g.bytes, 0),
    5000,
  );
  assert.ok(!share.some((g) => g.first === 500));
  // Nothing fits in 0.01 % of the bytes: one group all the same.
  assert.equal(chooseGroups(groups, { kind: 'share', percent: 0.01 }, prng(4)).length, 1);
});

describe('verify --read-data-subset', { concurrency: true }, () => {
  for (const backend of testBackends('subset', 'subset/repo')) {
    describe(`on ${backend.name}`, { concurrency: true }, () => {
      let store: Store;
      let cleanup: () => Promise<void>;
      let repoArg: string;
      let cliEnv: NodeJS.ProcessEnv;
      let ids: string[] = [];
      before(async () => {
        ({ store, cleanup, repoArg, cliEnv } = await backend.open());
        // A copy of its own, which grows between the two backups.
        const own = path.join(tempDir('subset-src'), 'src');
        fs.cpSync(src, own, { recursive: true });
        const first = await runBackup({ store, sources: [own], frameSize: FRAME });
        writeFiles(own, FIRST_FILES, ADDED_FILES);
        // An incremental: it keeps the first's files in the first's archive.
        const second = await runBackup({ store, sources: [own], frameSize: FRAME });
        assert.equal(second.parent, first.id);
        ids = [first.id, second.id];
      });
      after(async () => {
        await store.close();
        await cleanup();
      });

      test('the slices 1/t…t/t cover every frame exactly once, check every file once and read about 1/t each', async () => {
        const results: SubsetResult[] = [];
        for (let n = 1; n <= T; n++) results.push(await runSubsetVerify({ store, subset: { kind: 'slice', n, t: T } }));
        const total = results[0]!;
        assert.equal(total.backups, 2);
        assert.ok(total.archives >= 1);
        for (const r of results) {
          assert.deepEqual(r.problems, []);
          assert.equal(r.ok, true);
          assert.equal(r.framesTotal, total.framesTotal);
          assert.ok(r.bytesRead >= r.bytesChosen && r.bytesRead < r.bytesChosen * 1.3, `read ${r.bytesRead} for ${r.bytesChosen} chosen`);
          const share = r.bytesRead / r.bytesTotal;
          assert.ok(share > 0.6 / T && share < 1.5 / T, `slice ${r.subset} read ${(share * 100).toFixed(1)}% of the stored bytes`);
        }
        assert.ok(total.framesTotal >= 100, `${total.framesTotal} frames`);
        const counts = chosenCounts(results);
        assert.equal(counts.size, total.framesTotal, 'every frame is in some slice');
        assert.deepEqual([...new Set(counts.values())], [1], 'no frame is in two slices');
        assert.equal(
          results.reduce((s, r) => s + r.filesChecked, 0),
          STORED_FILES,
          'each stored file is checked in exactly one slice',
        );
        const read = results.reduce((s, r) => s + r.bytesRead, 0);
        assert.ok(read >= total.bytesTotal && read < total.bytesTotal * 1.3, `the ${T} slices read ${read} of ${total.bytesTotal} bytes`);
        // The same slice again is the same frames.
        const again = await runSubsetVerify({ store, subset: { kind: 'slice', n: 2, t: T } });
        assert.deepEqual(again.chosen, results[1]!.chosen);
      });

      test('a share reads about that share of the stored bytes, a different choice each run', async () => {
        const a = await runSubsetVerify({ store, subset: { kind: 'share', percent: 10 }, random: seeded(1) });
        const b = await runSubsetVerify({ store, subset: { kind: 'share', percent: 10 }, random: seeded(2) });
        for (const r of [a, b]) {
          assert.deepEqual(r.problems, []);
          const target = r.bytesTotal / 10;
          // Up to the share, short of it by less than a group of small files (four frames).
          assert.ok(r.bytesChosen <= target && r.bytesChosen > target - 4 * FRAME - 4096, `chose ${r.bytesChosen} bytes for ${target}`);
          // A group's last file may reach into the next frame: at most one frame in four more.
          assert.ok(r.bytesRead >= r.bytesChosen && r.bytesRead < r.bytesChosen * 1.3, `read ${r.bytesRead} for ${r.bytesChosen} chosen`);
          assert.ok(r.filesChecked > 0);
        }
        assert.notDeepEqual(a.chosen, b.chosen);
        const all = await runSubsetVerify({ store, subset: { kind: 'share', percent: 100 } });
        assert.equal(all.framesChosen, all.framesTotal);
        assert.equal(all.filesChecked, STORED_FILES);
        assert.equal(all.bytesRead, all.bytesTotal, 'the whole repository read once');
        // One backup only: the first's archive alone.
        const one = await runSubsetVerify({ store, snapshot: ids[0], subset: { kind: 'share', percent: 100 } });
        assert.equal(one.backups, 1);
        assert.equal(one.filesChecked, FIRST_FILES + 1);
      });

      test('the CLI takes both forms, and refuses bad ones and --deep with it', async () => {
        const env = { ...isolatedEnv(work), ...cliEnv };
        const r = await runCli(['verify', '--repo', repoArg, '--read-data-subset', '1/2', '--json'], { env });
        assert.equal(r.code, 0, r.stderr);
        const out = json(r.stdout);
        assert.equal(out.ok, true);
        assert.equal(out.subset, '1/2');
        assert.ok(out.framesChosen > 0 && out.framesChosen < out.framesTotal);
        assert.ok(out.bytesRead > 0);
        const text = await runCli(['verify', 'latest', '--repo', repoArg, '--read-data-subset', '5%'], { env });
        assert.equal(text.code, 0, text.stderr);
        assert.match(text.stdout, /verify --read-data-subset 5% of backup latest: \d+ of \d+ frame\(s\).*read /);
        for (const [args, message] of [
          [['--read-data-subset', '0%'], /the share must be more than 0%/],
          [['--read-data-subset', '5/4'], /n\/t needs 1 ≤ n ≤ t/],
          [['--read-data-subset', '5%', '--deep'], /--read-data-subset and --deep/],
          [['--request-thaw'], /--request-thaw goes with --read-data-subset/],
        ] as const) {
          const bad = await runCli(['verify', '--repo', repoArg, ...args], { env });
          assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.stderr}`);
          assert.match(bad.stderr, message);
        }
      });
    });
  }
});

describe('a damaged frame in the chosen slice is found', { concurrency: true }, () => {
  for (const backend of testBackends('subset-damage', 'subset/damaged')) {
    test(`on ${backend.name} (encrypted repository)`, async () => {
      const { store, cleanup } = await backend.open();
      try {
        await Repository.init(store, { encryption: cheap });
        const r = await runBackup({ store, keys, sources: [path.join(src, 'd3')], frameSize: FRAME });
        const repo = await Repository.open(store, keys);
        const m = await repo.loadManifest(r.id);
        const entries: Entry[] = [];
        for await (const e of m.entries()) if (e.type === 'file') entries.push(e);
        const ref = m.archives[0]!;
        await m.dispose();
        const table = new FrameTable(ref);
        // A frame in the middle where a file begins; damaged in the middle of its stored bytes.
        const victim = entries[Math.floor(entries.length / 2)]!;
        const frame = table.frameOf(victim.offset!);
        const stored = Buffer.from(await getBuffer(store, ref.key));
        const pos = table.cStart[frame]! + Math.floor(ref.frames[frame]![0] / 2);
        stored[pos] = stored[pos]! ^ 0x5a;
        await store.put(ref.key, stored);

        const shallow = await runVerify({ store, keys, snapshot: r.id });
        assert.deepEqual(shallow.problems, [], 'same size: a shallow verify cannot tell');
        const slices: SubsetResult[] = [];
        for (let n = 1; n <= T; n++) slices.push(await runSubsetVerify({ store, keys, subset: { kind: 'slice', n, t: T } }));
        const found = slices.find((x) => x.chosen[ref.key]?.includes(frame))!;
        assert.equal(found.ok, false);
        const where = found.problems.map((p) => p.where);
        assert.ok(where.includes(ref.key), `the archive is named: ${JSON.stringify(found.problems)}`);
        assert.ok(where.includes(`${r.id}:${victim.path}`), `the file beginning in the frame is named: ${where}`);
        // In the other slices only a file reaching into the damaged frame from before it can fail.
        for (const other of slices.filter((x) => x !== found)) {
          for (const p of other.problems.filter((p) => p.where !== ref.key)) {
            const e = entries.find((x) => `${r.id}:${x.path}` === p.where)!;
            assert.ok(table.frameOf(e.offset!) < frame && table.frameOf(e.offset! + e.size - 1) >= frame, `${p.where} reaches the damage`);
          }
        }
      } finally {
        await store.close();
        await cleanup();
      }
    });
  }
});

/**
 * Ceph RGW has no archive tier: a small proxy in front of it says every archive is GLACIER on
 * HEAD, and answers (and counts) RestoreObject, as cold-storage.test.ts does for restore.
 */
describe('archives in cold storage', () => {
  const cfg = s3TestConfig();
  const upstream = new URL(cfg.endpoint);
  const agent = new http.Agent({ keepAlive: true });
  const restoreRequests: string[] = [];
  const archiveGets: string[] = [];
  let proxy: http.Server;
  let bucket = '';
  before(async () => {
    proxy = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const isArchive = url.pathname.includes('/archives/');
      req.on('error', () => res.destroy());
      if (req.method === 'POST' && url.searchParams.has('restore')) {
        restoreRequests.push(url.pathname);
        req.resume();
        req.on('end', () => {
          res.writeHead(202);
          res.end();
        });
        return;
      }
      if (isArchive && req.method === 'GET') archiveGets.push(url.pathname);
      const up = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent },
        (ur) => {
          const headers = { ...ur.headers };
          if (isArchive && req.method === 'HEAD' && ur.statusCode === 200) headers['x-amz-storage-class'] = 'GLACIER';
          res.writeHead(ur.statusCode ?? 502, headers);
          ur.on('error', () => res.destroy());
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    bucket = await createTestBucket('subset-cold');
  });
  after(async () => {
    proxy.closeAllConnections();
    await new Promise((r) => proxy.close(r));
    agent.destroy();
    if (bucket) await deleteTestBucket(bucket);
  });

  test('are skipped and counted, and thawed with --request-thaw', async () => {
    const { port } = proxy.address() as AddressInfo;
    const store = new S3Store({
      bucket,
      prefix: 'repo',
      endpoint: `http://127.0.0.1:${port}`,
      region: cfg.region,
      credentials: cfg.credentials,
    });
    try {
      const r = await runBackup({ store, sources: [path.join(src, 'd5')], frameSize: FRAME, archiveSize: 1 << 20 });
      const skipped = await runSubsetVerify({ store, subset: { kind: 'share', percent: 100 } });
      assert.equal(skipped.ok, true);
      assert.equal(skipped.cold.archives, r.archiveKeys.length);
      assert.equal(skipped.cold.frames, skipped.framesTotal);
      assert.equal(skipped.cold.bytes, skipped.bytesTotal);
      assert.equal(skipped.cold.thawRequested, 0);
      assert.equal(skipped.bytesRead, 0);
      assert.equal(archiveGets.length, 0, 'no cold archive is read');
      assert.equal(restoreRequests.length, 0, 'nothing thawed without being asked');

      const thawed = await runSubsetVerify({ store, subset: { kind: 'share', percent: 100 }, thaw: { days: 3, tier: 'Bulk' } });
      assert.equal(thawed.cold.thawRequested, r.archiveKeys.length);
      assert.deepEqual(restoreRequests.map((p) => p.slice(p.indexOf('/archives/') + 1)).sort(), [...r.archiveKeys].sort());
      assert.equal(archiveGets.length, 0);
    } finally {
      await store.close();
    }
  });
});
