import * as path from 'node:path';
import { checkStreamName, commandStream, type StreamSpec, stdinStream } from '../backup/stream-source.ts';
import { UsageError } from '../errors.ts';

/** backup's flags for a backup of one stream (docs/cli.md "Backups from a command or stdin"). */
export interface StreamFlags {
  stdin?: boolean;
  stdinFilename?: string;
  stdinFromCommand?: boolean;
  dryRun?: boolean;
}

/**
 * The stream `backup` is asked to store, or undefined for a backup of paths. With
 * --stdin-from-command the arguments are the command (after "--"); with --stdin there are none.
 * Checked before anything runs; the command itself starts once the repository is open.
 */
export function streamOfFlags(args: string[], flags: StreamFlags): StreamSpec | undefined {
  if (!flags.stdin && !flags.stdinFromCommand) {
    if (flags.stdinFilename !== undefined) throw new UsageError('--stdin-filename goes with --stdin or --stdin-from-command');
    return undefined;
  }
  if (flags.stdin && flags.stdinFromCommand) throw new UsageError('--stdin and --stdin-from-command exclude each other');
  if (flags.dryRun) throw new UsageError('--dry-run lists files to back up; a stream has none to list');
  if (flags.stdin) {
    if (args.length > 0) {
      throw new UsageError(`--stdin backs up standard input alone, not also ${args[0]}`, {
        hint: 'back the paths up in a run of their own; to run a command, use --stdin-from-command -- COMMAND ARGS',
      });
    }
    const name = checkStreamName(flags.stdinFilename ?? 'stdin', '--stdin-filename');
    if (process.stdin.isTTY) stdinStream(name); // the terminal case's usage error, now
    return { name, open: () => stdinStream(name) };
  }
  if (args.length === 0) {
    throw new UsageError('--stdin-from-command needs a command after "--"', {
      hint: 'e.g. s3backup backup --stdin-from-command -- pg_dump mydb',
    });
  }
  const name = checkStreamName(flags.stdinFilename ?? path.basename(args[0]!), '--stdin-filename');
  return { name, open: () => commandStream(args, name) };
}
