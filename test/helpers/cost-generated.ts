// The generated bucket of test/cost-memory.test.ts (shared by the test and its child process).
import type { ObjectInfo } from '../../src/store/store.ts';

const DAY = 86_400_000;
export const NOW = Date.UTC(2026, 10, 26);
const CLASSES = ['STANDARD', 'STANDARD_IA', 'GLACIER'];

/** The i-th generated object: 1% are backups (an archive and a manifest), the rest data files. */
export function generated(i: number): ObjectInfo {
  const lastModified = new Date(NOW - (i % 365) * DAY);
  if (i % 100 === 0) {
    const b = i / 100;
    const t = new Date(NOW - b * DAY).toISOString().replace(/[-:]/g, '');
    const id = `${t}-${(b >>> 0).toString(16).padStart(8, '0')}`;
    return { key: `repo/archives/${id}.tar.zst`, size: 50_000_000 + b, lastModified, storageClass: CLASSES[b % 3] };
  }
  if (i % 100 === 1) {
    const b = (i - 1) / 100;
    const t = new Date(NOW - b * DAY).toISOString().replace(/[-:]/g, '');
    const id = `${t}-${(b >>> 0).toString(16).padStart(8, '0')}`;
    return { key: `repo/snapshots/${id}.ndjson.zst`, size: 20_000, lastModified, storageClass: 'STANDARD' };
  }
  const name = `${((i * 2654435761) >>> 0).toString(16)}${((i * 40503) >>> 0).toString(16)}`.padEnd(24, 'x');
  return {
    key: `elsewhere/projects/dataset-${i % 997}/part-${name}-${i}.parquet`,
    size: 1000 + (i % 500_000),
    lastModified,
    storageClass: CLASSES[i % 3],
  };
}
