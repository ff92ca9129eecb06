import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { type BackupResult, runBackup } from '../../src/backup/backup.ts';
import { LocalStore } from '../../src/store/local.ts';
import type { Store } from '../../src/store/store.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Store } from './s3.ts';
import { pseudoRandom, tempDir } from './tree.ts';

export { DelegatingStore } from '../../src/store/delegating.ts';

export interface TestBackend {
  name: string;
  /**
   * A fresh, empty repository location; cleanup() removes it. repoArg and cliEnv: the same
   * repository for the CLI (its --repo, and the environment that reaches it).
   */
  open: () => Promise<{ store: Store; repoArg: string; cliEnv: NodeJS.ProcessEnv; cleanup: () => Promise<void> }>;
}

/**
 * The two stores end-to-end tests run against: a local repository in a temporary directory,
 * and `prefix` in a new Ceph RGW bucket (named from `label`).
 */
export function testBackends(label: string, prefix: string): TestBackend[] {
  return [
    {
      name: 'local',
      open: async () => {
        const dir = tempDir(`${label}-repo`);
        return {
          store: new LocalStore(dir),
          repoArg: dir,
          cliEnv: {},
          cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
        };
      },
    },
    {
      name: 's3 (Ceph RGW)',
      open: async () => {
        const bucket = await createTestBucket(label);
        return {
          store: testS3Store(bucket, prefix),
          repoArg: `s3://${bucket}/${prefix}`,
          cliEnv: s3CliEnv(),
          cleanup: () => deleteTestBucket(bucket),
        };
      },
    },
  ];
}

/**
 * A backup split into several archives: three 3 MiB files of random bytes in `dir` (created),
 * backed up into `store` with an archive size of 4 MiB (one file per archive).
 */
export async function splitBackup(store: Store, dir: string): Promise<BackupResult> {
  fs.mkdirSync(dir, { recursive: true });
  for (const n of ['a', 'b', 'c']) fs.writeFileSync(`${dir}/${n}.bin`, pseudoRandom(3 << 20, n.charCodeAt(0)));
  const r = await runBackup({ store, sources: [dir], archiveSize: 4 << 20 });
  assert.ok(r.archiveKeys.length >= 2, `${r.archiveKeys.length} archives`);
  return r;
}
