import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, type Option } from 'commander';
import { displayName } from '../archive/names.ts';
import { type ResolvedConfig, resolveConfig } from '../config/config.ts';
import { CommonSettings } from '../config/common-settings.ts';
import type { FlagOptions } from '../config/settings.ts';
import { UsageError } from '../errors.ts';
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
    .addOption(store.limitUpload)
    .addOption(store.limitDownload)
    .addOption(store.parallel)
    .option('--json', 'print one JSON document on stdout and nothing else there')
    .option('--no-progress', 'no progress bar (it only shows on a terminal anyway)');
}

/** The options withCommon() adds, by every name they can be written with: whether a value follows. */
function commonOptionArity(): Map<string, boolean> {
  const arity = new Map<string, boolean>();
  for (const o of withCommon(new Command('common')).options) {
    for (const name of [o.long, o.short]) if (name) arity.set(name, o.required || o.optional);
  }
  return arity;
}

/**
 * `s3backup --repo R list` read as `s3backup list --repo R`: the options every command takes may
 * come before the command too, as with restic, git or the aws CLI. They move to the end of the
 * command's arguments (before a `--`), where the command parses them as its own. Other options
 * before the command (--help, --version, a typo) stay where they are, for commander to answer.
 */
export function globalFlagsAfterCommand(argv: readonly string[]): string[] {
  const arity = commonOptionArity();
  const moved: string[] = [];
  const kept: string[] = [];
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-') && argv[i] !== '--') {
    const arg = argv[i]!;
    // --repo=R, -rR: the value is in the same word.
    const attached = arg.startsWith('--') ? arg.includes('=') : arg.length > 2;
    const takesValue = arity.get(arg.startsWith('--') ? arg.split('=')[0]! : arg.slice(0, 2));
    const words = takesValue && !attached ? 2 : 1;
    (takesValue === undefined ? kept : moved).push(...argv.slice(i, i + words));
    i += words;
  }
  if (moved.length === 0) return [...argv];
  if (i >= argv.length || argv[i] === '--') {
    if (kept.length) return [...argv];
    throw new UsageError(`${moved.join(' ')} needs a command after it`, {
      hint: 'e.g. s3backup --repo s3://bucket/team list; s3backup --help lists the commands',
    });
  }
  const rest = argv.slice(i);
  const end = rest.includes('--') ? rest.indexOf('--') : rest.length;
  return [...kept, ...rest.slice(0, end), ...moved, ...rest.slice(end)];
}

/**
 * A mistyped option is named even when a required one is missing too: `restore X --tagret D`
 * says "unknown option '--tagret' (Did you mean --target?)", not only that --target is missing.
 * Commander checks required options before unknown ones, so required options are checked here
 * instead, just before the command's action (after commander's unknown-option check).
 */
export function checkRequiredOptionsLast(program: Command): void {
  const required = new Map<Command, Option[]>();
  const visit = (cmd: Command) => {
    const options = cmd.options.filter((o) => o.mandatory);
    for (const o of options) o.mandatory = false;
    if (options.length) required.set(cmd, options);
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
  program.hook('preAction', (_program, action) => {
    for (const o of required.get(action) ?? []) {
      if (action.getOptionValue(o.attributeName()) === undefined) {
        action.error(`error: required option '${o.flags}' not specified`, { code: 'commander.missingMandatoryOptionValue' });
      }
    }
  });
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
  if (location.kind === 'local') checkLocalRepositoryPath(location.path, cfg.repositorySource);
  const store = await openLocation(location);
  const log = new RunLog(cfg.logDir, command);
  // The key of an encrypted repository: read (or asked for) only when a repository needs it.
  const keys: KeySource = { ...passphraseSource(opts, cfg), kms: { region: cfg.region, profile: cfg.profile } };
  return { cfg, location, store, log, keys, showProgress: !opts.json && opts.progress !== false };
}

const REPOSITORY_SOURCE_NAMES: Record<ResolvedConfig['repositorySource'], string> = {
  flag: '--repo',
  env: 'S3BACKUP_REPO',
  config: '"repository" in the config file',
  default: 'the local default repository',
};

/**
 * A local repository is a directory, or a path where one can be made: a regular file there (or
 * on the way there) is a mistyped --repo, said before any command reads or writes under it.
 */
function checkLocalRepositoryPath(repoPath: string, source: ResolvedConfig['repositorySource']): void {
  for (let p = repoPath; ; p = path.dirname(p)) {
    const st = fs.statSync(p, { throwIfNoEntry: false });
    if (st?.isDirectory()) return;
    if (st) {
      const what = p === repoPath ? `${p} is a file` : `${p}, on the way to ${repoPath}, is a file`;
      throw new UsageError(`repository ${repoPath} (from ${REPOSITORY_SOURCE_NAMES[source]}) cannot be used: ${what}, not a directory`, {
        hint: 'a local repository is a directory (an existing repository, or a new one to create); for S3 write s3://BUCKET/PREFIX',
      });
    }
    if (path.dirname(p) === p) return;
  }
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
