// After each backup the retention policy runs (default: keep the last 5 of a source set), and
// backups to one repository can run at the same time.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { Repository } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { diffTrees, isolatedEnv, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('autoret');
after(() => fs.rmSync(work, { recursive: true, force: true }));

test('the CLI keeps the last 5 backups of a source set by default; --no-forget keeps all', async () => {
  const env = isolatedEnv(path.join(work, 'home'));
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  const repo = path.join(work, 'repo');
  for (let i = 0; i < 7; i++) {
    fs.writeFileSync(path.join(src, `file-${i}.txt`), `version ${i}\n`);
    const r = await runCli(['backup', src, '--repo', repo, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
  }
  const store = new LocalStore(repo);
  const ids = await (await Repository.open(store)).snapshotIds();
  assert.equal(ids.length, 5);
  // Every kept backup still restores, even though the full one it built on was forgotten.
  const target = path.join(work, 'restored');
  await runRestore({ store, snapshot: ids[0]!, target });
  assert.equal(fs.readFileSync(path.join(target, 'src', 'file-2.txt'), 'utf8'), 'version 2\n');
  assert.ok(!fs.existsSync(path.join(target, 'src', 'file-3.txt')));
  const latest = path.join(work, 'restored-latest');
  await runRestore({ store, snapshot: 'latest', target: latest });
  assert.deepEqual(diffTrees(src, path.join(latest, 'src')), []);
  const keep = await runCli(['backup', src, '--repo', repo, '--no-forget', '--json'], { env });
  assert.equal(keep.code, 0, keep.stderr);
  assert.equal((await (await Repository.open(store)).snapshotIds()).length, 6);
});

test('two backups to the same repository at once both succeed and are listed', async () => {
  const a = path.join(work, 'a');
  const b = path.join(work, 'b');
  for (const d of [a, b]) {
    fs.mkdirSync(d);
    for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(d, `f${i}.txt`), `${d} ${i}\n`.repeat(1000));
  }
  const repoDir = path.join(work, 'shared-repo');
  const [ra, rb] = await Promise.all([
    runBackup({ store: new LocalStore(repoDir), sources: [a] }),
    runBackup({ store: new LocalStore(repoDir), sources: [b] }),
  ]);
  assert.notEqual(ra.id, rb.id);
  const ids = await (await Repository.open(new LocalStore(repoDir))).snapshotIds();
  assert.deepEqual(ids.sort(), [ra.id, rb.id].sort());
  for (const [r, d] of [[ra, a], [rb, b]] as const) {
    const t = tempDir('concurrent');
    await runRestore({ store: new LocalStore(repoDir), snapshot: r.id, target: t });
    assert.deepEqual(diffTrees(d, path.join(t, path.basename(d))), []);
  }
});

test('prune started beside a running backup refuses (the backup holds a shared lock); the backup completes and restores', async () => {
  const { spawn } = await import('node:child_process');
  const { BIN, pseudoRandom } = await import('./helpers/tree.ts');
  const src = path.join(work, 'big-src');
  fs.mkdirSync(src);
  for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(src, `blob-${i}.bin`), pseudoRandom(32 << 20, 50 + i));
  const repoDir = path.join(work, 'lock-repo');
  const env = isolatedEnv(path.join(work, 'home-lock'));
  const child = spawn(process.execPath, [BIN, 'backup', src, '--repo', repoDir, '--compression', 'none', '--no-forget', '--json'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const done = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  // Wait until the backup holds its lock.
  const locks = path.join(repoDir, 'locks');
  for (let i = 0; i < 400 && !(fs.existsSync(locks) && fs.readdirSync(locks).some((n) => n.endsWith('.json'))); i++) {
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.ok(fs.readdirSync(locks).length > 0, 'the backup took a lock');
  const p = await runCli(['prune', '--repo', repoDir], { env });
  assert.equal(p.code, 1, p.stderr);
  assert.match(p.stderr, /locked|lock/i);
  assert.equal(await done, 0);
  const id = JSON.parse(out).id as string;
  const t = tempDir('lock-restore');
  await runRestore({ store: new LocalStore(repoDir), snapshot: id, target: t });
  assert.deepEqual(diffTrees(src, path.join(t, 'big-src')), []);
  assert.deepEqual(fs.readdirSync(locks).filter((n) => n.endsWith('.json')), [], 'the backup released its lock');
});
