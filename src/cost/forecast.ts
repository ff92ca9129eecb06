/**
 * Forecast of a time series with Holt's linear trend method (additive error, additive trend:
 * ETS(A,A,N)), with the ETS(A,A,N) prediction interval (Hyndman & Athanasopoulos, "Forecasting:
 * Principles and Practice", 3rd ed., sections 8.6-8.7):
 *   sigma_h^2 = sigma^2 * [1 + (h-1) * (alpha^2 + alpha*beta*h + beta^2*h*(2h-1)/6)]
 * in the error-correction form l_t = l_{t-1} + b_{t-1} + alpha*e_t, b_t = b_{t-1} + beta*e_t.
 *
 * Fitting: for each (alpha, beta) of a grid the initial level and trend are fitted by least
 * squares of the one-step errors too (the errors are linear in the initial state, so that is a
 * 2x2 solve). Starting the trend at the first difference instead (as before) let one noisy
 * first step steer the whole fit, and with beta near zero it became the trend forever; with
 * alpha = beta = 0 the fit is now exactly the least-squares line. The interval adds the
 * uncertainty of the fitted initial state (its covariance carried to horizon h) to the
 * ETS(A,A,N) variance and uses Student's t for the residual degrees of freedom: with a handful
 * of weekly rows the slope itself is the main unknown, which the ETS formula alone ignores.
 *
 * Time: rows less than MERGE_MS after the first row of their cluster count once (the newest of
 * them): several runs on one day would otherwise make the median spacing minutes. The rest is
 * resampled by linear interpolation to their median spacing on a grid that ends at the newest
 * row (this run), so a missed weekly run does not bend the trend and the newest size is never
 * dropped. Smoothing parameters are per step; the horizon is converted to steps of that spacing.
 */

export const MIN_FORECAST_POINTS = 5;
/** Rows closer than this to the first row of their cluster are one measurement (the newest wins). */
export const MERGE_MS = 12 * 3_600_000;
const DAY_MS = 86_400_000;
const MONTH_MS = (365.25 / 12) * DAY_MS;

export interface ForecastPoint {
  /** ISO time. */
  time: string;
  value: number;
  low: number;
  high: number;
}

export interface Forecast {
  method: string;
  /** Rows used: rows less than MERGE_MS apart count once. */
  points: number;
  stepDays: number;
  alpha: number;
  beta: number;
  /** Residual standard deviation (one step). */
  sigma: number;
  level: number;
  /** Trend per day. */
  trendPerDay: number;
  /** One point per month ahead, with the 95 % interval. */
  ahead: ForecastPoint[];
}

export interface HoltFit {
  alpha: number;
  beta: number;
  /** Sum of squared one-step errors. */
  sse: number;
  /** Number of one-step errors (one per point: the initial state is fitted, not taken from data). */
  n: number;
  /** Final level and trend (per step). */
  level: number;
  trend: number;
  /** Final level and trend as linear functions of the initial state (l0, b0): d/dl0 and d/db0. */
  dLevel: [number, number];
  dTrend: [number, number];
  /** Inverse of J'J for the initial state's least squares (its covariance is sigma^2 times this). */
  inv: [number, number, number];
}

/** One pass of the recursion from state (l, b); returns the errors and the final state. */
function pass(y: number[] | null, n: number, alpha: number, beta: number, l: number, b: number): { e: Float64Array; l: number; b: number } {
  const e = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    const err = (y ? y[t]! : 0) - (l + b);
    e[t] = err;
    l = l + b + alpha * err;
    b = b + beta * err;
  }
  return { e, l, b };
}

/** Holt's method with fixed alpha and beta and the least-squares initial state. */
export function holtFit(y: number[], alpha: number, beta: number): HoltFit {
  const n = y.length;
  // e(l0, b0) = e0 + l0*eL + b0*eB, and the same for the final state: the recursion is linear.
  const d = pass(y, n, alpha, beta, 0, 0);
  const L = pass(null, n, alpha, beta, 1, 0);
  const B = pass(null, n, alpha, beta, 0, 1);
  let aa = 0,
    ab = 0,
    bb = 0,
    ay = 0,
    by = 0;
  for (let t = 0; t < n; t++) {
    aa += L.e[t]! * L.e[t]!;
    ab += L.e[t]! * B.e[t]!;
    bb += B.e[t]! * B.e[t]!;
    ay += L.e[t]! * d.e[t]!;
    by += B.e[t]! * d.e[t]!;
  }
  const det = aa * bb - ab * ab;
  const inv: [number, number, number] = det > 0 ? [bb / det, -ab / det, aa / det] : [0, 0, 0];
  const l0 = -(inv[0] * ay + inv[1] * by);
  const b0 = -(inv[1] * ay + inv[2] * by);
  let sse = 0;
  for (let t = 0; t < n; t++) {
    const r = d.e[t]! + l0 * L.e[t]! + b0 * B.e[t]!;
    sse += r * r;
  }
  return {
    alpha,
    beta,
    sse,
    n,
    level: d.l + l0 * L.l + b0 * B.l,
    trend: d.b + l0 * L.b + b0 * B.b,
    dLevel: [L.l, B.l],
    dTrend: [L.b, B.b],
    inv,
  };
}

/** Smoothing parameters tried: fine near zero, where a steady trend lives. */
const GRID = [0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];

/** Fit alpha in [0,1], beta in [0, alpha] on a grid, with the least-squares initial state; returns the best fit. */
export function fitHolt(y: number[]): HoltFit {
  let best: HoltFit | undefined;
  for (const a of GRID) {
    for (const b of GRID) {
      if (b > a) break;
      const f = holtFit(y, a, b);
      // Ties (a straight line fits every alpha) go to the smoothest fit: the first one.
      if (!best || f.sse < best.sse * (1 - 1e-9) - 1e-12) best = f;
    }
  }
  return best!;
}

/** Rows within MERGE_MS of the first row of their cluster count once: the newest of them. */
export function mergeClose(points: { t: number; v: number }[]): { t: number; v: number }[] {
  const p = [...points].sort((a, b) => a.t - b.t);
  const out: { t: number; v: number }[] = [];
  let start = -Infinity;
  for (const x of p) {
    if (x.t - start < MERGE_MS && out.length) out[out.length - 1] = x;
    else {
      out.push(x);
      start = x.t;
    }
  }
  return out;
}

/** Resample (t in ms, value) to even steps of the median spacing, on a grid ending at the newest point. */
export function resample(points: { t: number; v: number }[]): { step: number; t0: number; y: number[] } {
  const p = [...points].sort((a, b) => a.t - b.t);
  const gaps = p
    .slice(1)
    .map((x, i) => x.t - p[i]!.t)
    .filter((g) => g > 0)
    .sort((a, b) => a - b);
  const step = gaps[Math.floor(gaps.length / 2)] ?? DAY_MS;
  const tEnd = p.at(-1)!.t;
  const k = Math.floor((tEnd - p[0]!.t) / step + 1e-9);
  const t0 = tEnd - k * step;
  const y: number[] = [];
  let j = 0;
  for (let i = 0; i <= k; i++) {
    const t = t0 + i * step;
    while (j < p.length - 2 && p[j + 1]!.t < t) j++;
    const a = p[j]!;
    const b = p[Math.min(j + 1, p.length - 1)]!;
    const v = b.t === a.t ? a.v : a.v + ((b.v - a.v) * (t - a.t)) / (b.t - a.t);
    y.push(v);
  }
  return { step, t0, y };
}

/** Two-sided 95 % quantile of Student's t with `dof` degrees of freedom. */
export function t975(dof: number): number {
  const table = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093,
    2.086,
  ];
  if (dof <= table.length) return table[Math.max(1, Math.floor(dof)) - 1]!;
  // Beyond 20: the usual expansion of the t quantile in 1/dof around the normal one.
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof * dof);
}

/**
 * Forecast `months` months ahead from the points, or explain why not (fewer than
 * MIN_FORECAST_POINTS points, or all at one time).
 */
export function forecast(
  points: { t: number; v: number }[],
  months: number,
  opts: { nonNegative?: boolean } = {},
): Forecast | { unavailable: string } {
  const merged = mergeClose(points);
  if (merged.length < MIN_FORECAST_POINTS) {
    return {
      unavailable: `a forecast needs at least ${MIN_FORECAST_POINTS} points of history at least 12 hours apart; there ${merged.length === 1 ? 'is' : 'are'} ${merged.length}`,
    };
  }
  const { step, t0, y } = resample(merged);
  if (y.length < MIN_FORECAST_POINTS)
    return { unavailable: `the history resamples to only ${y.length} even steps; a forecast needs ${MIN_FORECAST_POINTS}` };
  const f = fitHolt(y);
  // Degrees of freedom: the points less the two initial states and one for the chosen smoothing parameters.
  const dof = Math.max(1, f.n - 3);
  const sigma = Math.sqrt(f.sse / dof);
  const q = t975(dof);
  const tLast = t0 + (y.length - 1) * step;
  const ahead: ForecastPoint[] = [];
  for (let m = 1; m <= months; m++) {
    const t = tLast + m * MONTH_MS;
    const h = (t - tLast) / step;
    const value = f.level + h * f.trend;
    const hv = Math.max(h, 1);
    const varEts = sigma * sigma * (1 + (hv - 1) * (f.alpha ** 2 + f.alpha * f.beta * hv + (f.beta ** 2 * hv * (2 * hv - 1)) / 6));
    // The fitted initial state's share: g' (J'J)^-1 g sigma^2, g = d(forecast)/d(l0, b0).
    const g0 = f.dLevel[0] + h * f.dTrend[0];
    const g1 = f.dLevel[1] + h * f.dTrend[1];
    const varState = sigma * sigma * (g0 * g0 * f.inv[0] + 2 * g0 * g1 * f.inv[1] + g1 * g1 * f.inv[2]);
    const half = q * Math.sqrt(varEts + Math.max(0, varState));
    const clamp = (x: number) => (opts.nonNegative ? Math.max(0, x) : x);
    ahead.push({ time: new Date(t).toISOString(), value: clamp(value), low: clamp(value - half), high: clamp(value + half) });
  }
  return {
    method: "Holt's linear trend (ETS(A,A,N)), 95% interval",
    points: merged.length,
    stepDays: step / DAY_MS,
    alpha: round(f.alpha),
    beta: round(f.beta),
    sigma,
    level: f.level,
    trendPerDay: f.trend / (step / DAY_MS),
    ahead,
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
