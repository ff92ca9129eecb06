// Child process of test/cost-memory.test.ts (run with --expose-gc): analyzes a bucket of N
// generated objects, through a listing (a Store whose list yields them one by one, as S3 pages
// would) or through an S3 Inventory CSV.gz file, and reports the live heap after a full GC at
// every progress report (each 10,000 objects) above the baseline. Mode "retain" keeps every
// listed object in an array on the side: the control that shows the measurement catches an
// implementation holding the listing in memory.
import { analyzeCost } from '../../src/cost/report.ts';
import { loadPriceTable, selectPrices } from '../../src/cost/pricing.ts';
import { NotFoundError } from '../../src/errors.ts';
import type { BucketCapability, LifecycleRule, ObjectInfo, Store, StoreCapabilities } from '../../src/store/store.ts';
import { generated, NOW } from './cost-generated.ts';

const [mode, nText, file] = process.argv.slice(2) as ['listing' | 'retain' | 'inventory', string, string | undefined];
const n = Number(nText);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const retained: ObjectInfo[] = [];
const rules: LifecycleRule[] = [
  {
    id: 'archives',
    enabled: true,
    prefix: 'repo/archives/',
    tagFilter: false,
    transitions: [
      { days: 30, storageClass: 'STANDARD_IA' },
      { days: 90, storageClass: 'GLACIER' },
    ],
    ignored: [],
  },
];

class GeneratedBucket implements Store, BucketCapability {
  readonly location = 's3://generated/repo';
  readonly bucket = 'generated';
  capabilities(): StoreCapabilities {
    return { bucket: this };
  }
  async region(): Promise<string> {
    return 'us-east-1';
  }
  async *listBucket(): AsyncIterable<ObjectInfo> {
    for (let i = 0; i < n; i++) {
      const o = generated(i);
      if (mode === 'retain') retained.push(o);
      // Yield to the event loop now and then, as network pages would.
      if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
      yield o;
    }
  }
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const o of this.listBucket()) if (o.key.startsWith(`repo/${prefix}`)) yield { ...o, key: o.key.slice(5) };
  }
  bucketKey(k: string): string {
    return `repo/${k}`;
  }
  async getLifecycleRules(): Promise<LifecycleRule[]> {
    return rules;
  }
  async put(): Promise<void> {}
  async get(key: string): Promise<never> {
    throw new NotFoundError(key, this.location);
  }
  async head(): Promise<undefined> {
    return undefined;
  }
  async delete(): Promise<void> {}
  async probe(): Promise<undefined> {}
  async close(): Promise<void> {}
}

gc();
const base = process.memoryUsage().heapUsed;
let peak = 0;
let samples = 0;
const sample = () => {
  gc();
  peak = Math.max(peak, process.memoryUsage().heapUsed - base);
  samples++;
};
const report = await analyzeCost(new GeneratedBucket(), {
  prices: selectPrices(loadPriceTable().table, 'us-east-1'),
  wholeBucket: true,
  ...(mode === 'inventory' ? { inventory: file } : {}),
  now: new Date(NOW),
  onProgress: (p) => {
    if (p.phase === 'list' || p.phase === 'inventory' || p.phase === 'simulate') sample();
  },
});
sample();
process.stdout.write(
  `${JSON.stringify({ objects: report.totalObjects, bytes: report.totalBytes, backups: report.backups.count, peakHeapDelta: peak, samples, retained: retained.length, maxRssKiB: process.resourceUsage().maxRSS })}\n`,
);
