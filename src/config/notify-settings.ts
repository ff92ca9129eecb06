import { z } from 'zod';
import { setting } from './settings.ts';

export const NOTIFY_EVENTS = ['success', 'failure', 'anomaly'] as const;
export type NotifyEventType = (typeof NOTIFY_EVENTS)[number];

/**
 * Notifications after each backup run (README "Notifications and metrics"): a channel is on when
 * its setting is present. The variables merge key by key with the config file's "notify:".
 * notify/settings.ts checks the values as a whole (an ARN's form, e-mail needing SMTP_URL).
 */
export const NotificationSettings = z.object({
  /** Which events are sent: success, failure, anomaly (default all three). */
  on: setting(z.array(z.enum(NOTIFY_EVENTS)), {
    flag: '--notify-on <events>',
    help: 'send notifications for these events: success,failure,anomaly (default all three; "none" for none)',
    repeatable: true,
  }).optional(),
  snsTopicArn: setting(z.string().startsWith('arn:'), { env: 'SNS_TOPIC_ARN' }).optional(),
  /** Secret (the URL is the credential): prefer the SLACK_WEBHOOK_URL environment variable. */
  slackWebhookUrl: setting(z.url({ protocol: /^https?$/ }), { env: 'SLACK_WEBHOOK_URL' }).optional(),
  /** Generic webhook: a JSON POST of the event. Secret if it carries a token. */
  webhookUrl: setting(z.url({ protocol: /^https?$/ }), { env: 'WEBHOOK_URL' }).optional(),
  /** HMAC-SHA256 key: the body's signature goes in the X-S3backup-Signature header. */
  webhookSecret: setting(z.string().min(1), { env: 'WEBHOOK_SECRET' }).optional(),
  /** smtp://user:password@host:587 or smtps://…:465 (nodemailer); secret. */
  smtpUrl: setting(z.url({ protocol: /^smtps?$/ }), { env: 'SMTP_URL' }).optional(),
  emailTo: setting(z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]), { env: 'EMAIL_TO' }).optional(),
  emailFrom: setting(z.string().min(1), { env: 'EMAIL_FROM' }).optional(),
  /** Per attempt, per channel; metrics too. */
  timeoutSeconds: z.number().positive().max(300).default(10),
  /** Retries of a transient failure; metrics too. */
  retries: z.int().min(0).max(10).default(2),
});

/** Metrics written after every backup run; the variables merge key by key with "metrics:". */
export const MetricsPublishSettings = z.object({
  /** CloudWatch PutMetricData is on when set (e.g. S3Backup, the Terraform module's default). */
  cloudwatchNamespace: setting(
    z
      .string()
      .min(1)
      .max(255)
      .refine((v) => !v.startsWith('AWS/'), 'must not start with AWS/'),
    { env: 'CLOUDWATCH_NAMESPACE' },
  ).optional(),
  /** node_exporter textfile-collector file (*.prom), rewritten after every run. */
  prometheusTextfile: setting(z.string().min(1), { env: 'PROMETHEUS_TEXTFILE' }).optional(),
});
