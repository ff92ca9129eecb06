// The CLI as a user runs it (bin/s3backup.js in a child process): default repository, --json
// documents, exit codes, clear errors for bad input, logs.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { createTestBucket, deleteTestBucket, s3CliEnv } from './helpers/s3.ts';
import { BIN, diffTrees, isolatedEnv, json, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('cli');
fs.chmodSync(work, 0o777);
const home = path.join(work, 'home');
const env = isolatedEnv(home);
const src = path.join(work, 'my-data');
fs.mkdirSync(src);
fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
fs.mkdirSync(path.join(src, 'sub'));
fs.writeFileSync(path.join(src, 'sub', 'b.txt'), 'beta\n'.repeat(10000));
fs.symlinkSync('a.txt', path.join(src, 'link'));

after(() => fs.rmSync(work, { recursive: true, force: true }));

describe('local default repository', () => {
  const defaultRepo = path.join(home, 'data', 's3backup', 'repository');

  test('backup with no repository goes to the local default and says where', async () => {
    const r = await runCli(['backup', src], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`local default ${defaultRepo.replace(/[/.]/g, '\\$&')}`));
    assert.match(r.stdout, /^backup \d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8} \(full\) saved to /);
    assert.ok(fs.existsSync(path.join(defaultRepo, 'config.json')));
  });

  test('backup --json prints one document with id, counts, bytes and duration', async () => {
    const r = await runCli(['backup', src, '--json', '--tag', 'second'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.ok, true);
    assert.match(doc.id, /^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}$/);
    assert.equal(doc.files, 2);
    assert.equal(doc.bytesIn, 6 + 50000);
    assert.ok(doc.bytesStored > 0 && doc.bytesStored < doc.bytesIn);
    assert.equal(typeof doc.durationMs, 'number');
    assert.deepEqual(doc.warnings, []);
  });

  test('list --json gives the backups oldest first', async () => {
    const r = await runCli(['list', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.backups.length, 2);
    assert.ok(doc.backups[0].time <= doc.backups[1].time);
    assert.deepEqual(doc.backups[1].tags, ['second']);
    for (const b of doc.backups) {
      assert.equal(b.files, 2);
      assert.ok(b.bytesStored > 0);
      assert.equal(b.kind, 'full');
    }
    const human = await runCli(['list'], { env });
    assert.match(human.stdout, /ID\s+TIME \(UTC\)\s+HOST: SOURCES \[TAGS\]\s+KIND\s+FILES\s+SIZE IN\s+STORED\s+DURATION\s+ANOM/);
  });

  test('restore latest recreates the tree; a non-empty target needs --overwrite', async () => {
    const target = path.join(work, 'restored');
    const r = await runCli(['restore', 'latest', '--target', target], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(diffTrees(src, path.join(target, 'my-data')), []);
    const again = await runCli(['restore', 'latest', '--target', target], { env });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /not empty/);
    assert.match(again.stderr, /--overwrite/);
    fs.writeFileSync(path.join(target, 'my-data', 'a.txt'), 'changed locally\n');
    const over = await runCli(['restore', 'latest', '--target', target, '--overwrite'], { env });
    assert.equal(over.code, 0, over.stderr);
    assert.equal(fs.readFileSync(path.join(target, 'my-data', 'a.txt'), 'utf8'), 'alpha\n');
  });

  test('restore --include and an id prefix; no match is a usage error', async () => {
    const list = json((await runCli(['list', '--json'], { env })).stdout);
    const first: string = list.backups[0].id;
    const target = path.join(work, 'partial');
    const r = await runCli(['restore', first.slice(-8), '--target', target, '--include', 'my-data/sub/**', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.id, first);
    assert.equal(doc.files, 1);
    assert.ok(fs.existsSync(path.join(target, 'my-data/sub/b.txt')));
    assert.ok(!fs.existsSync(path.join(target, 'my-data/a.txt')));
    const none = await runCli(['restore', first, '--target', path.join(work, 'none'), '--include', 'nope/**'], { env });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /nothing in backup .* matches "nope\/\*\*"/);
  });

  test('verify --deep --json', async () => {
    const r = await runCli(['verify', 'latest', '--deep', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.ok, true);
    assert.equal(doc.deep, true);
    assert.equal(doc.filesChecked, 2);
  });

  test('every run appends timestamped lines to backup.log', async () => {
    const log = fs.readFileSync(path.join(home, 'state', 's3backup', 'logs', 'backup.log'), 'utf8');
    const lines = log.trim().split('\n');
    assert.ok(lines.length >= 6, log);
    for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARN|ERROR)/);
    assert.match(log, /backup \d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8} done: 2 files/);
    assert.match(log, /restore of .* done/);
  });

  test('a reader that goes away: stdout closed early ends quietly (141); a closed stderr does not stop a backup', async () => {
    /** Run the CLI with one of its output pipes closed by the reader before anything is written. */
    const withClosed = (which: 'stdout' | 'stderr', args: string[]) =>
      new Promise<{ code: number | null; other: string }>((resolve) => {
        const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
        child[which].destroy();
        let other = '';
        child[which === 'stdout' ? 'stderr' : 'stdout'].on('data', (d) => (other += d));
        child.on('close', (code) => resolve({ code, other }));
      });
    const list = await withClosed('stdout', ['list']);
    assert.equal(list.code, 141, list.other);
    assert.doesNotMatch(list.other, /EPIPE|Error|\bat /);
    const before = json((await runCli(['list', '--json'], { env })).stdout).backups.length;
    // The note about the default repository goes to stderr first; the backup carries on.
    const backup = await withClosed('stderr', ['backup', src]);
    assert.equal(backup.code, 0);
    assert.match(backup.other, /^backup .* saved to /);
    assert.equal(json((await runCli(['list', '--json'], { env })).stdout).backups.length, before + 1);
  });

  test('a local repository never loads the AWS SDK (it costs ~0.1 s at every start)', async () => {
    // In-thread module hooks (module.registerHooks) see every import the CLI resolves.
    const hook = path.join(work, 'sdk-hook.mjs');
    fs.writeFileSync(
      hook,
      `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({ resolve(specifier, context, next) {
  if (specifier.startsWith('@aws-sdk/') || specifier.startsWith('@smithy/')) appendFileSync(process.env.SDK_LOG, specifier + '\\n');
  return next(specifier, context);
} });
`,
    );
    const sdkLog = path.join(work, 'sdk.log');
    const hooked = { ...env, NODE_OPTIONS: `--import=${hook}`, SDK_LOG: sdkLog };
    for (const args of [
      ['backup', src, '--json'],
      ['list', '--json'],
      ['restore', 'latest', '--target', path.join(work, 'sdk-restore'), '--json'],
      ['cost', '--json'],
    ]) {
      const r = await runCli(args, { env: hooked });
      assert.equal(r.code, 0, `${args[0]}: ${r.stderr}`);
    }
    assert.equal(fs.existsSync(sdkLog) ? fs.readFileSync(sdkLog, 'utf8') : '', '');
    // The hook does see the SDK when a command needs it.
    const s3 = await runCli(['list', '--repo', 's3://no-such-bucket-here', '--endpoint', 'http://127.0.0.1:9', '--json'], { env: hooked });
    assert.notEqual(s3.code, 0);
    assert.match(fs.readFileSync(sdkLog, 'utf8'), /@aws-sdk\/client-s3/);
  });
});

describe('bad input: clear errors, documented exit codes', () => {
  const repo = path.join(work, 'repo-errors');

  test('a missing source is a usage error (2) naming the path; nothing is created', async () => {
    const r = await runCli(['backup', path.join(work, 'does-not-exist'), '--repo', repo], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /source .*does-not-exist does not exist/);
    assert.ok(!fs.existsSync(path.join(repo, 'snapshots')));
  });

  test('a temp dir that cannot be written is a clear error (1) naming it; no backup is recorded', async () => {
    // A file, not a directory (a missing one would be created by Node's compile cache).
    const tmp = path.join(work, 'tmp-is-a-file');
    fs.writeFileSync(tmp, '');
    const own = path.join(work, 'repo-tmp');
    // A full backup sends its entries straight to the store; an incremental reads its parent's
    // manifest into the temp dir.
    const first = await runCli(['backup', src, '--repo', own, '--json'], { env });
    assert.equal(first.code, 0, first.stderr);
    const r = await runCli(['backup', src, '--repo', own], { env: { ...env, TMPDIR: tmp } });
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`error: cannot create a temporary directory in ${tmp.replace(/[/.]/g, '\\$&')}: not a directory\n  hint: set TMPDIR`),
    );
    assert.doesNotMatch(r.stderr, /unexpected|\bat /);
    assert.deepEqual(fs.readdirSync(path.join(own, 'snapshots')), [`${json(first.stdout).id}.ndjson.zst`]);
  });

  test('a FIFO is skipped with a warning: exit 3, the backup is still listed', async () => {
    const dir = path.join(work, 'with-fifo');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'ok.txt'), 'ok\n');
    execFileSync('mkfifo', [path.join(dir, 'pipe')]);
    const r = await runCli(['backup', dir, '--repo', repo, '--json'], { env });
    assert.equal(r.code, 3, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.ok, true);
    assert.equal(doc.files, 1);
    assert.match(doc.warnings.join('\n'), /with-fifo\/pipe: skipped \(FIFO\)/);
    const list = json((await runCli(['list', '--repo', repo, '--json'], { env })).stdout);
    assert.ok(list.backups.some((b: { id: string }) => b.id === doc.id));
  });

  test('backup --dry-run lists what would be stored, excludes applied, and touches no repository', async () => {
    const dry = path.join(work, 'dry-repo');
    const r = await runCli(['backup', src, '--repo', dry, '--exclude', 'sub', '--dry-run'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['my-data/', 'my-data/a.txt', 'my-data/link']);
    assert.match(r.stderr, /dry run: 1 files \(6 B\), 1 dirs, 1 symlinks, 0 hard links would be backed up; nothing was read or written/);
    assert.ok(!fs.existsSync(dry), 'no repository is created');
    const doc = json((await runCli(['backup', src, '--repo', dry, '--dry-run', '--json'], { env })).stdout);
    assert.equal(doc.dryRun, true);
    assert.deepEqual([doc.files, doc.dirs, doc.symlinks, doc.bytes], [2, 2, 1, 6 + 50000]);
    assert.deepEqual(
      doc.entries.find((e: { path: string }) => e.path === 'my-data/sub/b.txt'),
      { path: 'my-data/sub/b.txt', type: 'file', size: 50000 },
    );
    // What a backup would warn about, it warns about too: exit 3.
    const fifo = await runCli(['backup', path.join(work, 'with-fifo'), '--repo', dry, '--dry-run'], { env });
    assert.equal(fifo.code, 3, fifo.stderr);
    assert.match(fifo.stderr, /warning: with-fifo\/pipe: would be skipped \(FIFO\)/);
    assert.ok(!fs.existsSync(dry));
  });

  test('an unreadable file: warning naming it, exit 3, the rest is backed up and restorable', async () => {
    // Run as an unprivileged user (tests run as root, who can read anything).
    const dir = path.join(work, 'with-secret');
    fs.mkdirSync(dir, { mode: 0o777 });
    fs.chmodSync(dir, 0o777);
    fs.writeFileSync(path.join(dir, 'public.txt'), 'public\n', { mode: 0o644 });
    fs.writeFileSync(path.join(dir, 'secret.txt'), 'secret\n', { mode: 0o600 });
    // A second name of it: tried on its own (its first name was not stored), unreadable too.
    fs.linkSync(path.join(dir, 'secret.txt'), path.join(dir, 'too-secret.txt'));
    const userRepo = path.join(work, 'repo-nobody');
    const nobodyHome = path.join(work, 'nobody-home');
    fs.mkdirSync(nobodyHome, { mode: 0o777 });
    fs.chmodSync(nobodyHome, 0o777);
    const asNobody = isolatedEnv(nobodyHome);
    const r = await runCli(['backup', dir, '--repo', userRepo, '--json'], { env: asNobody, asUser: 65534, cwd: work });
    assert.equal(r.code, 3, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.files, 1);
    assert.equal(doc.skipped, 2);
    assert.equal(doc.hardlinks, 0);
    assert.match(doc.warnings.join('\n'), /with-secret\/secret\.txt: unreadable, not backed up: permission denied/);
    assert.match(doc.warnings.join('\n'), /with-secret\/too-secret\.txt: unreadable, not backed up: permission denied/);
    const errLog = fs.readFileSync(path.join(nobodyHome, 'state', 's3backup', 'logs', 'backup-errors.log'), 'utf8');
    assert.match(errLog, /secret\.txt: unreadable/);
    const target = path.join(work, 'restored-nobody');
    const rr = await runCli(['restore', doc.id, '--repo', userRepo, '--target', target], { env });
    assert.equal(rr.code, 3, 'restore reports the entry that has no content');
    assert.match(rr.stderr, /with-secret\/secret\.txt/);
    assert.equal(fs.readFileSync(path.join(target, 'with-secret/public.txt'), 'utf8'), 'public\n');
    assert.ok(!fs.existsSync(path.join(target, 'with-secret/secret.txt')));
    assert.match(rr.stderr, /with-secret\/too-secret\.txt/);
    assert.ok(!fs.existsSync(path.join(target, 'with-secret/too-secret.txt')));
  });

  test('an unknown option or command is a usage error (2)', async () => {
    assert.equal((await runCli(['backup', src, '--no-such-flag'], { env })).code, 2);
    assert.equal((await runCli(['frobnicate'], { env })).code, 2);
    assert.equal((await runCli(['restore', 'latest'], { env })).code, 2, '--target is required');
  });

  test('a config file with an unknown key is a usage error naming key and file', async () => {
    const dir = path.join(work, 'cfg');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 's3backup.yaml'), 'repository: ./r\nretention: 5\n');
    const r = await runCli(['list'], { env, cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /s3backup\.yaml: .*unknown key "retention"/);
  });

  test('restore of an id that does not exist says so (1)', async () => {
    const r = await runCli(['restore', 'nosuchid', '--target', path.join(work, 'x'), '--repo', repo], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no backup "nosuchid"/);
  });

  test('a repository that does not exist is named, with a hint', async () => {
    const r = await runCli(['list', '--repo', path.join(work, 'nothing-here')], { env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no s3backup repository at .*nothing-here/);
    assert.match(r.stderr, /hint:/);
  });

  test('one damaged manifest does not hide the other backups from list (exit 3)', async () => {
    const repoDir = path.join(work, 'repo-damaged');
    const a = json((await runCli(['backup', src, '--repo', repoDir, '--json'], { env })).stdout);
    const b = json((await runCli(['backup', src, '--repo', repoDir, '--json'], { env })).stdout);
    fs.writeFileSync(path.join(repoDir, 'snapshots', `${a.id}.ndjson.zst`), 'garbage, not zstd');
    const r = await runCli(['list', '--repo', repoDir], { env });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, new RegExp(`${a.id.slice(-8)}.*DAMAGED`));
    assert.match(r.stdout, new RegExp(`${b.id.slice(-8)}.*incr`));
    assert.match(r.stderr, /1 backup manifest\(s\) could not be read/);
    const j = json((await runCli(['list', '--repo', repoDir, '--json'], { env })).stdout);
    assert.equal(j.ok, false);
    assert.equal(j.backups[0].damaged, true);
    assert.equal(j.backups[1].files, 2);
  });

  test('--json errors are one JSON document too', async () => {
    const r = await runCli(['list', '--repo', path.join(work, 'nothing-here'), '--json'], { env });
    assert.equal(r.code, 1);
    const doc = json(r.stdout);
    assert.equal(doc.ok, false);
    assert.match(doc.error.message, /no s3backup repository/);
  });
});

describe('compression levels are checked per codec before anything is touched', () => {
  /** Every file below dir with its size and mtime: what a run that touched nothing leaves alone. */
  const state = (dir: string): string[] =>
    fs
      .readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .sort()
      .map((p) => {
        const st = fs.statSync(path.join(dir, p));
        return `${p} ${st.isDirectory() ? 'dir' : st.size} ${st.mtimeMs}`;
      });
  const usage = (r: { code: number | null; stderr: string }, message: string) => {
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`s3backup: error: ${message}\n`), r.stderr);
  };

  test('flags and the config file: exit 2 naming the flag and the range; no repository is created, nothing is locked', async () => {
    const repo = path.join(work, 'level-repo');
    usage(
      await runCli(['backup', src, '--repo', repo, '--compression', 'gzip', '--level', '12'], { env }),
      '--level 12 is out of range for gzip (from --compression): gzip levels are 1 to 9',
    );
    usage(
      await runCli(['backup', src, '--repo', repo, '--compression', 'gzip', '--level', '10', '--dry-run'], { env }),
      '--level 10 is out of range for gzip (from --compression): gzip levels are 1 to 9',
    );
    assert.ok(!fs.existsSync(repo), 'no repository created');
    const dir = path.join(work, 'level-config');
    fs.mkdirSync(dir);
    const cfg = path.join(dir, 's3backup.yaml');
    fs.writeFileSync(cfg, 'repository: ./r\ncompression: gzip\nlevel: 10\n');
    usage(
      await runCli(['backup', src, '--config', cfg], { env }),
      `level: 10 in ${cfg} is out of range for gzip (from compression: in the same file): gzip levels are 1 to 9`,
    );
    // A level from the file, the codec from a flag (and the other way round).
    fs.writeFileSync(cfg, 'repository: ./r\nlevel: 12\n');
    usage(
      await runCli(['backup', src, '--config', cfg, '--compression', 'gzip'], { env }),
      `level: 12 in ${cfg} is out of range for gzip (from --compression): gzip levels are 1 to 9`,
    );
    fs.writeFileSync(cfg, 'repository: ./r\ncompression: gzip\n');
    usage(
      await runCli(['backup', src, '--config', cfg, '--level', '15'], { env }),
      `--level 15 is out of range for gzip (from compression: in ${cfg}): gzip levels are 1 to 9`,
    );
    assert.deepEqual(fs.readdirSync(dir), ['s3backup.yaml'], 'no repository created');
    // The same levels fit zstd (1-19); gzip's own range works.
    assert.equal((await runCli(['backup', src, '--config', cfg, '--level', '9', '--json'], { env })).code, 0);
    assert.equal((await runCli(['backup', src, '--config', cfg, '--compression', 'zstd', '--level', '15', '--json'], { env })).code, 0);
  });

  test("the repository's default codec and level: checked once it is opened, before anything is written", async () => {
    const { Repository } = await import('../src/repo/repository.ts');
    const { LocalStore } = await import('../src/store/local.ts');
    // gzip by default: a level given alone is a gzip level.
    const gz = path.join(work, 'level-gzip-repo');
    await Repository.init(new LocalStore(gz), { defaults: { compression: 'gzip', level: 6 } });
    const before = state(gz);
    usage(
      await runCli(['backup', src, '--repo', gz, '--level', '12'], { env }),
      "--level 12 is out of range for gzip (from the repository's default, config.json defaults.compression): gzip levels are 1 to 9",
    );
    assert.deepEqual(state(gz), before, 'no lock, no backup, no failure record in the history');
    // A level in config.json that its codec does not take (written by hand, or by a library caller).
    const bad = path.join(work, 'level-bad-repo');
    await Repository.init(new LocalStore(bad), { defaults: { compression: 'gzip', level: 12 } });
    const before2 = state(bad);
    usage(
      await runCli(['backup', src, '--repo', bad], { env }),
      "the repository's default level 12 (config.json defaults.level) is out of range for gzip (from the repository's default, config.json defaults.compression): gzip levels are 1 to 9",
    );
    assert.deepEqual(state(bad), before2);
    // Another codec given: the repository's level is not used with it.
    assert.equal((await runCli(['backup', src, '--repo', bad, '--compression', 'zstd', '--json'], { env })).code, 0);
  });
});

describe('S3 errors against Ceph RGW', () => {
  const s3env = { ...env, ...s3CliEnv() };
  let bucket = '';
  after(async () => {
    if (bucket) await deleteTestBucket(bucket);
  });

  test('backup, list, restore over S3 via AWS_ENDPOINT_URL_S3', async () => {
    bucket = await createTestBucket('cli');
    const repoUrl = `s3://${bucket}/team-a`;
    const b = await runCli(['backup', src, '--repo', repoUrl, '--json'], { env: s3env });
    assert.equal(b.code, 0, b.stderr);
    const l = json((await runCli(['list', '--repo', repoUrl, '--json'], { env: s3env })).stdout);
    assert.equal(l.backups.length, 1);
    assert.equal(l.backups[0].id, json(b.stdout).id);
    const target = path.join(work, 'from-s3');
    const r = await runCli(['restore', 'latest', '--repo', repoUrl, '--target', target], { env: s3env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(diffTrees(src, path.join(target, 'my-data')), []);
    const v = await runCli(['verify', 'latest', '--repo', repoUrl, '--deep'], { env: s3env });
    assert.equal(v.code, 0, v.stderr);
  });

  test('BUCKET_NAME alone selects s3://$BUCKET_NAME', async () => {
    const r = await runCli(['list', '--json'], { env: { ...s3env, BUCKET_NAME: bucket } });
    // The bucket root is not a repository (we used the team-a prefix): a clear error naming it.
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`no s3backup repository at s3://${bucket}`));
  });

  test('wrong credentials: configuration error (2), no secret printed', async () => {
    const secret = 'definitely-wrong-secret-1234';
    const r = await runCli(['backup', src, '--repo', `s3://${bucket}/x`], { env: { ...s3env, AWS_SECRET_ACCESS_KEY: secret } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /credentials/i);
    assert.ok(!r.stderr.includes(secret) && !r.stdout.includes(secret));
  });

  test('a missing bucket: configuration error (2) naming the bucket', async () => {
    const r = await runCli(['backup', src, '--repo', 's3://no-such-bucket-s3backup/x'], { env: s3env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no-such-bucket-s3backup/);
    assert.match(r.stderr, /does not exist/);
  });
});

describe('an endpoint that is not S3, a mistyped repository URL', () => {
  // What answers at a wrong address: a web server's page, its 404 page, a JSON API, a bare 200.
  const answers: Record<string, { status: number; headers: http.OutgoingHttpHeaders; body: string; says: RegExp }> = {
    'an HTML page': {
      status: 200,
      headers: { 'content-type': 'text/html', server: 'nginx/1.24.0' },
      body: '<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body><h1>Welcome</h1><br></body></html>',
      says: /\(HTTP 200: a web page, content type text\/html, server "nginx\/1\.24\.0"\)/,
    },
    'an HTML 404 page': {
      status: 404,
      headers: { 'content-type': 'text/html;charset=utf-8', server: 'SimpleHTTP/0.6 Python/3.12.3' },
      body: '<!DOCTYPE HTML><html><body><h1>Error response</h1><p>Error code: 404</p></body></html>',
      says: /\(HTTP 404: a web page, content type text\/html;charset=utf-8, server "SimpleHTTP\/0\.6 Python\/3\.12\.3"\)/,
    },
    'a JSON API': {
      status: 200,
      headers: { 'content-type': 'application/json', etag: 'W/"1f-abc"' },
      body: '{"status":"ok","items":[1,2,3]}',
      says: /\(HTTP 200: an object answer without an S3 ETag, content type application\/json\)/,
    },
    'an empty 200': { status: 200, headers: {}, body: '', says: /\(HTTP 200: an object answer without an S3 ETag, no content type\)/ },
  };
  for (const [what, a] of Object.entries(answers)) {
    test(`${what}: backup, list, restore and init say the endpoint does not answer like S3 (2), no stack trace`, async () => {
      const srv = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          res.writeHead(a.status, a.headers);
          res.end(a.body);
        });
      });
      await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
      const endpoint = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
      const keys = { AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's', AWS_REGION: 'us-east-1' };
      try {
        const target = path.join(work, `not-s3-restore-${what.replace(/\W+/g, '-')}`);
        const runs = await Promise.all([
          runCli(['backup', src, '--repo', 's3://bkt/x', '--endpoint', endpoint], { env: { ...env, ...keys } }),
          runCli(['list', '--repo', 's3://bkt/x', '--endpoint', endpoint], { env: { ...env, ...keys } }),
          runCli(['restore', 'latest', '--repo', 's3://bkt/x', '--target', target], {
            env: { ...env, ...keys, AWS_ENDPOINT_URL_S3: endpoint },
          }),
          runCli(['init', '--repo', 's3://bkt/x', '--endpoint', endpoint], { env: { ...env, ...keys } }),
        ]);
        for (const [i, r] of runs.entries()) {
          const cmd = ['backup', 'list', 'restore', 'init'][i];
          assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
          assert.ok(r.stderr.startsWith(`s3backup: error: ${endpoint} does not answer like an S3 server (`), `${cmd}: ${r.stderr}`);
          assert.match(r.stderr, a.says, cmd);
          assert.match(
            r.stderr,
            /\n {2}hint: check --endpoint \(or AWS_ENDPOINT_URL_S3\): its scheme, host, port and path must be those of the S3 API/,
            cmd,
          );
          assert.doesNotMatch(r.stderr, /XML parse|Deserialization|\n\s+at /, cmd);
        }
        assert.ok(!fs.existsSync(target));
      } finally {
        srv.closeAllConnections();
        await new Promise<void>((resolve) => srv.close(() => resolve()));
      }
    });
  }

  test('--repo s3//bucket/x: exit 2 naming s3://bucket/x; no repository is written anywhere', async () => {
    const cwd = path.join(work, 'typo-cwd');
    const typoHome = path.join(work, 'typo-home');
    fs.mkdirSync(cwd);
    const r = await runCli(['backup', src, '--repo', 's3//bucket/x'], { env: isolatedEnv(typoHome), cwd });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      r.stderr,
      's3backup: error: malformed S3 repository URL "s3//bucket/x": did you mean s3://bucket/x?\n' +
        '  hint: to use a local directory of that name, write ./s3//bucket/x (or its absolute path)\n',
    );
    assert.deepEqual(fs.readdirSync(cwd), [], 'no ./s3 directory');
    // The run's log, and nothing else: no default repository either.
    assert.deepEqual(fs.readdirSync(typoHome), ['state']);
    assert.deepEqual(fs.readdirSync(path.join(typoHome, 'state', 's3backup')), ['logs']);
    // The same slip in a config file is not turned into a path beside the file.
    fs.writeFileSync(path.join(cwd, 's3backup.yaml'), 'repository: s3//bucket/x\n');
    const c = await runCli(['backup', src], { env: isolatedEnv(typoHome), cwd });
    assert.equal(c.code, 2, c.stderr);
    assert.match(c.stderr, /did you mean s3:\/\/bucket\/x\?/);
    assert.deepEqual(fs.readdirSync(cwd), ['s3backup.yaml']);
  });
});

describe('help teaches', () => {
  test('top-level and command help show examples and exit codes', async () => {
    const top = await runCli(['--help'], { env });
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 finished with warnings/);
    assert.match(top.stdout, /s3backup backup \.\/my-data/);
    const b = await runCli(['backup', '--help'], { env });
    assert.equal(b.code, 0);
    assert.match(b.stdout, /--exclude <glob>/);
    assert.match(b.stdout, /Examples:/);
    const r = await runCli(['restore', '--help'], { env });
    assert.match(r.stdout, /Nothing is ever written outside the target/);
  });
});
