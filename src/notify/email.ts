import * as os from 'node:os';
import type { BackupEvent } from '../monitor/types.ts';
import { VERSION } from '../version.ts';
import { type FormatOptions, priority, subject, textBody } from './format.ts';

/**
 * E-mail over SMTP (nodemailer, loaded only when configured). SMTP_URL carries the server and
 * credentials: smtp://USER:PASSWORD@HOST:587 (STARTTLS when offered) or smtps://…:465.
 */
export async function sendEmail(
  e: { smtpUrl: string; to: string[]; from: string },
  event: BackupEvent,
  o: FormatOptions,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<void> {
  const nodemailer = (await import('nodemailer')).default;
  const transport = nodemailer.createTransport({
    url: e.smtpUrl,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  } as Parameters<typeof nodemailer.createTransport>[0] & object);
  const onAbort = () => transport.close();
  signal.addEventListener('abort', onAbort);
  try {
    const high = priority(event) === 'high';
    await transport.sendMail({
      from: e.from,
      to: e.to,
      subject: subject(event, o),
      text: textBody(event, o),
      priority: high ? 'high' : 'normal',
      headers: { 'X-S3backup-Event': event.type, 'X-Mailer': `s3backup/${VERSION} on ${os.hostname()}` },
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
    transport.close();
  }
}
