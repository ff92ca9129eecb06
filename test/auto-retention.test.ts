// After each backup the retention policy runs (default: keep the last 5 of a source set), and
// backups to one repository can run at the same time.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { listLocks } from '../src/repo/locks.ts';
import { ARCHIVES, Repository, SNAPSHOTS } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import type { PutOptions, Store } from '../src/store/store.ts';
import { DelegatingStore } from './helpers/store.ts';
import { diffTrees, isolatedEnv, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

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
  for (const [r, d] of [
    [ra, a],
    [rb, b],
  ] as const) {
    const t = tempDir('concurrent');
    await runRestore({ store: new LocalStore(repoDir), snapshot: r.id, target: t });
    assert.deepEqual(diffTrees(d, path.join(t, path.basename(d))), []);
  }
});

/**
 * Holds the backup's manifest write until open(): by then its archive is stored and its shared
 * lock taken, and the backup cannot finish (or release the lock) until the test lets it.
 */
class ManifestGate extends DelegatingStore {
  /** Resolves with the manifest key once the backup is waiting at the gate. */
  readonly reached: Promise<string>;
  private arrived: (key: string) => void = () => {};
  private readonly gate: Promise<void>;
  private release: () => void = () => {};
  constructor(inner: Store) {
    super(inner);
    this.reached = new Promise((r) => (this.arrived = r));
    this.gate = new Promise((r) => (this.release = r));
  }
  open(): void {
    this.release();
  }
  override async put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    if (key.startsWith(SNAPSHOTS)) {
      this.arrived(key);
      await this.gate;
    }
    return this.inner.put(key, body, opts);
  }
}

async function keysUnder(store: Store, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key);
  return keys;
}

test('prune started beside a running backup refuses (the backup holds a shared lock); the backup completes and restores', async () => {
  const src = path.join(work, 'big-src');
  fs.mkdirSync(src);
  for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(src, `blob-${i}.bin`), pseudoRandom(2 << 20, 50 + i));
  const repoDir = path.join(work, 'lock-repo');
  const env = isolatedEnv(path.join(work, 'home-lock'));
  const gated = new ManifestGate(new LocalStore(repoDir));
  // The backup runs in this process (the same runBackup the CLI calls) so that the test decides
  // when it may finish: no race between the backup ending and prune starting.
  const backup = runBackup({ store: gated, sources: [src] });
  backup.catch(() => {}); // awaited below; a failure must not surface as an unhandled rejection first
  try {
    const manifestKey = await Promise.race([
      gated.reached,
      backup.then(() => assert.fail('the backup finished without writing its manifest')),
    ]);
    // The backup is now held just before recording itself: its archive is stored but no
    // manifest refers to it yet, which is exactly what a prune without locks would delete.
    const plain = new LocalStore(repoDir);
    const locks = await listLocks(plain);
    assert.deepEqual(
      locks.map((l) => [l.info?.command, l.info?.exclusive, l.info?.pid, l.stale]),
      [['backup', false, process.pid, false]],
      'the running backup holds one live shared lock',
    );
    const archivesBefore = await keysUnder(plain, ARCHIVES);
    assert.equal(archivesBefore.length, 1, 'the held backup has stored its archive');
    assert.ok(!fs.existsSync(path.join(repoDir, manifestKey)), 'the backup is not recorded yet');

    const p = await runCli(['prune', '--repo', repoDir], { env });
    assert.equal(p.code, 1, p.stderr);
    assert.match(p.stderr, /is locked: prune needs an exclusive lock, but backup \(shared\) by pid \d+/);
    assert.deepEqual(await keysUnder(plain, ARCHIVES), archivesBefore, 'prune deleted nothing');
  } finally {
    gated.open();
  }
  const r = await backup;
  const t = tempDir('lock-restore');
  await runRestore({ store: new LocalStore(repoDir), snapshot: r.id, target: t });
  assert.deepEqual(diffTrees(src, path.join(t, 'big-src')), []);
  assert.deepEqual(await listLocks(new LocalStore(repoDir)), [], 'the backup released its lock');
  // With the backup done, the same prune runs: it was the lock that stopped it before.
  const again = await runCli(['prune', '--repo', repoDir], { env });
  assert.equal(again.code, 0, again.stderr);
});
