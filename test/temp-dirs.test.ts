// Temporary manifest directories are named after their process; the next process removes those
// of processes that exited (a SIGKILLed backup cannot clean up after itself).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ownerTag, sweepStale } from '../src/repo/temp-dirs.ts';
import { tempDir } from './helpers/tree.ts';

const owner = ownerTag();
const host = owner.slice(0, owner.lastIndexOf('-'));

test('stale temp dirs: only those of exited processes of this host and pid namespace go', async () => {
  const base = tempDir('sweep');
  const exited = spawnSync(process.execPath, ['-e', '0']).pid!;
  const make = (name: string) => {
    fs.mkdirSync(path.join(base, name));
    fs.writeFileSync(path.join(base, name, 'entries.ndjson.zst'), 'x');
    return name;
  };
  const dead = make(`s3b-test-${owner}-${exited}-aB3xY9`);
  const keep = [
    make(`s3b-test-${owner}-${process.ppid}-Qw12Er`), // a running process
    make(`s3b-test-${owner}-${process.pid}-Zx98Cv`), // this one
    make(`s3b-test-other_host-1-${exited}-Ty67Ui`), // another host's (a shared temp dir)
    make(`s3b-test-${host}-99-${exited}-Rt56Yu`), // a container's: same host name, its own pids
    make(`s3b-test-${exited}-Gh45Jk`), // not our naming
    make(`other-${owner}-${exited}-Lp09Mn`), // another prefix
  ];
  const removed = await sweepStale(base, 's3b-test-');
  assert.deepEqual(removed, [path.join(base, dead)]);
  assert.deepEqual(fs.readdirSync(base).sort(), keep.sort());
  fs.rmSync(base, { recursive: true });
});
