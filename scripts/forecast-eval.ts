// The cost forecast's accuracy on linear growth with noise (docs/cost.md, "CSV history and forecast"):
// 400 synthetic histories per case (19 MiB today, 4 MiB a week, uniform-ish Gaussian noise), the
// 6-month forecast against the line, and how often the line lies inside the 95 % interval.
//   npx node scripts/forecast-eval.ts
import { forecast } from '../src/cost/forecast.ts';

const MiB = 2 ** 20;
const DAY = 86_400_000;
let seed = 1;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const gauss = () => {
  let u = 0;
  while (u === 0) u = rnd();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
};
const now = Date.UTC(2026, 10, 26, 12);
const perDay = (4 * MiB) / 7;

function trial(stepDays: number, n: number, noise: number): string {
  const errs: number[] = [];
  const widths: number[] = [];
  let cover = 0;
  const runs = 400;
  for (let k = 0; k < runs; k++) {
    const pts = Array.from({ length: n }, (_, i) => {
      const t = now - (n - 1 - i) * stepDays * DAY;
      return { t, v: 19 * MiB + (perDay * (t - now)) / DAY + noise * gauss() };
    });
    const f = forecast(pts, 6);
    if ('unavailable' in f) throw new Error(f.unavailable);
    const p = f.ahead[5]!;
    const truth = 19 * MiB + (perDay * (Date.parse(p.time) - now)) / DAY;
    const growth = truth - 19 * MiB;
    errs.push(Math.abs(p.value - truth) / growth);
    widths.push((p.high - p.low) / growth);
    if (p.low <= truth && truth <= p.high) cover++;
  }
  errs.sort((a, b) => a - b);
  widths.sort((a, b) => a - b);
  const pc = (x: number) => `${(100 * x).toFixed(1)} %`;
  return `| ${stepDays === 1 ? 'daily' : stepDays === 7 ? 'weekly' : 'monthly'} | ${n} | ${(noise / MiB).toFixed(1)} MiB | ${pc(errs[runs >> 1]!)} | ${pc(errs[Math.floor(runs * 0.9)]!)} | ${pc(cover / runs)} | ${pc(widths[runs >> 1]!)} |`;
}

console.log(
  "\n6-month forecast of linear growth (19 MiB today, 4 MiB a week), 400 histories per row; errors and interval widths relative to the 6 months' growth:\n",
);
console.log('| Rows | Count | Noise (sd) | Median error | 90th pct error | Line inside 95 % interval | Median width |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const [step, n] of [
  [7, 5],
  [7, 8],
  [7, 26],
  [1, 14],
  [1, 60],
  [365.25 / 12, 6],
  [365.25 / 12, 12],
] as const) {
  for (const noise of [0.5 * MiB, 2 * MiB]) console.log(trial(step, n, noise));
}
