// `s3backup ls` and `s3backup cat`: listing reads only the manifest; cat streams one file with
// ranged reads of just the frames that hold it and checks its SHA-256. Library and CLI, on the
// local store and on a real S3 server (Ceph RGW).
import { DelegatingStore, testBackends } from './helpers/store.ts';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough, type Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { S3BackupError, UsageError } from '../src/errors.ts';
import type { Entry } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { runCat } from '../src/restore/cat.ts';
import { runLs } from '../src/restore/ls.ts';
import { LocalStore } from '../src/store/local.ts';
import type { ByteRange, Store } from '../src/store/store.ts';
import { BIN, isolatedEnv, pseudoRandom, tempDir } from './helpers/tree.ts';

const FRAME = 65536;
const work = tempDir('lscat');
const env = isolatedEnv(path.join(work, 'home'));
const src = path.join(work, 'data');
const multi = pseudoRandom(400_000, 11); // random: ~7 frames of 64 KiB, compressed or not
fs.mkdirSync(path.join(src, 'sub', 'deep'), { recursive: true });
fs.mkdirSync(path.join(src, 'emptydir'));
fs.writeFileSync(path.join(src, 'hello.txt'), 'hello, world\n');
fs.utimesSync(path.join(src, 'hello.txt'), 946684800, 946684800); // 2000-01-01 00:00:00 UTC
fs.writeFileSync(path.join(src, 'script.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
fs.chmodSync(path.join(src, 'script.sh'), 0o755);
fs.writeFileSync(path.join(src, 'empty.txt'), '');
fs.writeFileSync(path.join(src, 'odd [x].txt'), 'brackets\n');
fs.writeFileSync(path.join(src, 'sub', 'deep', 'note.md'), '# note\n'.repeat(50));
fs.writeFileSync(path.join(src, 'multi.bin'), multi);
fs.linkSync(path.join(src, 'multi.bin'), path.join(src, 'multi-again.bin'));
fs.writeFileSync(path.join(src, 'padding.bin'), pseudoRandom(3 << 20, 12)); // makes the archive big
fs.symlinkSync('hello.txt', path.join(src, 'link'));
fs.symlinkSync('sub/deep', path.join(src, 'dirlink'));
fs.symlinkSync('/nowhere/at/all', path.join(src, 'outside'));
execFileSync('mkfifo', [path.join(src, 'fifo')]);

after(() => fs.rmSync(work, { recursive: true, force: true }));

/** Counts the bytes every get() delivers, per top-level prefix (archives/, snapshots/, …). */
class CountingStore extends DelegatingStore {
  readonly bytes = new Map<string, number>();
  readonly gets: string[] = [];
  constructor(inner: Store) {
    super(inner);
  }
  fetched(prefix: string): number {
    return this.bytes.get(prefix) ?? 0;
  }
  reset(): void {
    this.bytes.clear();
    this.gets.length = 0;
  }
  override async get(key: string, range?: ByteRange): Promise<Readable> {
    const body = await this.inner.get(key, range);
    const prefix = key.split('/')[0]!;
    this.gets.push(key);
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        this.bytes.set(prefix, (this.bytes.get(prefix) ?? 0) + chunk.length);
        cb(null, chunk);
      },
    });
    pipeline(body, counter, () => {});
    return counter;
  }
}

/** A writable that keeps everything written to it. */
function sink(): { stream: Writable; data: () => Buffer } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    highWaterMark: 16 << 10,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      setImmediate(cb); // a slow reader, so backpressure is exercised
    },
  });
  return { stream, data: () => Buffer.concat(chunks) };
}

/** The CLI with stdout kept as bytes (cat output is binary). */
function cli(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, ...env, ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}

function expectedPaths(): string[] {
  const out = ['data'];
  const walk = (dir: string, rel: string) => {
    for (const name of fs.readdirSync(dir)) {
      const p = `${rel}/${name}`;
      out.push(p);
      const st = fs.lstatSync(path.join(dir, name));
      if (st.isDirectory()) walk(path.join(dir, name), p);
    }
  };
  walk(src, 'data');
  return out.sort();
}

const backends = testBackends('lscat', 'host/a');

for (const backend of backends) {
  describe(`ls and cat on ${backend.name}`, () => {
    let store: CountingStore;
    let repoArg: string;
    let cliEnv: NodeJS.ProcessEnv;
    let cleanup: () => Promise<void>;
    let id: string;
    let archiveSize: number;
    before(async () => {
      const b = await backend.open();
      store = new CountingStore(b.store);
      ({ repoArg, cliEnv, cleanup } = b);
      const r = await runBackup({ store: b.store, sources: [src], frameSize: FRAME });
      id = r.id;
      archiveSize = r.archiveBytes;
      assert.deepEqual(
        r.warnings.map((w) => w.replace(/:.*/, '')),
        ['data/fifo'],
      );
      assert.ok(archiveSize > 3 << 20, `archive ${archiveSize} bytes`);
    });
    after(async () => {
      await store.close();
      await cleanup();
    });

    test('ls lists every entry with its type, mode, size and target, reading no archive', async () => {
      store.reset();
      const entries: Entry[] = [];
      const r = await runLs({ store, snapshot: 'latest', onEntry: (e) => void entries.push(e) });
      assert.equal(r.id, id);
      assert.deepEqual(entries.map((e) => e.path).sort(), expectedPaths());
      const by = new Map(entries.map((e) => [e.path, e]));
      assert.equal(by.get('data/hello.txt')!.type, 'file');
      assert.equal(by.get('data/hello.txt')!.size, 13);
      assert.equal(by.get('data/script.sh')!.mode, 0o755);
      assert.equal(by.get('data/link')!.type, 'symlink');
      assert.equal(by.get('data/link')!.target, 'hello.txt');
      assert.equal(by.get('data/multi.bin')!.type, 'hardlink'); // "multi-again.bin" sorts first
      assert.equal(by.get('data/fifo')!.type, 'other');
      assert.equal(r.files + r.dirs + r.symlinks + r.hardlinks + r.other, entries.length);
      // The manifest and its entry segments; no archive.
      assert.deepEqual(
        store.gets.filter((k) => !k.startsWith('snapshots/') && !k.startsWith('entries/') && k !== 'config.json'),
        [],
      );
      assert.ok(store.gets.some((k) => k.startsWith('entries/')));
      assert.equal(store.fetched('archives'), 0);
    });

    test('ls PATH lists that subtree; a glob selects matches; an absolute source path works', async () => {
      const list = async (p: string) => {
        const out: string[] = [];
        await runLs({ store, snapshot: id.slice(-8), path: p, onEntry: (e) => void out.push(e.path) });
        return out;
      };
      assert.deepEqual(await list('data/sub'), ['data/sub', 'data/sub/deep', 'data/sub/deep/note.md']);
      assert.deepEqual(await list('./data/sub/'), ['data/sub', 'data/sub/deep', 'data/sub/deep/note.md']);
      assert.deepEqual(await list(path.join(src, 'sub')), ['data/sub', 'data/sub/deep', 'data/sub/deep/note.md']);
      assert.deepEqual((await list('**/*.txt')).sort(), ['data/empty.txt', 'data/hello.txt', 'data/odd [x].txt']);
      assert.deepEqual(await list('data/odd [x].txt'), ['data/odd [x].txt']);
      await assert.rejects(
        list('data/nope'),
        (e: unknown) => e instanceof UsageError && /nothing in backup .* matches "data\/nope"/.test(e.message),
      );
    });

    test('cat of a small file: its bytes, from one frame-sized ranged read', async () => {
      store.reset();
      const out = sink();
      const r = await runCat({ store, snapshot: 'latest', path: 'data/hello.txt', output: out.stream });
      assert.deepEqual(out.data(), fs.readFileSync(path.join(src, 'hello.txt')));
      assert.equal(r.size, 13);
      assert.equal(r.requests, 1);
      assert.equal(store.fetched('archives'), r.bytesFetched);
      assert.ok(r.bytesFetched > 0 && r.bytesFetched <= 2 * (FRAME + 1024), `fetched ${r.bytesFetched}`);
      assert.ok(r.bytesFetched * 20 < archiveSize, `fetched ${r.bytesFetched} of ${archiveSize}`);
    });

    test('cat of a file spanning several frames: its bytes, fetching only its frames', async () => {
      store.reset();
      const out = sink();
      const r = await runCat({ store, snapshot: 'latest', path: 'data/multi-again.bin', output: out.stream });
      assert.ok(out.data().equals(multi), 'content differs');
      assert.equal(r.requests, 1);
      assert.equal(store.fetched('archives'), r.bytesFetched);
      // The file's ~7 frames (random data does not compress) and at most one partial frame at each end.
      assert.ok(r.bytesFetched >= multi.length, `fetched ${r.bytesFetched}`);
      assert.ok(r.bytesFetched <= multi.length + 2 * (FRAME + 1024), `fetched ${r.bytesFetched}`);
      assert.ok(r.bytesFetched * 4 < archiveSize, `fetched ${r.bytesFetched} of ${archiveSize}`);
    });

    test('cat resolves hard links and symlinks inside the backup; an empty file is empty', async () => {
      const cat = async (p: string) => {
        const out = sink();
        const r = await runCat({ store, snapshot: 'latest', path: p, output: out.stream });
        return { r, data: out.data() };
      };
      const hard = await cat('data/multi.bin');
      assert.ok(hard.data.equals(multi));
      const link = await cat('data/link');
      assert.equal(link.data.toString(), 'hello, world\n');
      assert.equal(link.r.source, 'data/hello.txt');
      assert.equal((await cat('data/empty.txt')).data.length, 0);
      assert.equal((await cat('data/odd [x].txt')).data.toString(), 'brackets\n');
    });

    test('cat of a directory, a missing path, a special file or a link out of the backup is a clear error', async () => {
      const cat = (p: string) => runCat({ store, snapshot: 'latest', path: p, output: sink().stream });
      await assert.rejects(cat('data/sub'), (e: unknown) => e instanceof UsageError && /data\/sub is a directory/.test(e.message));
      await assert.rejects(
        cat('data/dirlink'),
        (e: unknown) => e instanceof UsageError && /data\/sub\/deep is a directory/.test(e.message),
      );
      await assert.rejects(
        cat('hello.txt'),
        (e: unknown) => e instanceof UsageError && /no "hello.txt"/.test(e.message) && /data\/hello\.txt/.test(e.hint ?? ''),
      );
      await assert.rejects(
        cat('data/fifo'),
        (e: unknown) => e instanceof S3BackupError && !(e instanceof UsageError) && /data\/fifo has no content/.test(e.message),
      );
      await assert.rejects(
        cat('data/outside'),
        (e: unknown) => e instanceof S3BackupError && /symlink to \/nowhere\/at\/all, which is not in backup/.test(e.message),
      );
    });

    test('CLI: ls prints ls -l lines, --json an array of entries; cat writes the bytes', async () => {
      const ls = await cli(['ls', 'latest', '--repo', repoArg], cliEnv);
      assert.equal(ls.code, 0, ls.stderr);
      const lines = ls.stdout.toString().trimEnd().split('\n');
      assert.equal(lines.length, expectedPaths().length);
      assert.ok(
        lines.includes(
          `-rw-r--r-- ${String(process.getuid!()).padStart(5)} ${String(process.getgid!()).padStart(5)} ${'13'.padStart(12)} 2000-01-01 00:00:00 data/hello.txt`,
        ),
        lines.join('\n'),
      );
      assert.ok(lines.some((l) => /^-rwxr-xr-x .* data\/script\.sh$/.test(l)));
      assert.ok(lines.some((l) => /^drwx.* data\/sub\/deep$/.test(l)));
      assert.ok(lines.some((l) => /^lrwxrwxrwx .* data\/link -> hello\.txt$/.test(l)));
      assert.ok(lines.some((l) => /^-.* 400000 .* data\/multi\.bin \(hard link to data\/multi-again\.bin\)$/.test(l)));
      assert.ok(lines.some((l) => /^\?.* data\/fifo {2}\[not in the backup: skipped \(FIFO\)\]$/.test(l)));
      assert.match(ls.stderr, new RegExp(`${expectedPaths().length} entries in backup ${id}`));

      const js = await cli(['ls', id, 'data/sub', '--json', '--repo', repoArg], cliEnv);
      assert.equal(js.code, 0, js.stderr);
      const doc = JSON.parse(js.stdout.toString());
      assert.equal(doc.ok, true);
      assert.deepEqual(
        doc.entries.map((e: { path: string }) => e.path),
        ['data/sub', 'data/sub/deep', 'data/sub/deep/note.md'],
      );
      const note = doc.entries[2];
      assert.equal(note.type, 'file');
      assert.equal(note.size, 350);
      assert.equal(note.permissions, '-rw-r--r--');
      assert.match(note.sha256, /^[0-9a-f]{64}$/);
      assert.equal(note.mtime, new Date(fs.statSync(path.join(src, 'sub/deep/note.md')).mtimeMs).toISOString());

      const small = await cli(['cat', 'latest', 'data/hello.txt', '--repo', repoArg], cliEnv);
      assert.equal(small.code, 0, small.stderr);
      assert.equal(small.stdout.toString(), 'hello, world\n');
      const big = await cli(['cat', 'latest', path.join(src, 'multi.bin'), '--repo', repoArg], cliEnv);
      assert.equal(big.code, 0, big.stderr);
      assert.ok(big.stdout.equals(multi), `got ${big.stdout.length} bytes`);
    });

    test('CLI: errors name the problem, with exit codes 2 (path) and 1 (no content)', async () => {
      const dir = await cli(['cat', 'latest', 'data/sub', '--repo', repoArg], cliEnv);
      assert.equal(dir.code, 2);
      assert.match(dir.stderr, /data\/sub is a directory/);
      assert.equal(dir.stdout.length, 0);
      const missing = await cli(['cat', 'latest', 'data/nope.txt', '--repo', repoArg], cliEnv);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /no "data\/nope\.txt" in backup/);
      const fifo = await cli(['cat', 'latest', 'data/fifo', '--repo', repoArg], cliEnv);
      assert.equal(fifo.code, 1);
      assert.match(fifo.stderr, /data\/fifo has no content/);
      const lsMissing = await cli(['ls', 'latest', 'data/nope', '--json', '--repo', repoArg], cliEnv);
      assert.equal(lsMissing.code, 2);
      assert.equal(JSON.parse(lsMissing.stdout.toString()).ok, false);
      const json = await cli(['cat', 'latest', 'data/hello.txt', '--json', '--repo', repoArg], cliEnv);
      assert.equal(json.code, 2);
      assert.match(json.stderr, /no --json output/);
    });
  });
}

describe('cat checks the SHA-256', () => {
  test('a file altered in the archive is written out, then reported: exit 1 naming it', async () => {
    const dir = path.join(work, 'repo-corrupt');
    const store = new LocalStore(dir);
    // Uncompressed, so a flipped byte still decodes and only the SHA-256 can tell.
    const r = await runBackup({ store, sources: [src], codec: 'none', frameSize: FRAME });
    const repo = await Repository.open(store);
    const manifest = await repo.loadManifest(r.id);
    let entry: Entry | undefined;
    for await (const e of manifest.entries()) if (e.path === 'data/sub/deep/note.md') entry = e;
    const key = manifest.archives[0]!.key;
    await manifest.dispose();
    const file = path.join(dir, ...key.split('/'));
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from('X'), 0, 1, entry!.offset! + 2);
    fs.closeSync(fd);

    const bad = await cli(['cat', r.id, 'data/sub/deep/note.md', '--repo', dir]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /data\/sub\/deep\/note\.md: content does not match its SHA-256/);
    assert.equal(bad.stdout.length, 350);
    assert.equal(bad.stdout.toString().slice(0, 7), '# Xote\n'); // what the archive holds now
    const good = await cli(['cat', r.id, 'data/hello.txt', '--repo', dir]);
    assert.equal(good.code, 0, good.stderr);
    // The library says the same.
    const out = new PassThrough();
    out.resume();
    await assert.rejects(
      runCat({ store, snapshot: r.id, path: 'data/sub/deep/note.md', output: out }),
      /content does not match its SHA-256/,
    );
  });
});
