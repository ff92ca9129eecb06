// The Prometheus textfile (node_exporter textfile collector): written atomically, parsed back.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { publishMetrics } from '../src/metrics/metrics.ts';
import { parseTextfile } from '../src/metrics/prometheus.ts';
import type { BackupEvent } from '../src/monitor/types.ts';
import { ROOT, tempDir } from './helpers/tree.ts';

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
    await publishMetrics(
      {
        type: 'failure',
        time: '2026-11-26T04:00:00.000Z',
        repository: 's3://bucket/host1',
        host: 'db1',
        sources: ['/srv/data'],
        error: 'x',
        operation: 'upload',
      },
      s,
      quiet,
    );
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

  const promModule = pathToFileURL(path.join(ROOT, 'src/metrics/prometheus.ts')).href;

  /** A node process that runs `body` (ESM) with writePrometheusTextfile in scope; resolves with its stdout. */
  function writerProcess(body: string, onStdout?: (text: string) => void): Promise<string> {
    const script = `const { writePrometheusTextfile } = await import(${JSON.stringify(promModule)});\n${body}`;
    return new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => {
        out += d;
        onStdout?.(out);
      });
      child.stderr.on('data', (d) => (err += d));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`writer exited ${code}: ${err}`))));
    });
  }

  const sample = (source: string, files: string) =>
    `{ ok: true, time: new Date(), repository: 'r', source: ${JSON.stringify(source)}, files: ${files} }`;

  test('runs finishing together (separate processes, one shared file) keep every source and every last value', async () => {
    const dir = tempDir('prom');
    const file = path.join(dir, 's3backup.prom');
    const processes = 6;
    const writes = 150;
    const startAt = Date.now() + 1500; // all at the same instant, once every process has started
    await Promise.all(
      Array.from({ length: processes }, (_, i) =>
        writerProcess(`while (Date.now() < ${startAt});
          for (let n = 1; n <= ${writes}; n++) writePrometheusTextfile(${JSON.stringify(file)}, ${sample(`src-${i}`, 'n')});`),
      ),
    );
    const files = read(file).get('s3backup_backup_files')!;
    for (let i = 0; i < processes; i++) {
      // Each writer's last write says `writes`: a read-modify-write racing with another one
      // would leave an older value, or no sample at all, for one of them.
      assert.equal(files.get(JSON.stringify({ repository: 'r', source: `src-${i}` })), writes, `source src-${i}: ${[...files].join(' ')}`);
    }
    assert.deepEqual(fs.readdirSync(dir), ['s3backup.prom'], 'no lock or temporary file left');
  });

  test('a live lock is waited for; a lock left by a run that died is taken over once stale', async () => {
    const dir = tempDir('prom');
    const file = path.join(dir, 's3backup.prom');
    const lock = `${file}.lock`;
    const key = JSON.stringify({ repository: 'r', source: 's' });
    // Live: we hold the lock while another process tries to write.
    fs.writeFileSync(lock, '');
    let ready: () => void = () => {};
    const started = new Promise<void>((r) => (ready = r));
    const writer = writerProcess(`console.log('ready'); writePrometheusTextfile(${JSON.stringify(file)}, ${sample('s', '1')});`, (out) => {
      if (out.includes('ready')) ready();
    });
    await started;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(fs.existsSync(file), false, 'the writer wrote while the lock was held');
    fs.rmSync(lock);
    await writer;
    assert.equal(read(file).get('s3backup_backup_files')!.get(key), 1);
    // Stale (a minute old): taken over at once.
    fs.writeFileSync(lock, '');
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(lock, old, old);
    await writerProcess(`writePrometheusTextfile(${JSON.stringify(file)}, ${sample('s', '2')});`);
    assert.equal(read(file).get('s3backup_backup_files')!.get(key), 2);
    assert.equal(fs.existsSync(lock), false);
  });

  test('a missing directory is a reported failure naming the fix, not a thrown error', async () => {
    const dir = tempDir('prom');
    const lines: string[] = [];
    const r = await publishMetrics(
      success(),
      { prometheus: { textfile: path.join(dir, 'nope', 'x.prom') }, timeoutMs: 1000, retries: 0, backoffMs: 1 },
      {
        info: () => {},
        warn: (l) => lines.push(l),
      },
    );
    assert.equal(r[0]!.ok, false);
    assert.match(r[0]!.error!, /directory .*nope does not exist/);
    assert.match(lines[0]!, /^metrics not written to prometheus: /);
  });
});
