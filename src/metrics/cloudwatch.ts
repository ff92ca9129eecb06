import { DeliveryError } from '../notify/deliver.ts';
import type { RunMetrics } from './metrics.ts';

/** CloudWatch allows dimension values of up to 1024 characters. */
const dim = (v: string) => (v.length > 1024 ? `${v.slice(0, 1021)}...` : v || '-');

/** The PutMetricData datums of a run (exported for tests and docs). */
export function cloudWatchDatums(m: RunMetrics) {
  const Dimensions = [
    { Name: 'Repository', Value: dim(m.repository) },
    { Name: 'Source', Value: dim(m.source) },
  ];
  const datum = (MetricName: string, Value: number | undefined, Unit: 'Seconds' | 'Bytes' | 'Count' | 'None') =>
    Value === undefined ? [] : [{ MetricName, Value, Unit, Dimensions, Timestamp: m.time }];
  return [
    ...datum('Success', m.ok ? 1 : 0, 'Count'),
    ...datum('BackupDurationSeconds', m.durationSeconds, 'Seconds'),
    ...datum('BackupSizeBytes', m.sizeBytes, 'Bytes'),
    ...datum('FilesTotal', m.files, 'Count'),
    ...datum('AnomalyScore', m.anomalyScore, 'None'),
  ];
}

/**
 * CloudWatch PutMetricData. The SDK is loaded only when a namespace is configured and honours
 * AWS_ENDPOINT_URL_CLOUDWATCH, profiles and the usual credential chain.
 */
export async function putCloudWatchMetrics(
  s: { namespace: string; region?: string | undefined; profile?: string | undefined },
  m: RunMetrics,
  signal: AbortSignal,
): Promise<void> {
  const { CloudWatchClient, PutMetricDataCommand } = await import('@aws-sdk/client-cloudwatch');
  // Loaded with the SDK client, not before: it loads the SDK's HTTP handler.
  const { sdkProxyOptions } = await import('../store/sdk-proxy.ts');
  const client = new CloudWatchClient({
    maxAttempts: 1,
    ...(s.region ? { region: s.region } : {}),
    ...(s.profile ? { profile: s.profile } : {}),
    ...sdkProxyOptions(),
  });
  try {
    await client.send(new PutMetricDataCommand({ Namespace: s.namespace, MetricData: cloudWatchDatums(m) }), { abortSignal: signal });
  } catch (e) {
    if (/region is missing/i.test((e as Error)?.message ?? '')) {
      throw new DeliveryError('no AWS region for CloudWatch: set AWS_REGION (or region: in s3backup.yaml, or --region)', false);
    }
    throw e;
  } finally {
    client.destroy();
  }
}
