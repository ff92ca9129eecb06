import * as os from 'node:os';
import * as path from 'node:path';
import type { ResolvedConfig } from '../config/config.ts';
import { MetricsPublishSettings, NOTIFY_EVENTS, NotificationSettings, type NotifyEventType } from '../config/notify-settings.ts';
import { resolveSettings } from '../config/settings.ts';
import { UsageError } from '../errors.ts';

/**
 * What notifications and metrics are on, resolved from the configuration (s3backup.yaml
 * notify/metrics sections merged with SNS_TOPIC_ARN, SLACK_WEBHOOK_URL, … in resolveConfig).
 * Checked before a backup starts, so a typo is a configuration error now and not a lost alert
 * at 02:00. Error messages never contain a URL or password: webhook URLs and SMTP URLs are
 * credentials.
 */
export interface NotifySettings {
  /** Events that are sent (default all three). */
  on: Set<NotifyEventType>;
  sns?: { topicArn: string; region: string; profile?: string | undefined };
  slack?: { url: string };
  webhook?: { url: string; secret?: string | undefined };
  email?: { smtpUrl: string; to: string[]; from: string };
  /** Per attempt, per channel. */
  timeoutMs: number;
  /** Retries of a transient failure (network error, HTTP 5xx/429, throttling). */
  retries: number;
  /** First backoff; doubles each retry. */
  backoffMs: number;
}

export interface MetricsSettings {
  cloudwatch?: { namespace: string; region?: string | undefined; profile?: string | undefined };
  prometheus?: { textfile: string };
  timeoutMs: number;
  retries: number;
  backoffMs: number;
}

export const DEFAULT_BACKOFF_MS = 500;

/** --notify-on / notify.on: "success,failure" or ["success", "failure"]. */
export function parseNotifyOn(value: string | readonly string[]): Set<NotifyEventType> {
  const items = (typeof value === 'string' ? value.split(',') : value.flatMap((v) => v.split(',')))
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  const out = new Set<NotifyEventType>();
  for (const it of items) {
    if (it === 'all') {
      for (const e of NOTIFY_EVENTS) out.add(e);
      continue;
    }
    if (it === 'none') continue;
    if (!(NOTIFY_EVENTS as readonly string[]).includes(it)) {
      throw new UsageError(`--notify-on: unknown event ${JSON.stringify(it)}`, {
        hint: `give a comma-separated list of ${NOTIFY_EVENTS.join(', ')} (or all, none)`,
      });
    }
    out.add(it as NotifyEventType);
  }
  return out;
}

const SNS_ARN = /^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;

function httpUrl(value: string, what: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new UsageError(`${what} is not a valid URL`, { hint: 'give the full https://… address (it is not shown here: it is a secret)' });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    throw new UsageError(`${what} must be an http:// or https:// URL, not ${u.protocol}`);
  }
  return value;
}

export function notifySettings(cfg: ResolvedConfig, opts: { notifyOn?: string | readonly string[] | undefined } = {}): NotifySettings {
  const n = resolveSettings(NotificationSettings, { file: cfg.notify });
  const on = opts.notifyOn !== undefined ? parseNotifyOn(opts.notifyOn) : n.on ? parseNotifyOn(n.on) : new Set(NOTIFY_EVENTS);
  const s: NotifySettings = {
    on,
    timeoutMs: Math.round(n.timeoutSeconds * 1000),
    retries: n.retries,
    backoffMs: DEFAULT_BACKOFF_MS,
  };
  if (n.snsTopicArn) {
    const m = SNS_ARN.exec(n.snsTopicArn);
    if (!m) {
      throw new UsageError(`SNS topic ARN ${JSON.stringify(n.snsTopicArn)} (SNS_TOPIC_ARN or notify.snsTopicArn) is not an SNS topic ARN`, {
        hint: 'it looks like arn:aws:sns:REGION:ACCOUNT:TOPIC (terraform output sns_topic_arn)',
      });
    }
    // SNS takes a topic's messages only in the topic's own region, whatever region the bucket is in.
    s.sns = { topicArn: n.snsTopicArn, region: m[1]!, profile: cfg.profile };
  }
  if (n.slackWebhookUrl)
    s.slack = { url: httpUrl(n.slackWebhookUrl, 'the Slack webhook URL (SLACK_WEBHOOK_URL or notify.slackWebhookUrl)') };
  if (n.webhookUrl)
    s.webhook = { url: httpUrl(n.webhookUrl, 'the webhook URL (WEBHOOK_URL or notify.webhookUrl)'), secret: n.webhookSecret };
  else if (n.webhookSecret) {
    throw new UsageError('WEBHOOK_SECRET (notify.webhookSecret) is set but WEBHOOK_URL (notify.webhookUrl) is not', {
      hint: 'set the webhook URL too, or remove the secret',
    });
  }
  const emailSet = [n.smtpUrl, n.emailTo, n.emailFrom].filter((v) => v !== undefined).length;
  if (n.smtpUrl) {
    let u: URL;
    try {
      u = new URL(n.smtpUrl);
    } catch {
      throw new UsageError('SMTP_URL (notify.smtpUrl) is not a valid URL', {
        hint: 'write it as smtp://USER:PASSWORD@HOST:587 or smtps://USER:PASSWORD@HOST:465 (it is not shown here: it may hold a password)',
      });
    }
    if (u.protocol !== 'smtp:' && u.protocol !== 'smtps:') {
      throw new UsageError(`SMTP_URL (notify.smtpUrl) must start with smtp:// or smtps://, not ${u.protocol}//`);
    }
    const to = (Array.isArray(n.emailTo) ? n.emailTo : (n.emailTo ?? '').split(',')).map((x) => x.trim()).filter(Boolean);
    if (to.length === 0)
      throw new UsageError('SMTP_URL (notify.smtpUrl) is set but EMAIL_TO (notify.emailTo) is not', {
        hint: 'set EMAIL_TO to one or more addresses, comma-separated',
      });
    for (const a of to)
      if (!/^[^@\s]+@[^@\s]+$/.test(a)) throw new UsageError(`EMAIL_TO (notify.emailTo): ${JSON.stringify(a)} is not an e-mail address`);
    const from = n.emailFrom ?? `s3backup@${os.hostname()}`;
    if (!/@/.test(from)) throw new UsageError(`EMAIL_FROM (notify.emailFrom): ${JSON.stringify(from)} is not an e-mail address`);
    s.email = { smtpUrl: n.smtpUrl, to, from };
  } else if (emailSet > 0) {
    throw new UsageError('EMAIL_TO/EMAIL_FROM (notify.emailTo/emailFrom) are set but SMTP_URL (notify.smtpUrl) is not', {
      hint: 'set SMTP_URL=smtp://USER:PASSWORD@HOST:587 to send e-mail',
    });
  }
  return s;
}

export function metricsSettings(cfg: ResolvedConfig): MetricsSettings {
  const m = resolveSettings(MetricsPublishSettings, { file: cfg.metrics });
  const n = resolveSettings(NotificationSettings, { file: cfg.notify });
  const s: MetricsSettings = {
    timeoutMs: Math.round(n.timeoutSeconds * 1000),
    retries: n.retries,
    backoffMs: DEFAULT_BACKOFF_MS,
  };
  if (m.cloudwatchNamespace) {
    if (m.cloudwatchNamespace.startsWith('AWS/') || !/^[\x21-\x7e ]{1,255}$/.test(m.cloudwatchNamespace)) {
      throw new UsageError(
        `CloudWatch namespace ${JSON.stringify(m.cloudwatchNamespace)} (CLOUDWATCH_NAMESPACE or metrics.cloudwatchNamespace) is not allowed`,
        {
          hint: 'use up to 255 ASCII characters not starting with AWS/, e.g. S3Backup',
        },
      );
    }
    s.cloudwatch = { namespace: m.cloudwatchNamespace, region: cfg.region, profile: cfg.profile };
  }
  if (m.prometheusTextfile) {
    const f = path.resolve(m.prometheusTextfile);
    if (!f.endsWith('.prom')) {
      throw new UsageError(`the Prometheus textfile ${f} (PROMETHEUS_TEXTFILE or metrics.prometheusTextfile) must end in .prom`, {
        hint: "node_exporter's textfile collector reads only *.prom files, e.g. /var/lib/node_exporter/textfile_collector/s3backup.prom",
      });
    }
    s.prometheus = { textfile: f };
  }
  return s;
}

/** Configured notification channels, by name. */
export function channelNames(s: NotifySettings): string[] {
  return [s.sns && 'sns', s.slack && 'slack', s.webhook && 'webhook', s.email && 'email'].filter((x): x is string => !!x);
}

/** The secret strings of these settings, for redaction: URLs that are credentials, passwords. */
export function secretsOf(s: NotifySettings): string[] {
  const out: string[] = [];
  const url = (v: string) => {
    out.push(v);
    try {
      const u = new URL(v);
      if (u.password) out.push(u.password, decodeURIComponent(u.password));
      if (u.pathname.length > 1) out.push(u.pathname);
      if (u.search.length > 1) out.push(u.search.slice(1), ...[...u.searchParams.values()]);
    } catch {
      // not a URL: the whole string is redacted
    }
  };
  if (s.slack) url(s.slack.url);
  if (s.webhook) {
    url(s.webhook.url);
    if (s.webhook.secret) out.push(s.webhook.secret);
  }
  if (s.email) url(s.email.smtpUrl);
  return [...new Set(out.filter((x) => x.length >= 4))].sort((a, b) => b.length - a.length);
}

/** The text with every secret replaced by "***". */
export function redact(text: string, secrets: readonly string[]): string {
  let t = text;
  for (const sec of secrets) t = t.split(sec).join('***');
  return t;
}
