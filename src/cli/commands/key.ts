import type { Command } from 'commander';
import { listKeyFiles, type KeyFile } from '../../crypto/keys.ts';
import { UsageError } from '../../errors.ts';
import { Repository } from '../../repo/repository.ts';
import { type CommonOpts, emitJson, EXIT, exitWith, note, out, setup, withCommon, withStore } from '../common.ts';
import { table } from '../../format.ts';
import { kdfParams, kdfText, kdfWithN, newPassphrase, parseScryptN, SCRYPT_N_HELP } from '../passphrase.ts';

// s3backup key list | add | remove ID: the key files of an encrypted repository. Adding or
// removing one re-wraps nothing but the repository key: no data is re-encrypted.

function keyJson(k: KeyFile, current: string | undefined) {
  return {
    id: k.id,
    kind: k.kind,
    created: k.created,
    host: k.host,
    user: k.user,
    ...(k.label ? { label: k.label } : {}),
    ...(k.kms ? { kmsKeyId: k.kms.keyId } : {}),
    ...(k.kdf ? { kdf: kdfParams(k.kdf) } : {}),
    current: k.id === current,
  };
}

async function openEncrypted(opts: CommonOpts, command: string) {
  const s = await setup(opts, command);
  const repo = await Repository.open(s.store, s.keys).catch(async (e) => {
    await s.store.close();
    throw e;
  });
  if (!repo.encrypted) {
    await s.store.close();
    throw new UsageError(`repository ${s.store.location} is not encrypted; it has no keys`, {
      hint: 'encryption is chosen when a repository is created: "s3backup init --encrypt" on a new --repo',
    });
  }
  return { ...s, repo };
}

async function cmdList(opts: CommonOpts): Promise<void> {
  const { store, repo } = await openEncrypted(opts, 'key list');
  const { keys, invalid } = await withStore(store, () => listKeyFiles(store));
  if (opts.json) {
    emitJson({ ok: invalid.length === 0, repository: store.location, keys: keys.map((k) => keyJson(k, repo.keyId)), invalid });
    // As list does with a damaged manifest: the rest is shown, the exit code says something is wrong.
    if (invalid.length) exitWith(EXIT.warnings);
    return;
  }
  out(
    table(
      ['ID', 'KIND', 'CREATED (UTC)', 'HOST', 'USER', 'LABEL'],
      keys.map((k) => [
        `${k.id === repo.keyId ? '*' : ' '}${k.id}`,
        k.kind === 'kms' ? `kms ${k.kms?.keyId ?? ''}` : k.kdf ? `passphrase, ${kdfText(k.kdf)}` : 'passphrase',
        k.created.replace('T', ' ').replace(/\.\d+Z$/, ''),
        k.host,
        k.user,
        k.label ?? '',
      ]),
    ),
  );
  out(`${keys.length} key(s) in ${store.location}; * = the key used now`);
  for (const i of invalid) out(`  unreadable key file ${i.key}: ${i.error}`);
  if (invalid.length) {
    note(`${invalid.length} key file(s) cannot be read; they open nothing (remove them by hand if they are not s3backup's)`);
    exitWith(EXIT.warnings);
  }
}

async function cmdAdd(opts: CommonOpts & { newPasswordFile?: string; kmsKeyId?: string; label?: string; scryptN?: number }): Promise<void> {
  const { store, repo, cfg, log } = await openEncrypted(opts, 'key add');
  const key = await withStore(store, async () => {
    const spec = opts.kmsKeyId
      ? { kmsKeyId: opts.kmsKeyId, kms: { region: cfg.region, profile: cfg.profile } }
      : {
          passphrase: await newPassphrase(opts.newPasswordFile, 'S3BACKUP_NEW_PASSWORD', '--new-password-file'),
          ...(opts.scryptN ? { kdf: kdfWithN(opts.scryptN) } : {}),
        };
    return repo.addKey(spec, opts.label);
  });
  log.info(`key add ${store.location}: added ${key.kind} key ${key.id}`);
  if (opts.json) emitJson({ ok: true, repository: store.location, added: keyJson(key, repo.keyId) });
  else out(`added ${key.kind} key ${key.id} to ${store.location}`);
}

async function cmdRemove(id: string, opts: CommonOpts): Promise<void> {
  const { store, repo, log } = await openEncrypted(opts, 'key remove');
  const key = await withStore(store, () => repo.removeKey(id));
  log.info(`key remove ${store.location}: removed ${key.kind} key ${key.id}`);
  if (opts.json) emitJson({ ok: true, repository: store.location, removed: keyJson(key, repo.keyId) });
  else out(`removed ${key.kind} key ${key.id} from ${store.location}`);
}

export function registerKey(program: Command): void {
  const key = program
    .command('key')
    .description('list, add or remove the keys (passphrases, KMS keys) of an encrypted repository')
    .addHelpText(
      'after',
      `
An encrypted repository has one random repository key, stored once per key file, wrapped by a
passphrase (scrypt) or by an AWS KMS key. Any one key opens the repository. Changing a
passphrase is "key add" then "key remove" of the old one: no data is re-encrypted. The same
moves a passphrase key made by an earlier s3backup (one scrypt of N=2^17, shown by "key list")
to the current derivation, which takes about half as long to open on two cores.

Examples:
  S3BACKUP_NEW_PASSWORD=… s3backup key add --repo s3://my-bucket/host1 --label "laptop"
  s3backup key add --kms-key-id alias/backups
  s3backup key list --repo s3://my-bucket/host1
  s3backup key remove 3f2a9c0d1e4b5a6c --password-file ~/.config/s3backup/new-pass`,
    );
  withCommon(key.command('list').description('list the key files (the one used now is marked *)')).action(cmdList);
  withCommon(
    key
      .command('add')
      .description('add a passphrase (S3BACKUP_NEW_PASSWORD, --new-password-file, or asked twice) or a KMS key')
      .option('--new-password-file <file>', 'the new passphrase, first line of FILE')
      .option('--kms-key-id <id>', 'add an AWS KMS key instead of a passphrase')
      .option('--label <text>', 'a note shown by "key list"')
      .option('--scrypt-n <n>', SCRYPT_N_HELP, parseScryptN),
  ).action(cmdAdd);
  withCommon(
    key
      .command('remove')
      .description('remove a key file (not the one used now, never the last)')
      .argument('<id>', 'key id (or a unique start of it) from "key list"'),
  ).action(cmdRemove);
}
