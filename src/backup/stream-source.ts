import { spawn } from 'node:child_process';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { S3BackupError, UsageError } from '../errors.ts';
import { STREAM_SOURCE_PREFIX } from '../repo/groups.ts';

// Stage "stream source": a backup of one file read from stdin or from a command's output
// (docs/cli.md "Backups from a command or stdin").

/**
 * A streamed file's source path: `stdin:<name>`. With the host (and tags) it makes the backup's
 * group, for parents, retention and the run history, so the same dump made every night under
 * the same name is one group whatever the command line.
 */
export function streamSourcePath(name: string): string {
  return `${STREAM_SOURCE_PREFIX}${name}`;
}

/** One file to back up from a stream whose size is known only at its end. */
export interface StreamInput {
  /** The file's name in the backup (one path component). */
  name: string;
  body: Readable;
  /** Resolves once the producer ended well; rejects when it failed (a command's exit status). */
  finished(): Promise<void>;
  /** Stop the producer (the backup failed or was interrupted): kill the command. */
  stop(): void;
}

/**
 * What a backup streams: its name, and how to start the stream, which the backup does once the
 * repository is open and locked (a wrong passphrase, a lock held by prune: no dump is run).
 */
export interface StreamSpec {
  name: string;
  open(): StreamInput;
}

/** How much of a failing command's stderr its error message quotes (the end of it). */
const STDERR_TAIL = 1000;

/** The name a streamed file is stored under: one plain path component. */
export function checkStreamName(name: string, flag: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new UsageError(`${flag} ${JSON.stringify(name)} is not a file name`, {
      hint: 'give one name without "/", e.g. --stdin-filename db.sql',
    });
  }
  return name;
}

/** This process's standard input, which must not be a terminal. */
export function stdinStream(name: string): StreamInput {
  if (process.stdin.isTTY) {
    throw new UsageError('--stdin reads the data to back up from a pipe, and standard input is a terminal', {
      hint: 'e.g. pg_dump mydb | s3backup backup --stdin --stdin-filename mydb.sql, or use --stdin-from-command',
    });
  }
  const body = process.stdin;
  return {
    name,
    body,
    finished: () => Promise.resolve(),
    stop: () => body.destroy(),
  };
}

/**
 * A command's standard output. Its stderr goes on to ours (and its end is quoted when it fails);
 * its stdin is not connected, so it cannot wait on a prompt. A non-zero exit status, a death by
 * a signal or a command that cannot start make finished() reject: the backup then fails and
 * nothing is listed. The command line is not repeated in messages (it may hold a password).
 */
export function commandStream(argv: string[], name: string): StreamInput {
  const [program, ...args] = argv;
  if (!program)
    throw new UsageError('--stdin-from-command needs a command after "--"', { hint: 'e.g. --stdin-from-command -- pg_dump mydb' });
  const label = path.basename(program);
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  child.stderr.on('data', (chunk: Buffer) => {
    process.stderr.write(chunk);
    tail = (tail + chunk.toString('utf8')).slice(-STDERR_TAIL);
  });
  let stopped = false;
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'ENOENT' ? 'not found' : e.code === 'EACCES' ? 'not executable' : e.message;
      reject(new UsageError(`the command ${label} cannot be run: ${why}`, { hint: 'check the program name and PATH' }));
    });
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else {
        const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        const said = tail.trim() ? `: ${tail.trim().split('\n').slice(-3).join(' / ')}` : '';
        reject(new S3BackupError(`the command ${label} ${how}${stopped ? ' (stopped by s3backup)' : ''}${said}; no backup was recorded`));
      }
    });
  });
  exited.catch(() => {}); // awaited by finished(); a backup that fails first never asks
  return {
    name,
    body: child.stdout,
    finished: () => exited,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) {
        stopped = true;
        child.kill('SIGTERM');
      }
      child.stdout.destroy();
    },
  };
}
