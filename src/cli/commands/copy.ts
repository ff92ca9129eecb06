import type { Command } from 'commander';
import { copyBackups, type CopyResult } from '../../backup/copy.ts';
import { UsageError } from '../../errors.ts';
import { bytes } from '../../format.ts';
import { Repository } from '../../repo/repository.ts';
import { locateRepository, openLocation, type RepositoryLocation } from '../../store/open.ts';
import { type CommonOpts, emitJson, interruptSignal, note, out, setup, withCommon, withStore } from '../common.ts';
import { passwordCommand, promptHidden, readPasswordFile } from '../passphrase.ts';

// s3backup copy [ID…|--all] --to REPO2: backups the second repository does not have yet, with
// their archives, entry segments and run records, re-sealed for its keys.

type CopyOpts = CommonOpts & {
  to?: string;
  toEndpoint?: string;
  toRegion?: string;
  toProfile?: string;
  all?: boolean;
  dryRun?: boolean;
  toPasswordFile?: string;
  toPasswordCommand?: string;
};

/** The destination's passphrase: its own flags, else copy.passwordFile, else a prompt; never the source's. */
function destinationKeys(opts: CopyOpts, configured: string | undefined) {
  if (opts.toPasswordFile && opts.toPasswordCommand)
    throw new UsageError('--to-password-file and --to-password-command both give the passphrase of --to: give one of them');
  if (opts.toPasswordFile) return { passphrase: readPasswordFile(opts.toPasswordFile, '--to-password-file') };
  if (opts.toPasswordCommand) return { fetchPassphrase: passwordCommand(opts.toPasswordCommand, '--to-password-command') };
  if (configured) return { passphrase: readPasswordFile(configured, 'copy.passwordFile') };
  if (process.stdin.isTTY) return { prompt: () => promptHidden('passphrase for the repository given by --to: ') };
  return {};
}

async function cmdCopy(ids: string[], opts: CopyOpts): Promise<void> {
  if (opts.all && ids.length > 0) throw new UsageError('give backup ids or --all, not both');
  if (!opts.all && ids.length === 0) throw new UsageError('name the backups to copy (ids, or "latest"), or give --all');
  const { cfg, store, keys } = await setup(opts, 'copy');
  const toRepo = opts.to ?? cfg.copy?.to;
  if (!toRepo) {
    await store.close();
    throw new UsageError('copy needs --to REPO2 (or copy.to in the configuration), the repository to copy into');
  }
  const toStore = await openLocation(
    destination(toRepo, cfg, { endpoint: opts.toEndpoint, region: opts.toRegion, profile: opts.toProfile }),
  );
  const r = await withStore(store, () =>
    withStore(toStore, async () => {
      const from = await Repository.open(store, keys);
      const to = await Repository.open(toStore, { ...destinationKeys(opts, cfg.copy?.passwordFile), kms: keys.kms });
      return copyBackups({
        from,
        to,
        ids: opts.all ? undefined : ids,
        dryRun: opts.dryRun,
        signal: interruptSignal(),
        onProgress: opts.json || opts.progress === false ? undefined : (p) => note(`copying ${p.id} (${p.index + 1} of ${p.total})…`),
      });
    }),
  );
  if (opts.json) emitJson(r);
  else printCopy(r);
}

/**
 * Where the copies go: REPO2 with the S3 settings of --repo, but for the endpoint, region and
 * credentials profile given for it (flags, else copy.* in the configuration): another provider.
 */
export function destination(
  to: string,
  cfg: Awaited<ReturnType<typeof setup>>['cfg'],
  flags: { endpoint?: string | undefined; region?: string | undefined; profile?: string | undefined },
): RepositoryLocation {
  return locateRepository(to, {
    ...cfg,
    endpoint: flags.endpoint ?? cfg.copy?.endpoint ?? cfg.endpoint,
    region: flags.region ?? cfg.copy?.region ?? cfg.region,
    profile: flags.profile ?? cfg.copy?.profile ?? cfg.profile,
  });
}

function printCopy(r: CopyResult): void {
  const verb = r.dryRun ? 'would copy' : 'copied';
  out(`${verb} ${r.copied.length} backup(s) from ${r.from} to ${r.to}${r.copied.length ? `: ${r.copied.join(', ')}` : ''}`);
  if (r.present.length) out(`${r.present.length} backup(s) already in ${r.to}: ${r.present.join(', ')}`);
  if (!r.dryRun && r.copied.length) {
    out(
      `archives: ${r.archivesCopied} sent (${bytes(r.bytesWritten)}), ${r.archivesPresent} already there; ${bytes(r.segmentBytesWritten)} of entry segments, ${r.runRecords} run record(s)`,
    );
  }
}

export function registerCopy(program: Command): void {
  withCommon(
    program
      .command('copy')
      .description('copy backups into a second repository (with their archives and run records), re-encrypting for its keys')
      .argument('[ids...]', 'backup ids, unique parts of ids, or "latest"')
      .option('--to <repo>', 'the repository to copy into (s3://BUCKET/PREFIX or a directory); it must exist ("s3backup init")')
      .option('--all', 'copy every backup the destination does not have yet')
      .option('-n, --dry-run', 'say which backups would be copied, copy nothing')
      .option('--to-password-file <file>', 'file whose first line is the passphrase of --to (when it is encrypted)')
      .option('--to-password-command <cmd>', 'shell command printing the passphrase of --to (when it is encrypted)')
      .option('--to-endpoint <url>', 'S3 endpoint of --to, when it is not that of --repo (another provider)')
      .option('--to-region <region>', 'S3 region of --to, when it is not that of --repo')
      .option('--to-profile <name>', 'AWS credentials profile for --to, when its keys are not those of --repo')
      .addHelpText(
        'after',
        `
A backup is copied when the destination has no backup of its id: its archives (an archive
several backups list is sent once), its entry segments and its run record, then its manifest,
last and create-only, so nothing is listed there until it is whole. Archives are streamed frame
by frame, opened with the source's key and sealed with the destination's (plain to encrypted,
encrypted to plain, or two encrypted repositories with different keys). A copy that was stopped
is resumed by running it again: archives and segments already stored are not sent again.
The two repositories keep their own retention: forget on one does not touch the other.

The S3 settings of --to are those of --repo, except --to-endpoint, --to-region and --to-profile
(or copy.endpoint, copy.region, copy.profile in the configuration) for another provider.

Examples:
  s3backup copy --all --to s3://offsite-bucket/backups --to-password-file ~/.offsite-pass
  s3backup copy --all --to s3://offsite/backups --to-endpoint https://s3.eu-central-003.backblazeb2.com --to-profile b2
  s3backup copy latest --to /mnt/usb/backups --dry-run`,
      ),
  ).action(cmdCopy);
}
