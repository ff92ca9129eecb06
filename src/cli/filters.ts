import type { Command } from 'commander';
import { type BackupFilter, makeFilter } from '../repo/groups.ts';

// The group filters (restic's habit): --host, --path, --tag on the commands that choose
// backups. "latest" then means the newest backup among those the filters select.

/** The options withFilters() adds, by the names commander gives them. */
export interface FilterOpts {
  host?: string[];
  path?: string[];
  tag?: string[];
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function withFilters(cmd: Command): Command {
  return cmd
    .option('--host <name>', 'only backups of this host (repeatable: any of them); "latest" is the newest of those', collect)
    .option('--path <path>', 'only backups with this source path (repeatable: all of them); relative paths are from here', collect)
    .option('--tag <tags>', 'only backups with this tag ("a,b": both; repeatable: any of them)', collect);
}

export function filterOf(opts: FilterOpts): BackupFilter {
  return makeFilter({ hosts: opts.host, paths: opts.path, tags: opts.tag });
}
