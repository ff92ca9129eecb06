// The anomaly detector's evaluation beyond what the test asserts (docs/anomaly-detection.md):
// the test's setting on held-out seeds, monthly fulls, a small data set, and the short daily
// histories (office- and weekend-shaped) on held-out seeds.
//   npx node scripts/anomaly-eval.ts
import { dailyMarkdown, evaluate, evaluateDaily, markdownTable } from '../test/helpers/anomaly-eval.ts';
import type { GeneratorOptions } from '../test/helpers/synthetic-history.ts';

const variants: [string, number[], (seed: number) => GeneratorOptions][] = [
  ['as in the test (seeds 1–12, fulls every 7/10 days, 20 000 files)', range(1, 12), (seed) => ({ seed, fullEvery: seed % 2 ? 7 : 10 })],
  ['held-out seeds 101–112', range(101, 112), (seed) => ({ seed, fullEvery: seed % 2 ? 7 : 10 })],
  ["a full every 30 days (s3backup's default --full-after)", range(1, 12), (seed) => ({ seed, fullEvery: 30 })],
  ['a small data set: 5 000 files, weekly fulls', range(1, 12), (seed) => ({ seed, fullEvery: 7, initialFiles: 5000 })],
];

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

for (const [name, seeds, gen] of variants) {
  const r = evaluate(seeds, gen);
  console.log(`### ${name}\n\n${markdownTable(r)}\n`);
  if (r.misses.length) console.log(`Missed: ${r.misses.map((m) => `${m.type} (seed ${m.seed}, day ${m.start})`).join(', ')}.\n`);
}

// The short daily histories of test/helpers/daily-history.ts on held-out seeds.
for (const shape of ['office', 'weekend'] as const) {
  const r = evaluateDaily(shape, range(101, 140));
  console.log(`### ${shape}-shaped histories, held-out seeds 101–140\n\n${dailyMarkdown(r)}\n`);
  if (r.misses.length) console.log(`Missed: ${r.misses.map((m) => `${m.type} (seed ${m.seed}, day ${m.day})`).join(', ')}.\n`);
}
