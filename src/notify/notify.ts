import type { BackupEvent } from '../monitor/types.ts';
import { type DeliveryResult, deliver } from './deliver.ts';
import { sendEmail } from './email.ts';
import type { FormatOptions } from './format.ts';
import { type NotifySettings, secretsOf } from './settings.ts';
import { sendSlack } from './slack.ts';
import { sendSns } from './sns.ts';
import { sendWebhook } from './webhook.ts';

export type ChannelResult = DeliveryResult;

export interface NotifyLog {
  info(msg: string): void;
  warn(msg: string): void;
}

/**
 * Send one event to every configured channel, in parallel, each with its own timeout and
 * retries. Never throws: a channel that fails is logged (a warning, so it lands in
 * backup-errors.log) and reported in the results; the others are not held up by it.
 */
export async function sendNotifications(
  event: BackupEvent,
  s: NotifySettings,
  log: NotifyLog,
  o: FormatOptions = {},
): Promise<ChannelResult[]> {
  const jobs: [string, (signal: AbortSignal) => Promise<void>][] = [];
  if (s.sns) jobs.push(['sns', (sig) => sendSns(s.sns!, event, o, sig)]);
  if (s.slack) jobs.push(['slack', (sig) => sendSlack(s.slack!.url, event, o, sig)]);
  if (s.webhook) jobs.push(['webhook', (sig) => sendWebhook(s.webhook!, event, o, sig)]);
  if (s.email) jobs.push(['email', (sig) => sendEmail(s.email!, event, o, sig, s.timeoutMs)]);
  const opts = { timeoutMs: s.timeoutMs, retries: s.retries, backoffMs: s.backoffMs, secrets: secretsOf(s) };
  const results = await Promise.all(
    jobs.map(([name, f]) =>
      deliver(name, f, opts).catch(
        (e: unknown): ChannelResult => ({ channel: name, ok: false, attempts: 1, error: `internal error: ${String(e)}` }),
      ),
    ),
  );
  for (const r of results) {
    const what = `${o.test ? 'test ' : ''}${event.type} notification via ${r.channel}`;
    if (r.ok) log.info(`${what} sent${r.attempts > 1 ? ` (attempt ${r.attempts})` : ''}`);
    else log.warn(`${what} failed: ${r.error}`);
  }
  return results;
}
