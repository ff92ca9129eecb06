import * as path from 'node:path';
import type { Codec } from '../archive/codec.ts';
import type { ResolvedConfig } from '../config/config.ts';
import { UsageError } from '../errors.ts';
import { parseRepositoryUrl } from '../store/open.ts';
import { type BackupOptions, checkLevel } from './backup.ts';
import type { DetectorOptions } from '../monitor/anomaly.ts';
import { readExcludeFile } from './walk.ts';
import { parseArchiveSize } from './archive-out.ts';
import { checkHostName } from './host-identity.ts';

/** The detector's thresholds from the config's anomaly: section (without its enabled switch). */
export function detectorOptions(anomaly: ResolvedConfig['anomaly']): DetectorOptions {
  const { enabled: _enabled, ...rest } = anomaly ?? {};
  return rest as DetectorOptions;
}

/**
 * What `s3backup backup` with no paths would do with this configuration, minus the store.
 * `flags`: which of compression and level were given as flags (the rest came from the config
 * file), to name them when the level does not fit the codec (a usage error, here when the codec
 * is known, else once the repository's default is).
 */
export function backupOptionsFromConfig(cfg: ResolvedConfig, sources?: string[], flags: { compression?: boolean; level?: boolean } = {}): Omit<BackupOptions, 'store'> {
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
  const inFile = cfg.configFile ? ` in ${cfg.configFile}` : '';
  const compressionOrigin = {
    codec: flags.compression ? '--compression' : !flags.level && cfg.configFile ? 'compression: in the same file' : `compression:${inFile}`,
    level: flags.level ? '--level {level}' : `level: {level}${inFile}`,
  };
  if (cfg.compression !== undefined) checkLevel(cfg.compression as Codec, cfg.level, compressionOrigin);
  const repoUrl = parseRepositoryUrl(cfg.repository);
  const excludePaths = [cfg.logDir, ...(repoUrl.kind === 'local' ? [repoUrl.path] : [])].map((p) => path.resolve(p));
  return {
    sources: srcs,
    excludes,
    excludePaths,
    tags: cfg.tags ?? [],
    // The host recorded in the backup (default the machine's): --host, S3BACKUP_HOST, config host.
    ...(cfg.host !== undefined ? { host: checkHostName(cfg.host, 'the host name (--host, S3BACKUP_HOST or "host" in the config)') } : {}),
    ...(cfg.compression !== undefined ? { codec: cfg.compression as Codec } : {}),
    ...(cfg.level !== undefined ? { level: cfg.level } : {}),
    compressionOrigin,
    ...(cfg.archiveSize !== undefined ? { archiveSize: parseArchiveSize(cfg.archiveSize, 'archiveSize') } : {}),
    // Run history and anomaly detection unless anomaly.enabled is false; the rest are thresholds.
    history: cfg.anomaly?.enabled === false ? false : { detector: detectorOptions(cfg.anomaly) },
    ...(cfg.objectLock !== undefined ? { objectLock: cfg.objectLock } : {}),
    // As `s3backup backup`: the retention policy runs after each backup unless autoForget: false.
    ...(cfg.autoForget !== false ? { retention: { policy: cfg.keep } } : {}),
  };
}
