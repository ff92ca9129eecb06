#!/usr/bin/env -S node --max-semi-space-size=4
// Launcher: s3backup needs Node.js >= 24 (zstd in node:zlib). The repository brings Node 24 as
// an npm dependency; if an older system node started us, hand over to that one.
//
// --max-semi-space-size=4 (MiB; V8's default grows to 16): a backup allocates many short-lived
// objects per file, and a young generation left to grow costs ~30 MB of peak RSS with no gain in
// speed (measured on the bench tree). Node flags must be given at start, hence the shebang; the
// Dockerfile's ENTRYPOINT and the benchmark pass the same flags.
//
// The command then runs with the memory settings below: on Node 24 the launcher starts Node
// again in its own place (execve: the same process, so signals and exit codes are the
// command's) when they are not in effect yet; an older Node hands over to Node 24 with them.
// Each one already set (in the environment, the node flags or NODE_OPTIONS) is left as it is.
// The figures behind them: docs/performance.md, "Memory: where it goes".
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const NEEDED_MAJOR = 24;

/**
 * glibc's malloc, told to give memory back: at most 2 arenas (instead of up to 8 per core, one
 * per thread that allocates, each keeping what it freed), and blocks of 256 KiB and more mapped
 * on their own and unmapped when freed (instead of a threshold that rises to the largest block
 * freed so far, after which every 4 MiB compression buffer stays in an arena). Other C
 * libraries ignore these. The fixed threshold only for backup: a restore decompresses every
 * frame into fresh memory, and mapping and unmapping each costs it ~1 s of system time per GiB.
 */
const MALLOC_ENV = { MALLOC_ARENA_MAX: '2' };
const MALLOC_ENV_BY_COMMAND = { backup: { MALLOC_MMAP_THRESHOLD_: '262144' } };

/**
 * V8's old generation, bounded (MiB), per command: V8 lets it grow to 3–4 times what is live
 * before a full collection, which is RSS for garbage. A backup's live heap (~20 MiB) does not
 * grow with the number of files, nor does a restore's (~15 MiB: it keeps per directory and per
 * hard link, not per file). The other commands keep V8's own bound: some still hold state per
 * file or per backup (ls, verify, prune, the dashboard), which a fixed bound would turn into a
 * crash on a large enough repository.
 */
const OLD_SPACE_MIB = { backup: 96, restore: 96 };

/**
 * The old generation's limit at start, and its floor after each full collection (MiB), per
 * command. Under the bound above, a restore's limit settled ~11 MiB over what is live, and V8
 * then started a full collection every 0.1-0.3 s though nothing grew: their marking, mostly on
 * V8's helper threads, was a sixth of a restore's CPU. With this floor it runs a third as many;
 * with the smaller young generation below, at the same peak RSS (docs/performance.md, "Restore:
 * where the time goes").
 */
const INITIAL_OLD_SPACE_MIB = { restore: 32 };

/**
 * The young generation's bound (MiB) of a command that wants another than the 4 of the shebang
 * (and of the Dockerfile's ENTRYPOINT), which is then the launcher's default, not a choice, and
 * is replaced. A restore allocates little per file (entries are read a segment at a time) and
 * keeps the RSS its old-generation floor above costs: ~5 MiB less peak RSS at 2, no more CPU.
 */
const SEMI_SPACE_MIB = { restore: 2 };
const SHEBANG_SEMI_SPACE = '--max-semi-space-size=4';

/**
 * The commands that run with these settings: those whose memory follows the data they move
 * (a backup, a restore, reading whole archives or every manifest) or that run for long. The
 * others (ls, cat, list, diff, init, key, …) read a manifest head or a few segments: for them a
 * second start of Node would cost more time than the settings save memory, and a lookup's time
 * is mostly start-up (docs/performance.md, "Lookups in a large backup").
 */
const BOUNDED_COMMANDS = new Set(['backup', 'restore', 'verify', 'copy', 'dump', 'prune', 'schedule', 'dashboard']);

/** The command's name: the first word that names one (the common options may come before it). */
const COMMANDS = new Set([
  'backup',
  'restore',
  'list',
  'ls',
  'cat',
  'verify',
  'forget',
  'prune',
  'init',
  'key',
  'unlock',
  'history',
  'notify',
  'schedule',
  'dashboard',
  'cost',
  'diff',
  'copy',
  'dump',
  'anomalies',
]);
const args = process.argv.slice(2);
const command = args.slice(0, args.includes('--') ? args.indexOf('--') : args.length).find((a) => COMMANDS.has(a));

/**
 * The memory settings not in effect yet: node flags, and environment variables; and this start's
 * node flags to keep (all but the shebang's young-generation bound, where replaced).
 */
function memorySettings() {
  if (!BOUNDED_COMMANDS.has(command)) return { flags: [], env: {}, execArgv: process.execArgv };
  const semiSpace = SEMI_SPACE_MIB[command];
  const execArgv = semiSpace === undefined ? process.execArgv : process.execArgv.filter((a) => a !== SHEBANG_SEMI_SPACE);
  const given = [...execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  const has = (flag) => given.some((a) => a.startsWith(flag));
  const oldSpace = OLD_SPACE_MIB[command];
  const initialOldSpace = INITIAL_OLD_SPACE_MIB[command];
  const flags = [
    ...(has('--max-semi-space-size') ? [] : [`--max-semi-space-size=${semiSpace ?? 4}`]),
    ...(oldSpace === undefined || has('--max-old-space-size') ? [] : [`--max-old-space-size=${oldSpace}`]),
    ...(initialOldSpace === undefined || has('--initial-old-space-size') ? [] : [`--initial-old-space-size=${initialOldSpace}`]),
  ];
  const wanted = { ...MALLOC_ENV, ...MALLOC_ENV_BY_COMMAND[command] };
  const env = Object.fromEntries(Object.entries(wanted).filter(([k]) => process.env[k] === undefined));
  return { flags, env, execArgv };
}
// Ctrl-C reaches every process of the terminal's foreground group, but `kill PID`, systemd's
// stop and docker stop signal the launcher alone: forwarded, the child always hears them once
// (s3backup counts a second signal within a moment of the first as the same one).
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM'];

/** The Node 24 that `npm install` put beside s3backup (as its dependency, or as a sibling package). */
function bundledNode() {
  const candidates = [join(here, '..', 'node_modules', 'node', 'bin', 'node'), join(here, '..', '..', 'node', 'bin', 'node')];
  return candidates.find((p) => existsSync(p));
}

/** Signals sent to the launcher go on to the child, which decides how to stop. */
function forwardSignals(child) {
  for (const sig of FORWARDED_SIGNALS) process.on(sig, () => child.kill(sig));
}

/** End as the child ended: its exit code, or the same signal (so a shell sees 130 for Ctrl-C). */
function exitLike(code, signal) {
  if (signal) {
    for (const sig of FORWARDED_SIGNALS) process.removeAllListeners(sig);
    process.kill(process.pid, signal);
    process.exit(128 + (constants.signals[signal] ?? 0));
  }
  process.exit(code ?? 1);
}

/**
 * Run s3backup on `node` in a child process, and wait for it: the shell's prompt comes back only
 * once s3backup has stopped and said its last word, not while it still cleans up after Ctrl-C.
 */
function handOver(node) {
  const memory = memorySettings();
  const child = spawn(node, [...memory.execArgv, ...memory.flags, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, ...memory.env },
  });
  forwardSignals(child);
  child.on('error', (e) => {
    console.error(`s3backup: cannot start ${node}: ${e.message}`);
    process.exit(2);
  });
  child.on('exit', exitLike);
}

/**
 * Start Node again in this process with the memory settings, if some are not in effect yet.
 * Should the system refuse, the command runs as it is, with Node's defaults.
 */
function withMemorySettings() {
  const memory = memorySettings();
  if ((memory.flags.length === 0 && Object.keys(memory.env).length === 0) || typeof process.execve !== 'function') return;
  try {
    // process.argv[1], not this file: a script that imports the launcher (the benchmark's) runs again too.
    process.execve(process.execPath, [process.execPath, ...memory.execArgv, ...memory.flags, ...process.argv.slice(1)], {
      ...process.env,
      ...memory.env,
    });
  } catch {}
}

async function runHere() {
  withMemorySettings();
  const main = join(here, '..', 'dist', 'cli', 'main.js');
  if (!existsSync(main)) {
    console.error('s3backup is not built yet: run "npm install" (or "npm run build") in its folder.');
    process.exit(2);
  }
  // More libuv threads than the default 4: restores create many files at once, and file creation
  // waits on the kernel, not the CPU. Must be set before the pool's first use.
  process.env.UV_THREADPOOL_SIZE ??= '8';
  // V8 keeps the compiled code on disk between runs (node-compile-cache in the temp dir; a cache it
  // cannot write is skipped): ~0.08 s less start-up for every command, most of it the AWS SDK.
  (await import('node:module')).enableCompileCache?.();
  await import(main);
}

if (Number(process.versions.node.split('.')[0]) >= NEEDED_MAJOR) await runHere();
else {
  const node = bundledNode();
  if (!node) {
    console.error(
      `s3backup needs Node.js ${NEEDED_MAJOR} or newer (this is ${process.version}). Run "npm install" in the s3backup folder ` +
        `(it brings Node.js ${NEEDED_MAJOR}), or install Node.js ${NEEDED_MAJOR}.`,
    );
    process.exit(2);
  }
  handOver(node);
}
