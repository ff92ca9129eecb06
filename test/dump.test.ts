// s3backup dump, end to end: the real CLI's tar stream read by the system's tar (GNU tar),
// from a local repository and from an encrypted one on Ceph: a directory, a file, the whole
// backup, a name that is not UTF-8 kept as its bytes, and only the frames the subtree needs read.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Repository } from '../src/repo/repository.ts';
import { runDump } from '../src/restore/dump.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Store } from './helpers/s3.ts';
import { BIN, diffTrees, isolatedEnv, json, makeTree, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('dump');
const PASS = 'dump test passphrase';
const BAD_NAME = Buffer.concat([Buffer.from('bad-'), Buffer.from([0xff, 0xfe]), Buffer.from('.txt')]);
const src = path.join(work, 'src', 'data');
const local = path.join(work, 'repo');
let bucket: string;
let localId: string;
let s3Id: string;

function env(): NodeJS.ProcessEnv {
  return isolatedEnv(path.join(work, 'home'), { ...s3CliEnv(), S3BACKUP_PASSWORD: PASS });
}

before(async () => {
  makeTree(src);
  fs.mkdirSync(path.join(src, 'bytes'));
  fs.writeFileSync(Buffer.concat([Buffer.from(`${src}/bytes/`), BAD_NAME]), 'a name that is not UTF-8\n');
  const b = await runCli(['backup', src, '--repo', local, '--json', '--no-forget'], { env: env() });
  assert.equal(b.code, 0, b.stderr);
  localId = json(b.stdout).id;
  bucket = await createTestBucket('dump');
  const repo = `s3://${bucket}/enc`;
  const i = await runCli(['init', '--repo', repo, '--encrypt', '--scrypt-n', '16384'], { env: env() });
  assert.equal(i.code, 0, i.stderr);
  const s = await runCli(['backup', src, '--repo', repo, '--json', '--no-forget'], { env: env() });
  assert.equal(s.code, 0, s.stderr);
  s3Id = json(s.stdout).id;
});
after(async () => {
  await deleteTestBucket(bucket);
  fs.rmSync(work, { recursive: true, force: true });
});

/** The CLI's stdout as bytes. */
function dump(repo: string, id: string, p: string): { code: number | null; tar: Buffer; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, 'dump', id, p, '--repo', repo], { env: { ...process.env, ...env() }, maxBuffer: 1 << 30 });
  return { code: r.status, tar: r.stdout, stderr: r.stderr.toString() };
}

function untar(tar: Buffer, label: string): string {
  const out = path.join(work, 'out', label);
  fs.mkdirSync(out, { recursive: true });
  const r = spawnSync('tar', ['-x', '-p', '-C', out], { input: tar });
  assert.equal(r.status, 0, r.stderr.toString());
  return out;
}

function tarList(tar: Buffer): string[] {
  const r = spawnSync('tar', ['-t'], { input: tar });
  assert.equal(r.status, 0, r.stderr.toString());
  return r.stdout.toString().split('\n').filter(Boolean);
}

describe('dump', { concurrency: false }, () => {
  test('a directory: tar -x gives the subtree, modes and contents exact, times to the second', () => {
    const r = dump(local, localId, 'data/docs');
    assert.equal(r.code, 0, r.stderr);
    const out = untar(r.tar, 'docs');
    assert.deepEqual(diffTrees(path.join(src, 'docs'), path.join(out, 'data/docs'), { mtimes: false }), []);
    assert.deepEqual(fs.readdirSync(out), ['data']);
    assert.deepEqual(fs.readdirSync(path.join(out, 'data')), ['docs']);
    const st = fs.statSync(path.join(out, 'data/docs/readme.md'));
    assert.equal(Math.floor(st.mtimeMs / 1000), 1700000000);
    assert.deepEqual(tarList(r.tar).slice(0, 2), ['data/docs/', 'data/docs/deep/']);
  });

  test('the whole backup ("."): every entry type, hard links as links', () => {
    const r = dump(local, localId, '.');
    assert.equal(r.code, 0, r.stderr);
    const out = untar(r.tar, 'all');
    // diffTrees reads names as UTF-8: the not-UTF-8 one (bytes/) is checked in its own test.
    assert.deepEqual(fs.readdirSync(path.join(out, 'data')).sort(), fs.readdirSync(src).sort());
    for (const name of fs.readdirSync(src).filter((n) => n !== 'bytes')) {
      const want = fs.lstatSync(path.join(src, name));
      const got = fs.lstatSync(path.join(out, 'data', name));
      if (want.isDirectory()) assert.deepEqual(diffTrees(path.join(src, name), path.join(out, 'data', name), { mtimes: false }), [], name);
      else if (want.isSymbolicLink()) assert.equal(fs.readlinkSync(path.join(out, 'data', name)), fs.readlinkSync(path.join(src, name)));
      else {
        assert.equal(got.mode, want.mode, name);
        assert.ok(fs.readFileSync(path.join(out, 'data', name)).equals(fs.readFileSync(path.join(src, name))), name);
      }
    }
    const a = fs.statSync(path.join(out, 'data/links/original.txt'));
    const b = fs.statSync(path.join(out, 'data/links/second-name.txt'));
    assert.equal(a.ino, b.ino, 'the hard link pair is one file again');
  });

  test('one file, and a name that is not UTF-8 kept as its bytes', () => {
    const one = dump(local, localId, 'data/hello.txt');
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(tarList(one.tar), ['data/hello.txt']);
    const bytes = dump(local, localId, 'data/bytes');
    assert.equal(bytes.code, 0, bytes.stderr);
    const out = untar(bytes.tar, 'bytes');
    const names = fs.readdirSync(path.join(out, 'data/bytes'), { encoding: 'buffer' });
    assert.deepEqual(names, [BAD_NAME]);
    assert.equal(fs.readFileSync(Buffer.concat([Buffer.from(`${out}/data/bytes/`), BAD_NAME]), 'utf8'), 'a name that is not UTF-8\n');
  });

  test('encrypted on Ceph: a small subtree reads only its frames', async () => {
    const cli = dump(`s3://${bucket}/enc`, s3Id, 'data/modes');
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(diffTrees(path.join(src, 'modes'), path.join(untar(cli.tar, 'modes'), 'data/modes'), { mtimes: false }), []);

    const chunks: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        cb();
      },
    });
    const store = testS3Store(bucket, 'enc');
    const r = await runDump({ store, keys: { passphrase: PASS }, snapshot: s3Id, path: 'data/modes', output: sink });
    assert.ok(Buffer.concat(chunks).equals(cli.tar), 'the library writes the bytes the CLI writes');
    const repo = await Repository.open(store, { passphrase: PASS });
    const header = await repo.header(s3Id);
    assert.ok(r.bytesFetched > 0);
    assert.ok(
      r.bytesFetched < header.stats.archiveBytes / 4,
      `read ${r.bytesFetched} bytes of an archive of ${header.stats.archiveBytes} for a few small files`,
    );
    assert.deepEqual(r.skipped, []);
  });

  test('a path not in the backup is a usage error, and nothing is written', () => {
    const r = dump(local, localId, 'data/no-such-dir');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /no "data\/no-such-dir" in backup/);
    assert.equal(r.tar.length, 0);
  });
});
