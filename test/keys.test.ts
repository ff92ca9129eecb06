// Passphrase keys (docs/format.md "Keys"): a new key's KEK is what the format says, checked here
// with node:crypto directly; key files of the earlier single-scrypt kind still open; parameters
// that opening would refuse are refused when a key is made; a planted key file with huge
// parameters is passed over, and one of a newer version is reported as needing an upgrade.
import assert from 'node:assert/strict';
import { createDecipheriv, hkdfSync, scryptSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import {
  DEFAULT_KDF,
  deriveKek,
  derivationHoldingCores,
  type KeyFile,
  keyObjectName,
  listKeyFiles,
  makeKeyFile,
  newMasterKey,
  unlockMasterKey,
  WrongPassphraseError,
} from '../src/crypto/keys.ts';
import { UsageError } from '../src/errors.ts';
import { Repository } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import { isolatedEnv, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('keys');
after(() => fs.rmSync(work, { recursive: true, force: true }));

// NFC matters: the same passphrase typed on two systems may come composed or decomposed.
const PASS = 'Gru\u0308ße aus Köln';
const REPO_ID = '0123456789abcdef0123456789abcdef';

/** The wrapped master key, opened with `kek` as the format describes (nonce ‖ ciphertext ‖ tag, AAD names repo and key). */
function unwrapByHand(k: KeyFile, kek: Buffer): Buffer {
  const b = Buffer.from(k.wrapped, 'base64');
  const d = createDecipheriv('aes-256-gcm', kek, b.subarray(0, 12));
  d.setAAD(Buffer.from(`s3backup key v1 ${REPO_ID} ${k.id}`));
  d.setAuthTag(b.subarray(b.length - 16));
  return Buffer.concat([d.update(b.subarray(12, b.length - 16)), d.final()]);
}

test('a new passphrase key: scrypt lanes of salt ‖ lane, then HKDF-SHA256, as docs/format.md says; version 2', async () => {
  const master = newMasterKey();
  const k = await makeKeyFile(master, REPO_ID, { passphrase: PASS, kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 3 } });
  assert.equal(k.version, 2);
  assert.equal(k.kind, 'passphrase');
  assert.ok(k.kdf?.name === 'scrypt-lanes');
  assert.deepEqual({ N: k.kdf.N, r: k.kdf.r, lanes: k.kdf.lanes }, { N: 2 ** 14, r: 8, lanes: 3 });
  const salt = Buffer.from(k.kdf.salt, 'base64');
  assert.equal(salt.length, 16);
  const lanes = [0, 1, 2].map((i) =>
    scryptSync(PASS.normalize('NFC'), Buffer.concat([salt, Buffer.of(i)]), 32, { N: 2 ** 14, r: 8, p: 1 }),
  );
  const kek = Buffer.from(hkdfSync('sha256', Buffer.concat(lanes), salt, 's3backup kek scrypt-lanes v1', 32));
  assert.deepEqual(unwrapByHand(k, kek), master);
  // One lane's scrypt alone, or the lanes in another order, is not the key.
  assert.throws(() => unwrapByHand(k, lanes[0]!));
  assert.throws(() =>
    unwrapByHand(
      k,
      Buffer.from(hkdfSync('sha256', Buffer.concat([lanes[1]!, lanes[0]!, lanes[2]!]), salt, 's3backup kek scrypt-lanes v1', 32)),
    ),
  );
});

test('the default derivation is two lanes of N = 2^16, r = 8 (128 MiB at once), and a repository made with it opens', async () => {
  assert.deepEqual(DEFAULT_KDF, { name: 'scrypt-lanes', N: 2 ** 16, r: 8, lanes: 2 });
  const store = new LocalStore(path.join(work, 'default'));
  const repo = await Repository.init(store, { encryption: { passphrase: PASS } });
  const { keys } = await listKeyFiles(store);
  assert.equal(keys.length, 1);
  assert.deepEqual({ ...keys[0]!.kdf, salt: undefined }, { ...DEFAULT_KDF, salt: undefined });
  const opened = await Repository.open(store, { passphrase: PASS.normalize('NFD') });
  assert.equal(opened.keyId, repo.keyId);
  await assert.rejects(Repository.open(store, { passphrase: `${PASS}!` }), WrongPassphraseError);
});

test('a key file of the earlier kind (one scrypt, version 1) still opens the repository, beside a new one', async () => {
  const store = new LocalStore(path.join(work, 'classic'));
  const repo = await Repository.init(store, { encryption: { passphrase: 'old one', kdf: { name: 'scrypt', N: 2 ** 14, r: 8, p: 1 } } });
  const { keys } = await listKeyFiles(store);
  const old = keys[0]!;
  assert.equal(old.version, 1);
  assert.deepEqual({ ...old.kdf, salt: undefined }, { name: 'scrypt', N: 2 ** 14, r: 8, p: 1, salt: undefined });
  // The earlier format: KEK = scrypt(passphrase, salt, N, r, p) itself.
  const kek = scryptSync('old one', Buffer.from(old.kdf!.salt, 'base64'), 32, { N: 2 ** 14, r: 8, p: 1 });
  const b = Buffer.from(old.wrapped, 'base64');
  const d = createDecipheriv('aes-256-gcm', kek, b.subarray(0, 12));
  d.setAAD(Buffer.from(`s3backup key v1 ${repo.config.id} ${old.id}`));
  d.setAuthTag(b.subarray(b.length - 16));
  assert.doesNotThrow(() => Buffer.concat([d.update(b.subarray(12, b.length - 16)), d.final()]));

  const added = await repo.addKey({ passphrase: 'new one', kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } });
  assert.equal(added.version, 2);
  assert.equal((await Repository.open(store, { passphrase: 'old one' })).keyId, old.id);
  assert.equal((await Repository.open(store, { passphrase: 'new one' })).keyId, added.id);
  // key list tells the two kinds apart, so that old keys can be found and replaced.
  const list = await runCli(['key', 'list', '--repo', store.location], {
    env: isolatedEnv(path.join(work, 'home'), { S3BACKUP_PASSWORD: 'old one' }),
  });
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`\\*${old.id} +passphrase, scrypt N=2\\^14 r=8 p=1 `));
  assert.match(list.stdout, new RegExp(` ${added.id} +passphrase, scrypt 2 lanes N=2\\^14 r=8 `));
});

test('parameters that opening would refuse are refused when the key is made; planted huge ones are passed over', async () => {
  const master = newMasterKey();
  // Two lanes of 2^20 would take 2 GiB at once: over the 1 GiB an opening accepts.
  await assert.rejects(
    makeKeyFile(master, REPO_ID, { passphrase: PASS, kdf: { name: 'scrypt-lanes', N: 2 ** 20, r: 8, lanes: 2 } }),
    (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.match((e as Error).message, /out of bounds.*1024 MiB/);
      return true;
    },
  );
  await assert.rejects(makeKeyFile(master, REPO_ID, { passphrase: PASS, kdf: { name: 'scrypt', N: 2 ** 21, r: 8, p: 1 } }), UsageError);

  // A key file someone put in the bucket, asking for 16 lanes of 1 GiB: skipped, not derived.
  const store = new LocalStore(path.join(work, 'planted'));
  const repo = await Repository.init(store, {
    encryption: { passphrase: PASS, kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } },
  });
  const planted: KeyFile = { ...(await listKeyFiles(store)).keys[0]!, id: 'ffffffffffffffff', created: '2000-01-01T00:00:00.000Z' };
  planted.kdf = { name: 'scrypt-lanes', N: 2 ** 20, r: 8, lanes: 16, salt: planted.kdf!.salt };
  await store.put(keyObjectName(planted.id), Buffer.from(JSON.stringify(planted)));
  // And one whose N is not a power of two, which scrypt would throw on instead of skipping it.
  const odd: KeyFile = { ...planted, id: 'dddddddddddddddd', kdf: { name: 'scrypt', N: 3 * 2 ** 14, r: 8, p: 1, salt: planted.kdf.salt } };
  await store.put(keyObjectName(odd.id), Buffer.from(JSON.stringify(odd)));
  await assert.rejects(unlockMasterKey(store, repo.config.id, { passphrase: 'not it' }), WrongPassphraseError);
  assert.equal((await unlockMasterKey(store, repo.config.id, { passphrase: PASS })).keyId, repo.keyId);

  // A key file of a later format is reported, not misread.
  const later = { ...planted, id: 'eeeeeeeeeeeeeeee', version: 3 };
  await store.put(keyObjectName(later.id), Buffer.from(JSON.stringify(later)));
  const { invalid } = await listKeyFiles(store);
  assert.deepEqual(invalid, [{ key: keyObjectName(later.id), error: 'key file version 3; upgrade s3backup' }]);
});

test('CLI: --scrypt-n is per lane, and one too large for opening is a usage error before anything is written', async () => {
  const repo = path.join(work, 'cli-repo');
  const env = isolatedEnv(path.join(work, 'home'), { S3BACKUP_PASSWORD: PASS });
  const big = await runCli(['init', '--repo', repo, '--encrypt', '--scrypt-n', String(2 ** 20)], { env });
  assert.equal(big.code, 2, big.stderr);
  assert.match(big.stderr, /--scrypt-n must be a power of two from 16384 to 524288, not 1048576/);
  assert.equal(fs.existsSync(repo), false);

  const ok = await runCli(['init', '--repo', repo, '--encrypt', '--scrypt-n', '16384'], { env });
  assert.equal(ok.code, 0, ok.stderr);
  const list = await runCli(['key', 'list', '--repo', repo, '--json'], { env });
  assert.equal(list.code, 0, list.stderr);
  const doc = JSON.parse(list.stdout) as { keys: { kdf: unknown }[] };
  assert.deepEqual(doc.keys[0]!.kdf, { name: 'scrypt-lanes', N: 16384, r: 8, lanes: 2 });
  assert.doesNotMatch(list.stdout, /salt/);
  const help = await runCli(['init', '--help'], { env });
  assert.match(
    help.stdout.replace(/\s+/g, ' '),
    /--scrypt-n <n> scrypt cost N of each of the new passphrase key's 2 lanes \(a power of two; default 65536: 128 MiB/,
  );
});

test('a derivation whose lanes take every core is announced while it runs (the backup walk waits for it), one that leaves a core free is not', async () => {
  const cores = os.availableParallelism();
  const salt = Buffer.alloc(16, 7);
  assert.equal(derivationHoldingCores(), undefined);
  const all = deriveKek(PASS, salt, { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: cores });
  assert.equal(derivationHoldingCores(), all);
  await all;
  assert.equal(derivationHoldingCores(), undefined, 'no longer once it is done');
  const failing = deriveKek(PASS, salt, { name: 'scrypt-lanes', N: 2 ** 14, r: 2 ** 20, lanes: cores });
  assert.equal(derivationHoldingCores(), failing);
  await assert.rejects(failing);
  assert.equal(derivationHoldingCores(), undefined, 'nor once it has failed');
  if (cores > 1) {
    const one = deriveKek(PASS, salt, { name: 'scrypt', N: 2 ** 14, r: 8, p: 1 });
    assert.equal(derivationHoldingCores(), undefined, `one lane leaves ${cores - 1} core(s) free`);
    await one;
  }
});
