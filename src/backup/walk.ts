import * as fs from 'node:fs';
import * as path from 'node:path';
import picomatch from 'picomatch';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { displayName, fsPath, nameFromArg, nameFromBytes } from '../archive/names.ts';
import { errText } from '../errors.ts';

/** One thing found under a source: its path inside the snapshot and its lstat. */
export interface WalkItem {
  /**
   * "<source name>/<relative path>" ("/"-separated), or just the source name for its root; a
   * name that is not UTF-8 has its bad bytes as escapes (see src/archive/names.ts).
   */
  path: string;
  /** The path for file-system calls: a string, or the exact bytes where a name is not UTF-8. */
  abs: string | Buffer;
  st: fs.Stats;
}

/**
 * Something the walk saw but cannot hand over: an entry that is not backed up (or a directory
 * whose contents are not), and why. Each is one skipped entry in the backup's count.
 */
export interface WalkWarning {
  /** Its path in the snapshot, as WalkItem.path (walkWarningText shows bad bytes as \xHH). */
  path: string;
  /** Why ("it vanished after …", "cannot stat: permission denied"). */
  reason: string;
  /** What is left out: the entry; the directory's contents (it is stored); or both. */
  scope: 'entry' | 'contents' | 'tree';
}

/** A walk warning as the backup (or, dryRun, the dry run) says it. */
export function walkWarningText(w: WalkWarning, dryRun = false): string {
  const not = dryRun ? 'would not be backed up' : 'not backed up';
  const what =
    w.scope === 'entry' ? not : w.scope === 'contents' ? `its contents ${dryRun ? not : `are ${not}`}` : `${not}, nor anything under it`;
  return `${displayName(w.path)}: ${what}: ${w.reason}`;
}

/**
 * Test-only injection points (none are set otherwise): called by every walk, to make the races
 * it must survive happen on cue. A test sets them in its own process, or in the CLI's through
 * a module it preloads (node --import).
 */
export const walkTestHooks: {
  /**
   * After a directory was listed, before its entries are lstat()ed: e.g. delete one of them.
   * Paths and names as WalkItem.path holds them (fsPath() gives what fs calls take).
   */
  listed?: ((dirAbs: string, names: readonly string[]) => void) | undefined;
  /** After an entry was lstat()ed, before it is read: e.g. change it. */
  statted?: ((abs: string, st: fs.Stats) => void) | undefined;
} = {};

/**
 * A name (or symlink target) as bytes, for a message: valid UTF-8 as text, every other byte as
 * \xHH ("bad-\xff\xfe").
 */
export function escapeBytes(b: Buffer): string {
  return displayName(nameFromBytes(b));
}

/**
 * A symlink's target, exact: as a name (see src/archive/names.ts), read again as bytes only
 * when the string form shows U+FFFD (a target that is not UTF-8 decodes so). Throws what
 * readlink throws.
 */
export function readLinkTarget(abs: string | Buffer): string {
  const target = fs.readlinkSync(abs);
  if (!target.includes('\uFFFD')) return target;
  return nameFromBytes(fs.readlinkSync(abs, { encoding: 'buffer' }));
}

/**
 * Build the exclude test. A pattern without "/" matches a name at any depth ("*.tmp",
 * "node_modules"); a pattern with "/" matches the path relative to the source root
 * ("build/**", "logs/*.log"); a leading "/" anchors it to the root. Excluding a directory
 * excludes everything below it. "\xHH" (80 to ff) in a pattern is that byte of a name that is
 * not UTF-8, as `ls` shows it (see nameFromArg). The test gets the path as WalkItem.path
 * holds it, and its absolute form likewise.
 */
export function makeExcluder(patterns: string[], excludeAbs: string[] = []): (abs: string, rel: string) => boolean {
  const byName: string[] = [];
  const byPath: string[] = [];
  for (const raw of patterns) {
    const p = nameFromArg(raw.trim());
    if (!p) continue;
    const q = p.endsWith('/') ? p.slice(0, -1) : p;
    if (q.includes('/')) byPath.push(q.startsWith('/') ? q.slice(1) : q);
    else byName.push(q);
  }
  const opts = { dot: true };
  const nameMatch = byName.length ? picomatch(byName, opts) : () => false;
  const pathMatch = byPath.length ? picomatch(byPath, opts) : () => false;
  const absSet = new Set(excludeAbs.map((p) => path.resolve(p)));
  // Nothing to exclude (the common case): asked once per entry, so no basename to compute.
  if (byName.length === 0 && byPath.length === 0 && absSet.size === 0) return () => false;
  return (abs, rel) => {
    if (absSet.has(abs)) return true;
    if (rel === '') return false;
    return nameMatch(path.posix.basename(rel)) || pathMatch(rel);
  };
}

/** Read an exclude file: one pattern per line, "#" comments and blank lines ignored. */
export function readExcludeFile(file: string): string[] {
  return fs
    .readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/**
 * Depth-first walk of one source in "tree order": a directory, then its children sorted by
 * name (code-unit order). The same order every run, so manifests can be merged in one pass.
 * Synchronous on purpose: per-file async stat is 5–10× slower on trees of small files.
 * Symlinks are reported, never followed (except the source root itself, which the user named).
 */
function* walkSource(
  root: string,
  name: string,
  isExcluded: (abs: string, rel: string) => boolean,
  warn: (w: WalkWarning) => void,
): Generator<WalkItem> {
  const rootSt = fs.statSync(root);
  yield { path: name, abs: root, st: rootSt };
  if (!rootSt.isDirectory()) return;
  yield* walkDir(root, name, '', isExcluded, warn);
}

/** A directory being walked: its sorted names and the next one to look at. */
interface DirFrame {
  path: string;
  rel: string;
  /** Its absolute path with a trailing separator (joined by hand: path.join() normalizes every result, which costs more than the lstat's setup). */
  prefix: string;
  names: string[];
  next: number;
}

/** List a directory for the walk (sorted), or warn and give undefined. */
function listDir(dirAbs: string, dirPath: string, dirRel: string, warn: (w: WalkWarning) => void): DirFrame | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(fsPath(dirAbs));
  } catch (e) {
    warn({ path: dirPath, scope: 'contents', reason: `cannot list directory: ${errText(e)}` });
    return undefined;
  }
  // A name that is not valid UTF-8 comes back with U+FFFD in place of its bad bytes, a name
  // lstat() then cannot find: only such a listing is read again, as bytes, and decoded exactly
  // (a scan of the strings costs next to nothing).
  for (const n of names) {
    if (!n.includes('\uFFFD')) continue;
    try {
      names = fs.readdirSync(fsPath(dirAbs), { encoding: 'buffer' }).map(nameFromBytes);
    } catch (e) {
      warn({ path: dirPath, scope: 'contents', reason: `cannot list directory: ${errText(e)}` });
      return undefined;
    }
    break;
  }
  names.sort();
  walkTestHooks.listed?.(dirAbs, names);
  return { path: dirPath, rel: dirRel, prefix: dirAbs.endsWith(path.sep) ? dirAbs : dirAbs + path.sep, names, next: 0 };
}

/**
 * The entries under a directory, depth first, with a stack of the directories open on the way
 * down rather than a generator per directory: each item then passes through one generator,
 * not one per level (a result object per level and item).
 */
function* walkDir(
  rootAbs: string,
  rootPath: string,
  rootRel: string,
  isExcluded: (abs: string, rel: string) => boolean,
  warn: (w: WalkWarning) => void,
): Generator<WalkItem> {
  const stack: DirFrame[] = [];
  const root = listDir(rootAbs, rootPath, rootRel, warn);
  if (root) stack.push(root);
  while (stack.length > 0) {
    const dir = stack[stack.length - 1]!;
    if (dir.next === dir.names.length) {
      stack.pop();
      continue;
    }
    const n = dir.names[dir.next++]!;
    const absName = dir.prefix + n;
    const rel = dir.rel ? `${dir.rel}/${n}` : n;
    if (isExcluded(absName, rel)) continue;
    const abs = fsPath(absName);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      warn({
        path: `${dir.path}/${n}`,
        scope: 'entry',
        reason:
          code === 'ENOENT' ? 'it vanished after its directory was listed (deleted or renamed meanwhile)' : `cannot stat: ${errText(e)}`,
      });
      continue;
    }
    walkTestHooks.statted?.(absName, st);
    const p = `${dir.path}/${n}`;
    yield { path: p, abs, st };
    if (st.isDirectory()) {
      const sub = listDir(absName, p, rel, warn);
      if (sub) stack.push(sub);
    }
  }
}

/** What identifies a file with several names (hard links) across the walk; undefined for a file with one. */
export function hardLinkKey(st: fs.Stats): string | undefined {
  return st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
}

/** What a non-regular, non-directory, non-symlink entry is, as a warning names it (it is skipped). */
export function specialKind(st: fs.Stats): string {
  return st.isSocket() ? 'socket' : st.isFIFO() ? 'FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'device' : 'special file';
}

/** One step of a walk over all sources: an item, or a warning about what could not be walked. */
export type WalkStep = { item: WalkItem; warning?: undefined } | { item?: undefined; warning: WalkWarning };

/**
 * Items a walk may run ahead by (see SourceWalk.runAheadWhile): ~10 MB of paths and lstat
 * results. Running ahead hides the passphrase's scrypt of an encrypted backup; the bound keeps
 * that memory within the backup's budget (docs/performance.md, "Why the defaults are what they are").
 */
const MAX_AHEAD = 20_000;
/** Items walked between looks at the event loop while running ahead. */
const AHEAD_BATCH = 64;

/**
 * The walk of every source in turn (tree order, see walkSource), as one stream of steps that
 * may run ahead of its consumer: while a backup waits on something that needs no walking (an
 * encrypted repository's passphrase, while its scrypt leaves a core free; S3 round
 * trips to open, probe, lock, find the parent), the walk lists and lstat()s the first part of
 * the tree into a bounded buffer, which the backup then consumes before walking on.
 *
 * What it costs: a file is lstat()ed up to that wait earlier before it is read, so a change in
 * between is reported as a change while reading (the read checks size, mtime and inode).
 */
export class SourceWalk implements Iterable<WalkStep> {
  private readonly steps: Generator<WalkStep>;
  private ahead: (WalkStep | undefined)[] = [];
  /** The next buffered step to hand out. */
  private aheadAt = 0;
  /** Thrown by the walk while running ahead: rethrown where the consumer reaches it. */
  private failure: { error: unknown } | undefined;
  private done = false;

  readonly sources: { path: string; name: string }[];
  private readonly maxAhead: number;

  constructor(sources: { path: string; name: string }[], isExcluded: (abs: string, rel: string) => boolean, maxAhead = MAX_AHEAD) {
    this.sources = sources;
    this.maxAhead = maxAhead;
    this.steps = walkAll(sources, isExcluded);
  }

  /**
   * Walk ahead (at most maxAhead items, looking at the event loop every few) until `pending`
   * settles; resolves then, whatever its outcome (the caller awaits `pending` itself). While
   * `pause()` gives a promise (work that has every core busy, which walking would only slow
   * down), wait for it instead.
   */
  async runAheadWhile(pending: Promise<unknown>, signal?: AbortSignal, pause?: () => Promise<unknown> | undefined): Promise<void> {
    let settled = false;
    const settle = () => {
      settled = true;
    };
    pending.then(settle, settle);
    await yieldToLoop();
    while (!settled && !this.done && !this.failure && !signal?.aborted && this.ahead.length - this.aheadAt < this.maxAhead) {
      const busy = pause?.();
      if (busy) {
        await busy.catch(() => {});
        continue;
      }
      for (let i = 0; i < AHEAD_BATCH && !this.done; i++) {
        try {
          const step = this.pull();
          if (step) this.ahead.push(step);
        } catch (e) {
          this.failure = { error: e };
          break;
        }
      }
      await yieldToLoop();
    }
  }

  *[Symbol.iterator](): Generator<WalkStep> {
    for (;;) {
      if (this.aheadAt < this.ahead.length) {
        const step = this.ahead[this.aheadAt]!;
        this.ahead[this.aheadAt++] = undefined; // let it go once handed out
        if (this.aheadAt === this.ahead.length) {
          this.ahead = [];
          this.aheadAt = 0;
        }
        yield step;
        continue;
      }
      if (this.failure) throw this.failure.error;
      const step = this.done ? undefined : this.pull();
      if (!step) return;
      yield step;
    }
  }

  /** The walk's next step, or undefined (and done) at its end. */
  private pull(): WalkStep | undefined {
    const r = this.steps.next();
    if (r.done) this.done = true;
    return r.done ? undefined : r.value;
  }
}

function* walkAll(sources: { path: string; name: string }[], isExcluded: (abs: string, rel: string) => boolean): Generator<WalkStep> {
  const warnings: WalkWarning[] = [];
  for (const s of sources) {
    for (const item of walkSource(s.path, s.name, isExcluded, (w) => warnings.push(w))) {
      while (warnings.length > 0) yield { warning: warnings.shift()! };
      yield { item };
    }
    while (warnings.length > 0) yield { warning: warnings.shift()! };
  }
}
