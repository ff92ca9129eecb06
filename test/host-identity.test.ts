// The host a backup is recorded under: --host, S3BACKUP_HOST and config "host" against a host
// name that changes every run, as in a container (`docker compose run --rm`) or a GitHub-hosted
// job. The CLI runs with a really different kernel host name each time (unshare --uts, as a
// container gets its own UTS namespace) where this machine allows it, else with os.hostname()
// replaced in the child process; either way nothing in the tool is told about the change.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  checkHostName,
  generatedHostKind,
  generatedHostWarning,
  type HostedBackup,
  MIN_FRAGMENTED_GROUPS,
} from '../src/backup/host-identity.ts';
import { backupOptionsFromConfig } from '../src/backup/options.ts';
import { ConfigSchema, resolveConfig } from '../src/config/config.ts';
import { UsageError } from '../src/errors.ts';
import { HOSTNAME_MECHANISM, run, underHostname } from './helpers/deploy.ts';
import { type Receiver, startReceiver } from './helpers/fake-aws.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv } from './helpers/s3.ts';
import { BIN, type CliResult, isolatedEnv, json, ROOT, tempDir } from './helpers/tree.ts';

const work = tempDir('host-identity');
after(() => fs.rmSync(work, { recursive: true, force: true }));

describe('generated-looking host names', () => {
  test('container ids, CI runner names, pod names, cloud instance names and random ids count as generated', () => {
    const cases: [string, string][] = [
      ['3f2a1b4c5d6e', 'container ids'],
      ['a'.repeat(64), 'container ids'],
      ['fv-az123-456', 'GitHub-hosted runner names'],
      ['fv-az1234-5', 'GitHub-hosted runner names'],
      ['GitHub-Actions-12', 'GitHub-hosted runner names'],
      ['runnervmf4ws1', 'GitHub-hosted runner names'],
      ['Mac-1692890245291.local', 'GitHub-hosted runner names'],
      ['runner-x7k2p9', 'CI runner names'],
      ['runner-abcd1234-project-42-concurrent-0', 'CI runner names'],
      ['backup-28391234-x2x4z', 'Kubernetes pod names'],
      ['backup-7d9f8b6c5-x2x4z', 'Kubernetes pod names'],
      ['ip-10-0-1-23.ec2.internal', 'EC2 instance names'],
      ['i-0abc123def4567890', 'EC2 instance ids'],
      ['123e4567-e89b-12d3-a456-426614174000', 'UUIDs'],
      ['backup-3f9a2c7d1e', 'random ids'],
    ];
    for (const [host, kind] of cases) assert.equal(generatedHostKind(host), kind, host);
  });

  test('chosen names do not', () => {
    for (const host of [
      'fileserver',
      'web-1',
      'db-02',
      'laptop.local',
      'nas.example.com',
      'github-actions',
      'runner-main',
      'backup-2024',
      'prod-backup-host',
      'vm',
      'deadbeef',
      'build-20240101',
    ]) {
      assert.equal(generatedHostKind(host), undefined, host);
    }
  });
});

describe('the warning: many one-backup groups under generated host names', () => {
  const t0 = Date.UTC(2026, 0, 1);
  const at = (i: number) => new Date(t0 + i * 86_400_000).toISOString();
  const backups = (hosts: string[], sources = ['/source'], from = 0): HostedBackup[] =>
    hosts.map((host, i) => ({ id: `b${String(from + i).padStart(3, '0')}`, time: at(from + i), host, sources }));
  const docker = (n: number) => Array.from({ length: n }, (_, i) => `${(0xa1b2c3d4e5f0 + i * 7919).toString(16)}`);

  test(`${MIN_FRAGMENTED_GROUPS} or more: warned, with the hosts, what they look like and the fix`, () => {
    const w = generatedHostWarning(backups(docker(7)));
    assert.ok(w);
    assert.equal(w.code, 'generated-host-names');
    assert.equal(w.groups.length, 1);
    assert.deepEqual(w.groups[0]!.sources, ['/source']);
    assert.deepEqual(w.groups[0]!.hosts, docker(7));
    assert.deepEqual(w.groups[0]!.kinds, ['container ids']);
    assert.match(w.message, /\/source was backed up under 7 host names that look like container ids/);
    assert.match(w.message, /every backup is a full one/);
    assert.match(w.message, /retention .* never removes any/);
    assert.match(w.hint, /--host NAME/);
    assert.match(w.hint, /S3BACKUP_HOST/);
    assert.ok(generatedHostWarning(backups(docker(MIN_FRAGMENTED_GROUPS))));
  });

  test('fewer than that: no warning', () => {
    assert.equal(generatedHostWarning(backups(docker(MIN_FRAGMENTED_GROUPS - 1))), undefined);
    assert.equal(generatedHostWarning([]), undefined);
  });

  test('a machine with a chosen name and many backups: no warning, whatever else is there', () => {
    assert.equal(generatedHostWarning(backups(Array(20).fill('fileserver'))), undefined);
    // Old one-off backups from containers, but the newest backup is the stable machine's.
    assert.equal(generatedHostWarning([...backups(docker(5)), ...backups(['fileserver', 'fileserver'], ['/source'], 5)]), undefined);
  });

  test('once a fixed name is set, the warning ends (the old groups stay, and are not the newest)', () => {
    const before = backups(docker(7));
    assert.ok(generatedHostWarning(before));
    assert.equal(generatedHostWarning([...before, ...backups(['fixed'], ['/source'], 7)]), undefined);
  });

  test('a generated name with several backups is a long-lived machine: not counted', () => {
    const hosts = docker(4).flatMap((h) => [h, h]);
    assert.equal(generatedHostWarning(backups(hosts)), undefined);
  });

  test('the same generated names with different sources each are one-off backups, not a pattern', () => {
    const list = docker(7).map((host, i) => ({ id: `b${i}`, time: at(i), host, sources: [`/data/${i}`] }));
    assert.equal(generatedHostWarning(list), undefined);
  });

  test('each source set on its own; source order does not matter; CI runners too', () => {
    const runners = ['fv-az101-1', 'fv-az202-2', 'fv-az303-3', 'fv-az404-4'];
    const list = [
      ...backups(docker(3), ['/b', '/a']),
      ...runners.map((host, i) => ({ id: `r${i}`, time: at(10 + i), host, sources: ['/home/runner/work/x/x'] })),
      ...backups(['fileserver', 'fileserver'], ['/etc'], 20),
    ];
    const w = generatedHostWarning(list);
    assert.ok(w);
    assert.deepEqual(
      w.groups.map((g) => [g.sources, g.hosts.length, g.kinds]),
      [
        [['/a', '/b'], 3, ['container ids']],
        [['/home/runner/work/x/x'], 4, ['GitHub-hosted runner names']],
      ],
    );
    assert.match(w.message, /GitHub-hosted runner names \(fv-az404-4, fv-az303-3, fv-az202-2, … 1 more\)/);
  });
});

describe('host setting: --host, S3BACKUP_HOST, config "host"', () => {
  const cfgFile = path.join(work, 'host.yaml');
  fs.writeFileSync(cfgFile, 'host: from-config\nsources: [/srv]\n');
  const resolve = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
    resolveConfig({ flags: { config: cfgFile, ...flags }, env: { HOME: work, ...env }, cwd: work });

  test('flag over environment over config file; the backup options carry it', () => {
    assert.equal(backupOptionsFromConfig(resolve({})).host, 'from-config');
    assert.equal(backupOptionsFromConfig(resolve({}, { S3BACKUP_HOST: 'from-env' })).host, 'from-env');
    assert.equal(backupOptionsFromConfig(resolve({ host: 'from-flag' }, { S3BACKUP_HOST: 'from-env' })).host, 'from-flag');
    // Unset (or empty, as an unset variable in compose or GitHub Actions is): the machine's.
    const none = resolveConfig({ flags: { sources: ['/srv'] }, env: { HOME: work, S3BACKUP_HOST: '' }, cwd: work });
    assert.equal(backupOptionsFromConfig(none).host, undefined);
  });

  test('a bad name is a usage error naming the setting', () => {
    for (const bad of ['   ', 'a\tb', 'x'.repeat(254)]) {
      assert.throws(
        () => backupOptionsFromConfig(resolve({ host: bad })),
        (e: unknown) => e instanceof UsageError && /host name \(--host, S3BACKUP_HOST/.test(e.message),
        JSON.stringify(bad),
      );
    }
    assert.equal(checkHostName('  padded  ', '--host'), 'padded');
    assert.equal(ConfigSchema.safeParse({ host: '' }).success, false);
    assert.equal(ConfigSchema.safeParse({ host: 'ok-name' }).success, true);
  });
});

// ---------------------------------------------------------------- the CLI under changing host names

/** The CLI as a fresh container would run it: under its own, new host name. */
function runUnder(hostname: string, args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  const c = underHostname(hostname, process.execPath, [BIN, ...args], { ...process.env, ...env });
  return run(c.cmd, c.args, { cwd: ROOT, env: c.env });
}

/** A Docker-style container host name: the first 12 hex digits of a random id. */
const containerName = () => randomBytes(6).toString('hex');

describe(`seven runs under seven host names (${HOSTNAME_MECHANISM}), on S3`, () => {
  let bucket: string;
  let receiver: Receiver;
  const env = isolatedEnv(path.join(work, 'home'), s3CliEnv());
  const src = path.join(work, 'source');

  before(async () => {
    bucket = await createTestBucket('host-identity');
    receiver = await startReceiver();
    fs.mkdirSync(src, { recursive: true });
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, `f${i}.txt`), `file ${i}\n`.repeat(100));
  });
  after(async () => {
    await receiver?.close();
    if (bucket) await deleteTestBucket(bucket);
  });

  test('the mechanism changes what the tool sees: without --host, each run records its own host name', async () => {
    const repo = `s3://${bucket}/probe`;
    const name = containerName();
    const r = await runUnder(name, ['backup', src, '--repo', repo, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(json(r.stdout).host, name);
  });

  test('with a fixed host (--host, S3BACKUP_HOST, config host, schedule --host): one full backup, then incrementals; retention keeps 5', async () => {
    const repo = `s3://${bucket}/fixed`;
    const cfg = path.join(work, 'fixed.yaml');
    fs.writeFileSync(cfg, `host: fixed\nrepository: ${repo}\nsources: [${JSON.stringify(src)}]\n`);
    const runs: { args: string[]; env?: NodeJS.ProcessEnv }[] = [
      { args: ['backup', src, '--repo', repo, '--host', 'fixed', '--json'] },
      { args: ['backup', src, '--repo', repo, '--host', 'fixed', '--json'] },
      { args: ['backup', src, '--repo', repo, '--json'], env: { S3BACKUP_HOST: 'fixed' } },
      // As docker-compose.yml: S3BACKUP_HOST from .env, and a notification channel.
      { args: ['backup', src, '--repo', repo, '--json'], env: { S3BACKUP_HOST: 'fixed', WEBHOOK_URL: `${receiver.url}/hook` } },
      { args: ['backup', '--config', cfg, '--json'] },
      { args: ['backup', '--config', cfg, '--json'], env: { WEBHOOK_URL: `${receiver.url}/hook` } },
      {
        args: ['schedule', '--once', 'backup', src, '--repo', repo, '--host', 'fixed', '--json'],
        env: { WEBHOOK_URL: `${receiver.url}/hook` },
      },
    ];
    const names = runs.map(containerName);
    const results: Record<string, any>[] = [];
    for (const [i, run] of runs.entries()) {
      fs.writeFileSync(path.join(src, 'changing.txt'), `run ${i}\n`);
      const r = await runUnder(names[i]!, run.args, { ...env, ...run.env });
      assert.equal(r.code, 0, `run ${i}: ${r.stderr}`);
      results.push(json(r.stdout));
    }
    assert.deepEqual(
      results.map((r) => r.kind),
      ['full', 'incremental', 'incremental', 'incremental', 'incremental', 'incremental', 'incremental'],
    );
    for (const [i, r] of results.entries()) {
      assert.equal(r.host, 'fixed');
      assert.equal(r.hostWarning, undefined);
      if (i > 0) assert.equal(r.parent, results[i - 1]!.id, `run ${i} is an incremental of run ${i - 1}`);
      // Unchanged files were not read again: only changing.txt.
      if (i > 0) assert.equal(r.newFiles + r.changedFiles, 1);
    }
    // Retention (default keep-last 5) ran after each backup, in one group.
    const list = await runUnder(containerName(), ['list', '--repo', repo, '--json'], env);
    assert.equal(list.code, 0, list.stderr);
    const doc = json(list.stdout);
    assert.deepEqual(
      doc.backups.map((b: { id: string }) => b.id),
      results.slice(2).map((r) => r.id),
    );
    assert.ok(doc.backups.every((b: { host: string }) => b.host === 'fixed'));
    assert.equal(doc.hostWarning, undefined);
    assert.deepEqual(results.at(-1)!.retention?.removed ?? [], [results[1]!.id]);
    // The run history and the notifications name the fixed host, not the container.
    const history = await runUnder(containerName(), ['history', '--repo', repo, '--json'], env);
    assert.equal(history.code, 0, history.stderr);
    const records = json(history.stdout).runs as { host: string; sourceKey: string }[];
    assert.equal(records.length, 7);
    assert.ok(records.every((x) => x.host === 'fixed'));
    assert.equal(
      new Set(records.map((x) => x.sourceKey)).size,
      1,
      'one source key: the anomaly detector compares the runs with each other',
    );
    const events = receiver.posts.map((p) => JSON.parse(p.body) as { type: string; host: string; backupId: string });
    assert.equal(events.length, 3);
    assert.deepEqual(
      events.map((e) => [e.host, e.backupId]),
      [3, 5, 6].map((i) => ['fixed', results[i]!.id]),
    );
  });

  test('without a fixed host: seven full backups, all kept; backup, list and cost warn and name the fix', async () => {
    const repo = `s3://${bucket}/fragmented`;
    const names = Array.from({ length: 7 }, containerName);
    const results: Record<string, any>[] = [];
    for (const [i, name] of names.entries()) {
      fs.writeFileSync(path.join(src, 'changing.txt'), `fragmented run ${i}\n`);
      const r = await runUnder(name, ['backup', src, '--repo', repo, ...(i < 6 ? ['--json'] : [])], env);
      assert.equal(r.code, 0, `run ${i}: ${r.stderr}`);
      if (i < 6) results.push(json(r.stdout));
      else {
        // On a terminal: a warning and the fix on stderr, exit 0 (the backup itself is fine).
        assert.match(r.stdout, /\(full\) saved to/);
        assert.match(r.stderr, /warning: .*7 host names that look like container ids/);
        assert.match(r.stderr, /hint: .*--host NAME.*S3BACKUP_HOST/);
      }
    }
    assert.ok(results.every((r) => r.kind === 'full'));
    assert.deepEqual(
      results.map((r) => r.host),
      names.slice(0, 6),
    );
    // From the third one-backup group on, the backup says so (in its --json too).
    assert.deepEqual(
      results.map((r) => r.hostWarning !== undefined),
      [false, false, true, true, true, true],
    );
    assert.deepEqual(results[5]!.hostWarning.groups[0].hosts, names.slice(0, 6));
    assert.deepEqual(
      results.flatMap((r) => r.retention?.removed ?? []),
      [],
      'retention removed nothing',
    );

    const list = await runUnder(containerName(), ['list', '--repo', repo, '--json'], env);
    assert.equal(list.code, 0, list.stderr);
    const doc = json(list.stdout);
    assert.equal(doc.backups.length, 7);
    assert.equal(doc.hostWarning.code, 'generated-host-names');
    assert.deepEqual(doc.hostWarning.groups[0].hosts, names);
    assert.deepEqual(doc.hostWarning.groups[0].kinds, ['container ids']);
    const human = await runUnder(containerName(), ['list', '--repo', repo], env);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stderr, /warning: .* was backed up under 7 host names that look like container ids/);
    assert.match(human.stderr, /hint: give the backups a fixed host name: s3backup backup --host NAME, or S3BACKUP_HOST=NAME/);

    const cost = await runUnder(containerName(), ['cost', '--repo', repo, '--json'], env);
    assert.equal(cost.code, 0, cost.stderr);
    const w = (json(cost.stdout).warnings as { code: string; message: string }[]).find((x) => x.code === 'generated-host-names');
    assert.ok(w, cost.stdout);
    assert.match(w.message, /7 host names .*Fix: give the backups a fixed host name/);

    // The fix: a fixed name from now on. The warning ends (the old one-backup groups stay).
    const fixed = await runUnder(containerName(), ['backup', src, '--repo', repo, '--json'], { ...env, S3BACKUP_HOST: 'fixed' });
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.equal(json(fixed.stdout).host, 'fixed');
    const again = await runUnder(containerName(), ['list', '--repo', repo, '--json'], env);
    assert.equal(json(again.stdout).hostWarning, undefined);
  });
});
