import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { HookValues } from '../config/hook-settings.ts';
import { S3BackupError } from '../errors.ts';
import { duration } from '../format.ts';
import { parsePositiveDuration } from '../size.ts';

// Hook commands around a backup (config "hooks", --before/--after): each runs by /bin/sh in its
// own process group, with the run's facts added to its environment as S3BACKUP_* variables, its
// output going line by line to the run log. A command still running at its timeout, or when the
// run is interrupted, is stopped with its whole group (what it started in the background too).

export type HookStage = 'before' | 'after' | 'onFailure' | 'always';

/** The hooks of a run, resolved: every stage a list (maybe empty), the timeout in ms. */
export interface Hooks {
  before: readonly string[];
  after: readonly string[];
  onFailure: readonly string[];
  always: readonly string[];
  timeoutMs: number;
}

const DEFAULT_TIMEOUT_MS = 60 * 60_000;
/** After SIGTERM at the timeout, how long the group has to exit before SIGKILL. */
const KILL_GRACE_MS = 5_000;
/** Once the command exited, how long what it left in the background may hold its output open. */
const OUTPUT_GRACE_MS = 2_000;
/** Lines of one command's output written to the log; the rest are counted. Each line is cut at MAX_LINE. */
const MAX_LOGGED_LINES = 1_000;
const MAX_LINE = 2_000;

export interface HookLog {
  info(msg: string): void;
  warn(msg: string): void;
}

/** The hooks settings (config/hook-settings.ts) as a run uses them. */
export function hooksOf(values: HookValues | undefined): Hooks {
  return {
    before: values?.before ?? [],
    after: values?.after ?? [],
    onFailure: values?.onFailure ?? [],
    always: values?.always ?? [],
    timeoutMs: values?.timeout !== undefined ? parsePositiveDuration(values.timeout, 'hooks.timeout') : DEFAULT_TIMEOUT_MS,
  };
}

/**
 * Run a stage's commands in order with `facts` in their environment; each command's failure is
 * logged as a warning and returned. A `before` stage stops at its first failure (the backup will
 * not run, so the later ones would prepare for nothing).
 */
export async function runHooks(
  stage: HookStage,
  hooks: Hooks,
  facts: Record<string, string>,
  o: { log: HookLog; signal?: AbortSignal | undefined },
): Promise<string[]> {
  const failures: string[] = [];
  const list = hooks[stage];
  for (let i = 0; i < list.length; i++) {
    const name = `${stage} hook ${i + 1} (${programOf(list[i]!)})`;
    const failure = await runCommand(name, list[i]!, { ...facts, S3BACKUP_HOOK: stage }, hooks.timeoutMs, o);
    if (failure) {
      failures.push(failure);
      o.log.warn(failure);
      if (stage === 'before') break;
    }
  }
  return failures;
}

/** The error of a run whose before hook failed: nothing was written. */
export function beforeHookError(failure: string): S3BackupError {
  return new S3BackupError(`${failure}; the backup did not start and nothing was written`, {
    hint: "the command's output is in backup.log; fix it, or leave it out of hooks.before / --before",
  });
}

/**
 * The command's first word, to name it in the log: the whole command line may carry a secret
 * (a token in a URL), its program rarely does.
 */
function programOf(command: string): string {
  return command.trim().split(/\s+/, 1)[0]!.slice(0, 100);
}

/** Run one command; undefined when it exited 0, else what went wrong in one line. */
function runCommand(
  name: string,
  command: string,
  facts: Record<string, string>,
  timeoutMs: number,
  o: { log: HookLog; signal?: AbortSignal | undefined },
): Promise<string | undefined> {
  const started = performance.now();
  o.log.info(`${name} started`);
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      env: { ...process.env, ...facts },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let lastStderr = '';
    const logged = { lines: 0, dropped: 0 };
    const logLines = (stream: Readable, label: string) =>
      eachLine(stream, (line) => {
        if (label === 'stderr' && line.trim()) lastStderr = line.slice(0, 300);
        if (logged.lines++ < MAX_LOGGED_LINES) o.log.info(`${name} ${label}: ${line.slice(0, MAX_LINE)}`);
        else logged.dropped++;
      });
    const outputs = [logLines(child.stdout, 'stdout'), logLines(child.stderr, 'stderr')];
    let stopped: string | undefined;
    const stop = (why: string) => {
      if (stopped || child.exitCode !== null) return;
      stopped = why;
      killGroup(child.pid, 'SIGTERM');
      setTimeout(() => killGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS).unref();
    };
    const timer = setTimeout(() => stop(`timed out after ${duration(timeoutMs)}`), timeoutMs);
    const onAbort = () => stop('stopped: the run was interrupted');
    o.signal?.addEventListener('abort', onAbort);
    if (o.signal?.aborted) onAbort();
    let startError: Error | undefined;
    let finished = false;
    const finish = async (code: number | null, signal: NodeJS.Signals | null) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      // Output still buffered is read; a background process holding the pipes open is not waited for.
      const grace = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, OUTPUT_GRACE_MS);
      await Promise.all(outputs);
      clearTimeout(grace);
      if (logged.dropped) o.log.info(`${name}: ${logged.dropped} more output line(s) not logged`);
      const took = duration(performance.now() - started);
      if (code === 0 && !stopped) {
        o.log.info(`${name} done in ${took}`);
        resolve(undefined);
        return;
      }
      const how = startError
        ? `could not be started: ${startError.message}`
        : (stopped ?? (signal ? `was killed by ${signal}` : `exited with code ${code}`));
      resolve(`${name} failed: ${how} after ${took}${lastStderr ? `; its last error line: ${lastStderr}` : ''}`);
    };
    child.once('exit', (code, signal) => void finish(code, signal));
    child.on('error', (e) => {
      startError = e;
      // Not started at all: no exit event follows.
      if (child.pid === undefined) void finish(null, null);
    });
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

/** Call `onLine` for each line of a text stream (a last line without newline too); resolves at its end. */
function eachLine(stream: Readable, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve) => {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      rest += chunk;
      const lines = rest.split('\n');
      rest = lines.pop()!;
      // A line without end is held only up to the cut it would get anyway.
      if (rest.length > MAX_LINE) rest = rest.slice(0, MAX_LINE);
      for (const l of lines) onLine(l.replace(/\r$/, ''));
    });
    const end = () => {
      if (rest) onLine(rest);
      rest = '';
      resolve();
    };
    stream.once('end', end);
    stream.once('close', end);
    stream.once('error', end);
  });
}
