// The CLI end to end: a real backup sequence where files are then "encrypted" (overwritten with
// random bytes) and `s3backup backup --json` reports it; `history --json/--csv` and
// `anomalies --json/--all` over the same repository; thresholds from s3backup.yaml.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('history-cli');
const env = isolatedEnv(path.join(work, 'home'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

test('backup --json flags files encrypted in place; history and anomalies report the sequence', async () => {
  const src = path.join(work, 'data');
  const repo = path.join(work, 'repo');
  fs.mkdirSync(src, { recursive: true });
  const text = (i: number) => Array.from({ length: 120 }, (_, k) => `line ${k} of document ${i}: the quick brown fox\n`).join('');
  for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(src, `doc-${i}.txt`), text(i));
  // Small test data: judge from 1 byte and 3 backups instead of the defaults (1 MiB, 10).
  const config = path.join(work, 's3backup.yaml');
  fs.writeFileSync(config, `repository: ${repo}\nanomaly:\n  minBytes: 0\n  minHistory: 3\n`);
  const cli = (...args: string[]) => runCli([...args, '--config', config], { env });

  const ids: string[] = [];
  for (let round = 0; round < 4; round++) {
    if (round > 0) for (const i of [round, round + 10]) fs.appendFileSync(path.join(src, `doc-${i}.txt`), `edit ${round}\n`);
    const r = await cli('backup', src, '--json');
    assert.equal(r.code, 0, r.stderr);
    const doc = json(r.stdout);
    assert.deepEqual(doc.anomalies, [], `round ${round}: ${JSON.stringify(doc.anomalies)}`);
    ids.push(doc.id);
  }
  // "Ransomware": 60 documents rewritten with random bytes of the same size.
  for (let i = 100; i < 160; i++) {
    const p = path.join(src, `doc-${i}.txt`);
    fs.writeFileSync(p, pseudoRandom(fs.statSync(p).size, i + 1));
  }
  const enc = await cli('backup', src, '--json');
  assert.equal(enc.code, 0, enc.stderr);
  const doc = json(enc.stdout);
  ids.push(doc.id);
  assert.equal(doc.changedFiles, 60);
  const metrics = doc.anomalies.map((f: any) => f.metric);
  assert.ok(metrics.includes('compressionRatio'), JSON.stringify(doc.anomalies, null, 2));
  const collapse = doc.anomalies.find((f: any) => f.metric === 'compressionRatio');
  assert.equal(collapse.method, 'rule');
  assert.equal(collapse.severity, 'high');
  assert.ok(collapse.current < 1.2 && collapse.expected > 2, JSON.stringify(collapse));
  assert.equal(collapse.historySize, 3);
  assert.match(collapse.recommendation, /ransomware/);
  assert.ok(metrics.includes('changeRatio'), JSON.stringify(metrics));

  // The human output shows the findings block; the run log has them as warnings.
  fs.appendFileSync(path.join(src, 'doc-1.txt'), 'one more edit\n');
  for (let i = 160; i < 200; i++) fs.writeFileSync(path.join(src, `doc-${i}.txt`), pseudoRandom(6000, i));
  const human = await cli('backup', src);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /anomalies: \d+ finding\(s\) against the history of comparable backups/);
  assert.match(human.stdout, /\[high 2\.\d\d\] compressionRatio: compression ratio collapsed/);
  assert.match(human.stdout, /→ Treat as possible ransomware/);
  // The advice names this backup, not "latest"; the encryption before it already held retention.
  const humanId = /^backup (\S+) /.exec(human.stdout)![1]!;
  assert.match(human.stdout, new RegExp(`s3backup diff \\S+ ${humanId}`));
  assert.doesNotMatch(human.stdout, /ls latest/);
  assert.match(human.stdout, /RETENTION HELD for .* since backup /);
  const logText = fs.readFileSync(path.join(env.XDG_STATE_HOME!, 's3backup', 'logs', 'backup.log'), 'utf8');
  assert.match(logText, /anomaly in backup .*compressionRatio/);

  // history --json: every run, oldest first; --csv: the same as a time series.
  const h = await cli('history', '--json', '--csv', path.join(work, 'out', 'history.csv'));
  assert.equal(h.code, 0, h.stderr);
  const hd = json(h.stdout);
  assert.equal(hd.count, 6);
  assert.deepEqual(
    hd.runs.slice(0, 5).map((r: any) => r.id),
    ids,
  );
  assert.deepEqual(
    hd.runs.map((r: any) => r.kind),
    ['full', 'incremental', 'incremental', 'incremental', 'incremental', 'incremental'],
  );
  assert.ok(hd.runs.every((r: any) => r.ok === true && r.host && r.sourceKey));
  const csv = fs
    .readFileSync(path.join(work, 'out', 'history.csv'), 'utf8')
    .trim()
    .split('\r\n');
  assert.equal(csv.length, 7);
  assert.equal(
    csv[0],
    'timestamp,id,host,sources,kind,ok,duration_seconds,files,bytes_in,bytes_total,bytes_stored,compression_ratio,new_files,changed_files,deleted_files,warnings,error',
  );
  assert.ok(csv[5]!.includes(`,${ids[4]},`) && csv[5]!.includes(',incremental,true,'));
  const table = await cli('history', '--last', '2');
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /6 run\(s\) in .* \(last 2 shown\)/);

  // anomalies ID --json: the encrypted backup, judged again; exit 3 because something is flagged.
  const a = await cli('anomalies', ids[4]!.slice(-8), '--json');
  assert.equal(a.code, 3, a.stderr);
  const ad = json(a.stdout);
  assert.equal(ad.runs.length, 1);
  assert.equal(ad.runs[0].id, ids[4]);
  assert.deepEqual(
    ad.runs[0].findings.map((f: any) => f.metric),
    metrics,
  );
  // A normal one: nothing, exit 0.
  const n = await cli('anomalies', ids[2]!, '--json');
  assert.equal(n.code, 0, n.stderr);
  assert.deepEqual(json(n.stdout).runs[0].findings, []);
  // --all: every run re-evaluated, the flagged ones listed.
  const all = await cli('anomalies', '--all', '--json');
  assert.equal(all.code, 3, all.stderr);
  const alld = json(all.stdout);
  assert.equal(alld.evaluated, 6);
  assert.deepEqual(alld.runs.map((r: any) => r.id).slice(0, 1), [ids[4]]);
  // A stricter threshold from the command line is checked, then used.
  const bad = await cli('anomalies', '--sigma', '-1');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--sigma must be a positive number/);
  const unknown = await cli('anomalies', 'nosuchrun');
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no run "nosuchrun" in the history/);
  assert.match(unknown.stderr, /hint: run "s3backup history"/);
});

test('a bad anomaly: key in the config is a usage error naming the key', async () => {
  const config = path.join(work, 'bad.yaml');
  fs.writeFileSync(config, `repository: ${path.join(work, 'repo2')}\nanomaly:\n  sigmaa: 3\n`);
  const r = await runCli(['history', '--config', config], { env });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /config file .*bad\.yaml: anomaly: unknown key "sigmaa"/);
  fs.writeFileSync(config, `repository: ${path.join(work, 'repo2')}\nanomaly:\n  enabled: false\n`);
  const src = path.join(work, 'data2');
  fs.mkdirSync(src, { recursive: true });
  fs.writeFileSync(path.join(src, 'a.txt'), 'a\n');
  const b = await runCli(['backup', src, '--config', config, '--json'], { env });
  assert.equal(b.code, 0, b.stderr);
  assert.equal(json(b.stdout).anomalies, undefined);
  assert.equal(fs.existsSync(path.join(work, 'repo2', 'history')), false, 'anomaly.enabled: false writes no history');
  const h = await runCli(['history', '--config', config], { env });
  assert.equal(h.code, 0, h.stderr);
  assert.match(h.stdout, /no backup runs recorded/);
});
