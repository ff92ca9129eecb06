import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { runVerify } from '../src/verify/verify.ts';
import { Repository } from '../src/repo/repository.ts';
import { ArchiveCursor } from '../src/archive/reader.ts';
import { getBuffer } from '../src/store/store.ts';
import { createTestBucket, deleteTestBucket, testS3Store } from './helpers/s3.ts';
import { pseudoRandom, tempDir } from './helpers/tree.ts';
test('x', async () => {
  const src = path.join(tempDir('dbg'), 'src');
  fs.mkdirSync(src);
  const data = pseudoRandom(5 * 65536 + 777, 11);
  fs.writeFileSync(path.join(src, 'multi.bin'), data);
  const bucket = await createTestBucket('dbg');
  const s3 = testS3Store(bucket, 'p');
  try {
    const b = await runBackup({ store: s3, sources: [src], frameSize: 65536, codec: 'none' });
    const v = await runVerify({ store: s3, snapshot: b.id, deep: true });
    console.log(JSON.stringify(v.problems));
    const repo = await Repository.open(s3);
    const m = await repo.loadManifest(b.id);
    const ref = m.archives[0]!;
    console.log(JSON.stringify(ref.frames));
    let e; for await (const x of m.entries()) if (x.type === 'file') e = x;
    const stats = { bytesFetched: 0, requests: 0 };
    const raws: Buffer[] = [];
    const cur = new ArchiveCursor(s3, ref, [[0, ref.frames.length - 1]], stats, (c) => raws.push(Buffer.from(c)));
    const got: Buffer[] = [];
    await cur.read(e!.offset!, e!.size, (c) => got.push(Buffer.from(c)));
    const G = Buffer.concat(got);
    console.log('len', G.length, data.length, 'eq', G.equals(data), stats, 'raw chunks', raws.map((r) => r.length).join(','));
    let first = -1; for (let i = 0; i < G.length; i++) if (G[i] !== data[i]) { first = i; break; }
    console.log('first diff', first);
    const S = await getBuffer(s3, ref.key);
    const R = Buffer.concat(raws);
    console.log('raw eq stored', R.equals(S), 'offset', e!.offset, 'S@off', S.subarray(e!.offset!, e!.offset! + 8).toString('hex'), 'data', data.subarray(0, 8).toString('hex'), 'G', G.subarray(0, 8).toString('hex'));
    const idx = S.indexOf(G.subarray(0, 64));
    console.log('G found in S at', idx);
    await cur.close();
  } finally { await s3.close(); await deleteTestBucket(bucket); }
});
