// The Terraform roles as tested facts: the aws_iam_policy_documents of
// infra/terraform are rendered to the JSON AWS would get (test/helpers/iam-policy.ts), with a
// bucket and a repository prefix filled in, and installed on Ceph RGW as the bucket policy of a
// fresh bucket for two second Ceph users, one per role (scripts/ceph-rgw.sh user NAME). Those
// users own no bucket and have no ACL grant: they may do exactly what the policy allows. The
// real CLI then runs as each of them:
//   - backup role: backup (retention after it, history compaction), incremental backups,
//     forget, prune, unlock of its stale locks, restore, verify --deep, ls, cat, list, history;
//     all exit 0 without a warning;
//   - cost-analyzer role: cost, list, history, anomalies and the dashboard's API succeed; every
//     write (backup, forget, prune, unlock, history --compact) and every read of backup data
//     (restore, verify --deep) is refused with exit 2, and nothing in the bucket changes;
//   - negative control: for every grant (action × resource) of the backup policy, the policy
//     without it makes some step of the backup scenario fail; so this test can fail;
//   - a role that may not delete: the backup is recorded, with warnings naming s3:DeleteObject
//     and where it is missing (exit 3), never a failed backup.
// What the emulation cannot show is said where it is left out: non-S3 actions (KMS, SNS,
// CloudWatch: other services) and s3:RestoreObject (Ceph 16 has no archive storage classes).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import {
  CreateMultipartUploadCommand,
  DeleteBucketPolicyCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutBucketPolicyCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { appendRun, HISTORY_RUNS, HISTORY_SEGMENTS, readHistory, sourceKeyOf } from '../src/monitor/history.ts';
import type { RunRecord } from '../src/monitor/types.ts';
import { mapLimit } from '../src/concurrency.ts';
import { RepoLock } from '../src/repo/locks.ts';
import { newSnapshotId } from '../src/repo/repository.ts';
import {
  cephBucketPolicy,
  contextFor,
  type IamPolicy,
  type IamStatement,
  loadTerraform,
  renderPolicy,
  type RoleUser,
  roleUser,
  type TerraformModule,
  type Value,
} from './helpers/iam-policy.ts';
import { startDashboardCli } from './helpers/dashboard.ts';
import { createTestBucket, deleteTestBucket, s3TestConfig, testS3Client, testS3Store } from './helpers/s3.ts';
import { type CliResult, diffTrees, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('iam-enforced');
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** The repository prefix (Terraform's repository_prefix): scopes resources and the s3:prefix condition. */
const PREFIX = 'backups';
const BACKUP_USER = 's3backup-role-backup';
const COST_USER = 's3backup-role-cost-analyzer';

let tf: TerraformModule;
let owner: S3Client;
let users: { backup: RoleUser; cost: RoleUser };

/** The module's policies for a bucket, as Terraform would render them. */
function policiesFor(bucket: string, vars: Record<string, Value> = {}): { backup: IamPolicy; cost: IamPolicy } {
  const ctx = contextFor(
    tf,
    { bucket_name: bucket, repository_prefix: PREFIX, github_repository: 'example/s3backup', ...vars },
    { 'aws_s3_bucket.this.arn': `arn:aws:s3:::${bucket}`, 'aws_sns_topic.this.arn': 'arn:aws:sns:us-east-1:123456789012:s3backup' },
  );
  return { backup: renderPolicy(tf, 'backup', ctx), cost: renderPolicy(tf, 'cost_analyzer', ctx) };
}

/**
 * A new bucket whose policy gives each role user what its IAM policy (rendered for that bucket)
 * gives the role; `roles` picks and may change the rendered policies.
 */
async function roleBucket(
  label: string,
  roles: (p: { backup: IamPolicy; cost: IamPolicy }, bucket: string) => { backup?: IamPolicy; cost?: IamPolicy },
): Promise<string> {
  const bucket = await createTestBucket(label);
  try {
    const chosen = roles(policiesFor(bucket), bucket);
    const list = [
      ...(chosen.backup ? [{ user: users.backup.name, policy: chosen.backup }] : []),
      ...(chosen.cost ? [{ user: users.cost.name, policy: chosen.cost }] : []),
    ];
    await owner.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy: JSON.stringify(cephBucketPolicy(list, bucket).policy) }));
  } catch (e) {
    await deleteTestBucket(bucket);
    throw e;
  }
  return bucket;
}

async function dropBucket(bucket: string): Promise<void> {
  await owner.send(new DeleteBucketPolicyCommand({ Bucket: bucket })).catch(() => {});
  await deleteTestBucket(bucket);
}

function roleClient(u: RoleUser): S3Client {
  return new S3Client({
    endpoint: s3TestConfig().endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: u.accessKeyId, secretAccessKey: u.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** The CLI's environment as a role user: its keys only, nothing of the user's own setup. */
function roleEnv(u: RoleUser, home: string): NodeJS.ProcessEnv {
  return isolatedEnv(home, {
    AWS_ACCESS_KEY_ID: u.accessKeyId,
    AWS_SECRET_ACCESS_KEY: u.secretAccessKey,
    AWS_SESSION_TOKEN: '',
    AWS_PROFILE: '',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL_S3: s3TestConfig().endpoint,
  });
}

/** What a run said: its exit code, its first lines on stderr, or its --json error and warnings. */
function firstLines(r: CliResult): string {
  let said = r.stderr.trim().split('\n').slice(0, 6).join('\n');
  try {
    const doc = JSON.parse(r.stdout);
    said += ` ${JSON.stringify({ error: doc.error?.message, warnings: doc.warnings })}`;
  } catch {
    // not a JSON document
  }
  return `exit ${r.code}\n${said.trim()}`;
}

/** A command that must succeed without warnings; its --json document. */
async function ok(args: string[], env: NodeJS.ProcessEnv): Promise<any> {
  const r = await runCli([...args, '--json'], { env });
  const cmd = `s3backup ${args.map((a) => (path.isAbsolute(a) ? path.basename(a) : a)).join(' ')}`;
  assert.equal(r.code, 0, `${cmd}: ${firstLines(r)}`);
  const doc = json(r.stdout);
  if (typeof doc.warningCount === 'number') assert.equal(doc.warningCount, 0, `${cmd}: warnings ${JSON.stringify(doc.warnings)}`);
  return doc;
}

/** Every key of the bucket with its size and time (as the owner sees it). */
async function bucketState(bucket: string): Promise<string[]> {
  const out: string[] = [];
  let ContinuationToken: string | undefined;
  do {
    const r = await owner.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken }));
    for (const o of r.Contents ?? []) out.push(`${o.Key} ${o.Size} ${o.LastModified?.toISOString()}`);
    ContinuationToken = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (ContinuationToken);
  const u = await owner.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const x of u.Uploads ?? []) out.push(`upload ${x.Key} ${x.UploadId}`);
  return out.sort();
}

async function countKeys(bucket: string, prefix: string): Promise<number> {
  const r = await owner.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${PREFIX}/${prefix}` }));
  return r.KeyCount ?? 0;
}

function runRecord(i: number): RunRecord {
  const time = new Date(Date.UTC(2026, 0, 1) + i * 3_600_000);
  const sources = ['/srv/other-data'];
  return {
    id: newSnapshotId(time),
    time: time.toISOString(),
    host: 'other-host',
    sources,
    sourceKey: sourceKeyOf('other-host', sources),
    tags: [],
    kind: 'full',
    ok: true,
    durationMs: 1000,
    files: 10,
    bytesIn: 1000,
    bytesTotal: 1000,
    bytesStored: 500,
    compressionRatio: 2,
    newFiles: 0,
    changedFiles: 0,
    deletedFiles: 0,
    warnings: 0,
  };
}

// ---------------------------------------------------------------------------------------------
// The backup role's scenario: steps in order, each a command the role is meant to run.

interface Scene {
  bucket: string;
  repo: string;
  env: NodeJS.ProcessEnv;
  dir: string;
  src: string;
  keepOne: string;
  ids: string[];
}

function newScene(bucket: string, label: string, user: RoleUser): Scene {
  const dir = path.join(work, label);
  const src = path.join(dir, 'data');
  fs.mkdirSync(path.join(src, 'docs'), { recursive: true });
  // Over the 8 MiB part size: the archive is a multipart upload.
  fs.writeFileSync(path.join(src, 'big.bin'), pseudoRandom(9 * 1024 * 1024 + 77, 22));
  fs.writeFileSync(path.join(src, 'docs', 'notes.txt'), 'notes, version 1\n');
  fs.writeFileSync(path.join(src, 'hello.txt'), 'hello\n');
  const keepOne = path.join(dir, 'keep-one.yaml');
  fs.writeFileSync(keepOne, 'keep:\n  last: 1\n');
  return { bucket, repo: `s3://${bucket}/${PREFIX}`, env: roleEnv(user, path.join(dir, 'home')), dir, src, keepOne, ids: [] };
}

const change = (s: Scene, text: string) => fs.writeFileSync(path.join(s.src, 'docs', 'notes.txt'), `notes, ${text}\n`);

const BACKUP_STEPS: { name: string; run: (s: Scene) => Promise<void> }[] = [
  {
    // Not a step of the role: what earlier runs and other hosts left, written by the bucket
    // owner before the role's first command (Ceph gives the owner no read access to objects
    // other users wrote). 9 history segments and 50 loose run records (the next backup compacts
    // them and merges the segments), a multipart upload a killed run left, a stale lock.
    name: 'seed: history to compact, an abandoned upload, a stale lock',
    run: async (s) => {
      const store = testS3Store(s.bucket, PREFIX);
      try {
        // Segments as compaction writes them (docs/format.md "Run history"): zstd NDJSON.
        const segments = Array.from({ length: 9 }, (_, k) => [runRecord(2 * k), runRecord(2 * k + 1)]);
        const runs = Array.from({ length: 50 }, (_, k) => runRecord(100 + k));
        await Promise.all([
          ...segments.map((recs, k) =>
            store.put(
              `${HISTORY_SEGMENTS}${recs[0]!.id}_${recs[1]!.id}-0000000${k}.ndjson.zst`,
              zlib.zstdCompressSync(Buffer.from(recs.map((r) => `${JSON.stringify(r)}\n`).join(''))),
            ),
          ),
          ...runs.map((r) => appendRun(store, r, { compactThreshold: 0 })),
          owner.send(new CreateMultipartUploadCommand({ Bucket: s.bucket, Key: `${PREFIX}/archives/${newSnapshotId()}.tar.zst` })),
          RepoLock.write(store, { exclusive: false, command: 'backup', ttlMs: 1 }),
        ]);
        assert.equal((await readHistory(store)).length, 68);
      } finally {
        await store.close();
      }
    },
  },
  {
    name: 'backup (first, full; multipart upload; compacts the history; no retention)',
    run: async (s) => {
      const r = await ok(['backup', s.src, '--repo', s.repo, '--no-forget'], s.env);
      assert.equal(r.kind, 'full');
      s.ids.push(r.id);
      assert.equal(await countKeys(s.bucket, HISTORY_RUNS), 0, 'every loose run record was merged');
      assert.equal(await countKeys(s.bucket, HISTORY_SEGMENTS), 1, 'the segments were merged into one');
    },
  },
  {
    name: 'prune --grace 0 (aborts the abandoned upload)',
    run: async (s) => {
      const r = await ok(['prune', '--grace', '0', '--repo', s.repo], s.env);
      assert.equal(r.uploads.aborted.length, 1, JSON.stringify(r.uploads));
    },
  },
  {
    name: 'backup (incremental; retention keep-last 5)',
    run: async (s) => {
      change(s, 'version 2');
      const r = await ok(['backup', s.src, '--repo', s.repo], s.env);
      assert.equal(r.kind, 'incremental');
      assert.deepEqual(r.retention, { removed: [], bytesFreed: 0 });
      s.ids.push(r.id);
    },
  },
  {
    name: 'unlock (its stale lock)',
    run: async (s) => {
      const r = await ok(['unlock', '--repo', s.repo], s.env);
      assert.equal(r.removed.length, 1);
      assert.equal(r.removed[0].stale, true);
    },
  },
  {
    name: 'backup --full --no-forget',
    run: async (s) => {
      change(s, 'version 3');
      const r = await ok(['backup', s.src, '--repo', s.repo, '--full', '--no-forget'], s.env);
      assert.equal(r.kind, 'full');
      s.ids.push(r.id);
    },
  },
  {
    name: 'forget --keep-last 2 (removes the first backup)',
    run: async (s) => {
      const r = await ok(['forget', '--keep-last', '2', '--repo', s.repo], s.env);
      assert.deepEqual(r.removed, [s.ids[0]]);
    },
  },
  {
    name: 'backup with retention keep-last 1 (removes two backups and their archives)',
    run: async (s) => {
      change(s, 'version 4');
      const r = await ok(['backup', s.src, '--repo', s.repo, '--config', s.keepOne], s.env);
      assert.equal(r.kind, 'incremental');
      assert.deepEqual(r.retention.removed, [s.ids[1], s.ids[2]].sort());
      assert.ok(r.retention.bytesFreed > 0, `freed ${r.retention.bytesFreed}`);
      s.ids.push(r.id);
      assert.equal(await countKeys(s.bucket, 'snapshots/'), 1);
    },
  },
  {
    // Entry segments are shared and carry no backup id: the ones only forgotten backups listed
    // wait out the grace period.
    name: 'prune --grace 0 (the entry segments only forgotten backups listed)',
    run: async (s) => {
      const r = await ok(['prune', '--grace', '0', '--repo', s.repo], s.env);
      assert.ok(r.segments.deleted.length >= 1, JSON.stringify(r.segments));
      // The last backup's: the --full backup's base, and its own layer over it.
      assert.equal(await countKeys(s.bucket, 'entries/'), 2);
    },
  },
  {
    name: 'restore latest',
    run: async (s) => {
      const target = path.join(s.dir, 'restored');
      await ok(['restore', 'latest', '--target', target, '--repo', s.repo], s.env);
      assert.deepEqual(diffTrees(s.src, path.join(target, path.basename(s.src))), []);
    },
  },
  { name: 'verify latest --deep', run: async (s) => void (await ok(['verify', 'latest', '--deep', '--repo', s.repo], s.env)) },
  {
    name: 'ls and cat',
    run: async (s) => {
      await ok(['ls', 'latest', '--repo', s.repo], s.env);
      const r = await runCli(['cat', 'latest', 'data/docs/notes.txt', '--repo', s.repo], { env: s.env });
      assert.equal(r.code, 0, firstLines(r));
      assert.equal(r.stdout, 'notes, version 4\n');
    },
  },
  {
    name: 'list, history, anomalies',
    run: async (s) => {
      const l = await ok(['list', '--repo', s.repo], s.env);
      assert.deepEqual(
        l.backups.map((b: { id: string }) => b.id),
        [s.ids[3]],
      );
      await ok(['history', '--repo', s.repo], s.env);
      await ok(['anomalies', '--repo', s.repo], s.env);
    },
  },
];

/** Run the steps in order; the first failure, or undefined when every step passed. */
async function runSteps(s: Scene): Promise<{ step: string; error: string } | undefined> {
  for (const step of BACKUP_STEPS) {
    try {
      await step.run(s);
    } catch (e) {
      return {
        step: step.name,
        error: String((e as Error).message)
          .split('\n')
          .slice(0, 3)
          .join(' | '),
      };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  tf = await loadTerraform('infra/terraform');
  owner = testS3Client();
  const endpoint = s3TestConfig().endpoint;
  users = { backup: roleUser(BACKUP_USER, endpoint), cost: roleUser(COST_USER, endpoint) };
});

after(() => owner?.destroy());

describe('the Terraform roles, enforced by Ceph RGW as bucket policies', { concurrency: 1 }, () => {
  test('the rendered policies: what each role is granted in S3', () => {
    const { backup, cost } = policiesFor('b');
    const grants = (p: IamPolicy) =>
      p.Statement.flatMap((s) =>
        s.Action.filter((a) => a.startsWith('s3:')).flatMap((a) => (s.Resource ?? []).map((r) => `${a} ${r}`)),
      ).sort();
    const b = 'arn:aws:s3:::b';
    const r = `${b}/${PREFIX}`;
    assert.deepEqual(grants(backup), [
      `s3:AbortMultipartUpload ${r}/*`,
      `s3:DeleteObject ${r}/.probe-*`,
      `s3:DeleteObject ${r}/archives/*`,
      `s3:DeleteObject ${r}/entries/*`,
      `s3:DeleteObject ${r}/history/runs/*`,
      `s3:DeleteObject ${r}/history/segments/*`,
      `s3:DeleteObject ${r}/locks/*`,
      `s3:DeleteObject ${r}/snapshots/*`,
      `s3:GetObject ${r}/*`,
      `s3:ListBucket ${b}`,
      `s3:ListBucketMultipartUploads ${b}`,
      `s3:PutObject ${r}/*`,
      `s3:RestoreObject ${r}/archives/*`,
    ]);
    assert.deepEqual(grants(cost), [
      `s3:GetLifecycleConfiguration ${b}`,
      `s3:GetObject ${r}/config.json`,
      `s3:GetObject ${r}/entries/*`,
      `s3:GetObject ${r}/history/*`,
      `s3:GetObject ${r}/keys/*`,
      `s3:GetObject ${r}/snapshots/*`,
      `s3:GetObject ${b}/inventory/*`,
      `s3:ListBucket ${b}`,
    ]);
    const list = cost.Statement.find((s) => s.Action.includes('s3:ListBucket'))!;
    assert.deepEqual(list.Condition, { StringLike: { 's3:prefix': [`${PREFIX}/*`, 'inventory/*'] } });
    // Rotation deletes are the module's choice (allow_rotation_deletes, default true).
    const noRotation = policiesFor('b', { allow_rotation_deletes: false }).backup;
    assert.deepEqual(
      grants(noRotation).filter(
        (g) => g.includes('snapshots/') || (g.startsWith('s3:DeleteObject') && (g.includes('archives/') || g.includes('entries/'))),
      ),
      [],
    );
  });

  test('the emulation: Ceph enforces the policy on a user that owns nothing there', async () => {
    const b2 = await roleBucket('iam-probe', (p) => p);
    const bc = roleClient(users.backup);
    const cc = roleClient(users.cost);
    const denied = async (p: Promise<unknown>, what: string) => {
      await assert.rejects(p, (e: any) => e?.$metadata?.httpStatusCode === 403, what);
    };
    try {
      await bc.send(new PutObjectCommand({ Bucket: b2, Key: `${PREFIX}/config.json`, Body: '{}' }));
      await bc.send(new PutObjectCommand({ Bucket: b2, Key: `${PREFIX}/archives/a.tar.zst`, Body: 'a' }));
      await denied(bc.send(new PutObjectCommand({ Bucket: b2, Key: 'elsewhere/x', Body: 'x' })), 'PUT outside the prefix');
      // A multi-object delete: checked key by key (config.json may never be deleted).
      const d = await bc.send(
        new DeleteObjectsCommand({
          Bucket: b2,
          Delete: { Objects: [{ Key: `${PREFIX}/config.json` }, { Key: `${PREFIX}/archives/a.tar.zst` }], Quiet: true },
        }),
      );
      assert.deepEqual(
        (d.Errors ?? []).map((e) => [e.Key, e.Code]),
        [[`${PREFIX}/config.json`, 'AccessDenied']],
      );
      await bc.send(new HeadBucketCommand({ Bucket: b2 }));
      // The cost-analyzer: s3:prefix-limited listing, metadata reads only, no writes.
      await cc.send(new ListObjectsV2Command({ Bucket: b2, Prefix: `${PREFIX}/` }));
      await denied(cc.send(new ListObjectsV2Command({ Bucket: b2 })), 'a listing of the whole bucket (s3:prefix condition)');
      await denied(cc.send(new HeadBucketCommand({ Bucket: b2 })), 'HeadBucket (no prefix: the condition fails)');
      const cfg = await cc.send(new GetObjectCommand({ Bucket: b2, Key: `${PREFIX}/config.json` }));
      assert.equal(await cfg.Body!.transformToString(), '{}');
      await bc.send(new PutObjectCommand({ Bucket: b2, Key: `${PREFIX}/archives/b.tar.zst`, Body: 'b' }));
      await denied(cc.send(new GetObjectCommand({ Bucket: b2, Key: `${PREFIX}/archives/b.tar.zst` })), 'reading backup data');
      await denied(cc.send(new PutObjectCommand({ Bucket: b2, Key: `${PREFIX}/history/runs/x.json`, Body: '{}' })), 'a write');
    } finally {
      bc.destroy();
      cc.destroy();
      await dropBucket(b2);
    }
  });

  let shared: Scene | undefined;

  test('backup role: backup with retention and compaction, forget, prune, unlock, restore, verify --deep, ls, cat, list: all exit 0', async () => {
    const real = await roleBucket('iam-roles', (p) => p);
    shared = newScene(real, 'roles', users.backup);
    const failed = await runSteps(shared);
    assert.equal(failed, undefined, `as the backup role, step "${failed?.step}" failed: ${failed?.error}`);
  });

  test('cost-analyzer role: cost, list, history, anomalies, dashboard succeed; writes and data reads exit 2; nothing changes', async (t) => {
    assert.ok(shared, 'needs the backup role test before it');
    const s = shared;
    const env = roleEnv(users.cost, path.join(work, 'cost-home'));
    const repo = s.repo;
    try {
      // A stale lock for unlock to try, written by the owner.
      const store = testS3Store(s.bucket, PREFIX);
      await RepoLock.write(store, { exclusive: false, command: 'backup', ttlMs: 1 });
      await store.close();
      const before0 = await bucketState(s.bucket);

      const c = await ok(['cost', '--repo', repo], env);
      assert.equal(c.backups.manifestsRead, true, JSON.stringify(c.notes));
      assert.ok(!c.warnings.some((w: { code: string }) => w.code === 'lifecycle-unreadable'), JSON.stringify(c.warnings));
      const l = await ok(['list', '--repo', repo], env);
      assert.deepEqual(
        l.backups.map((b: { id: string }) => b.id),
        [s.ids.at(-1)],
      );
      const h = await ok(['history', '--repo', repo], env);
      assert.ok(JSON.stringify(h).includes(s.ids.at(-1)!), 'the last backup is in the history');
      await ok(['anomalies', '--repo', repo], env);

      // The dashboard's API, served by the CLI as the cost-analyzer.
      const dash = await startDashboard(['--repo', repo, '--max-age', '1y'], env);
      try {
        const get = async (p: string) => {
          const r = await fetch(new URL(p, dash.url));
          const body = await r.text();
          assert.equal(r.status, 200, `${p}: ${r.status} ${body.slice(0, 300)}`);
          return JSON.parse(body);
        };
        const sum = await get('api/summary');
        assert.equal(sum.backups, 1);
        assert.equal((await get('api/backups')).items.length, 1);
        const d = await get('api/backups/latest');
        assert.ok(d.archives.length >= 1 && d.archives.every((a: { present: boolean }) => a.present), JSON.stringify(d.archives));
        const tree = await get(`api/backups/${d.id}/tree`);
        assert.ok(JSON.stringify(tree).includes('data'), JSON.stringify(tree).slice(0, 200));
        await get('api/timeline');
        const an = await get('api/anomalies');
        assert.equal(an.status, 'ok', JSON.stringify(an).slice(0, 300));
        const cost = await get('api/cost');
        assert.notEqual(cost.status, 'error', JSON.stringify(cost).slice(0, 300));
      } finally {
        await dash.stop();
      }

      // Every write, and every read of backup data, is an access error (exit 2) naming the action.
      const refused: [string[], RegExp][] = [
        [['backup', s.src], /s3:(ListBucket|PutObject)/],
        [['forget', '--keep-last', '1'], /s3:(PutObject|GetObject)/],
        [['prune'], /s3:(PutObject|GetObject)/],
        [['unlock'], /s3:(GetObject|DeleteObject)/],
        [['history', '--compact'], /s3:(DeleteObject|PutObject)/],
        [['restore', 'latest', '--target', path.join(work, 'cost-restore')], /s3:GetObject/],
        [['verify', 'latest', '--deep'], /s3:GetObject/],
        [['cat', 'latest', 'data/hello.txt'], /s3:GetObject/],
      ];
      for (const [args, action] of refused) {
        const r = await runCli([...args, '--repo', repo], { env });
        assert.equal(r.code, 2, `cost-analyzer: s3backup ${args[0]} must be refused (exit 2): ${firstLines(r)}`);
        assert.match(r.stderr, /access denied|refused access/i, `s3backup ${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, action, `s3backup ${args.join(' ')} names the action: ${r.stderr}`);
        t.diagnostic(`cost-analyzer: ${args[0]}: ${r.stderr.trim().split('\n')[0]}`);
      }
      assert.deepEqual(await bucketState(s.bucket), before0, 'the cost-analyzer changed nothing in the bucket');
    } finally {
      await dropBucket(s.bucket);
    }
  });

  test('negative control: without any one grant of the backup policy, a step of the backup scenario fails', async (t) => {
    const grants: { sid: string; action: string; resource: string }[] = [];
    for (const st of policiesFor('b').backup.Statement) {
      for (const action of st.Action.filter((a) => a.startsWith('s3:')))
        for (const resource of st.Resource ?? []) grants.push({ sid: st.Sid, action, resource });
    }
    // What Ceph cannot show: restoring from Glacier (Ceph 16 has no archive storage class).
    const exempt = (g: { action: string }) => g.action === 's3:RestoreObject';
    assert.deepEqual(
      grants.filter(exempt).map((g) => g.sid),
      ['RestoreArchives'],
    );
    const tried = grants.filter((g) => !exempt(g));
    assert.ok(tried.length >= 10, `expected the backup policy's grants, found ${tried.length}`);
    const unproven: string[] = [];
    // Two at a time: each is a chain of CLI runs against one bucket of its own.
    await mapLimit(tried, 2, async (g) => {
      const placeholder = 'arn:aws:s3:::b';
      const bucket = await roleBucket('iam-neg', (p, name) => ({
        backup: withoutGrant(p.backup, g.sid, g.action, g.resource.replace(placeholder, `arn:aws:s3:::${name}`)),
      }));
      try {
        const label = `neg-${g.sid}-${g.action.slice(3)}-${grants.indexOf(g)}`;
        const failed = await runSteps(newScene(bucket, label, users.backup));
        const what = `${g.action} on ${g.resource.replace(placeholder, 'BUCKET')}`;
        if (failed) t.diagnostic(`without ${what}: "${failed.step}" fails: ${failed.error.slice(0, 400)}`);
        else unproven.push(what);
      } finally {
        await dropBucket(bucket);
      }
    });
    assert.deepEqual(unproven, [], 'grants no step of the scenario needs (remove them from the role, or add the step that needs them)');
  });

  test('a role that may not delete: the backup is recorded with warnings naming s3:DeleteObject (exit 3), not a failed backup', async () => {
    // allow_rotation_deletes = false, and then no delete at all.
    for (const variant of ['no rotation', 'no delete'] as const) {
      const bucket = await roleBucket('iam-nodel', (_p, name) => {
        let policy = policiesFor(name, variant === 'no rotation' ? { allow_rotation_deletes: false } : {}).backup;
        if (variant === 'no delete')
          policy = { ...policy, Statement: policy.Statement.filter((st) => !st.Action.includes('s3:DeleteObject')) };
        assert.ok(
          !policy.Statement.some(
            (st) => st.Action.includes('s3:DeleteObject') && (st.Resource ?? []).some((r) => r.includes('/snapshots/')),
          ),
        );
        return { backup: policy };
      });
      try {
        const s = newScene(bucket, `nodel-${variant.replace(' ', '-')}`, users.backup);
        await ok(['backup', s.src, '--repo', s.repo, '--no-forget'], s.env).catch((e: unknown) => {
          if (variant === 'no rotation') throw e; // housekeeping deletes are still allowed
        });
        change(s, 'version 2');
        const r = await runCli(['backup', s.src, '--repo', s.repo, '--config', s.keepOne, '--json'], { env: s.env });
        assert.equal(r.code, 3, `${variant}: ${firstLines(r)}`);
        const doc = json(r.stdout);
        assert.equal(doc.ok, true);
        assert.match(doc.id, /^\d{8}T/);
        const warned = (re: RegExp) =>
          assert.ok(
            doc.warnings.some((w: string) => re.test(w)),
            `${variant}: no warning ${re}: ${JSON.stringify(doc.warnings, null, 1)}`,
          );
        const arn = `arn:aws:s3:::${bucket}/${PREFIX}`;
        assert.ok(doc.retention.error, JSON.stringify(doc.retention));
        if (variant === 'no rotation') {
          assert.equal(doc.warnings.length, 1, JSON.stringify(doc.warnings));
          warned(new RegExp(`^retention policy not applied .*s3:DeleteObject.*grant s3:DeleteObject on ${arn}/snapshots/\\*`));
        } else {
          warned(new RegExp(`write probe .* was left behind.*grant s3:DeleteObject on ${arn}/\\.probe-\\*`));
          warned(new RegExp(`repository lock could not be removed.*grant s3:DeleteObject on ${arn}/locks/\\*`));
          warned(/^retention policy not applied .*own lock is still in the repository/);
        }
        // Both backups exist.
        const l = await runCli(['list', '--repo', s.repo, '--json'], { env: s.env });
        assert.equal(json(l.stdout).backups.length, 2, firstLines(l));
      } finally {
        await dropBucket(bucket);
      }
    }
  });
});

/** The policy without one grant: `action` on `resource` in statement `sid`. */
function withoutGrant(p: IamPolicy, sid: string, action: string, resource: string): IamPolicy {
  const Statement: IamStatement[] = [];
  let found = false;
  for (const st of p.Statement) {
    if (st.Sid !== sid || !st.Action.includes(action) || !(st.Resource ?? []).includes(resource)) {
      Statement.push(st);
      continue;
    }
    found = true;
    const others = st.Action.filter((a) => a !== action);
    if (others.length) Statement.push({ ...st, Action: others });
    const rest = (st.Resource ?? []).filter((r) => r !== resource);
    if (rest.length) Statement.push({ ...st, Sid: `${st.Sid}Rest`, Action: [action], Resource: rest });
  }
  assert.ok(found, `no grant ${action} on ${resource} in ${sid}`);
  return { ...p, Statement };
}

/** `s3backup dashboard --port 0 --json`: its URL once it listens, and a way to stop it. */
async function startDashboard(args: string[], env: NodeJS.ProcessEnv): Promise<{ url: string; stop: () => Promise<void> }> {
  const { child, doc } = await startDashboardCli(args, env);
  return {
    url: doc.url,
    stop: async () => {
      const done = new Promise<void>((r) => child.on('exit', () => r()));
      child.kill('SIGTERM');
      await done;
    },
  };
}
