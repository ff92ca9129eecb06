import * as os from 'node:os';
import * as path from 'node:path';
import { type Command, Option } from 'commander';
import { UsageError } from '../../errors.ts';
import type { BackupEvent } from '../../monitor/types.ts';
import { sendNotifications } from '../../notify/notify.ts';
import { channelNames, notifySettings } from '../../notify/settings.ts';
import { newSnapshotId } from '../../repo/repository.ts';
import { type CommonOpts, EXIT, emitJson, exitWith, out, setup, withCommon } from '../common.ts';

// s3backup notify test: send a test message to every configured channel, to check settings.

/** A made-up event of the given type, marked as a test in every message. */
export function sampleEvent(
  type: BackupEvent['type'],
  o: { repository: string; sources: string[]; logFile: string; host?: string | undefined },
): BackupEvent {
  const id = newSnapshotId();
  const common = {
    time: new Date().toISOString(),
    repository: o.repository,
    host: o.host ?? os.hostname(),
    sources: o.sources.length ? o.sources.map((s) => path.resolve(s)) : ['/example/data'],
  };
  if (type === 'failure') return { type, ...common, error: 'this is a test: no backup ran', operation: 'upload', logFile: o.logFile };
  const stats = {
    ...common,
    backupId: id,
    archive: `archives/${id}.tar.zst`,
    kind: 'incremental' as const,
    files: 1234,
    bytesIn: 52_428_800,
    bytesStored: 10_485_760,
    durationMs: 42_000,
    backupCount: 7,
    warnings: 0,
  };
  if (type === 'success') return { type, ...stats };
  return {
    type,
    ...stats,
    findings: [
      {
        metric: 'bytesIn',
        method: 'zscore',
        current: 52_428_800,
        expected: 1_048_576,
        score: 4.2,
        threshold: 3,
        historySize: 10,
        message: 'this is a test: 50 MiB read, usually about 1 MiB (4.2 σ above the mean of the last 10 backups)',
        recommendation: 'nothing to do: this is a test message',
        severity: 'high',
        level: 2.52,
      },
    ],
  };
}

async function cmdNotifyTest(opts: CommonOpts & { event: BackupEvent['type'] }): Promise<void> {
  const { cfg, store, log } = await setup(opts, 'notify');
  await store.close(); // no repository access: the message is made up
  const settings = notifySettings(cfg);
  const channels = channelNames(settings);
  if (channels.length === 0) {
    throw new UsageError('no notification channel is configured', {
      hint: 'set SNS_TOPIC_ARN, SLACK_WEBHOOK_URL, WEBHOOK_URL or SMTP_URL + EMAIL_TO (or the notify: keys in s3backup.yaml); see README "Notifications and metrics"',
    });
  }
  const event = sampleEvent(opts.event, {
    repository: cfg.repository,
    sources: cfg.sources ?? [],
    logFile: log.errorFile,
    host: cfg.host?.trim() || undefined,
  });
  const results = await sendNotifications(event, settings, log, { test: true });
  const ok = results.every((r) => r.ok);
  if (opts.json) emitJson({ ok, event: event.type, channels: results });
  else {
    for (const r of results)
      out(r.ok ? `${r.channel}: sent${r.attempts > 1 ? ` (after ${r.attempts} attempts)` : ''}` : `${r.channel}: FAILED: ${r.error}`);
    out(
      ok
        ? `test ${event.type} message sent to ${results.length} channel(s)`
        : `${results.filter((r) => !r.ok).length} of ${results.length} channel(s) failed (also in ${log.errorFile})`,
    );
  }
  if (!ok) exitWith(EXIT.failed);
}

export function registerNotify(program: Command): void {
  const notify = program.command('notify').description('notification channels: check that they work');
  withCommon(
    notify
      .command('test')
      .description('send a test message to every configured notification channel')
      .addOption(new Option('--event <type>', 'which message to send').choices(['success', 'failure', 'anomaly']).default('success'))
      .addHelpText(
        'after',
        `
Channels are on when their settings are present (environment or s3backup.yaml notify:):
  SNS_TOPIC_ARN        Amazon SNS topic (AWS_ENDPOINT_URL_SNS for another endpoint)
  SLACK_WEBHOOK_URL    Slack incoming webhook
  WEBHOOK_URL          JSON POST; WEBHOOK_SECRET adds an X-S3backup-Signature HMAC header
  SMTP_URL, EMAIL_TO   e-mail, e.g. smtp://user:password@mail.example.com:587 (EMAIL_FROM optional)
The message is marked as a test and says that no backup ran. Every channel is tried, in
parallel; exit code 1 if any failed (each failure is named, and logged to backup-errors.log).
URLs and passwords are never printed.

Examples:
  s3backup notify test
  SLACK_WEBHOOK_URL=https://hooks.slack.com/services/… s3backup notify test --event anomaly
  s3backup notify test --json`,
      ),
  ).action(cmdNotifyTest);
}
