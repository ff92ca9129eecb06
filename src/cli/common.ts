import { Option, type Command } from 'commander';
import { type ResolvedConfig, resolveConfig } from '../config/config.ts';
import type { KeySource } from '../crypto/keys.ts';
import { passphraseSource } from './passphrase.ts';
import { UsageError } from '../errors.ts';
import { RunLog } from '../log/runlog.ts';
import { openStore, storeOptionsOf } from '../store/open.ts';
import type { Store } from '../store/store.ts';

// Plumbing every command shares: common options, config + store set-up, output, exit codes.
// A command lives in its own module (src/cli/commands/NAME.ts) exporting a function that
// registers it on the program; main.ts calls it.

/** Option parser: a whole number from min to max, else a usage error naming the flag. */
export const wholeNumberIn = (flag: string, min: number, max: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be a whole number from ${min} to ${max}, not ${v}`);
  return n;
};

/** Exit codes (README, "Exit codes"); outputClosed: stdout's reader went away (SIGPIPE's 128 + 13). */
export const EXIT = { ok: 0, failed: 1, usage: 2, warnings: 3, outputClosed: 141 } as const;

export interface CommonOpts {
  repo?: string;
  endpoint?: string;
  region?: string;
  profile?: string;
  config?: string;
  logDir?: string;
  json?: boolean;
  progress?: boolean;
  passwordFile?: string;
  sse?: string;
  sseKmsKeyId?: string;
  stallTimeout?: string;
}

let jsonMode = false;

export function isJsonMode(): boolean {
  return jsonMode;
}

export function out(s: string): void {
  process.stdout.write(`${s}\n`);
}
export function note(s: string): void {
  if (!jsonMode) process.stderr.write(`${s}\n`);
}
export function emitJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

export function withCommon(cmd: Command): Command {
  return cmd
    .option('-r, --repo <url>', 'repository: s3://bucket/prefix, file:///path or a directory (env S3BACKUP_REPO, or BUCKET_NAME for s3://$BUCKET_NAME)')
    .option('--endpoint <url>', 'S3-compatible endpoint, e.g. http://127.0.0.1:7480 (env AWS_ENDPOINT_URL_S3)')
    .option('--region <name>', 'AWS region (env AWS_REGION)')
    .option('--profile <name>', 'AWS profile from ~/.aws/config (env AWS_PROFILE)')
    .option('-c, --config <file>', 'config file (default: ./s3backup.yaml, then ~/.config/s3backup/s3backup.yaml)')
    .option('--log-dir <dir>', 'where backup.log and backup-errors.log go (env S3BACKUP_LOG_DIR)')
    .option('--password-file <file>', 'passphrase of an encrypted repository, first line of FILE (env S3BACKUP_PASSWORD gives it directly; else asked on a terminal)')
    .addOption(new Option('--sse <mode>', 'S3 server-side encryption on every upload').choices(['AES256', 'aws:kms']))
    .option('--sse-kms-key-id <id>', 'KMS key for --sse aws:kms (default: the AWS managed key)')
    .option('--stall-timeout <duration>', 'S3: give up after this long with nothing sent or received while waiting on the server, retries and cleanup included (default 5min; env S3BACKUP_STALL_TIMEOUT)')
    .option('--json', 'print one JSON document on stdout and nothing else there')
    .option('--no-progress', 'no progress bar (it only shows on a terminal anyway)');
}

export async function setup(opts: CommonOpts, command: string, extra: Partial<ResolvedConfig> = {}) {
  jsonMode = !!opts.json;
  const cfg = resolveConfig({
    flags: {
      repository: opts.repo,
      endpoint: opts.endpoint,
      region: opts.region,
      profile: opts.profile,
      logDir: opts.logDir,
      config: opts.config,
      passwordFile: opts.passwordFile,
      sse: opts.sse as ResolvedConfig['sse'],
      sseKmsKeyId: opts.sseKmsKeyId,
      stallTimeout: opts.stallTimeout,
      ...extra,
    },
  });
  if (cfg.sseKmsKeyId && cfg.sse !== 'aws:kms') {
    throw new UsageError('--sse-kms-key-id needs --sse aws:kms', { hint: 'add --sse aws:kms (or sse: aws:kms in s3backup.yaml)' });
  }
  const store = await openStore(cfg.repository, storeOptionsOf(cfg));
  const log = new RunLog(cfg.logDir, command);
  // The key of an encrypted repository: read (or asked for) only when a repository needs it.
  const keys: KeySource = { ...passphraseSource(opts.passwordFile, cfg), kms: { region: cfg.region, profile: cfg.profile } };
  return { cfg, store, log, keys, showProgress: !opts.json && opts.progress !== false };
}

export async function withStore<T>(store: Store, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } finally {
    await store.close();
  }
}

/** Ctrl-C / SIGTERM: stop cleanly (aborting uploads, recording nothing half-done). */
export function interruptSignal(): AbortSignal {
  const ac = new AbortController();
  let count = 0;
  const onSig = (sig: NodeJS.Signals) => {
    count++;
    if (count > 1) process.exit(130);
    note(`\ns3backup: ${sig} received, stopping (again to force)…`);
    ac.abort();
  };
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);
  return ac.signal;
}

export function exitWith(code: number): never {
  process.exitCode = code;
  throw new ExitNow(code);
}
export class ExitNow extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`exit ${code}`);
    this.code = code;
  }
}

