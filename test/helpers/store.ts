// A Store that forwards every call to another: tests extend it to count or hold back calls.
import type { Readable } from 'node:stream';
import type { ByteRange, ObjectInfo, PutOptions, Store } from '../../src/store/store.ts';

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
  probe(): Promise<void> {
    return this.inner.probe();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
