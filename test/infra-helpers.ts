// Shared by test/infra-*.test.ts (static checks of infra/, Docker files, workflows, docs).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export const read = (rel: string): string => readFileSync(join(root, rel), 'utf8');
export const exists = (rel: string): boolean => existsSync(join(root, rel));
export const list = (rel: string): string[] => (exists(rel) ? readdirSync(join(root, rel)).sort() : []);

export interface PackageJson {
  bin?: Record<string, string>;
  scripts?: Record<string, string>;
}
export const packageJson = (): PackageJson => JSON.parse(read('package.json')) as PackageJson;

/** The CLI's subcommands (the command list). */
export const CLI_COMMANDS = new Set(['backup', 'list', 'restore', 'verify', 'cost', 'schedule']);

let checked = false;
/** Fails (never skips) when shellcheck is missing: the infra tests need it. */
export function requireShellcheck(): void {
  if (checked) return;
  const r = spawnSync('shellcheck', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(
      'shellcheck is not installed, and test/infra-*.test.ts needs it: install the Debian package ' +
        '(apt-get update && apt-get install -y shellcheck)',
    );
  }
  checked = true;
}

export interface ShellcheckOptions {
  shell?: 'bash' | 'sh';
  severity?: 'error' | 'warning' | 'info' | 'style';
  exclude?: string[];
}

/** shellcheck files (paths relative to the repo); returns its report, '' when clean. */
export function shellcheckFiles(files: string[], opts: ShellcheckOptions = {}): string {
  requireShellcheck();
  const args = ['--format=gcc', `--severity=${opts.severity ?? 'style'}`];
  if (opts.shell) args.push(`--shell=${opts.shell}`);
  if (opts.exclude?.length) args.push(`--exclude=${opts.exclude.join(',')}`);
  const r = spawnSync('shellcheck', [...args, ...files], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0 && !r.stdout) throw new Error(`shellcheck failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** shellcheck a script given as text (read from stdin). */
export function shellcheckText(script: string, opts: ShellcheckOptions = {}): string {
  requireShellcheck();
  const args = ['--format=gcc', `--severity=${opts.severity ?? 'style'}`, `--shell=${opts.shell ?? 'bash'}`];
  if (opts.exclude?.length) args.push(`--exclude=${opts.exclude.join(',')}`);
  const r = spawnSync('shellcheck', [...args, '-'], { cwd: root, input: script, encoding: 'utf8' });
  if (r.status !== 0 && !r.stdout) throw new Error(`shellcheck failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Subcommands of `node bin/s3backup.js SUBCOMMAND` / `s3backup SUBCOMMAND` used in a text. */
export function cliInvocations(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:node[ \t]+(?:\S*\/)?bin\/s3backup\.js|(?:^|[\s`(])s3backup)[ \t]+([a-z][a-z-]*)/gm)) {
    out.push(m[1]!);
  }
  return out;
}
