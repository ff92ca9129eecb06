import { createHmac } from 'node:crypto';
import type { BackupEvent } from '../monitor/types.ts';
import { type FormatOptions, webhookPayload } from './format.ts';
import { postJson } from './http.ts';

export const SIGNATURE_HEADER = 'X-S3backup-Signature';
const EVENT_HEADER = 'X-S3backup-Event';

/** HMAC-SHA256 of the exact body bytes, as "sha256=<hex>" (GitHub's webhook convention). */
export function signature(body: string, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * Generic webhook: the event as JSON (webhookPayload), with the event type in a header and,
 * when a secret is set, the body's HMAC-SHA256 so that the receiver can check who sent it.
 */
export async function sendWebhook(
  w: { url: string; secret?: string | undefined },
  event: BackupEvent,
  o: FormatOptions,
  signal: AbortSignal,
): Promise<void> {
  const body = JSON.stringify(webhookPayload(event, o));
  const headers: Record<string, string> = { [EVENT_HEADER]: event.type };
  if (w.secret) headers[SIGNATURE_HEADER] = signature(body, w.secret);
  await postJson(w.url, body, headers, signal);
}
