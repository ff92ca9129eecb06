// Decompression bombs: repositories crafted by hand whose stored objects are
// a few KB that expand to hundreds of MiB — archive frames (zstd, gzip, encrypted), a manifest's
// entries or head, a history segment. Every reader must decompress with an output bound and
// refuse what passes it as damage naming the archive and frame (or the manifest), and the CLI
// (a child process, its peak RSS read from getrusage at exit) must stay far below the bomb.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import * as zlib from 'node:zlib';
import { decompressFrame, FrameExpansionError } from '../src/archive/codec.ts';
import { FrameWriter, MAX_FRAME_SIZE } from '../src/archive/frames.ts';
import { ArchiveCursor } from '../src/archive/reader.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarHeader } from '../src/archive/tar.ts';
import type { NewKeySpec } from '../src/crypto/keys.ts';
import { IntegrityError, UsageError } from '../src/errors.ts';
import { readHistory, sourceKeyOf } from '../src/monitor/history.ts';
import type { RunRecord } from '../src/monitor/types.ts';
import { readManifestHead } from '../src/repo/manifest-head.ts';
import {
  type ArchiveRef,
  type Entry,
  emptyStats,
  encodeManifestHead,
  LineTooLongError,
  lines,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  MAX_ENTRY_LINE,
  MAX_MANIFEST_HEAD,
  type ManifestHeader,
} from '../src/repo/manifest.ts';
import { newSnapshotId, Repository } from '../src/repo/repository.ts';
import { LEGACY_MANIFEST_VERSION, LegacyEntryWriter } from './helpers/legacy-manifest.ts';
import { runCat } from '../src/restore/cat.ts';
import { runLs } from '../src/restore/ls.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { readAll } from '../src/store/store.ts';
import { runVerify } from '../src/verify/verify.ts';
import { BIN, isolatedEnv, tempDir } from './helpers/tree.ts';

const work = tempDir('bomb');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const FRAME = 1 << 20;
/** What each bomb frame expands to: 256 MiB of zeros, from ~8 KB of zstd. */
const BOMB = 256 << 20;
/** Peak RSS a command may reach on a 3 × 256 MiB bomb: well below the bomb, above a normal run. */
const RSS_LIMIT_MB = 300;
const PASSPHRASE = 'bomb test';
/** A run that has not ended by then hangs (a reader that rescans what it accumulates, say): a failure. */
const HANG = 120_000;
const cheap: NewKeySpec = { passphrase: PASSPHRASE, kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } };

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// Buffer.alloc's zeros come from calloc: untouched, they cost this process no memory.
let zstdBombFrame: Buffer | undefined;
let gzipBombFrame: Buffer | undefined;
/** One stored frame that expands to BOMB zeros (gzip: 64 MiB; deflate expands at most ~1000:1). */
function bombFrame(codec: 'zstd' | 'gzip'): Buffer {
  if (codec === 'zstd') return (zstdBombFrame ??= zlib.zstdCompressSync(Buffer.alloc(BOMB)));
  return (gzipBombFrame ??= zlib.gzipSync(Buffer.alloc(64 << 20), { level: 9 }));
}

/** zstd of some lines followed by `zeros` zero bytes, compressed as a stream (never held whole). */
async function zstdLinesThenZeros(text: string, zeros: number): Promise<Buffer> {
  const z = zlib.createZstdCompress();
  const out = readAll(z);
  z.write(text);
  const mib = Buffer.alloc(1 << 20);
  for (let left = zeros; left > 0; left -= mib.length) {
    if (!z.write(mib.subarray(0, Math.min(left, mib.length)))) await new Promise((r) => z.once('drain', r));
  }
  z.end();
  return out;
}

interface Crafted {
  dir: string;
  store: LocalStore;
  id: string;
  archiveKey: string;
  manifestKey: string;
}

interface CraftOptions {
  codec?: 'zstd' | 'gzip';
  encrypted?: boolean;
  /** Frames (1, 2, 3 hold nothing but src/big.bin's zeros) stored as bombs instead. */
  bombFrames?: number[];
  /** A zstd frame expanding to BOMB zeros appended to the manifest's entries (no newline in it). */
  entriesBomb?: boolean;
  /** The manifest's head frame is a bomb instead of the header and archives lines. */
  headBomb?: boolean;
}

/**
 * A repository holding one snapshot: src/, src/ok.txt (frame 0), src/big.bin (4 MiB − 2 KiB of
 * zeros: the end of frame 0 and all of frames 1–3), src/after.txt (frame 4), as a real tar cut in
 * 1 MiB frames, each compressed on its own with a correct frame table, the manifest encoded as
 * the backup writes it. Bomb frames keep their place and table entry ([stored, 1 MiB]): their
 * first MiB is even the right bytes, only they go on far past it.
 */
async function craft(label: string, o: CraftOptions = {}): Promise<Crafted> {
  const codec = o.codec ?? 'zstd';
  const dir = fs.mkdtempSync(path.join(work, `${label}-`));
  const store = new LocalStore(dir);
  if (o.encrypted) await Repository.init(store, { encryption: cheap });
  const repo = o.encrypted ? await Repository.open(store, { passphrase: PASSPHRASE }) : (await Repository.openOrInit(store)).repo;
  const id = newSnapshotId();
  const archiveKey = repo.archiveKey(id, codec);
  const mtime = 1_700_000_000;
  const tar: Buffer[] = [];
  let offset = 0;
  const put = (b: Buffer) => {
    tar.push(b);
    offset += b.length;
  };
  const entries: Entry[] = [];
  const add = (p: string, type: 'dir' | 'file', content?: Buffer) => {
    const th: TarHeader = { path: p, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: content?.length ?? 0, mtime };
    const e: Entry = {
      path: p,
      type,
      mode: th.mode,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      mtime: mtime * 1000,
      ctime: mtime * 1000,
      ino: entries.length + 1,
      size: 0,
      header: offset,
    };
    put(encodeHeader(th));
    if (content) {
      Object.assign(e, { size: content.length, archive: 0, offset, sha256: sha(content) });
      put(content);
      put(Buffer.alloc(padding(content.length)));
    }
    entries.push(e);
  };
  add('src', 'dir');
  add('src/ok.txt', 'file', Buffer.from('fine\n'));
  add('src/big.bin', 'file', Buffer.alloc(4 * FRAME - 2048));
  assert.equal(offset, 4 * FRAME, 'big.bin ends where frame 3 does');
  add('src/after.txt', 'file', Buffer.from('after\n'));
  put(END_OF_ARCHIVE);
  const plain = Buffer.concat(tar);

  const sealer = repo.archiveSealer(id);
  const count = Math.ceil(plain.length / FRAME);
  const stored: Buffer[] = [];
  const frames: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    const part = plain.subarray(i * FRAME, (i + 1) * FRAME);
    let compressed: Buffer;
    if (o.bombFrames?.includes(i)) {
      assert.ok(part.equals(Buffer.alloc(part.length)), `frame ${i} holds only zeros`);
      compressed = bombFrame(codec);
    } else {
      compressed = codec === 'zstd' ? zlib.zstdCompressSync(part) : zlib.gzipSync(part);
    }
    const s = sealer ? sealer.key.seal(compressed, i, i === count - 1) : compressed;
    stored.push(s);
    frames.push([s.length, part.length]);
  }
  const archive = Buffer.concat(stored);
  await store.put(archiveKey, archive);
  const ref: ArchiveRef = {
    id,
    key: archiveKey,
    codec,
    size: archive.length,
    sha256: sha(archive),
    uncompressedSize: plain.length,
    frames,
    ...(sealer ? { encryption: sealer.encryption } : {}),
  };
  const now = new Date().toISOString();
  const header: ManifestHeader = {
    format: MANIFEST_FORMAT,
    version: LEGACY_MANIFEST_VERSION,
    id,
    time: now,
    endTime: now,
    kind: 'full',
    host: 'mallory',
    sources: [{ path: '/home/mallory/src', name: 'src' }],
    tags: [],
    toolVersion: '0.1.0',
    options: { codec, frameSize: FRAME, excludes: [] },
    stats: { ...emptyStats(), files: 3, dirs: 1, archiveBytes: archive.length },
    warnings: [],
  };
  const writer = await LegacyEntryWriter.create();
  const manifestKey = repo.manifestKey(id);
  try {
    for (const e of entries) await writer.add(e);
    await writer.finish();
    // Readers decode every zstd frame of the entries, one after the other.
    if (o.entriesBomb) fs.appendFileSync(writer.file, bombFrame('zstd'));
    const head = o.headBomb ? bombFrame('zstd') : encodeManifestHead(header, [ref]);
    await store.put(manifestKey, repo.encodeManifest(id, head, fs.readFileSync(writer.file)), { createOnly: true });
  } finally {
    await writer.dispose();
  }
  return { dir, store, id, archiveKey, manifestKey };
}

const keysFor = (encrypted: boolean | undefined) => (encrypted ? { keys: { passphrase: PASSPHRASE } } : {});

/** The message an archive bomb must be refused with: the archive named, the frame, its bound. */
const expandsPast = (archiveKey: string, frame: number) =>
  new RegExp(`archive .*${archiveKey.replace(/[.]/g, '\\.')}: frame ${frame} expands past its ${FRAME} bytes in the frame table`);

describe('frames are decompressed with their frame-table size as the bound', () => {
  test('zstd and gzip frames past the bound are refused (FrameExpansionError); none, too; a frame at its bound passes', async () => {
    for (const codec of ['zstd', 'gzip'] as const) {
      await assert.rejects(
        decompressFrame(codec, bombFrame(codec), FRAME),
        (e) => e instanceof FrameExpansionError && e.limit === FRAME,
        codec,
      );
      const exact = codec === 'zstd' ? zlib.zstdCompressSync(Buffer.alloc(FRAME, 7)) : zlib.gzipSync(Buffer.alloc(FRAME, 7));
      assert.equal((await decompressFrame(codec, exact, FRAME)).length, FRAME);
      await assert.rejects(decompressFrame(codec, exact, FRAME - 1), FrameExpansionError);
      // An empty frame (an encrypted archive's last one, when the tar ends on a frame boundary).
      const empty = codec === 'zstd' ? zlib.zstdCompressSync(Buffer.alloc(0)) : zlib.gzipSync(Buffer.alloc(0));
      assert.equal((await decompressFrame(codec, empty, 0)).length, 0);
    }
    await assert.rejects(decompressFrame('none', Buffer.alloc(10), 9), FrameExpansionError);
  });

  test('a frame table that claims more than a frame may hold is refused at that frame; the frames before it still read', async () => {
    const { store, archiveKey } = await craft('table');
    const repo = await Repository.open(store);
    const id = (await repo.snapshotIds())[0]!;
    const m = await repo.loadManifest(id);
    const ref = m.archives[0]!;
    await m.dispose();
    // Frame 1 says it holds 256 MiB (a table bomb: the reader would size its buffer by it).
    const lying: ArchiveRef = { ...ref, frames: ref.frames.map(([c, u], i) => (i === 1 ? [c, BOMB] : [c, u])) };
    const stats = { bytesFetched: 0, requests: 0 };
    const cursor = new ArchiveCursor(store, lying, [[0, lying.frames.length - 1]], stats);
    const got: Buffer[] = [];
    await cursor.read(1024, 5, (c) => got.push(c));
    assert.equal(Buffer.concat(got).toString(), 'fine\n');
    await assert.rejects(
      cursor.read(FRAME, 10, () => {}),
      (e) =>
        e instanceof IntegrityError &&
        new RegExp(
          `${archiveKey}: frame 1 claims ${BOMB} bytes in the frame table, more than a frame may hold \\(${MAX_FRAME_SIZE}\\)`,
        ).test(e.message),
    );
    await cursor.close();
  });

  test('writers refuse what readers would: a frame size past 16 MiB, a manifest head past 64 MiB', () => {
    assert.throws(() => new FrameWriter({ codec: 'zstd', frameSize: MAX_FRAME_SIZE + 1, output: new PassThrough() }), UsageError);
    new FrameWriter({ codec: 'zstd', frameSize: MAX_FRAME_SIZE, output: new PassThrough() }).close();
    const now = new Date().toISOString();
    const header: ManifestHeader = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      id: newSnapshotId(),
      time: now,
      endTime: now,
      kind: 'full',
      host: 'h',
      sources: [],
      tags: ['x'.repeat(MAX_MANIFEST_HEAD)],
      toolVersion: '0.1.0',
      options: { codec: 'zstd', frameSize: FRAME, excludes: [] },
      stats: emptyStats(),
      warnings: [],
    };
    assert.throws(
      () => encodeManifestHead(header, []),
      new RegExp(`the manifest's head would be \\d+ bytes, more than the format's ${MAX_MANIFEST_HEAD}`),
    );
  });
});

const variants = [
  { name: 'zstd', codec: 'zstd' as const },
  { name: 'gzip', codec: 'gzip' as const },
  { name: 'encrypted zstd', codec: 'zstd' as const, encrypted: true },
];

for (const v of variants) {
  describe(`archive bomb, ${v.name}: three frames of a file expand far past their 1 MiB`, () => {
    let r: Crafted;
    before(async () => {
      r = await craft(`arch-${v.name.replace(/ /g, '-')}`, { codec: v.codec, encrypted: v.encrypted, bombFrames: [1, 2, 3] });
    });

    test('restore fails naming the file, the archive and the frame', async () => {
      const target = path.join(r.dir, 'restore-target');
      await assert.rejects(
        runRestore({ store: r.store, ...keysFor(v.encrypted), snapshot: 'latest', target }),
        (e) => e instanceof IntegrityError && /^src\/big\.bin: /.test(e.message) && expandsPast(r.archiveKey, 1).test(e.message),
      );
      assert.ok(!fs.existsSync(path.join(target, 'src', 'big.bin')), 'no partial file left');
    });

    test('restore --skip-damaged leaves out the file the bomb frames hold and restores the rest', async () => {
      const target = path.join(r.dir, 'restore-skip');
      const res = await runRestore({ store: r.store, ...keysFor(v.encrypted), snapshot: 'latest', target, skipDamaged: true });
      assert.deepEqual(
        res.damaged.map((d) => d.path),
        ['src/big.bin'],
      );
      assert.match(res.damaged[0]!.problem, expandsPast(r.archiveKey, 1));
      assert.equal(fs.readFileSync(path.join(target, 'src', 'ok.txt'), 'utf8'), 'fine\n');
      assert.equal(fs.readFileSync(path.join(target, 'src', 'after.txt'), 'utf8'), 'after\n');
      assert.ok(!fs.existsSync(path.join(target, 'src', 'big.bin')));
    });

    test('verify --deep reports the frame like other damage and checks the other files', async () => {
      const res = await runVerify({ store: r.store, ...keysFor(v.encrypted), snapshot: 'latest', deep: true });
      assert.equal(res.ok, false);
      const archive = res.problems.filter((p) => p.where === r.archiveKey);
      assert.equal(archive.length, 1, JSON.stringify(res.problems));
      assert.match(archive[0]!.problem, expandsPast(r.archiveKey, 1));
      assert.ok(
        res.problems.some((p) => p.where === 'src/big.bin' && expandsPast(r.archiveKey, 1).test(p.problem)),
        JSON.stringify(res.problems),
      );
      assert.equal(res.problems.length, 2, JSON.stringify(res.problems));
      assert.equal(res.filesChecked, 2); // ok.txt and after.txt, read past the damage
    });

    test('cat refuses the file; a file outside the bomb frames still prints', async () => {
      await assert.rejects(
        runCat({ store: r.store, ...keysFor(v.encrypted), snapshot: 'latest', path: 'src/big.bin', output: new PassThrough().resume() }),
        (e) => e instanceof IntegrityError && expandsPast(r.archiveKey, 1).test(e.message),
      );
      const out = new PassThrough();
      const text = readAll(out);
      await runCat({ store: r.store, ...keysFor(v.encrypted), snapshot: 'latest', path: 'src/after.txt', output: out });
      out.end();
      assert.equal((await text).toString(), 'after\n');
    });
  });
}

describe('manifest bombs', () => {
  test('lines() holds one line at most: split anywhere, UTF-8 kept, a line past its bound refused as soon as it passes', async () => {
    let pulled = 0;
    async function* from(...chunks: Buffer[]) {
      for (const c of chunks) {
        pulled++;
        yield c;
      }
    }
    const all = async (source: AsyncIterable<Buffer>, opts?: Parameters<typeof lines>[1]) => {
      const out: string[] = [];
      for await (const l of lines(source, opts)) out.push(l);
      return out;
    };
    const text = Buffer.from('\ufeff{"a":"é€😀"}\n\nsecond line\nlast, no newline');
    const want = ['{"a":"é€😀"}', '', 'second line', 'last, no newline'];
    for (let cut = 1; cut < text.length; cut++) {
      assert.deepEqual(await all(from(text.subarray(0, cut), text.subarray(cut))), want, `cut at ${cut}`);
    }
    assert.deepEqual(
      await all(from(text), { skipEmpty: true }),
      want.filter((l) => l !== ''),
    );
    // Line 2 may take 10 bytes: refused when its 11th arrives, the chunk after never pulled.
    pulled = 0;
    await assert.rejects(
      all(from(Buffer.from('ok\nabcdefgh'), Buffer.from('ijk'), Buffer.from('never pulled\n')), { maxLine: () => 10 }),
      (e) => e instanceof LineTooLongError && e.line === 2 && e.max === 10,
    );
    assert.equal(pulled, 2);
  });

  test('an entries frame that expands without a newline is refused by ls, restore and verify, naming the manifest', {
    timeout: HANG,
  }, async () => {
    for (const encrypted of [false, true]) {
      const r = await craft(`entries-${encrypted ? 'enc' : 'plain'}`, { encrypted, entriesBomb: true });
      const tooLong = new RegExp(`manifest .*${r.manifestKey.replace(/[.]/g, '\\.')}: entry 5 runs past ${MAX_ENTRY_LINE} bytes`);
      const seen: string[] = [];
      await assert.rejects(
        runLs({ store: r.store, ...keysFor(encrypted), snapshot: 'latest', onEntry: (e) => void seen.push(e.path) }),
        (e) => e instanceof IntegrityError && tooLong.test(e.message),
      );
      assert.deepEqual(seen, ['src', 'src/ok.txt', 'src/big.bin', 'src/after.txt']);
      const target = path.join(r.dir, 'target');
      await assert.rejects(
        runRestore({ store: r.store, ...keysFor(encrypted), snapshot: 'latest', target }),
        (e) => e instanceof IntegrityError && tooLong.test(e.message),
      );
      assert.ok(!fs.existsSync(target), 'nothing written: the manifest is checked whole first');
      const v = await runVerify({ store: r.store, ...keysFor(encrypted), snapshot: 'latest' });
      assert.ok(
        v.problems.some((p) => tooLong.test(p.problem)),
        JSON.stringify(v.problems),
      );
    }
  });

  test('a head frame that expands without a newline is refused by list, prune and restore', { timeout: HANG }, async () => {
    for (const encrypted of [false, true]) {
      const r = await craft(`head-${encrypted ? 'enc' : 'plain'}`, { encrypted, headBomb: true });
      const repo = await Repository.open(r.store, encrypted ? { passphrase: PASSPHRASE } : undefined);
      const listed = await repo.listBackups();
      assert.equal(listed.length, 1);
      assert.ok('error' in listed[0]!, JSON.stringify(listed[0]));
      assert.match((listed[0] as { error: string }).error, new RegExp(`header line decompresses to more than ${MAX_MANIFEST_HEAD} bytes`));
      await assert.rejects(
        readManifestHead(repo, r.id),
        (e) =>
          e instanceof IntegrityError &&
          (encrypted
            ? new RegExp(`head segment decompresses to more than ${MAX_MANIFEST_HEAD} bytes`)
            : new RegExp(`header line runs past ${MAX_MANIFEST_HEAD} bytes`)
          ).test(e.message),
      );
      await assert.rejects(
        runRestore({ store: r.store, ...keysFor(encrypted), snapshot: 'latest', target: path.join(r.dir, 'target') }),
        (e) => e instanceof IntegrityError && new RegExp(`header line runs past ${MAX_MANIFEST_HEAD} bytes`).test(e.message),
      );
    }
  });
});

function runRecord(i: number): RunRecord {
  const time = new Date(Date.UTC(2026, 0, 1) + i * 3_600_000);
  return {
    id: `${time.toISOString().replace(/[-:]/g, '')}-${(0x10000000 + i).toString(16)}`,
    time: time.toISOString(),
    host: 'host-a',
    sources: ['/data'],
    sourceKey: sourceKeyOf('host-a', ['/data']),
    tags: [],
    kind: 'full',
    ok: true,
    durationMs: 1000,
    files: 100,
    bytesIn: 5000,
    bytesTotal: 50_000,
    bytesStored: 2000,
    compressionRatio: 2.5,
    newFiles: 1,
    changedFiles: 2,
    deletedFiles: 0,
    warnings: 0,
  };
}

/**
 * A repository whose history holds two bomb segments and a good one: a record then BOMB zeros
 * (never a newline), one record repeated 600,000 times (~240 MB of valid lines from ~20 KB),
 * and one more record.
 */
async function craftHistory(label: string): Promise<{ dir: string; store: LocalStore }> {
  const dir = fs.mkdtempSync(path.join(work, `${label}-`));
  const store = new LocalStore(dir);
  await Repository.openOrInit(store);
  await store.put('history/segments/a_a-00000001.ndjson.zst', await zstdLinesThenZeros(`${JSON.stringify(runRecord(1))}\n`, BOMB));
  const line = `${JSON.stringify(runRecord(3))}\n`;
  const z = zlib.createZstdCompress();
  const repeated = readAll(z);
  for (let i = 0; i < 600; i++) z.write(line.repeat(1000));
  z.end();
  const seg = await repeated;
  assert.ok(seg.length < 64 << 10, `${seg.length} bytes stored`);
  await store.put('history/segments/c_c-00000003.ndjson.zst', seg);
  await store.put('history/segments/b_b-00000002.ndjson.zst', zlib.zstdCompressSync(`${JSON.stringify(runRecord(2))}\n`));
  return { dir, store };
}

describe('history segment bombs', () => {
  test('a segment that expands without a newline is skipped with a warning; one record repeated reads once', {
    timeout: HANG,
  }, async () => {
    const { store } = await craftHistory('history');
    const warnings: string[] = [];
    const records = await readHistory(store, { onWarning: (m) => warnings.push(m) });
    assert.deepEqual(
      records.map((x) => x.id),
      [runRecord(2).id, runRecord(3).id],
    );
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(
      warnings[0]!,
      /segment .*a_a-00000001\.ndjson\.zst cannot be decompressed \(a line runs past 1048576 bytes\); its records are skipped/,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The CLI in a child process, its peak RSS read at exit by a preloaded module: the kernel's
// high-water mark of the process's own memory (VmHWM). Not getrusage's maxRSS: Linux carries
// that over from the image before exec, i.e. from this test process, forked to start the child.

const preload = path.join(work, 'peak-rss.mjs');
fs.writeFileSync(
  preload,
  `import { readFileSync, writeFileSync } from 'node:fs';
process.on('exit', () => {
  const kib = /^VmHWM:\\s*(\\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))[1];
  writeFileSync(process.env.S3B_TEST_PEAK_RSS_FILE, kib);
});
`,
);
const env = isolatedEnv(path.join(work, 'home'));
let runs = 0;

interface Measured {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Peak resident set size of the whole process, MB. */
  peakMB: number;
}

/** Run the CLI in a child (killed after timeoutMs: a hang is a failure too), with its peak RSS. */
function measured(args: string[], extraEnv: NodeJS.ProcessEnv = {}, timeoutMs = HANG): Promise<Measured> {
  const rssFile = path.join(work, `peak-rss-${++runs}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', pathToFileURL(preload).href, BIN, ...args], {
      env: { ...process.env, ...env, ...extraEnv, S3B_TEST_PEAK_RSS_FILE: rssFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut)
        return reject(new Error(`s3backup ${args[0]} did not finish in ${timeoutMs / 1000} s (killed); stderr: ${stderr.slice(-2000)}`));
      if (!fs.existsSync(rssFile))
        return reject(
          new Error(`s3backup ${args[0]} ended (${signal ?? code}) without reporting its peak RSS; stderr: ${stderr.slice(-2000)}`),
        );
      resolve({ code, stdout, stderr, peakMB: Number(fs.readFileSync(rssFile, 'utf8')) / 1024 });
    });
  });
}

/** Report the peak RSS and check it first: an unbounded reader is what the bomb blows. */
function bounded(t: { diagnostic: (m: string) => void }, what: string, r: Measured): void {
  t.diagnostic(`${what}: exit ${r.code}, peak RSS ${r.peakMB.toFixed(0)} MB`);
  assert.ok(
    r.peakMB < RSS_LIMIT_MB,
    `${what}: peak RSS ${r.peakMB.toFixed(0)} MB, limit ${RSS_LIMIT_MB} MB (the bomb is 3 × ${BOMB >> 20} MiB); stderr: ${r.stderr.slice(-1000)}`,
  );
}

describe('the CLI stays bounded on bombs (child process, peak RSS)', () => {
  for (const encrypted of [false, true]) {
    test(`archive bomb${encrypted ? ', encrypted' : ''}: restore, restore --skip-damaged, cat, verify --deep`, async (t) => {
      const r = await craft(`cli-arch-${encrypted ? 'enc' : 'plain'}`, { encrypted, bombFrames: [1, 2, 3] });
      const pass = encrypted ? { S3BACKUP_PASSWORD: PASSPHRASE } : {};
      const bomb = expandsPast(r.archiveKey, 1);

      const restore = await measured(['restore', 'latest', '--repo', r.dir, '--target', path.join(r.dir, 't1')], pass);
      bounded(t, 'restore', restore);
      assert.equal(restore.code, 1, restore.stderr);
      assert.match(restore.stderr, bomb);

      const skip = await measured(['restore', 'latest', '--repo', r.dir, '--target', path.join(r.dir, 't2'), '--skip-damaged'], pass);
      bounded(t, 'restore --skip-damaged', skip);
      assert.equal(skip.code, 3, skip.stderr);
      assert.match(skip.stderr, /src\/big\.bin/);
      assert.equal(fs.readFileSync(path.join(r.dir, 't2', 'src', 'after.txt'), 'utf8'), 'after\n');

      const cat = await measured(['cat', 'latest', 'src/big.bin', '--repo', r.dir], pass);
      bounded(t, 'cat', cat);
      assert.equal(cat.code, 1, cat.stderr);
      assert.match(cat.stderr, bomb);

      const verify = await measured(['verify', 'latest', '--deep', '--repo', r.dir], pass);
      bounded(t, 'verify --deep', verify);
      assert.equal(verify.code, 1, verify.stderr);
      assert.match(verify.stdout + verify.stderr, bomb);
    });
  }

  test('manifest bombs: ls and restore of an entries bomb, list of a head bomb', async (t) => {
    const r = await craft('cli-entries', { entriesBomb: true });
    const ls = await measured(['ls', 'latest', '--repo', r.dir]);
    bounded(t, 'ls', ls);
    assert.equal(ls.code, 1, ls.stderr);
    assert.match(ls.stderr, new RegExp(`entry 5 runs past ${MAX_ENTRY_LINE} bytes`));
    const restore = await measured(['restore', 'latest', '--repo', r.dir, '--target', path.join(r.dir, 't')]);
    bounded(t, 'restore', restore);
    assert.equal(restore.code, 1, restore.stderr);
    assert.match(restore.stderr, new RegExp(`entry 5 runs past ${MAX_ENTRY_LINE} bytes`));

    const h = await craft('cli-head', { headBomb: true });
    const list = await measured(['list', '--repo', h.dir]);
    bounded(t, 'list', list);
    // list reads each manifest's head (header and archives lines): the header line is refused there.
    assert.match(list.stdout + list.stderr, new RegExp(`its header line runs past ${MAX_MANIFEST_HEAD} bytes \\(refused`));
    assert.equal(list.code, 3);
  });

  test('history segment bombs: history skips the one, reads the other as one record', async (t) => {
    const { dir } = await craftHistory('cli-history');
    const h = await measured(['history', '--repo', dir, '--json']);
    bounded(t, 'history', h);
    assert.equal(h.code, 3, h.stderr); // 3: done, with warnings
    const doc = JSON.parse(h.stdout);
    assert.equal(doc.runs.length, 2);
    assert.match(doc.warnings.join('\n'), /a line runs past 1048576 bytes/);
  });
});
