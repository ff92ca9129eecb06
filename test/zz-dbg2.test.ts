import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import { runVerify } from '../src/verify/verify.ts';
import { LocalStore } from '../src/store/local.ts';
import { getBuffer } from '../src/store/store.ts';
import { pseudoRandom, tempDir } from './helpers/tree.ts';
test('x', async () => {
  const src = path.join(tempDir('dbg'), 'src');
  fs.mkdirSync(src);
  const data = pseudoRandom(5 * 65536 + 777, 11);
  fs.writeFileSync(path.join(src, 'multi.bin'), data);
  for (let i = 0; i < 5; i++) {
    const local = new LocalStore(tempDir('dbgrepo'));
    const b = await runBackup({ store: local, sources: [src], frameSize: 65536, codec: 'none' });
    const S = await getBuffer(local, b.archiveKey);
    const v = await runVerify({ store: local, snapshot: b.id, deep: true });
    const D = S.subarray(1024, 1024 + data.length);
    const bad: number[] = [];
    for (let k = 0; k < data.length; k += 4096) if (!D.subarray(k, k + 4096).equals(data.subarray(k, k + 4096))) bad.push(k / 4096);
    const where = bad.length ? S.indexOf(D.subarray(bad[0]! * 4096, bad[0]! * 4096 + 32)) : -2;
    const inData = bad.length ? data.indexOf(D.subarray(bad[0]! * 4096, bad[0]! * 4096 + 32)) : -2;
    console.log('bad 4k blocks', bad.join(','), 'found in data at', inData);
    console.log(i, 'stored ok', S.subarray(1024, 1024 + data.length).equals(data), JSON.stringify(v.problems).slice(0, 100));
  }
});
