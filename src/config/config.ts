import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { isPathLocation } from '../store/open.ts';
import { ArchiveSettings } from './archive-settings.ts';
import { CostSettings } from './cost-settings.ts';
import { fileSection, envValues, setting } from './settings.ts';
import { StoreSettings } from './store-settings.ts';
import { DetectorOptionsSchema } from '../monitor/anomaly.ts';

export const NOTIFY_EVENTS = ['success', 'failure', 'anomaly'] as const;
export type NotifyEventType = (typeof NOTIFY_EVENTS)[number];

const store = fileSection(StoreSettings).shape;
const archive = fileSection(ArchiveSettings).shape;

/**
 * Settings come from, highest first: command-line flags > environment > config file
 * (s3backup.yaml in the working directory, else in the user config dir) > defaults.
 */
export const ConfigSchema = z
  .object({
    repository: store.repository,
    endpoint: store.endpoint,
    region: store.region,
    profile: store.profile,
    logDir: setting(z.string().min(1), { env: 'S3BACKUP_LOG_DIR' }),
    /**
     * The host name backups are recorded under (groups, incrementals, retention, history,
     * notifications); default the machine's. Set it where that changes every run (containers, CI).
     */
    host: setting(z.string().trim().min(1).max(253).regex(/^[^\u0000-\u001f\u007f]+$/, 'no control characters'), { env: 'S3BACKUP_HOST' }),
    stallTimeout: store.stallTimeout,
    sources: z.array(z.string().min(1)),
    exclude: z.array(z.string().min(1)),
    excludeFile: z.string().min(1),
    tags: z.array(z.string().min(1)),
    compression: archive.compression,
    level: archive.level,
    archiveSize: archive.archiveSize,
    /** File holding the passphrase of an encrypted repository (first line). Env S3BACKUP_PASSWORD gives it directly. */
    passwordFile: setting(z.string().min(1), { env: 'S3BACKUP_PASSWORD_FILE' }),
    sse: store.sse,
    sseKmsKeyId: store.sseKmsKeyId,
    /** S3 Object Lock retention for new archives and manifests. */
    objectLock: z
      .object({
        days: z.int().min(1).max(36500),
        mode: z.enum(['GOVERNANCE', 'COMPLIANCE']),
      })
      .strict(),
    /** Notifications (README "Notifications and metrics"): a channel is on when its setting is present. */
    notify: z
      .object({
        /** Which events are sent: success, failure, anomaly (default all three). */
        on: z.array(z.enum(NOTIFY_EVENTS)),
        snsTopicArn: z.string().startsWith('arn:'),
        /** Secret (the URL is the credential): prefer the SLACK_WEBHOOK_URL environment variable. */
        slackWebhookUrl: z.url({ protocol: /^https?$/ }),
        /** Generic webhook: a JSON POST of the event. Secret if it carries a token. */
        webhookUrl: z.url({ protocol: /^https?$/ }),
        /** HMAC-SHA256 key: the body's signature goes in the X-S3backup-Signature header. */
        webhookSecret: z.string().min(1),
        /** smtp://user:password@host:587 or smtps://…:465 (nodemailer); secret. */
        smtpUrl: z.url({ protocol: /^smtps?$/ }),
        emailTo: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
        emailFrom: z.string().min(1),
        /** Per attempt, per channel (default 10). */
        timeoutSeconds: z.number().positive().max(300),
        /** Retries of a transient failure (default 2). */
        retries: z.int().min(0).max(10),
      })
      .strict()
      .partial(),
    /** Metrics written after every backup run. */
    metrics: z
      .object({
        /** CloudWatch PutMetricData is on when set (e.g. S3Backup, the Terraform module's default). */
        cloudwatchNamespace: z.string().min(1).max(255).refine((v) => !v.startsWith('AWS/'), 'must not start with AWS/'),
        /** node_exporter textfile-collector file (*.prom), rewritten after every run. */
        prometheusTextfile: z.string().min(1),
      })
      .strict()
      .partial(),
    /** Retention policy (forget): what to keep. Default keep.last 5. */
    keep: z
      .object({
        last: z.int().min(0),
        hourly: z.int().min(0),
        daily: z.int().min(0),
        weekly: z.int().min(0),
        monthly: z.int().min(0),
        yearly: z.int().min(0),
        /** Keep everything newer than this, e.g. "30d", "2w", "1y6m", "12h". */
        within: z.string().regex(/^(\d+[yMwdhm])+$/, 'a duration such as 30d, 2w, 1y6m or 12h'),
        tags: z.array(z.string().min(1)),
      })
      .strict()
      .partial(),
    /** Apply the retention policy (and prune) after each successful backup. Default true. */
    autoForget: z.boolean(),
    /** `s3backup cost`: price table, region, horizon and the CSV history (docs/cost.md). */
    cost: fileSection(CostSettings),
    /**
     * Run history and anomaly detection after each backup (docs/anomaly-detection.md):
     * enabled (default true) plus the detector's thresholds (minHistory, sigma, robustThreshold, …).
     */
    anomaly: DetectorOptionsSchema.extend({ enabled: z.boolean() }).partial(),
    /** Cron expressions for `s3backup schedule` (5 or 6 fields, UTC unless timezone is set). */
    schedule: z
      .object({
        backup: z.string().min(1),
        cost: z.string().min(1),
        timezone: z.string().min(1),
      })
      .strict()
      .partial(),
    /** `s3backup dashboard`: where it listens and when the newest backup counts as too old. */
    dashboard: z
      .object({
        host: z.string().min(1),
        port: z.int().min(0).max(65535),
        /** Newest backup older than this shows red, e.g. "26h", "2d" (default: from schedule.backup). */
        maxAge: z.string().regex(/^(\d+[yMwdh])+$/, 'a duration such as 26h, 2d or 1w'),
      })
      .strict()
      .partial(),
  })
  .strict()
  .partial();

export type FileConfig = z.infer<typeof ConfigSchema>;

/** Environment variables of the notify section: the names the AWS and Slack tooling uses where there is one. */
export const NOTIFY_ENV: readonly [string, keyof NonNullable<FileConfig['notify']>][] = [
  ['SNS_TOPIC_ARN', 'snsTopicArn'],
  ['SLACK_WEBHOOK_URL', 'slackWebhookUrl'],
  ['WEBHOOK_URL', 'webhookUrl'],
  ['WEBHOOK_SECRET', 'webhookSecret'],
  ['SMTP_URL', 'smtpUrl'],
  ['EMAIL_TO', 'emailTo'],
  ['EMAIL_FROM', 'emailFrom'],
];
export const METRICS_ENV: readonly [string, keyof NonNullable<FileConfig['metrics']>][] = [
  ['CLOUDWATCH_NAMESPACE', 'cloudwatchNamespace'],
  ['PROMETHEUS_TEXTFILE', 'prometheusTextfile'],
];

export interface ResolvedConfig extends FileConfig {
  repository: string;
  logDir: string;
  /** Which config file was read, if any. */
  configFile?: string | undefined;
  /** Where the repository setting came from, for messages. */
  repositorySource: 'flag' | 'env' | 'config' | 'default';
}

function xdg(envName: string, fallback: string[], env: NodeJS.ProcessEnv): string {
  const v = env[envName];
  const home = env.HOME && path.isAbsolute(env.HOME) ? env.HOME : os.homedir();
  return v && path.isAbsolute(v) ? v : path.join(home, ...fallback);
}

/** The embedded default repository: a local directory, so a first backup needs no AWS account. */
export function defaultRepository(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(xdg('XDG_DATA_HOME', ['.local', 'share'], env), 's3backup', 'repository');
}

export function defaultLogDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(xdg('XDG_STATE_HOME', ['.local', 'state'], env), 's3backup', 'logs');
}

export function configFileCandidates(cwd: string, env: NodeJS.ProcessEnv = process.env): string[] {
  return [path.join(cwd, 's3backup.yaml'), path.join(xdg('XDG_CONFIG_HOME', ['.config'], env), 's3backup', 's3backup.yaml')];
}

/**
 * The YAML parser, loaded on first use: most runs have no config file, and loading the library
 * costs every command ~30 ms of start-up.
 */
function parseYaml(text: string): unknown {
  const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text);
}

export function loadConfigFile(file: string): FileConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text) ?? {};
  } catch (e) {
    throw new UsageError(`config file ${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = ConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const where = issue.path.length ? issue.path.join('.') : '(top level)';
    let msg = issue.message;
    if (issue.code === 'unrecognized_keys') msg = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    throw new UsageError(`config file ${file}: ${where}: ${msg}`, {
      hint: `valid keys: ${Object.keys(ConfigSchema.shape).join(', ')} (see README "Configuration")`,
    });
  }
  return r.data;
}

export interface ConfigInputs {
  flags: Partial<FileConfig> & { config?: string | undefined };
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export function resolveConfig(inputs: ConfigInputs): ResolvedConfig {
  const env = inputs.env ?? process.env;
  const cwd = inputs.cwd ?? process.cwd();
  const explicit = inputs.flags.config ?? env.S3BACKUP_CONFIG;
  let configFile: string | undefined;
  let file: FileConfig = {};
  if (explicit) {
    configFile = path.resolve(cwd, explicit);
    file = loadConfigFile(configFile);
  } else {
    configFile = configFileCandidates(cwd, env).find((f) => fs.existsSync(f));
    if (configFile) file = loadConfigFile(configFile);
  }
  // The variables the settings declare (S3BACKUP_REPO, AWS_ENDPOINT_URL_S3, S3BACKUP_LOG_DIR, …),
  // taken as text as the config file would hold it.
  const envCfg = envValues(ConfigSchema, env) as Partial<FileConfig>;
  // BUCKET_NAME is the bucket alone, the form the deployment templates set.
  if (!envCfg.repository && env.BUCKET_NAME) envCfg.repository = `s3://${env.BUCKET_NAME}`;
  // Notification and metrics settings merge key by key (SNS_TOPIC_ARN in the environment does
  // not switch off the Slack webhook of the config file).
  const envNotify: Record<string, string | string[]> = {};
  for (const [v, k] of NOTIFY_ENV) if (env[v]) envNotify[k] = env[v];
  if (Object.keys(envNotify).length) envCfg.notify = envNotify as FileConfig['notify'];
  const envMetrics: Record<string, string> = {};
  for (const [v, k] of METRICS_ENV) if (env[v]) envMetrics[k] = env[v];
  if (Object.keys(envMetrics).length) envCfg.metrics = envMetrics;

  /** A flag was given for k (an empty list, e.g. no positional paths, is none). */
  const flagGiven = (k: keyof FileConfig): boolean => {
    const f = inputs.flags[k];
    return f !== undefined && !(Array.isArray(f) && f.length === 0);
  };
  const pick = <K extends keyof FileConfig>(k: K): FileConfig[K] => {
    const f = inputs.flags[k];
    if (k === 'notify' || k === 'metrics') {
      const merged = { ...(file[k] as object), ...(envCfg[k] as object), ...(f as object) };
      return (Object.keys(merged).length ? merged : undefined) as FileConfig[K];
    }
    if (flagGiven(k)) return f;
    return envCfg[k] ?? file[k];
  };
  const repositorySource = inputs.flags.repository ? 'flag' : envCfg.repository ? 'env' : file.repository ? 'config' : 'default';
  const resolved: ResolvedConfig = {
    ...file,
    ...Object.fromEntries(Object.keys(ConfigSchema.shape).map((k) => [k, pick(k as keyof FileConfig)])),
    repository: pick('repository') ?? defaultRepository(env),
    logDir: pick('logDir') ?? defaultLogDir(env),
    configFile,
    repositorySource,
  };
  // Relative paths in a config file are relative to that file, whatever the working directory
  // of the run (a cron job, a systemd unit); paths from flags and the environment are left to
  // the working directory.
  if (configFile) {
    const base = path.dirname(configFile);
    const rebase = (p: string) => path.resolve(base, p);
    const fromFile = (k: 'logDir' | 'sources' | 'excludeFile' | 'passwordFile') => !flagGiven(k) && envCfg[k] === undefined && file[k] !== undefined;
    if (resolved.repositorySource === 'config' && isPathLocation(resolved.repository)) resolved.repository = rebase(resolved.repository);
    if (fromFile('logDir')) resolved.logDir = rebase(resolved.logDir);
    if (fromFile('excludeFile')) resolved.excludeFile = rebase(resolved.excludeFile!);
    if (fromFile('passwordFile')) resolved.passwordFile = rebase(resolved.passwordFile!);
    if (fromFile('sources')) resolved.sources = resolved.sources!.map(rebase);
    const prom = resolved.metrics?.prometheusTextfile;
    if (prom && prom === file.metrics?.prometheusTextfile && !envCfg.metrics?.prometheusTextfile) {
      resolved.metrics = { ...resolved.metrics, prometheusTextfile: rebase(prom) };
    }
  }
  return resolved;
}
