import { randomUUID } from 'node:crypto';
import type { BackupEvent } from '../monitor/types.ts';
import { type FormatOptions, priority, subject, textBody } from './format.ts';

/**
 * Amazon SNS Publish. The SDK is loaded only when SNS is configured, and
 * honours AWS_ENDPOINT_URL_SNS, profiles and the usual credential chain. Retries are ours
 * (deliver.ts), so the SDK makes one attempt.
 */
export async function sendSns(
  s: { topicArn: string; region: string; profile?: string | undefined },
  event: BackupEvent,
  o: FormatOptions,
  signal: AbortSignal,
): Promise<void> {
  const { SNSClient, PublishCommand } = await import('@aws-sdk/client-sns');
  // Loaded with the SDK client, not before: it loads the SDK's HTTP handler.
  const { sdkProxyOptions } = await import('../store/sdk-proxy.ts');
  const client = new SNSClient({ region: s.region, maxAttempts: 1, ...(s.profile ? { profile: s.profile } : {}), ...sdkProxyOptions() });
  const str = (v: string) => ({ DataType: 'String', StringValue: v });
  try {
    await client.send(
      new PublishCommand({
        TopicArn: s.topicArn,
        Subject: subject(event, o),
        Message: textBody(event, o),
        // For subscription filter policies, e.g. {"priority": ["high"]} for a pager.
        MessageAttributes: {
          event: str(event.type),
          priority: str(priority(event)),
          host: str(event.host),
          ...(o.test ? { test: str('true') } : {}),
        },
        // FIFO topics need a group, and a deduplication id unless content-based deduplication is on.
        ...(s.topicArn.endsWith('.fifo') ? { MessageGroupId: 's3backup', MessageDeduplicationId: randomUUID() } : {}),
      }),
      { abortSignal: signal },
    );
  } finally {
    client.destroy();
  }
}
