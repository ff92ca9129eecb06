import type { Readable } from 'node:stream';
import { S3BackupError } from '../errors.ts';
import { DelegatingStore } from './delegating.ts';
import type { PutOptions, StoreCapabilities } from './store.ts';

/**
 * A store that refuses every write: the dashboard is read-only by construction (kopia's
 * readonly_storage). Of the inner store's capabilities only the read-only bucket view stays,
 * for the cost report; thawing, purging versions and aborting uploads would change the bucket.
 */
export class ReadOnlyStore extends DelegatingStore {
  override put(key: string, _body: Buffer | Readable, _opts?: PutOptions): Promise<void> {
    return Promise.reject(new S3BackupError(`the dashboard is read-only (refused to write ${key})`));
  }
  override delete(keys: string[]): Promise<void> {
    return Promise.reject(new S3BackupError(`the dashboard is read-only (refused to delete ${keys.length} objects)`));
  }
  /** Nothing to prove: a read-only session needs no write access. */
  override probe(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
  override capabilities(): StoreCapabilities {
    const { bucket, localFiles } = this.inner.capabilities();
    return { ...(bucket ? { bucket } : {}), ...(localFiles ? { localFiles } : {}) };
  }
}
