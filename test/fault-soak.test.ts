// Random network faults over a repository's whole life: backups full and incremental,
// restore, verify --deep, ls, cat, forget, prune, every request of them through the fault proxy
// with a seeded chance of a 503, a 500, a reset before or after S3 did the work, a body cut or
// truncated mid-way, or (at 20 %) a stall. At 5 % every command must complete: the retries absorb
// the faults. At 20 % a command may fail, but only cleanly: non-zero, one line, no stack trace,
// within the stall bound. After each run, straight against Ceph: every listed backup verifies
// deeply and restores byte-exact to the tree it was taken of, and prune deleted nothing a listed
// backup needs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type FaultAction, type FaultProxy, startFaultProxy } from './helpers/fault-proxy.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, s3TestConfig } from './helpers/s3.ts';
import { type CliResult, diffTrees, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('soak');
const home = path.join(work, 'home');
let bucket = '';

before(async () => {
  bucket = await createTestBucket('fault-soak');
});
after(async () => {
  if (bucket) await deleteTestBucket(bucket);
  fs.rmSync(work, { recursive: true, force: true });
});

const CUTS: FaultAction[] = [
  { kind: 'status', status: 503 },
  { kind: 'status', status: 500 },
  { kind: 'reset-before' },
  { kind: 'forward-drop' },
  { kind: 'reset-mid-body', fraction: 0.5 },
  { kind: 'truncate', fraction: 0.5 },
];

interface Attempt {
  args: string[];
  start: number;
  end: number;
  result: CliResult;
  /** Backups only: the source as it was, for the byte-exact check. */
  frozen?: string;
}

for (const { p, seed, stall, actions } of [
  { p: 0.05, seed: 5, stall: '20s', actions: CUTS },
  { p: 0.2, seed: 20, stall: '6s', actions: [...CUTS, { kind: 'stall' } as FaultAction] },
]) {
  const pct = Math.round(p * 100);
  describe(`random faults on ${pct} % of requests`, () => {
    let proxy: FaultProxy;
    const prefix = `soak-${pct}`;
    const src = path.join(work, `src-${pct}`, 'data');
    const attempts: Attempt[] = [];
    const stallMs = Number.parseInt(stall, 10) * 1000;

    before(async () => {
      proxy = await startFaultProxy({ upstream: s3TestConfig().endpoint, seed });
      fs.mkdirSync(path.join(src, 'docs'), { recursive: true });
      fs.writeFileSync(path.join(src, 'big.bin'), pseudoRandom(9 << 20, seed)); // a multipart upload
      for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(src, 'docs', `f${i}.txt`), `file ${i}\n`.repeat(200 * i + 1));
    });
    after(async () => {
      await proxy?.close();
    });

    const run = async (args: string[], opts: { direct?: boolean } = {}): Promise<CliResult> => {
      const env = isolatedEnv(home, {
        ...s3CliEnv(),
        AWS_ENDPOINT_URL_S3: opts.direct ? s3TestConfig().endpoint : proxy.url,
        S3BACKUP_STALL_TIMEOUT: stall,
      });
      return runCli([...args, '--repo', `s3://${bucket}/${prefix}`], { env });
    };

    const faulty = async (args: string[], frozen?: string): Promise<Attempt> => {
      const start = Date.now();
      const result = await run(args);
      const a: Attempt = { args, start, end: Date.now(), result, ...(frozen ? { frozen } : {}) };
      attempts.push(a);
      if (result.code !== 0 && result.code !== 3) {
        // A failure is clean: one error line (and a hint), no stack trace.
        assert.match(result.stderr, /s3backup: error: /, `${args.join(' ')}: ${result.stderr}`);
        assert.doesNotMatch(result.stderr, /\n\s+at |unexpected error/, `${args.join(' ')}: ${result.stderr}`);
      }
      return a;
    };

    const freeze = () => {
      const copy = path.join(fs.mkdtempSync(path.join(work, 'frozen-')), 'data');
      execFileSync('cp', ['-a', src, copy]);
      return copy;
    };

    test('a repository lived through the faults', async (t) => {
      const mutate = (i: number) => {
        fs.appendFileSync(path.join(src, 'docs', `f${i}.txt`), `appended ${i}\n`);
        fs.writeFileSync(path.join(src, `new-${i}.txt`), `new ${i}\n`);
        fs.rmSync(path.join(src, 'docs', `f${30 + i}.txt`), { force: true });
      };
      const rule = proxy.random({ p, seed, actions });
      try {
        for (let i = 0; i < 4; i++) {
          if (i > 0) mutate(i);
          await faulty(['backup', src, '--json'], freeze());
        }
        const target = path.join(work, `restore-${pct}`);
        const restore = await faulty(['restore', 'latest', '--target', target]);
        await faulty(['verify', 'latest', '--deep']);
        await faulty(['ls', 'latest']);
        await faulty(['cat', 'latest', 'data/docs/f3.txt']);
        await faulty(['list']);
        await faulty(['forget', '--keep-last', '3']);
        await faulty(['prune', '--grace', '0']);
        if (restore.result.code === 0) {
          // The newest backup that exists is the one restored (failed runs may have left none newer).
          const listed = json((await run(['list', '--json'], { direct: true })).stdout).backups as { time: string }[];
          const newest = attempts.find(
            (a) => a.frozen && a.start <= Date.parse(listed.at(-1)!.time) && Date.parse(listed.at(-1)!.time) <= a.end,
          );
          assert.ok(newest?.frozen);
          assert.deepEqual(diffTrees(newest.frozen, path.join(target, 'data')), [], 'the restore through the faults is byte-exact');
        }
      } finally {
        rule.remove();
      }

      const failed = attempts.filter((a) => a.result.code !== 0 && a.result.code !== 3);
      const longest = Math.max(...attempts.map((a) => a.end - a.start));
      t.diagnostic(
        `${pct} %: ${proxy.summary()}; ${attempts.length} commands, ${failed.length} failed` +
          `${failed.length ? ` (${failed.map((a) => `${a.args[0]}: ${a.result.stderr.split('\n')[0]}`).join('; ')})` : ''}; longest ${longest} ms`,
      );
      if (p <= 0.05)
        assert.deepEqual(
          failed.map((a) => `${a.args.join(' ')}: ${a.result.stderr}`),
          [],
          'at 5 % every command completes',
        );
      // The stall bound: silence, its cleanup, and the work itself (a few seconds here).
      assert.ok(longest < stallMs * 3 + 30_000, `longest command ${longest} ms`);
      assert.ok(proxy.counters.faults > 0, 'faults were injected');

      // Straight against Ceph: every listed backup verifies deeply and restores byte-exact.
      const list = await run(['list', '--json'], { direct: true });
      assert.equal(list.code, 0, list.stderr);
      const backups = json(list.stdout).backups as { id: string; time: string; broken: boolean }[];
      assert.ok(backups.length >= (p <= 0.05 ? 3 : 1), `backups kept: ${backups.length}`);
      for (const b of backups) {
        assert.equal(b.broken, false, `${b.id} broken`);
        const v = await run(['verify', b.id, '--deep'], { direct: true });
        assert.equal(v.code, 0, `verify --deep ${b.id}: ${v.stdout}${v.stderr}`);
        const made = attempts.find((a) => a.frozen && a.start <= Date.parse(b.time) && Date.parse(b.time) <= a.end);
        assert.ok(made?.frozen, `backup ${b.id} was made by one of the runs`);
        const target = fs.mkdtempSync(path.join(work, 'check-'));
        const r = await run(['restore', b.id, '--target', target], { direct: true });
        assert.equal(r.code, 0, `restore ${b.id}: ${r.stderr}`);
        assert.deepEqual(diffTrees(made.frozen, path.join(target, 'data')), [], `${b.id} restores byte-exact`);
        fs.rmSync(target, { recursive: true, force: true });
      }
      const all = await run(['verify', '--all'], { direct: true });
      assert.equal(all.code, 0, all.stdout);
    });
  });
}
