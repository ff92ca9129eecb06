// Anomaly hold (docs/anomaly-detection.md "Anomaly hold"), end to end through the CLI on a local
// repository and on Ceph: a backup with a ransomware-class finding suspends retention for its
// host and sources (the retention after each backup and forget without --force keep every
// backup of it) until `s3backup anomalies ack ID`; the notification, list, forget, anomalies
// and the dashboard say so; the backup that undoes the attack is described as a recovery.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { runBackup } from '../src/backup/backup.ts';
import { monitorSource } from '../src/dashboard/sources.ts';
import { activeHolds, readHolds } from '../src/monitor/holds.ts';
import { forget } from '../src/prune/prune.ts';
import { Repository } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import { serveDashboard } from './helpers/dashboard.ts';
import { type Receiver, startReceiver } from './helpers/fake-aws.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv } from './helpers/s3.ts';
import { isolatedEnv, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('anomaly-hold');
let receiver: Receiver;
before(async () => {
  receiver = await startReceiver();
});
after(async () => {
  await receiver.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const FILES = 80;
const text = (i: number, v: number) => `document ${i}, version ${v}\n${'the quick brown fox jumps over the lazy dog '.repeat(100)}\n`;

interface Setup {
  name: string;
  repo: string;
  env: NodeJS.ProcessEnv;
}

/** Run the CLI with the scenario's config (keep-last 2, a webhook); JSON out, exit code checked. */
async function cli(s: Setup, args: string[], codes = [0]): Promise<any> {
  const r = await runCli([...args, '--repo', s.repo, '--config', path.join(work, s.name, 's3backup.yaml')], { env: s.env });
  assert.ok(codes.includes(r.code ?? -1), `s3backup ${args.join(' ')}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return args.includes('--json') ? JSON.parse(r.stdout) : r.stdout;
}

async function snapshotIds(s: Setup): Promise<string[]> {
  const l = await cli(s, ['list', '--json']);
  return l.backups.map((b: { id: string }) => b.id);
}

/**
 * Three ordinary backups (retention keeps 2), an attack renaming most files to .locked with
 * content that does not compress, the files restored, then the hold acknowledged. Returns the
 * id of the attacked backup.
 */
async function scenario(s: Setup, atHold: () => Promise<void> = async () => {}): Promise<string> {
  const src = path.join(work, s.name, 'src');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(
    path.join(work, s.name, 's3backup.yaml'),
    `keep:\n  last: 2\nnotify:\n  webhookUrl: ${receiver.url}/hook\n  retries: 0\n`,
  );
  for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(src, `doc-${i}.txt`), text(i, 0));
  for (let v = 1; v <= 3; v++) {
    fs.writeFileSync(path.join(src, `doc-${v}.txt`), text(v, v));
    const b = await cli(s, ['backup', src, '--json']);
    assert.equal(b.retentionHold, undefined);
  }
  assert.equal((await snapshotIds(s)).length, 2, 'retention keeps the last 2 while nothing is held');

  // The attack: 50 files replaced by encrypted copies named .locked.
  for (let i = 0; i < 50; i++) {
    fs.rmSync(path.join(src, `doc-${i}.txt`));
    fs.writeFileSync(path.join(src, `doc-${i}.txt.locked`), randomBytes(4600));
  }
  receiver.reset();
  const attacked = await cli(s, ['backup', src, '--json']);
  const id = attacked.id as string;
  const metrics = attacked.anomalies.map((f: { metric: string }) => f.metric);
  assert.ok(metrics.includes('extensions') && metrics.includes('deletedFiles'), metrics.join(', '));
  assert.ok(attacked.anomalies.every((f: { recommendation: string }) => !f.recommendation.includes('latest')));
  const ransom = attacked.anomalies.find((f: { metric: string }) => f.metric === 'extensions');
  assert.equal(ransom.severity, 'high');
  assert.equal(ransom.ransomware, true);
  assert.ok(ransom.level >= 2 && ransom.level < 3, `level ${ransom.level}`);
  assert.match(ransom.recommendation, new RegExp(`s3backup anomalies ack ${id}`));
  assert.equal(attacked.retentionHold.backupId, id);
  assert.equal(attacked.retention.removed.length, 0, 'the retention after the attacked backup removed nothing');
  assert.equal((await snapshotIds(s)).length, 3);

  // The notification says so, with the severity of the strongest finding.
  assert.equal(receiver.posts.length, 1);
  const note = JSON.parse(receiver.posts[0]!.body);
  assert.equal(note.type, 'anomaly');
  assert.equal(note.priority, 'high');
  assert.match(note.subject, /^\[HIGH PRIORITY\] s3backup: backup anomaly on .*, retention held$/);
  assert.equal(note.retentionHold.backupId, id);

  // list and anomalies say so.
  const listed = await cli(s, ['list']);
  assert.match(listed, /incr HELD/);
  assert.match(listed, new RegExp(`RETENTION HELD for .* since backup ${id}:\\n {2}no backup .*"s3backup anomalies ack ${id}"`));
  const listJson = await cli(s, ['list', '--json']);
  assert.deepEqual(
    listJson.retentionHolds.map((h: { backupId: string }) => h.backupId),
    [id],
  );
  assert.ok(listJson.backups.every((b: { held: boolean }) => b.held));
  assert.match(await cli(s, ['anomalies', id], [3]), new RegExp(`RETENTION HELD [^\\n]*\\n.*anomalies ack ${id}`));
  await atHold();

  // The files come back: a recovery, not a new attack; it holds nothing more.
  for (let i = 0; i < 50; i++) {
    fs.rmSync(path.join(src, `doc-${i}.txt.locked`));
    fs.writeFileSync(path.join(src, `doc-${i}.txt`), text(i, i >= 1 && i <= 3 ? i : 0));
  }
  const restored = await cli(s, ['backup', src, '--json']);
  assert.equal(restored.retentionHold, undefined);
  assert.ok(restored.anomalies.length > 0, 'the restore itself is unusual');
  for (const f of restored.anomalies) {
    assert.equal(f.severity, 'warning');
    assert.equal(f.ransomware, undefined);
    assert.match(f.message, new RegExp(`looks like a recovery: what changed or vanished in backup ${id} came back`));
    assert.match(f.recommendation, new RegExp(`s3backup anomalies ack ${id}`));
    assert.ok(f.recommendation.includes(restored.id), 'the advice names the backup itself');
  }
  assert.equal((await snapshotIds(s)).length, 4, 'still held: nothing forgotten');

  // forget keeps everything of a held group; --force applies the policy anyway.
  const forgot = await cli(s, ['forget', '--json']);
  assert.deepEqual(forgot.removed, []);
  assert.equal(forgot.retentionHolds[0].backupId, id);
  assert.ok(forgot.groups[0].backups.every((b: { keep: boolean }) => b.keep));
  assert.ok(forgot.groups[0].backups.some((b: { reasons: string[] }) => b.reasons.includes(`held: anomaly in ${id}`)));
  const forced = await cli(s, ['forget', '--dry-run', '--force', '--json']);
  assert.equal(forced.removed.length, 2);

  // Acknowledged (by a unique start of the id): retention runs again.
  const ack = await cli(s, ['anomalies', 'ack', id.slice(0, 20), '--json']);
  assert.equal(ack.acknowledged.backupId, id);
  assert.equal(ack.wasOpen, true);
  assert.equal((await cli(s, ['anomalies', 'ack', id, '--json'])).wasOpen, false, 'a second ack changes nothing');
  const unheld = await cli(s, ['list', '--json']);
  assert.deepEqual(unheld.retentionHolds, []);
  assert.doesNotMatch(await cli(s, ['list']), /HELD/);
  fs.writeFileSync(path.join(src, 'doc-79.txt'), text(79, 9));
  const next = await cli(s, ['backup', src, '--json']);
  assert.equal(next.retention.removed.length, 3);
  assert.equal((await snapshotIds(s)).length, 2);
  return id;
}

describe('anomaly hold', () => {
  test('local repository: held from the attack until acknowledged; the dashboard says so', async () => {
    const repo = path.join(work, 'local', 'repo');
    const s: Setup = { name: 'local', repo, env: isolatedEnv(path.join(work, 'local', 'home')) };
    let shownHold = '';
    await scenario(s, async () => {
      const d = await serveDashboard(new LocalStore(repo), { monitor: monitorSource(undefined).source });
      const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
      try {
        const r = (await (await d.get('/api/anomalies')).json()) as any;
        shownHold = r.data.holds[0]?.backupId ?? '';
        assert.match(r.data.holds[0].reasons.join(' '), /extensions: .*\.locked is an extension ransomware uses/);
        // The page shows it first in the anomalies panel, with the command that lifts it.
        const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
        const errors: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(d.server.url);
        await page.waitForSelector('#anomalies .finding.hold');
        const banner = (await page.textContent('#anomalies .finding.hold')) ?? '';
        assert.match(banner, new RegExp(`Retention held for .* no backup of it is forgotten until s3backup anomalies ack ${shownHold}`));
        assert.deepEqual(errors, []);
      } finally {
        await browser.close();
        await d.close();
      }
    });
    assert.ok(shownHold, 'the dashboard lists the open hold');
  });

  test('an unknown id is a clear error naming the open holds', async () => {
    const s: Setup = { name: 'unknown', repo: path.join(work, 'unknown', 'repo'), env: isolatedEnv(path.join(work, 'unknown', 'home')) };
    fs.mkdirSync(path.join(work, 'unknown', 'src'), { recursive: true });
    fs.writeFileSync(path.join(work, 'unknown', 's3backup.yaml'), 'keep:\n  last: 2\n');
    fs.writeFileSync(path.join(work, 'unknown', 'src', 'a.txt'), 'a\n');
    await cli(s, ['backup', path.join(work, 'unknown', 'src'), '--json']);
    const r = await runCli(['anomalies', 'ack', 'nosuchid', '--repo', s.repo], { env: s.env });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no anomaly hold for backup "nosuchid"/);
    assert.match(r.stderr, /no retention hold is open in this repository/);
  });

  test('encrypted repository: the hold and its acknowledgement are sealed; forget keeps the group', async () => {
    const repoDir = path.join(work, 'enc', 'repo');
    const store = new LocalStore(repoDir);
    const keys = { passphrase: 'hold test' };
    await Repository.init(store, { encryption: { ...keys, kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } } });
    const src = path.join(work, 'enc', 'src-private-name');
    fs.mkdirSync(src, { recursive: true });
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(src, `doc-${i}.txt`), text(i, 0));
    const host = 'secret-host.example';
    const ids = [(await runBackup({ store, keys, sources: [src], host })).id, (await runBackup({ store, keys, sources: [src], host })).id];
    for (let i = 0; i < 30; i++) {
      fs.rmSync(path.join(src, `doc-${i}.txt`));
      fs.writeFileSync(path.join(src, `doc-${i}.txt.locked`), randomBytes(4600));
    }
    const attacked = await runBackup({ store, keys, sources: [src], host });
    assert.equal(attacked.retentionHold?.backupId, attacked.id);
    const names = fs.readdirSync(path.join(repoDir, 'history', 'holds'));
    assert.deepEqual(names, [`${attacked.id}.json.enc`]);
    const sealed = fs.readFileSync(path.join(repoDir, 'history', 'holds', names[0]!));
    for (const clear of [host, 'src-private-name', 'locked']) assert.ok(!sealed.includes(clear), `the hold shows ${clear}`);
    assert.deepEqual(await readHolds(store), [], 'without the key: no hold is readable');
    const repo = await Repository.open(store, keys);
    assert.deepEqual(
      activeHolds(await readHolds(store, repo.historyCrypto())).map((h) => [h.backupId, h.host]),
      [[attacked.id, host]],
    );
    const f = await forget(repo, { policy: { last: 1 } });
    assert.deepEqual(f.removed, []);
    assert.equal(f.held[0]?.backupId, attacked.id);
    const env = isolatedEnv(path.join(work, 'enc', 'home'), { S3BACKUP_PASSWORD: keys.passphrase });
    const ack = await runCli(['anomalies', 'ack', attacked.id, '--repo', repoDir, '--json'], { env });
    assert.equal(ack.code, 0, ack.stderr);
    assert.deepEqual(fs.readdirSync(path.join(repoDir, 'history', 'holds')).sort(), [
      `${attacked.id}.ack.json.enc`,
      `${attacked.id}.json.enc`,
    ]);
    const after = await forget(repo, { policy: { last: 1 } });
    assert.deepEqual(after.removed.sort(), ids.sort());
  });

  test('Ceph: the same, with the hold and its acknowledgement stored in the bucket', async () => {
    const bucket = await createTestBucket('anomaly-hold');
    try {
      const s: Setup = {
        name: 'ceph',
        repo: `s3://${bucket}/repo`,
        env: { ...isolatedEnv(path.join(work, 'ceph', 'home')), ...s3CliEnv() },
      };
      await scenario(s);
    } finally {
      await deleteTestBucket(bucket);
    }
  });
});
