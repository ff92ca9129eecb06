import type { Command } from 'commander';
import { displayName } from '../../archive/names.ts';
import { UsageError } from '../../errors.ts';
import { bytes } from '../../format.ts';
import { runDump } from '../../restore/dump.ts';
import { type CommonOpts, EXIT, interruptSignal, note, setup, withCommon, withStore } from '../common.ts';

// s3backup dump ID PATH: a directory (or a file) of a backup as a tar stream on stdout, reading
// only the frames that hold its content.

async function cmdDump(id: string, pathArg: string, opts: CommonOpts): Promise<void> {
  if (opts.json) {
    throw new UsageError('dump writes a tar stream to stdout, so it has no --json output', {
      hint: `use "s3backup ls ${id} ${pathArg} --json" to list what it holds`,
    });
  }
  if (process.stdout.isTTY) {
    throw new UsageError('dump writes a tar stream: send it to a file or a pipe, not the terminal', {
      hint: `s3backup dump ${id} ${pathArg} > out.tar, or | tar -x`,
    });
  }
  const { store, log, keys } = await setup(opts, 'dump');
  try {
    const r = await withStore(store, () =>
      runDump({ store, keys, snapshot: id, path: pathArg, output: process.stdout, signal: interruptSignal() }),
    );
    for (const s of r.skipped) note(`s3backup: ${displayName(s.path)} left out: ${s.reason}`);
    log.info(
      `dump ${r.id} ${r.path || '(all)'}: ${r.entries} entries, ${bytes(r.bytes)}, ${bytes(r.bytesFetched)} read from the repository in ${r.requests} request(s)${r.skipped.length ? `, ${r.skipped.length} left out` : ''}`,
    );
    if (r.skipped.length) process.exitCode = EXIT.warnings;
  } catch (e) {
    // The reader went away (`s3backup dump … | head`): not an error of ours.
    if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') return;
    throw e;
  }
}

export function registerDump(program: Command): void {
  withCommon(
    program
      .command('dump')
      .description('write a directory (or a file) from a backup to stdout as a tar stream')
      .argument('<id>', 'backup id, a unique part of it, or "latest"')
      .argument('<path>', 'the directory or file inside the backup, e.g. my-data/docs ("." for the whole backup)')
      .addHelpText(
        'after',
        `
The tar holds PATH and everything under it, with the paths the backup has (my-data/docs/…),
modes, owners, times, symlinks, hard links and extended attributes; names that are not UTF-8
keep their bytes. Only the frames of the archives that hold that content are downloaded (one
ranged read per run of frames), and every file's SHA-256 is checked as it streams out: on a
mismatch the command fails (exit code 1) and the output must not be trusted. Entries with no
stored content (unreadable at backup time, sockets, FIFOs) are left out and named (exit code 3).

Examples:
  s3backup dump latest my-data/docs | tar -x -C /tmp/restored
  s3backup dump 1a2b3c4d my-data > my-data.tar`,
      ),
  ).action(cmdDump);
}
