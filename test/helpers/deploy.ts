// Running the deployment steps as they are written (Dockerfile, workflows) on this machine:
// a clean copy of the repository, npm from the local cache only, and commands under a host
// name of their own (a new container, a new runner).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './tree.ts';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion, collecting its output. */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; uid?: number | undefined; gid?: number | undefined; timeoutMs?: number },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The repository's files as a fresh checkout has them: tracked plus new, not ignored ones. */
export function checkoutFiles(): string[] {
  const r = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ls-files failed (the deployment tests copy the checkout with git): ${r.stderr}`);
  return [...new Set(r.stdout.split('\0').filter(Boolean))].filter((f) => fs.existsSync(path.join(ROOT, f))).sort();
}

/** Copy the given repository files (relative paths) into dir. */
export function copyFiles(files: string[], dir: string): void {
  for (const f of files) {
    const to = path.join(dir, f);
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.cpSync(path.join(ROOT, f), to, { verbatimSymlinks: true, preserveTimestamps: true });
  }
}

/** The directory of this Node.js (24, as node:24-slim and actions/setup-node with 24 give). */
export const NODE_DIR = path.dirname(process.execPath);

/**
 * Environment for npm that never touches the network: a copy of the local npm cache (so that
 * `npm cache clean --force` in a step cleans the copy) and --offline. `npm ci` then works
 * exactly when every package of package-lock.json is in the cache, as after any `npm ci` here.
 */
export function offlineNpmEnv(dir: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...base, PATH: `${NODE_DIR}${path.delimiter}${base.PATH ?? ''}` };
  // The cache of the user running the tests (their HOME and npm settings), whatever base says.
  const r = spawnSync('npm', ['config', 'get', 'cache'], { env: { ...process.env, PATH: env.PATH }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm config get cache failed: ${r.stderr}`);
  const cache = r.stdout.trim();
  const copy = path.join(dir, 'npm-cache');
  if (!fs.existsSync(copy)) {
    fs.mkdirSync(copy, { recursive: true });
    if (fs.existsSync(path.join(cache, '_cacache')))
      fs.cpSync(path.join(cache, '_cacache'), path.join(copy, '_cacache'), { recursive: true });
  }
  return {
    ...env,
    npm_config_cache: copy,
    npm_config_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    npm_config_loglevel: 'error',
  };
}

export const npmOfflineHint =
  'npm ci runs with --offline from a copy of the local npm cache (tests use no network); run "npm ci" once with network access to fill the cache';

/** Can this process give a child its own kernel host name (root, or CAP_SYS_ADMIN)? */
export const UTS_NAMESPACES = spawnSync('unshare', ['--uts', 'true']).status === 0;

let preload: string | undefined;
/** A module for node --import that makes os.hostname() return $S3BACKUP_TEST_HOSTNAME. */
function hostnamePreload(): string {
  if (!preload) {
    const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'hostname-'));
    preload = path.join(dir, 'fake-hostname.mjs');
    fs.writeFileSync(
      preload,
      "import os from 'node:os';\nimport { syncBuiltinESMExports } from 'node:module';\n" +
        'const name = process.env.S3BACKUP_TEST_HOSTNAME;\nos.hostname = () => name;\nsyncBuiltinESMExports();\n',
    );
    fs.chmodSync(dir, 0o755);
  }
  return preload;
}

export const HOSTNAME_MECHANISM = UTS_NAMESPACES ? 'unshare --uts: a new kernel host name each' : 'os.hostname() replaced in the child';

/**
 * cmd args as a new container or runner would run them: under a host name of their own. With
 * UTS namespaces (root here, as in CI's container job) the kernel's host name really differs,
 * as in a container; otherwise every Node.js process started below sees os.hostname() = name.
 */
export function underHostname(
  name: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): { cmd: string; args: string[]; env: NodeJS.ProcessEnv } {
  if (UTS_NAMESPACES) return { cmd: 'unshare', args: ['--uts', 'sh', '-c', 'hostname "$0" && exec "$@"', name, cmd, ...args], env };
  const options = `${env.NODE_OPTIONS ?? ''} --import=${hostnamePreload()}`.trim();
  return { cmd, args, env: { ...env, NODE_OPTIONS: options, S3BACKUP_TEST_HOSTNAME: name } };
}
