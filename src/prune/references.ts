import { IntegrityError, NotFoundError, S3BackupError } from '../errors.ts';
import { type ManifestHead, readManifestHead, segmentIdsOf } from '../repo/manifest-head.ts';
import type { Repository } from '../repo/repository.ts';
import { mapLimit } from '../concurrency.ts';

/** The archives and entry segments the remaining backups reference, from every manifest's head. */
export interface References {
  /** Archive or segment key → ids of the backups that list it. */
  referencedBy: Map<string, string[]>;
  /** Manifests read. */
  manifests: number;
}

/** Manifests that could not be read, and why: any of them could reference any archive. */
type Unreadable = { id: string; error: string }[];

function addReferences(repo: Repository, refs: References, id: string, head: ManifestHead): void {
  refs.manifests++;
  const keys = [...head.archives.map((a) => a.key), ...segmentIdsOf(head).map((segment) => repo.segmentKey(segment))];
  for (const key of keys) {
    const list = refs.referencedBy.get(key);
    if (list) list.push(id);
    else refs.referencedBy.set(key, [id]);
  }
}

/**
 * Read the head of the manifest of every backup in ids. Throws (so that prune deletes nothing)
 * when any listed manifest cannot be read.
 */
export async function readReferences(repo: Repository, ids: string[]): Promise<References> {
  const refs: References = { referencedBy: new Map(), manifests: 0 };
  const unreadable: Unreadable = [];
  const vanished: string[] = [];
  await mapLimit(ids, 8, async (id) => {
    let head: ManifestHead;
    try {
      head = await readManifestHead(repo, id);
    } catch (e) {
      if (e instanceof NotFoundError) {
        vanished.push(id);
        return;
      }
      if (e instanceof IntegrityError) {
        unreadable.push({ id, error: e.message });
        return;
      }
      throw e;
    }
    addReferences(repo, refs, id, head);
  });
  if (vanished.length > 0) await rereadVanished(repo, vanished, refs, unreadable);
  if (unreadable.length > 0) throw refusal(repo, unreadable);
  return refs;
}

/**
 * Listed, then "404" when read. With the exclusive lock held nothing else removes manifests,
 * and stores with a cache or eventual consistency do answer 404 for objects that are there:
 * one such answer must not make a listed backup's archives look unreferenced. Gone from a
 * fresh listing: really removed. Still listed: read again, and if it still cannot be read it
 * counts as unreadable (prune refuses).
 */
async function rereadVanished(repo: Repository, vanished: string[], refs: References, unreadable: Unreadable): Promise<void> {
  const listedNow = new Set(await repo.snapshotIds());
  for (const id of vanished) {
    if (!listedNow.has(id)) continue;
    for (let attempt = 1; ; attempt++) {
      try {
        addReferences(repo, refs, id, await readManifestHead(repo, id));
        break;
      } catch (e) {
        if (e instanceof NotFoundError && attempt < 3) {
          await new Promise((r) => setTimeout(r, 500 * attempt));
          continue;
        }
        if (e instanceof NotFoundError || e instanceof IntegrityError) {
          unreadable.push({ id, error: e instanceof NotFoundError ? 'it is listed, but reading it answers "not found"' : e.message });
          break;
        }
        throw e;
      }
    }
  }
}

function refusal(repo: Repository, unreadable: Unreadable): S3BackupError {
  unreadable.sort((a, b) => (a.id < b.id ? -1 : 1));
  const first = unreadable[0]!;
  return new S3BackupError(
    `prune refused: manifest ${repo.manifestKey(first.id)} cannot be read (${first.error})` +
      (unreadable.length > 1
        ? `, nor can ${unreadable.length - 1} other(s): ${unreadable
            .slice(1, 6)
            .map((u) => u.id)
            .join(', ')}`
        : '') +
      '; it could reference any archive, so nothing was deleted',
    {
      hint: `check it with "s3backup verify ${first.id}"; if that backup is lost, delete its manifest (${repo.manifestKey(first.id)}) by hand, then prune again`,
    },
  );
}
