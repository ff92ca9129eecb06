import { CostSettings } from '../config/cost-settings.ts';
import { type FileValues, resolveSettings } from '../config/settings.ts';
import { isEmptyPolicy, type KeepPolicy } from '../retention/policy.ts';
import { loadPriceTable, type Prices, selectPrices } from './pricing.ts';
import type { CostOptions } from './report.ts';

/**
 * The cost settings of a configuration as analyzeCost() takes them: one reading for
 * `s3backup cost`, the schedule's cost job and the dashboard's cost panel.
 */
export interface CostRunSettings extends Required<Pick<CostOptions, 'months' | 'policySource'>>, Pick<CostOptions, 'policy'> {
  /** The CSV file each run appends a row to (cost.saveCsv, --save-csv). */
  saveCsv: string | undefined;
  /** The region the settings price for: cost.region (--price-region), else region (--region), else AWS_REGION. */
  region: string | undefined;
  /** The prices of a region in the price table (shipped, or cost.prices, read when the settings are). */
  pricesFor(region: string | undefined): Prices;
}

/**
 * The cost settings (config/cost-settings.ts): the flags given, over the config file's "cost:"
 * section, over the defaults; with the retention policy the simulation applies. The price file
 * is read now: a bad one is a usage error at start, not a failed run later.
 */
export function costSettingsOf(
  cfg: {
    cost?: Partial<FileValues<typeof CostSettings>> | undefined;
    region?: string | undefined;
    keep?: KeepPolicy | undefined;
    configFile?: string | undefined;
  },
  flags: Partial<FileValues<typeof CostSettings>> = {},
  env: NodeJS.ProcessEnv = process.env,
): CostRunSettings {
  const cost = resolveSettings(CostSettings, { flags, file: cfg.cost });
  const { table, file } = loadPriceTable(cost.prices);
  const policy = isEmptyPolicy(cfg.keep) ? undefined : cfg.keep;
  return {
    months: cost.months,
    saveCsv: cost.saveCsv,
    policy,
    policySource: policy ? `"keep" in ${cfg.configFile ?? 'the config file'}` : 'the default',
    region: cost.region ?? cfg.region ?? env.AWS_REGION,
    pricesFor: (region) => selectPrices(table, region, file),
  };
}
