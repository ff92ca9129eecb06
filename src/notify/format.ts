import { bytes, duration } from '../format.ts';
import type { BackupEvent, RetentionHold } from '../monitor/types.ts';
import { VERSION } from '../version.ts';
import { isHighPriority } from './events.ts';

// The words of a notification, shared by every channel: a subject line, a plain-text body (SNS,
// e-mail), Slack markup and the webhook's JSON document. Their fields: success — archive name,
// size, duration, total backup count, timestamp; failure — error, failed operation, log file,
// timestamp; anomaly — the success fields plus the findings, with the priority of the strongest
// one (high, or a warning), and the retention hold the backup placed, if any.

export interface FormatOptions {
  /** A test message from `s3backup notify test`. */
  test?: boolean;
}

export function priority(event: BackupEvent): 'high' | 'normal' {
  return isHighPriority(event) ? 'high' : 'normal';
}

/** One line, printable ASCII, under 100 characters (SNS's limit for Subject). */
export function subject(event: BackupEvent, o: FormatOptions = {}): string {
  const where = `${event.host}`;
  const head = o.test ? '[TEST] ' : '';
  const s =
    event.type === 'success'
      ? `${head}s3backup: backup OK on ${where}`
      : event.type === 'failure'
        ? `${head}[HIGH PRIORITY] s3backup: backup FAILED on ${where} (${event.operation})`
        : `${head}${isHighPriority(event) ? '[HIGH PRIORITY]' : '[WARNING]'} s3backup: backup anomaly on ${where} (${event.findings.length} finding${event.findings.length === 1 ? '' : 's'})${event.retentionHold ? ', retention held' : ''}`;
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 99);
}

/** The fields of the event as label/value pairs, in the order people read them. */
export function fields(event: BackupEvent): [string, string][] {
  const common: [string, string][] = [
    ['Time', event.time],
    ['Host', event.host],
    ['Repository', event.repository],
    ['Sources', event.sources.join(', ')],
  ];
  if (event.type === 'failure') {
    return [
      ['Error', event.error],
      ['Failed operation', event.operation],
      ...(event.logFile ? ([['Log file', event.logFile]] as [string, string][]) : []),
      ...common,
    ];
  }
  return [
    event.archives ? ['Archives', `${event.archives.length} parts: ${event.archives.join(', ')}`] : ['Archive', event.archive],
    ['Backup', `${event.backupId} (${event.kind})`],
    ['Size', `${bytes(event.bytesStored)} stored (${bytes(event.bytesIn)} read), ${event.files} files`],
    ['Duration', duration(event.durationMs)],
    ['Backups in repository', String(event.backupCount)],
    ...(event.warnings ? ([['Warnings', `${event.warnings} (see backup-errors.log)`]] as [string, string][]) : []),
    ...common,
  ];
}

function headline(event: BackupEvent, o: FormatOptions): string {
  const test = o.test ? 'TEST MESSAGE from "s3backup notify test" (no backup ran). ' : '';
  if (event.type === 'success') return `${test}Backup succeeded.`;
  if (event.type === 'failure') return `${test}HIGH PRIORITY: backup FAILED during ${event.operation}. Nothing was recorded for this run.`;
  const n = `${event.findings.length} anomal${event.findings.length === 1 ? 'y' : 'ies'}`;
  const hold = event.retentionHold ? ` ${holdSentence(event.retentionHold)}` : '';
  return isHighPriority(event)
    ? `${test}HIGH PRIORITY: the backup succeeded but looks unusual (${n}).${hold}`
    : `${test}Warning: the backup succeeded but looks unusual (${n}).${hold}`;
}

/** What a retention hold means for the reader, and how it ends. */
export function holdSentence(hold: RetentionHold): string {
  return `Retention is suspended for ${hold.host} (${hold.sources.join(', ')}): no backup of it is forgotten until the finding is acknowledged with "s3backup anomalies ack ${hold.backupId}".`;
}

/** Plain text (SNS message, e-mail body). */
export function textBody(event: BackupEvent, o: FormatOptions = {}): string {
  const width = Math.max(...fields(event).map(([k]) => k.length)) + 1;
  const lines = [headline(event, o), '', ...fields(event).map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`)];
  if (event.type === 'anomaly') {
    lines.push('', 'Findings:');
    for (const f of event.findings) {
      lines.push(`- [${f.severity}] ${f.message}`, `  What to do: ${f.recommendation}`);
    }
  }
  lines.push('', `-- s3backup ${VERSION}`);
  return lines.join('\n');
}

const slackEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A Slack incoming-webhook payload: a fallback text plus blocks. */
export function slackPayload(event: BackupEvent, o: FormatOptions = {}): Record<string, unknown> {
  const icon = event.type === 'success' ? ':white_check_mark:' : event.type === 'failure' ? ':x:' : ':rotating_light:';
  const prio = isHighPriority(event) ? '*HIGH PRIORITY* ' : event.type === 'anomaly' ? '*warning* ' : '';
  const test = o.test ? '[TEST] ' : '';
  const title =
    event.type === 'success'
      ? `backup OK on ${event.host}`
      : event.type === 'failure'
        ? `backup FAILED on ${event.host} during ${event.operation}`
        : `backup anomaly on ${event.host}`;
  const text = `${icon} ${test}${prio}s3backup: ${slackEscape(title)}`;
  const blocks: Record<string, unknown>[] = [
    { type: 'section', text: { type: 'mrkdwn', text } },
    {
      type: 'section',
      fields: fields(event)
        .slice(0, 10) // Slack allows 10 fields per section
        .map(([k, v]) => ({ type: 'mrkdwn', text: `*${slackEscape(k)}*\n${slackEscape(v).slice(0, 1900)}` })),
    },
  ];
  if (event.type === 'anomaly') {
    blocks.push({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: event.findings
          .map((f) => `• *${f.severity === 'high' ? 'HIGH' : 'warning'}* ${slackEscape(f.message)}\n   _${slackEscape(f.recommendation)}_`)
          .join('\n')
          .slice(0, 2900),
      },
    });
    if (event.retentionHold)
      blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `:lock: ${slackEscape(holdSentence(event.retentionHold))}` } });
  }
  return { text, blocks };
}

/** The webhook's JSON document: the event itself plus who sent it and its priority. */
export function webhookPayload(event: BackupEvent, o: FormatOptions = {}): Record<string, unknown> {
  return {
    source: 's3backup',
    version: VERSION,
    priority: priority(event),
    ...(o.test ? { test: true } : {}),
    subject: subject(event, o),
    ...event,
  };
}
