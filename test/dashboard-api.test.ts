// `s3backup dashboard`'s JSON API over real repositories: a local store and Ceph RGW. Backups,
// paging and caching, details with the archives a backup needs, the file tree and its restore
// command (run for real), read-only (nothing in the repository changes; writes are refused),
// the token, and no secrets in any answer.
import assert from 'node:assert/strict';
import { type ChildProcess, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { BackupResult } from '../src/backup/backup.ts';
import { DashboardData, literalGlob, shellQuote } from '../src/dashboard/data.ts';
import { ReadOnlyStore } from '../src/store/readonly.ts';
import { checkExposure, isLoopback, tokenMatches } from '../src/dashboard/server.ts';
import { durationMs, maxAgeFromCron } from '../src/cli/commands/dashboard.ts';
import { loadConfigFile } from '../src/config/config.ts';
import { S3BackupError, UsageError } from '../src/errors.ts';
import { LocalStore } from '../src/store/local.ts';
import type { ByteRange, ObjectInfo, Store } from '../src/store/store.ts';
import { appendRun } from '../src/monitor/history.ts';
import { costSource, monitorSource } from '../src/dashboard/sources.ts';
import {
  makeBackups,
  makeSource,
  runRecordOf,
  serveDashboard,
  startDashboardCli,
  treeState,
  writeSyntheticManifests,
} from './helpers/dashboard.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, s3TestConfig, testS3Store } from './helpers/s3.ts';
import { DelegatingStore, splitBackup } from './helpers/store.ts';
import { BIN, isolatedEnv, tempDir } from './helpers/tree.ts';

const work = tempDir('dash-api');
const env = isolatedEnv(path.join(work, 'home'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** Counts list() calls and get() calls per key. */
class CountingStore extends DelegatingStore {
  lists = 0;
  readonly gets = new Map<string, number>();
  override list(prefix: string): AsyncIterable<ObjectInfo> {
    this.lists++;
    return this.inner.list(prefix);
  }
  override get(key: string, range?: ByteRange): Promise<Readable> {
    this.gets.set(key, (this.gets.get(key) ?? 0) + 1);
    return this.inner.get(key, range);
  }
}

/** Run the restore command line the page offers, with our CLI in place of "s3backup". */
function runOffered(cmd: string, cwd: string, extraEnv: NodeJS.ProcessEnv = {}) {
  assert.match(cmd, /^s3backup restore /);
  const line = `${shellQuote(process.execPath)} ${shellQuote(BIN)}${cmd.slice('s3backup'.length)}`;
  return spawnSync('bash', ['-c', line], { cwd, env: { ...process.env, ...env, ...extraEnv }, encoding: 'utf8' });
}

/** Start the CLI's dashboard on a free port; resolves with its --json document. */
function startCli(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  return startDashboardCli(args, { ...env, ...extraEnv });
}

async function stopCli(child: ChildProcess): Promise<number | null> {
  const done = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  return done;
}

describe('dashboard API on a local repository', () => {
  const src = path.join(work, 'src');
  const repoDir = path.join(work, 'repo');
  let results: BackupResult[];
  let d: Awaited<ReturnType<typeof serveDashboard>>;
  let before0: string[];

  before(async () => {
    fs.mkdirSync(src);
    makeSource(src);
    const store = new LocalStore(repoDir);
    results = await makeBackups(store, src, 6); // each records its run in the history
    // A failed attempt after them, as the backup command records it.
    await appendRun(store, {
      ...runRecordOf(results.at(-1)!, [src]),
      id: '20991231T000000.000Z-deadbeef',
      time: '2099-12-31T00:00:00.000Z',
      ok: false,
      error: 'source /data is unreadable',
      operation: 'walk',
    });
    before0 = treeState(repoDir);
    d = await serveDashboard(new LocalStore(repoDir), { monitor: monitorSource(undefined).source });
  });
  after(async () => {
    await d?.close();
  });

  const json = async (p: string) => {
    const r = await d.get(p);
    assert.equal(r.status, 200, `${p}: ${r.status} ${await r.clone().text()}`);
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    return (await r.json()) as any;
  };

  test('summary: count, newest backup and its age, last success, last failure from the run history', async () => {
    const s = await json('/api/summary');
    assert.equal(s.repository, repoDir);
    assert.equal(s.backups, 6);
    assert.equal(s.unreadable, 0);
    assert.equal(s.lastSuccess.id, results.at(-1)!.id);
    assert.equal(s.freshness.newest.id, results.at(-1)!.id);
    assert.equal(s.freshness.status, 'ok');
    assert.equal(s.freshness.basis, 'inferred');
    assert.ok(s.freshness.ageMs >= 0 && s.freshness.ageMs < 120_000, `age ${s.freshness.ageMs}`);
    assert.equal(
      s.storedBytes,
      results.reduce((a, r) => a + r.bytesStored, 0),
    );
    assert.deepEqual(s.hosts.length, 1);
    assert.deepEqual(s.lastFailure, {
      status: 'ok',
      data: {
        id: '20991231T000000.000Z-deadbeef',
        time: '2099-12-31T00:00:00.000Z',
        error: 'source /data is unreadable',
        operation: 'walk',
      },
    });
    const a = await json('/api/anomalies');
    assert.equal(a.status, 'ok');
    assert.equal(a.data.runs, 7);
    assert.equal(a.data.failures[0].error, 'source /data is unreadable');
    // Six steady backups are too few for the detector's statistics: nothing flagged.
    assert.deepEqual(a.data.recent, []);
  });

  test('without a run history, or with anomaly detection off, the panels say why they are empty', async () => {
    const bare = new DashboardData(new LocalStore(path.join(work, 'repo-2000-or-bare')), { monitor: monitorSource(undefined).source });
    const off = monitorSource({ enabled: false });
    assert.equal(off.source, undefined);
    assert.match(off.reason, /anomaly\.enabled is false/);
    await writeSyntheticManifests(new LocalStore(path.join(work, 'repo-2000-or-bare')), 3);
    const s = await bare.summary();
    assert.equal(s.lastFailure.status, 'not-configured');
    assert.match((s.lastFailure as { reason: string }).reason, /no run history/);
    const c = await bare.cost();
    assert.equal(c.status, 'not-configured');
    await bare.close();
  });

  test('backups are paged newest first, with their stats', async () => {
    const p1 = await json('/api/backups?offset=0&limit=4');
    const p2 = await json('/api/backups?offset=4&limit=4');
    assert.equal(p1.total, 6);
    assert.equal(p1.items.length, 4);
    assert.equal(p2.items.length, 2);
    const ids = [...p1.items, ...p2.items].map((b: { id: string }) => b.id);
    assert.deepEqual(ids, results.map((r) => r.id).reverse());
    const newest = p1.items[0];
    const r = results.at(-1)!;
    assert.equal(newest.kind, 'incremental');
    assert.equal(newest.files, r.files);
    assert.equal(newest.bytesIn, r.bytesIn);
    assert.equal(newest.bytesStored, r.bytesStored);
    assert.equal(newest.newFiles, r.newFiles);
    assert.equal(newest.changedFiles, r.changedFiles);
    assert.equal(newest.deletedFiles, r.deletedFiles);
    assert.equal(newest.warnings, 1); // the FIFO
    assert.equal(p1.items.at(-1).id, results[2]!.id);
  });

  test('timeline: one point per backup, oldest first', async () => {
    const t = await json('/api/timeline');
    assert.deepEqual(
      t.ids,
      results.map((r) => r.id),
    );
    assert.deepEqual(
      t.bytesIn,
      results.map((r) => r.bytesIn),
    );
    assert.deepEqual(
      t.durationMs,
      results.map((r) => r.durationMs),
    );
    assert.equal(new Set(t.sourceKeys).size, 1);
    assert.deepEqual(
      t.kinds,
      results.map((r) => r.kind),
    );
    assert.ok(t.t.every((x: number, i: number) => i === 0 || x >= t.t[i - 1]));
  });

  test('details: stats, warnings, and the chain of archives it needs (all present)', async () => {
    const last = results.at(-1)!;
    const b = await json(`/api/backups/${last.id}`);
    assert.equal(b.id, last.id);
    assert.equal(b.parent, results.at(-2)!.id);
    assert.deepEqual(b.warningList, [`${path.basename(src)}/pipe: skipped (FIFO)`]);
    // The parent chain back to the full backup.
    assert.deepEqual(
      b.parents.map((p: { id: string }) => p.id),
      results
        .slice(0, -1)
        .map((r) => r.id)
        .reverse(),
    );
    assert.equal(b.parents.at(-1).kind, 'full');
    // Its own archive and the full one (unchanged files live there), each present on disk.
    const keys = b.archives.map((a: { key: string }) => a.key);
    assert.ok(keys.includes(last.archiveKey), `own archive in ${keys}`);
    assert.ok(keys.includes(results[0]!.archiveKey), `the full backup's archive in ${keys}`);
    for (const a of b.archives) {
      assert.equal(a.present, true);
      assert.equal(a.storageClass, 'local');
      assert.equal(a.size, fs.statSync(path.join(repoDir, a.key)).size);
    }
    // "latest" resolves too.
    assert.equal((await json('/api/backups/latest')).id, last.id);
  });

  test('details of a backup split into several archives number them', async () => {
    const store = new LocalStore(path.join(work, 'repo-split'));
    const r = await splitBackup(store, path.join(work, 'split-src'));
    const data = new DashboardData(store);
    try {
      const b = await data.detail(r.id);
      assert.deepEqual(
        b.archives.map((a) => a.key),
        r.archiveKeys,
      );
      assert.deepEqual(
        b.archives.map((a) => a.part),
        r.archiveKeys.map((_k, i) => i + 1),
      );
      assert.ok(b.archives.every((a) => a.parts === r.archiveKeys.length && a.present));
    } finally {
      await data.close();
    }
  });

  test('details show a missing archive as missing', async () => {
    // A copy of the repository with one archive gone (the real one must stay untouched).
    const copy = path.join(work, 'repo-missing');
    fs.cpSync(repoDir, copy, { recursive: true });
    fs.rmSync(path.join(copy, results[0]!.archiveKey));
    const data = new DashboardData(new LocalStore(copy));
    try {
      const b = await data.detail(results.at(-1)!.id);
      const full = b.archives.find((a) => a.key === results[0]!.archiveKey)!;
      assert.equal(full.present, false);
      assert.equal(full.storageClass, null);
    } finally {
      await data.close();
    }
  });

  test('a damaged manifest is listed with its error; the other backups are still shown', async () => {
    const copy = path.join(work, 'repo-damaged');
    fs.cpSync(repoDir, copy, { recursive: true });
    const victim = results[2]!.id;
    fs.writeFileSync(path.join(copy, 'snapshots', `${victim}.ndjson.zst`), 'not a manifest');
    const data = new DashboardData(new LocalStore(copy));
    try {
      const p = await data.page(0, 50);
      assert.equal(p.total, 6);
      const broken = p.items.find((b) => b.id === victim)!;
      assert.ok('error' in broken && /manifest|corrupt|s3backup/i.test(broken.error), JSON.stringify(broken));
      assert.equal(p.items.filter((b) => 'error' in b).length, 1);
      const s = await data.summary();
      assert.equal(s.backups, 5);
      assert.equal(s.unreadable, 1);
    } finally {
      await data.close();
    }
  });

  test('file tree: one level at a time, and the offered restore command restores exactly that file', async () => {
    const id = results.at(-1)!.id;
    const top = await json(`/api/backups/${id}/tree`);
    assert.deepEqual(
      top.entries.map((e: { name: string }) => e.name),
      [path.basename(src)],
    );
    const name = path.basename(src);
    const root = await json(`/api/backups/${id}/tree?path=${encodeURIComponent(name)}`);
    const names = root.entries.map((e: { name: string }) => e.name);
    assert.equal(names[0], 'docs', 'directories first');
    assert.ok(names.includes('hello.txt') && names.includes('counter.txt') && names.includes('pipe'), names.join(','));
    assert.equal(root.entries.find((e: { name: string }) => e.name === 'docs').below, 3);
    assert.equal(root.entries.find((e: { name: string }) => e.name === 'pipe').error, 'skipped (FIFO)');
    const deep = await json(`/api/backups/${id}/tree?path=${encodeURIComponent(`${name}/docs/deep`)}`);
    const note = deep.entries.find((e: { name: string }) => e.name === 'note [v1].txt');
    assert.equal(note.size, fs.statSync(path.join(src, 'docs/deep/note [v1].txt')).size);
    const target = path.join(work, 'restore-run');
    fs.mkdirSync(target);
    const r = runOffered(note.restore, target);
    assert.equal(r.status, 0, r.stderr);
    const restored = path.join(target, 'restored', name, 'docs', 'deep', 'note [v1].txt');
    assert.equal(fs.readFileSync(restored, 'utf8'), fs.readFileSync(path.join(src, 'docs/deep/note [v1].txt'), 'utf8'));
    assert.deepEqual(fs.readdirSync(path.join(target, 'restored', name)), ['docs'], 'nothing else restored');
    assert.deepEqual(fs.readdirSync(path.join(target, 'restored', name, 'docs')), ['deep']);
    // The directory's own command restores everything below it.
    assert.match(deep.restore, /--include .*docs\/deep/);
  });

  test('bad requests get clear errors', async () => {
    const notId = await d.get('/api/backups/..%2Fconfig.json');
    assert.equal(notId.status, 400);
    assert.match(((await notId.json()) as { error: string }).error, /not a backup id/);
    const unknown = await d.get('/api/backups/20200101T000000.000Z-00000000');
    assert.equal(unknown.status, 404);
    assert.match(((await unknown.json()) as { error: string }).error, /no backup/);
    const noPath = await d.get(`/api/backups/${results[0]!.id}/tree?path=nowhere`);
    assert.equal(noPath.status, 400);
    const badLimit = await d.get('/api/backups?limit=abc');
    assert.equal(badLimit.status, 400);
    assert.equal((await d.get('/api/nothing')).status, 404);
  });

  test('the page and its assets are served with a strict content security policy', async () => {
    const page = await d.get('/');
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<script type="module" src="\/app.js">/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    for (const p of ['/app.js', '/style.css', '/vendor/uPlot.esm.js', '/vendor/uPlot.min.css', '/favicon.svg']) {
      const r = await d.get(p);
      assert.equal(r.status, 200, p);
      assert.ok((await r.arrayBuffer()).byteLength > 100, p);
    }
  });

  test('read-only: writes are refused and the repository is unchanged after every request above', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await d.get(`/api/backups/${results[0]!.id}`, { method });
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.get('allow'), 'GET, HEAD');
    }
    const ro = new ReadOnlyStore(new LocalStore(repoDir));
    await assert.rejects(ro.put('x', Buffer.from('x')), /read-only/);
    await assert.rejects(ro.delete(['config.json']), /read-only/);
    assert.deepEqual(treeState(repoDir), before0);
  });

  test('requests addressed to another host name are refused (DNS rebinding)', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port: d.server.port, path: '/api/summary', headers: { Host: 'attacker.example:80' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
    });
    assert.equal(status, 421);
    assert.equal((await d.get('/api/summary', { headers: { Host: `localhost:${d.server.port}` } })).status, 200);
  });

  test('caching: the listing is reused for its time to live; each header is read once', async () => {
    const counting = new CountingStore(new LocalStore(repoDir));
    const cached = new DashboardData(counting, { listTtlMs: 60_000 });
    await cached.page(0, 10);
    await cached.summary();
    await cached.timeline();
    assert.equal(counting.lists, 1);
    const fresh = new CountingStore(new LocalStore(repoDir));
    const uncached = new DashboardData(fresh, {
      listTtlMs: 0,
      now: (() => {
        let t = 0;
        return () => (t += 1000);
      })(),
    });
    await uncached.page(0, 10);
    await uncached.page(0, 10);
    assert.equal(fresh.lists, 2, 'listed again after the time to live');
    const headerReads = [...fresh.gets.entries()].filter(([k]) => k.startsWith('snapshots/'));
    assert.equal(headerReads.length, 6);
    assert.ok(
      headerReads.every(([, n]) => n === 1),
      'headers are immutable: read once each',
    );
    await cached.close();
    await uncached.close();
  });
});

describe('dashboard API with 2,000 backups', () => {
  const dir = path.join(work, 'repo-2000');
  let ids: string[];
  let d: Awaited<ReturnType<typeof serveDashboard>>;
  before(async () => {
    ids = await writeSyntheticManifests(new LocalStore(dir), 2000);
    d = await serveDashboard(new LocalStore(dir));
  });
  after(async () => d?.close());

  test('pages through all of them, newest first, none twice; timeline has every point', async () => {
    const seen: string[] = [];
    for (let offset = 0; ; offset += 500) {
      const r = await d.get(`/api/backups?offset=${offset}&limit=500`);
      const p = (await r.json()) as { total: number; items: { id: string }[] };
      assert.equal(p.total, 2000);
      if (p.items.length === 0) break;
      assert.ok(p.items.length <= 500);
      seen.push(...p.items.map((b) => b.id));
    }
    assert.deepEqual(seen, ids.slice().reverse());
    // A page size beyond the maximum is cut to it.
    const big = (await (await d.get('/api/backups?limit=100000')).json()) as { items: unknown[]; limit: number };
    assert.equal(big.limit, 500);
    assert.equal(big.items.length, 500);
    const t = (await (await d.get('/api/timeline')).json()) as { ids: string[] };
    assert.equal(t.ids.length, 2000);
    const s = (await (await d.get('/api/summary')).json()) as {
      backups: number;
      freshness: { status: string; basis: string; maxAgeMs: number };
    };
    assert.equal(s.backups, 2000);
    // One backup an hour, the newest in January 2026: stale, judged by twice the usual gap.
    assert.equal(s.freshness.status, 'stale');
    assert.equal(s.freshness.basis, 'inferred');
    assert.equal(s.freshness.maxAgeMs, 2 * 3_600_000);
  });
});

describe('dashboard token and exposure', () => {
  const dir = path.join(work, 'repo-token');
  const token = 'correct-horse-battery-staple-42';
  let d: Awaited<ReturnType<typeof serveDashboard>>;
  before(async () => {
    await writeSyntheticManifests(new LocalStore(dir), 3);
    d = await serveDashboard(new LocalStore(dir), { token });
  });
  after(async () => d?.close());

  test('every request needs the token: bearer header, or a cookie set from ?token= on the first page load', async () => {
    assert.equal((await d.get('/api/summary')).status, 401);
    assert.equal((await d.get('/')).status, 401);
    assert.equal((await d.get('/app.js')).status, 401);
    assert.equal((await d.get('/api/summary', { headers: { Authorization: `Bearer ${token}x` } })).status, 401);
    assert.equal((await d.get('/api/summary', { headers: { Cookie: 's3backup_dashboard=wrong' } })).status, 401);
    const ok = await d.get('/api/summary', { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.ok(!(await ok.text()).includes(token), 'the token is never in an answer');
    const first = await d.get(`/?token=${token}&x=1`, { redirect: 'manual' });
    assert.equal(first.status, 303);
    assert.equal(first.headers.get('location'), '/?x=1', 'the token is dropped from the address');
    const cookie = first.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^s3backup_dashboard=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/);
    const viaCookie = await d.get('/api/summary', { headers: { Cookie: cookie.split(';')[0]! } });
    assert.equal(viaCookie.status, 200);
    assert.equal((await d.get('/', { headers: { Cookie: cookie.split(';')[0]! } })).status, 200);
    assert.equal((await d.get(`/?token=nope-nope-nope-nope`, { redirect: 'manual' })).status, 401);
  });

  test('token comparison and the exposure rules', () => {
    assert.equal(tokenMatches(token, token), true);
    assert.equal(tokenMatches(`${token}x`, token), false);
    assert.equal(tokenMatches(undefined, token), false);
    assert.equal(tokenMatches('', token), false);
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) assert.equal(isLoopback(h), true, h);
    for (const h of ['0.0.0.0', '::', '192.168.1.10', 'example.com']) assert.equal(isLoopback(h), false, h);
    assert.throws(
      () => checkExposure('0.0.0.0', undefined),
      (e) => e instanceof UsageError && /without a token/.test(e.message),
    );
    assert.throws(
      () => checkExposure('127.0.0.1', 'short'),
      (e) => e instanceof UsageError && /too short/.test(e.message),
    );
    assert.doesNotThrow(() => checkExposure('0.0.0.0', token));
    assert.doesNotThrow(() => checkExposure('127.0.0.1', undefined));
  });

  test('when the newest backup is stale: --max-age, else the schedule, from the config file too', () => {
    assert.equal(durationMs('26h', '--max-age'), 26 * 3_600_000);
    assert.equal(durationMs('1w2d', '--max-age'), 9 * 86_400_000);
    assert.throws(() => durationMs('soon', '--max-age'), /--max-age: "soon" is not a duration/);
    assert.equal(maxAgeFromCron('0 2 * * *', 'UTC'), 36 * 3_600_000, 'daily: a day and a half');
    assert.equal(maxAgeFromCron('0 */6 * * *', undefined), 9 * 3_600_000);
    const file = path.join(work, 'dash.yaml');
    fs.writeFileSync(file, 'dashboard:\n  host: 127.0.0.1\n  port: 9000\n  maxAge: 26h\n');
    assert.deepEqual(loadConfigFile(file).dashboard, { host: '127.0.0.1', port: 9000, maxAge: '26h' });
    fs.writeFileSync(file, 'dashboard:\n  maxAge: tomorrow\n');
    assert.throws(() => loadConfigFile(file), /dashboard\.maxAge: a duration such as 26h/);
    fs.writeFileSync(file, 'dashboard:\n  token: abcdefabcdefabcdef\n');
    assert.throws(() => loadConfigFile(file), /dashboard: unknown key "token"/, 'the token is never a config file setting');
  });

  test('CLI: off loopback without a token is refused with exit 2, before listening', () => {
    const r = spawnSync(process.execPath, [BIN, 'dashboard', '--repo', dir, '--host', '0.0.0.0', '--port', '0'], {
      env,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /refusing to serve the dashboard on 0\.0\.0\.0 without a token/);
    assert.match(r.stderr, /hint: set --token/);
    const short = spawnSync(process.execPath, [BIN, 'dashboard', '--repo', dir, '--token', 'abc', '--port', '0'], {
      env,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(short.status, 2);
    assert.match(short.stderr, /token is too short/);
    assert.ok(!short.stderr.includes('abc '), 'the token itself is not printed');
    const noRepo = spawnSync(process.execPath, [BIN, 'dashboard', '--repo', path.join(work, 'none'), '--port', '0'], {
      env,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(noRepo.status, 1);
    assert.match(noRepo.stderr, /no s3backup repository at/);
    const badPort = spawnSync(process.execPath, [BIN, 'dashboard', '--repo', dir, '--port', '99999'], {
      env,
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(badPort.status, 2);
    assert.match(badPort.stderr, /not a port number/);
  });

  test('CLI: --max-age decides staleness; the token from the environment is enforced', async () => {
    const { child, doc } = await startCli(['--repo', dir, '--max-age', '1y'], { S3BACKUP_DASHBOARD_TOKEN: token });
    try {
      assert.equal(doc.tokenRequired, true);
      assert.equal(doc.repository, dir);
      assert.ok(!JSON.stringify(doc).includes(token));
      assert.equal((await fetch(`${doc.url}api/summary`)).status, 401);
      const s = (await (await fetch(`${doc.url}api/summary`, { headers: { Authorization: `Bearer ${token}` } })).json()) as {
        freshness: { status: string; basis: string };
      };
      assert.equal(s.freshness.basis, 'setting');
      assert.equal(s.freshness.status, 'ok'); // January 2026 is within a year
    } finally {
      assert.equal(await stopCli(child), 0);
    }
  });
});

describe('dashboard API on Ceph (S3)', () => {
  let bucket: string;
  let results: BackupResult[];
  let d: Awaited<ReturnType<typeof serveDashboard>>;
  const src = path.join(work, 'src-s3');
  before(async () => {
    bucket = await createTestBucket('dash-api');
    fs.mkdirSync(src);
    makeSource(src);
    results = await makeBackups(testS3Store(bucket, 'repo'), src, 3);
    d = await serveDashboard(testS3Store(bucket, 'repo'), { cost: costSource({}).source });
  });
  after(async () => {
    await d?.close();
    if (bucket) await deleteTestBucket(bucket);
  });

  test('backups, details with storage classes, and the tree over S3; no secret in any answer', async () => {
    const { credentials, endpoint } = s3TestConfig();
    const bodies: string[] = [];
    const get = async (p: string) => {
      const r = await d.get(p);
      assert.equal(r.status, 200, p);
      const text = await r.text();
      bodies.push(text);
      return JSON.parse(text);
    };
    const s = await get('/api/summary');
    assert.equal(s.repository, `s3://${bucket}/repo`);
    assert.equal(s.backups, 3);
    const page = await get('/api/backups?limit=2');
    assert.deepEqual(
      page.items.map((b: { id: string }) => b.id),
      results
        .slice(1)
        .map((r) => r.id)
        .reverse(),
    );
    const b = await get(`/api/backups/${results.at(-1)!.id}`);
    assert.ok(b.archives.length >= 2);
    for (const a of b.archives) {
      assert.equal(a.present, true);
      assert.equal(a.storageClass, 'STANDARD');
    }
    const tree = await get(`/api/backups/${results.at(-1)!.id}/tree?path=${encodeURIComponent(path.basename(src))}`);
    assert.ok(tree.entries.some((e: { name: string }) => e.name === 'hello.txt'));
    await get('/api/timeline');
    await get('/api/anomalies');
    // Cost from the cost module, over what is really in the bucket.
    const cost = await get('/api/cost');
    assert.equal(cost.status, 'ok');
    let objects = 0;
    let total = 0;
    for await (const o of testS3Store(bucket, 'repo').list('')) {
      objects++;
      total += o.size;
    }
    assert.equal(cost.data.store, 's3');
    assert.equal(cost.data.totalObjects, objects);
    assert.equal(cost.data.totalBytes, total);
    assert.deepEqual(
      cost.data.current.classes.map((c: { storageClass: string }) => c.storageClass),
      ['STANDARD'],
    );
    assert.ok(cost.data.current.monthlyCost > 0);
    assert.equal(cost.data.forecast.months, 6);
    for (const text of bodies) {
      assert.ok(!text.includes(credentials.secretAccessKey), 'no secret key');
      assert.ok(!text.includes(credentials.accessKeyId), 'no access key id');
    }
    assert.ok(!bodies.join('').includes(`${endpoint.replace(/^https?:\/\//, '')}@`));
  });

  test('CLI over S3: the restore command it offers names the endpoint and works', async () => {
    const { endpoint } = s3TestConfig();
    const { child, doc } = await startCli(['--repo', `s3://${bucket}/repo`], s3CliEnv());
    try {
      assert.equal(doc.repository, `s3://${bucket}/repo`);
      const id = results[1]!.id;
      const tree = (await (await fetch(`${doc.url}api/backups/${id}/tree?path=${encodeURIComponent(path.basename(src))}`)).json()) as {
        entries: { name: string; restore: string }[];
      };
      const hello = tree.entries.find((e) => e.name === 'hello.txt')!;
      assert.ok(hello.restore.includes(`--endpoint ${endpoint}`), hello.restore);
      const target = path.join(work, 'restore-s3');
      fs.mkdirSync(target);
      const r = runOffered(hello.restore, target, s3CliEnv());
      assert.equal(r.status, 0, r.stderr);
      assert.equal(fs.readFileSync(path.join(target, 'restored', path.basename(src), 'hello.txt'), 'utf8'), 'hello, world\n');
    } finally {
      assert.equal(await stopCli(child), 0);
    }
  });
});

describe('the offered restore command restores exactly its file, whatever the name', () => {
  // Names a shell or a glob would read as more than text.
  const hostile = [
    '"a(1).txt',
    '(x)',
    '\\(x\\)', // how (x) is escaped: a name of its own, which the glob for (x) must not match
    "it's.txt",
    `a"b'c`,
    '[x].txt',
    '[',
    ']',
    '[!a]',
    'a*b?c',
    '*',
    '?',
    '**',
    '!neg',
    '!(x)',
    '{a,b}',
    '{}',
    'a\\b',
    '\\',
    '\\\\\\',
    'back\\slash\\',
    'new\nline',
    '\n',
    'tab\there',
    '-rf',
    '--include',
    ' lead and trail ',
    '$HOME',
    '$(touch INJECTED)',
    '`touch INJECTED`',
    'a$$b',
    '^^',
    '+(a|b)',
    '@(x)',
    'a|b',
    '#hash',
    '~tilde',
    'semi;colon&amp',
    '<in>out',
    '%d',
    '.hidden',
    'a.b',
    'caf\u00e9 \u{1F600}',
    'plain.txt',
    'bad-\\xff\\xfe', // the four characters "\xff" (twice): how the name below is shown
  ];
  // Names that are not UTF-8, as bytes: no command line carries them as such.
  const bytes = (...parts: (string | number[] | Buffer)[]) =>
    Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p as string))));
  const hostileBytes = [
    bytes('bad-', [0xff, 0xfe]),
    bytes([0xff]),
    bytes('caf', [0xe9], ' (1) [*].txt'),
    bytes('-', [0xe9], '\\x', [0x80], '\n'),
    bytes('half-', [0xe2, 0x82]),
    bytes([0xed, 0xa0, 0x80], 'surrogate'),
    bytes("it'", [0xfc], '$(touch INJECTED)'),
  ];

  test('over a list of hostile names: the command the API gives, run with sh -c, restores that file and nothing else', async () => {
    const base = path.join(work, 'hostile');
    fs.mkdirSync(base);
    const src = path.join(base, 'src');
    fs.mkdirSync(src);
    for (const [i, name] of hostile.entries()) fs.writeFileSync(path.join(src, name), `file ${i}: ${JSON.stringify(name)}\n`);
    for (const [i, name] of hostileBytes.entries())
      fs.writeFileSync(bytes(src, '/', name), `byte-named file ${i}: ${name.toString('hex')}\n`);
    // Directories with such names too: their command restores what is below them.
    fs.mkdirSync(path.join(src, 'dir (1) [*]'));
    fs.writeFileSync(path.join(src, 'dir (1) [*]', 'inner $x.txt'), 'inner\n');
    const byteDir = bytes('dir-', [0xe9], ' [1]');
    fs.mkdirSync(bytes(src, '/', byteDir));
    fs.writeFileSync(bytes(src, '/', byteDir, '/inner $x.txt'), 'inner of a byte-named directory\n');
    const repoDir = path.join(base, 'repo');
    const store = new LocalStore(repoDir);
    const { runBackup } = await import('../src/backup/backup.ts');
    const b = await runBackup({ store, sources: [src] });
    assert.deepEqual(b.warnings, []);
    // "s3backup" is found on PATH, as for the user who pastes the command.
    const bin = path.join(base, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 's3backup'), `#!/bin/sh\nexec ${shellQuote(process.execPath)} ${shellQuote(BIN)} "$@"\n`, {
      mode: 0o755,
    });
    const d = await serveDashboard(new LocalStore(repoDir), { monitor: monitorSource(undefined).source });
    type Child = { name: string; path: string; pathBase64?: string; type: string; restore: string };
    let entries: Child[];
    let inByteDir: { path: string; pathBase64?: string; entries: Child[] };
    try {
      const r = await d.get(`/api/backups/${b.id}/tree?path=src`);
      assert.equal(r.status, 200);
      entries = ((await r.json()) as { entries: typeof entries }).entries;
      // A directory that is not UTF-8 is opened by its exact bytes.
      const dirEntry = entries.find((e) => e.pathBase64 && Buffer.from(e.pathBase64, 'base64').equals(bytes('src/', byteDir)));
      assert.ok(dirEntry, 'the byte-named directory is listed with its bytes');
      assert.equal(dirEntry.name, 'dir-\\xe9 [1]', 'shown with \\xHH');
      const r2 = await d.get(`/api/backups/${b.id}/tree?pathBase64=${encodeURIComponent(dirEntry.pathBase64!)}`);
      assert.equal(r2.status, 200);
      inByteDir = (await r2.json()) as typeof inByteDir;
    } finally {
      await d.close();
    }
    assert.equal(entries.length, hostile.length + hostileBytes.length + 2);
    assert.equal(inByteDir.path, 'src/dir-\\xe9 [1]');
    assert.ok(Buffer.from(inByteDir.pathBase64!, 'base64').equals(bytes('src/', byteDir)));
    assert.deepEqual(
      inByteDir.entries.map((e) => [e.name, e.pathBase64 && Buffer.from(e.pathBase64, 'base64').toString('latin1')]),
      [['inner $x.txt', bytes('src/', byteDir, '/inner $x.txt').toString('latin1')]],
    );
    /** Every file below dir, relative to it, as bytes (names need not be UTF-8). */
    const files = (dir: Buffer, rel = Buffer.alloc(0)): Buffer[] =>
      fs.readdirSync(dir, { encoding: 'buffer' }).flatMap((n) => {
        const r = rel.length ? bytes(rel, '/', n) : n;
        return fs.lstatSync(bytes(dir, '/', n)).isDirectory() ? files(bytes(dir, '/', n), r) : [r];
      });
    let runs = 0;
    for (const e of [...entries, ...inByteDir.entries]) {
      const exact = e.pathBase64 ? Buffer.from(e.pathBase64, 'base64') : Buffer.from(e.path);
      if (e.pathBase64) assert.match(e.restore, /\\x[89a-f][0-9a-f]/, `a byte that is not UTF-8 is named as \\xHH: ${e.restore}`);
      const cwd = path.join(base, 'run', String(runs++));
      fs.mkdirSync(cwd, { recursive: true });
      const run = spawnSync('sh', ['-c', e.restore], {
        cwd,
        env: { ...process.env, ...env, PATH: `${bin}:${process.env.PATH}` },
        encoding: 'utf8',
      });
      assert.equal(run.status, 0, `${JSON.stringify(e.name)}: ${e.restore}\n${run.stderr}`);
      const want = e.type === 'dir' ? bytes(exact, '/inner $x.txt') : exact;
      assert.deepEqual(
        files(bytes(cwd, '/restored')).map((b) => b.toString('hex')),
        [want.toString('hex')],
        `${JSON.stringify(e.name)}: ${e.restore}`,
      );
      assert.deepEqual(fs.readdirSync(cwd), ['restored'], `${JSON.stringify(e.name)}: nothing else written (no shell expansion ran)`);
      assert.ok(fs.readFileSync(bytes(cwd, '/restored/', want)).equals(fs.readFileSync(bytes(base, '/', want))), e.path);
    }
  });
});

test('the store wrapper refuses writes whatever store it wraps', async () => {
  const ro = new ReadOnlyStore(new LocalStore(path.join(work, 'ro')));
  await assert.rejects(ro.put('config.json', Buffer.from('{}')), (e) => e instanceof S3BackupError && /read-only/.test(e.message));
  assert.equal(fs.existsSync(path.join(work, 'ro', 'config.json')), false);
  assert.equal(literalGlob('a [b]*.txt'), './a \\[b\\]\\*.txt');
  assert.equal(literalGlob('src/a\\b'), './src/a[\\\\]b');
  assert.equal(literalGlob('src/plain name.txt'), 'src/plain name.txt', 'no glob characters: the path itself');
  assert.equal(shellQuote("it's here"), `'it'\\''s here'`);
  const s: Store = ro;
  assert.equal(s.location, path.join(work, 'ro'));
});
