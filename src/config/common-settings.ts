import { z } from 'zod';
import { setting } from './settings.ts';

/**
 * What every command reads besides the store: where its log goes and where the passphrase of an
 * encrypted repository is. The log directory's default depends on the environment (XDG_STATE_HOME,
 * HOME): resolveConfig applies it.
 */
export const CommonSettings = z.object({
  logDir: setting(z.string().min(1), {
    flag: '--log-dir <dir>',
    help: 'where backup.log and backup-errors.log go (env S3BACKUP_LOG_DIR)',
    env: 'S3BACKUP_LOG_DIR',
  }).optional(),
  /** File holding the passphrase of an encrypted repository (first line). Env S3BACKUP_PASSWORD gives it directly. */
  passwordFile: setting(z.string().min(1), {
    flag: '--password-file <file>',
    help: 'passphrase of an encrypted repository, first line of FILE (env S3BACKUP_PASSWORD gives it directly; else asked on a terminal)',
    env: 'S3BACKUP_PASSWORD_FILE',
  }).optional(),
  /**
   * A shell command that prints the passphrase on its first line of output (a password manager,
   * a cloud secret manager's CLI). Run only when an encrypted repository needs it.
   */
  passwordCommand: setting(z.string().min(1), {
    flag: '--password-command <cmd>',
    help: 'passphrase of an encrypted repository, first line printed by the shell command CMD, run only when needed (env S3BACKUP_PASSWORD_COMMAND)',
    env: 'S3BACKUP_PASSWORD_COMMAND',
  }).optional(),
});
