// Encryption meets the monitoring and reporting features: an encrypted repository's run records
// are sealed with its key (names and bytes show nothing in clear), so anomaly detection, the
// history command and the dashboard work there too, with the key; cost and the backup count of
// notifications still read an encrypted repository.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { analyzeCost } from '../src/cost/report.ts';
import { DashboardData } from '../src/dashboard/data.ts';
import { compactHistory, readHistory } from '../src/monitor/history.ts';
import { monitorSource } from '../src/dashboard/sources.ts';
import { Repository } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import { isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';
import { treeState } from './helpers/dashboard.ts';

const work = tempDir('crypto-monitoring');
after(() => fs.rmSync(work, { recursive: true, force: true }));
const keys = { passphrase: 'monitoring test' };

test('an encrypted repository keeps sealed run records: anomalies, history, dashboard and cost read them with the key, nothing in clear', async () => {
  const repoDir = path.join(work, 'repo');
  const store = new LocalStore(repoDir);
  await Repository.init(store, { encryption: { ...keys, kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } } });
  const repo = await Repository.open(store, keys);
  const crypto = repo.historyCrypto()!;
  const src = path.join(work, 'src-private-name');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a.bin'), pseudoRandom(300_000, 1));
  const host = 'secret-host.example';
  const first = await runBackup({ store, keys, sources: [src], host });
  fs.writeFileSync(path.join(src, 'b.txt'), 'new\n');
  const second = await runBackup({ store, keys, sources: [src], host });
  assert.equal(second.kind, 'incremental');
  assert.ok(Array.isArray(second.anomalies), 'judged against its history');

  // Stored sealed: names end in .enc, carry no host, and no byte of a record is in clear.
  const stored = fs.readdirSync(path.join(repoDir, 'history', 'runs'));
  assert.equal(stored.length, 2);
  for (const name of stored) {
    assert.match(name, /^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}-h[0-9a-f]{16}\.json\.enc$/);
    const bytes = fs.readFileSync(path.join(repoDir, 'history', 'runs', name));
    for (const clear of [host, 'src-private-name', '"bytesIn"', first.id]) assert.ok(!bytes.includes(clear), `${name} shows ${clear}`);
  }
  assert.deepEqual(await readHistory(store), [], 'without the key: nothing (sealed records are not plain ones)');
  const runs = await readHistory(store, { crypto });
  assert.deepEqual(
    runs.map((r) => [r.id, r.host, r.ok]),
    [
      [first.id, host, true],
      [second.id, host, true],
    ],
  );

  // A failure after the repository is open is recorded (sealed) too.
  const stop = new AbortController();
  stop.abort();
  await assert.rejects(runBackup({ store, keys, sources: [src], host, signal: stop.signal }), /interrupted/);
  assert.deepEqual(
    (await readHistory(store, { crypto })).map((r) => r.ok),
    [true, true, false],
  );

  // Failures before it is open (a wrong passphrase, a missing source) leave it as it was.
  const before = treeState(repoDir);
  await assert.rejects(runBackup({ store, keys: { passphrase: 'wrong' }, sources: [src] }));
  await assert.rejects(runBackup({ store, keys, sources: [path.join(work, 'missing')] }));
  assert.deepEqual(treeState(repoDir), before);

  // A modified record, and a record under another's name, fail authentication: skipped, said.
  const [a, b] = stored.sort().map((n) => path.join(repoDir, 'history', 'runs', n));
  const bBytes = fs.readFileSync(b!);
  fs.writeFileSync(b!, fs.readFileSync(a!));
  const flipped = fs.readFileSync(a!);
  flipped[flipped.length - 20]! ^= 1;
  fs.writeFileSync(a!, flipped);
  const warnings: string[] = [];
  assert.deepEqual(
    (await readHistory(store, { crypto, onWarning: (w) => warnings.push(w) })).map((r) => r.ok),
    [false],
  );
  assert.equal(warnings.filter((w) => /fails authentication/.test(w)).length, 2, warnings.join('\n'));
  fs.writeFileSync(b!, bBytes);
  flipped[flipped.length - 20]! ^= 1;
  fs.writeFileSync(a!, flipped);
  const all = await readHistory(store, { crypto });
  assert.equal(all.length, 3);

  // Compaction merges them into one sealed segment.
  const c = await compactHistory(store, { crypto, maxSegments: 0 });
  assert.equal(c.records, 3);
  assert.match(c.segment!, /\.ndjson\.zst\.enc$/);
  assert.deepEqual(fs.readdirSync(path.join(repoDir, 'history', 'runs')), []);
  assert.deepEqual(await readHistory(store, { crypto }), all);

  // The CLI asks for the key as a restore does; the dashboard reads them with it.
  const env = isolatedEnv(path.join(work, 'home'), { S3BACKUP_PASSWORD: keys.passphrase });
  const h = await runCli(['history', '--repo', repoDir, '--json'], { env });
  assert.equal(h.code, 0, h.stderr);
  assert.equal(json(h.stdout).count, 3);
  const noKey = await runCli(['history', '--repo', repoDir, '--json'], { env: { ...env, S3BACKUP_PASSWORD: '' } });
  assert.equal(noKey.code, 2, noKey.stderr);
  const data = new DashboardData(store, { keys, monitor: monitorSource(undefined).source });
  const mon = await data.monitor();
  assert.equal(mon.status, 'ok');
  assert.equal(mon.status === 'ok' && mon.data.runs.length, 3);

  assert.deepEqual(await Repository.backupIds(store), [first.id, second.id], 'counted without the key');
  const cost = await analyzeCost(store, { keys, months: 12 });
  assert.equal(cost.backups.count, 2);
  assert.equal(cost.backups.manifestsRead, true);
  const costNoKey = await analyzeCost(store, { months: 12 });
  assert.ok(JSON.stringify(costNoKey).includes('manifests not read'), 'without the key cost says what it could not read');
  const rows = await data.backups();
  assert.deepEqual(
    rows.map((r) => ('error' in r ? `error ${r.error}` : r.id)),
    [first.id, second.id],
  );
});
