/**
 * A minimal POSIX.1-2001 (pax) tar header encoder. We write tar ourselves rather than through a
 * streaming tar library because the backup engine needs the exact byte offset of every header
 * and of every file's data inside the uncompressed stream (the manifest records them for ranged
 * restores), and copies file data straight into compression frames.
 *
 * Plain ustar headers are used whenever the entry fits; a pax extended header ('x') carries what
 * does not: long or non-ASCII paths and link targets (as bytes, with hdrcharset=BINARY, when
 * they are not UTF-8), sizes ≥ 8 GiB, large uids/gids.
 */

import { isTextName, nameToBytes } from './names.ts';

export const BLOCK = 512;

export type TarType = 'file' | 'dir' | 'symlink' | 'hardlink';

export interface TarHeader {
  /** Path inside the archive, "/"-separated, relative; directories without trailing slash. */
  path: string;
  type: TarType;
  mode: number;
  uid: number;
  gid: number;
  /** Content size (files only; 0 for others). */
  size: number;
  /** Seconds since the epoch (whole seconds go in ustar; the manifest keeps the fraction). */
  mtime: number;
  /** Symlink target, or the archive path of the first link for hard links. */
  linkname?: string | undefined;
  /** Extended attributes: one pax SCHILY.xattr.NAME record each (see xattrRecord). */
  xattrs?: ReadonlyMap<string, Buffer> | undefined;
}

const TYPEFLAG: Record<TarType, string> = { file: '0', hardlink: '1', symlink: '2', dir: '5' };
const MAX_OCTAL_11 = 0o77777777777; // largest value of a 12-byte octal field
const MAX_OCTAL_7 = 0o7777777;

/** Bytes of zero padding after `size` bytes of data so the next header starts on a block. */
export function padding(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

/** Two zero blocks end a tar archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

function isPlainAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/** Writes an ASCII string (every ustar field we fill holds one: see asciiFallback) byte by byte. */
function writeAscii(buf: Buffer, s: string, offset: number, length: number): void {
  const n = Math.min(s.length, length);
  for (let i = 0; i < n; i++) buf[offset + i] = s.charCodeAt(i);
}

/**
 * A zero-padded octal field ending in NUL, digit by digit: the header is encoded ~50,000 times
 * per backup of a big tree, and formatting through strings and Buffer.write cost ~8 µs a header.
 */
function writeOctal(buf: Buffer, value: number, offset: number, length: number): void {
  let v = Math.max(0, Math.floor(value));
  buf[offset + length - 1] = 0;
  for (let i = offset + length - 2; i >= offset; i--) {
    buf[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
}

/** "ustar\0" and version "00". */
const USTAR_MAGIC = Buffer.from('ustar\u000000', 'latin1');

/** One pax record; a value given as bytes is written as they are (see hdrcharset below). */
function paxRecord(key: string, value: string | Buffer): Buffer {
  // "%d %s=%s\n", where %d counts the whole record including its own digits.
  const body = Buffer.concat([Buffer.from(` ${key}=`), typeof value === 'string' ? Buffer.from(value) : value, NEWLINE]);
  const bodyLen = body.length;
  let len = bodyLen + String(bodyLen).length;
  if (String(len).length !== String(len - bodyLen).length) len = bodyLen + String(len).length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

const NEWLINE = Buffer.from('\n');

/**
 * A SCHILY.xattr.NAME record, as GNU tar and bsdtar write and read them: the value is the
 * attribute's raw bytes (the record's length says where it ends, so any byte may occur), and
 * in the name "%" and "=" are written %25 and %3D (GNU tar's escape: "=" would end the keyword).
 */
export function xattrRecord(name: string, value: Buffer): Buffer {
  return paxRecord(`SCHILY.xattr.${name.replace(/%/g, '%25').replace(/=/g, '%3D')}`, value);
}

/** The name in a SCHILY.xattr keyword (after the prefix), unescaped (see xattrRecord). */
export function xattrNameOfKeyword(escaped: string): string {
  return escaped.replace(/%3D/g, '=').replace(/%25/g, '%');
}

function ustarBlock(h: TarHeader, name: string, linkname: string, typeflag: string, into?: Buffer, at = 0): Buffer {
  const b = into ?? Buffer.alloc(BLOCK);
  if (into) b.fill(0, at, at + BLOCK);
  writeAscii(b, name, at, 100);
  writeOctal(b, h.mode & 0o7777, at + 100, 8);
  writeOctal(b, h.uid > MAX_OCTAL_7 ? 0 : h.uid, at + 108, 8);
  writeOctal(b, h.gid > MAX_OCTAL_7 ? 0 : h.gid, at + 116, 8);
  writeOctal(b, h.size > MAX_OCTAL_11 ? 0 : h.size, at + 124, 12);
  writeOctal(b, Math.min(Math.max(0, Math.floor(h.mtime)), MAX_OCTAL_11), at + 136, 12);
  b.fill(0x20, at + 148, at + 156); // checksum is computed with its own field as spaces
  b[at + 156] = typeflag.charCodeAt(0);
  writeAscii(b, linkname, at + 157, 100);
  USTAR_MAGIC.copy(b, at + 257);
  let sum = 0;
  for (let i = at; i < at + BLOCK; i++) sum += b[i]!;
  writeOctal(b, sum, at + 148, 7); // six digits and a NUL, then the space already there
  return b;
}

/**
 * The pax records an entry needs (none for most: short ASCII names, small numbers). A path or
 * link target that is not valid UTF-8 (escaped bytes, see names.ts) goes in as its exact bytes,
 * after `hdrcharset=BINARY`, which tells readers (GNU tar, bsdtar) that the header's names are
 * bytes, not UTF-8, to be used as they are: they then extract the exact name.
 */
function paxRecords(h: TarHeader, name: string, linkname: string): Buffer[] {
  const records: Buffer[] = [];
  const fits = (s: string) => isPlainAscii(s) && s.length <= 100;
  if (!(isTextName(name) && isTextName(linkname))) records.push(paxRecord('hdrcharset', 'BINARY'));
  if (!fits(name)) records.push(paxRecord('path', nameToBytes(name)));
  if (linkname && !fits(linkname)) records.push(paxRecord('linkpath', nameToBytes(linkname)));
  if (h.size > MAX_OCTAL_11) records.push(paxRecord('size', String(h.size)));
  if (h.uid > MAX_OCTAL_7) records.push(paxRecord('uid', String(h.uid)));
  if (h.gid > MAX_OCTAL_7) records.push(paxRecord('gid', String(h.gid)));
  return records;
}

const headerName = (h: TarHeader) => (h.type === 'dir' ? `${h.path}/` : h.path);

/**
 * Encode the header block(s) for one entry: an optional pax extended header with its data,
 * then the ustar header. Content (for files) follows, padded with `padding(size)`.
 */
export function encodeHeader(h: TarHeader): Buffer {
  const name = headerName(h);
  const linkname = h.linkname ?? '';
  const records = paxRecords(h, name, linkname);
  const ustar = ustarBlock(h, asciiFallback(name, 100), asciiFallback(linkname, 100), TYPEFLAG[h.type]);
  if (h.xattrs?.size) for (const [k, v] of h.xattrs) records.push(xattrRecord(k, v));
  if (records.length === 0) return ustar;
  const data = Buffer.concat(records);
  const paxName = `PaxHeaders/${asciiFallback(h.path.split('/').pop() ?? 'x', 80)}`;
  const pax = ustarBlock({ path: paxName, type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: h.mtime }, paxName, '', 'x');
  return Buffer.concat([pax, data, Buffer.alloc(padding(data.length)), ustar]);
}

/**
 * The common case of encodeHeader without a buffer of its own: an entry that needs no pax
 * header is one block, written into buf at `at` (which must have BLOCK bytes of room).
 * Returns BLOCK, or 0 if the entry needs pax records (then use encodeHeader).
 */
export function encodeHeaderInto(h: TarHeader, buf: Buffer, at: number): number {
  const name = headerName(h);
  const linkname = h.linkname ?? '';
  if (h.xattrs?.size || paxRecords(h, name, linkname).length > 0) return 0;
  if (buf.length - at < BLOCK) throw new RangeError(`no room for a tar header at ${at} of ${buf.length}`);
  ustarBlock(h, name, linkname, TYPEFLAG[h.type], buf, at);
  return BLOCK;
}

/** A best-effort ASCII name for the ustar field, for readers that ignore pax headers. */
function asciiFallback(s: string, max: number): string {
  if (fitsBytes(s, max) && isPlainAscii(s)) return s;
  let out = s.replace(/[^\x20-\x7e]/g, '_');
  if (out.length > max) out = out.slice(out.length - max);
  return out;
}

function fitsBytes(s: string, max: number): boolean {
  return Buffer.byteLength(s) <= max;
}

/**
 * The pax extended header at the start of an entry's header blocks, if it has one: the first
 * block's typeflag is "x", its size field the length of the records that follow. Returns that
 * length (0: a plain ustar entry, no pax header).
 */
export function paxDataLength(firstBlock: Buffer): number {
  if (firstBlock.length < BLOCK || firstBlock[156] !== 0x78 /* "x" */) return 0;
  const field = firstBlock
    .toString('latin1', 124, 136)
    .replace(/[\0 ]+$/, '')
    .trim();
  const n = parseInt(field, 8);
  if (!/^[0-7]+$/.test(field) || !Number.isSafeInteger(n)) throw new Error(`pax header with a bad size field ${JSON.stringify(field)}`);
  return n;
}

/** The SCHILY.xattr records in a pax header's data (records as "%d %s=%s\n"; values raw bytes). */
export function paxXattrs(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let at = 0;
  while (at < data.length) {
    const sp = data.indexOf(0x20, at);
    const len = sp > at ? parseInt(data.toString('latin1', at, sp), 10) : NaN;
    if (!Number.isSafeInteger(len) || len <= 0 || at + len > data.length || data[at + len - 1] !== 0x0a) {
      throw new Error(`pax header record at byte ${at} is malformed`);
    }
    const eq = data.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= at + len) throw new Error(`pax header record at byte ${at} has no "="`);
    const key = data.toString('utf8', sp + 1, eq);
    if (key.startsWith('SCHILY.xattr.'))
      out.set(xattrNameOfKeyword(key.slice('SCHILY.xattr.'.length)), Buffer.from(data.subarray(eq + 1, at + len - 1)));
    at += len;
  }
  return out;
}
