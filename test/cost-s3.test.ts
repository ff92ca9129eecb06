// s3backup cost against Ceph RGW: objects in STANDARD and STANDARD_IA (the classes this Ceph
// accepts on upload and reports back in listings), a bucket lifecycle configuration like the
// Terraform module's, and the report: bytes per class and kind, the minimum billable size, the
// lifecycle rules read back, the retention × lifecycle contradictions, early-deletion charges,
// --bucket, an S3 Inventory report read from the bucket, the CSV history and the forecast, the
// exact command line the weekly workflow and the compose service run, and a local repository.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import {
  DeleteBucketPolicyCommand,
  ListObjectsV2Command,
  PutBucketLifecycleConfigurationCommand,
  PutBucketPolicyCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { runBackup } from '../src/backup/backup.ts';
import { CSV_COLUMNS } from '../src/cost/report.ts';
import { GB, MONTH_DAYS } from '../src/cost/pricing.ts';
import { newSnapshotId } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Client, testS3Store } from './helpers/s3.ts';
import { isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('cost-s3');
const env = isolatedEnv(path.join(work, 'home'), s3CliEnv());
const KiB = 1024;
const ARCHIVE = 200 * KiB;
const MANIFEST = 2 * KiB;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let bucket: string;
let client: S3Client;
const ids: string[] = [];
let uploadedAt = 0;

async function put(key: string, size: number, cls: 'STANDARD' | 'STANDARD_IA' = 'STANDARD'): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: pseudoRandom(size, size + key.length), StorageClass: cls }));
}

const cost = (args: string[], extra: NodeJS.ProcessEnv = {}, cwd?: string) =>
  runCli(['cost', '--repo', `s3://${bucket}/repo`, ...args], { env: { ...env, ...extra }, ...(cwd ? { cwd } : {}) });

before(async () => {
  bucket = await createTestBucket('cost');
  client = testS3Client();
  // Ten daily backups, the newest an hour ago; every other archive uploaded as STANDARD_IA. No
  // config.json: as with credentials that may not read manifests, the analyzer must work from
  // the listing alone.
  const now = Date.now();
  uploadedAt = now;
  for (let k = 0; k < 10; k++) ids.push(newSnapshotId(new Date(now - HOUR - (9 - k) * DAY)));
  for (const [k, id] of ids.entries()) {
    await put(`repo/snapshots/${id}.ndjson.zst`, MANIFEST);
    await put(`repo/archives/${id}.tar.zst`, ARCHIVE, k % 2 === 0 ? 'STANDARD_IA' : 'STANDARD');
  }
  await put('repo/notes.txt', KiB, 'STANDARD_IA'); // billed as 128 KiB
  await put('elsewhere/big.bin', 300 * KiB); // outside the repository
  // The Terraform module's default rules.
  await client.send(
    new PutBucketLifecycleConfigurationCommand({
      Bucket: bucket,
      LifecycleConfiguration: {
        Rules: [
          {
            ID: 'archives-tiering',
            Status: 'Enabled',
            Filter: { Prefix: 'repo/archives/' },
            Transitions: [
              { Days: 30, StorageClass: 'STANDARD_IA' },
              { Days: 90, StorageClass: 'GLACIER' },
            ],
            Expiration: { Days: 365 },
          },
          { ID: 'housekeeping', Status: 'Enabled', Filter: {}, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 } },
        ],
      },
    }),
  );
});

after(async () => {
  client?.destroy();
  if (bucket) await deleteTestBucket(bucket);
  fs.rmSync(work, { recursive: true, force: true });
});

describe('s3backup cost on Ceph', () => {
  let report: any;

  test('bytes and objects per storage class and kind, and what they cost per month now', async () => {
    const r = await cost(['--json']);
    assert.equal(r.code, 0, r.stderr);
    report = json(r.stdout);
    assert.equal(report.repository, `s3://${bucket}/repo`);
    assert.equal(report.store, 's3');
    assert.equal(report.totalObjects, 21);
    assert.deepEqual(report.bytesByClass, { STANDARD: 5 * ARCHIVE + 10 * MANIFEST, STANDARD_IA: 5 * ARCHIVE + KiB });
    assert.equal(report.totalBytes, 10 * ARCHIVE + 10 * MANIFEST + KiB);
    assert.deepEqual(Object.fromEntries(Object.entries(report.categories).map(([k, v]: [string, any]) => [k, v.objects])), {
      manifests: 10,
      archives: 10,
      other: 1,
      outside: 0,
    });
    const ia = report.current.classes.find((c: any) => c.storageClass === 'STANDARD_IA');
    assert.equal(ia.billableBytes, 5 * ARCHIVE + 128 * KiB, 'the 1 KiB object is billed as 128 KiB');
    assert.ok(Math.abs(ia.monthlyCost - (ia.billableBytes / GB) * 0.0125) < 1e-12);
    const std = report.current.classes.find((c: any) => c.storageClass === 'STANDARD');
    assert.ok(Math.abs(report.current.monthlyCost - (std.monthlyCost + ia.monthlyCost)) < 1e-12);
    assert.equal(report.backups.count, 10);
    assert.equal(report.backups.manifestsRead, false);
    assert.ok(Math.abs(report.backups.cadence[0].medianGapDays - 1) < 0.01);
    assert.equal(report.prices.region, 'us-east-1');
    // Restoring the newest backup (its archive is STANDARD: no retrieval fee, one GET).
    assert.deepEqual(report.current.restoreLatest, {
      backup: ids[9],
      archives: 1,
      bytes: ARCHIVE,
      cost: 0.0004 / 1000,
      byClass: { STANDARD: ARCHIVE },
    });
  });

  test('the bucket lifecycle rules are read back', () => {
    const rule = report.lifecycle.rules.find((x: any) => x.id === 'archives-tiering');
    assert.deepEqual(
      { prefix: rule.prefix, transitions: rule.transitions, expirationDays: rule.expirationDays, enabled: rule.enabled },
      {
        prefix: 'repo/archives/',
        transitions: [
          { days: 30, storageClass: 'STANDARD_IA' },
          { days: 90, storageClass: 'GLACIER' },
        ],
        expirationDays: 365,
        enabled: true,
      },
    );
    const hk = report.lifecycle.rules.find((x: any) => x.id === 'housekeeping');
    assert.equal(hk.prefix, '');
    assert.deepEqual(hk.transitions, []);
  });

  test('keep-last 5 of daily backups: nothing reaches the 30-day transition, lifecycle saves $0, a warning says so', async () => {
    const codes = report.warnings.map((w: any) => w.code);
    assert.ok(codes.includes('retention-before-transition'), JSON.stringify(report.warnings));
    const w = report.warnings.find((x: any) => x.code === 'retention-before-transition');
    assert.match(w.message, /keep-last 5/);
    assert.match(w.message, /STANDARD_IA after 30 days/);
    assert.match(w.message, /save \$0/);
    const s = report.simulation.scenarios;
    assert.deepEqual(s.current.transitionCount, {});
    assert.ok(Math.abs(report.savings.currentVsNone.total) < 1e-9, `${report.savings.currentVsNone.total}`);
    assert.ok(report.backups.archiveLifetimeDays.max < 6, JSON.stringify(report.backups.archiveLifetimeDays));
    assert.match(report.simulation.recommendation, /no lifecycle rule/);
    assert.equal(report.savings.recommendedVsNone.total, 0);
    assert.equal(report.simulation.months, 12);
    assert.equal(s.none.months.length, 12);
    // The terminal report shows the same.
    const text = await cost([]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /STANDARD_IA\s+6\s/);
    assert.match(text.stdout, /bucket's rules \(2\)/);
    assert.match(text.stderr, /warning: retention \(keep-last 5\) deletes every archive within/);
  });

  test('early-deletion charges of the STANDARD_IA archives retention deletes within days', () => {
    // Removed at the next backups: k = 0..5 at the first (23 h from the newest), then one a day.
    const newest = uploadedAt - HOUR;
    const iaDeleted = [0, 2, 4, 6, 8].map((k) => (k <= 5 ? newest + DAY : newest + (k - 4) * DAY));
    const expected = iaDeleted.reduce((s, t) => s + ((ARCHIVE / GB) * 0.0125 * (30 - (t - uploadedAt) / DAY)) / MONTH_DAYS, 0);
    const e = report.current.earlyDeletion;
    assert.equal(e.objects, 5);
    assert.ok(Math.abs(e.amount - expected) / expected < 0.01, `${e.amount} vs ${expected}`);
    assert.deepEqual(Object.keys(e.byClass), ['STANDARD_IA']);
  });

  test('Terraform default expiration (365 days) contradicts keep-yearly: warned; --strict exits 3', async () => {
    const cfg = path.join(work, 'yearly.yaml');
    fs.writeFileSync(cfg, 'keep:\n  daily: 7\n  yearly: 3\n');
    const r = await cost(['--json', '--config', cfg]);
    assert.equal(r.code, 0, r.stderr);
    const rep = json(r.stdout);
    assert.equal(rep.retention.description, 'keep-daily 7, keep-yearly 3');
    const w = rep.warnings.find((x: any) => x.code === 'expiration-before-retention');
    assert.ok(w, JSON.stringify(rep.warnings));
    assert.match(w.message, /expires archives after 365 days, but retention \(keep-daily 7, keep-yearly 3\) keeps backups up to 1096 days/);
    const strict = await cost(['--config', cfg, '--strict']);
    assert.equal(strict.code, 3);
    assert.match(strict.stderr, /warning: lifecycle rule archives-tiering expires archives after 365 days/);
  });

  test('--bucket adds the objects outside the repository prefix', async () => {
    const r = await cost(['--json', '--bucket']);
    assert.equal(r.code, 0, r.stderr);
    const rep = json(r.stdout);
    assert.equal(rep.scope, 'bucket');
    assert.equal(rep.totalObjects, 22);
    assert.deepEqual(rep.categories.outside, { objects: 1, bytes: 300 * KiB, bytesByClass: { STANDARD: 300 * KiB } });
  });

  test('--inventory reads an S3 Inventory report (manifest.json + CSV.gz) from the bucket: same totals as the listing', async () => {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'repo/' }));
    const rows = (listed.Contents ?? []).map((o) =>
      [bucket, encodeURIComponent(o.Key!), String(o.Size), o.LastModified!.toISOString(), o.StorageClass ?? 'STANDARD', 'etag']
        .map((c) => `"${c}"`)
        .join(','),
    );
    const dataKey = `inventory/${bucket}/s3backup-repository/data/part-1.csv.gz`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: dataKey, Body: zlib.gzipSync(`${rows.join('\n')}\n`) }));
    const manifest = {
      sourceBucket: bucket,
      destinationBucket: `arn:aws:s3:::${bucket}`,
      fileFormat: 'CSV',
      fileSchema: 'Bucket, Key, Size, LastModifiedDate, StorageClass, ETag',
      creationTimestamp: String(Date.parse('2026-11-22T00:00:00Z')),
      files: [{ key: dataKey, size: 1, MD5checksum: 'x' }],
    };
    // An older report first: the newest manifest.json must win.
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `inventory/${bucket}/s3backup-repository/2026-11-15T00-00Z/manifest.json`,
        Body: JSON.stringify({ ...manifest, files: [] }),
      }),
    );
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `inventory/${bucket}/s3backup-repository/2026-11-22T00-00Z/manifest.json`,
        Body: JSON.stringify(manifest),
      }),
    );
    const r = await cost(['--json', '--inventory', `s3://${bucket}/inventory/`]);
    assert.equal(r.code, 0, r.stderr);
    const rep = json(r.stdout);
    assert.equal(rep.source.kind, 'inventory');
    assert.equal(rep.source.location, `s3://${bucket}/inventory/${bucket}/s3backup-repository/2026-11-22T00-00Z/manifest.json`);
    assert.equal(rep.source.date, '2026-11-22T00:00:00.000Z');
    assert.deepEqual(rep.bytesByClass, report.bytesByClass);
    assert.equal(rep.totalObjects, report.totalObjects);
    assert.deepEqual(rep.current.classes, report.current.classes);
    assert.ok(rep.warnings.some((w: any) => w.code === 'retention-before-transition'));
    const missing = await cost(['--inventory', path.join(work, 'nope.csv.gz')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /inventory file .*nope\.csv\.gz does not exist/);
  });

  test('--save-csv appends one row per run; --forecast needs 5 points and then projects with an interval', async () => {
    const csv = path.join(work, 'reports', 'cost_report.csv');
    for (let i = 0; i < 2; i++) assert.equal((await cost(['--save-csv', csv])).code, 0);
    let lines = fs.readFileSync(csv, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 3);
    assert.equal(lines[0], CSV_COLUMNS.join(','));
    const row = Object.fromEntries(CSV_COLUMNS.map((c, i) => [c, lines[1]!.split(',')[i]]));
    assert.equal(row.repository, `s3://${bucket}/repo`);
    assert.equal(row.standard_ia_bytes, String(5 * ARCHIVE + KiB));
    assert.equal(row.total_bytes, String(report.totalBytes));
    const few = await cost(['--json', '--save-csv', csv, '--forecast', '3']);
    assert.equal(few.code, 0, few.stderr);
    assert.match(json(few.stdout).forecast.bytes.unavailable, /at least 5 points of history at least 12 hours apart; there is 1/);
    // Older history: four weekly rows, growing 100 KiB a week up to today's size.
    const cells = lines[1]!.split(',');
    const iDate = CSV_COLUMNS.indexOf('date');
    const iBytes = CSV_COLUMNS.indexOf('total_bytes');
    const older = [4, 3, 2, 1].map((w) => {
      const c = [...cells];
      c[iDate] = new Date(uploadedAt - w * 7 * DAY).toISOString();
      c[iBytes] = String(report.totalBytes - w * 100 * KiB);
      return c.join(',');
    });
    lines = fs.readFileSync(csv, 'utf8').trimEnd().split('\n');
    fs.writeFileSync(csv, `${[lines[0], ...older, ...lines.slice(1)].join('\n')}\n`);
    const r = await cost(['--json', '--save-csv', csv, '--forecast', '3']);
    assert.equal(r.code, 0, r.stderr);
    const f = json(r.stdout).forecast;
    assert.equal(f.months, 3);
    assert.equal(f.bytes.ahead.length, 3);
    for (const p of f.bytes.ahead) assert.ok(p.low <= p.value && p.value <= p.high);
    assert.ok(f.bytes.ahead[2].value > report.totalBytes, 'the trend keeps growing');
    const text = await cost(['--history', csv, '--forecast', '2']);
    assert.match(text.stdout, /forecast \(\d+ cost report\(s\)/);
    assert.match(text.stdout, /stored bytes: .* in 2 month\(s\) \(95% interval/);
  });

  test('the weekly workflow and compose service command line: `cost --save-csv FILE` with BUCKET_NAME', async () => {
    const workflow = fs.readFileSync(path.join(import.meta.dirname, '..', '.github', 'workflows', 'cost-report.yml'), 'utf8');
    assert.match(workflow, /s3backup\.js cost --save-csv "\$REPORT"/);
    const cwd = path.join(work, 'checkout');
    fs.mkdirSync(path.join(cwd, 'reports'), { recursive: true });
    const r = await runCli(['cost', '--save-csv', 'reports/cost_report.csv'], { env: { ...env, BUCKET_NAME: bucket }, cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`cost of s3://${bucket} \\(listing`));
    const lines = fs
      .readFileSync(path.join(cwd, 'reports', 'cost_report.csv'), 'utf8')
      .trimEnd()
      .split('\n');
    assert.equal(lines.length, 2);
    assert.equal(lines[1]!.split(',')[1], `s3://${bucket}`);
  });

  test('usage errors: one line naming the fix, exit 2', async () => {
    const m = await cost(['--months', '6']);
    assert.equal(m.code, 2);
    assert.match(m.stderr, /--months must be a whole number from 12 to 120/);
    const f = await cost(['--forecast', '3']);
    assert.equal(f.code, 2);
    assert.match(f.stderr, /--forecast needs a history/);
    const p = await cost(['--prices', path.join(work, 'missing.json')]);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /cannot read price file/);
  });

  test('the library reads an empty lifecycle configuration as no rules', async () => {
    const other = await createTestBucket('cost-nolc');
    const store = testS3Store(other, 'x');
    try {
      assert.deepEqual(await store.getLifecycleRules(), []);
    } finally {
      await store.close();
      await deleteTestBucket(other);
    }
  });
});

describe('s3backup cost with narrow rights', () => {
  test('manifests readable: hosts and archive references are used; denied (bucket policy): names alone, and a lifecycle it may not read is a warning', async () => {
    const b2 = await createTestBucket('cost-role');
    const store = testS3Store(b2, 'host1');
    try {
      const src = path.join(work, 'role-src');
      fs.mkdirSync(src, { recursive: true });
      fs.writeFileSync(path.join(src, 'a.bin'), pseudoRandom(200_000, 9));
      await runBackup({ store, sources: [src] });
      fs.writeFileSync(path.join(src, 'b.bin'), pseudoRandom(150_000, 10));
      await runBackup({ store, sources: [src] });
      const run = () => runCli(['cost', '--repo', `s3://${b2}/host1`, '--json'], { env });
      const open = await run();
      assert.equal(open.code, 0, open.stderr);
      const full = json(open.stdout);
      assert.equal(full.backups.manifestsRead, true);
      assert.equal(full.backups.count, 2);
      assert.match(full.backups.cadence[0].group, new RegExp(src.replace(/[/\\.]/g, '.')));

      // Credentials that may only list (narrower than the Terraform cost-analyzer role, which
      // reads manifests and the lifecycle configuration): no objects, no lifecycle.
      await client.send(
        new PutBucketPolicyCommand({
          Bucket: b2,
          Policy: JSON.stringify({
            Version: '2012-10-17',
            Statement: [
              { Effect: 'Deny', Principal: '*', Action: ['s3:GetObject'], Resource: [`arn:aws:s3:::${b2}/host1/*`] },
              { Effect: 'Deny', Principal: '*', Action: ['s3:GetLifecycleConfiguration'], Resource: [`arn:aws:s3:::${b2}`] },
            ],
          }),
        }),
      );
      const denied = await run();
      assert.equal(denied.code, 0, denied.stderr);
      const rep = json(denied.stdout);
      assert.equal(rep.backups.manifestsRead, false);
      assert.equal(rep.backups.count, 2);
      assert.ok(
        rep.notes.some((n: string) => /manifests not read \(access denied/.test(n)),
        JSON.stringify(rep.notes),
      );
      assert.equal(rep.lifecycle.available, false);
      assert.ok(
        rep.warnings.some((w: any) => w.code === 'lifecycle-unreadable' && /GetLifecycleConfiguration/.test(w.message)),
        JSON.stringify(rep.warnings),
      );
      assert.deepEqual(rep.bytesByClass, full.bytesByClass, 'the listing is the same');
      assert.equal(rep.current.monthlyCost, full.current.monthlyCost);
    } finally {
      await client.send(new DeleteBucketPolicyCommand({ Bucket: b2 })).catch(() => {});
      await store.close();
      await deleteTestBucket(b2);
    }
  });
});

describe('s3backup cost on a local repository', () => {
  test('no storage classes: everything priced as STANDARD, with a note; no crash', async () => {
    const repo = path.join(work, 'local-repo');
    const src = path.join(work, 'local-src');
    fs.mkdirSync(src, { recursive: true });
    fs.writeFileSync(path.join(src, 'a.bin'), pseudoRandom(300_000, 3));
    await runBackup({ store: new LocalStore(repo), sources: [src] });
    fs.appendFileSync(path.join(src, 'a.bin'), 'more');
    await runBackup({ store: new LocalStore(repo), sources: [src] });
    const r = await runCli(['cost', '--repo', repo, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const rep = json(r.stdout);
    assert.equal(rep.store, 'local');
    assert.deepEqual(Object.keys(rep.bytesByClass), ['STANDARD']);
    assert.equal(rep.bytesByClass.STANDARD, rep.totalBytes);
    assert.equal(rep.backups.count, 2);
    assert.equal(rep.backups.manifestsRead, true);
    assert.ok(rep.notes.some((n: string) => /local store: no storage classes/.test(n)));
    assert.deepEqual(rep.lifecycle.rules, []);
    const text = await runCli(['cost', '--repo', repo], { env });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /recommended: none \(local store\)/);
    // A mistyped path is not a cheap repository: it says so.
    const typo = await runCli(['cost', '--repo', `${repo}-typo`, '--strict'], { env });
    assert.equal(typo.code, 3);
    assert.match(typo.stderr, /warning: no objects at .*local-repo-typo: check --repo/);
  });
});
