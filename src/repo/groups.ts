import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { UsageError } from '../errors.ts';

/**
 * Groups of backups, and the filters that pick backups by group. One definition for every
 * command: retention applies its policy per group, anomaly detection compares a backup with
 * its group's history, and list, history, anomalies, forget and cost show it.
 *
 * A group is the host and the set of source paths: /home on two machines is two data sets, and
 * so are /home and /home + /etc on one machine. Tags do not split a group (a tagged and an
 * untagged backup of the same tree are the same data set), but they are shown beside it and
 * `--tag` filters on them.
 */

/** What a backup says about where it came from: enough to place it in a group and to filter it. */
export interface GroupMember {
  host: string;
  /** Absolute source paths, in any order. */
  sources: readonly string[];
  tags?: readonly string[];
}

/** The group of a backup as a string that compares equal exactly when the groups are. */
export function groupKey(b: Pick<GroupMember, 'host' | 'sources'>): string {
  return JSON.stringify([b.host, [...b.sources].sort()]);
}

/**
 * A short stable id of a group (16 hex digits of the SHA-256 of its key): the run history
 * stores it with each run as `sourceKey`, and `list --json` gives it as `group.id`.
 */
export function groupId(b: Pick<GroupMember, 'host' | 'sources'>): string {
  return createHash('sha256').update(groupKey(b)).digest('hex').slice(0, 16);
}

/** "host: /a, /b" */
export function describeGroup(g: Pick<GroupMember, 'host' | 'sources'>): string {
  return `${g.host}: ${[...g.sources].sort().join(', ') || '(no sources)'}`;
}

/** The group as a table shows it: "host: /a, /b [tag1,tag2]". */
export function groupLabel(b: GroupMember): string {
  return describeGroup(b) + (b.tags?.length ? ` [${b.tags.join(',')}]` : '');
}

/** The group as `--json` gives it. */
export function groupJson(b: Pick<GroupMember, 'host' | 'sources'>): { id: string; host: string; sources: string[] } {
  return { id: groupId(b), host: b.host, sources: [...b.sources].sort() };
}

const FULL_ID_RE = /^\d{8}T\d{6}\.\d{3}Z-([0-9a-f]{8})$/;

/**
 * A backup's short id: the 8 hex digits that end its full id (restic's habit). Every command
 * that takes an id takes it; another form of id is returned whole.
 */
export function shortId(id: string): string {
  return FULL_ID_RE.exec(id)?.[1] ?? id;
}

/**
 * Which backups a command looks at (restic's --host, --path, --tag). Empty lists: no condition.
 * A backup matches when its host is one of `hosts`, every one of `paths` is one of its sources,
 * and it carries every tag of at least one entry of `tags` ("a,b" = both a and b).
 */
export interface BackupFilter {
  hosts?: readonly string[] | undefined;
  paths?: readonly string[] | undefined;
  tags?: readonly string[] | undefined;
}

/** A source path as backups record it: absolute, no trailing slash. */
/**
 * The source path of a streamed file (backup --stdin, --stdin-from-command) is `stdin:NAME`:
 * not a path on disk, never made absolute.
 */
export const STREAM_SOURCE_PREFIX = 'stdin:';

/** Whether a source path names a streamed file rather than a path on disk. */
export function isStreamSource(source: string): boolean {
  return source.startsWith(STREAM_SOURCE_PREFIX);
}

function normalPath(p: string): string {
  if (isStreamSource(p)) return p;
  const abs = path.resolve(p);
  return abs.length > 1 ? abs.replace(/\/+$/, '') : abs;
}

/** The filter with its paths made absolute (relative ones from the current directory, as backup does) and checked. */
export function makeFilter(f: BackupFilter): BackupFilter {
  for (const h of f.hosts ?? []) if (h === '') throw new UsageError('--host needs a host name');
  for (const p of f.paths ?? []) if (p === '') throw new UsageError('--path needs a source path');
  for (const t of f.tags ?? []) {
    if (t.split(',').some((x) => x === '')) throw new UsageError(`--tag ${JSON.stringify(t)} is not a tag (or "a,b" for both a and b)`);
  }
  return {
    ...(f.hosts?.length ? { hosts: [...f.hosts] } : {}),
    ...(f.paths?.length ? { paths: f.paths.map(normalPath) } : {}),
    ...(f.tags?.length ? { tags: [...f.tags] } : {}),
  };
}

export function isEmptyFilter(f: BackupFilter | undefined): boolean {
  return !f || (!f.hosts?.length && !f.paths?.length && !f.tags?.length);
}

export function matchesFilter(b: GroupMember, f: BackupFilter | undefined): boolean {
  if (!f) return true;
  if (f.hosts?.length && !f.hosts.includes(b.host)) return false;
  if (f.paths?.length && !f.paths.every((p) => b.sources.includes(p))) return false;
  if (f.tags?.length) {
    const tags = b.tags ?? [];
    if (!f.tags.some((set) => set.split(',').every((t) => tags.includes(t)))) return false;
  }
  return true;
}

/** "--host web1 --path /srv/projects": the filter as it would be typed (for messages). */
export function describeFilter(f: BackupFilter | undefined): string {
  if (!f) return '';
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);
  return [
    ...(f.hosts ?? []).map((h) => `--host ${quote(h)}`),
    ...(f.paths ?? []).map((p) => `--path ${quote(p)}`),
    ...(f.tags ?? []).map((t) => `--tag ${quote(t)}`),
  ].join(' ');
}
