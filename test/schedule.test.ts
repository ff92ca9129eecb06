// `s3backup schedule`: jobs on fast cron expressions (with a seconds field) running real backups
// to a local repository: runs happen, a run due while the previous one still runs is skipped
// and logged as missed, runs slept through are logged as missed, and SIGTERM lets the running
// backup finish before the process exits 0.
import { DelegatingStore } from './helpers/store.ts';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { UsageError } from '../src/errors.ts';
import { RunLog } from '../src/log/runlog.ts';
import { Repository } from '../src/repo/repository.ts';
import { backupJob, checkTimezone, parseCron, Scheduler, type SchedulerLog } from '../src/schedule/scheduler.ts';
import { LocalStore } from '../src/store/local.ts';
import type { PutOptions, Store } from '../src/store/store.ts';
import { BIN, isolatedEnv, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('schedule');
const env = isolatedEnv(path.join(work, 'home'));
const src = path.join(work, 'data');
fs.mkdirSync(src);
fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
fs.writeFileSync(path.join(src, 'b.txt'), 'beta\n'.repeat(1000));

after(() => fs.rmSync(work, { recursive: true, force: true }));

/** Holds every manifest write until open() is called: a backup that "takes" as long as we like. */
class GatedStore extends DelegatingStore {
  private gate: Promise<void>;
  private release = () => {};
  constructor(inner: Store, gated = true) {
    super(inner);
    this.gate = gated ? new Promise((r) => (this.release = r)) : Promise.resolve();
  }
  open(): void {
    this.release();
  }
  override async put(key: string, body: Buffer | Readable, opts?: PutOptions): Promise<void> {
    if (key.startsWith('snapshots/')) await this.gate;
    return this.inner.put(key, body, opts);
  }
  override async close() {}
}

/** backup.log through RunLog, plus the lines in memory for the test to look at. */
function testLog(dir: string, command: string, lines: string[]): SchedulerLog {
  const log = new RunLog(dir, command);
  return {
    info: (m) => {
      lines.push(`INFO ${m}`);
      log.info(m);
    },
    warn: (m) => {
      lines.push(`WARN ${m}`);
      log.warn(m);
    },
    error: (m) => {
      lines.push(`ERROR ${m}`);
      log.error(m);
    },
  };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await sleep(20);
  }
}

/** "started" and "done/failed" lines of the scheduler, in order, must alternate: never two runs at once. */
function assertOneAtATime(lines: string[]): void {
  let inRun = false;
  for (const l of lines) {
    if (/ run due at .* started$/.test(l)) {
      assert.ok(!inRun, `a run started while another was running:\n${lines.join('\n')}`);
      inRun = true;
    } else if (/ run due at .* (done|failed)/.test(l)) inRun = false;
  }
}

describe('Scheduler (library) with real backups to a local repository', () => {
  test('runs on schedule; a run due while the previous one still runs is skipped and logged as missed', async () => {
    const repoDir = path.join(work, 'repo-overlap');
    const logDir = path.join(work, 'logs-overlap');
    const lines: string[] = [];
    const stores: GatedStore[] = [];
    const scheduler = new Scheduler({
      repository: repoDir,
      log: testLog(logDir, 'schedule', lines),
      jobs: [
        {
          name: 'backup',
          cron: '* * * * * *',
          run: backupJob({
            openStore: async () => {
              const s = new GatedStore(new LocalStore(repoDir), stores.length === 0); // only the first run hangs
              stores.push(s);
              return s;
            },
            options: { sources: [src] },
            log: testLog(logDir, 'backup', lines),
          }),
        },
      ],
    });
    scheduler.start();
    try {
      // The first backup hangs before its manifest; the runs due meanwhile must be skipped.
      await until('first run started', () => stores.length === 1);
      await until(
        'a run skipped as missed',
        () => lines.some((l) => /^WARN backup run due at .* missed: the backup run started at .* is still running/.test(l)),
        5000,
      );
      assert.equal(stores.length, 1, 'a second backup started while the first was running');
      stores[0]!.open();
      await until('two backups done', () => scheduler.stats.get('backup')!.ok >= 2);
    } finally {
      for (const s of stores) s.open();
      await scheduler.stop();
    }
    const stats = scheduler.stats.get('backup')!;
    const ids = await (await Repository.open(new LocalStore(repoDir))).snapshotIds();
    assert.equal(ids.length, stats.ok, `backups listed ${ids.length}, runs ok ${stats.ok}`);
    assert.ok(ids.length >= 2);
    assert.ok(stats.missed >= 1);
    assert.equal(stats.failed, 0, lines.join('\n'));
    assertOneAtATime(lines);
    // All of it is in backup.log, with the backup's own lines as "s3backup backup" writes them.
    const logText = fs.readFileSync(path.join(logDir, 'backup.log'), 'utf8');
    assert.match(
      logText,
      /WARN {2}\[schedule pid \d+\] backup run due at \S+ missed: the backup run started at \S+ on .* is still running/,
    );
    assert.match(logText, new RegExp(`INFO  \\[backup pid \\d+\\] backup ${ids[0]!.replace(/\./g, '\\.')} done: 2 files`));
    assert.match(fs.readFileSync(path.join(logDir, 'backup-errors.log'), 'utf8'), /missed/);
  });

  test('stop() waits for the running backup, which is then listed; nothing runs after it', async () => {
    const repoDir = path.join(work, 'repo-stop');
    const lines: string[] = [];
    let store: GatedStore | undefined;
    const scheduler = new Scheduler({
      repository: repoDir,
      log: testLog(path.join(work, 'logs-stop'), 'schedule', lines),
      jobs: [
        {
          name: 'backup',
          cron: '* * * * * *',
          run: backupJob({
            openStore: async () => (store = new GatedStore(new LocalStore(repoDir))),
            options: { sources: [src] },
            log: testLog(path.join(work, 'logs-stop'), 'backup', lines),
          }),
        },
      ],
    });
    scheduler.start();
    await until('a run started', () => store !== undefined);
    let stopped = false;
    const stopping = scheduler.stop().then(() => (stopped = true));
    await sleep(1500);
    assert.equal(stopped, false, 'stop() returned while the backup was still running');
    store!.open();
    await stopping;
    const ids = await (await Repository.open(new LocalStore(repoDir))).snapshotIds();
    assert.equal(ids.length, 1);
    await sleep(1200);
    assert.equal(scheduler.stats.get('backup')!.runs, 1, lines.join('\n'));
  });

  test('runs the process slept through are logged as missed, and the job runs once', async () => {
    const lines: string[] = [];
    let runs = 0;
    const scheduler = new Scheduler({
      repository: 'memory://late',
      log: testLog(path.join(work, 'logs-late'), 'schedule', lines),
      jobs: [
        {
          name: 'backup',
          cron: '* * * * * *',
          run: async () => {
            runs++;
            return { code: 0, summary: 'ok' };
          },
        },
      ],
    });
    scheduler.start();
    try {
      await until('first run', () => runs === 1, 3000);
      const end = Date.now() + 2600; // the event loop blocked: timers cannot fire
      while (Date.now() < end);
      await until('the late run', () => runs === 2, 3000);
    } finally {
      await scheduler.stop();
    }
    const missed = lines.find((l) => /^WARN backup run\(s\) due at .* missed: the scheduler was not running then/.test(l));
    assert.ok(missed, lines.join('\n'));
    assert.ok((missed!.match(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/g) ?? []).length >= 1);
    assert.ok(scheduler.stats.get('backup')!.missed >= 1);
  });

  test('cron expressions and time zones are checked up front', () => {
    assert.throws(
      () => parseCron('every day', undefined, 'schedule.backup'),
      (e: unknown) => e instanceof UsageError && /schedule\.backup: invalid cron expression "every day"/.test(e.message),
    );
    assert.throws(() => parseCron('61 * * * *', undefined, 'schedule.backup'), UsageError);
    assert.equal(parseCron('0 2 * * *', 'Europe/Berlin', 'x').nextRuns(1).length, 1);
    assert.throws(
      () => checkTimezone('Mars/Olympus_Mons'),
      (e: unknown) => e instanceof UsageError && /unknown time zone/.test(e.message),
    );
    const s = new Scheduler({
      repository: 'x',
      log: { info() {}, warn() {}, error() {} },
      jobs: [{ name: 'backup', cron: '30 2 * * *', run: async () => ({ code: 0, summary: '' }) }],
    });
    const next = s.nextRuns(2)[0]!.times;
    assert.equal(next.length, 2);
    assert.deepEqual(
      next.map((t) => t.toISOString().slice(11)),
      ['02:30:00.000Z', '02:30:00.000Z'],
    );
    assert.equal(next[1]!.getTime() - next[0]!.getTime(), 86_400_000);
  });
});

describe('s3backup schedule (CLI)', () => {
  const repoDir = path.join(work, 'repo-cli');
  const logDir = path.join(work, 'logs-cli');
  const config = path.join(work, 's3backup.yaml');
  const costCsv = path.join(work, 'reports', 'cost_report.csv');
  fs.writeFileSync(
    config,
    [
      `repository: ${repoDir}`,
      `logDir: ${logDir}`,
      `sources: [${src}]`,
      'level: 19',
      'schedule:',
      '  backup: "* * * * * *"',
      '  cost: "0 3 * * 0"',
      'cost:',
      `  saveCsv: ${costCsv}`,
      '',
    ].join('\n'),
  );
  const logText = () => (fs.existsSync(path.join(logDir, 'backup.log')) ? fs.readFileSync(path.join(logDir, 'backup.log'), 'utf8') : '');

  test('prints the next runs, runs backups, and on SIGTERM lets the running one finish, then exits 0', async () => {
    const child = spawn(process.execPath, [BIN, 'schedule', '--config', config], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      // Both lines, whatever order and chunks they arrive in.
      await until(
        'the next run times',
        () => /backup job "\* \* \* \* \* \*": next runs at \S+Z, \S+Z, \S+Z/.test(stdout) && /cost job "/.test(stdout),
        5000,
      );
      assert.match(stdout, /cost job "0 3 \* \* 0": next runs at \S+T03:00:00\.000Z/);
      await until('two backups', () => (logText().match(/\[schedule pid \d+\] backup run due at \S+ done/g) ?? []).length >= 2);
      // A new file of ~1.6 MB (zstd level 19: about a second to compress), so the next run is still busy when SIGTERM comes.
      const words = Array.from({ length: 4000 }, (_, i) => ((i * 2654435761) % 1e9).toString(36));
      let x = 7;
      const text = Array.from({ length: 250_000 }, () => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return words[(x >>> 12) % words.length];
      }).join(' ');
      fs.writeFileSync(path.join(work, 'big.txt'), text);
      fs.renameSync(path.join(work, 'big.txt'), path.join(src, 'big.txt'));
      const addedAt = new Date().toISOString();
      const startedAfter = () =>
        logText()
          .split('\n')
          .some((l) => / \[schedule pid \d+\] backup run due at \S+ started$/.test(l) && l.slice(0, 24) > addedAt);
      await until('a run that includes the new file', startedAfter);
      child.kill('SIGTERM');
      const code = await exited;
      assert.equal(code, 0, stderr);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    const log = logText();
    const sigAt = log.indexOf('SIGTERM received: waiting for the backup run started at');
    assert.ok(sigAt > 0, `SIGTERM did not arrive during a run:\n${log}`);
    assert.match(log.slice(sigAt), /\[schedule pid \d+\] backup run due at \S+ done: backup \S+ \(\w+\): 3 files/);
    assert.match(log.slice(sigAt), /scheduler stopped: \d+ run\(s\), 0 failed/);
    const list = await runCli(['list', '--json', '--repo', repoDir], { env });
    const backups = JSON.parse(list.stdout).backups;
    assert.ok(backups.length >= 3, list.stdout);
    assert.equal(backups.at(-1).files, 3, 'the backup running at SIGTERM is the last one listed, with the new file');
    assert.match(stdout, /SIGTERM received/);
  });

  test('--once backup runs one backup now and exits; --once cost runs one cost analysis and appends its CSV row', async () => {
    const before = (await (await Repository.open(new LocalStore(repoDir))).snapshotIds()).length;
    const r = await runCli(['schedule', '--once', 'backup', '--config', config, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.ok, true);
    assert.match(doc.id, /^\d{8}T/);
    const after = await (await Repository.open(new LocalStore(repoDir))).snapshotIds();
    assert.equal(after.length, before + 1);
    assert.equal(after.at(-1), doc.id);
    assert.match(logText(), /backup run \(--once\) done/);

    const cost = await runCli(['schedule', '--once', 'cost', '--config', config], { env });
    assert.equal(cost.code, 0, cost.stderr);
    assert.match(cost.stdout, new RegExp(`cost of ${repoDir}: \\d+ objects, .*/month now; .*row appended to ${costCsv}`));
    const rows = fs.readFileSync(costCsv, 'utf8').trimEnd().split('\n');
    assert.equal(rows.length, 2);
    assert.equal(rows[1]!.split(',')[1], repoDir);
    assert.match(logText(), /\[schedule pid \d+\] cost run \(--once\) done: cost of /);
    const bad = await runCli(['schedule', '--once', 'prune', '--config', config], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown job "prune"/);
  });

  test('configuration errors are exit 2, naming the setting', async () => {
    const bare = path.join(work, 'bare.yaml');
    fs.writeFileSync(bare, `repository: ${repoDir}\nlogDir: ${logDir}\nsources: [${src}]\n`);
    const none = await runCli(['schedule', '--config', bare], { env });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /nothing to schedule/);
    const cron = await runCli(['schedule', '--config', bare, '--backup-cron', '0 25 * * *'], { env });
    assert.equal(cron.code, 2);
    assert.match(cron.stderr, /schedule\.backup: invalid cron expression "0 25 \* \* \*"/);
    const tz = await runCli(['schedule', '--config', bare, '--backup-cron', '0 2 * * *', '--timezone', 'Nowhere/Land'], { env });
    assert.equal(tz.code, 2);
    assert.match(tz.stderr, /unknown time zone "Nowhere\/Land"/);
    const nosrc = await runCli(['schedule', path.join(work, 'missing'), '--config', bare, '--backup-cron', '0 2 * * *'], { env });
    assert.equal(nosrc.code, 2);
    assert.match(nosrc.stderr, /does not exist/);
  });
});
