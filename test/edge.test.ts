// Harder conditions: a full disk (repository and restore target), a file that changes while
// it is read, excludes, and the progress bar on a real terminal.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { Repository } from '../src/repo/repository.ts';
import { runRestore } from '../src/restore/restore.ts';
import { DelegatingStore } from '../src/store/delegating.ts';
import { LocalStore } from '../src/store/local.ts';
import { BIN, isolatedEnv, pseudoRandom, ROOT, runCli, tempDir } from './helpers/tree.ts';
import { walkTestHooks } from '../src/backup/walk.ts';

const work = tempDir('edge');
const env = isolatedEnv(path.join(work, 'home'));
const mounts: string[] = [];

/** A small tmpfs (tests run as root, as CI does): a disk that really fills up. */
function smallDisk(name: string, size: string): string {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, `mounting a small tmpfs needs root: ${r.stderr}`);
  mounts.push(dir);
  return dir;
}

after(() => {
  for (const m of mounts) spawnSync('umount', [m]);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('full disk', () => {
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'small.txt'), 'small\n');

  test('repository disk fills during a backup: exit 1, clear message, nothing recorded, space given back', async () => {
    const disk = smallDisk('repo-disk', '3m');
    const repo = path.join(disk, 'repo');
    const ok = await runCli(['backup', src, '--repo', repo, '--json'], { env });
    assert.equal(ok.code, 0, ok.stderr);
    fs.writeFileSync(path.join(src, 'big.bin'), pseudoRandom(6 << 20, 3));
    const full = await runCli(['backup', src, '--repo', repo], { env });
    assert.equal(full.code, 1, full.stderr);
    assert.match(full.stderr, /no space left on the device holding repository/);
    assert.match(full.stderr, /hint: free some space/);
    const ids = await Repository.open(new LocalStore(repo)).then((r) => r.snapshotIds());
    assert.deepEqual(ids, [JSON.parse(ok.stdout).id], 'only the earlier backup exists');
    const leftovers = fs.readdirSync(path.join(repo, 'archives')).filter((n) => n.startsWith('.tmp-'));
    assert.deepEqual(leftovers, [], 'the partial archive was removed');
    fs.rmSync(path.join(src, 'big.bin'));
    const again = await runCli(['backup', src, '--repo', repo], { env });
    assert.equal(again.code, 0, `space was given back: ${again.stderr}`);
  });

  test('restore target fills up: exit 1 naming the file, no partial file left', async () => {
    const repo = path.join(work, 'repo2');
    fs.writeFileSync(path.join(src, 'big.bin'), pseudoRandom(3 << 20, 4));
    const b = await runCli(['backup', src, '--repo', repo], { env });
    assert.equal(b.code, 0, b.stderr);
    const disk = smallDisk('target-disk', '1m');
    const r = await runCli(['restore', 'latest', '--repo', repo, '--target', disk], { env });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /no space left on the device while writing .*big\.bin/);
    assert.ok(!fs.existsSync(path.join(disk, 'src', 'big.bin')), 'no half-written file');
    fs.rmSync(path.join(src, 'big.bin'));
  });
});

describe('files that change while they are read', () => {
  test('a file growing during the backup is stored consistently and reported', async () => {
    const src = path.join(work, 'growing');
    fs.mkdirSync(src);
    const file = path.join(src, 'app.log');
    fs.writeFileSync(file, pseudoRandom(16 << 20, 9));
    // Another process appends all the time, as a busy log file would.
    const writer = spawn('bash', ['-c', `while true; do head -c 65536 /dev/zero >> "${file}"; done`], { stdio: 'ignore' });
    await sleep(200);
    try {
      const store = new LocalStore(path.join(work, 'repo-growing'));
      const r = await runBackup({ store, sources: [src] });
      assert.match(r.warnings.join('\n'), /growing\/app\.log: changed while being backed up/);
      const repo = await Repository.open(store);
      const m = await repo.loadManifest(r.id);
      const entries = [];
      for await (const e of m.entries()) entries.push(e);
      await m.dispose();
      const e = entries.find((x) => x.path === 'growing/app.log')!;
      assert.equal(e.changed, true);
      // What was stored is self-consistent: deep verify passes.
      const { runVerify } = await import('../src/verify/verify.ts');
      const v = await runVerify({ store, snapshot: r.id, deep: true });
      assert.deepEqual(v.problems, []);
    } finally {
      writer.kill('SIGKILL');
    }
  });

  test('a file that cannot be read after it was opened: it and its hard links are listed as not backed up, and restore skips them', async () => {
    const src = path.join(work, 'late-error');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.bin'), pseudoRandom(1 << 20, 3));
    fs.linkSync(path.join(src, 'a.bin'), path.join(src, 'b.bin'));
    // Four frames of something else, then a third name: by then the read of a.bin has failed.
    fs.writeFileSync(path.join(src, 'm.bin'), pseudoRandom(16 << 20, 4));
    fs.linkSync(path.join(src, 'a.bin'), path.join(src, 'z.bin'));
    fs.writeFileSync(path.join(src, 'n.txt'), 'still here\n');
    const store = new LocalStore(path.join(work, 'repo-late-error'));
    const seed = path.join(work, 'late-error-seed');
    fs.mkdirSync(seed);
    await runBackup({ store, sources: [seed] }); // the repository exists: opening it reads it
    // The walk runs ahead while the repository is opened and probed (SourceWalk): replace a.bin
    // by a directory then, so that the backup's open() of it succeeds and its read() fails
    // (EISDIR): the error a failing disk gives midway through a file.
    class SwapWhileProbing extends DelegatingStore {
      override async probe() {
        await sleep(300);
        fs.renameSync(path.join(src, 'a.bin'), path.join(work, 'late-error-a.bin'));
        fs.mkdirSync(path.join(src, 'a.bin'));
        return super.probe();
      }
    }
    const r = await runBackup({ store: new SwapWhileProbing(store), sources: [src], maxInFlight: 2 });
    const warnings = r.warnings.join('\n');
    // The system error once, not "EISDIR: EISDIR: …".
    assert.match(
      warnings,
      /late-error\/a\.bin: read error, the unread part is stored as zeros: EISDIR: illegal operation on a directory, read$/m,
    );
    assert.match(warnings, /late-error\/b\.bin: hard link to late-error\/a\.bin, which could not be read: not backed up/);
    assert.match(warnings, /late-error\/z\.bin: hard link to late-error\/a\.bin, which could not be read: not backed up/);
    assert.equal(r.skipped, 3);
    assert.equal(r.hardlinks, 0);
    assert.equal(r.files, 2);
    const repo = await Repository.open(store);
    const m = await repo.loadManifest(r.id);
    const byPath = new Map<string, { error?: string }>();
    for await (const e of m.entries()) byPath.set(e.path, e);
    await m.dispose();
    for (const name of ['a.bin', 'b.bin', 'z.bin']) assert.ok(byPath.get(`late-error/${name}`)?.error, `${name} is listed with an error`);
    const target = path.join(work, 'late-error-restored');
    const rr = await runRestore({ store, snapshot: r.id, target });
    assert.deepEqual([...rr.skipped].sort(), ['late-error/a.bin', 'late-error/b.bin', 'late-error/z.bin']);
    assert.deepEqual(fs.readdirSync(path.join(target, 'late-error')).sort(), ['m.bin', 'n.txt']);
    assert.equal(fs.readFileSync(path.join(target, 'late-error', 'n.txt'), 'utf8'), 'still here\n');
  });
});

describe('excludes', () => {
  test('name patterns, path patterns, an exclude file; excluded dirs are not descended', async () => {
    const src = path.join(work, 'ex');
    for (const p of ['keep/a.txt', 'keep/b.tmp', 'node_modules/x/y.js', 'build/out.o', 'sub/build/keep.o', 'cache/c.bin']) {
      fs.mkdirSync(path.dirname(path.join(src, p)), { recursive: true });
      fs.writeFileSync(path.join(src, p), p);
    }
    const exFile = path.join(work, 'excludes.txt');
    fs.writeFileSync(exFile, '# comment\n\n/cache\n');
    const repo = path.join(work, 'repo-ex');
    const r = await runCli(
      [
        'backup',
        src,
        '--repo',
        repo,
        '--exclude',
        '*.tmp',
        '--exclude',
        'node_modules',
        '--exclude',
        '/build',
        '--exclude-file',
        exFile,
        '--json',
      ],
      { env },
    );
    assert.equal(r.code, 0, r.stderr);
    const store = new LocalStore(repo);
    const m = await (await Repository.open(store)).loadManifest(JSON.parse(r.stdout).id);
    const paths: string[] = [];
    for await (const e of m.entries()) paths.push(e.path);
    await m.dispose();
    assert.deepEqual(paths.sort(), ['ex', 'ex/keep', 'ex/keep/a.txt', 'ex/sub', 'ex/sub/build', 'ex/sub/build/keep.o'].sort());
  });
});

describe('progress', () => {
  test('a progress bar shows on a terminal, and never in --json output', async () => {
    const src = path.join(work, 'prog');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'f.bin'), pseudoRandom(64 << 20, 5));
    const repo = path.join(work, 'repo-prog');
    // `script` gives the CLI a real pseudo-terminal.
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} backup ${JSON.stringify(src)} --repo ${JSON.stringify(repo)}`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, ...env, COLUMNS: '120' } });
    assert.equal(r.status, 0, r.stdout);
    assert.match(r.stdout, /backup .*\d+% \| \d+ files \| .* of .* \| .*\/s \| ETA/);
    const j = await runCli(['backup', src, '--repo', repo, '--json'], { env });
    assert.doesNotMatch(j.stderr + j.stdout, /ETA/);
  });
});

describe('owners and special mode bits (run as root, as CI does)', () => {
  test('uid, gid and setuid/setgid/sticky bits come back exactly', async () => {
    assert.equal(process.getuid?.(), 0, 'this test needs root');
    const src = path.join(work, 'owners');
    fs.mkdirSync(src);
    const spec: [string, number, number, number][] = [
      ['mine.txt', 0, 0, 0o644],
      ['theirs.txt', 1234, 5678, 0o640],
      ['setuid-tool', 1234, 5678, 0o4755],
      ['setgid-tool', 0, 5678, 0o2750],
    ];
    for (const [name, uid, gid, mode] of spec) {
      const f = path.join(src, name);
      fs.writeFileSync(f, `${name}\n`);
      fs.chownSync(f, uid, gid);
      fs.chmodSync(f, mode);
    }
    fs.mkdirSync(path.join(src, 'sticky'));
    fs.chmodSync(path.join(src, 'sticky'), 0o1777);
    const store = new LocalStore(path.join(work, 'repo-owners'));
    const b = await runBackup({ store, sources: [src] });
    const target = path.join(work, 'owners-restored');
    const { runRestore } = await import('../src/restore/restore.ts');
    await runRestore({ store, snapshot: b.id, target });
    for (const [name, uid, gid, mode] of spec) {
      const st = fs.statSync(path.join(target, 'owners', name));
      assert.equal(st.uid, uid, `${name} uid`);
      assert.equal(st.gid, gid, `${name} gid`);
      assert.equal(st.mode & 0o7777, mode, `${name} mode`);
    }
    assert.equal(fs.statSync(path.join(target, 'owners', 'sticky')).mode & 0o7777, 0o1777);
  });
});

describe('nothing is left out silently', () => {
  // One tree with every kind of entry the walk sees but cannot store as it is: a file deleted
  // between the listing of its directory and its lstat, one this user cannot read, a FIFO, and a
  // file that changes while it is read; beside them a name and a symlink target that are not
  // UTF-8, which are stored as any other (names are bytes) and must not be counted. The deletion and the change happen on cue, through the walk's test hooks:
  // set here for the library, and in the CLI by a module preloaded with node --import.
  // Its own directory, open to the unprivileged user the CLI runs as.
  const open = tempDir('edge-silent');
  fs.chmodSync(open, 0o777);
  after(() => fs.rmSync(open, { recursive: true, force: true }));
  const src = path.join(open, 'mixed');
  const gone = path.join(src, 'gone.txt');
  const grow = path.join(src, 'grow.log');
  const bytes = (...parts: (string | number[])[]) =>
    Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
  fs.mkdirSync(src, { mode: 0o777 });
  fs.chmodSync(src, 0o777);
  fs.writeFileSync(path.join(src, 'ok.txt'), 'fine\n');
  fs.writeFileSync(path.join(src, 'secret.txt'), 'secret\n', { mode: 0o600 });
  fs.writeFileSync(grow, pseudoRandom(1 << 20, 21), { mode: 0o666 });
  fs.chmodSync(grow, 0o666);
  assert.equal(spawnSync('mkfifo', [path.join(src, 'pipe')]).status, 0);
  fs.writeFileSync(bytes(src, '/bad-', [0xff, 0xfe]), 'latin-1 era\n');
  fs.symlinkSync(bytes('target-', [0xe9]), path.join(src, 'link'));
  const makeGone = () => fs.writeFileSync(gone, 'here when listed\n', { mode: 0o666 });

  // What the hooks do, in this process and (preloaded) in the CLI's.
  const preload = path.join(open, 'hooks.mjs');
  const walkModule = path.join(ROOT, 'dist', 'backup', 'walk.js');
  fs.writeFileSync(
    preload,
    `import * as fs from 'node:fs';\n` +
      `const { walkTestHooks } = await import(${JSON.stringify(walkModule)});\n` +
      `walkTestHooks.listed = (dir) => { if (dir === ${JSON.stringify(src)}) fs.rmSync(${JSON.stringify(gone)}, { force: true }); };\n` +
      `walkTestHooks.statted = (abs) => { if (abs === ${JSON.stringify(grow)}) fs.appendFileSync(abs, 'one more line\\n'); };\n`,
  );
  const hooked = { NODE_OPTIONS: `--import=${preload}` };
  const nobodyHome = path.join(open, 'home');
  fs.mkdirSync(nobodyHome, { mode: 0o777 });
  fs.chmodSync(nobodyHome, 0o777);
  const asNobody = { ...isolatedEnv(nobodyHome), ...hooked };
  const errorsLog = path.join(nobodyHome, 'state', 's3backup', 'logs', 'backup-errors.log');

  const expected = [
    'mixed/gone.txt: not backed up: it vanished after its directory was listed (deleted or renamed meanwhile)',
    'mixed/grow.log: changed while being backed up; the stored copy may be inconsistent',
    'mixed/pipe: skipped (FIFO)',
    'mixed/secret.txt: unreadable, not backed up: permission denied',
  ];
  const sorted = (ws: string[]) => [...ws].sort();

  test('CLI: each one counted, named in the warnings and backup-errors.log, in the summary, exit 3', async () => {
    const repo = path.join(open, 'repo-cli');
    makeGone();
    const r = await runCli(['backup', src, '--repo', repo, '--json'], { env: asNobody, asUser: 65534, cwd: open });
    assert.equal(r.code, 3, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(sorted(doc.warnings), expected);
    assert.equal(doc.skipped, 3, 'vanished, unreadable, FIFO');
    assert.equal(doc.changedWhileRead, 1);
    assert.equal(doc.files, 3, 'ok.txt, grow.log (as read) and bad-\\xff\\xfe');
    assert.equal(doc.symlinks, 1, 'the link whose target is not UTF-8');
    assert.ok(!fs.existsSync(gone), 'the hook deleted it');
    const log = fs.readFileSync(errorsLog, 'utf8');
    for (const w of expected) assert.ok(log.includes(w), `backup-errors.log names ${w}:\n${log}`);
    // Also in the manifest's header, with the counts.
    const h = await (await Repository.open(new LocalStore(repo))).header(doc.id);
    assert.deepEqual(sorted(h.warnings), expected);
    assert.equal(h.stats.skipped, 3);
    assert.equal(h.stats.changedWhileRead, 1);

    // Again, as a person reads it: the summary says how many, the warnings name them.
    makeGone();
    fs.rmSync(errorsLog);
    const human = await runCli(['backup', src, '--repo', repo], { env: asNobody, asUser: 65534, cwd: open });
    assert.equal(human.code, 3, human.stderr);
    assert.match(
      human.stdout,
      /^ {2}3 entries not backed up, 1 file changed while being read \(stored as read\): each named in the warnings and in (.*)$/m,
    );
    assert.equal(/each named in the warnings and in (.*)$/m.exec(human.stdout)?.[1], errorsLog);
    assert.match(human.stderr, /^4 warning\(s\); the backup is recorded and valid, and lacks only the entries named here:$/m);
    for (const w of expected) assert.ok(human.stderr.includes(`  ${w}\n`), `stderr names ${w}:\n${human.stderr}`);
    const log2 = fs.readFileSync(errorsLog, 'utf8');
    for (const w of expected) assert.ok(log2.includes(w), `backup-errors.log names ${w}`);
    assert.match(
      fs.readFileSync(path.join(nobodyHome, 'state', 's3backup', 'logs', 'backup.log'), 'utf8'),
      /done: .*, 3 not backed up, 1 changed while read, 4 warnings/,
    );
  });

  test('dry run: the same rules, counted and named, exit 3', async () => {
    makeGone();
    const dry = path.join(open, 'repo-dry');
    const r = await runCli(['backup', src, '--repo', dry, '--dry-run'], { env: asNobody, asUser: 65534, cwd: open });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /^ {2}3 entries would not be backed up: each named in the warnings$/m);
    for (const w of [
      'mixed/gone.txt: would not be backed up: it vanished after its directory was listed (deleted or renamed meanwhile)',
      'mixed/pipe: would be skipped (FIFO)',
      'mixed/secret.txt: unreadable, would not be backed up: permission denied',
    ]) {
      assert.ok(r.stderr.includes(`  warning: ${w}\n`), `dry run names ${w}:\n${r.stderr}`);
    }
    assert.deepEqual(r.stdout.trim().split('\n'), ['mixed/', 'mixed/bad-\\xff\\xfe', 'mixed/grow.log', 'mixed/link', 'mixed/ok.txt']);
    assert.ok(!fs.existsSync(dry));
  });

  test('library: the walk hooks in this process; what was not stored is not in the manifest, or listed with why', async () => {
    makeGone();
    const store = new LocalStore(path.join(open, 'repo-lib'));
    walkTestHooks.listed = (dir) => {
      if (dir === src) fs.rmSync(gone, { force: true });
    };
    walkTestHooks.statted = (abs) => {
      if (abs === grow) fs.appendFileSync(abs, 'one more line\n');
    };
    let r;
    try {
      r = await runBackup({ store, sources: [src] });
    } finally {
      walkTestHooks.listed = undefined;
      walkTestHooks.statted = undefined;
    }
    // As root, secret.txt is readable: three warnings, two skipped.
    assert.deepEqual(
      sorted(r.warnings),
      expected.filter((w) => !w.startsWith('mixed/secret.txt')),
    );
    assert.equal(r.skipped, 2);
    assert.equal(r.changedWhileRead, 1);
    const m = await (await Repository.open(store)).loadManifest(r.id);
    const paths: string[] = [];
    for await (const e of m.entries()) paths.push(`${e.path}${e.error ? ` (${e.error})` : ''}`);
    await m.dispose();
    assert.deepEqual(paths, [
      'mixed',
      'mixed/bad-\udcff\udcfe',
      'mixed/grow.log',
      'mixed/link',
      'mixed/ok.txt',
      'mixed/pipe (skipped (FIFO))',
      'mixed/secret.txt',
    ]);
  });
});
