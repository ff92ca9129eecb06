import { IntegrityError, NotFoundError } from '../errors.ts';
import type { ArchiveRef, ManifestHeader } from '../repo/manifest.ts';
import { ARCHIVES, type Repository } from '../repo/repository.ts';
import { readManifestHead } from '../repo/manifest-head.ts';
import { mapLimit } from '../concurrency.ts';
import type { Store } from '../store/store.ts';

/** An archive a backup needs that is not in the repository as its manifest describes it. */
export interface ArchiveProblem {
  key: string;
  problem: string;
}

/**
 * What is wrong with a backup's archives, given each archive's stored size (undefined: not
 * there). A backup with any problem is broken: some of its files cannot be restored.
 */
export function archiveProblems(archives: ArchiveRef[], sizeOf: (key: string) => number | undefined): ArchiveProblem[] {
  const problems: ArchiveProblem[] = [];
  for (const a of archives) {
    const size = sizeOf(a.key);
    if (size === undefined) problems.push({ key: a.key, problem: 'archive is missing' });
    else if (size !== a.size) problems.push({ key: a.key, problem: `archive has ${size} bytes, manifest says ${a.size}` });
  }
  return problems;
}

/** The stored size of every archive, from one listing of archives/. */
export async function archiveSizes(store: Store): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for await (const o of store.list(ARCHIVES)) sizes.set(o.key, o.size);
  return sizes;
}

/**
 * The stored sizes of these archives, one HEAD each (fewer requests than a listing when a
 * repository holds many archives and a backup needs a few), remembered for the run.
 */
export class ArchiveSizeCache {
  private readonly store: Store;
  private readonly known = new Map<string, Promise<number | undefined>>();
  constructor(store: Store) {
    this.store = store;
  }

  async problems(archives: ArchiveRef[]): Promise<ArchiveProblem[]> {
    const sizes = new Map<string, number | undefined>();
    await mapLimit(archives, 8, async (a) => {
      let p = this.known.get(a.key);
      if (!p) {
        p = this.store.head(a.key).then((info) => info?.size);
        this.known.set(a.key, p);
      }
      sizes.set(a.key, await p);
    });
    return archiveProblems(archives, (k) => sizes.get(k));
  }
}

export type SurveyedBackup =
  | { id: string; header: ManifestHeader; archives: ArchiveRef[]; problems: ArchiveProblem[] }
  | { id: string; error: string };

/**
 * Every backup with what is wrong with it, oldest first: its manifest's head (header and
 * archives line) against one listing of archives/. A manifest that cannot be read is reported
 * with its error; one deleted since the listing is left out.
 */
export async function surveyBackups(repo: Repository): Promise<SurveyedBackup[]> {
  const [ids, sizes] = await Promise.all([repo.snapshotIds(), archiveSizes(repo.store)]);
  const items = await mapLimit(ids, 8, async (id): Promise<SurveyedBackup | undefined> => {
    try {
      const head = await readManifestHead(repo, id);
      return { id, header: head.header, archives: head.archives, problems: archiveProblems(head.archives, (k) => sizes.get(k)) };
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      if (e instanceof IntegrityError) return { id, error: e.message };
      throw e;
    }
  });
  const out = items.filter((x): x is SurveyedBackup => x !== undefined);
  // An archive written after the listing (a backup finishing meanwhile) is not missing: look again.
  const again = new ArchiveSizeCache(repo.store);
  for (const item of out) {
    if ('problems' in item && item.problems.length > 0) item.problems = await again.problems(item.archives);
  }
  return out;
}
