import type { Command } from 'commander';
import { UsageError } from '../../errors.ts';
import { analyzeCost, appendCsv, type CostReport, readCsvHistory, usd } from '../../cost/report.ts';
import type { Forecast } from '../../cost/forecast.ts';
import { costSettingsOf } from '../../cost/settings.ts';
import { CostSettings, forecastMonths } from '../../config/cost-settings.ts';
import type { FlagOptions } from '../../config/settings.ts';
import { bucketLocation, openLocation } from '../../store/open.ts';
import { type CommonOpts, EXIT, emitJson, exitWith, note, out, setup, withCommon, withStore } from '../common.ts';
import { bytes, fitTable, TABLE_WIDTH, table } from '../../format.ts';
import { describeGroup } from '../../repo/groups.ts';
import { flagValues, settingOptions } from '../settings.ts';

// s3backup cost: what the repository's objects cost per storage class now, and what the next
// months cost with no lifecycle rules, the bucket's rules and the recommended ones, under the
// repository's backup cadence and retention policy (src/cost/, docs/cost.md).

/** The cost settings (--months, --prices, --price-region, --save-csv) come with their flags' names. */
type CostOpts = CommonOpts &
  FlagOptions<typeof CostSettings> & {
    bucket?: boolean;
    inventory?: string;
    forecast?: number;
    history?: string;
    strict?: boolean;
  };

async function cmdCost(opts: CostOpts): Promise<void> {
  const { cfg, location, store, log, keys } = await setup(opts, 'cost');
  const cost = costSettingsOf(cfg, flagValues(CostSettings, opts));
  const csvFile = cost.saveCsv;
  const historyFile = opts.history ?? csvFile;
  if (opts.forecast !== undefined && !historyFile) {
    throw new UsageError('--forecast needs a history of earlier runs', {
      hint: 'give --save-csv FILE (each run appends a row) or --history FILE',
    });
  }

  const report = await withStore(store, async () => {
    let region = cost.region;
    if (!region)
      region = await store
        .capabilities()
        .bucket?.region()
        .catch(() => undefined);
    const prices = cost.pricesFor(region);
    const history = historyFile && opts.forecast !== undefined ? readCsvHistory(historyFile, store.location) : [];
    const showProgress = !opts.json && opts.progress !== false && process.stderr.isTTY;
    let lastShown = 0;
    return analyzeCost(store, {
      keys,
      prices,
      wholeBucket: opts.bucket ?? false,
      inventory: opts.inventory,
      openBucket: (bucket) => openLocation(bucketLocation(location, bucket)),
      months: cost.months,
      policy: cost.policy,
      policySource: cost.policySource,
      history,
      forecastMonths: opts.forecast,
      onProgress: (p) => {
        if (!showProgress) return;
        const t = performance.now();
        if (t - lastShown < 200 && p.phase !== 'simulate') return;
        lastShown = t;
        const what =
          p.phase === 'manifests'
            ? `reading manifests: ${p.objects}/${p.total}`
            : p.phase === 'simulate'
              ? 'simulating'
              : `${p.phase === 'inventory' ? 'reading inventory' : 'listing'}: ${p.objects.toLocaleString('en')} objects, ${bytes(p.bytes)}`;
        process.stderr.write(`\r\x1b[K${what}`);
      },
    }).finally(() => {
      if (showProgress) process.stderr.write('\r\x1b[K');
    });
  });

  if (csvFile) appendCsv(csvFile, report);
  log.info(
    `cost of ${report.repository}: ${report.totalObjects} objects, ${bytes(report.totalBytes)}, ${usd(report.current.monthlyCost)}/month now; ` +
      `${report.warnings.length} warning(s)${csvFile ? `; row appended to ${csvFile}` : ''}`,
  );
  for (const w of report.warnings) log.warn(`cost: ${w.message}`);
  if (opts.json) emitJson(report);
  else printReport(report, csvFile);
  if (opts.strict && report.warnings.length) exitWith(EXIT.warnings);
}

function pct(x: number): string {
  return `${x.toFixed(1)}%`;
}

function printForecast(name: string, f: Forecast | { unavailable: string }, fmt: (x: number) => string): void {
  if ('unavailable' in f) {
    out(`  ${name}: no forecast: ${f.unavailable}`);
    return;
  }
  const last = f.ahead.at(-1)!;
  out(
    `  ${name}: ${fmt(last.value)} in ${f.ahead.length} month(s) (95% interval ${fmt(last.low)} to ${fmt(last.high)}; ${f.points} points, alpha ${f.alpha}, beta ${f.beta})`,
  );
}

/** Each group's cadence and archive size, as the simulation replays them. */
function printGroups(cadence: CostReport['backups']['cadence']): void {
  const every = (d: number | undefined) => (d === undefined ? '-' : d >= 1 ? `${d.toFixed(1)} d` : `${(d * 24).toFixed(1)} h`);
  out(
    fitTable(
      ['HOST: SOURCES', 'BACKUPS', 'EVERY', 'ARCHIVE', 'PROJECTED'],
      cadence.map((c) => [describeGroup(c), String(c.backups), every(c.medianGapDays), bytes(c.medianArchiveBytes), String(c.projected)]),
      [false, true, true, true, true],
      { maxWidth: TABLE_WIDTH - 2, flex: [0], middle: (_row, column) => column === 0 },
    )
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n'),
  );
}

export function printReport(r: CostReport, csvFile?: string): void {
  const scope = r.scope === 'bucket' ? 'whole bucket of ' : '';
  const src = r.source.kind === 'inventory' ? `S3 Inventory ${r.source.location}${r.source.date ? ` of ${r.source.date}` : ''}` : 'listing';
  out(
    `cost of ${scope}${r.repository} (${src}; prices ${r.prices.version}, ${r.prices.region}${r.prices.regionFallback ? ` priced as ${r.prices.regionFallback}` : ''})`,
  );
  out('');
  out(
    table(
      ['CLASS', 'OBJECTS', 'BYTES', 'BILLED', '$/GB-MONTH', '$/MONTH'],
      [
        ...r.current.classes.map((c) => [
          c.storageClass,
          c.objects.toLocaleString('en'),
          bytes(c.bytes),
          bytes(c.billableBytes),
          String(c.price),
          usd(c.monthlyCost),
        ]),
        ['total', r.totalObjects.toLocaleString('en'), bytes(r.totalBytes), '', '', usd(r.current.monthlyCost)],
      ],
      [false, true, true, true, true, true],
    ),
  );
  const c = r.categories;
  out('');
  out(
    `archives ${bytes(c.archives.bytes)} (${c.archives.objects}), manifests ${bytes(c.manifests.bytes)} (${c.manifests.objects}), ` +
      `other ${bytes(c.other.bytes)} (${c.other.objects})${c.outside.objects ? `, outside the repository ${bytes(c.outside.bytes)} (${c.outside.objects})` : ''}`,
  );
  const b = r.backups;
  out(`backups: ${b.count}${b.count ? ` from ${b.first!.slice(0, 10)} to ${b.last!.slice(0, 10)}` : ''} in ${b.cadence.length} group(s)`);
  if (b.cadence.length) printGroups(b.cadence);
  out(`retention: ${r.retention.description} (${r.retention.source})`);
  const rl = r.current.restoreLatest;
  if (rl)
    out(`restoring the newest backup (${rl.archives} archive(s), ${bytes(rl.bytes)}): ${usd(rl.cost)} in retrieval fees and requests`);
  if (r.current.earlyDeletion.amount > 0) {
    out(
      `early-deletion charges retention will cause on today's objects: ${usd(r.current.earlyDeletion.amount)} (${r.current.earlyDeletion.objects} objects)`,
    );
  }
  out('');
  const s = r.simulation.scenarios;
  out(`next ${r.simulation.months} months (storage + requests + transitions + early deletion):`);
  const row = (label: string, x: typeof s.none) => [
    label,
    usd(x.total),
    usd(x.monthlyAverage),
    usd(x.storage),
    usd(x.requests + x.transitionFees + x.monitoring),
    usd(x.earlyDeletion),
  ];
  out(
    table(
      ['LIFECYCLE', 'TOTAL', 'PER MONTH', 'STORAGE', 'REQUESTS', 'EARLY DEL.'],
      [
        row('none', s.none),
        row(r.lifecycle.rules.length ? `bucket's rules (${r.lifecycle.rules.length})` : "bucket's rules (none)", s.current),
        row('recommended', s.recommended),
      ],
      [false, true, true, true, true, true],
    )
      .split('\n')
      .map((l) => `  ${l}`)
      .join('\n'),
  );
  out(
    `  saved against none: bucket's rules ${usd(r.savings.currentVsNone.monthly)}/month (${pct(r.savings.currentVsNone.percent)}), recommended ${usd(r.savings.recommendedVsNone.monthly)}/month (${pct(r.savings.recommendedVsNone.percent)})`,
  );
  out(`recommended: ${r.simulation.recommendation}`);
  if (r.simulation.coldAlternative) {
    out(
      `  cheaper if restores may wait hours for a thaw: ${r.simulation.coldAlternative.name} (${usd(r.simulation.coldAlternative.total)} over ${r.simulation.months} months)`,
    );
  }
  if (r.forecast) {
    out('');
    out(`forecast (${r.forecast.basis}):`);
    printForecast('stored bytes', r.forecast.bytes, bytes);
    printForecast('monthly cost', r.forecast.monthlyCost, usd);
  }
  if (r.notes.length) {
    out('');
    for (const n of r.notes) out(`note: ${n}`);
  }
  if (csvFile) note(`row appended to ${csvFile}`);
  for (const w of r.warnings) note(`warning: ${w.message}`);
}

export function registerCost(program: Command): void {
  const costOptions = settingOptions(CostSettings);
  withCommon(
    program
      .command('cost')
      .description('storage cost per class now, and lifecycle rules simulated over the backup cadence and retention')
      .option('--bucket', 'the whole bucket, not only the repository prefix')
      .option(
        '--inventory <location>',
        'read an S3 Inventory report instead of listing: s3://BUCKET/PREFIX (newest manifest.json), a manifest.json, or a .csv/.csv.gz file',
      )
      .addOption(costOptions.months)
      .addOption(costOptions.prices)
      .addOption(costOptions.region)
      .addOption(costOptions.saveCsv)
      .option(
        '--forecast <months>',
        "project stored bytes and monthly cost from the CSV history (Holt's linear trend, 95% interval)",
        (v: string) => forecastMonths(v, '--forecast'),
      )
      .option('--history <file>', 'CSV history for --forecast (default: the --save-csv file)')
      .option('--strict', 'exit 3 when the report has warnings (retention and lifecycle contradict, unknown prices…)')
      .addHelpText(
        'after',
        `
Lists the repository (or reads an S3 Inventory report), groups bytes and objects by storage
class and by kind (archives/, snapshots/ manifests, other), and prices them with the shipped
AWS price table (docs/cost.md): storage per GB-month with minimum billable sizes and
archive overhead, PUT and lifecycle-transition requests, minimum storage durations. Then it
simulates the next months of this repository's own backups (their cadence and sizes) with the
retention policy (config "keep", default keep-last 5) applied after each, under no lifecycle
rules, the bucket's rules, and the cheapest of a set of candidate rules for archives/, and warns
where retention and lifecycle contradict (e.g. archives deleted before they ever transition).
Exit code 0 with warnings printed (3 with --strict).

Examples:
  s3backup cost --repo s3://my-bucket/host1
  s3backup cost --repo s3://my-bucket/host1 --json
  s3backup cost --save-csv reports/cost_report.csv --forecast 6
  s3backup cost --repo s3://my-bucket --inventory s3://my-bucket/inventory/
  s3backup cost --repo s3://my-bucket/host1 --bucket --prices my-prices.json --price-region eu-central-1`,
      ),
  ).action(cmdCost);
}
