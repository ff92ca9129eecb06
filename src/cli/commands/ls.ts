import type { Command } from 'commander';
import type { Entry } from '../../repo/manifest.ts';
import { lsJson, lsLine, runLs } from '../../restore/ls.ts';
import { type FilterOpts, filterOf, withFilters } from '../filters.ts';
import { type CommonOpts, emitJson, note, setup, withCommon, withStore } from '../common.ts';
import { bytes } from '../../format.ts';

// s3backup ls ID|latest [PATH]: a backup's entries, like `ls -l`. Reads only the manifest.

/** Lines to stdout with backpressure, so a listing of millions of entries streams in bounded memory. */
async function writeLine(s: string): Promise<void> {
  if (!process.stdout.write(`${s}\n`)) {
    await new Promise<void>((resolve) => {
      const done = () => {
        process.stdout.off('drain', done);
        process.stdout.off('close', done);
        resolve();
      };
      process.stdout.on('drain', done);
      process.stdout.on('close', done);
    });
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

async function cmdLs(id: string, pathArg: string | undefined, opts: CommonOpts & FilterOpts & { human?: boolean }): Promise<void> {
  const filter = filterOf(opts);
  const { store, keys } = await setup(opts, 'ls');
  // `s3backup ls latest | head` closes our stdout early: stop quietly.
  let closed = false;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') closed = true;
  });
  if (opts.json) {
    const entries: Record<string, unknown>[] = [];
    const result = await withStore(store, () =>
      runLs({ store, keys, snapshot: id, filter, path: pathArg, checkFirst: true, onEntry: (e: Entry) => void entries.push(lsJson(e)) }),
    );
    emitJson({ ok: true, repository: store.location, ...result, entries });
    return;
  }
  const human = opts.human ? bytes : undefined;
  const result = await withStore(store, () =>
    runLs({
      store,
      keys,
      snapshot: id,
      filter,
      path: pathArg,
      onEntry: async (e: Entry) => {
        if (!closed) await writeLine(lsLine(e, human ? { human } : {}));
      },
    }),
  );
  note(
    `${result.entries} entr${result.entries === 1 ? 'y' : 'ies'} in backup ${result.id}${result.path ? ` under ${JSON.stringify(result.path)}` : ''}: ` +
      `${plural(result.files, 'file')} (${bytes(result.bytes)}), ${plural(result.dirs, 'dir')}, ${plural(result.symlinks, 'symlink')}, ${plural(result.hardlinks, 'hard link')}` +
      (result.other ? `, ${result.other} other` : '') +
      ' (times in UTC)',
  );
}

export function registerLs(program: Command): void {
  withCommon(
    withFilters(
      program
        .command('ls')
        .description("list a backup's files and directories, like ls -l (reads only the manifest)")
        .argument('<id>', 'backup id, its 8-character short id, a unique part of it, or "latest"; ID^ is its parent')
        .argument('[path]', 'only this path and what is below it, or the entries matching a glob (quote it)')
        .option('-H, --human', 'sizes as KiB, MiB, … instead of bytes')
        .addHelpText(
          'after',
          `
One line per entry, in tree order: type and permissions, uid, gid, size in bytes, modification
time (UTC), path (and "-> target" for symlinks). Paths inside a backup start with the source's
name: backing up /home/me/my-data stores my-data/…; an absolute path inside a source works too.
A glob selects the entries it matches and everything below them. Nothing but the manifest is
read, so it is fast and cheap even when the archives are in Glacier.

Examples:
  s3backup ls latest
  s3backup ls latest my-data/docs
  s3backup ls 1a2b3c4d 'my-data/**/*.pdf' --json
  s3backup ls latest --host web1 --path /srv/projects`,
        ),
    ),
  ).action(cmdLs);
}
