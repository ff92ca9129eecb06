import { UsageError } from '../errors.ts';

// The host a backup is recorded under. Backups of the same host and sources form a group: the
// newest one of the group (same tags) is the parent of the next incremental, and retention
// keeps its backups per group. A container gets a new host name on every `docker compose run`,
// a GitHub-hosted job a new runner: without a fixed name (--host, S3BACKUP_HOST, config "host")
// every backup there is a full one of a group of its own, and retention never removes any.
// generatedHostWarning() notices that in a repository, from the manifest headers alone.

/** Longest host name accepted (DNS allows 253 characters; the name only labels backups). */
const MAX_HOST = 253;

/** A host name given by the user (--host, S3BACKUP_HOST, config "host"), checked. */
export function checkHostName(value: string, where: string): string {
  const v = value.trim();
  if (v === '') throw new UsageError(`${where} must not be empty`, { hint: 'give a fixed name for this machine, e.g. --host fileserver' });
  if (v.length > MAX_HOST) throw new UsageError(`${where} is longer than ${MAX_HOST} characters`);
  if (/[\u0000-\u001f\u007f]/.test(v)) throw new UsageError(`${where} must not contain control characters`);
  return v;
}

/** Host name patterns that change from run to run, with what they are. */
const GENERATED: readonly [RegExp, string][] = [
  // Docker and Podman name a container's host after the first 12 hex digits of its id.
  [/^[0-9a-f]{12}$/, 'container ids'],
  [/^[0-9a-f]{64}$/, 'container ids'],
  // GitHub-hosted runners: fv-az123-456 (Azure VMs), GitHub-Actions-12, runnervmf4ws1.
  [/^fv-az\d+-\d+$/i, 'GitHub-hosted runner names'],
  [/^github-actions-\d+$/i, 'GitHub-hosted runner names'],
  [/^runnervm[0-9a-z]+$/i, 'GitHub-hosted runner names'],
  [/^mac-\d{10,}$/i, 'GitHub-hosted runner names'],
  // GitLab (runner-abcd1234-project-42-concurrent-0), actions-runner-controller (runner-x7k2p).
  [/^runner-(?=[0-9a-z]*\d)[0-9a-z]{4,}(-|$)/i, 'CI runner names'],
  // Kubernetes CronJob pods (backup-28391234-x2x4z) and Deployment pods (backup-7d9f8b6c5-x2x4z).
  [/^[a-z0-9-]+-\d{8}-[a-z0-9]{5}$/, 'Kubernetes pod names'],
  [/^[a-z0-9-]+-[a-f0-9]{8,10}-[a-z0-9]{5}$/, 'Kubernetes pod names'],
  // EC2 instances of an auto-scaling group or a batch job.
  [/^ip-\d{1,3}-\d{1,3}-\d{1,3}-\d{1,3}$/, 'EC2 instance names'],
  [/^i-[0-9a-f]{8,17}$/, 'EC2 instance ids'],
  [/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'UUIDs'],
];

/**
 * What a host name looks generated as ("container ids", "GitHub-hosted runner names", …), or
 * undefined when it looks chosen. Only the first label counts (ip-10-0-0-1.ec2.internal). A
 * label with a long random-looking part (10 or more hex digits mixing letters and digits,
 * e.g. backup-3f9a2c7d1e) counts as "random ids".
 */
export function generatedHostKind(host: string): string | undefined {
  const label = host.split('.')[0] ?? host;
  for (const [re, kind] of GENERATED) if (re.test(label)) return kind;
  for (const part of label.split(/[-_]/)) {
    if (/^[0-9a-f]{10,}$/i.test(part) && /\d.*\d/.test(part) && /[a-f].*[a-f]/i.test(part)) return 'random ids';
  }
  return undefined;
}

/** A backup as far as the check needs it (a manifest header has all of it). */
export interface HostedBackup {
  id: string;
  time: string;
  host: string;
  sources: string[];
}

/** One source set backed up under ever new host names. */
export interface FragmentedSources {
  sources: string[];
  /** The generated-looking host names with exactly one backup of these sources, oldest first. */
  hosts: string[];
  /** What they look like ("container ids", …). */
  kinds: string[];
}

export interface HostIdentityWarning {
  code: 'generated-host-names';
  message: string;
  hint: string;
  groups: FragmentedSources[];
}

/** From this many one-backup groups of the same sources under generated names on, it is a pattern. */
export const MIN_FRAGMENTED_GROUPS = 3;

export const HOST_HINT =
  'give the backups a fixed host name: s3backup backup --host NAME, or S3BACKUP_HOST=NAME, or "host: NAME" in s3backup.yaml ' +
  '(docker compose: S3BACKUP_HOST in .env, which the backup service also uses as its hostname; GitHub Actions: env S3BACKUP_HOST). ' +
  'The backups already made keep their names';

/**
 * Does the repository show a machine whose host name changes on every run? For each source set
 * (the sorted source paths): at least MIN_FRAGMENTED_GROUPS host names that look generated
 * have exactly one backup each of it, and the newest backup of it is one of those (so a fixed
 * name, once set, ends the warning; the old one-backup groups stay). Pure and cheap: one pass
 * over the headers `list` and `cost` read anyway, and that a backup without a parent has read.
 */
export function generatedHostWarning(backups: readonly HostedBackup[], min = MIN_FRAGMENTED_GROUPS): HostIdentityWarning | undefined {
  const bySources = new Map<string, HostedBackup[]>();
  for (const b of backups) {
    const k = JSON.stringify([...b.sources].sort());
    const list = bySources.get(k);
    if (list) list.push(b);
    else bySources.set(k, [b]);
  }
  const groups: FragmentedSources[] = [];
  for (const list of bySources.values()) {
    list.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const perHost = new Map<string, number>();
    for (const b of list) perHost.set(b.host, (perHost.get(b.host) ?? 0) + 1);
    const single = (h: string) => perHost.get(h) === 1 && generatedHostKind(h) !== undefined;
    if (!single(list.at(-1)!.host)) continue;
    const hosts = [...new Set(list.map((b) => b.host))].filter(single);
    if (hosts.length < min) continue;
    groups.push({ sources: [...list[0]!.sources].sort(), hosts, kinds: [...new Set(hosts.map((h) => generatedHostKind(h)!))] });
  }
  if (groups.length === 0) return undefined;
  const described = groups.map((g) => {
    const shown = g.hosts.slice(-3).reverse();
    const more = g.hosts.length - shown.length;
    return `${g.sources.join(', ') || '(no sources)'} was backed up under ${g.hosts.length} host names that look like ${g.kinds.join(' or ')} (${shown.join(', ')}${more > 0 ? `, … ${more} more` : ''}), one backup each`;
  });
  return {
    code: 'generated-host-names',
    message:
      `${described.join('; ')}: the host name changes on every run (a container or a CI runner), so every backup is a full one ` +
      'in a group of its own, and retention (which keeps backups per host and sources) never removes any: storage grows without bound',
    hint: HOST_HINT,
    groups,
  };
}
