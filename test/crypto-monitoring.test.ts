// Encryption meets the monitoring and reporting features: run records are plaintext, so an
// encrypted repository keeps none (not even for a failure, nor for a wrong passphrase); cost,
// the dashboard and the backup count of notifications still read an encrypted repository.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { analyzeCost } from '../src/cost/report.ts';
import { DashboardData } from '../src/dashboard/data.ts';
import { readHistory } from '../src/monitor/history.ts';
import { Repository } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import { pseudoRandom, tempDir } from './helpers/tree.ts';
import { treeState } from './helpers/dashboard.ts';

const work = tempDir('crypto-monitoring');
after(() => fs.rmSync(work, { recursive: true, force: true }));
const keys = { passphrase: 'monitoring test' };

test('an encrypted repository: no run records, wrong passphrase writes nothing, cost and dashboard read it with the key', async () => {
  const repoDir = path.join(work, 'repo');
  const store = new LocalStore(repoDir);
  await Repository.init(store, { encryption: { ...keys, scrypt: { N: 2 ** 14, r: 8, p: 1 } } });
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a.bin'), pseudoRandom(300_000, 1));
  const first = await runBackup({ store, keys, sources: [src] });
  fs.writeFileSync(path.join(src, 'b.txt'), 'new\n');
  const second = await runBackup({ store, keys, sources: [src] });
  assert.equal(second.kind, 'incremental');
  assert.equal(fs.existsSync(path.join(repoDir, 'history')), false, 'no plaintext run records in an encrypted repository');
  assert.deepEqual(await readHistory(store), []);

  // Failures: a wrong passphrase, and a missing source, leave the repository as it was.
  const before = treeState(repoDir);
  await assert.rejects(runBackup({ store, keys: { passphrase: 'wrong' }, sources: [src] }));
  await assert.rejects(runBackup({ store, keys, sources: [path.join(work, 'missing')] }));
  assert.deepEqual(treeState(repoDir), before);

  assert.deepEqual(await Repository.backupIds(store), [first.id, second.id], 'counted without the key');

  const cost = await analyzeCost(store, { keys, months: 12 });
  assert.equal(cost.backups.count, 2);
  assert.equal(cost.backups.manifestsRead, true);
  const noKey = await analyzeCost(store, { months: 12 });
  assert.ok(JSON.stringify(noKey).includes('manifests not read'), 'without the key cost says what it could not read');

  const data = new DashboardData(store, { keys });
  const rows = await data.backups();
  assert.deepEqual(
    rows.map((r) => ('error' in r ? `error ${r.error}` : r.id)),
    [first.id, second.id],
  );
});
