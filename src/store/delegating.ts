// A Store that forwards every call to another, its capabilities included: wrappers (the
// dashboard's read-only store; tests that count, refuse or hold back calls) extend it and
// override what they change. Capabilities reach the inner store directly, past the wrapper's
// overrides; a wrapper that must restrict them overrides capabilities() too (ReadOnlyStore).
import type { Readable } from 'node:stream';
import type { ByteRange, ObjectInfo, ProbeResult, PutOptions, Store, StoreCapabilities } from './store.ts';

export class DelegatingStore implements Store {
  readonly inner: Store;
  constructor(inner: Store) {
    this.inner = inner;
  }
  get location(): string {
    return this.inner.location;
  }
  put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    return this.inner.put(key, body, opts);
  }
  get(key: string, range?: ByteRange): Promise<Readable> {
    return this.inner.get(key, range);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }
  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }
  delete(keys: string[]): Promise<void> {
    return this.inner.delete(keys);
  }
  probe(): Promise<ProbeResult | undefined> {
    return this.inner.probe();
  }
  capabilities(): StoreCapabilities {
    return this.inner.capabilities();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
