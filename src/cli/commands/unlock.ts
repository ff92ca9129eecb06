import type { Command } from 'commander';
import { describeLock, type LockStatus, removeLocks } from '../../repo/locks.ts';
import { Repository } from '../../repo/repository.ts';
import { type CommonOpts, emitJson, note, out, setup, withCommon, withStore } from '../common.ts';

// s3backup unlock [--all]: remove stale repository locks (all locks with --all).

function lockJson(l: LockStatus) {
  return {
    id: l.id,
    key: l.key,
    ...(l.info
      ? {
          host: l.info.host,
          pid: l.info.pid,
          user: l.info.user,
          command: l.info.command,
          exclusive: l.info.exclusive,
          time: l.info.time,
          expires: l.info.expires,
        }
      : { error: l.error }),
    stale: l.stale,
    ...(l.staleReason ? { staleReason: l.staleReason } : {}),
  };
}

async function cmdUnlock(opts: CommonOpts & { all?: boolean }): Promise<void> {
  const { store, log } = await setup(opts, 'unlock');
  const { removed, kept } = await withStore(store, async () => {
    await Repository.readConfig(store); // is there a repository? (no key needed to remove locks)
    return removeLocks(store, { all: opts.all ?? false });
  });
  const live = removed.filter((l) => !l.stale);
  for (const l of removed) log.info(`unlock: removed ${l.stale ? `stale (${l.staleReason})` : 'LIVE'} lock ${describeLock(l)}`);
  if (live.length) {
    const msg = `removed ${live.length} live lock(s): if ${live.length === 1 ? 'that process is' : 'those processes are'} still running, ${live.length === 1 ? 'it is' : 'they are'} no longer protected (a prune could delete data a running backup needs)`;
    note(`warning: ${msg}`);
    log.warn(msg);
  }
  if (opts.json) {
    emitJson({ ok: true, repository: store.location, removed: removed.map(lockJson), kept: kept.map(lockJson) });
    return;
  }
  if (removed.length === 0 && kept.length === 0) out(`no locks in ${store.location}`);
  for (const l of removed) out(`removed ${l.stale ? `stale lock (${l.staleReason})` : 'live lock'}: ${describeLock(l)}`);
  for (const l of kept) out(`kept live lock: ${describeLock(l)}`);
  if (kept.length)
    note('live locks belong to running commands; "s3backup unlock --all" removes them too (only if you are sure those processes are gone)');
}

export function registerUnlock(program: Command): void {
  withCommon(
    program
      .command('unlock')
      .description('remove stale repository locks (left by killed or crashed commands)')
      .option('--all', 'remove live locks too (only when you know their processes are gone)')
      .addHelpText(
        'after',
        `
backup takes a shared lock; forget and prune take an exclusive one (locks/<id>.json in the
repository, naming host, pid, command and times). A lock is stale once it has expired (it is
refreshed every 5 minutes and lives 30 minutes) or, on the same host, once its process is gone;
stale locks are ignored anyway, and unlock removes them. --all removes live locks as well, with
a warning: a prune beside a running backup could delete data that backup is about to reference.

Examples:
  s3backup unlock
  s3backup unlock --all --repo s3://my-bucket/team-a`,
      ),
  ).action(cmdUnlock);
}
