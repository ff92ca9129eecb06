/**
 * Forecast of a time series with Holt's linear trend method (additive error, additive trend:
 * ETS(A,A,N)), fitted by least squares of the one-step-ahead errors over a grid of smoothing
 * parameters, with the ETS(A,A,N) prediction interval (Hyndman & Athanasopoulos, "Forecasting:
 * Principles and Practice", 3rd ed., section 8.7):
 *   sigma_h^2 = sigma^2 * [1 + (h-1) * (alpha^2 + alpha*beta*h + beta^2*h*(2h-1)/6)]
 * in the error-correction form l_t = l_{t-1} + b_{t-1} + alpha*e_t, b_t = b_{t-1} + beta*e_t.
 *
 * The points need not be evenly spaced: they are resampled to their median spacing by linear
 * interpolation first (the weekly cost report is weekly, but a missed run must not bend the
 * trend).
 */

export const MIN_FORECAST_POINTS = 5;

export interface ForecastPoint {
  /** ISO time. */
  time: string;
  value: number;
  low: number;
  high: number;
}

export interface Forecast {
  method: string;
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
  sse: number;
  level: number;
  trend: number;
  n: number;
}

export function holtFit(y: number[], alpha: number, beta: number): HoltFit {
  // The state after the first two points: level at y[1], trend their difference.
  let level = y[1]!;
  let trend = y[1]! - y[0]!;
  let sse = 0;
  let n = 0;
  for (let t = 2; t < y.length; t++) {
    const e = y[t]! - (level + trend);
    sse += e * e;
    n++;
    level = level + trend + alpha * e;
    trend = trend + beta * e;
  }
  return { alpha, beta, sse, level, trend, n };
}

/** Fit alpha in (0,1], beta in [0, alpha] on a grid; returns the best fit. */
export function fitHolt(y: number[]): HoltFit {
  let best: HoltFit | undefined;
  for (let a = 0.05; a <= 1.0001; a += 0.05) {
    for (let b = 0; b <= a + 1e-9; b += 0.05) {
      const f = holtFit(y, a, b);
      if (!best || f.sse < best.sse - 1e-12) best = f;
    }
  }
  return best!;
}

/** Resample (t in ms, value) to even steps of the median spacing. */
export function resample(points: { t: number; v: number }[]): { step: number; t0: number; y: number[] } {
  const p = [...points].sort((a, b) => a.t - b.t);
  const gaps = p.slice(1).map((x, i) => x.t - p[i]!.t).filter((g) => g > 0).sort((a, b) => a - b);
  const step = gaps[Math.floor(gaps.length / 2)] ?? 86_400_000;
  const t0 = p[0]!.t;
  const y: number[] = [];
  let j = 0;
  for (let t = t0; t <= p.at(-1)!.t + 1; t += step) {
    while (j < p.length - 2 && p[j + 1]!.t < t) j++;
    const a = p[j]!;
    const b = p[Math.min(j + 1, p.length - 1)]!;
    const v = b.t === a.t ? a.v : a.v + ((b.v - a.v) * (t - a.t)) / (b.t - a.t);
    y.push(v);
  }
  return { step, t0, y };
}

/**
 * Forecast `months` months ahead from the points, or explain why not (fewer than
 * MIN_FORECAST_POINTS points, or all at one time).
 */
export function forecast(points: { t: number; v: number }[], months: number, opts: { nonNegative?: boolean } = {}): Forecast | { unavailable: string } {
  const distinct = new Set(points.map((p) => p.t)).size;
  if (points.length < MIN_FORECAST_POINTS || distinct < MIN_FORECAST_POINTS) {
    return {
      unavailable: `a forecast needs at least ${MIN_FORECAST_POINTS} points of history at different times; there ${distinct === 1 ? 'is' : 'are'} ${distinct}`,
    };
  }
  const { step, t0, y } = resample(points);
  if (y.length < MIN_FORECAST_POINTS) return { unavailable: `the history resamples to only ${y.length} even steps; a forecast needs ${MIN_FORECAST_POINTS}` };
  const f = fitHolt(y);
  const dof = Math.max(1, f.n - 2);
  const sigma = Math.sqrt(f.sse / dof);
  const tLast = t0 + (y.length - 1) * step;
  const monthMs = (365.25 / 12) * 86_400_000;
  const ahead: ForecastPoint[] = [];
  for (let m = 1; m <= months; m++) {
    const t = tLast + m * monthMs;
    const h = (t - tLast) / step;
    const value = f.level + h * f.trend;
    const hv = Math.max(h, 1);
    const varH = sigma * sigma * (1 + (hv - 1) * (f.alpha ** 2 + f.alpha * f.beta * hv + (f.beta ** 2 * hv * (2 * hv - 1)) / 6));
    const half = 1.96 * Math.sqrt(varH);
    const clamp = (x: number) => (opts.nonNegative ? Math.max(0, x) : x);
    ahead.push({ time: new Date(t).toISOString(), value: clamp(value), low: clamp(value - half), high: clamp(value + half) });
  }
  return {
    method: "Holt's linear trend (ETS(A,A,N)), 95% interval",
    points: points.length,
    stepDays: step / 86_400_000,
    alpha: round(f.alpha),
    beta: round(f.beta),
    sigma,
    level: f.level,
    trendPerDay: f.trend / (step / 86_400_000),
    ahead,
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
