import * as os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { NotFoundError, S3BackupError } from '../errors.ts';
import { getBuffer, type Store } from '../store/store.ts';
import { newSnapshotId } from './repository.ts';
import { pidAlive } from './pid.ts';
import { checkShape, isTime, type Same, TIME_MESSAGE } from '../schema.ts';

/**
 * Repository locks (docs/format.md, "Locks"): one small JSON object per lock holder,
 * `locks/<id>.json`, saying who holds it (host, pid, command), since when, and until when it
 * counts as live (`expires`; the holder refreshes it while it runs).
 *
 *   shared     backup: many at once; only an exclusive lock conflicts
 *   exclusive  forget, prune: no other live lock may exist
 *
 * A lock is stale, and ignored, once it has expired, or when it was taken on this host by a
 * process that no longer exists (a kill -9 leaves its lock behind). `s3backup unlock` removes
 * stale locks (`--all`: live ones too).
 *
 * Taking a lock: look for conflicting live locks; write ours (create-only); look again (another
 * process may have written its own in between: then both give way, never both proceed).
 */
export const LOCKS = 'locks/';
const LOCK_SUFFIX = '.json';
const LOCK_FORMAT = 's3backup-lock';
/** A lock counts as live this long after it was (last) written. */
export const LOCK_TTL_MS = 30 * 60_000;
/** A holder rewrites its lock this often. */
export const LOCK_REFRESH_MS = 5 * 60_000;

export interface LockInfo {
  format: typeof LOCK_FORMAT;
  id: string;
  host: string;
  pid: number;
  user?: string | undefined;
  /** What holds it: "backup", "prune", "forget", … */
  command: string;
  exclusive: boolean;
  /** ISO times: when the lock was taken, and until when it is live unless refreshed. */
  time: string;
  expires: string;
  /** ISO time of the last refresh. */
  refreshed?: string | undefined;
}

/** A lock as found in the repository. */
export interface LockStatus {
  key: string;
  id: string;
  /** undefined if the object could not be parsed (it then counts as exclusive while not stale). */
  info: LockInfo | undefined;
  error?: string | undefined;
  lastModified: Date;
  stale: boolean;
  /** Why it is stale ("expired", "process gone"). */
  staleReason?: string | undefined;
}

/** Another process holds a conflicting lock. Exit code 1. */
export class RepositoryLockedError extends S3BackupError {
  readonly holder: LockStatus;
  constructor(message: string, holder: LockStatus, hint: string) {
    super(message, { hint });
    this.holder = holder;
  }
}

export function lockKey(id: string): string {
  return `${LOCKS}${id}${LOCK_SUFFIX}`;
}

const time = z.string().refine(isTime, TIME_MESSAGE);
/** What a reader accepts as a lock (src/schema.ts). */
const LockInfoSchema = z.object({
  format: z.literal(LOCK_FORMAT),
  id: z.string(),
  host: z.string(),
  pid: z.number(),
  user: z.string().optional(),
  command: z.string(),
  exclusive: z.boolean(),
  time,
  expires: time,
  refreshed: time.optional(),
});
true satisfies Same<z.output<typeof LockInfoSchema>, LockInfo>;

/** A lock object's content; throws (a plain Error: the lock is damaged, not the store failing) if it is not one. */
function parseLock(raw: Buffer): LockInfo {
  return checkShape(LockInfoSchema, JSON.parse(raw.toString('utf8')), (problem) => new Error(problem));
}

export function staleReason(info: LockInfo | undefined, lastModified: Date, now = new Date()): string | undefined {
  if (!info) return lastModified.getTime() + LOCK_TTL_MS <= now.getTime() ? 'unreadable and old' : undefined;
  if (Date.parse(info.expires) <= now.getTime()) return 'expired';
  if (info.host === os.hostname() && !pidAlive(info.pid)) return 'process gone';
  return undefined;
}

/** Every lock in the repository, with whether it is stale. */
export async function listLocks(store: Store, now = new Date()): Promise<LockStatus[]> {
  const out: LockStatus[] = [];
  for await (const o of store.list(LOCKS)) {
    const name = o.key.slice(LOCKS.length);
    if (!name.endsWith(LOCK_SUFFIX) || name.includes('/')) continue;
    const id = name.slice(0, -LOCK_SUFFIX.length);
    let info: LockInfo | undefined;
    let error: string | undefined;
    try {
      info = parseLock(await getBuffer(store, o.key));
    } catch (e) {
      if (e instanceof NotFoundError) continue; // released while we listed
      if (e instanceof S3BackupError) throw e; // the store failed: no verdict on the lock
      error = (e as Error).message;
    }
    const reason = staleReason(info, o.lastModified, now);
    out.push({ key: o.key, id, info, error, lastModified: o.lastModified, stale: reason !== undefined, staleReason: reason });
  }
  return out;
}

/** "prune (exclusive) by pid 1234 on host-a, since 2026-11-26T10:15:00Z, until 10:45:00Z" */
export function describeLock(l: LockStatus): string {
  if (!l.info) return `${l.key} (damaged: ${l.error ?? 'unknown'}; last written ${l.lastModified.toISOString()})`;
  const i = l.info;
  return `${i.command} (${i.exclusive ? 'exclusive' : 'shared'}) by pid ${i.pid}${i.user ? ` (${i.user})` : ''} on ${i.host}, since ${i.time}, live until ${i.expires} [${l.key}]`;
}

function conflicts(mine: { exclusive: boolean }, other: LockStatus): boolean {
  if (other.stale) return false;
  if (mine.exclusive) return true;
  return other.info?.exclusive ?? true;
}

export interface LockOptions {
  exclusive: boolean;
  command: string;
  /** How long the lock counts as live after each write (default 30 min). */
  ttlMs?: number;
  /** How often the holder rewrites it (default 5 min). */
  refreshMs?: number;
  /** Keep trying this long while another process holds a conflicting lock (default 0: fail at once). */
  waitMs?: number;
  /** Time between tries while waiting (default 2 s). */
  pollMs?: number;
}

/** A lock this process holds. Refreshed in the background until released. */
export class RepoLock {
  readonly store: Store;
  readonly id: string;
  readonly key: string;
  info: LockInfo;
  private readonly ttlMs: number;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private lostReason: string | undefined;
  private released = false;

  private constructor(store: Store, info: LockInfo, ttlMs: number) {
    this.store = store;
    this.id = info.id;
    this.key = lockKey(info.id);
    this.info = info;
    this.ttlMs = ttlMs;
  }

  /** Write a new lock object (no conflict check: see acquireLock). */
  static async write(store: Store, opts: LockOptions): Promise<RepoLock> {
    const now = new Date();
    const ttlMs = opts.ttlMs ?? LOCK_TTL_MS;
    let user: string | undefined;
    try {
      user = os.userInfo().username;
    } catch {
      user = undefined;
    }
    const info: LockInfo = {
      format: LOCK_FORMAT,
      id: newSnapshotId(now),
      host: os.hostname(),
      pid: process.pid,
      user,
      command: opts.command,
      exclusive: opts.exclusive,
      time: now.toISOString(),
      expires: new Date(now.getTime() + ttlMs).toISOString(),
    };
    const lock = new RepoLock(store, info, ttlMs);
    await store.put(lock.key, lock.body(), { createOnly: true, contentType: 'application/json' });
    return lock;
  }

  private body(): Buffer {
    return Buffer.from(`${JSON.stringify(this.info, null, 2)}\n`);
  }

  startRefresh(refreshMs = LOCK_REFRESH_MS): void {
    if (this.timer || this.released) return;
    this.timer = setInterval(() => {
      this.refresh().catch(() => {
        // A failed refresh is retried at the next tick; check() fails once the lock has expired.
      });
    }, refreshMs);
    this.timer.unref();
  }

  /** Rewrite the lock with a new expiry; notices if someone removed it (unlock --all). */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      if (this.released || this.lostReason) return;
      if (!(await this.store.head(this.key))) {
        this.lostReason = `lock ${this.key} was removed by someone else (s3backup unlock --all?)`;
        return;
      }
      const now = new Date();
      const info = { ...this.info, refreshed: now.toISOString(), expires: new Date(now.getTime() + this.ttlMs).toISOString() };
      const before = this.info;
      this.info = info;
      try {
        await this.store.put(this.key, this.body(), { contentType: 'application/json' });
      } catch (e) {
        this.info = before;
        throw e;
      }
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** Throws unless the lock is still ours and live (cheap: no request). */
  assertHeld(): void {
    const why = this.released
      ? 'the lock was released'
      : (this.lostReason ?? (Date.parse(this.info.expires) <= Date.now() ? `lock ${this.key} expired without being refreshed` : undefined));
    if (why) {
      throw new S3BackupError(`stopped: ${why}; nothing more is deleted`, {
        hint: 'run the command again once no other s3backup process works on this repository',
      });
    }
  }

  /** Like assertHeld, but also checks that the lock object is still in the repository. */
  async check(): Promise<void> {
    this.assertHeld();
    if (!(await this.store.head(this.key))) this.lostReason = `lock ${this.key} was removed by someone else (s3backup unlock --all?)`;
    this.assertHeld();
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.refreshing?.catch(() => {});
    await this.store.delete([this.key]);
  }
}

/**
 * Take a lock, or throw RepositoryLockedError naming the holder of a conflicting live lock
 * (after waiting up to opts.waitMs for it to go away).
 */
export async function acquireLock(store: Store, opts: LockOptions): Promise<RepoLock> {
  const deadline = Date.now() + (opts.waitMs ?? 0);
  for (;;) {
    let conflict = (await listLocks(store)).find((l) => conflicts(opts, l));
    if (!conflict) {
      const lock = await RepoLock.write(store, opts);
      conflict = (await listLocks(store)).find((l) => l.id !== lock.id && conflicts(opts, l));
      if (!conflict) {
        lock.startRefresh(opts.refreshMs);
        return lock;
      }
      // Someone took a lock at the same time: both step back.
      await lock.release();
    }
    const left = deadline - Date.now();
    if (left <= 0) throw lockedError(store, opts, conflict);
    await sleep(Math.min(left, opts.pollMs ?? 2000));
  }
}

function lockedError(store: Store, opts: LockOptions, holder: LockStatus): RepositoryLockedError {
  return new RepositoryLockedError(
    `repository ${store.location} is locked: ${opts.command} needs ${opts.exclusive ? 'an exclusive' : 'a shared'} lock, but ${describeLock(holder)} holds one`,
    holder,
    'wait for that process to finish. If it no longer runs, its lock goes stale when it expires (or at once on the same host) ' +
      'and "s3backup unlock" removes it; "s3backup unlock --all" removes live locks too',
  );
}

/** The lock a backup takes: shared (backups run side by side; forget/prune wait for them). */
export function acquireSharedLock(store: Store, command = 'backup', opts: Partial<LockOptions> = {}): Promise<RepoLock> {
  return acquireLock(store, { ...opts, command, exclusive: false });
}

/** The lock forget and prune take: no other live lock may exist. */
export function acquireExclusiveLock(store: Store, command: string, opts: Partial<LockOptions> = {}): Promise<RepoLock> {
  return acquireLock(store, { ...opts, command, exclusive: true });
}

/**
 * Run f holding a lock; the lock is released however f ends. A release that fails (the lock
 * object cannot be deleted) goes to onReleaseError, if given; the lock then stays until stale.
 */
export async function withLock<T>(
  store: Store,
  opts: LockOptions,
  f: (lock: RepoLock) => Promise<T>,
  onReleaseError?: (e: unknown) => void,
): Promise<T> {
  const lock = await acquireLock(store, opts);
  try {
    return await f(lock);
  } finally {
    await lock.release().catch((e: unknown) => onReleaseError?.(e));
  }
}

/** Remove stale locks (all locks with `all`). */
export async function removeLocks(store: Store, opts: { all?: boolean } = {}): Promise<{ removed: LockStatus[]; kept: LockStatus[] }> {
  const locks = await listLocks(store);
  const removed = locks.filter((l) => l.stale || opts.all);
  const kept = locks.filter((l) => !removed.includes(l));
  if (removed.length) await store.delete(removed.map((l) => l.key));
  return { removed, kept };
}
