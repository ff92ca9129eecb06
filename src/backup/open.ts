import { derivationHoldingCores } from '../crypto/keys.ts';
import { acquireSharedLock, type RepoLock } from '../repo/locks.ts';
import { Repository, RepositoryMissingError } from '../repo/repository.ts';
import { checkRepositoryLevel } from './compression.ts';
import type { RunState } from './history.ts';
import type { BackupOptions } from './types.ts';
import type { SourceWalk } from './walk.ts';

// Stage "open": the repository opened (or created) and locked for the backup.

export interface OpenRepository {
  repo: Repository;
  /** Created by this backup. */
  created: boolean;
  /** The shared lock this backup holds. */
  lock: RepoLock;
  /** What the store's write probe had to say (warnings for the backup's result). */
  probeWarnings: string[];
}

/**
 * An existing repository is opened (and, if encrypted, unlocked) before anything is written: a
 * wrong passphrase leaves no trace, not even the write probe (nor a failure record). Meanwhile
 * the walk runs ahead (see SourceWalk): the round trips, and a scrypt that leaves a core free,
 * leave the main thread idle.
 */
export async function openRepository(opts: BackupOptions, walk: SourceWalk, run: RunState): Promise<OpenRepository> {
  const store = opts.store;
  const preparing = (async () => {
    let opened: Repository | undefined;
    try {
      opened = await Repository.open(store, opts.keys);
    } catch (e) {
      if (!(e instanceof RepositoryMissingError)) throw e;
    }
    // The codec and level this backup will use, checked before anything is written: the
    // repository's defaults may be what does not fit.
    checkRepositoryLevel(opts, opened?.config.defaults);
    const probed = await store.probe();
    const { repo, created } = opened ? { repo: opened, created: false } : await Repository.openOrInit(store, opts.keys);
    run.repoOpen = true;
    run.historyCrypto = repo.historyCrypto();
    run.operation = 'lock';
    // Shared: backups run side by side; forget and prune (exclusive) wait until they are done.
    const lock = await acquireSharedLock(store, 'backup', { waitMs: opts.lockWaitMs ?? 5 * 60_000 });
    return { repo, created, lock, probeWarnings: probed?.warnings ?? [] };
  })();
  // Not while the passphrase's scrypt lanes take every core: walking would only delay the key.
  await walk.runAheadWhile(preparing, opts.signal, derivationHoldingCores);
  return preparing;
}
