// CloudWatch PutMetricData through the real AWS SDK against a local endpoint that speaks
// CloudWatch's JSON 1.0 protocol (there is no local CloudWatch).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { publishMetrics } from '../src/metrics/metrics.ts';
import type { BackupEvent } from '../src/monitor/types.ts';
import type { MetricsSettings } from '../src/notify/settings.ts';
import { type FakeAws, fakeAwsEnv, startFakeAws } from './helpers/fake-aws.ts';

const common = { repository: 's3://bucket/host1', host: 'db1', sources: ['/srv/data', '/etc'] };
const success: BackupEvent = {
  type: 'success',
  time: '2026-11-26T02:00:07.000Z',
  ...common,
  backupId: 'b1',
  archive: 'archives/b1.tar.zst',
  kind: 'full',
  files: 4321,
  bytesIn: 5_000_000,
  bytesStored: 3_000_000,
  durationMs: 125_400,
  backupCount: 3,
  warnings: 0,
};

let fake: FakeAws;
const saved = { ...process.env };
before(async () => {
  fake = await startFakeAws();
  Object.assign(process.env, fakeAwsEnv(fake));
});
after(async () => {
  await fake.close();
  process.env = saved;
});

const settings = (extra: Partial<MetricsSettings> = {}): MetricsSettings => ({
  cloudwatch: { namespace: 'S3Backup' },
  timeoutMs: 5000,
  retries: 2,
  backoffMs: 10,
  ...extra,
});
const quiet = { info: () => {}, warn: () => {} };

describe('CloudWatch metrics', () => {
  test('a success: the five metrics with units, repository and source dimensions, in the namespace', async () => {
    fake.puts.length = 0;
    const r = await publishMetrics(success, settings(), quiet);
    assert.deepEqual(r, [{ channel: 'cloudwatch', ok: true, attempts: 1 }]);
    assert.equal(fake.puts.length, 1);
    const put = fake.puts[0]!;
    assert.equal(put.Namespace, 'S3Backup');
    assert.equal(put.contentType, 'application/x-amz-json-1.0');
    assert.match(put.authorization, /\/eu-west-1\/monitoring\/aws4_request/);
    const byName = Object.fromEntries(put.MetricData.map((d) => [d.MetricName, d]));
    assert.deepEqual(Object.keys(byName).sort(), ['AnomalyScore', 'BackupDurationSeconds', 'BackupSizeBytes', 'FilesTotal', 'Success']);
    assert.deepEqual(
      [
        byName.Success!.Value,
        byName.BackupDurationSeconds!.Value,
        byName.BackupSizeBytes!.Value,
        byName.FilesTotal!.Value,
        byName.AnomalyScore!.Value,
      ],
      [1, 125.4, 3_000_000, 4321, 0],
    );
    assert.deepEqual(
      [
        byName.Success!.Unit,
        byName.BackupDurationSeconds!.Unit,
        byName.BackupSizeBytes!.Unit,
        byName.FilesTotal!.Unit,
        byName.AnomalyScore!.Unit,
      ],
      ['Count', 'Seconds', 'Bytes', 'Count', 'None'],
    );
    for (const d of put.MetricData) {
      assert.deepEqual(d.Dimensions, [
        { Name: 'Repository', Value: 's3://bucket/host1' },
        { Name: 'Source', Value: '/srv/data,/etc' },
      ]);
      assert.equal(d.Timestamp, Date.parse('2026-11-26T02:00:07.000Z') / 1000);
    }
  });

  test("an anomaly: AnomalyScore is the strongest finding's normalized score, whatever the signals' own units", async () => {
    fake.puts.length = 0;
    const f = {
      metric: 'bytesIn',
      method: 'zscore' as const,
      current: 1,
      expected: 1,
      threshold: 3,
      historySize: 9,
      message: 'm',
      recommendation: 'r',
      severity: 'high' as const,
    };
    await publishMetrics(
      {
        ...success,
        type: 'anomaly',
        findings: [
          // A count of 771 files scores far above a robust score of 3.6, yet the high finding
          // (level 2.4) is the stronger one on the common scale.
          { ...f, score: 771, severity: 'warning', level: 1.99 },
          { ...f, score: -3.6, level: 2.4 },
        ],
      },
      settings(),
      quiet,
    );
    const score = fake.puts[0]!.MetricData.find((d) => d.MetricName === 'AnomalyScore');
    assert.equal(score?.Value, 2.4);
  });

  test('a failure: only Success = 0', async () => {
    fake.puts.length = 0;
    await publishMetrics(
      { type: 'failure', time: '2026-11-26T02:00:07.000Z', ...common, error: 'x', operation: 'upload' },
      settings(),
      quiet,
    );
    assert.deepEqual(
      fake.puts[0]!.MetricData.map((d) => [d.MetricName, d.Value]),
      [['Success', 0]],
    );
  });

  test('CloudWatch failing: retried on 500, reported (not thrown) when it keeps failing', async () => {
    fake.puts.length = 0;
    fake.failNext(1, 500);
    const r1 = await publishMetrics(success, settings(), quiet);
    assert.deepEqual(r1, [{ channel: 'cloudwatch', ok: true, attempts: 2 }]);
    fake.failNext(Infinity, 500);
    const lines: string[] = [];
    const r2 = await publishMetrics(success, settings({ retries: 1 }), { info: () => {}, warn: (m) => lines.push(m) });
    fake.failNext(0);
    assert.equal(r2[0]!.ok, false);
    assert.equal(r2[0]!.attempts, 2);
    assert.match(lines.join('\n'), /^metrics not written to cloudwatch: .*injected failure/m);
  });
});
