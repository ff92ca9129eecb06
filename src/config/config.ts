import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { UsageError } from '../errors.ts';
import { isPathLocation } from '../store/open.ts';
import { ArchiveSettings } from './archive-settings.ts';
import { CostSettings } from './cost-settings.ts';
import { BackupSettings, ObjectLockSettings } from './backup-settings.ts';
import { CommonSettings } from './common-settings.ts';
import { DashboardSettings } from './dashboard-settings.ts';
import { HookSettings } from './hook-settings.ts';
import { KeepSettings } from './keep-settings.ts';
import { MetricsPublishSettings, NotificationSettings } from './notify-settings.ts';
import { ScheduleSettings } from './schedule-settings.ts';
import { CopySettings } from './copy-settings.ts';
import { fileSection, envValues } from './settings.ts';
import { StoreSettings } from './store-settings.ts';
import { DetectorOptionsSchema } from '../monitor/anomaly.ts';

const store = fileSection(StoreSettings).shape;
const common = fileSection(CommonSettings).shape;
const backup = fileSection(BackupSettings).shape;
const archive = fileSection(ArchiveSettings).shape;

/**
 * Settings come from, highest first: command-line flags > environment > config file
 * (s3backup.yaml in the working directory, else in the user config dir) > defaults. Each is
 * declared once, in its feature's schema (config/*-settings.ts); this is the file's layout.
 */
export const ConfigSchema = z
  .object({
    repository: store.repository,
    endpoint: store.endpoint,
    region: store.region,
    profile: store.profile,
    logDir: common.logDir,
    host: backup.host,
    stallTimeout: store.stallTimeout,
    limitUpload: store.limitUpload,
    limitDownload: store.limitDownload,
    parallel: store.parallel,
    sources: z.array(z.string().min(1)),
    exclude: backup.exclude,
    excludeFile: backup.excludeFile,
    tags: backup.tags,
    compression: archive.compression,
    level: archive.level,
    archiveSize: archive.archiveSize,
    passwordFile: common.passwordFile,
    passwordCommand: common.passwordCommand,
    sse: store.sse,
    sseKmsKeyId: store.sseKmsKeyId,
    /** Both keys or neither. */
    objectLock: ObjectLockSettings.strict(),
    notify: fileSection(NotificationSettings),
    metrics: fileSection(MetricsPublishSettings),
    /** Retention policy (forget): what to keep. Default keep.last 5. */
    keep: fileSection(KeepSettings),
    /** Apply the retention policy (and prune) after each successful backup. Default true. */
    autoForget: z.boolean(),
    /** Store only what changed of a changed file (an append's tail, a large file's changed chunks). Default true. */
    extents: z.boolean(),
    /** `s3backup cost`: price table, region, horizon and the CSV history (docs/cost.md). */
    cost: fileSection(CostSettings),
    /**
     * Run history and anomaly detection after each backup (docs/anomaly-detection.md):
     * enabled (default true) plus the detector's thresholds (minHistory, sigma, robustThreshold, …).
     */
    anomaly: DetectorOptionsSchema.extend({ enabled: z.boolean() }).partial(),
    schedule: fileSection(ScheduleSettings),
    /** `s3backup copy` and the scheduler's copy job: the second repository (config/copy-settings.ts). */
    copy: CopySettings,
    /** Commands before and after each backup (config/hook-settings.ts). */
    hooks: fileSection(HookSettings),
    dashboard: fileSection(DashboardSettings),
  })
  .strict()
  .partial();

export type FileConfig = z.infer<typeof ConfigSchema>;

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
    if (issue.code === 'unrecognized_keys')
      msg = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
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
  const envNotify = envValues(NotificationSettings, env);
  if (Object.keys(envNotify).length) envCfg.notify = envNotify;
  const envMetrics = envValues(MetricsPublishSettings, env);
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
    const fromFile = (k: 'logDir' | 'sources' | 'excludeFile' | 'passwordFile') =>
      !flagGiven(k) && envCfg[k] === undefined && file[k] !== undefined;
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
