import { readlinkSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { errText, S3BackupError } from '../errors.ts';
import { pidAlive } from './pid.ts';

/**
 * Temporary directories (in the OS temp dir) for manifests being written or read. A process
 * that is killed outright (SIGKILL, the OOM killer, a container stopped hard) cannot remove its
 * own, and a big backup's manifest is tens of MB there; so each directory is named after the
 * process that made it, and the first one a process makes removes those of processes that no
 * longer run. A process is named by host, process-id namespace and pid: a container that shares
 * the temp dir (and even the host name) but not the process ids is another owner, never swept.
 *
 *   <prefix><host>-<pid namespace>-<pid>-<6 random characters>
 */
const TAG_HOST = /[^A-Za-z0-9.]/g;
let swept = false;

/**
 * Every prefix s3backup names its temporary directories with: the first directory a process
 * makes sweeps the stale ones of all of them, since the next process may need none of a kind a
 * killed one left (a backup that found no content to look up never makes a content index).
 */
export const TEMP_PREFIXES = ['s3backup-manifest-', 's3backup-segments-', 's3backup-content-'] as const;

/** Host and process-id namespace (Linux; 0 elsewhere) of this process, as directory names carry them. */
export function ownerTag(): string {
  const host = os.hostname().replace(TAG_HOST, '_').slice(0, 40) || 'host';
  let ns = '0';
  try {
    ns = /\d+/.exec(readlinkSync('/proc/self/ns/pid'))?.[0] ?? '0';
  } catch {
    // not Linux: host and pid alone
  }
  return `${host}-${ns}`;
}

/** A fresh temporary directory; stale ones of every prefix are swept first (once per process). */
export async function makeTempDir(prefix: (typeof TEMP_PREFIXES)[number]): Promise<string> {
  const base = os.tmpdir();
  if (!swept) {
    swept = true;
    for (const p of TEMP_PREFIXES) await sweepStale(base, p);
  }
  try {
    return await fs.mkdtemp(path.join(base, `${prefix}${ownerTag()}-${process.pid}-`));
  } catch (e) {
    throw new S3BackupError(`cannot create a temporary directory in ${base}: ${errText(e)}`, {
      hint: 'set TMPDIR to a writable directory with room for the list of files (about 1 MB per 10,000 files)',
      cause: e,
    });
  }
}

/**
 * Remove the directories `prefix` left in `base` by processes of this owner tag (host and
 * process-id namespace) that have exited.
 * Best effort: what cannot be listed or removed (another user's) stays. A directory whose
 * process id is alive is kept, even if that id now belongs to some other program.
 */
export async function sweepStale(base: string, prefix: string): Promise<string[]> {
  const mine = `${prefix}${ownerTag()}-`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = await fs.readdir(base);
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = name.startsWith(mine) ? Number(/^(\d+)-[A-Za-z0-9]{6}$/.exec(name.slice(mine.length))?.[1] ?? 0) : 0;
    if (!pid || pid === process.pid || pidAlive(pid)) continue;
    const dir = path.join(base, name);
    try {
      await fs.rm(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // someone else's, or already gone
    }
  }
  return removed;
}
