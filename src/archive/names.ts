import { isUtf8 } from 'node:buffer';

/**
 * Names are bytes: a file name (or symlink target) is whatever bytes the file system holds,
 * everything but "/" and NUL, and need not be valid UTF-8 (old Samba shares, Latin-1 archives,
 * files unpacked from old zips). Inside s3backup a name is a JS string decoded the way PEP 383
 * ("surrogateescape") decodes: valid UTF-8 as text, and each byte that is not part of a valid
 * UTF-8 sequence as the lone surrogate U+DC80 + byte (U+DC80..U+DCFF). Valid UTF-8 never
 * decodes to a lone surrogate, so the mapping is exact both ways, and everything that works on
 * strings (sorting, joining, glob matching, JSON, which writes a lone surrogate as "\udcff" and
 * reads it back as the same code unit) keeps working. Bytes appear only at the edges: file
 * system calls (fsPath), tar headers (nameToBytes), and what people read (displayName).
 *
 * Well-formed strings (no lone surrogate: every name that is valid UTF-8) take a fast path
 * everywhere: isWellFormed() is one native scan.
 */

const ESCAPE_BASE = 0xdc00;
/** Any lone surrogate (u flag: a valid pair is one code point, which this does not match). */
const LONE_SURROGATE = /\p{Surrogate}/gu;

/** Length of the UTF-8 sequence a lead byte starts (0: the byte cannot start one). */
function sequenceLength(c: number): number {
  return c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
}

/** A name's bytes as s3backup holds the name (see above): exact, whatever the bytes. */
export function nameFromBytes(b: Uint8Array): string {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (isUtf8(buf)) return buf.toString('utf8');
  let out = '';
  let i = 0;
  let run = 0; // start of the current run of valid UTF-8
  while (i < buf.length) {
    const n = sequenceLength(buf[i]!);
    if (n > 0 && i + n <= buf.length && isUtf8(buf.subarray(i, i + n))) {
      i += n;
      continue;
    }
    if (run < i) out += buf.toString('utf8', run, i);
    out += String.fromCharCode(ESCAPE_BASE + buf[i]!);
    i++;
    run = i;
  }
  if (run < i) out += buf.toString('utf8', run, i);
  return out;
}

/** Is this name valid UTF-8 (no byte of it escaped)? Then the string is the name. */
export function isTextName(s: string): boolean {
  return s.isWellFormed();
}

/** A name's exact bytes (the inverse of nameFromBytes). */
export function nameToBytes(s: string): Buffer {
  if (s.isWellFormed()) return Buffer.from(s, 'utf8');
  const parts: Buffer[] = [];
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc80 || c > 0xdcff) continue;
    const prev = i > 0 ? s.charCodeAt(i - 1) : 0;
    if (prev >= 0xd800 && prev <= 0xdbff) continue; // the second half of a valid pair
    if (run < i) parts.push(Buffer.from(s.slice(run, i), 'utf8'));
    parts.push(Buffer.of(c - ESCAPE_BASE));
    run = i + 1;
  }
  if (run < s.length) parts.push(Buffer.from(s.slice(run), 'utf8'));
  return Buffer.concat(parts);
}

/**
 * The path to hand to a file-system call: the string itself when it is valid UTF-8 (Node
 * encodes it so), its exact bytes otherwise (Node would write U+FFFD for each escaped byte).
 */
export function fsPath(s: string): string | Buffer {
  return s.isWellFormed() ? s : nameToBytes(s);
}

/**
 * Is this a name as nameFromBytes gives it? Not so: a lone surrogate outside U+DC80..U+DCFF,
 * or escaped bytes that form valid UTF-8 ("\udcc3\udca9" is the bytes of "é", which decode to
 * "é"): two strings for one name. Manifests come from storage we do not fully trust.
 */
export function isCanonicalName(s: string): boolean {
  if (s.isWellFormed()) return true;
  return nameFromBytes(nameToBytes(s)) === s;
}

/** A byte as people read it: "\xff". */
function hexEscape(c: string): string {
  const code = c.charCodeAt(0);
  return code >= 0xdc80 && code <= 0xdcff ? `\\x${(code - ESCAPE_BASE).toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
}

/**
 * A name (or a message holding names) for people: valid UTF-8 as text, every other byte as
 * \xHH ("bad-\xff\xfe"). Always well-formed, so it prints and serializes as it reads. Not
 * exact (a name may hold the four characters "\xff" itself): exact forms are the name's bytes,
 * or base64 of them (nameBase64).
 */
export function displayName(s: string): string {
  if (s.isWellFormed()) return s;
  return s.replace(LONE_SURROGATE, hexEscape);
}

/** A name's exact bytes as base64, for JSON (only needed when it is not valid UTF-8). */
export function nameBase64(s: string): string {
  return nameToBytes(s).toString('base64');
}

/**
 * A path for JSON output: `key` holds the display form (displayName), and when the name is not
 * valid UTF-8, `<key>Base64` holds its exact bytes. Without `<key>Base64`, `key` is exact.
 */
export function jsonName<K extends string>(key: K, s: string): Record<string, string> {
  return s.isWellFormed() ? { [key]: s } : { [key]: displayName(s), [`${key}Base64`]: nameBase64(s) };
}

/**
 * A glob or path typed by a user (argv, an exclude file), with each "\xHH" (HH from 80 to ff,
 * as `ls` shows a byte of a name that is not UTF-8) turned into that byte: so a name that is
 * not UTF-8, which no command line can carry as such (Node reads argv as UTF-8), can be named
 * by copying what `ls` shows. A doubled backslash stays a literal backslash ("\\xff" is the
 * four characters "\xff" in a glob), and "\xHH" below 80 is left as typed.
 */
export function nameFromArg(arg: string): string {
  if (!arg.includes('\\x') && !arg.includes('\\X')) return arg;
  let out = '';
  let i = 0;
  while (i < arg.length) {
    const c = arg[i]!;
    if (c !== '\\') {
      out += c;
      i++;
      continue;
    }
    const hex = arg.slice(i + 2, i + 4);
    if ((arg[i + 1] === 'x' || arg[i + 1] === 'X') && /^[89a-fA-F][0-9a-fA-F]$/.test(hex)) {
      out += String.fromCharCode(ESCAPE_BASE + parseInt(hex, 16));
      i += 4;
      continue;
    }
    out += arg.slice(i, i + 2); // an escape of the glob's own ("\\", "\*"): kept whole
    i += 2;
  }
  return out;
}

/**
 * A path typed by a user where a path, not a glob, is meant (`cat`, `ls` without glob syntax):
 * "\xHH" (80 to ff) is that byte, as in nameFromArg, and "\\" is one backslash (so a name that
 * holds the four characters "\xff" is "\\xff"); any other backslash is itself.
 */
export function pathFromArg(arg: string): string {
  if (!arg.includes('\\')) return arg;
  let out = '';
  let i = 0;
  while (i < arg.length) {
    const c = arg[i]!;
    if (c === '\\' && arg[i + 1] === '\\') {
      out += '\\';
      i += 2;
      continue;
    }
    const hex = arg.slice(i + 2, i + 4);
    if (c === '\\' && (arg[i + 1] === 'x' || arg[i + 1] === 'X') && /^[89a-fA-F][0-9a-fA-F]$/.test(hex)) {
      out += String.fromCharCode(ESCAPE_BASE + parseInt(hex, 16));
      i += 4;
      continue;
    }
    out += c;
    i++;
  }
  return out;
}
