// SourceWalk: the walk of a backup's sources that runs ahead while the backup waits (an encrypted
// repository's scrypt, S3 round trips), into a bounded buffer, and hands out the same steps in
// the same order as walking on demand.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { makeExcluder, SourceWalk, type WalkStep } from '../src/backup/walk.ts';
import { derivationHoldingCores } from '../src/crypto/keys.ts';
import { Repository } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import { tempDir } from './helpers/tree.ts';

const work = tempDir('walk');
// rm -rf: it removes paths longer than PATH_MAX (see deepDir), which fs.rmSync does not.
after(() => spawnSync('rm', ['-rf', work]));

/** A tree of `dirs` directories ("d0"…) of `files` files each ("f0"…, content "d/f"). */
function gridTree(name: string, dirs: number, files: number): string {
  const root = path.join(work, name);
  for (let d = 0; d < dirs; d++) {
    fs.mkdirSync(path.join(root, `d${d}`), { recursive: true });
    for (let f = 0; f < files; f++) fs.writeFileSync(path.join(root, `d${d}`, `f${f}`), `${d}/${f}`);
  }
  return root;
}

/**
 * A directory "deep" in root nested past PATH_MAX (4096), made by cd-ing down step by step:
 * its deepest part cannot be walked (ENAMETOOLONG), a walk warning that root (as CI runs)
 * cannot read its way around, unlike a chmod 000 directory.
 */
function deepDir(root: string): void {
  const name = 'x'.repeat(250);
  const r = spawnSync('bash', ['-c', `cd "$1" && mkdir deep && cd deep && for i in $(seq 18); do mkdir ${name} && cd ${name} || exit 1; done`, 'bash', root]);
  assert.equal(r.status, 0, String(r.stderr));
}

const describe = (steps: WalkStep[]) => steps.map((s) => (s.item ? `${s.item.path} ${s.item.st.size}` : `warning ${s.warning.path}: ${s.warning.message}`));
const noExcludes = makeExcluder([]);

test('walk: running ahead hands out the same steps, warnings in place, as walking on demand', async () => {
  const a = gridTree('same-a', 4, 30);
  deepDir(a);
  const b = gridTree('same-b', 2, 5);
  const sources = [
    { path: a, name: 'a' },
    { path: b, name: 'b' },
  ];
  const onDemand = describe([...new SourceWalk(sources, noExcludes)]);
  const walk = new SourceWalk(sources, noExcludes);
  await walk.runAheadWhile(sleep(200));
  const ahead = describe([...walk]);
  assert.deepEqual(ahead, onDemand);
  assert.equal(onDemand.filter((s) => /^a\/d\d/.test(s)).length, 4 + 4 * 30);
  assert.ok(onDemand.includes('b/d1/f4 3'));
  // The warning comes where the walk met it: after the deep directories it could walk, before source b.
  const w = onDemand.findIndex((s) => s.startsWith('warning a/deep/'));
  assert.match(onDemand[w] ?? '', /ENAMETOOLONG/, onDemand.join('\n'));
  assert.ok(onDemand[w - 1]!.startsWith('a/deep/x'), onDemand[w - 1]);
  assert.ok(w < onDemand.findIndex((s) => s.startsWith('b ')));
});

test('walk: what was walked ahead is what the tree was then; the rest is walked when reached', async () => {
  const root = gridTree('then', 2, 300);
  const walk = new SourceWalk([{ path: root, name: 't' }], noExcludes, 50);
  await walk.runAheadWhile(sleep(200));
  // Now change the tree: the first 50 steps (and at most a batch of 64 more) were walked
  // already, with d0's listing; what comes after them is not.
  fs.rmSync(path.join(root, 'd0'), { recursive: true });
  fs.writeFileSync(path.join(root, 'd1', 'new'), 'new');
  const got = describe([...walk]);
  assert.ok(got[2] === 't/d0/f0 3' && got[1]!.startsWith('t/d0 '), got.slice(0, 3).join('\n'));
  // d0's files past the part walked ahead are gone when the walk reaches them, and skipped.
  const d0Files = got.filter((s) => s.startsWith('t/d0/')).length;
  assert.ok(d0Files >= 48 && d0Files < 50 + 64, `${d0Files} files of d0`);
  assert.ok(got.includes('t/d1/new 3'), 'a file created past the part walked ahead is found');
  assert.equal(got.filter((s) => s.startsWith('t/d1/')).length, 301);
});

test('walk: running ahead stops at its bound, and as soon as what it waits on settles (rejected too)', async () => {
  const root = gridTree('bound', 10, 100);
  const bounded = new SourceWalk([{ path: root, name: 'r' }], noExcludes, 100);
  await bounded.runAheadWhile(sleep(300));
  fs.rmSync(root, { recursive: true });
  // Everything past the bound (plus at most one batch of 64) is walked only now, and is gone.
  const got = [...bounded];
  assert.ok(got.length >= 100 && got.length < 100 + 64 + 2, `${got.length} steps`);

  const root2 = gridTree('settles', 10, 100);
  const walk = new SourceWalk([{ path: root2, name: 'r' }], noExcludes);
  const failing = Promise.reject(new Error('wrong passphrase'));
  failing.catch(() => {});
  await walk.runAheadWhile(failing);
  fs.rmSync(path.join(root2, 'd5'), { recursive: true });
  // Settled before it started: at most one batch was walked ahead, so d5 is gone from the walk.
  assert.ok(!describe([...walk]).some((s) => s.startsWith('r/d5')));
});

test('walk: an error while running ahead is thrown where the walk reaches it, not before', async () => {
  const missing = path.join(work, 'vanished');
  const present = gridTree('present', 1, 3);
  const walk = new SourceWalk(
    [
      { path: present, name: 'p' },
      { path: missing, name: 'v' },
    ],
    noExcludes,
  );
  await walk.runAheadWhile(sleep(100));
  const seen: string[] = [];
  assert.throws(() => {
    for (const s of walk) seen.push(s.item!.path);
  }, /ENOENT/);
  assert.deepEqual(seen, ['p', 'p/d0', 'p/d0/f0', 'p/d0/f1', 'p/d0/f2']);
});

test('walk: while `pause` gives work that has every core busy, the walk waits for it instead of running ahead', async () => {
  const root = gridTree('paused', 10, 100);
  const walk = new SourceWalk([{ path: root, name: 'r' }], noExcludes);
  // The pause outlasts what the backup waits on: nothing is walked ahead at all.
  const holding = sleep(300);
  await walk.runAheadWhile(sleep(200), undefined, () => holding);
  fs.rmSync(path.join(root, 'd0'), { recursive: true });
  const got = describe([...walk]);
  assert.ok(!got.some((s) => s.startsWith('r/d0')), got.slice(0, 3).join('\n'));

  // A pause that ends first: the walk runs ahead after it.
  const root2 = gridTree('pause-ends', 10, 100);
  const walk2 = new SourceWalk([{ path: root2, name: 'r' }], noExcludes);
  let pauseOver = false;
  const shortHold = sleep(50).then(() => (pauseOver = true));
  await walk2.runAheadWhile(sleep(400), undefined, () => (pauseOver ? undefined : shortHold));
  fs.rmSync(root2, { recursive: true });
  assert.equal([...walk2].filter((s) => s.item).length, 1 + 10 + 10 * 100, 'the whole tree was walked ahead once the pause ended');
});

test('backup: while the passphrase scrypt lanes hold every core the walk does not run ahead, so it sees the tree as it is after the unlock', { skip: os.availableParallelism() > 16 ? 'a key has at most 16 lanes: on more cores none holds them all' : false }, async () => {
  const cores = os.availableParallelism();
  // 15,000 files before "z": more than the walk reaches while the repository's config and keys
  // are read, before the scrypt starts; fewer than it may run ahead by (20,000).
  const root = gridTree('lanes', 30, 500);
  fs.mkdirSync(path.join(root, 'z'));
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(root, 'z', `f${i}`), 'z');
  const store = new LocalStore(path.join(work, 'lanes-repo'));
  const keys = { passphrase: 'lanes' };
  await Repository.init(store, { encryption: { ...keys, kdf: { name: 'scrypt-lanes', N: 2 ** 15, r: 8, lanes: cores } } });
  const backup = runBackup({ store, keys, sources: [root], history: false });
  let holding = derivationHoldingCores();
  while (!holding) {
    await setImmediate();
    holding = derivationHoldingCores();
  }
  await holding;
  // Right after the unlock, before the backup goes on: had the walk run ahead during it, z's
  // files would be listed already, and missing when read (warnings).
  fs.rmSync(path.join(root, 'z'), { recursive: true });
  const r = await backup;
  assert.deepEqual(r.warnings, []);
  assert.equal(r.files, 30 * 500);
});
