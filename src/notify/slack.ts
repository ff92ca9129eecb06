import type { BackupEvent } from '../monitor/types.ts';
import { type FormatOptions, slackPayload } from './format.ts';
import { postJson } from './http.ts';

/** Slack incoming webhook: mrkdwn blocks; anomalies and failures marked high priority. */
export async function sendSlack(url: string, event: BackupEvent, o: FormatOptions, signal: AbortSignal): Promise<void> {
  await postJson(url, JSON.stringify(slackPayload(event, o)), {}, signal);
}
