import type { Command } from 'commander';
import { bytes, truncateMiddle } from '../../format.ts';
import type { Entry } from '../../repo/manifest.ts';
import { groupJson, groupLabel, shortId } from '../../repo/groups.ts';
import { type ChangeAspect, type DiffChange, type DiffResult, type DiffSide, runDiff } from '../../restore/diff.ts';
import { displayPath, lsJson, permissions } from '../../restore/ls.ts';
import { type CommonOpts, emitJson, note, out, setup, withCommon, withStore } from '../common.ts';
import { type FilterOpts, filterOf, withFilters } from '../filters.ts';

// s3backup diff A B [PATH]: what changed between two backups, from their manifests alone.

const hasContent = (e: Entry) => e.type === 'file' || e.type === 'hardlink';

function entryText(e: Entry): string {
  return hasContent(e) ? `${e.type}, ${bytes(e.size)}` : e.type;
}

/** The details of a changed entry: "content 4.0 KiB → 5.1 KiB; mode -rw-r--r-- → -rw-------". */
function aspectText(w: ChangeAspect, a: Entry, b: Entry): string {
  switch (w) {
    case 'type':
      return `type ${a.type} → ${b.type}`;
    case 'content':
      return a.size === b.size ? `content (${bytes(b.size)})` : `content ${bytes(a.size)} → ${bytes(b.size)}`;
    case 'target':
      return `target ${displayPath(a.target ?? '')} → ${displayPath(b.target ?? '')}`;
    case 'mode':
      return `mode ${permissions(a)} → ${permissions(b)}`;
    case 'owner':
      return `owner ${a.uid}:${a.gid} → ${b.uid}:${b.gid}`;
    case 'times':
      return 'mtime';
    case 'xattrs':
      return 'xattrs';
  }
}

function changeLine(c: DiffChange): string {
  if (c.change === 'added') return `+  ${displayPath(c.entry.path)}${c.entry.type === 'dir' ? '/' : ''}  (${entryText(c.entry)})`;
  if (c.change === 'removed') return `-  ${displayPath(c.entry.path)}${c.entry.type === 'dir' ? '/' : ''}  (${entryText(c.entry)})`;
  const details = c.what.map((w) => aspectText(w, c.before, c.after)).join('; ');
  return `M  ${displayPath(c.after.path)}${c.after.type === 'dir' ? '/' : ''}  (${details})`;
}

function changeJson(c: DiffChange): Record<string, unknown> {
  if (c.change !== 'changed') return { change: c.change, ...lsJson(c.entry) };
  return { change: 'changed', what: c.what, before: lsJson(c.before), after: lsJson(c.after) };
}

function sideText(s: DiffSide): string {
  return `${shortId(s.id)} (${s.time.replace('T', ' ').replace(/\.\d+Z$/, '')} UTC, ${truncateMiddle(groupLabel(s), 60)})`;
}

const signed = (n: number) => (n < 0 ? `-${bytes(-n)}` : `+${bytes(n)}`);

/** The summary line: counts, bytes, and what kinds of change. */
export function summaryLine(r: DiffResult): string {
  const s = r.summary;
  const aspects = Object.entries(s.byAspect)
    .filter(([, n]) => n > 0)
    .map(([w, n]) => `${w} ${n}`);
  return (
    `${s.added} added (${bytes(s.addedBytes)}), ${s.removed} removed (${bytes(s.removedBytes)}), ${s.changed} changed` +
    (aspects.length ? ` (${aspects.join(', ')})` : '') +
    `, ${s.unchanged} unchanged; content ${bytes(s.bytesBefore)} → ${bytes(s.bytesAfter)} (${signed(s.bytesAfter - s.bytesBefore)})`
  );
}

async function cmdDiff(from: string, to: string, pathArg: string | undefined, opts: CommonOpts & FilterOpts): Promise<void> {
  const filter = filterOf(opts);
  const { store, keys } = await setup(opts, 'diff');
  const changes: Record<string, unknown>[] = [];
  let closed = false;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') closed = true;
  });
  const result = await withStore(store, () =>
    runDiff({
      store,
      keys,
      from,
      to,
      filter,
      path: pathArg,
      onChange: (c) => {
        if (opts.json) changes.push(changeJson(c));
        else if (!closed) out(changeLine(c));
      },
    }),
  );
  if (opts.json) {
    emitJson({
      ok: true,
      repository: store.location,
      from: { ...result.from, shortId: shortId(result.from.id), group: groupJson(result.from) },
      to: { ...result.to, shortId: shortId(result.to.id), group: groupJson(result.to) },
      path: result.path,
      summary: result.summary,
      changes,
    });
    return;
  }
  note(`diff ${sideText(result.from)} → ${sideText(result.to)}${result.path ? ` under ${JSON.stringify(result.path)}` : ''}:`);
  note(summaryLine(result));
}

export function registerDiff(program: Command): void {
  withCommon(
    withFilters(
      program
        .command('diff')
        .description('what changed between two backups: entries added, removed and changed (reads only the manifests)')
        .argument('<from>', 'the older backup: id, short id, "latest", or ID^ (its parent)')
        .argument('<to>', 'the newer backup, named the same ways')
        .argument('[path]', 'only this path and what is below it, or the entries matching a glob (quote it)'),
    ).addHelpText(
      'after',
      `
One line per difference, in tree order: "+" added, "-" removed, "M" changed, with what changed
(type, content and size, symlink or hard-link target, mode, owner, mtime, xattrs). A summary
line follows on stderr. Only the two manifests are read, never an archive. ID^ is the backup
an incremental one was made against (else the previous backup of its group); ID^^ its parent's
parent. With --host, --path, --tag, "latest" is the newest backup of those.

Examples:
  s3backup diff 1a2b3c4d^ 1a2b3c4d                 what one backup changed
  s3backup diff latest^ latest --host web1 --path /srv/projects
  s3backup diff 1a2b3c4d 5e6f7a8b 'my-data/docs/**' --json`,
    ),
  ).action(cmdDiff);
}
