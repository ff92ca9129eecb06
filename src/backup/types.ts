import type { ArchiveSettingValues } from '../config/archive-settings.ts';
import type { ObjectLockValues } from '../config/backup-settings.ts';
import type { KeySource } from '../crypto/keys.ts';
import type { DetectorOptions } from '../monitor/anomaly.ts';
import type { AnomalyFinding, RetentionHold } from '../monitor/types.ts';
import type { BackupStats } from '../repo/manifest.ts';
import type { Store } from '../store/store.ts';
import type { HostIdentityWarning } from './host-identity.ts';
import type { StreamSpec } from './stream-source.ts';

// What a backup is asked to do, what it reports while it runs, and what it did.

export interface BackupOptions {
  store: Store;
  /** The key of an encrypted repository (passphrase, prompt, KMS). */
  keys?: KeySource;
  /**
   * S3 Object Lock retention for the archive and manifest (default: the repository's, from
   * init). The bucket must have Object Lock enabled.
   */
  objectLock?: ObjectLockValues | undefined;
  /** Files or directories; each becomes a top-level name in the snapshot (its basename). */
  sources: string[];
  /**
   * Back up this one stream as a file instead of `sources` (stdin, a command's output): its
   * source is recorded as `stdin:<name>` (stream-source.ts).
   */
  stream?: StreamSpec | undefined;
  excludes?: string[];
  /** Absolute paths never to back up (the repository and log directory, if inside a source). */
  excludePaths?: string[];
  tags?: string[];
  /** The archive settings (config/archive-settings.ts): compression, level, archiveSize. */
  codec?: ArchiveSettingValues['compression'];
  level?: ArchiveSettingValues['level'];
  /**
   * Where codec and level came from, for the error when the level does not fit the codec:
   * codec as "--compression", level as "--level {level}" or "level: {level} in FILE" ({level}
   * stands for the level).
   */
  compressionOrigin?: { codec?: string | undefined; level?: string | undefined };
  frameSize?: number;
  /**
   * Split the backup into archives of about this many bytes of (uncompressed) tar, at file
   * boundaries; a larger file gets an archive of its own. Default DEFAULT_ARCHIVE_SIZE (64 GiB).
   */
  archiveSize?: ArchiveSettingValues['archiveSize'];
  /** Frames being read or compressed at once (default: one per core, at least 3). */
  maxInFlight?: number;
  /**
   * The most memory (estimated) the entries waiting for a file's digest may take before the
   * frame being filled is cut short to get it (default 4 MiB; see ManifestQueue).
   */
  maxWaitingBytes?: number | undefined;
  /** Store everything, even if a parent backup exists. */
  full?: boolean;
  /** Compare with this backup (id, prefix or "latest") instead of the newest of the same source set. */
  parent?: string;
  /** Make a full backup when the chain's full is older than this many days (default 30; 0 = never). */
  fullAfterDays?: number;
  /** Make a full backup after this many incrementals in a row (default 0 = no limit). */
  fullEvery?: number;
  /** Read and hash every file instead of trusting size, times and inode (changes only where content differs). */
  rehash?: boolean;
  /** Store extended attributes and POSIX ACLs (default true; --no-xattrs: false). */
  xattrs?: boolean;
  /**
   * Store only what changed of a changed file, an append's tail or a large file's changed
   * chunks, as extents (default true; false: whole files, as a version 3 reader reads them).
   */
  extents?: boolean;
  /**
   * Run history and anomaly detection (default on): after the backup its run record is written
   * to history/ and it is judged against earlier comparable runs (result.anomalies); a failed
   * attempt leaves a failure record. false turns both off. Never fails a backup.
   */
  history?: false | { detector?: DetectorOptions | undefined };
  /** Wait this long for forget/prune running elsewhere to finish (default 5 minutes). */
  lockWaitMs?: number;
  /**
   * The host recorded in the backup (default os.hostname()): with the sources (and tags) it
   * picks the parent, and retention, the run history and notifications go by it.
   */
  host?: string;
  /** The backup's start time (default: now). For tests and imports of dated backups. */
  startedAt?: Date;
  onProgress?: (p: BackupProgress) => void;
  /** Called for each warning as it happens (also collected in the result). */
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
}

export interface BackupProgress {
  files: number;
  /** Bytes of the snapshot dealt with so far (read, or found unchanged). */
  bytesDone: number;
  bytesIn: number;
  bytesOut: number;
  current: string;
}

/** What a backup did: its stats (as in the manifest header) plus where it went. */
export interface BackupResult extends Omit<BackupStats, 'warnings'> {
  id: string;
  repository: string;
  repositoryCreated: boolean;
  kind: 'full' | 'incremental';
  /** The host it is recorded under (BackupOptions.host, else the machine's). */
  host: string;
  /**
   * The repository shows this machine's host name changing on every run (a container, a CI
   * runner): see host-identity.ts. Checked when the backup has no parent (all headers read).
   */
  hostWarning?: HostIdentityWarning;
  /** The backup this one was compared with (incrementals). */
  parent?: string;
  /** Why it is full or incremental ("first backup of these sources", "compared with …"). */
  kindReason: string;
  /** What the retention policy did afterwards (when asked for). */
  retention?: { removed: string[]; bytesFreed: number } | { error: string };
  time: string;
  /** Its (first) archive. */
  archiveKey: string;
  /** All its archives: one, unless it outgrew the archive size (BackupOptions.archiveSize). */
  archiveKeys: string[];
  manifestKey: string;
  /** Every warning (the manifest header keeps the first 100 and the count). */
  warnings: string[];
  /** What the anomaly detector found about this backup (when run history is on). */
  anomalies?: AnomalyFinding[];
  /** The retention hold its ransomware-class findings placed (docs/anomaly-detection.md "Anomaly hold"). */
  retentionHold?: RetentionHold;
}
