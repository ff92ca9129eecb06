// Names are bytes (src/archive/names.ts): the string form of a name that is not UTF-8, exact both
// ways; what people see of it; how a command line names it; its tar header and manifest version.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import {
  displayName,
  fsPath,
  isCanonicalName,
  jsonName,
  nameFromArg,
  nameFromBytes,
  nameToBytes,
  pathFromArg,
} from '../src/archive/names.ts';
import { encodeHeader, END_OF_ARCHIVE } from '../src/archive/tar.ts';
import { runBackup } from '../src/backup/backup.ts';
import { jsonDisplayText } from '../src/cli/common.ts';
import { checkHeader, MANIFEST_FORMAT } from '../src/repo/manifest.ts';
import { Repository } from '../src/repo/repository.ts';
import { checkEntryPath, makeIncludeFilter } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import { prng, tempDir } from './helpers/tree.ts';

const work = tempDir('names');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const b = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => Buffer.from(p as string)));

test('bytes → name → bytes is exact for any bytes; valid UTF-8 is its own text; each other byte is U+DC80 + byte', () => {
  assert.equal(nameFromBytes(b('café 😀')), 'café 😀');
  assert.equal(nameFromBytes(b('bad-', [0xff, 0xfe])), 'bad-\udcff\udcfe');
  // A truncated sequence, an overlong "/", an encoded surrogate, a lead byte at the end.
  assert.equal(
    nameFromBytes(b([0xe2, 0x82], 'x', [0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xc3])),
    '\udce2\udc82x\udcc0\udcaf\udced\udca0\udc80\udcc3',
  );
  const rand = prng(21);
  for (let n = 0; n < 5000; n++) {
    const bytes = Buffer.from(
      Array.from({ length: 1 + Math.floor(rand() * 12) }, () =>
        rand() < 0.5 ? 0x80 + Math.floor(rand() * 128) : Math.floor(rand() * 256),
      ),
    );
    const name = nameFromBytes(bytes);
    assert.ok(nameToBytes(name).equals(bytes), bytes.toString('hex'));
    assert.ok(isCanonicalName(name));
    assert.equal(name.isWellFormed(), bytes.toString('utf8') === name, bytes.toString('hex'));
  }
  // A valid pair whose low half is in U+DC80..U+DCFF is a character, not an escaped byte.
  assert.ok(nameToBytes('\u{10080}').equals(b('\u{10080}')));
  assert.equal(fsPath('plain'), 'plain');
  assert.ok((fsPath('x\udcff') as Buffer).equals(b('x', [0xff])));
});

test('only the canonical form is a name: escaped bytes that spell UTF-8, other lone surrogates', () => {
  assert.equal(isCanonicalName('\udcc3\udca9'), false, 'the bytes of é, escaped');
  assert.equal(isCanonicalName('a\ud800b'), false);
  assert.equal(isCanonicalName('a\udc41'), false, 'below U+DC80: no byte < 0x80 is ever escaped');
  assert.throws(() => checkEntryPath('src/\udcc3\udca9'), /not a name as s3backup stores names/);
  checkEntryPath('src/bad-\udcff');
});

test('for people: \\xHH; for JSON: the display form, and base64 of the bytes only when needed', () => {
  assert.equal(displayName('src/bad-\udcff\udcfe'), 'src/bad-\\xff\\xfe');
  assert.equal(displayName('plain 😀'), 'plain 😀');
  assert.deepEqual(jsonName('path', 'a/\udce9'), { path: 'a/\\xe9', pathBase64: b('a/', [0xe9]).toString('base64') });
  assert.deepEqual(jsonName('path', 'a/é'), { path: 'a/é' });
  // JSON text: a lone surrogate escape becomes the \xHH text; an escaped backslash before "udc" does not.
  const text = JSON.stringify({ a: 'x\udcff', b: '\\udcff', c: '\\\udcfe', d: '\u{10080}' });
  assert.deepEqual(JSON.parse(jsonDisplayText(text)), { a: 'x\\xff', b: '\\udcff', c: '\\\\xfe', d: '\u{10080}' });
});

test('command lines: \\xHH (80..ff) is the byte; in globs a doubled backslash stays a glob escape, in paths it is a backslash', () => {
  assert.equal(nameFromArg('src/bad-\\xff\\xFE'), 'src/bad-\udcff\udcfe');
  assert.equal(nameFromArg('src/\\x41 \\\\xff'), 'src/\\x41 \\\\xff', '\\x41 is left as typed; \\\\xff is a backslash then "xff"');
  assert.equal(pathFromArg('src/\\\\xff'), 'src/\\xff');
  assert.equal(pathFromArg('src/\\xff\\q\\'), 'src/\udcff\\q\\');
  const inc = makeIncludeFilter(['src/bad-\\xff*', 'lit/\\\\xff'])!;
  assert.ok(inc('src/bad-\udcff\udcfe'));
  assert.ok(!inc('src/bad-\\xff'));
  assert.ok(inc('lit/\\xff'));
  assert.ok(!inc('lit/\udcff'));
  assert.ok(makeIncludeFilter(['src/??'])!('src/\udcff\udcfe'), '? matches one byte that is not UTF-8');
});

test('tar: a name that is not UTF-8 goes in pax path/linkpath as its bytes after hdrcharset=BINARY; GNU tar makes that name', () => {
  const file = encodeHeader({ path: 'src/bad-\udcff\udcfe', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, mtime: 1_700_000_000 });
  const pax = file.subarray(512, 1024);
  assert.equal(file[156], 'x'.charCodeAt(0));
  assert.ok(pax.includes(b('hdrcharset=BINARY\n')), pax.toString('latin1'));
  assert.ok(pax.includes(b(' path=src/bad-', [0xff, 0xfe], '\n')));
  // Each record's length counts its bytes, not its characters.
  const first = pax.toString('latin1').split('\n')[0]!;
  assert.equal(first, '21 hdrcharset=BINARY');
  const link = encodeHeader({
    path: 'src/l',
    type: 'symlink',
    mode: 0o777,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 1_700_000_000,
    linkname: 't-\udce9',
  });
  assert.ok(link.includes(b(' linkpath=t-', [0xe9], '\n')));
  assert.ok(
    !encodeHeader({ path: 'src/é', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 }).includes(b('hdrcharset')),
    'UTF-8 names need none',
  );
  const tarFile = path.join(work, 'one.tar');
  fs.writeFileSync(tarFile, Buffer.concat([file, b('abc'), Buffer.alloc(509), link, END_OF_ARCHIVE]));
  const out = path.join(work, 'x');
  fs.mkdirSync(out);
  const r = spawnSync('tar', ['-xf', tarFile, '-C', out, '--warning=no-unknown-keyword'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.readFileSync(b(out, '/src/bad-', [0xff, 0xfe]), 'utf8'), 'abc');
  assert.ok(fs.readlinkSync(b(out, '/src/l'), { encoding: 'buffer' }).equals(b('t-', [0xe9])));
});

test('manifest version: 3 with names that are UTF-8 or not (older versions wrote 1 and 2; 4 holds extents); 5 is refused ("upgrade s3backup")', async () => {
  const plain = path.join(work, 'plain');
  fs.mkdirSync(plain);
  fs.writeFileSync(path.join(plain, 'é.txt'), 'x');
  const store = new LocalStore(path.join(work, 'repo'));
  const r1 = await runBackup({ store, sources: [plain] });
  const bytesy = path.join(work, 'bytesy');
  fs.mkdirSync(bytesy);
  fs.symlinkSync(b('t-', [0xe9]), path.join(bytesy, 'link'));
  const r2 = await runBackup({ store, sources: [bytesy] });
  const repo = await Repository.open(store);
  assert.equal((await repo.header(r1.id)).version, 3);
  assert.equal((await repo.header(r2.id)).version, 3);
  // A reader of version 2 refused version 3 the same way (test/fixtures/old-repos holds manifests of 1 and 2).
  const h = await repo.header(r2.id);
  assert.equal(checkHeader({ ...h, format: MANIFEST_FORMAT, version: 4 }, 'm').version, 4);
  assert.throws(() => checkHeader({ ...h, format: MANIFEST_FORMAT, version: 5 }, 'm'), /manifest version 5; this s3backup reads up to 4/);
});
