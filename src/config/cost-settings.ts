import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { setting } from './settings.ts';

/** A flag's whole number from min to max (digits only), else a usage error naming the flag. */
const wholeMonths =
  (min: number, max: number) =>
  (v: string, flag: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max)
      throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, not ${JSON.stringify(v)}`);
    return n;
  };

/**
 * `s3backup cost` (and the schedule's cost job, and the dashboard's cost panel): price table,
 * region, horizon and the CSV history (docs/cost.md). In the config file under "cost:".
 */
export const CostSettings = z.object({
  /** Months the lifecycle simulation covers (at least 12). */
  months: setting(z.int().min(12).max(120), {
    flag: '--months <n>',
    help: 'months to simulate (12 to 120; default 12, config cost.months)',
    parse: wholeMonths(12, 120),
  }).default(12),
  /** JSON price table overriding the shipped one (same shape; docs/cost.md). */
  prices: setting(z.string().min(1), {
    flag: '--prices <file>',
    help: 'JSON price table overriding the shipped one (config cost.prices; docs/cost.md)',
  }).optional(),
  /** Region whose prices apply (default: region, AWS_REGION, the bucket's). */
  region: setting(z.string().min(1), {
    flag: '--price-region <region>',
    help: "region whose prices apply (default: --region, AWS_REGION, the bucket client's)",
  }).optional(),
  /** CSV file each run appends a row to (also what the forecast reads). */
  saveCsv: setting(z.string().min(1), {
    flag: '--save-csv <file>',
    help: 'append one row (date, bytes and cost per class, total, savings) to this CSV (config cost.saveCsv)',
  }).optional(),
});

/** The --forecast flag's parser (months ahead, 1 to 120): the same rule as --months. */
export const forecastMonths = wholeMonths(1, 120);
