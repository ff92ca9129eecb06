// Unit tests of our pax tar header encoder (src/archive/tar.ts), parsed back by an independent
// reader (tar-stream) and by GNU tar; and of the frame writer end to end: the compressed frames
// concatenated are a stream zstd/gzip/tar read, and the frame table adds up.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, test } from 'node:test';
import { extract, type Header } from 'tar-stream';
import type { Codec } from '../src/archive/codec.ts';
import { decompressFrame } from '../src/archive/codec.ts';
import { FrameWriter } from '../src/archive/frames.ts';
import { BLOCK, encodeHeader, encodeHeaderInto, END_OF_ARCHIVE, padding, type TarHeader } from '../src/archive/tar.ts';
import { pseudoRandom, tempDir } from './helpers/tree.ts';

type ParsedHeader = Header & { pax?: Record<string, string> | null };

interface Parsed {
  header: ParsedHeader;
  data: Buffer;
}

/** Every entry of a complete tar stream, with its content, as tar-stream reads it. */
async function parseTar(buf: Buffer): Promise<Parsed[]> {
  const ex = extract();
  const out: Parsed[] = [];
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        out.push({ header: header as ParsedHeader, data: Buffer.concat(chunks) });
        next();
      });
      stream.on('error', reject);
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  ex.end(buf);
  await done;
  return out;
}

/** Only the first entry's header (for a header whose data we do not supply). */
async function parseFirstHeader(buf: Buffer): Promise<ParsedHeader> {
  const ex = extract();
  const h = await new Promise<ParsedHeader>((resolve, reject) => {
    ex.on('entry', (header) => resolve(header as ParsedHeader));
    ex.on('error', reject);
    ex.on('finish', () => reject(new Error('no entry')));
    ex.write(buf);
  });
  ex.destroy();
  return h;
}

/** One entry as a complete archive: header, content, padding, end-of-archive. */
function oneEntryArchive(h: TarHeader, content: Buffer = Buffer.alloc(0)): Buffer {
  assert.equal(content.length, h.type === 'file' ? h.size : 0);
  return Buffer.concat([encodeHeader(h), content, Buffer.alloc(padding(content.length)), END_OF_ARCHIVE]);
}

/** Verify the ustar checksum of every 512-byte header block a reader would see. */
function checksumOk(block: Buffer): boolean {
  const stored = parseInt(block.subarray(148, 156).toString('ascii').replace(/[\0 ]/g, ''), 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return stored === sum;
}

const base = { mode: 0o644, uid: 1000, gid: 1000, mtime: 1_700_000_000 };

describe('padding()', () => {
  test('pads to the next 512-byte block', () => {
    assert.equal(padding(0), 0);
    assert.equal(padding(1), 511);
    assert.equal(padding(511), 1);
    assert.equal(padding(512), 0);
    assert.equal(padding(513), 511);
    assert.equal(padding(1024), 0);
    assert.equal(padding(9 * 1024 ** 3 + 5), 507);
    for (let n = 0; n < 2048; n += 37) assert.equal((n + padding(n)) % BLOCK, 0, `n=${n}`);
    for (let n = 0; n < 2048; n += 37) assert.ok(padding(n) < BLOCK);
  });

  test('END_OF_ARCHIVE is two zero blocks', () => {
    assert.equal(END_OF_ARCHIVE.length, 2 * BLOCK);
    assert.ok(END_OF_ARCHIVE.every((b) => b === 0));
  });
});

describe('encodeHeader()', () => {
  test('a plain file fits one ustar block that tar-stream reads back', async () => {
    const content = Buffer.from('hello, tar\n');
    const h: TarHeader = { path: 'src/hello.txt', type: 'file', size: content.length, ...base, mode: 0o640 };
    const enc = encodeHeader(h);
    assert.equal(enc.length, BLOCK, 'no pax header needed');
    assert.ok(checksumOk(enc));
    assert.equal(enc.subarray(257, 263).toString('latin1'), 'ustar\0');
    const [e, ...rest] = await parseTar(oneEntryArchive(h, content));
    assert.equal(rest.length, 0);
    assert.equal(e!.header.name, 'src/hello.txt');
    assert.equal(e!.header.type, 'file');
    assert.equal(e!.header.size, content.length);
    assert.equal(e!.header.mode, 0o640);
    assert.equal(e!.header.uid, 1000);
    assert.equal(e!.header.gid, 1000);
    assert.equal(e!.header.mtime!.getTime(), 1_700_000_000_000);
    assert.deepEqual(e!.data, content);
  });

  test('a file with a 150-byte name gets a pax path', async () => {
    const name = `dir/${'n'.repeat(142)}.txt`;
    assert.equal(Buffer.byteLength(name), 150);
    const content = pseudoRandom(1000, 3);
    const h: TarHeader = { path: name, type: 'file', size: content.length, ...base };
    const enc = encodeHeader(h);
    assert.ok(enc.length > BLOCK, 'pax header expected');
    assert.equal(enc.length % BLOCK, 0);
    assert.equal(String.fromCharCode(enc[156]!), 'x', 'first block is a pax extended header');
    assert.ok(checksumOk(enc.subarray(0, BLOCK)));
    assert.ok(checksumOk(enc.subarray(enc.length - BLOCK)));
    assert.match(enc.toString('utf8'), new RegExp(`\\d+ path=${name}\\n`));
    const [e, ...rest] = await parseTar(oneEntryArchive(h, content));
    assert.equal(rest.length, 0, 'the pax header is not an entry of its own');
    assert.equal(e!.header.name, name);
    assert.equal(e!.header.type, 'file');
    assert.equal(e!.header.size, 1000);
    assert.deepEqual(e!.data, content);
  });

  test('a non-ASCII name round-trips through pax (UTF-8)', async () => {
    const name = 'unicode/日本語/ファイル-café-😀.txt';
    const content = Buffer.from('にほんご\n');
    const h: TarHeader = { path: name, type: 'file', size: content.length, ...base };
    const enc = encodeHeader(h);
    assert.equal(enc.length % BLOCK, 0);
    assert.equal(String.fromCharCode(enc[156]!), 'x');
    // The ustar fallback name is plain ASCII.
    const ustar = enc.subarray(enc.length - BLOCK);
    const fallback = ustar.subarray(0, 100).toString('latin1').replace(/\0+$/, '');
    assert.match(fallback, /^[\x20-\x7e]+$/);
    const [e] = await parseTar(oneEntryArchive(h, content));
    assert.equal(e!.header.name, name);
    assert.deepEqual(e!.data, content);
  });

  test('pax record lengths count their own digits (across the 99→100 boundary)', () => {
    // Sweep name lengths (non-ASCII, so always pax) so the record length crosses 99/100.
    let crossed = false;
    for (let n = 2; n <= 120; n++) {
      const name = 'é'.repeat(n >> 1) + 'a'.repeat(n & 1); // n bytes
      const enc = encodeHeader({ path: name, type: 'file', size: 0, ...base });
      assert.ok(enc.length > BLOCK, `n=${n}: pax expected`);
      const size = parseInt(enc.subarray(124, 136).toString('ascii'), 8);
      const data = enc.subarray(BLOCK, BLOCK + size);
      const sp = data.indexOf(0x20);
      const len = Number(data.subarray(0, sp).toString('ascii'));
      assert.equal(len, size, `n=${n}: one record, its declared length is the data length`);
      assert.equal(data[len - 1], 0x0a, `n=${n}: record must end in \\n`);
      assert.equal(data.subarray(sp + 1, len - 1).toString('utf8'), `path=${name}`);
      if (len === 100 || len === 101) crossed = true;
    }
    assert.ok(crossed, 'the sweep crossed the 2→3 digit boundary');
  });

  test('a symlink with a 200-byte target gets a pax linkpath', async () => {
    const target = `/${'t'.repeat(195)}/abc`;
    assert.equal(Buffer.byteLength(target), 200);
    const h: TarHeader = { path: 'src/link', type: 'symlink', size: 0, ...base, mode: 0o777, linkname: target };
    const enc = encodeHeader(h);
    assert.equal(enc.length % BLOCK, 0);
    assert.ok(enc.length > BLOCK);
    const [e] = await parseTar(oneEntryArchive(h));
    assert.equal(e!.header.name, 'src/link');
    assert.equal(e!.header.type, 'symlink');
    assert.equal(e!.header.linkname, target);
    assert.equal(e!.header.size, 0);
  });

  test('a short symlink, a directory and a hard link', async () => {
    const entries: TarHeader[] = [
      { path: 'src', type: 'dir', size: 0, ...base, mode: 0o755 },
      { path: 'src/a.txt', type: 'file', size: 3, ...base },
      { path: 'src/b.txt', type: 'hardlink', size: 0, ...base, linkname: 'src/a.txt' },
      { path: 'src/l', type: 'symlink', size: 0, ...base, linkname: '../elsewhere' },
    ];
    for (const h of entries) assert.equal(encodeHeader(h).length, BLOCK, `${h.path}: one block`);
    const buf = Buffer.concat([
      encodeHeader(entries[0]!),
      encodeHeader(entries[1]!),
      Buffer.from('abc'),
      Buffer.alloc(padding(3)),
      encodeHeader(entries[2]!),
      encodeHeader(entries[3]!),
      END_OF_ARCHIVE,
    ]);
    const got = await parseTar(buf);
    assert.deepEqual(
      got.map((e) => [e.header.name, e.header.type, e.header.linkname ?? null, e.header.size, e.header.mode]),
      [
        ['src/', 'directory', null, 0, 0o755],
        ['src/a.txt', 'file', null, 3, 0o644],
        ['src/b.txt', 'link', 'src/a.txt', 0, 0o644],
        ['src/l', 'symlink', '../elsewhere', 0, 0o644],
      ],
    );
    assert.equal(got[1]!.data.toString(), 'abc');
    // GNU tar agrees.
    const t = spawnSync('tar', ['-tv', '--numeric-owner', '-f', '-'], { input: buf, encoding: 'utf8' });
    assert.equal(t.status, 0, t.stderr);
    const lines = t.stdout.trim().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[0]!, /^drwxr-xr-x 1000\/1000 .* src\/$/);
    assert.match(lines[2]!, /^hrw-r--r-- .* src\/b\.txt link to src\/a\.txt$/);
    assert.match(lines[3]!, /^lrw-r--r-- .* src\/l -> \.\.\/elsewhere$/);
  });

  test('a uid of 3000000 (over 7 octal digits) goes in pax; gid too', async () => {
    const h: TarHeader = { path: 'big-ids.txt', type: 'file', size: 2, ...base, uid: 3_000_000, gid: 4_000_000 };
    const enc = encodeHeader(h);
    assert.equal(enc.length % BLOCK, 0);
    assert.match(enc.toString('latin1'), /\d+ uid=3000000\n/);
    assert.match(enc.toString('latin1'), /\d+ gid=4000000\n/);
    const [e] = await parseTar(oneEntryArchive(h, Buffer.from('hi')));
    assert.equal(e!.header.name, 'big-ids.txt');
    assert.equal(e!.header.pax?.uid, '3000000');
    assert.equal(e!.header.pax?.gid, '4000000');
    // GNU tar applies pax uid/gid.
    const t = spawnSync('tar', ['-tv', '--numeric-owner', '-f', '-'], { input: oneEntryArchive(h, Buffer.from('hi')), encoding: 'utf8' });
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /^-rw-r--r-- 3000000\/4000000\s+2 /);
  });

  test('a uid of exactly 2097151 still fits ustar', async () => {
    const h: TarHeader = { path: 'max.txt', type: 'file', size: 0, ...base, uid: 0o7777777 };
    assert.equal(encodeHeader(h).length, BLOCK);
    const [e] = await parseTar(oneEntryArchive(h));
    assert.equal(e!.header.uid, 0o7777777);
  });

  test('a size over 8 GiB goes in pax (header only)', async () => {
    const size = 9 * 1024 ** 3 + 12345;
    const h: TarHeader = { path: 'huge.bin', type: 'file', size, ...base };
    const enc = encodeHeader(h);
    assert.equal(enc.length % BLOCK, 0);
    assert.match(enc.toString('latin1'), new RegExp(`\\d+ size=${size}\\n`));
    const ustar = enc.subarray(enc.length - BLOCK);
    assert.ok(checksumOk(ustar));
    const h2 = await parseFirstHeader(enc);
    assert.equal(h2.name, 'huge.bin');
    assert.equal(h2.type, 'file');
    assert.equal(h2.size, size);
    // Exactly 8 GiB - 1 fits the 11-digit octal field; 8 GiB does not.
    assert.equal(encodeHeader({ ...h, size: 8 * 1024 ** 3 - 1 }).length, BLOCK);
    assert.ok(encodeHeader({ ...h, size: 8 * 1024 ** 3 }).length > BLOCK);
    const h3 = await parseFirstHeader(encodeHeader({ ...h, size: 8 * 1024 ** 3 - 1 }));
    assert.equal(h3.size, 8 * 1024 ** 3 - 1);
  });

  test('mode bits, old and zero mtimes', async () => {
    for (const [mode, mtime] of [
      [0o4755, 946_684_800],
      [0o1777, 0],
      [0o000, 4_102_444_800],
    ] as const) {
      const h: TarHeader = { path: `m${mode.toString(8)}`, type: 'file', size: 0, ...base, mode, mtime };
      const [e] = await parseTar(oneEntryArchive(h));
      assert.equal(e!.header.mode, mode);
      assert.equal(e!.header.mtime!.getTime(), mtime * 1000);
    }
  });

  test('every header is a whole number of blocks with valid checksums', () => {
    const cases: TarHeader[] = [
      { path: 'a', type: 'file', size: 0, ...base },
      { path: 'x'.repeat(100), type: 'file', size: 1, ...base },
      { path: 'x'.repeat(100), type: 'dir', size: 0, ...base },
      { path: 'x'.repeat(101), type: 'file', size: 1, ...base },
      { path: `${'y/'.repeat(300)}z`, type: 'file', size: 1, ...base },
      { path: 'é', type: 'symlink', size: 0, ...base, linkname: 'ü'.repeat(500) },
      { path: 'big', type: 'file', size: 2 ** 40, ...base, uid: 2 ** 30, gid: 2 ** 30 },
    ];
    for (const h of cases) {
      const enc = encodeHeader(h);
      assert.equal(enc.length % BLOCK, 0, h.path);
      // The last block is the ustar header; with pax, the first is the 'x' header.
      assert.ok(checksumOk(enc.subarray(enc.length - BLOCK)), `${h.path.slice(0, 20)}: ustar checksum`);
      if (enc.length > BLOCK) assert.ok(checksumOk(enc.subarray(0, BLOCK)), `${h.path.slice(0, 20)}: pax checksum`);
    }
  });
});

describe('FrameWriter end to end', () => {
  const work = tempDir('tar-frames');
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  const files = [
    { path: 'src/small.txt', data: Buffer.from('small\n') },
    { path: 'src/text.log', data: Buffer.from('log line number something\n'.repeat(300)) }, // ~7.8 KiB: many frames
    { path: 'src/random.bin', data: pseudoRandom(5000, 9) },
    { path: 'src/empty', data: Buffer.alloc(0) },
  ];

  const cases: { codec: Codec; decompress: string[] | undefined; ext: string }[] = [
    { codec: 'zstd', decompress: ['zstd', '-dc'], ext: 'tar.zst' },
    { codec: 'gzip', decompress: ['gzip', '-dc'], ext: 'tar.gz' },
    { codec: 'none', decompress: undefined, ext: 'tar' },
  ];

  for (const c of cases) {
    test(`codec ${c.codec}: frames of 1 KiB form a stream standard tools list`, async () => {
      const output = new PassThrough();
      const chunks: Buffer[] = [];
      output.on('data', (d: Buffer) => chunks.push(d));
      const ended = new Promise<void>((resolve) => output.on('end', resolve));
      const fw = new FrameWriter({ codec: c.codec, frameSize: 1024, output });
      const raw: Buffer[] = [];
      const put = async (b: Buffer) => {
        raw.push(b);
        await fw.write(b);
      };
      const offsets: number[] = [];
      await put(encodeHeader({ path: 'src', type: 'dir', size: 0, ...base, mode: 0o755 }));
      for (const f of files) {
        await put(encodeHeader({ path: f.path, type: 'file', size: f.data.length, ...base }));
        offsets.push(fw.offset);
        await put(f.data);
        await put(Buffer.alloc(padding(f.data.length)));
      }
      await put(encodeHeader({ path: 'src/link', type: 'symlink', size: 0, ...base, linkname: 'small.txt' }));
      await put(END_OF_ARCHIVE);
      const res = await fw.finish();
      await ended;
      const stored = Buffer.concat(chunks);
      const plain = Buffer.concat(raw);

      // The frame table adds up to what was written and what came out.
      assert.ok(res.frames.length >= Math.ceil(plain.length / 1024), `frames ${res.frames.length}`);
      assert.equal(res.frames.length, Math.ceil(plain.length / 1024));
      assert.equal(
        res.frames.reduce((s, f) => s + f[0], 0),
        stored.length,
      );
      assert.equal(
        res.frames.reduce((s, f) => s + f[1], 0),
        plain.length,
      );
      assert.equal(res.compressedSize, stored.length);
      assert.equal(res.uncompressedSize, plain.length);
      for (const [i, f] of res.frames.slice(0, -1).entries()) assert.equal(f[1], 1024, `frame ${i} is full`);
      assert.equal(res.sha256, createHash('sha256').update(stored).digest('hex'));
      if (c.codec === 'none') assert.deepEqual(stored, plain);

      // Each frame decompresses on its own to its slice of the tar stream.
      let cOff = 0;
      let uOff = 0;
      for (const [cs, us] of res.frames) {
        const d = await decompressFrame(c.codec, stored.subarray(cOff, cOff + cs), us);
        assert.deepEqual(d, plain.subarray(uOff, uOff + us));
        cOff += cs;
        uOff += us;
      }
      // Offsets recorded during the write point at the content.
      for (const [i, f] of files.entries()) assert.deepEqual(plain.subarray(offsets[i]!, offsets[i]! + f.data.length), f.data);

      // Standard tools read the concatenated frames as one stream.
      const file = path.join(work, `archive.${c.ext}`);
      fs.writeFileSync(file, stored);
      const cmd = c.decompress ? `${c.decompress.join(' ')} "${file}" | tar -t -v -f -` : `tar -t -v -f "${file}"`;
      const t = spawnSync('bash', ['-o', 'pipefail', '-c', cmd], { encoding: 'utf8' });
      assert.equal(t.status, 0, t.stderr);
      const names = t.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(/\s+/).slice(5).join(' '));
      assert.deepEqual(names, ['src/', 'src/small.txt', 'src/text.log', 'src/random.bin', 'src/empty', 'src/link -> small.txt']);
      // And extract the same bytes.
      const out = path.join(work, `x-${c.codec}`);
      fs.mkdirSync(out);
      const x = spawnSync(
        'bash',
        [
          '-o',
          'pipefail',
          '-c',
          c.decompress ? `${c.decompress.join(' ')} "${file}" | tar -x -C "${out}" -f -` : `tar -x -C "${out}" -f "${file}"`,
        ],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(x.status, 0, x.stderr);
      for (const f of files) assert.deepEqual(fs.readFileSync(path.join(out, f.path)), f.data, f.path);
      assert.equal(fs.readlinkSync(path.join(out, 'src/link')), 'small.txt');
      const tp = await parseTar(plain);
      assert.equal(tp.length, 6);
    });
  }
});

test('encodeHeaderInto writes the same block as encodeHeader, in place over old bytes, and declines entries that need pax', () => {
  const base = { mode: 0o640, uid: 1000, gid: 100, mtime: 1_700_000_000 };
  const plain: TarHeader[] = [
    { ...base, path: 'dir/file.txt', type: 'file', size: 12345 },
    { ...base, path: 'dir', type: 'dir', size: 0 },
    { ...base, path: 'dir/link', type: 'symlink', size: 0, linkname: '../elsewhere' },
    { ...base, path: 'dir/hard', type: 'hardlink', size: 0, linkname: 'dir/file.txt' },
  ];
  const buf = Buffer.alloc(3 * BLOCK, 0xa5); // old bytes that must not leak into the header
  for (const h of plain) {
    assert.equal(encodeHeaderInto(h, buf, 700), BLOCK, h.path);
    assert.deepEqual(buf.subarray(700, 700 + BLOCK), encodeHeader(h), h.path);
    assert.equal(buf[699], 0xa5, 'nothing written before');
    assert.equal(buf[700 + BLOCK], 0xa5, 'nothing written after');
  }
  const needPax: TarHeader[] = [
    { ...base, path: `long/${'x'.repeat(120)}`, type: 'file', size: 1 },
    { ...base, path: 'naïve.txt', type: 'file', size: 1 },
    { ...base, path: 'big', type: 'file', size: 0o77777777777 + 1 },
    { ...base, path: 'l', type: 'symlink', size: 0, linkname: 'ü' },
  ];
  for (const h of needPax) {
    const before = Buffer.from(buf);
    assert.equal(encodeHeaderInto(h, buf, 0), 0, h.path);
    assert.deepEqual(buf, before, 'declined: nothing written');
    assert.ok(encodeHeader(h).length > BLOCK);
  }
  assert.throws(() => encodeHeaderInto(plain[0]!, buf, buf.length - BLOCK + 1), RangeError);
});
