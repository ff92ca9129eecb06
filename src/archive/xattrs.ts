import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import { errText } from '../errors.ts';
import { displayName, nameFromBytes } from './names.ts';

/**
 * Extended attributes (security.capability, system.posix_acl_access/_default, user.*,
 * trusted.*, security.selinux) read and written through libc's llistxattr / lgetxattr /
 * lsetxattr (flistxattr / fgetxattr for a file already open), called by FFI (koffi: its prebuilt binaries ship inside the npm packages, so an
 * install needs neither a compiler nor a download beyond npm; docs/performance.md "Extended
 * attributes" says why this and not another way, and what it costs). The l* calls never follow
 * a symlink: a link's own attributes are its own. Paths are strings or exact bytes (a name that
 * is not UTF-8 reaches the right file).
 *
 * Loaded on first use: a backup with --no-xattrs, and every command that does not touch the
 * disk's attributes, never loads it.
 */

/** An entry's attributes: name → value, in the order the file system lists them. */
export type XattrMap = Map<string, Buffer>;

/** The outcome of reading one entry's attributes. */
export interface XattrRead {
  /** What was read; undefined when there is none. */
  attrs?: XattrMap | undefined;
  /** What could not be read (for a warning: the entry is stored with `attrs` only). */
  problem?: string | undefined;
  /** This file system has no extended attributes (ENOTSUP): nothing to store, said once per file system. */
  unsupported?: true | undefined;
}

export interface XattrAccess {
  /**
   * Every attribute of the entry at `path` (not following a symlink), or of the open file `fd`
   * (no path lookup: cheaper where the file is open anyway); attrs undefined when it has none.
   */
  read(path: string | Buffer | { fd: number }): XattrRead;
  /** Set one attribute (not following a symlink); undefined, or the errno code it failed with ("EPERM", "ENOTSUP", …). */
  write(path: string | Buffer, name: string, value: Buffer): string | undefined;
}

/** Linux bounds: a list of names and a single value are each at most 64 KiB (XATTR_LIST_MAX, XATTR_SIZE_MAX). */
const XATTR_MAX = 64 << 10;

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));
const errnoName = (n: number) => ERRNO_NAMES.get(n) ?? `errno ${n}`;
/** ENOTSUP and EOPNOTSUPP are one number on Linux; either name means "no xattrs here". */
const isUnsupported = (code: string) => code === 'ENOTSUP' || code === 'EOPNOTSUPP';

/** A path as the C functions take it: a string as it is (koffi passes it as UTF-8), bytes NUL-terminated. */
function cPath(p: string | Buffer): string | Buffer {
  return typeof p === 'string' ? p : Buffer.concat([p, Buffer.alloc(1)]);
}

let loaded: { access: XattrAccess } | { problem: string } | undefined;

/**
 * The xattr calls, or why they cannot be had here (not Linux, the FFI library missing or not
 * loading): the caller says that once and goes on without attributes. Loaded once per process.
 */
export function xattrAccess(): { access: XattrAccess; problem?: undefined } | { access?: undefined; problem: string } {
  loaded ??= load();
  return loaded;
}

function load(): { access: XattrAccess } | { problem: string } {
  if (process.platform !== 'linux') return { problem: `extended attributes are supported on Linux only (this is ${process.platform})` };
  type Koffi = typeof import('koffi');
  let koffi: Koffi;
  let lib: ReturnType<Koffi['load']>;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
    lib = koffi.load('libc.so.6');
  } catch (e) {
    return { problem: `the library that reads extended attributes (koffi) cannot be loaded: ${errText(e)}` };
  }
  const llistxattr = lib.func('long llistxattr(const char *path, _Out_ uint8_t *list, size_t size)');
  const lgetxattr = lib.func('long lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)');
  const flistxattr = lib.func('long flistxattr(int fd, _Out_ uint8_t *list, size_t size)');
  const fgetxattr = lib.func('long fgetxattr(int fd, const char *name, _Out_ uint8_t *value, size_t size)');
  const lsetxattr = lib.func('int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)');
  // One buffer each for names and values, reused: most entries have no attributes, and then
  // reading them is the one llistxattr call and nothing allocated.
  const names = Buffer.alloc(XATTR_MAX);
  const value = Buffer.alloc(XATTR_MAX);

  const access: XattrAccess = {
    read(path) {
      const fd = typeof path === 'object' && !Buffer.isBuffer(path) ? path.fd : undefined;
      const p = fd === undefined ? cPath(path as string | Buffer) : '';
      const n = Number(fd === undefined ? llistxattr(p, names, names.length) : flistxattr(fd, names, names.length));
      if (n < 0) {
        const code = errnoName(koffi.errno());
        if (isUnsupported(code)) return { unsupported: true };
        return { problem: `cannot list its extended attributes: ${code}` };
      }
      if (n === 0) return {};
      const attrs: XattrMap = new Map();
      const problems: string[] = [];
      let at = 0;
      while (at < n) {
        let end = names.indexOf(0, at);
        if (end < 0 || end > n) end = n;
        const raw = names.subarray(at, end);
        at = end + 1;
        if (!isUtf8(raw)) {
          problems.push(`its extended attribute ${displayName(nameFromBytes(raw))} has a name that is not UTF-8 (not supported)`);
          continue;
        }
        const name = raw.toString('utf8');
        const got = Number(fd === undefined ? lgetxattr(p, name, value, value.length) : fgetxattr(fd, name, value, value.length));
        if (got < 0) {
          const code = errnoName(koffi.errno());
          // Removed between listing and reading: it is not there, so not stored.
          if (code !== 'ENODATA') problems.push(`cannot read its extended attribute ${name}: ${code}`);
          continue;
        }
        attrs.set(name, Buffer.from(value.subarray(0, got)));
      }
      return { attrs: attrs.size > 0 ? attrs : undefined, problem: problems.length ? problems.join('; ') : undefined };
    },
    write(path, name, data) {
      const r = Number(lsetxattr(cPath(path), name, data, data.length, 0));
      return r === 0 ? undefined : errnoName(koffi.errno());
    },
  };
  return { access };
}

/** Attributes only root may set (CAP_SYS_ADMIN for trusted.*, CAP_SETFCAP / MAC rules for security.*). */
export function needsRoot(name: string): boolean {
  return name.startsWith('trusted.') || name.startsWith('security.');
}

/** An entry's attributes as the manifest stores them: name → value in base64. */
export function xattrsToJson(attrs: XattrMap): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of attrs) out[name] = v.toString('base64');
  return out;
}

/** The manifest's form back to names and values. */
export function xattrsFromJson(json: Record<string, string>): XattrMap {
  return new Map(Object.entries(json).map(([name, v]) => [name, Buffer.from(v, 'base64')]));
}

/** Do two entries' attributes (the manifest's form) say the same? Order does not count. */
export function sameXattrs(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const ka = a ? Object.keys(a) : [];
  const kb = b ? Object.keys(b) : [];
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (b![k] !== a![k]) return false;
  return true;
}

/** What differs between two sets of attributes (the manifest's form), for a message; undefined if none. */
export function xattrDifference(want: Record<string, string> | undefined, got: Record<string, string> | undefined): string | undefined {
  const w = want ?? {};
  const g = got ?? {};
  const parts: string[] = [];
  for (const k of Object.keys(w)) {
    if (!(k in g)) parts.push(`${k} missing`);
    else if (g[k] !== w[k]) parts.push(`${k} differs`);
  }
  for (const k of Object.keys(g)) if (!(k in w)) parts.push(`${k} not in the manifest`);
  return parts.length ? parts.join(', ') : undefined;
}

/**
 * A backup's reading of attributes: every problem said once where it belongs (the library not
 * loading: once; a file system without attributes: once per file system; an entry whose
 * attributes cannot be read: for that entry), never silently.
 */
export class XattrReader {
  private readonly warn: (m: string) => void;
  private access: XattrAccess | undefined;
  private failed = false;
  private readonly unsupportedDevs = new Set<number>();

  constructor(warn: (m: string) => void) {
    this.warn = warn;
  }

  /** The attributes of the entry at abs, or of the open file fd (snapshot path `where`, on device `dev`), or undefined for none. */
  read(abs: string | Buffer | { fd: number }, where: string, dev: number): XattrMap | undefined {
    if (this.failed || this.unsupportedDevs.has(dev)) return undefined;
    if (!this.access) {
      const got = xattrAccess();
      if (!got.access) {
        this.failed = true;
        this.warn(`extended attributes are not backed up: ${got.problem} (--no-xattrs stops trying)`);
        return undefined;
      }
      this.access = got.access;
    }
    const r = this.access.read(abs);
    if (r.unsupported) {
      this.unsupportedDevs.add(dev);
      this.warn(
        `${where}: its file system does not support extended attributes (ENOTSUP): none are backed up from it (--no-xattrs stops trying)`,
      );
      return undefined;
    }
    if (r.problem) this.warn(`${where}: stored without some extended attributes: ${r.problem}`);
    return r.attrs;
  }
}

/**
 * A restore's writing of attributes. Root sets every one. Any other user sets what a file's
 * owner may (user.*, and POSIX ACLs on the files it creates) and leaves security.* and
 * trusted.* (file capabilities, SELinux labels, trusted.*), which only root may set: those are
 * counted and said once at the end. A target file system without attributes is said once too;
 * any other failure names the entry and the attribute.
 */
export class XattrWriter {
  readonly warnings: string[] = [];
  private readonly isRoot: boolean;
  private access: XattrAccess | undefined;
  private failed = false;
  private unsupported = 0;
  private unsupportedFirst = '';
  private notRoot = 0;
  private readonly notRootNames = new Set<string>();
  private notRootFirst = '';

  constructor(isRoot: boolean) {
    this.isRoot = isRoot;
  }

  /** Set the attributes an entry recorded (the manifest's form) on the restored file at abs. */
  apply(abs: string | Buffer, where: string, json: Record<string, string>): void {
    if (this.failed) return;
    if (!this.access) {
      const got = xattrAccess();
      if (!got.access) {
        this.failed = true;
        this.warnings.push(`extended attributes are not restored: ${got.problem}`);
        return;
      }
      this.access = got.access;
    }
    for (const [name, value] of xattrsFromJson(json)) {
      if (!this.isRoot && needsRoot(name)) {
        if (this.notRoot++ === 0) this.notRootFirst = `${where} (${name})`;
        this.notRootNames.add(`${name.slice(0, name.indexOf('.') + 1)}*`);
        continue;
      }
      const code = this.access.write(abs, name, value);
      if (code === undefined) continue;
      if (isUnsupported(code)) {
        // Said once at the end: a file system without attributes (or without ACLs, mounted
        // noacl) refuses every one alike.
        if (this.unsupported++ === 0) this.unsupportedFirst = `${where} (${name})`;
      } else {
        this.warnings.push(`${where}: extended attribute ${name} not restored: ${code}`);
      }
    }
  }

  /** The summary warnings, once every entry is done. */
  finish(): string[] {
    if (this.notRoot > 0) {
      this.warnings.push(
        `${this.notRoot} extended attribute(s) (${[...this.notRootNames].sort().join(', ')}) not restored: only root may set them (first: ${this.notRootFirst}); restore as root to restore them`,
      );
    }
    if (this.unsupported > 0) {
      this.warnings.push(
        `${this.unsupported} extended attribute(s) not restored: the target's file system does not support them (ENOTSUP; first: ${this.unsupportedFirst})`,
      );
    }
    return this.warnings;
  }
}
