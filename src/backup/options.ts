import * as path from 'node:path';
import type { ResolvedConfig } from '../config/config.ts';
import { ArchiveSettings } from '../config/archive-settings.ts';
import { type FileValues, resolveSettings } from '../config/settings.ts';
import { UsageError } from '../errors.ts';
import { locateRepository, type RepositoryLocation } from '../store/open.ts';
import { checkLevel } from './compression.ts';
import type { BackupOptions } from './types.ts';
import type { DetectorOptions } from '../monitor/anomaly.ts';
import { readExcludeFile } from './walk.ts';
import { checkHostName } from './host-identity.ts';
import type { KeepPolicy } from '../retention/policy.ts';

/**
 * The retention policy applied (forget + prune) after each backup, by the steps after it
 * (src/run/after-backup.ts); absent when autoForget is false. A failure there is a warning,
 * never a failed backup.
 */
export interface RetentionSetting {
  policy?: KeepPolicy | undefined;
}

/** A backup as the configuration describes it: its options (minus the store), and what follows it. */
export type ConfiguredBackup = Omit<BackupOptions, 'store'> & { retention?: RetentionSetting };

/** The detector's thresholds from the config's anomaly: section (without its enabled switch). */
export function detectorOptions(anomaly: ResolvedConfig['anomaly']): DetectorOptions {
  const { enabled: _enabled, ...rest } = anomaly ?? {};
  return rest as DetectorOptions;
}

/**
 * What `s3backup backup` with no paths would do with this configuration, minus the store.
 * `given.location`: the repository's, as the command located it (default: located from cfg); a
 * local one is never backed up into itself. `given.archiveFlags`: the archive settings given as
 * flags (cli/settings.ts flagValues); they win over the config file, and are named when the
 * level does not fit the codec (a usage error, here when the codec is known, else once the
 * repository's default is).
 */
export function backupOptionsFromConfig(
  cfg: ResolvedConfig,
  sources?: string[],
  given: { location?: RepositoryLocation; archiveFlags?: Partial<FileValues<typeof ArchiveSettings>> } = {},
): ConfiguredBackup {
  const archiveFlags = given.archiveFlags ?? {};
  const srcs = sources?.length ? sources : (cfg.sources ?? []);
  if (srcs.length === 0) {
    throw new UsageError('nothing to back up: no sources', {
      hint: 'give the paths (s3backup backup ./my-data) or set "sources" in s3backup.yaml',
    });
  }
  const excludes = [...(cfg.exclude ?? [])];
  if (cfg.excludeFile) {
    try {
      excludes.push(...readExcludeFile(cfg.excludeFile));
    } catch (e) {
      throw new UsageError(`cannot read exclude file ${cfg.excludeFile}: ${(e as Error).message}`);
    }
  }
  const archive = resolveSettings(ArchiveSettings, { flags: archiveFlags, file: cfg });
  const codecFlag = archiveFlags.compression !== undefined;
  const levelFlag = archiveFlags.level !== undefined;
  const inFile = cfg.configFile ? ` in ${cfg.configFile}` : '';
  const compressionOrigin = {
    codec: codecFlag ? '--compression' : !levelFlag && cfg.configFile ? 'compression: in the same file' : `compression:${inFile}`,
    level: levelFlag ? '--level {level}' : `level: {level}${inFile}`,
  };
  if (archive.compression !== undefined) checkLevel(archive.compression, archive.level, compressionOrigin);
  const location = given.location ?? locateRepository(cfg.repository, cfg);
  const excludePaths = [cfg.logDir, ...(location.kind === 'local' ? [location.path] : [])].map((p) => path.resolve(p));
  return {
    sources: srcs,
    excludes,
    excludePaths,
    tags: cfg.tags ?? [],
    // The host recorded in the backup (default the machine's): --host, S3BACKUP_HOST, config host.
    ...(cfg.host !== undefined ? { host: checkHostName(cfg.host, 'the host name (--host, S3BACKUP_HOST or "host" in the config)') } : {}),
    ...(archive.compression !== undefined ? { codec: archive.compression } : {}),
    ...(archive.level !== undefined ? { level: archive.level } : {}),
    compressionOrigin,
    archiveSize: archive.archiveSize,
    // Run history and anomaly detection unless anomaly.enabled is false; the rest are thresholds.
    history: cfg.anomaly?.enabled === false ? false : { detector: detectorOptions(cfg.anomaly) },
    ...(cfg.objectLock !== undefined ? { objectLock: cfg.objectLock } : {}),
    ...(cfg.extents === false ? { extents: false } : {}),
    // As `s3backup backup`: the retention policy runs after each backup unless autoForget: false.
    ...(cfg.autoForget !== false ? { retention: { policy: cfg.keep } } : {}),
  };
}
