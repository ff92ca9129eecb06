import type { Command } from 'commander';
import { acknowledgeHold, activeHolds, readHolds } from '../../monitor/holds.ts';
import type { RetentionHold } from '../../monitor/types.ts';
import { TABLE_WIDTH, truncateMiddle } from '../../format.ts';
import { describeGroup } from '../../repo/groups.ts';
import { Repository } from '../../repo/repository.ts';
import { type CommonOpts, emitJson, note, out, setup, withCommon, withStore } from '../common.ts';

// Anomaly holds in the CLI (docs/anomaly-detection.md "Anomaly hold"): `s3backup anomalies ack
// ID`, and the lines `list`, `forget` and `anomalies` print about the holds that are open.

/** The open holds of an opened repository; an unreadable hold object is a warning on stderr. */
export async function openHolds(repo: Repository): Promise<RetentionHold[]> {
  return activeHolds(await readHolds(repo.store, repo.historyCrypto(), (m) => note(`warning: ${m}`)));
}

/**
 * Two lines per open hold, each within 120 columns (a long group is cut in its middle): whose
 * retention is held and since which backup, then how it ends.
 */
export function holdLines(holds: readonly RetentionHold[]): string[] {
  return holds.flatMap((h) => {
    const since = ` since backup ${h.backupId}:`;
    const group = truncateMiddle(describeGroup(h), TABLE_WIDTH - 'RETENTION HELD for '.length - since.length);
    return [`RETENTION HELD for ${group}${since}`, `  no backup of it is forgotten until "s3backup anomalies ack ${h.backupId}"`];
  });
}

/** The JSON form of a hold (list --json, forget --json, anomalies --json). */
export function holdJson(h: RetentionHold) {
  return { backupId: h.backupId, time: h.time, host: h.host, sources: h.sources, reasons: h.reasons };
}

async function cmdAck(ref: string, _own: CommonOpts, command: Command): Promise<void> {
  // The repository flags may come before or after "ack": those after it may be taken by
  // "anomalies" itself, which has the same options.
  const opts: CommonOpts = command.optsWithGlobals();
  const { store, keys, log } = await setup(opts, 'anomalies ack');
  const { hold, wasOpen, stillHeld } = await withStore(store, async () => {
    const repo = await Repository.open(store, keys);
    const r = await acknowledgeHold(store, ref, repo.historyCrypto(), (m) => note(`warning: ${m}`));
    const others = (await openHolds(repo)).filter((h) => h.sourceKey === r.hold.sourceKey && h.backupId !== r.hold.backupId);
    return { ...r, stillHeld: others };
  });
  if (wasOpen) log.info(`anomaly hold of backup ${hold.backupId} acknowledged (${hold.host}: ${hold.sources.join(', ')})`);
  if (opts.json) {
    emitJson({ ok: true, repository: store.location, acknowledged: holdJson(hold), wasOpen, stillHeldBy: stillHeld.map(holdJson) });
    return;
  }
  out(
    wasOpen
      ? `acknowledged the anomaly of backup ${hold.backupId} (${hold.host}: ${hold.sources.join(', ')})`
      : `the anomaly of backup ${hold.backupId} was already acknowledged`,
  );
  if (stillHeld.length) for (const l of holdLines(stillHeld)) out(l);
  else out('retention of this host and sources runs again from the next backup or forget');
}

/** `s3backup anomalies ack ID`: lift the retention hold a backup's findings placed. */
export function registerAnomalyAck(anomalies: Command): void {
  withCommon(
    anomalies
      .command('ack')
      .description('acknowledge the anomaly of a backup: lift the retention hold its ransomware-class findings placed')
      .argument('<id>', 'the id of the backup that placed the hold (or a unique start of it)')
      .addHelpText(
        'after',
        `
A backup with a ransomware-class finding (change ratio, compression collapse, a known
ransomware extension, mass deletion) suspends retention for its host and sources: neither
the retention after each backup nor "s3backup forget" (without --force) removes any of their
backups until the finding is acknowledged here. Look first (s3backup anomalies ID, s3backup
ls ID), restore if needed, then acknowledge. The hold and its acknowledgement stay in the
repository under history/holds/.

Examples:
  s3backup anomalies ack 20261126T101500.123Z-1a2b3c4d
  s3backup anomalies ack 20261126T1015 --json`,
      ),
  ).action(cmdAck);
}
