// The anomaly detector on small hand-made histories: what it compares with, when it judges,
// that one earlier outlier cannot blind it, that a legitimate jump is flagged once, and that
// every finding carries its numbers and a recommendation.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_DETECTOR_OPTIONS, DetectorOptionsSchema, detectAnomalies, evaluateHistory } from '../src/monitor/anomaly.ts';
import { sourceKeyOf } from '../src/monitor/history.ts';
import type { RunRecord } from '../src/monitor/types.ts';
import { generateDaily } from './helpers/daily-history.ts';
import { prng } from './helpers/tree.ts';

const KEY = sourceKeyOf('h', ['/data']);

/** The identity of the i-th daily incremental of source KEY (02:00 UTC from 2026-01-01). */
function daily(i: number): Pick<RunRecord, 'id' | 'time' | 'host' | 'sources' | 'sourceKey' | 'tags' | 'kind' | 'ok'> {
  const t = new Date(Date.UTC(2026, 0, 1, 2) + i * 86_400_000);
  return {
    id: `${t.toISOString().replace(/[-:]/g, '')}-${i.toString(16).padStart(8, '0')}`,
    time: t.toISOString(),
    host: 'h',
    sources: ['/data'],
    sourceKey: KEY,
    tags: [],
    kind: 'incremental',
    ok: true,
  };
}

/** Daily incrementals with mild noise: ~20 MiB read, 1000 files growing slowly. */
function steady(n: number, seed = 1, start = 0): RunRecord[] {
  const rnd = prng(seed);
  const out: RunRecord[] = [];
  for (let i = start; i < start + n; i++) {
    const noise = 1 + (rnd() - 0.5) * 0.3;
    const bytesIn = Math.round(20e6 * noise);
    out.push({
      ...daily(i),
      durationMs: Math.round(60_000 * noise),
      files: 1000 + i,
      bytesIn,
      bytesTotal: 2e9 + i * 1e6,
      bytesStored: Math.round(bytesIn / 2.5),
      compressionRatio: 2.5,
      newFiles: 1,
      changedFiles: Math.round(10 * noise),
      deletedFiles: 0,
      warnings: 0,
      extensions: { txt: 6, docx: 5 },
    });
  }
  return out;
}

function next(history: RunRecord[], change: Partial<RunRecord>): RunRecord {
  const last = history.at(-1)!;
  const t = new Date(Date.parse(last.time) + 86_400_000);
  return {
    ...last,
    id: `${t.toISOString().replace(/[-:]/g, '')}-ffffffff`,
    time: t.toISOString(),
    files: last.files + 1,
    bytesTotal: last.bytesTotal + 1e6,
    ...change,
  };
}

describe('anomaly detector', () => {
  test('normal backups raise nothing; a 10× backup is flagged by the z-score rule with its numbers and a recommendation', () => {
    const h = steady(40);
    assert.deepEqual(detectAnomalies(next(h, {}), h), []);
    const big = next(h, { bytesIn: 200e6, bytesStored: 80e6, durationMs: 600_000 });
    const f = detectAnomalies(big, h);
    const bytesIn = f.find((x) => x.metric === 'bytesIn');
    assert.ok(bytesIn, JSON.stringify(f));
    assert.equal(bytesIn.method, 'zscore');
    assert.equal(bytesIn.current, 200e6);
    assert.ok(bytesIn.expected > 15e6 && bytesIn.expected < 25e6, `expected ≈ 20 MB, got ${bytesIn.expected}`);
    assert.ok(bytesIn.score > 2);
    assert.equal(bytesIn.historySize, 40);
    assert.match(bytesIn.message, /bytes read 190\.7 MiB is \d+(\.\d)?× expected/);
    assert.ok(bytesIn.recommendation.length > 40);
    assert.ok(f.some((x) => x.metric === 'durationMs'));
  });

  test('only comparable history counts: other sources, the other kind, failures and later runs are ignored', () => {
    const h = steady(40);
    const big = next(h, { bytesIn: 200e6, bytesStored: 80e6 });
    const other = h.map((r) => ({ ...r, sourceKey: 'other' }));
    assert.deepEqual(detectAnomalies(big, other), [], 'no history of these sources: nothing to judge');
    const fulls = h.map((r) => ({ ...r, kind: 'full' as const }));
    assert.deepEqual(detectAnomalies(big, fulls), []);
    const failed = h.map((r) => ({ ...r, ok: false }));
    assert.deepEqual(detectAnomalies(big, failed), []);
    const later = h.map((r) => ({ ...r, time: new Date(Date.parse(r.time) + 365 * 86_400_000).toISOString() }));
    assert.deepEqual(detectAnomalies(big, later), []);
    // The current run inside the history does not judge itself.
    assert.ok(detectAnomalies(big, [...h, big]).length > 0);
  });

  test('minimum history: statistical signals wait for minHistory comparable backups', () => {
    const h = steady(DEFAULT_DETECTOR_OPTIONS.minHistory - 1);
    const big = next(h, { bytesIn: 200e6, bytesStored: 80e6 });
    assert.deepEqual(detectAnomalies(big, h), []);
    const h2 = steady(DEFAULT_DETECTOR_OPTIONS.minHistory);
    assert.ok(detectAnomalies(next(h2, { bytesIn: 200e6, bytesStored: 80e6 }), h2).some((f) => f.metric === 'bytesIn'));
    assert.deepEqual(detectAnomalies(next(h2, { bytesIn: 200e6, bytesStored: 80e6 }), h2, { minHistory: 30 }), []);
  });

  test('one earlier outlier blinds the mean ± 2σ rule but not the robust one', () => {
    const h = steady(40);
    h[30] = { ...h[30]!, bytesIn: 20e9, bytesStored: 8e9, durationMs: 3_600_000 }; // a huge import
    const f = detectAnomalies(next(h, { bytesIn: 150e6, bytesStored: 60e6 }), h);
    const bytesIn = f.find((x) => x.metric === 'bytesIn');
    assert.ok(bytesIn, JSON.stringify(f));
    assert.equal(bytesIn.method, 'robust');
    assert.ok(bytesIn.score > DEFAULT_DETECTOR_OPTIONS.robustThreshold);
    assert.match(bytesIn.message, /the mean ± [\d.]+σ rule misses it/);
    // The same outlier does not make the following normal backups look odd either.
    assert.deepEqual(detectAnomalies(next(h, {}), h), []);
  });

  test('a legitimate jump in size is flagged once; the backups after it are judged from the new level', () => {
    const h = steady(40);
    const jump = next(h, {
      files: h.at(-1)!.files + 5000,
      bytesTotal: h.at(-1)!.bytesTotal * 1.5,
      bytesIn: 1e9,
      bytesStored: 5e8,
      newFiles: 5000,
    });
    const f = detectAnomalies(jump, h);
    assert.ok(f.some((x) => x.metric === 'bytesTotal'));
    assert.ok(f.some((x) => x.metric === 'files'));
    const after = [...h, jump];
    const day2 = next(after, { bytesIn: 20e6, bytesStored: 8e6, newFiles: 1 });
    assert.deepEqual(detectAnomalies(day2, after), []);
  });

  test('rules: mass deletion, file-count drop, ransomware extensions, compression collapse', () => {
    const h = steady(40);
    const prev = h.at(-1)!;
    const del = detectAnomalies(next(h, { files: prev.files - 300, deletedFiles: 300, bytesTotal: prev.bytesTotal * 0.7 }), h);
    assert.deepEqual(
      del
        .filter((x) => x.method === 'rule')
        .map((x) => x.metric)
        .sort(),
      ['deletedFiles', 'files'],
    );
    const deleted = del.find((x) => x.metric === 'deletedFiles')!;
    assert.equal(deleted.current, 300);
    assert.ok(Math.abs(deleted.score - 300 / prev.files) < 1e-3);
    assert.match(deleted.recommendation, /restore the missing files/);
    // Ransomware: many files rewritten, renamed .locked, no longer compressing.
    const enc = next(h, {
      changedFiles: 0,
      newFiles: 200,
      deletedFiles: 200,
      bytesIn: 300e6,
      bytesStored: 301e6,
      compressionRatio: 0.997,
      extensions: { locked: 200 },
    });
    const ef = detectAnomalies(enc, h);
    const ext = ef.find((x) => x.metric === 'extensions')!;
    assert.equal(ext.severity, 'high');
    assert.match(ext.message, /\.locked is an extension ransomware uses/);
    const comp = ef.find((x) => x.metric === 'compressionRatio')!;
    assert.equal(comp.method, 'rule');
    assert.equal(comp.expected, 2.5);
    assert.match(comp.recommendation, /ransomware/);
    assert.ok(ef.some((x) => x.metric === 'changeRatio'));
    // A known ransomware extension is judged even with almost no history.
    assert.ok(
      detectAnomalies(next(h.slice(0, 2), { newFiles: 50, extensions: { encrypted: 50 } }), h.slice(0, 2)).some(
        (x) => x.metric === 'extensions',
      ),
    );
  });

  test('slow drift: growth a little faster every day is flagged once it adds up', () => {
    const h = steady(50);
    let flaggedOn = -1;
    for (let d = 1; d <= 20 && flaggedOn < 0; d++) {
      const r = next(h, { bytesTotal: h.at(-1)!.bytesTotal * (1 + 0.004 * d) });
      if (detectAnomalies(r, h).some((f) => f.metric === 'drift')) flaggedOn = d;
      h.push(r);
    }
    assert.ok(flaggedOn > 3 && flaggedOn <= 20, `drift flagged on day ${flaggedOn}`);
  });

  test('evaluateHistory judges every successful run on the runs before it', () => {
    const h = steady(30);
    h.push(next(h, { bytesIn: 300e6, bytesStored: 120e6 }));
    h.push({ ...next(h, {}), ok: false, error: 'boom' });
    h.push(next(h, { ok: true, bytesIn: 20e6, bytesStored: 8e6 }));
    const ev = evaluateHistory(h);
    assert.equal(ev.length, 32);
    assert.deepEqual(
      ev.filter((e) => e.findings.length).map((e) => e.record.id),
      [h[30]!.id],
    );
  });

  test('options are validated (the config key anomaly: uses the same schema)', () => {
    assert.equal(DetectorOptionsSchema.safeParse({ sigma: 3, minHistory: 5 }).success, true);
    assert.equal(DetectorOptionsSchema.safeParse({ sigma: -1 }).success, false);
    assert.equal(DetectorOptionsSchema.safeParse({ sigmaa: 2 }).success, false);
    const h = steady(40);
    const big = next(h, { bytesIn: 150e6, bytesStored: 60e6 });
    assert.ok(detectAnomalies(big, h).some((f) => f.metric === 'bytesIn'));
    assert.ok(!detectAnomalies(big, h, { minRelativeChange: 10 }).some((f) => f.metric === 'bytesIn'));
    const medium = next(h, { bytesIn: 60e6, bytesStored: 24e6 }); // 3×: below the default 5×
    assert.ok(!detectAnomalies(medium, h).some((f) => f.metric === 'bytesIn'));
    assert.ok(detectAnomalies(medium, h, { minRelativeChange: 1 }).some((f) => f.metric === 'bytesIn'));
  });

  /** A toy source: daily incrementals of a few files and a few KiB, as in a demo. */
  function toy(sizes: { files: number; bytesTotal: number }[]): RunRecord[] {
    return sizes.map(({ files, bytesTotal }, i) => {
      return {
        ...daily(i),
        durationMs: 1000,
        files,
        bytesIn: 1000,
        bytesTotal,
        bytesStored: 400,
        compressionRatio: 2.5,
        newFiles: 1,
        changedFiles: 1,
        deletedFiles: 0,
        warnings: 0,
      };
    });
  }

  test('a toy source of 6 files: steps of one file raise nothing; losing all of them is flagged with a sane score', () => {
    const sizes = Array.from({ length: 14 }, () => ({ files: 6, bytesTotal: 5050 }));
    for (const files of [7, 6, 7, 8, 7, 6]) sizes.push({ files, bytesTotal: 5050 + 50 * (files - 6) });
    const judged = evaluateHistory(toy(sizes));
    const fileFindings = judged.flatMap((e) => e.findings.filter((f) => f.metric === 'files'));
    assert.deepEqual(fileFindings, [], 'one file more or less in 6 is no news');
    // All six files gone: a real change of 6 files, flagged, but scored against one file's step, not a zero MAD.
    const gone = toy([...sizes, { files: 0, bytesTotal: 0 }]);
    const f = detectAnomalies(gone.at(-1)!, gone.slice(0, -1)).find((x) => x.metric === 'files');
    assert.ok(f, 'all files gone is flagged');
    assert.ok(Math.abs(f.score) < 50, `score ${f.score}`);
    assert.match(f.message, /file count 0 is 100 % below expected/);
  });

  test('drift on a toy snapshot: its message tells growth as growth, and 0.2 MiB beyond the usual is no finding', () => {
    const KiB = 1024;
    const MiB = 1024 * KiB;
    // 14 days at 4.93 KiB, an import to 2.01 MiB (a finding of its own), then growth.
    const base = Array.from({ length: 14 }, () => ({ files: 6, bytesTotal: 5050 }));
    const slow = [
      ...base,
      { files: 6, bytesTotal: 2.01 * MiB },
      ...Array.from({ length: 14 }, (_, i) => ({ files: 6, bytesTotal: 2.01 * MiB * (1 + 0.01 * (i + 1)) })),
    ];
    assert.deepEqual(
      evaluateHistory(toy(slow)).flatMap((e) => e.findings.filter((f) => f.metric === 'drift').map((f) => f.message)),
      [],
      'a few hundred KiB more than a constant history is below minBytes',
    );
    const fast = [
      ...base,
      { files: 6, bytesTotal: 2.01 * MiB },
      ...Array.from({ length: 14 }, (_, i) => ({ files: 6, bytesTotal: 2.01 * MiB * 1.1 ** (i + 1) })),
    ];
    const drifts = evaluateHistory(toy(fast)).flatMap((e) => e.findings.filter((f) => f.metric === 'drift'));
    assert.ok(drifts.length > 0, 'growing 10 % a day for two weeks is drift');
    for (const d of drifts) {
      assert.ok(d.current > 0, 'the snapshot grew');
      assert.doesNotMatch(d.message, /shrank/);
      const m =
        /went from ([\d.]+ \w+) to ([\d.]+ \w+) over the last 14 days \(\d+ incremental backups, \+([\d.]+) %\); without (the 1 step\(s\) big enough for a finding of their own and )?the usual growth \([\d.]+ %\) it still grew ([\d.]+) %/.exec(
          d.message,
        );
      assert.ok(m, d.message);
      assert.ok(Math.abs(Number(m[3]) - d.current * 100) < 0.1, `${m[3]} % vs current ${d.current}`);
    }
    // The first drift findings have the import inside their window: the message says it was left out.
    assert.match(drifts[0]!.message, /4\.93 KiB to .*without the 1 step\(s\) big enough for a finding of their own/);
  });
});

describe('severity, normalized score and advice', () => {
  // Office-shaped histories (test/helpers/daily-history.ts): an encryption undone the next day,
  // and an import, on the same seeds the evaluation uses.
  const judged = (seed: number) => {
    const h = generateDaily({ shape: 'office', seed });
    return { h, runs: evaluateHistory(h.records) };
  };

  test('encryption is high and ransomware-class; the import beside it only warnings, scored below it', () => {
    for (let seed = 1; seed <= 5; seed++) {
      const { h, runs } = judged(seed);
      const at = (type: string) => runs[h.days.indexOf(h.events.find((e) => e.type === type)!.day)]!;
      const enc = at('encryption');
      const imp = at('import');
      assert.ok(
        enc.findings.some((f) => f.severity === 'high' && f.ransomware && f.level >= 2 && f.level < 3),
        `seed ${seed}`,
      );
      assert.ok(imp.findings.length > 0);
      assert.ok(
        imp.findings.every((f) => f.severity === 'warning' && f.level >= 1 && f.level < 2 && !f.ransomware),
        `seed ${seed}: ${JSON.stringify(imp.findings.map((f) => [f.metric, f.severity, f.level]))}`,
      );
      // One unit: the import's raw scores (counts of files, robust scores) may be far larger.
      assert.ok(Math.max(...imp.findings.map((f) => f.level)) < Math.max(...enc.findings.map((f) => f.level)));
      for (const f of [...enc.findings, ...imp.findings]) {
        assert.ok(!f.recommendation.includes('latest') && !/\{(id|prev)\}/.test(f.recommendation), f.recommendation);
      }
      assert.ok(enc.findings.some((f) => f.recommendation.includes(`s3backup anomalies ack ${enc.record.id}`)));
    }
  });

  test('the backup that undoes an attack is described as a recovery, naming the attacked backup', () => {
    let recoveries = 0;
    for (let seed = 1; seed <= 10; seed++) {
      const { h, runs } = judged(seed);
      for (const type of ['encryption', 'vanished'] as const) {
        const day = h.events.find((e) => e.type === type)!.day;
        const attacked = runs[h.days.indexOf(day)]!;
        const undo = runs[h.days.indexOf(day + 1)]!;
        for (const f of undo.findings) {
          assert.match(f.message, new RegExp(`looks like a recovery: what changed or vanished in backup ${attacked.record.id} came back`));
          assert.match(f.recommendation, new RegExp(`s3backup anomalies ack ${attacked.record.id}`));
          assert.equal(f.severity, 'warning');
          assert.equal(f.ransomware, undefined);
          recoveries++;
        }
      }
    }
    assert.ok(recoveries >= 10, `${recoveries} recovery findings`);
  });

  test('a second attack the day after is no recovery', () => {
    const h = generateDaily({ shape: 'office', seed: 3 });
    const day = h.events.find((e) => e.type === 'encryption')!.day;
    const i = h.days.indexOf(day);
    // The next day encrypts again instead of restoring: as many files replaced, not compressing.
    const again = { ...h.records[i]!, ...daily(9999), time: h.records[i + 1]!.time, id: `${h.records[i + 1]!.id}x` };
    again.sourceKey = h.records[i]!.sourceKey;
    again.host = h.records[i]!.host;
    again.sources = h.records[i]!.sources;
    const findings = detectAnomalies(again, h.records.slice(0, i + 1));
    assert.ok(findings.length > 0);
    assert.ok(findings.every((f) => !f.message.includes('recovery')));
    assert.ok(findings.some((f) => f.ransomware && f.severity === 'high'));
  });
});
