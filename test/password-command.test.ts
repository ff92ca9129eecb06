// Passphrases from a command (--password-command, S3BACKUP_PASSWORD_COMMAND, passwordCommand in
// the config file) through the real CLI, on a local repository and on Ceph: init, backup and
// restore with it; the command runs only when an encrypted repository needs it; a failing or
// silent command, or one printing a wrong passphrase, stops before anything is written; the
// passphrase never shows in output or logs.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { createTestBucket, deleteTestBucket, s3CliEnv } from './helpers/s3.ts';
import { diffTrees, isolatedEnv, json, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('password-command');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const PASS = 'secret-from-command-5e1d';

/** A source tree, a file holding the passphrase, a command printing it (and counting its runs). */
function workspace(label: string, extraEnv: NodeJS.ProcessEnv = {}) {
  const dir = fs.mkdtempSync(path.join(work, `${label}-`));
  const src = path.join(dir, 'data');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n'.repeat(100));
  const secret = path.join(dir, 'secret');
  fs.writeFileSync(secret, `${PASS}\nsecond line is not the passphrase\n`);
  const runs = path.join(dir, 'runs');
  const command = `echo run >> "${runs}"; cat "${secret}"`;
  const logDir = path.join(dir, 'logs');
  const env = isolatedEnv(path.join(dir, 'home'), { S3BACKUP_LOG_DIR: logDir, S3BACKUP_PASSWORD: '', ...extraEnv });
  const runCount = () => (fs.existsSync(runs) ? fs.readFileSync(runs, 'utf8').split('\n').filter(Boolean).length : 0);
  const logs = () =>
    fs.existsSync(logDir)
      ? fs
          .readdirSync(logDir)
          .map((f) => fs.readFileSync(path.join(logDir, f), 'utf8'))
          .join('')
      : '';
  return { dir, src, command, env, runCount, logs };
}

/** init --encrypt, backup, restore of one repository, every passphrase from the command. */
async function roundTrip(repo: string, w: ReturnType<typeof workspace>): Promise<void> {
  const init = await runCli(['init', '--repo', repo, '--encrypt', '--scrypt-n', '16384', '--password-command', w.command], { env: w.env });
  assert.equal(init.code, 0, init.stderr);
  assert.equal(w.runCount(), 1);
  // From the environment variable.
  const b = await runCli(['backup', w.src, '--repo', repo, '--json'], { env: { ...w.env, S3BACKUP_PASSWORD_COMMAND: w.command } });
  assert.equal(b.code, 0, b.stderr);
  assert.equal(w.runCount(), 2, 'run once for the whole backup');
  // From the config file.
  const cfg = path.join(w.dir, 's3backup.yaml');
  fs.writeFileSync(cfg, `passwordCommand: ${JSON.stringify(w.command)}\n`);
  const target = path.join(w.dir, 'restored');
  const r = await runCli(['restore', json(b.stdout).id, '--repo', repo, '--target', target, '--config', cfg], { env: w.env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(diffTrees(w.src, path.join(target, 'data')), []);
  for (const text of [init.stdout, init.stderr, b.stdout, b.stderr, r.stdout, r.stderr, w.logs()]) assert.ok(!text.includes(PASS));
}

describe('--password-command on a local repository', () => {
  test('init, backup and restore with the passphrase from a command (flag, env, config file)', async () => {
    const w = workspace('local');
    await roundTrip(path.join(w.dir, 'repo'), w);
  });

  test('not run for a repository that is not encrypted', async () => {
    const w = workspace('plain');
    const repo = path.join(w.dir, 'repo');
    const r = await runCli(['backup', w.src, '--repo', repo, '--password-command', w.command], { env: w.env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(w.runCount(), 0);
  });

  test('a failing, silent or wrong command stops before anything is written, naming the setting only', async () => {
    const w = workspace('bad');
    const repo = path.join(w.dir, 'repo');
    const init = await runCli(['init', '--repo', repo, '--encrypt', '--scrypt-n', '16384', '--password-command', w.command], {
      env: w.env,
    });
    assert.equal(init.code, 0, init.stderr);
    const snapshots = () =>
      fs.readdirSync(repo).flatMap((d) => (fs.statSync(path.join(repo, d)).isDirectory() ? fs.readdirSync(path.join(repo, d)) : []));
    const before = snapshots();
    const fails = await runCli(['backup', w.src, '--repo', repo, '--password-command', `echo ${PASS}-not-this; exit 5`], { env: w.env });
    assert.equal(fails.code, 2, fails.stderr);
    assert.match(fails.stderr, /the password command given by --password-command failed \(exit code 5\); nothing was read or written/);
    assert.ok(!fails.stderr.includes(PASS), 'neither the command nor its output is shown');
    const silent = await runCli(['backup', w.src, '--repo', repo], { env: { ...w.env, S3BACKUP_PASSWORD_COMMAND: 'true' } });
    assert.equal(silent.code, 2, silent.stderr);
    assert.match(silent.stderr, /the password command given by passwordCommand \(S3BACKUP_PASSWORD_COMMAND\) printed no passphrase/);
    const wrong = await runCli(['backup', w.src, '--repo', repo, '--password-command', 'echo not-the-passphrase'], { env: w.env });
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, /wrong passphrase/);
    assert.deepEqual(snapshots(), before, 'nothing written');
    const both = await runCli(['list', '--repo', repo, '--password-command', w.command, '--password-file', path.join(w.dir, 'secret')], {
      env: w.env,
    });
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--password-file and --password-command both give the passphrase/);
    // S3BACKUP_PASSWORD comes before the command of the environment (as before the file's).
    const list = await runCli(['list', '--repo', repo, '--json'], {
      env: { ...w.env, S3BACKUP_PASSWORD: PASS, S3BACKUP_PASSWORD_COMMAND: 'exit 9' },
    });
    assert.equal(list.code, 0, list.stderr);
  });
});

describe('--password-command on S3 (Ceph)', () => {
  test('init, backup and restore with the passphrase from a command', async () => {
    const bucket = await createTestBucket('password-command');
    try {
      const w = workspace('s3', s3CliEnv());
      await roundTrip(`s3://${bucket}/enc`, w);
    } finally {
      await deleteTestBucket(bucket);
    }
  });
});
