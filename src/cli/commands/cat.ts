import type { Command } from 'commander';
import { UsageError } from '../../errors.ts';
import { runCat } from '../../restore/cat.ts';
import { type FilterOpts, filterOf, withFilters } from '../filters.ts';
import { type CommonOpts, interruptSignal, setup, withCommon, withStore } from '../common.ts';
import { bytes } from '../../format.ts';

// s3backup cat ID|latest PATH: one file's content on stdout, read with ranged GETs of only the
// frames that hold it, checked against its SHA-256 at the end.

async function cmdCat(id: string, pathArg: string, opts: CommonOpts & FilterOpts): Promise<void> {
  if (opts.json) {
    throw new UsageError('cat writes the file itself to stdout, so it has no --json output', {
      hint: `use "s3backup ls ${id} ${pathArg} --json" for its size, mode and SHA-256`,
    });
  }
  const filter = filterOf(opts);
  const { store, log, keys } = await setup(opts, 'cat');
  try {
    const r = await withStore(store, () =>
      runCat({ store, keys, snapshot: id, filter, path: pathArg, output: process.stdout, signal: interruptSignal() }),
    );
    log.info(
      `cat ${r.id} ${r.path}${r.source !== r.path ? ` (-> ${r.source})` : ''}: ${bytes(r.size)}, ${bytes(r.bytesFetched)} read from the repository in ${r.requests} request(s)`,
    );
  } catch (e) {
    // The reader went away (`s3backup cat … | head`): not an error of ours.
    if ((e as NodeJS.ErrnoException)?.code === 'EPIPE') return;
    throw e;
  }
}

export function registerCat(program: Command): void {
  withCommon(
    withFilters(
      program
        .command('cat')
        .description("write one file's content from a backup to stdout")
        .argument('<id>', 'backup id, its 8-character short id, a unique part of it, or "latest"; ID^ is its parent')
        .argument('<path>', 'the file inside the backup, e.g. my-data/docs/report.pdf (or its absolute path inside a source)')
        .addHelpText(
          'after',
          `
Only the frames of the archive that hold the file are downloaded (ranged reads), so this is
quick even for a small file in a large backup. The content streams out as it arrives and its
SHA-256 is checked at the end: on a mismatch the command fails (exit code 1) naming the file,
and what was written must not be trusted. Symlinks inside the backup are followed; hard links
give their file's content. A directory, a path that is not in the backup (exit code 2) or an
entry without content (exit code 1) is an error.

Examples:
  s3backup cat latest my-data/notes/todo.txt
  s3backup cat 1a2b3c4d my-data/db/dump.sql.gz > dump.sql.gz
  s3backup cat latest --host db1 db/pg_hba.conf`,
        ),
    ),
  ).action(cmdCat);
}
