// A source tree of unusual but real entries, for fidelity tests: names that are not UTF-8 (files,
// directories, symlink targets, a hard link, a long pax name), names with newlines, tabs,
// backslashes and leading dashes, a sparse file, odd owners and modes, sub-second times, and
// files that vanish while the walk runs (deleted by the walk's test hooks, on cue, never by
// timing), extended attributes of every kind (user.*, trusted.*, a file capability, an SELinux
// label, ACLs with default entries) on such names. Plus a comparison of two trees by bytes:
// names, content, and every attribute.
//
// The tree is a list of entry makers (hostileEntries): to cover something more, add a maker.
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { xattrAccess } from '../../src/archive/xattrs.ts';
import { pseudoRandom } from './tree.ts';

/** The attribute calls with exact-byte paths (getfattr and setfattr take paths as arguments, which cannot hold any bytes). */
function xattrCalls() {
  const got = xattrAccess();
  if (!got.access) throw new Error(got.problem);
  return got.access;
}

/**
 * A POSIX ACL in the kernel's binary form (system.posix_acl_access / _default): version 2, then
 * {tag u16, perm u16, id u32} little-endian per entry. Tags: USER_OBJ 1, USER 2, GROUP_OBJ 4,
 * GROUP 8, MASK 0x10, OTHER 0x20; the *_OBJ, MASK and OTHER entries have no id (0xffffffff).
 */
export function posixAcl(entries: [tag: number, perm: number, id?: number][]): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i);
    b.writeUInt16LE(perm, 6 + 8 * i);
    b.writeUInt32LE(id ?? 0xffffffff, 8 + 8 * i);
  });
  return b;
}

/** security.capability for cap_net_raw+ep (what ping carries): VFS_CAP_REVISION_2 with the effective flag. */
const CAP_NET_RAW_EP = Buffer.from('0100000200200000000000000000000000000000', 'hex');

/** A path from pieces: strings as UTF-8, number arrays as raw bytes, Buffers as they are. */
export function bytes(...parts: (string | number[] | Buffer)[]): Buffer {
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p as string))));
}

/** What an entry maker can do inside the tree (paths relative to its root, as bytes). */
export interface HostileTreeBuilder {
  readonly root: Buffer;
  file(rel: Buffer, data: string | Buffer, opts?: { mode?: number; uid?: number; gid?: number; mtime?: number }): void;
  dir(rel: Buffer, opts?: { mode?: number; mtime?: number }): void;
  symlink(rel: Buffer, target: Buffer): void;
  hardlink(rel: Buffer, existing: Buffer): void;
  /** A file of `size` bytes that is all holes but for `pieces` of data. */
  sparse(rel: Buffer, size: number, pieces: [offset: number, length: number][]): void;
  /**
   * A file the walk sees in its directory's listing and that is deleted before the backup
   * reads it: right after the listing ('listed': the walk finds it gone at lstat), or right
   * after its lstat ('statted': it fails to open). Its directory's times are put back after
   * the deletion, so the source still compares equal to what the backup stored.
   */
  vanishing(rel: Buffer, when: 'listed' | 'statted'): void;
  /** Set an extended attribute (not following a symlink). */
  xattr(rel: Buffer, name: string, value: string | Buffer): void;
}

export type EntryMaker = (b: HostileTreeBuilder) => void;

const MiB = 1 << 20;

/** The entries of the hostile tree. */
export const hostileEntries: EntryMaker[] = [
  // Names that are not UTF-8: Latin-1, stray bytes, a truncated sequence, an encoded surrogate,
  // an overlong "/", in a directory that is not UTF-8 either.
  (b) => b.file(bytes('bad-', [0xff, 0xfe]), 'latin-1 era\n', { mtime: 1_600_000_000.123456 }),
  (b) => b.file(bytes('caf', [0xe9], '.txt'), 'Latin-1 café\n'),
  (b) => b.file(bytes([0xff]), 'one byte\n'),
  (b) => b.file(bytes('half-', [0xe2, 0x82]), 'truncated sequence\n'),
  (b) => b.file(bytes([0xed, 0xa0, 0x80], '-surrogate'), 'an encoded surrogate is not UTF-8\n'),
  (b) => b.file(bytes('over-', [0xc0, 0xaf]), 'overlong slash\n'),
  (b) => {
    b.dir(bytes('dir-', [0xc3, 0x28]), { mode: 0o750 });
    b.file(bytes('dir-', [0xc3, 0x28], '/inner-', [0xfc], '.txt'), pseudoRandom(70_000, 5));
    b.dir(bytes('dir-', [0xc3, 0x28], '/sub-', [0x80]));
    b.file(bytes('dir-', [0xc3, 0x28], '/sub-', [0x80], '/deep.txt'), 'deep\n');
  },
  (b) => b.dir(bytes('empty-', [0xa0])),
  // A name over 100 bytes (a pax path), not UTF-8.
  (b) => b.file(bytes('long-', 'x'.repeat(120), [0xff], '.txt'), 'long\n'),
  // What \xHH display forms and U+FFFD look like when they are the name itself.
  (b) => b.file(bytes('\\xff'), 'the four characters backslash, x, f, f\n'),
  (b) => b.file(bytes('real-\uFFFD.txt'), 'valid UTF-8 holding U+FFFD\n'),
  // Names shells, globs and terminals read as more than text.
  (b) => b.file(bytes('new\nline'), 'newline\n'),
  (b) => b.file(bytes('tab\there'), 'tab\n'),
  (b) => b.file(bytes('back\\slash\\'), 'backslashes\n'),
  (b) => b.file(bytes('-leading-dash'), 'dash\n'),
  (b) => b.file(bytes('--include'), 'an option name\n'),
  (b) => b.file(bytes('"a(1) [*]?.txt'), 'quotes and globs\n'),
  // Symlinks: targets that are not UTF-8 (dangling, to a file, long), with a newline, and a
  // link whose own name is not UTF-8.
  (b) => b.symlink(bytes('link-dangling'), bytes('target-', [0xe9])),
  (b) => b.symlink(bytes('link-', [0xff]), bytes('bad-', [0xff, 0xfe])),
  (b) => b.symlink(bytes('link-long'), bytes('dir-', [0xc3, 0x28], '/', 'y'.repeat(110), [0xfe])),
  (b) => b.symlink(bytes('link-newline'), bytes('to\nnowhere')),
  // A hard link whose second name is not UTF-8.
  (b) => b.hardlink(bytes('hard-', [0xfe]), bytes('bad-', [0xff, 0xfe])),
  // A sparse file (large: over several of the writer thread's batches) and a small one (in one).
  (b) =>
    b.sparse(bytes('sparse-', [0xe9], '.img'), 16 * MiB, [
      [MiB, 64 * 1024],
      [16 * MiB - 4096, 4096],
    ]),
  (b) => b.sparse(bytes('small-sparse'), 512 * 1024, [[0, 4096]]),
  // Owners and modes (the tests run as root, as CI does).
  (b) => b.file(bytes('owned-', [0xe9]), 'owned\n', { uid: 1234, gid: 5678, mode: 0o640 }),
  (b) => b.file(bytes('setuid-', [0xe9]), '#!/bin/sh\n', { mode: 0o4755 }),
  (b) => b.dir(bytes('sticky-', [0xe9]), { mode: 0o1777 }),
  (b) => b.file(bytes('empty-file-', [0xf0, 0x9f]), ''),
  // Entries that vanish while the walk runs.
  (b) => {
    b.dir(bytes('vanishing'));
    b.file(bytes('vanishing/stays.txt'), 'stays\n');
    b.vanishing(bytes('vanishing/gone-after-listing'), 'listed');
    b.vanishing(bytes('vanishing/gone-after-stat-', [0xff]), 'statted');
  },
  // Extended attributes on names that are not UTF-8 (set last: a default ACL set earlier would
  // be inherited by what is made in its directory afterwards).
  (b) => {
    b.xattr(bytes('bad-', [0xff, 0xfe]), 'user.origin', 'samba share');
    b.xattr(bytes('bad-', [0xff, 0xfe]), 'user.binary', Buffer.from([0, 0xff, 0x3d, 0x0a]));
    b.xattr(bytes('new\nline'), 'security.selinux', 'system_u:object_r:user_home_t:s0\0');
    b.xattr(bytes('link-', [0xff]), 'trusted.on-the-link', "a symlink's own");
    // On a file of another owner: a restore must set it after the chown, which clears it.
    b.xattr(bytes('owned-', [0xe9]), 'security.capability', CAP_NET_RAW_EP);
    // The directory is 0750: the access ACL's mask r-x keeps its group bits.
    const acl = posixAcl([
      [1, 7],
      [2, 5, 65534],
      [4, 5],
      [0x10, 5],
      [0x20, 0],
    ]);
    b.xattr(bytes('dir-', [0xc3, 0x28]), 'system.posix_acl_access', acl);
    b.xattr(bytes('dir-', [0xc3, 0x28]), 'system.posix_acl_default', acl);
    b.xattr(bytes('dir-', [0xc3, 0x28], '/inner-', [0xfc], '.txt'), 'trusted.md5', Buffer.from('00ff10', 'hex'));
  },
];

/** A made tree: where, and what the walk hooks must do to it. */
export interface HostileTree {
  /** The source (its basename is the source name in the snapshot). */
  root: string;
  /** The snapshot paths, as displayed, of the entries the hooks delete ('listed', 'statted'). */
  vanished: { listed: string[]; statted: string[] };
  /** The walk hooks that delete them (set them on walkTestHooks; preloadSource for the CLI). */
  hooks: {
    listed: (dirAbs: string, names: readonly string[]) => void;
    statted: (abs: string) => void;
  };
  /** A module for `node --import` that sets the same hooks in a CLI process. */
  preloadSource(walkModuleUrl: string, namesModuleUrl: string): string;
}

/** Make the hostile tree (or the given entries) at root, which must not exist. */
export function makeHostileTree(root: string, makers: EntryMaker[] = hostileEntries): HostileTree {
  const rootBytes = Buffer.from(root);
  fs.mkdirSync(rootBytes, { recursive: true });
  const at = (rel: Buffer) => bytes(rootBytes, '/', rel);
  const dirTimes: [Buffer, number][] = [];
  const vanishing: { rel: Buffer; when: 'listed' | 'statted' }[] = [];
  const builder: HostileTreeBuilder = {
    root: rootBytes,
    file(rel, data, opts = {}) {
      fs.writeFileSync(at(rel), data);
      if (opts.uid !== undefined || opts.gid !== undefined) fs.chownSync(at(rel), opts.uid ?? 0, opts.gid ?? 0);
      if (opts.mode !== undefined) fs.chmodSync(at(rel), opts.mode);
      if (opts.mtime !== undefined) fs.utimesSync(at(rel), opts.mtime, opts.mtime);
    },
    dir(rel, opts = {}) {
      fs.mkdirSync(at(rel));
      if (opts.mode !== undefined) fs.chmodSync(at(rel), opts.mode);
      if (opts.mtime !== undefined) dirTimes.push([rel, opts.mtime]);
    },
    symlink(rel, target) {
      fs.symlinkSync(target, at(rel));
    },
    hardlink(rel, existing) {
      fs.linkSync(at(existing), at(rel));
    },
    sparse(rel, size, pieces) {
      const fd = fs.openSync(at(rel), 'w');
      try {
        fs.ftruncateSync(fd, size);
        for (const [offset, length] of pieces) fs.writeSync(fd, pseudoRandom(length, offset + 1), 0, length, offset);
      } finally {
        fs.closeSync(fd);
      }
    },
    vanishing(rel, when) {
      fs.writeFileSync(at(rel), `deleted when ${when}\n`);
      vanishing.push({ rel, when });
    },
    xattr(rel, name, value) {
      const failed = xattrCalls().write(at(rel), name, Buffer.isBuffer(value) ? value : Buffer.from(value));
      if (failed) throw new Error(`setting ${name} on ${displayBytes(rel)}: ${failed}`);
    },
  };
  for (const make of makers) make(builder);
  // Directory times last: making their contents moved them.
  for (const [rel, t] of dirTimes) fs.utimesSync(at(rel), t, t);

  const name = path.basename(root);
  const show = (rel: Buffer) => `${name}/${displayBytes(rel)}`;
  // The hooks get names as the walk holds them (bytes that are not UTF-8 as U+DC80 + byte):
  // they compare by bytes, rebuilt from those strings the same way (nameBytes).
  const listedTargets = vanishing.filter((v) => v.when === 'listed').map((v) => at(v.rel));
  const stattedTargets = vanishing.filter((v) => v.when === 'statted').map((v) => at(v.rel));
  const remove = (abs: Buffer) => {
    const dir = path.dirname(abs.toString('latin1'));
    const dirBytes = Buffer.from(dir, 'latin1');
    const st = fs.statSync(dirBytes);
    fs.rmSync(abs, { force: true });
    fs.utimesSync(dirBytes, st.atimeMs / 1000, st.mtimeMs / 1000);
  };
  return {
    root,
    vanished: {
      listed: vanishing.filter((v) => v.when === 'listed').map((v) => show(v.rel)),
      statted: vanishing.filter((v) => v.when === 'statted').map((v) => show(v.rel)),
    },
    hooks: {
      listed: (dirAbs, names) => {
        for (const n of names) {
          const abs = bytes(nameBytes(dirAbs), '/', nameBytes(n));
          for (const t of listedTargets) if (t.equals(abs)) remove(t);
        }
      },
      statted: (abs) => {
        for (const t of stattedTargets) if (nameBytes(abs).equals(t)) remove(t);
      },
    },
    preloadSource(walkModuleUrl, namesModuleUrl) {
      const list = (xs: Buffer[]) => JSON.stringify(xs.map((x) => x.toString('base64')));
      return `import * as fs from 'node:fs';
import * as path from 'node:path';
const { walkTestHooks } = await import(${JSON.stringify(walkModuleUrl)});
const { nameToBytes } = await import(${JSON.stringify(namesModuleUrl)});
const listed = ${list(listedTargets)}.map((b) => Buffer.from(b, 'base64'));
const statted = ${list(stattedTargets)}.map((b) => Buffer.from(b, 'base64'));
const remove = (abs) => {
  const dir = Buffer.from(path.dirname(abs.toString('latin1')), 'latin1');
  const st = fs.statSync(dir);
  fs.rmSync(abs, { force: true });
  fs.utimesSync(dir, st.atimeMs / 1000, st.mtimeMs / 1000);
};
walkTestHooks.listed = (dirAbs, names) => {
  for (const n of names) {
    const abs = Buffer.concat([nameToBytes(dirAbs), Buffer.from('/'), nameToBytes(n)]);
    for (const t of listed) if (t.equals(abs)) remove(t);
  }
};
walkTestHooks.statted = (abs) => {
  for (const t of statted) if (t.equals(nameToBytes(abs))) remove(t);
};
`;
    },
  };
}

/** A name's bytes from the string the walk holds (U+DC80 + byte for a byte that is not UTF-8). */
function nameBytes(s: string): Buffer {
  const parts: Buffer[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    parts.push(c >= 0xdc80 && c <= 0xdcff ? Buffer.of(c - 0xdc00) : Buffer.from(ch));
  }
  return Buffer.concat(parts);
}

/** Bytes as s3backup shows them: valid UTF-8 as text, every other byte as \xHH. */
export function displayBytes(b: Buffer): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    const n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n > 0 && i + n <= b.length && isUtf8(b.subarray(i, i + n))) {
      out += b.toString('utf8', i, i + n);
      i += n;
    } else {
      out += `\\x${c.toString(16).padStart(2, '0')}`;
      i++;
    }
  }
  return out;
}

/** An entry's extended attributes as text: "name=hex" sorted, joined by ", ". */
function xattrText(abs: Buffer): string {
  const r = xattrCalls().read(abs);
  if (r.problem || r.unsupported) throw new Error(`attributes of ${displayBytes(abs)}: ${r.problem ?? 'not supported here'}`);
  return [...(r.attrs ?? [])]
    .map(([k, v]) => `${k}=${v.toString('hex')}`)
    .sort()
    .join(', ');
}

/** One entry of a tree, every attribute the comparison looks at. */
export interface ByteTreeItem {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Modification time, ms (fractional). */
  mtimeMs: number;
  sha256?: string;
  /** Symlink target, hex of its bytes. */
  target?: string;
  /** Bytes allocated on disk (st_blocks × 512). */
  allocated: number;
  /** Hard links: the first path (in tree order) with the same inode, if not this one. */
  linkOf?: string;
  /** Extended attributes, "name=hex" sorted and joined by ", " ("" for none). */
  xattrs: string;
}

/** Every entry below root, keyed by its relative path shown as displayBytes plus its hex (exact, and readable in a diff). */
export function byteTree(root: string): Map<string, ByteTreeItem> {
  const out = new Map<string, ByteTreeItem>();
  const inodes = new Map<string, string>();
  const walk = (dir: Buffer, rel: Buffer | undefined) => {
    for (const n of fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare)) {
      const abs = bytes(dir, '/', n);
      const r = rel ? bytes(rel, '/', n) : n;
      const key = `${displayBytes(r)} [${r.toString('hex')}]`;
      const st = fs.lstatSync(abs);
      const item: ByteTreeItem = {
        type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other',
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        size: st.isFile() ? st.size : 0,
        mtimeMs: st.mtimeMs,
        allocated: st.blocks * 512,
        xattrs: xattrText(abs),
      };
      if (st.isFile()) {
        item.sha256 = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
        if (st.nlink > 1) {
          const first = inodes.get(`${st.dev}:${st.ino}`);
          if (first) item.linkOf = first;
          else inodes.set(`${st.dev}:${st.ino}`, key);
        }
      }
      if (st.isSymbolicLink()) {
        item.target = fs.readlinkSync(abs, { encoding: 'buffer' }).toString('hex');
        item.mode = 0;
      }
      out.set(key, item);
      if (st.isDirectory()) walk(abs, r);
    }
  };
  walk(Buffer.from(root), undefined);
  return out;
}

export interface CompareOptions {
  /** Times to the whole second (tar), not to 0.01 ms. */
  wholeSeconds?: boolean;
  /** Compare symlinks' own times too. */
  symlinkTimes?: boolean;
  /** Files the copy must hold sparse (no more allocated than the source, plus this slack per file, bytes). */
  sparseSlack?: number;
}

/** Differences between two trees by bytes and attributes, as readable lines (empty = identical). */
export function compareByteTrees(a: string, b: string, opts: CompareOptions = {}): string[] {
  const ta = byteTree(a);
  const tb = byteTree(b);
  const diffs: string[] = [];
  for (const [p, x] of ta) {
    const y = tb.get(p);
    if (!y) {
      diffs.push(`missing: ${p}`);
      continue;
    }
    for (const k of ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'linkOf', 'xattrs'] as const) {
      if (x[k] !== y[k]) diffs.push(`${p}: ${k} ${x[k]} != ${y[k]}`);
    }
    if (x.type !== 'symlink' || opts.symlinkTimes) {
      const same = opts.wholeSeconds
        ? Math.floor(x.mtimeMs / 1000) === Math.floor(y.mtimeMs / 1000)
        : Math.abs(x.mtimeMs - y.mtimeMs) <= 0.01;
      if (!same) diffs.push(`${p}: mtime ${x.mtimeMs} != ${y.mtimeMs}`);
    }
    if (opts.sparseSlack !== undefined && x.type === 'file' && y.allocated > x.allocated + opts.sparseSlack) {
      diffs.push(`${p}: ${y.allocated} bytes allocated, the source ${x.allocated} (not sparse)`);
    }
  }
  for (const p of tb.keys()) if (!ta.has(p)) diffs.push(`extra: ${p}`);
  return diffs;
}
