import { UsageError } from '../../errors.ts';
import { bytes } from '../../format.ts';
import { runSubsetVerify, type SubsetSpec } from '../../verify/subset.ts';
import { type CommonOpts, EXIT, emitJson, exitWith, note, out, setup, withStore } from '../common.ts';

// s3backup verify [ID | --all] --read-data-subset 5% | n/t: read back a share of the stored data.

export interface SubsetOpts extends CommonOpts {
  deep?: boolean;
  all?: boolean;
  requestThaw?: boolean;
  tier?: string;
  days?: number;
}

export async function cmdVerifySubset(id: string | undefined, spec: SubsetSpec, opts: SubsetOpts): Promise<void> {
  if (opts.deep) {
    throw new UsageError('--read-data-subset and --deep are two depths of the same check: give one', {
      hint: '--deep reads a whole backup; --read-data-subset reads a share of every backup (or of the one named)',
    });
  }
  if (id !== undefined && opts.all) throw new UsageError('verify --all checks every backup: give no id with it');
  const { cfg, store, log, keys } = await setup(opts, 'verify');
  const result = await withStore(store, () =>
    runSubsetVerify({
      store,
      keys,
      snapshot: id,
      subset: spec,
      parallel: cfg.parallel,
      thaw: opts.requestThaw ? { days: opts.days ?? 7, tier: (opts.tier ?? 'Standard') as 'Bulk' | 'Standard' | 'Expedited' } : undefined,
    }),
  );
  const what = id === undefined ? `${result.backups} backup(s)` : `backup ${id}`;
  const summary =
    `verify --read-data-subset ${result.subset} of ${what}: ${result.framesChosen} of ${result.framesTotal} frame(s) ` +
    `(${bytes(result.bytesChosen)} of ${bytes(result.bytesTotal)} stored) in ${result.archives} archive(s); ` +
    `${result.filesChecked} file(s) (${bytes(result.bytesChecked)}) checked against their SHA-256; read ${bytes(result.bytesRead)}`;
  for (const p of result.problems) log.error(`verify --read-data-subset: ${p.where}: ${p.problem}`);
  log.info(`${summary}; ${result.ok ? 'ok' : `${result.problems.length} problem(s)`}`);
  const { cold } = result;
  if (cold.archives) {
    const msg = `${cold.archives} archive(s) in cold storage not read (${cold.frames} chosen frame(s), ${bytes(cold.bytes)})`;
    log.warn(msg);
    if (!opts.json)
      note(
        cold.thawRequested
          ? `${msg}: restore requested for ${cold.thawRequested}; run the same check again once they are readable`
          : `${msg}: add --request-thaw to have them restored for a later run`,
      );
  }
  // The chosen frames by archive are left out: a large repository has hundreds of thousands.
  if (opts.json) emitJson({ ...result, chosen: undefined });
  else {
    out(summary);
    if (result.ok) out('no problem found in what was read');
    else {
      out(`${result.problems.length} problem(s):`);
      for (const p of result.problems) out(`  ${p.where}: ${p.problem}`);
    }
  }
  if (!result.ok) exitWith(EXIT.failed);
  if (cold.archives) exitWith(EXIT.warnings);
}
