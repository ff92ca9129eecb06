import type { Command } from 'commander';
import { displayName } from '../archive/names.ts';
import { type ResolvedConfig, resolveConfig } from '../config/config.ts';
import { CommonSettings } from '../config/common-settings.ts';
import type { FlagOptions } from '../config/settings.ts';
import { StoreSettings } from '../config/store-settings.ts';
import type { KeySource } from '../crypto/keys.ts';
import { passphraseSource } from './passphrase.ts';
import { RunLog } from '../log/runlog.ts';
import { locateRepository, openLocation } from '../store/open.ts';
import type { Store } from '../store/store.ts';
import { flagValues, settingOptions } from './settings.ts';

// Plumbing every command shares: common options, config + store set-up, output, exit codes.
// A command lives in its own module (src/cli/commands/NAME.ts) exporting a function that
// registers it on the program; main.ts calls it.

/** Exit codes (README, "Exit codes"); outputClosed: stdout's reader went away (SIGPIPE's 128 + 13). */
export const EXIT = { ok: 0, failed: 1, usage: 2, warnings: 3, outputClosed: 141 } as const;

/** The options withCommon() adds, by the names commander gives them (--repo: repo, --log-dir: logDir, …). */
export type CommonOpts = FlagOptions<typeof StoreSettings> &
  FlagOptions<typeof CommonSettings> & {
    config?: string;
    json?: boolean;
    progress?: boolean;
  };

let jsonMode = false;

export function isJsonMode(): boolean {
  return jsonMode;
}

// Text out shows the bytes of a name that is not UTF-8 as \xHH (displayName): written as they
// are, they would come out as U+FFFD.
export function out(s: string): void {
  process.stdout.write(`${displayName(s)}\n`);
}
export function note(s: string): void {
  if (!jsonMode) process.stderr.write(`${displayName(s)}\n`);
}
/**
 * One JSON document on stdout. A string holding a name that is not UTF-8 comes out in its
 * display form (bad bytes as \xHH, see displayName), never as a lone surrogate escape, which
 * many JSON readers turn into U+FFFD; fields that hold paths carry the exact bytes beside it
 * (`pathBase64`, see jsonName).
 */
export function emitJson(doc: unknown): void {
  process.stdout.write(`${jsonDisplayText(JSON.stringify(doc, null, 2))}\n`);
}

/**
 * JSON text with each "\udcHH" escape of an escaped byte (JSON.stringify writes lone surrogates
 * so) turned into the text "\\xHH": what displayName would have made of the string. An escape
 * whose backslash is itself escaped ("\\udc80", a name holding those characters) is left alone.
 */
export function jsonDisplayText(text: string): string {
  if (!text.includes('\\udc')) return text;
  return text.replace(/(?<!\\)((?:\\\\)*)\\udc([89a-f][0-9a-f])/g, '$1\\\\x$2');
}

export function withCommon(cmd: Command): Command {
  const store = settingOptions(StoreSettings);
  const common = settingOptions(CommonSettings);
  return cmd
    .addOption(store.repository)
    .addOption(store.endpoint)
    .addOption(store.region)
    .addOption(store.profile)
    .option('-c, --config <file>', 'config file (default: ./s3backup.yaml, then ~/.config/s3backup/s3backup.yaml)')
    .addOption(common.logDir)
    .addOption(common.passwordFile)
    .addOption(common.passwordCommand)
    .addOption(store.sse)
    .addOption(store.sseKmsKeyId)
    .addOption(store.stallTimeout)
    .option('--json', 'print one JSON document on stdout and nothing else there')
    .option('--no-progress', 'no progress bar (it only shows on a terminal anyway)');
}

/**
 * What every command starts with: the settings resolved (flags > environment > config file >
 * defaults), the repository located once from them, its store, the run log and the key source.
 */
export async function setup(opts: CommonOpts, command: string, extra: Partial<ResolvedConfig> = {}) {
  jsonMode = !!opts.json;
  const cfg = resolveConfig({
    flags: {
      ...flagValues(StoreSettings, opts),
      ...flagValues(CommonSettings, opts),
      config: opts.config,
      ...extra,
    },
  });
  const location = locateRepository(cfg.repository, cfg);
  const store = await openLocation(location);
  const log = new RunLog(cfg.logDir, command);
  // The key of an encrypted repository: read (or asked for) only when a repository needs it.
  const keys: KeySource = { ...passphraseSource(opts, cfg), kms: { region: cfg.region, profile: cfg.profile } };
  return { cfg, location, store, log, keys, showProgress: !opts.json && opts.progress !== false };
}

export async function withStore<T>(store: Store, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } finally {
    await store.close();
  }
}

/**
 * One Ctrl-C can arrive more than once: the terminal signals the whole foreground process group,
 * and the launcher (bin/s3backup.js) or npm forward what they receive too. Signals this close to
 * the first are that same one; a person asking to force it presses again later.
 */
const SAME_SIGNAL_MS = 2000;

/** Ctrl-C / SIGTERM: stop cleanly (aborting uploads, recording nothing half-done). */
export function interruptSignal(): AbortSignal {
  const ac = new AbortController();
  let firstAt: number | undefined;
  const onSig = (sig: NodeJS.Signals) => {
    if (firstAt !== undefined) {
      if (performance.now() - firstAt < SAME_SIGNAL_MS) return;
      process.exit(130);
    }
    firstAt = performance.now();
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
