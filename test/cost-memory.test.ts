// `s3backup cost` on a bucket of 100,000 objects keeps bounded memory: the listing and an S3
// Inventory CSV.gz are streamed into aggregates. Measured in a child process (--expose-gc): the
// live heap after a full GC at every 10,000 objects, above the baseline, must stay under a bound
// that a control run holding the listing in memory exceeds.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { after, describe, test } from 'node:test';
import { generated } from './helpers/cost-generated.ts';
import { tempDir } from './helpers/tree.ts';

const N = 100_000;
/** Live heap allowed above the baseline while analyzing N objects. */
const BOUND = 12 * 1024 * 1024;
const CHILD = path.join(import.meta.dirname, 'helpers', 'cost-memory-child.ts');
const work = tempDir('cost-memory');
after(() => fs.rmSync(work, { recursive: true, force: true }));

function child(
  mode: string,
  file?: string,
): { objects: number; backups: number; peakHeapDelta: number; samples: number; retained: number; maxRssKiB: number } {
  const r = spawnSync(process.execPath, ['--expose-gc', CHILD, mode, String(N), ...(file ? [file] : [])], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('100,000 objects in bounded memory', () => {
  test('the control (listing kept in an array) exceeds the bound: the measurement can fail', () => {
    const c = child('retain');
    assert.equal(c.retained, N);
    assert.ok(c.peakHeapDelta > BOUND, `control peak ${c.peakHeapDelta} should exceed ${BOUND}`);
  });

  test('a streamed listing stays under the bound', () => {
    const r = child('listing');
    assert.equal(r.objects, N);
    assert.equal(r.backups, N / 100);
    assert.ok(r.samples >= N / 10_000, `${r.samples} samples`);
    assert.ok(
      r.peakHeapDelta < BOUND,
      `peak live heap ${(r.peakHeapDelta / 2 ** 20).toFixed(1)} MiB above baseline (bound ${BOUND / 2 ** 20} MiB)`,
    );
  });

  test('a streamed S3 Inventory CSV.gz stays under the bound', async () => {
    const file = path.join(work, 'inventory.csv.gz');
    async function* rows() {
      for (let i = 0; i < N; i++) {
        const o = generated(i);
        yield `"generated","${encodeURIComponent(o.key)}","${o.size}","${o.lastModified.toISOString()}","${o.storageClass}","etag"\n`;
      }
    }
    await pipeline(Readable.from(rows()), zlib.createGzip(), fs.createWriteStream(file));
    const r = child('inventory', file);
    assert.equal(r.objects, N);
    assert.equal(r.backups, N / 100);
    assert.ok(
      r.peakHeapDelta < BOUND,
      `peak live heap ${(r.peakHeapDelta / 2 ** 20).toFixed(1)} MiB above baseline (bound ${BOUND / 2 ** 20} MiB)`,
    );
  });
});
