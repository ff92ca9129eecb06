// verify (shallow and deep) and restore against damaged repositories, on the local store and on
// Ceph RGW: a flipped byte in an archive, a missing archive, a truncated archive, a corrupt
// manifest. Each backup here is real (runBackup of a small tree, 64 KiB frames so the big file
// spans several frames); the damage is done through the store, as bit rot or an operator would.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Codec } from '../src/archive/codec.ts';
import { FrameTable } from '../src/archive/reader.ts';
import { runBackup } from '../src/backup/backup.ts';
import { IntegrityError, S3BackupError } from '../src/errors.ts';
import type { Entry } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { DamagedContentError, runRestore } from '../src/restore/restore.ts';
import { getBuffer, type Store } from '../src/store/store.ts';
import { runVerify } from '../src/verify/verify.ts';
import { testBackends } from './helpers/store.ts';
import { diffTrees, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const FRAME = 64 << 10;
const work = tempDir('verify');
const src = path.join(work, 'src');
fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
fs.writeFileSync(path.join(src, 'small.txt'), 'small\n');
fs.writeFileSync(path.join(src, 'multi.bin'), pseudoRandom(5 * FRAME + 777, 11)); // 6 frames, incompressible
fs.writeFileSync(path.join(src, 'sub', 'text.log'), 'a line of log text\n'.repeat(8000)); // ~150 KiB, compressible
fs.writeFileSync(path.join(src, 'sub', 'tail.bin'), pseudoRandom(3000, 12));
// A tree with enough entries that its manifest decompresses in many chunks.
const many = path.join(work, 'many');
fs.mkdirSync(many);
for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(many, `file-${String(i).padStart(5, '0')}-${'p'.repeat(60)}.txt`), `${i}\n`);
after(() => fs.rmSync(work, { recursive: true, force: true }));

const backends = testBackends('verify', 'damaged/host');

interface Backed {
  id: string;
  archiveKey: string;
  manifestKey: string;
  entries: Entry[];
  table: FrameTable;
}

/** The restore or verify error (fails the test if the promise resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof Error);
    return e;
  }
  assert.fail('expected it to fail');
}

// Both backends, and the tests in each, run concurrently: each test damages and reads only its
// own backup (the server's latency, not the work, is what takes the time).
describe('verify and restore of damaged repositories', { concurrency: true }, () => {
  for (const backend of backends) {
    describe(`on ${backend.name}`, { concurrency: true }, () => {
      let store: Store;
      let cleanup: () => Promise<void>;
      let repoArg: string;
      let cliEnv: NodeJS.ProcessEnv;
      // Every test damages a backup of its own. They are all made up front, concurrently (the
      // server's latency, not the work, is what takes time), and each test takes its own.
      const wanted = new Map<string, { codec: Codec; source: string }>();
      const made = new Map<string, Promise<Backed>>();
      const want = (name: string, codec: Codec = 'zstd', source = src) => {
        wanted.set(name, { codec, source });
        return name;
      };
      const backupFor = (name: string): Promise<Backed> => made.get(name)!;
      before(async () => {
        ({ store, cleanup, repoArg, cliEnv } = await backend.open());
        for (const [name, w] of wanted) {
          const p = backup(w.codec, w.source);
          p.catch(() => {}); // awaited by its test
          made.set(name, p);
        }
      });
      after(async () => {
        await store.close();
        await cleanup();
      });

      /** A fresh backup of the source tree (each test damages its own). */
      async function backup(codec: Codec = 'zstd', source = src): Promise<Backed> {
        const r = await runBackup({ store, sources: [source], frameSize: FRAME, codec, full: true }); // each damage test gets its own archive
        assert.equal(r.warnings.length, 0, r.warnings.join('\n'));
        assert.equal(r.files, source === src ? 4 : 3000);
        const repo = await Repository.open(store);
        const m = await repo.loadManifest(r.id);
        try {
          const entries: Entry[] = [];
          for await (const e of m.entries()) entries.push(e);
          assert.equal(m.archives.length, 1);
          assert.equal(m.archives[0]!.key, r.archiveKey);
          const table = new FrameTable(m.archives[0]!);
          assert.ok(table.count >= 8, `several frames expected, got ${table.count}`);
          const ok = await runVerify({ store, snapshot: r.id, deep: true });
          assert.deepEqual(ok.problems, [], 'a fresh backup verifies clean');
          return { id: r.id, archiveKey: r.archiveKey, manifestKey: r.manifestKey, entries, table };
        } finally {
          await m.dispose();
        }
      }

      async function damage(key: string, f: (b: Buffer) => Buffer): Promise<void> {
        const before = await getBuffer(store, key);
        const after = f(Buffer.from(before));
        assert.ok(!after.equals(before), 'the damage changes the object');
        await store.put(key, after);
        assert.ok((await getBuffer(store, key)).equals(after), 'the damaged object was stored');
      }

      /** Files whose content lies in the frame holding compressed byte `pos` (or any later frame, with `rest`). */
      function filesAt(b: Backed, pos: number, rest = false): string[] {
        let f = 0;
        while (b.table.cStart[f + 1]! <= pos) f++;
        const [u0, u1] = [b.table.uStart[f]!, b.table.uStart[rest ? b.table.count : f + 1]!];
        return b.entries.filter((e) => e.type === 'file' && e.size > 0 && e.offset! < u1 && e.offset! + e.size > u0).map((e) => e.path);
      }

      for (const codec of ['zstd', 'none'] as const) {
        const name = want(`flip-${codec}`, codec);
        test(`a flipped byte (${codec}): shallow verify passes, deep verify and restore fail`, async () => {
          const b = await backupFor(name);
          const size = (await store.head(b.archiveKey))!.size;
          const pos = Math.floor(size / 2);
          const hit = filesAt(b, pos);
          assert.deepEqual(hit, ['src/multi.bin'], 'the middle of the archive is inside the big file');
          await damage(b.archiveKey, (buf) => {
            buf[pos] = buf[pos]! ^ 0x5a;
            return buf;
          });
          assert.equal((await store.head(b.archiveKey))!.size, size);

          const shallow = await runVerify({ store, snapshot: b.id });
          assert.deepEqual(shallow.problems, [], 'same size: shallow verify cannot tell');
          assert.equal(shallow.ok, true);

          const deep = await runVerify({ store, snapshot: b.id, deep: true });
          assert.equal(deep.ok, false);
          assert.ok(deep.problems.length > 0);
          for (const p of deep.problems) assert.ok([b.archiveKey, ...hit].includes(p.where), `unexpected problem ${JSON.stringify(p)}`);
          if (codec === 'none') {
            // No codec checksum: the file's own SHA-256 and the archive's catch it.
            assert.ok(
              deep.problems.some((p) => p.where === 'src/multi.bin' && /SHA-256/.test(p.problem)),
              JSON.stringify(deep.problems),
            );
            assert.ok(
              deep.problems.some((p) => p.where === b.archiveKey && /SHA-256/.test(p.problem)),
              JSON.stringify(deep.problems),
            );
          }

          const target = tempDir('verify-restore');
          try {
            const err = await rejection(runRestore({ store, snapshot: b.id, target }));
            assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
            assert.ok(err.message.includes('src/multi.bin'), `the error names the file: ${err.message}`);
            assert.ok(!fs.existsSync(path.join(target, 'src/multi.bin')), 'the damaged file is not left behind');
            // Files outside the damaged frame still restore on their own.
            const r = await runRestore({ store, snapshot: b.id, target: path.join(target, 'again'), include: ['src/sub'] });
            assert.equal(r.files, 2);
            assert.deepEqual(diffTrees(path.join(src, 'sub'), path.join(target, 'again', 'src', 'sub')), []);
          } finally {
            fs.rmSync(target, { recursive: true, force: true });
          }
        });
      }

      const spread = want('damaged among many', 'zstd', many);
      test('a damaged frame among many files: deep verify names exactly its files and checks the others; restore stops at the first, or with skipDamaged restores all the others', async () => {
        const b = await backupFor(spread);
        const middle = Math.floor(b.table.count / 2);
        const pos = b.table.cStart[middle]! + 20; // inside the middle frame, past its header
        const hit = filesAt(b, pos);
        assert.ok(hit.length > 10, `the middle frame holds many files (${hit.length})`);
        await damage(b.archiveKey, (buf) => {
          buf[pos] = buf[pos]! ^ 0x5a;
          return buf;
        });
        const deep = await runVerify({ store, snapshot: b.id, deep: true });
        assert.equal(deep.ok, false);
        assert.ok(
          deep.problems.some((p) => p.where === b.archiveKey && /frame \d+/.test(p.problem)),
          JSON.stringify(deep.problems.slice(0, 3)),
        );
        const files = deep.problems.filter((p) => p.where !== b.archiveKey);
        assert.deepEqual(files.map((p) => p.where).sort(), [...hit].sort());
        for (const p of files) assert.match(p.problem, /^content cannot be read: /);
        assert.equal(deep.filesChecked, 3000 - hit.length, 'every file outside the damaged frame is checked');

        // A restore stops at the first damaged file, naming it...
        const target = tempDir('damaged-restore');
        try {
          const err = await rejection(runRestore({ store, snapshot: b.id, target: path.join(target, 'strict') }));
          assert.ok(err instanceof DamagedContentError && err.message.startsWith(`${[...hit].sort()[0]}: `), err.message);
          // ...unless told to skip damaged files: then all the others come back, exactly.
          const r = await runRestore({ store, snapshot: b.id, target: path.join(target, 'rest'), skipDamaged: true });
          assert.deepEqual(r.damaged.map((d) => d.path).sort(), [...hit].sort());
          assert.equal(r.files, 3000 - hit.length);
          const back = path.join(target, 'rest', 'many');
          for (const e of b.entries) {
            if (e.type !== 'file') continue;
            const name = e.path.slice('many/'.length);
            if (hit.includes(e.path)) assert.ok(!fs.existsSync(path.join(back, name)), `${e.path} is left out`);
            else assert.equal(fs.readFileSync(path.join(back, name), 'utf8'), fs.readFileSync(path.join(many, name), 'utf8'));
          }
          // The CLI: exit 3, the damaged files in the JSON document.
          const cli = await runCli(['restore', b.id, '--repo', repoArg, '--target', path.join(target, 'cli'), '--skip-damaged', '--json'], {
            env: { ...isolatedEnv(path.join(target, 'home')), ...cliEnv },
          });
          assert.equal(cli.code, 3, cli.stderr);
          assert.deepEqual(
            json(cli.stdout)
              .damaged.map((d: { path: string }) => d.path)
              .sort(),
            [...hit].sort(),
          );
        } finally {
          fs.rmSync(target, { recursive: true, force: true });
        }
      });

      want('deleted');
      test('a deleted archive: shallow verify says it is missing, restore fails naming it', async () => {
        const b = await backupFor('deleted');
        await store.delete([b.archiveKey]);
        assert.equal(await store.head(b.archiveKey), undefined);
        for (const deep of [false, true]) {
          const v = await runVerify({ store, snapshot: b.id, deep });
          assert.equal(v.ok, false);
          assert.deepEqual(v.problems, [{ where: b.archiveKey, problem: 'archive is missing' }]);
        }
        const target = tempDir('verify-missing');
        try {
          const err = await rejection(runRestore({ store, snapshot: b.id, target }));
          assert.ok(err instanceof S3BackupError, `${err.name}: ${err.message}`);
          assert.ok(err.message.includes(b.archiveKey), err.message);
          const left = fs.existsSync(path.join(target, 'src')) ? fs.readdirSync(path.join(target, 'src')) : [];
          assert.ok(!left.includes('multi.bin') && !left.includes('small.txt'), `no empty stand-ins left: ${left.join(', ')}`);
        } finally {
          fs.rmSync(target, { recursive: true, force: true });
        }
      });

      want('truncated');
      test('a truncated archive: shallow verify reports the size mismatch', async () => {
        const b = await backupFor('truncated');
        const size = (await store.head(b.archiveKey))!.size;
        // Cut in the middle of the last frame.
        const last = b.table.count - 1;
        const cut = b.table.cStart[last]! + Math.floor(b.table.ref.frames[last]![0] / 2);
        assert.ok(cut > 0 && cut < size);
        await damage(b.archiveKey, (buf) => buf.subarray(0, cut));
        for (const deep of [false, true]) {
          const v = await runVerify({ store, snapshot: b.id, deep });
          assert.equal(v.ok, false);
          assert.deepEqual(v.problems, [{ where: b.archiveKey, problem: `archive has ${cut} bytes, manifest says ${size}` }]);
        }
        // The frames from the cut on are gone: the first file in them fails, named; the ones before restore.
        const lost = filesAt(b, cut, true);
        assert.ok(lost.length > 0 && !lost.includes('src/multi.bin'), `lost: ${lost.join(', ')}`);
        const target = tempDir('verify-truncated');
        try {
          const err = await rejection(runRestore({ store, snapshot: b.id, target }));
          assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
          assert.ok(err.message.includes(lost[0]!), `names ${lost[0]}: ${err.message}`);
          for (const p of lost) assert.ok(!fs.existsSync(path.join(target, p)), `no partial ${p} left behind`);
          assert.ok(fs.readFileSync(path.join(src, 'multi.bin')).equals(fs.readFileSync(path.join(target, 'src/multi.bin'))));
        } finally {
          fs.rmSync(target, { recursive: true, force: true });
        }
      });

      const manifestDamage: { name: string; f: (b: Buffer) => Buffer; headerReadable: boolean }[] = [
        { name: 'replaced by garbage', f: (buf) => pseudoRandom(buf.length, 99), headerReadable: false },
        { name: 'empty', f: () => Buffer.alloc(0), headerReadable: false },
        { name: 'truncated to its first half', f: (buf) => buf.subarray(0, buf.length >> 1), headerReadable: true },
        { name: 'not zstd but JSON', f: () => Buffer.from('{"format":"s3backup-manifest"}\n'), headerReadable: false },
        {
          name: 'a flipped byte in its checksum',
          f: (buf) => {
            buf[buf.length - 1] = buf[buf.length - 1]! ^ 0xff;
            return buf;
          },
          headerReadable: true,
        },
        {
          name: 'a flipped byte in the middle',
          f: (buf) => {
            buf[buf.length >> 1] = buf[buf.length >> 1]! ^ 0xff;
            return buf;
          },
          headerReadable: true,
        },
      ];
      for (const d of manifestDamage) {
        const name = want(`manifest ${d.name}`);
        test(`a corrupt manifest (${d.name}): verify reports it on the manifest key; header reads fail cleanly`, async () => {
          const b = await backupFor(name);
          await damage(b.manifestKey, d.f);
          for (const deep of [false, true]) {
            const v = await runVerify({ store, snapshot: b.id, deep });
            assert.equal(v.ok, false, `deep=${deep}`);
            assert.ok(v.problems.length > 0);
            assert.ok(
              v.problems.some((p) => p.where === b.manifestKey),
              `deep=${deep}: a problem on ${b.manifestKey} expected: ${JSON.stringify(v.problems)}`,
            );
          }
          // "list" reads headers: a clear IntegrityError naming the manifest, or (when the damage
          // is past the header) the right header.
          const repo = await Repository.open(store);
          let h;
          try {
            h = await repo.header(b.id);
          } catch (e) {
            assert.ok(e instanceof IntegrityError, `${(e as Error)?.name}: ${(e as Error)?.message}`);
            assert.ok(e.message.includes(b.manifestKey), e.message);
          }
          if (h) assert.equal(h.id, b.id);
          if (!d.headerReadable) assert.equal(h, undefined, 'the header cannot have been read');
          if (!d.headerReadable) {
            const err = await rejection(repo.headers([b.id]));
            assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
            assert.ok(err.message.includes(b.manifestKey), err.message);
          }
          // Restore refuses too, with an IntegrityError naming the manifest.
          const target = tempDir('verify-manifest');
          try {
            const rerr = await rejection(runRestore({ store, snapshot: b.id, target }));
            assert.ok(rerr instanceof IntegrityError, `${rerr.name}: ${rerr.message}`);
            assert.ok(rerr.message.includes(b.manifestKey), rerr.message);
          } finally {
            fs.rmSync(target, { recursive: true, force: true });
          }
        });
      }

      want('large manifest', 'zstd', many);
      test('a manifest damaged past its header (an entry segment): verify reports it on the manifest key, restore fails cleanly', async () => {
        const b = await backupFor('large manifest');
        const m = await (await Repository.open(store)).loadManifest(b.id);
        const segment = (await Repository.open(store)).segmentKey(m.segments!.refs.at(-1)![0]);
        await m.dispose();
        const size = (await store.head(segment))!.size;
        // The zstd checksum at the very end of its last segment: the header and archive list still read.
        await damage(segment, (buf) => {
          buf[buf.length - 1] = buf[buf.length - 1]! ^ 0xff;
          return buf;
        });
        assert.equal((await store.head(segment))!.size, size);
        const repo = await Repository.open(store);
        assert.equal((await repo.header(b.id)).id, b.id, 'the header itself is intact');
        for (const deep of [false, true]) {
          let v;
          try {
            v = await runVerify({ store, snapshot: b.id, deep });
          } catch (e) {
            assert.fail(`deep=${deep}: verify threw instead of reporting: ${(e as Error)?.stack}`);
          }
          assert.equal(v.ok, false, `deep=${deep}`);
          assert.ok(
            v.problems.some((p) => p.where === b.manifestKey),
            JSON.stringify(v.problems),
          );
        }
        const target = tempDir('verify-large-manifest');
        try {
          const err = await rejection(runRestore({ store, snapshot: b.id, target }));
          assert.ok(err instanceof IntegrityError, `${err.name}: ${err.message}`);
          assert.ok(err.message.includes(b.manifestKey), err.message);
        } finally {
          fs.rmSync(target, { recursive: true, force: true });
        }
      });
    });
  }
});
