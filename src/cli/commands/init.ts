import type { Command } from 'commander';
import { ObjectLockSettings } from '../../config/backup-settings.ts';
import type { FlagOptions } from '../../config/settings.ts';
import type { NewKeySpec } from '../../crypto/keys.ts';
import { UsageError } from '../../errors.ts';
import { Repository } from '../../repo/repository.ts';
import { type CommonOpts, emitJson, out, setup, withCommon, withStore } from '../common.ts';
import { flagValues, settingOptions } from '../settings.ts';
import { kdfWithN, newPassphrase, parseScryptN, SCRYPT_N_HELP } from '../passphrase.ts';

// s3backup init [--encrypt | --kms-key-id ID] [--object-lock-days N --object-lock-mode M]:
// create a repository. Encryption is chosen here, once: every later command on an encrypted
// repository needs its key.

type InitOpts = CommonOpts &
  FlagOptions<typeof ObjectLockSettings> & {
    encrypt?: boolean;
    kmsKeyId?: string;
    keyLabel?: string;
    scryptN?: number;
  };

async function cmdInit(opts: InitOpts): Promise<void> {
  const { cfg, store, log, keys } = await setup(opts, 'init');
  // Each lock flag over its "objectLock" key; together they must give both or neither.
  const lockFlags = flagValues(ObjectLockSettings, opts);
  const days = lockFlags.days ?? cfg.objectLock?.days;
  const mode = lockFlags.mode ?? cfg.objectLock?.mode;
  if ((days === undefined) !== (mode === undefined)) {
    throw new UsageError('Object Lock needs both --object-lock-days and --object-lock-mode', {
      hint: 'e.g. --object-lock-days 30 --object-lock-mode GOVERNANCE',
    });
  }
  const result = await withStore(store, async () => {
    await store.probe();
    const lock = await store.capabilities().versions?.objectLockStatus();
    if (days !== undefined && !lock?.enabled) {
      throw new UsageError(
        lock
          ? `bucket of ${store.location} does not have Object Lock enabled; --object-lock-days cannot be honoured`
          : `${store.location} is not an S3 bucket; Object Lock is an S3 feature`,
        {
          hint: 'Object Lock is chosen when a bucket is created (aws s3api create-bucket --object-lock-enabled-for-bucket); use such a bucket, or drop the lock options',
        },
      );
    }
    let encryption: NewKeySpec | undefined;
    if (opts.kmsKeyId) encryption = { kmsKeyId: opts.kmsKeyId, kms: { region: cfg.region, profile: cfg.profile } };
    else if (opts.encrypt) {
      encryption = {
        passphrase: await newPassphrase(
          opts.passwordCommand ? undefined : cfg.passwordFile,
          'S3BACKUP_PASSWORD',
          '--password-file',
          keys.fetchPassphrase,
        ),
        ...(opts.scryptN ? { kdf: kdfWithN(opts.scryptN) } : {}),
      };
    }
    const repo = await Repository.init(store, {
      encryption,
      keyLabel: opts.keyLabel,
      ...(days !== undefined ? { defaults: { objectLock: { days, mode: mode! } } } : {}),
    });
    return { repo, lock };
  });
  const { repo, lock } = result;
  const enc = repo.encrypted
    ? opts.kmsKeyId
      ? `encrypted, key ${repo.keyId} wrapped by AWS KMS key ${opts.kmsKeyId}`
      : `encrypted, passphrase key ${repo.keyId}`
    : 'not encrypted';
  const lockText = !lock
    ? 'not applicable (local directory)'
    : lock.enabled
      ? `enabled on the bucket${lock.defaultRetention ? ` (default retention ${lock.defaultRetention.mode} ${lock.defaultRetention.days ?? 0}d ${lock.defaultRetention.years ?? 0}y)` : ''}` +
        (days !== undefined
          ? `; new archives and manifests are kept ${days} days (${mode})`
          : '; give --object-lock-days to backups to use it')
      : 'not enabled on the bucket';
  log.info(`init ${store.location}: ${enc}; Object Lock ${lockText}`);
  if (opts.json) {
    emitJson({
      ok: true,
      repository: store.location,
      id: repo.config.id,
      encrypted: repo.encrypted,
      ...(repo.keyId ? { keyId: repo.keyId } : {}),
      objectLock: lock
        ? {
            bucketEnabled: lock.enabled,
            ...(lock.defaultRetention ? { defaultRetention: lock.defaultRetention } : {}),
            ...(days !== undefined ? { days, mode } : {}),
          }
        : null,
    });
    return;
  }
  out(`created repository ${store.location} (${enc})`);
  out(`  Object Lock: ${lockText}`);
  if (repo.encrypted && !opts.kmsKeyId)
    out('  keep the passphrase safe: without it (or another key: "s3backup key add") no backup can be read');
}

export function registerInit(program: Command): void {
  const lock = settingOptions(ObjectLockSettings, {
    days: 'keep every archive and manifest undeletable for N days (bucket must have Object Lock)',
    mode: 'Object Lock mode: GOVERNANCE (privileged users can lift it) or COMPLIANCE (nobody can)',
  });
  withCommon(
    program
      .command('init')
      .description('create a repository (optionally encrypted, optionally with S3 Object Lock retention)')
      .option(
        '--encrypt',
        'encrypt everything client-side (AES-256-GCM); the passphrase comes from S3BACKUP_PASSWORD, --password-file, --password-command, or is asked twice',
      )
      .option(
        '--kms-key-id <id>',
        'encrypt, with the repository key wrapped by this AWS KMS key instead of a passphrase (implies --encrypt)',
      )
      .option('--key-label <text>', 'a note on the first key, shown by "key list"')
      .option('--scrypt-n <n>', SCRYPT_N_HELP, parseScryptN)
      .addOption(lock.days)
      .addOption(lock.mode)
      .addHelpText(
        'after',
        `
Without init, the first backup creates an unencrypted repository. Encryption is decided here
and cannot be switched later: archives and manifests are sealed with keys derived from a random
repository key, which is stored only wrapped by each passphrase or KMS key (see "s3backup key").
init also tells whether the bucket has S3 Object Lock enabled.

Examples:
  S3BACKUP_PASSWORD=… s3backup init --repo s3://my-bucket/host1 --encrypt
  s3backup init --repo s3://my-bucket/host1 --kms-key-id alias/backups
  s3backup init --repo s3://locked-bucket/host1 --object-lock-days 30 --object-lock-mode GOVERNANCE`,
      ),
  ).action(cmdInit);
}
