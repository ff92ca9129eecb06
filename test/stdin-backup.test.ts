// Backups of one stream (backup --stdin, --stdin-from-command) through the real CLI, on a local
// repository and on Ceph: cat, restore, ls and dump give the stream byte for byte; the two
// archives, concatenated, are a plain tar of the one file; a failing command, or an interrupted
// one, leaves nothing listed and no archive; an encrypted repository; size edge cases (empty, one
// frame exactly); a second run is an incremental of the same group that stores the new stream;
// an S3 upload of several parts.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { commandStream } from '../src/backup/stream-source.ts';
import { DEFAULT_FRAME_SIZE } from '../src/archive/frames.ts';
import { getBuffer, type Store } from '../src/store/store.ts';
import { createTestBucket, deleteTestBucket, testS3Store } from './helpers/s3.ts';
import { testBackends } from './helpers/store.ts';
import { BIN, isolatedEnv, json, pseudoRandom, ROOT, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('stdin-backup');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A file of `size` pseudo-random bytes in the work directory, and its SHA-256. */
function dataFile(label: string, size: number, seed: number): { file: string; digest: string; data: Buffer } {
  const data = pseudoRandom(size, seed);
  const file = path.join(work, `${label}.bin`);
  fs.writeFileSync(file, data);
  return { file, digest: sha256(data), data };
}

/** The CLI with binary stdout (cat). */
function cliBytes(args: string[], env: NodeJS.ProcessEnv): { code: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, maxBuffer: 256 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** Every key under archives/. */
async function archiveKeys(store: Store): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list('archives/')) keys.push(o.key);
  return keys;
}

/** The backup's archives fetched and given, in order, to plain `zstd -dc | tar -x`: the files extracted. */
async function plainTar(store: Store, keys: string[], label: string): Promise<string> {
  const dir = path.join(work, `${label}-tar`);
  fs.mkdirSync(dir, { recursive: true });
  const files = [];
  for (const [i, k] of keys.entries()) {
    const f = path.join(dir, `part${i}`);
    fs.writeFileSync(f, await getBuffer(store, k));
    files.push(f);
  }
  const out = path.join(dir, 'x');
  fs.mkdirSync(out);
  const r = spawnSync('bash', ['-c', `cat "$@" | zstd -dc | tar -x -C "${out}"`, 'tar', ...files], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return out;
}

for (const backend of testBackends('stdin-backup', 'streams')) {
  describe(`backups of a stream on ${backend.name}`, () => {
    const home = path.join(work, `home-${backend.name.split(' ')[0]}`);
    const env = (extra: NodeJS.ProcessEnv = {}) => isolatedEnv(home, { S3BACKUP_LOG_DIR: path.join(home, 'logs'), ...extra });

    test('from a command: cat, restore, ls and dump byte for byte; the archives are a plain tar; a second run is an incremental', async () => {
      const { store, repoArg, cliEnv, cleanup } = await backend.open();
      try {
        const e = env(cliEnv);
        const { file, digest, data } = dataFile('dump', (5 << 20) + 123, 1);
        const b = await runCli(
          ['backup', '--repo', repoArg, '--stdin-filename', 'db.sql', '--json', '--stdin-from-command', '--', 'cat', file],
          {
            env: e,
          },
        );
        assert.equal(b.code, 0, b.stderr);
        const r = json(b.stdout);
        assert.equal(r.files, 1);
        assert.equal(r.bytesIn, data.length);
        assert.equal(r.kind, 'full');
        assert.deepEqual(r.archiveKeys, [`archives/${r.id}.tar.zst`, `archives/${r.id}.2.tar.zst`]);
        const ls = json((await runCli(['ls', r.id, '--repo', repoArg, '--json'], { env: e })).stdout);
        assert.deepEqual(
          ls.entries.map((x: { path: string; size: number; sha256: string }) => [x.path, x.size, x.sha256]),
          [['db.sql', data.length, digest]],
        );
        const cat = cliBytes(['cat', r.id, 'db.sql', '--repo', repoArg], e);
        assert.equal(cat.code, 0, cat.stderr);
        assert.equal(sha256(cat.stdout), digest);
        const target = path.join(work, `restore-${backend.name.split(' ')[0]}`);
        const rs = await runCli(['restore', r.id, '--repo', repoArg, '--target', target], { env: e });
        assert.equal(rs.code, 0, rs.stderr);
        assert.equal(sha256(fs.readFileSync(path.join(target, 'db.sql'))), digest);
        const tarDir = await plainTar(store, r.archiveKeys, `plain-${backend.name.split(' ')[0]}`);
        assert.deepEqual(fs.readdirSync(tarDir), ['db.sql']);
        assert.equal(sha256(fs.readFileSync(path.join(tarDir, 'db.sql'))), digest);
        const dump = spawnSync(
          'bash',
          ['-c', `"${process.execPath}" "${BIN}" dump ${r.id} db.sql --repo "${repoArg}" | tar -xO | sha256sum`],
          {
            env: { ...process.env, ...e },
            encoding: 'utf8',
          },
        );
        assert.equal(dump.stdout.split(' ')[0], digest, dump.stderr);
        const v = await runCli(['verify', r.id, '--repo', repoArg, '--deep'], { env: e });
        assert.equal(v.code, 0, v.stderr);

        // The same name from stdin: the same group, so an incremental, which stores the new stream.
        const text = 'CREATE TABLE t (a int);\n'.repeat(1000);
        const b2 = await runCli(['backup', '--repo', repoArg, '--stdin', '--stdin-filename', 'db.sql', '--json'], { env: e, input: text });
        assert.equal(b2.code, 0, b2.stderr);
        const r2 = json(b2.stdout);
        assert.equal(r2.kind, 'incremental');
        assert.equal(r2.parent, r.id);
        assert.equal(r2.changedFiles, 1);
        assert.equal(r2.bytesIn, text.length);
        assert.equal(cliBytes(['cat', r2.id, 'db.sql', '--repo', repoArg], e).stdout.toString(), text);
        assert.equal(sha256(cliBytes(['cat', r.id, 'db.sql', '--repo', repoArg], e).stdout), digest, 'the first backup is unchanged');
        // Another dump in the same repository is another group; --path picks a group's latest.
        const other = await runCli(['backup', '--repo', repoArg, '--stdin', '--stdin-filename', 'other.txt'], { env: e, input: 'other\n' });
        assert.equal(other.code, 0, other.stderr);
        const picked = cliBytes(['cat', 'latest', 'db.sql', '--path', 'stdin:db.sql', '--repo', repoArg], e);
        assert.equal(picked.code, 0, picked.stderr);
        assert.equal(picked.stdout.toString(), text);
        // Both runs in one history group (the anomaly detector compares them with each other).
        const h = json((await runCli(['history', '--repo', repoArg, '--json'], { env: e })).stdout);
        const runs = h.runs.filter((x: { id: string }) => x.id === r.id || x.id === r2.id);
        assert.equal(runs.length, 2);
        assert.deepEqual(runs[0].sources, ['stdin:db.sql']);
        assert.equal(runs[0].sourceKey, runs[1].sourceKey);
        assert.equal(runs[1].bytesIn, text.length);
      } finally {
        await cleanup();
      }
    });

    test('a command that fails: the backup fails naming its status, nothing is listed, no archive is left', async () => {
      const { store, repoArg, cliEnv, cleanup } = await backend.open();
      try {
        const e = env(cliEnv);
        const { file } = dataFile('partial', 3 << 20, 2);
        const b = await runCli(
          [
            'backup',
            '--repo',
            repoArg,
            '--stdin-filename',
            'db.sql',
            '--stdin-from-command',
            '--',
            'sh',
            '-c',
            `cat "${file}"; echo "dump broke" >&2; exit 3`,
          ],
          { env: e },
        );
        assert.equal(b.code, 1, b.stderr);
        assert.match(b.stderr, /the command sh exited with status 3: dump broke; no backup was recorded/);
        const l = json((await runCli(['list', '--repo', repoArg, '--json'], { env: e })).stdout);
        assert.deepEqual(l.backups, []);
        assert.deepEqual(await archiveKeys(store), []);
        // The failure is in the run history, under the stream's group.
        const h = json((await runCli(['history', '--repo', repoArg, '--json'], { env: e })).stdout);
        assert.deepEqual(
          h.runs.map((x: { ok: boolean; sources: string[]; error: string }) => [x.ok, x.sources, /exited with status 3/.test(x.error)]),
          [[false, ['stdin:db.sql'], true]],
        );
        // A command that does not exist: a usage error, nothing written either.
        const m = await runCli(['backup', '--repo', repoArg, '--stdin-from-command', '--', 'no-such-command-s3b'], { env: e });
        assert.equal(m.code, 2, m.stderr);
        assert.match(m.stderr, /the command no-such-command-s3b cannot be run: not found/);
        assert.deepEqual(await archiveKeys(store), []);
      } finally {
        await cleanup();
      }
    });

    test('an encrypted repository: sealed archives, cat and restore byte for byte, verify --deep', async () => {
      const { repoArg, cliEnv, cleanup } = await backend.open();
      try {
        const e = env({ ...cliEnv, S3BACKUP_PASSWORD: 'stream secret 7c1' });
        const init = await runCli(['init', '--repo', repoArg, '--encrypt', '--scrypt-n', '16384'], { env: e });
        assert.equal(init.code, 0, init.stderr);
        const { file, digest } = dataFile('enc', (4 << 20) + 7, 3);
        const b = await runCli(['backup', '--repo', repoArg, '--json', '--stdin-from-command', '--', 'cat', file], { env: e });
        assert.equal(b.code, 0, b.stderr);
        const r = json(b.stdout);
        assert.deepEqual(r.archiveKeys, [`archives/${r.id}.tar.zst.enc`, `archives/${r.id}.2.tar.zst.enc`]);
        // The name defaults to the command's.
        const cat = cliBytes(['cat', r.id, 'cat', '--repo', repoArg], e);
        assert.equal(cat.code, 0, cat.stderr);
        assert.equal(sha256(cat.stdout), digest);
        const target = path.join(work, `restore-enc-${backend.name.split(' ')[0]}`);
        assert.equal((await runCli(['restore', r.id, '--repo', repoArg, '--target', target], { env: e })).code, 0);
        assert.equal(sha256(fs.readFileSync(path.join(target, 'cat'))), digest);
        const v = await runCli(['verify', r.id, '--repo', repoArg, '--deep'], { env: e });
        assert.equal(v.code, 0, v.stderr);

        // Copied to a plain local repository: both archives go, decrypted; there they restore
        // byte for byte and, concatenated in part order, are the plain tar of the one file.
        const plain = path.join(work, `copy-plain-${backend.name.split(' ')[0]}`);
        assert.equal((await runCli(['init', '--repo', plain], { env: e })).code, 0);
        const c = await runCli(['copy', r.id, '--repo', repoArg, '--to', plain, '--json'], { env: e });
        assert.equal(c.code, 0, c.stderr);
        assert.deepEqual(json(c.stdout).copied, [r.id]);
        const copied = cliBytes(['cat', r.id, 'cat', '--repo', plain], e);
        assert.equal(copied.code, 0, copied.stderr);
        assert.equal(sha256(copied.stdout), digest);
        assert.equal((await runCli(['verify', r.id, '--repo', plain, '--deep'], { env: e })).code, 0);
        const out = path.join(work, `copy-plain-tar-${backend.name.split(' ')[0]}`);
        fs.mkdirSync(out);
        const parts = [`${r.id}.tar.zst`, `${r.id}.2.tar.zst`].map((k) => path.join(plain, 'archives', k));
        const t = spawnSync('bash', ['-c', `cat "$@" | zstd -dc | tar -x -C "${out}"`, 'tar', ...parts], { encoding: 'utf8' });
        assert.equal(t.status, 0, t.stderr);
        assert.equal(sha256(fs.readFileSync(path.join(out, 'cat'))), digest);
      } finally {
        await cleanup();
      }
    });

    test('size edges: an empty stream, exactly one frame, one frame and a byte', async () => {
      const { repoArg, cliEnv, cleanup } = await backend.open();
      try {
        const e = env(cliEnv);
        for (const [label, size] of [
          ['empty', 0],
          ['frame', DEFAULT_FRAME_SIZE],
          ['frame1', DEFAULT_FRAME_SIZE + 1],
        ] as const) {
          const { file, digest } = dataFile(`edge-${label}`, size, 4);
          const b = await runCli(
            ['backup', '--repo', repoArg, '--json', '--stdin-filename', label, '--stdin-from-command', '--', 'cat', file],
            {
              env: e,
            },
          );
          assert.equal(b.code, 0, b.stderr);
          const r = json(b.stdout);
          assert.equal(r.bytesIn, size);
          const cat = cliBytes(['cat', r.id, label, '--repo', repoArg], e);
          assert.equal(cat.code, 0, cat.stderr);
          assert.equal(cat.stdout.length, size, label);
          assert.equal(sha256(cat.stdout), digest, label);
        }
      } finally {
        await cleanup();
      }
    });

    test('interrupted (SIGINT) while the command stalls: the command is stopped, nothing is listed, no archive is left', async () => {
      const { store, repoArg, cliEnv, cleanup } = await backend.open();
      try {
        const e = env(cliEnv);
        const dir = fs.mkdtempSync(path.join(work, 'stall-'));
        const started = path.join(dir, 'started');
        const pidFile = path.join(dir, 'pid');
        // Some output, then it says it is stalling and waits forever (as a hung dump does).
        const script = `head -c 300000 /dev/zero; echo $$ > "${pidFile}"; touch "${started}"; exec sleep 3600`;
        const child = spawn(process.execPath, [BIN, 'backup', '--repo', repoArg, '--stdin-from-command', '--', 'sh', '-c', script], {
          cwd: ROOT,
          env: { ...process.env, ...e },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d) => (stderr += d));
        const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
        while (!fs.existsSync(started)) await new Promise((r) => setTimeout(r, 50));
        child.kill('SIGINT');
        const code = await exited;
        assert.notEqual(code, 0, stderr);
        assert.match(stderr, /interrupted|stopped/);
        const pid = Number(fs.readFileSync(pidFile, 'utf8'));
        // The stalled command was told to stop (SIGTERM): it is gone once reaped.
        let alive = true;
        for (let i = 0; i < 200 && alive; i++) {
          try {
            process.kill(pid, 0);
            await new Promise((r) => setTimeout(r, 50));
          } catch {
            alive = false;
          }
        }
        assert.equal(alive, false, `the command (pid ${pid}) still runs`);
        const l = json((await runCli(['list', '--repo', repoArg, '--json'], { env: e })).stdout);
        assert.deepEqual(l.backups, []);
        assert.deepEqual(await archiveKeys(store), []);
      } finally {
        await cleanup();
      }
    });
  });
}

test('usage errors stop before anything is written', async () => {
  const repo = path.join(work, 'usage-repo');
  const e = isolatedEnv(path.join(work, 'home-usage'), { S3BACKUP_LOG_DIR: path.join(work, 'usage-logs') });
  const cases: [string[], RegExp][] = [
    [['--stdin', 'some/path'], /--stdin backs up standard input alone, not also some\/path/],
    [['--stdin', '--stdin-filename', 'a/b'], /--stdin-filename "a\/b" is not a file name/],
    [['--stdin', '--stdin-filename', '..'], /--stdin-filename "\.\." is not a file name/],
    [['--stdin', '--stdin-from-command', '--', 'true'], /--stdin and --stdin-from-command exclude each other/],
    [['--stdin-from-command'], /--stdin-from-command needs a command after "--"/],
    [['--stdin', '--dry-run'], /--dry-run lists files to back up; a stream has none to list/],
    [['--stdin-filename', 'x', 'some/path'], /--stdin-filename goes with --stdin or --stdin-from-command/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(['backup', '--repo', repo, ...args], { env: e });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.equal(fs.existsSync(repo), false);
});

test('on Ceph, a stream larger than one S3 part goes up as a multipart upload and reads back byte for byte', async () => {
  const bucket = await createTestBucket('stdin-multipart');
  try {
    const store = testS3Store(bucket, 'big', { partSize: 5 << 20 });
    const { file, digest } = dataFile('multipart', (12 << 20) + 5, 5);
    const r = await runBackup({
      store,
      sources: [],
      stream: { name: 'big.bin', open: () => commandStream(['cat', file], 'big.bin') },
      history: false,
    });
    const content = await store.head(r.archiveKeys[1]!);
    assert.ok(content && content.size > 2 * (5 << 20), `${content?.size} bytes: more than two parts`);
    const tarDir = await plainTar(store, r.archiveKeys, 'multipart');
    assert.equal(sha256(fs.readFileSync(path.join(tarDir, 'big.bin'))), digest);
    await store.close();
  } finally {
    await deleteTestBucket(bucket);
  }
});
