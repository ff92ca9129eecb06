// Hooks around a backup (config "hooks", --before/--after, --hook-timeout) through the real CLI,
// on a local repository and on Ceph: the order they run in, the facts they get, their output in
// the run logs, a failing before hook that stops the run before anything is written, a failing
// after hook that is a warning (exit 3), a timeout, and the scheduler's backup job running them.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Client } from './helpers/s3.ts';
import { BIN, isolatedEnv, runCli, tempDir } from './helpers/tree.ts';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';

const work = tempDir('hooks');
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** A fresh source tree, log dir and a file the hooks append their facts to. */
function workspace(label: string) {
  const dir = fs.mkdtempSync(path.join(work, `${label}-`));
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
  const logDir = path.join(dir, 'logs');
  const trace = path.join(dir, 'trace.txt');
  const env = isolatedEnv(path.join(dir, 'home'), { S3BACKUP_LOG_DIR: logDir, TRACE: trace });
  const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');
  return {
    dir,
    src,
    repo: path.join(dir, 'repo'),
    env,
    trace: () => read(trace),
    log: () => read(path.join(logDir, 'backup.log')),
    errors: () => read(path.join(logDir, 'backup-errors.log')),
  };
}

/** A hook that appends "<label> <VAR=value>…" for the given variables to $TRACE. */
const record = (label: string, vars: string[]) => `printf '%s\\n' "${label} ${vars.map((v) => `${v}=$${v}`).join(' ')}" >> "$TRACE"`;

const FACTS = ['S3BACKUP_HOOK', 'S3BACKUP_STATUS', 'S3BACKUP_BACKUP_ID', 'S3BACKUP_REPO', 'S3BACKUP_FILES'];

function configFile(dir: string, yaml: string): string {
  const f = path.join(dir, 's3backup.yaml');
  fs.writeFileSync(f, yaml);
  return f;
}

describe('hooks on a local repository', () => {
  test('before runs first (its dump is backed up), after and always get the backup id; output is logged', async () => {
    const w = workspace('order');
    const cfg = configFile(
      w.dir,
      [
        'hooks:',
        '  before:',
        `    - 'echo dumped > "${w.src}/dump.sql"; echo to-stdout; echo to-stderr >&2'`,
        `    - ${JSON.stringify(record('before', FACTS))}`,
        `  after: [${JSON.stringify(record('after', FACTS))}]`,
        `  onFailure: [${JSON.stringify(record('onFailure', FACTS))}]`,
        `  always: [${JSON.stringify(record('always', FACTS))}]`,
        '',
      ].join('\n'),
    );
    const r = await runCli(['backup', w.src, '--repo', w.repo, '--config', cfg, '--json'], { env: w.env });
    assert.equal(r.code, 0, r.stderr);
    const id = JSON.parse(r.stdout).id as string;
    const lines = w.trace().trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split(' ')[0]),
      ['before', 'after', 'always'],
    );
    assert.match(lines[0]!, /S3BACKUP_HOOK=before S3BACKUP_STATUS=running S3BACKUP_BACKUP_ID= /);
    assert.ok(lines[0]!.includes(`S3BACKUP_REPO=${w.repo}`), lines[0]);
    assert.equal(
      lines[1],
      `after S3BACKUP_HOOK=after S3BACKUP_STATUS=success S3BACKUP_BACKUP_ID=${id} S3BACKUP_REPO=${w.repo} S3BACKUP_FILES=2`,
    );
    assert.equal(
      lines[2],
      `always S3BACKUP_HOOK=always S3BACKUP_STATUS=success S3BACKUP_BACKUP_ID=${id} S3BACKUP_REPO=${w.repo} S3BACKUP_FILES=2`,
    );
    // The before hook's dump is in the backup.
    const ls = await runCli(['ls', id, '--repo', w.repo], { env: w.env });
    assert.match(ls.stdout, /src\/dump\.sql/);
    assert.match(w.log(), /before hook 1 \(echo\) stdout: to-stdout/);
    assert.match(w.log(), /before hook 1 \(echo\) stderr: to-stderr/);
    assert.match(w.log(), /after hook 1 \(printf\) done in/);
    assert.equal(w.errors(), '', 'no warning for hooks that succeed');
  });

  test('a failing before hook fails the run before anything is written; onFailure and always run', async () => {
    const w = workspace('before-fails');
    const cfg = configFile(
      w.dir,
      `hooks:\n  onFailure: [${JSON.stringify(record('onFailure', ['S3BACKUP_STATUS', 'S3BACKUP_ERROR']))}]\n  always: [${JSON.stringify(record('always', ['S3BACKUP_STATUS']))}]\n  after: [${JSON.stringify(record('after', []))}]\n`,
    );
    const r = await runCli(
      ['backup', w.src, '--repo', w.repo, '--config', cfg, '--before', 'echo "no database" >&2; exit 4', '--before', record('second', [])],
      { env: w.env },
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /before hook 1 \(echo\) failed: exited with code 4 after .*; its last error line: no database; the backup did not start and nothing was written/,
    );
    assert.equal(fs.existsSync(w.repo), false, 'no repository was created');
    const lines = w.trace().trim().split('\n');
    assert.equal(lines.length, 2, w.trace());
    assert.match(lines[0]!, /^onFailure S3BACKUP_STATUS=failure S3BACKUP_ERROR=before hook 1 \(echo\) failed: exited with code 4/);
    assert.equal(lines[1], 'always S3BACKUP_STATUS=failure');
    assert.match(w.errors(), /before hook 1 \(echo\) failed: exited with code 4/);
  });

  test('a failing after hook is a warning: the backup is recorded, exit 3', async () => {
    const w = workspace('after-fails');
    const r = await runCli(
      ['backup', w.src, '--repo', w.repo, '--after', 'exit 7', '--after', record('second-after', ['S3BACKUP_STATUS']), '--json'],
      {
        env: w.env,
      },
    );
    assert.equal(r.code, 3, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.ok, true);
    assert.ok(
      doc.warnings.some((x: string) => /^after hook 1 \(exit\) failed: exited with code 7/.test(x)),
      JSON.stringify(doc.warnings),
    );
    // The other after hooks still run.
    assert.equal(w.trace(), 'second-after S3BACKUP_STATUS=success\n');
    const list = await runCli(['list', '--repo', w.repo, '--json'], { env: w.env });
    assert.equal(JSON.parse(list.stdout).backups.length, 1);
  });

  test('a hook past its timeout is stopped with what it started, and counts as failed', async () => {
    const w = workspace('timeout');
    const pidFile = path.join(w.dir, 'bg.pid');
    const r = await runCli(
      ['backup', w.src, '--repo', w.repo, '--hook-timeout', '1s', '--before', `sleep 300 & echo $! > "${pidFile}"; wait`],
      { env: w.env },
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /before hook 1 \(sleep\) failed: timed out after 1(\.0)? s/);
    assert.equal(fs.existsSync(w.repo), false);
    const bg = Number(fs.readFileSync(pidFile, 'utf8'));
    // Gone, or a zombie no one reaped yet (its parent, the hook's shell, was stopped first).
    const stat = fs.existsSync(`/proc/${bg}/stat`) ? fs.readFileSync(`/proc/${bg}/stat`, 'utf8') : '';
    assert.ok(stat === '' || /^\d+ \([^)]*\) Z/.test(stat), `the background sleep of the hook was stopped too: ${stat}`);
  });

  test('Ctrl-C during a before hook stops it; the run fails, onFailure and always still run', async () => {
    const w = workspace('interrupt');
    const started = path.join(w.dir, 'started');
    const cfg = configFile(
      w.dir,
      `hooks:\n  before: [${JSON.stringify(`touch "${started}"; sleep 300`)}]\n  onFailure: [${JSON.stringify(record('onFailure', ['S3BACKUP_STATUS']))}]\n  always: [${JSON.stringify(record('always', ['S3BACKUP_STATUS']))}]\n`,
    );
    const child = spawn(process.execPath, [BIN, 'backup', w.src, '--repo', w.repo, '--config', cfg], { env: { ...process.env, ...w.env } });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    // Wait (polling, no time limit of our own) until the hook runs, then interrupt.
    while (!fs.existsSync(started)) await sleep(50);
    child.kill('SIGINT');
    assert.equal(await exited, 1, stderr);
    assert.match(stderr, /before hook 1 \(touch\) failed: stopped: the run was interrupted/);
    assert.equal(w.trace(), 'onFailure S3BACKUP_STATUS=failure\nalways S3BACKUP_STATUS=failure\n');
    assert.equal(fs.existsSync(w.repo), false);
  });

  test('a bad hooks setting is a configuration error naming it', async () => {
    const w = workspace('bad');
    const cfg = configFile(w.dir, 'hooks:\n  before: ["ok"]\n  timeout: 10m\n');
    const r = await runCli(['backup', w.src, '--repo', w.repo, '--config', cfg], { env: w.env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /hooks\.timeout/);
    const typo = configFile(w.dir, 'hooks:\n  befor: ["x"]\n');
    const r2 = await runCli(['backup', w.src, '--repo', w.repo, '--config', typo], { env: w.env });
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /hooks: unknown key "befor"/);
  });

  test('the scheduler runs the hooks of its backup job', async () => {
    const w = workspace('schedule');
    const cfg = configFile(
      w.dir,
      `repository: ${JSON.stringify(w.repo)}\nsources: [${JSON.stringify(w.src)}]\nhooks:\n  before: [${JSON.stringify(record('before', ['S3BACKUP_STATUS']))}]\n  after: [${JSON.stringify(record('after', ['S3BACKUP_BACKUP_ID']))}]\n`,
    );
    const r = await runCli(['schedule', '--once', 'backup', '--config', cfg, '--json'], { env: w.env });
    assert.equal(r.code, 0, r.stderr);
    const list = await runCli(['list', '--repo', w.repo, '--json'], { env: w.env });
    const id = JSON.parse(list.stdout).backups[0].id as string;
    assert.equal(w.trace(), `before S3BACKUP_STATUS=running\nafter S3BACKUP_BACKUP_ID=${id}\n`);
  });
});

describe('hooks on S3 (Ceph)', () => {
  test('facts name the bucket; a failing before hook writes no object', async () => {
    const bucket = await createTestBucket('hooks');
    try {
      const w = workspace('s3');
      const env = { ...w.env, ...s3CliEnv() };
      const repo = `s3://${bucket}/host1`;
      const failed = await runCli(['backup', w.src, '--repo', repo, '--before', 'false'], { env });
      assert.equal(failed.code, 1, failed.stderr);
      const client = testS3Client();
      try {
        const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
        assert.equal(listed.KeyCount ?? 0, 0, 'nothing written to the bucket');
      } finally {
        client.destroy();
      }
      const ok = await runCli(
        ['backup', w.src, '--repo', repo, '--after', record('after', ['S3BACKUP_REPO', 'S3BACKUP_BACKUP_ID']), '--json'],
        {
          env,
        },
      );
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(w.trace(), `after S3BACKUP_REPO=${repo} S3BACKUP_BACKUP_ID=${JSON.parse(ok.stdout).id}\n`);
    } finally {
      await deleteTestBucket(bucket);
    }
  });
});
