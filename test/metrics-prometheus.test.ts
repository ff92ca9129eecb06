// The Prometheus textfile (node_exporter textfile collector): written atomically, parsed back.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { publishMetrics } from '../src/metrics/metrics.ts';
import { parseTextfile } from '../src/metrics/prometheus.ts';
import type { BackupEvent } from '../src/monitor/types.ts';
import { tempDir } from './helpers/tree.ts';

const quiet = { info: () => {}, warn: () => {} };
const success = (over: Partial<Extract<BackupEvent, { type: 'success' }>> = {}): BackupEvent => ({
  type: 'success',
  time: '2026-11-26T02:00:00.000Z',
  repository: 's3://bucket/host1',
  host: 'db1',
  sources: ['/srv/data'],
  backupId: 'b1',
  archive: 'archives/b1.tar.zst',
  kind: 'full',
  files: 10,
  bytesIn: 2000,
  bytesStored: 1000,
  durationMs: 1500,
  backupCount: 1,
  warnings: 0,
  ...over,
});

/** name → labels JSON → value, from the file. */
function read(file: string): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const s of parseTextfile(fs.readFileSync(file, 'utf8'))) {
    if (!out.has(s.name)) out.set(s.name, new Map());
    out.get(s.name)!.set(JSON.stringify(s.labels), Number(s.value));
  }
  return out;
}

describe('Prometheus textfile', () => {
  test('after a success: every metric with HELP and TYPE, labelled with repository and source; no temp file left', async () => {
    const dir = tempDir('prom');
    const file = path.join(dir, 's3backup.prom');
    const r = await publishMetrics(success(), { prometheus: { textfile: file }, timeoutMs: 1000, retries: 0, backoffMs: 1 }, quiet);
    assert.deepEqual(r, [{ channel: 'prometheus', ok: true, attempts: 1 }]);
    const text = fs.readFileSync(file, 'utf8');
    const names = [
      's3backup_backup_success',
      's3backup_backup_duration_seconds',
      's3backup_backup_size_bytes',
      's3backup_backup_files',
      's3backup_backup_anomaly_score',
      's3backup_last_success_timestamp_seconds',
      's3backup_last_run_timestamp_seconds',
    ];
    for (const n of names) {
      assert.match(text, new RegExp(`^# HELP ${n} \\S.*$`, 'm'));
      assert.match(text, new RegExp(`^# TYPE ${n} gauge$`, 'm'));
    }
    const m = read(file);
    const key = JSON.stringify({ repository: 's3://bucket/host1', source: '/srv/data' });
    assert.deepEqual(
      names.map((n) => m.get(n)?.get(key)),
      [1, 1.5, 1000, 10, 0, Date.parse('2026-11-26T02:00:00.000Z') / 1000, Date.parse('2026-11-26T02:00:00.000Z') / 1000],
    );
    assert.deepEqual(fs.readdirSync(dir), ['s3backup.prom']);
    assert.ok(text.endsWith('\n'));
  });

  test('a failure keeps the last success time and figures; other sources in the file are kept; labels escaped', async () => {
    const dir = tempDir('prom');
    const file = path.join(dir, 'backups.prom');
    const s = { prometheus: { textfile: file }, timeoutMs: 1000, retries: 0, backoffMs: 1 };
    const odd = 'C:\\data "quoted"\nline';
    await publishMetrics(success(), s, quiet);
    await publishMetrics(success({ sources: [odd], files: 99, time: '2026-11-26T03:00:00.000Z' }), s, quiet);
    await publishMetrics({ type: 'failure', time: '2026-11-26T04:00:00.000Z', repository: 's3://bucket/host1', host: 'db1', sources: ['/srv/data'], error: 'x', operation: 'upload' }, s, quiet);
    const m = read(file);
    const a = JSON.stringify({ repository: 's3://bucket/host1', source: '/srv/data' });
    const b = JSON.stringify({ repository: 's3://bucket/host1', source: odd });
    assert.equal(m.get('s3backup_backup_success')?.get(a), 0);
    assert.equal(m.get('s3backup_last_run_timestamp_seconds')?.get(a), Date.parse('2026-11-26T04:00:00.000Z') / 1000);
    assert.equal(m.get('s3backup_last_success_timestamp_seconds')?.get(a), Date.parse('2026-11-26T02:00:00.000Z') / 1000);
    assert.equal(m.get('s3backup_backup_files')?.get(a), 10);
    assert.equal(m.get('s3backup_backup_success')?.get(b), 1);
    assert.equal(m.get('s3backup_backup_files')?.get(b), 99);
    assert.match(fs.readFileSync(file, 'utf8'), /source="C:\\\\data \\"quoted\\"\\nline"/);
  });

  test('a missing directory is a reported failure naming the fix, not a thrown error', async () => {
    const dir = tempDir('prom');
    const lines: string[] = [];
    const r = await publishMetrics(success(), { prometheus: { textfile: path.join(dir, 'nope', 'x.prom') }, timeoutMs: 1000, retries: 0, backoffMs: 1 }, {
      info: () => {},
      warn: (l) => lines.push(l),
    });
    assert.equal(r[0]!.ok, false);
    assert.match(r[0]!.error!, /directory .*nope does not exist/);
    assert.match(lines[0]!, /^metrics not written to prometheus: /);
  });
});
