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
import { escapeBytes, makeExcluder, SourceWalk, walkTestHooks, walkWarningText, type WalkStep } from '../src/backup/walk.ts';
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
  const r = spawnSync('bash', [
    '-c',
    `cd "$1" && mkdir deep && cd deep && for i in $(seq 18); do mkdir ${name} && cd ${name} || exit 1; done`,
    'bash',
    root,
  ]);
  assert.equal(r.status, 0, String(r.stderr));
}

const describe = (steps: WalkStep[]) =>
  steps.map((s) => (s.item ? `${s.item.path} ${s.item.st.size}` : `warning ${s.warning.path}: ${s.warning.reason}`));
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
  // Everything past the bound (plus at most one batch of 64) is walked only now, and is gone:
  // what had been listed by then is named as vanished, the rest is not seen at all.
  const got = [...bounded];
  const items = got.filter((s) => s.item).length;
  assert.ok(items >= 100 && items < 100 + 64 + 2, `${items} items`);
  const vanished = got.filter((s) => s.warning);
  assert.ok(
    vanished.length > 0 && vanished.every((s) => /^it vanished after its directory was listed/.test(s.warning!.reason)),
    describe(vanished).join('\n'),
  );

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

test('backup: while the passphrase scrypt lanes hold every core the walk does not run ahead, so it sees the tree as it is after the unlock', {
  skip: os.availableParallelism() > 16 ? 'a key has at most 16 lanes: on more cores none holds them all' : false,
}, async () => {
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
  // files would be listed already, and missing when read (warnings). z itself may have been
  // listed before (with the source's top level, before the scrypt started): it is named as gone.
  fs.rmSync(path.join(root, 'z'), { recursive: true });
  const r = await backup;
  assert.deepEqual(
    r.warnings.filter((w) => w !== 'lanes/z: not backed up: it vanished after its directory was listed (deleted or renamed meanwhile)'),
    [],
  );
  assert.equal(r.files, 30 * 500);
});

/** A path from pieces: strings as UTF-8, number arrays as raw bytes. */
const bytePath = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => Buffer.from(p as string)));

test('walk: a name that is not valid UTF-8 is walked as its exact bytes (escaped as U+DC80+byte), a directory with all under it', () => {
  const root = path.join(work, 'names');
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(root, 'ok.txt'), 'ok');
  // Valid UTF-8 that holds U+FFFD itself: an ordinary name, walked as any other.
  fs.writeFileSync(path.join(root, 'real-\uFFFD.txt'), 'replacement character');
  fs.writeFileSync(bytePath(root, '/bad-', [0xff, 0xfe]), 'x');
  fs.writeFileSync(bytePath(root, '/caf', [0xe9], '.txt'), 'latin-1');
  fs.writeFileSync(bytePath(root, '/skip-', [0xff], '.tmp'), 'excluded');
  fs.writeFileSync(bytePath(root, '/drop-', [0xfe]), 'excluded by its \\xHH form');
  fs.mkdirSync(bytePath(root, '/dir-', [0xc3, 0x28]));
  fs.writeFileSync(bytePath(root, '/dir-', [0xc3, 0x28], '/inside.txt'), 'below it');
  const steps = [...new SourceWalk([{ path: root, name: 'n' }], makeExcluder(['*.tmp', 'drop-\\xfe']))];
  assert.deepEqual(
    steps.map((s) => s.item?.path ?? s.warning),
    ['n', 'n/bad-\udcff\udcfe', 'n/caf\udce9.txt', 'n/dir-\udcc3(', 'n/dir-\udcc3(/inside.txt', 'n/ok.txt', 'n/real-\uFFFD.txt'],
  );
  // What the walk hands over for file-system calls is the exact bytes.
  const bad = steps.find((s) => s.item?.path === 'n/bad-\udcff\udcfe')!.item!;
  assert.ok(Buffer.isBuffer(bad.abs) && bad.abs.equals(bytePath(root, '/bad-', [0xff, 0xfe])));
  assert.equal(typeof steps.find((s) => s.item?.path === 'n/ok.txt')!.item!.abs, 'string');
  assert.equal(fs.readFileSync(steps.find((s) => s.item?.path === 'n/dir-\udcc3(/inside.txt')!.item!.abs, 'utf8'), 'below it');
});

test('walk: escapeBytes keeps valid UTF-8 and shows every other byte as \\xHH', () => {
  assert.equal(escapeBytes(bytePath('bad-', [0xff, 0xfe])), 'bad-\\xff\\xfe');
  // é, then a truncated 3-byte sequence, an overlong "/", a UTF-16 surrogate, then 😀.
  assert.equal(
    escapeBytes(bytePath([0xc3, 0xa9, 0xe2, 0x82], 'x', [0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf0, 0x9f, 0x98, 0x80])),
    'é\\xe2\\x82x\\xc0\\xaf\\xed\\xa0\\x80😀',
  );
});

test('walk: an entry deleted between the listing and its lstat is a warning naming it (walkTestHooks.listed)', () => {
  const root = gridTree('vanish', 1, 3);
  const listed: string[] = [];
  walkTestHooks.listed = (dir, names) => {
    listed.push(`${path.relative(root, dir) || '.'}: ${names.join(',')}`);
    if (dir === path.join(root, 'd0')) fs.rmSync(path.join(dir, 'f1'));
  };
  let steps: WalkStep[];
  try {
    steps = [...new SourceWalk([{ path: root, name: 'v' }], noExcludes)];
  } finally {
    walkTestHooks.listed = undefined;
  }
  assert.deepEqual(listed, ['.: d0', 'd0: f0,f1,f2']);
  assert.deepEqual(describe(steps), [
    'v 4096',
    'v/d0 4096',
    'v/d0/f0 3',
    'warning v/d0/f1: it vanished after its directory was listed (deleted or renamed meanwhile)',
    'v/d0/f2 3',
  ]);
  assert.equal(
    walkWarningText(steps[3]!.warning!),
    'v/d0/f1: not backed up: it vanished after its directory was listed (deleted or renamed meanwhile)',
  );
});
