import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, scrypt as scryptCb, type ScryptOptions } from 'node:crypto';
import * as os from 'node:os';
import { z } from 'zod';
import { AlreadyExistsError, S3BackupError, UsageError } from '../errors.ts';
import { checkShape, isTime, type Same, TIME_MESSAGE } from '../schema.ts';
import { getBuffer, type Store } from '../store/store.ts';
import { kmsDecrypt, kmsGenerateDataKey, type KmsOptions } from './kms.ts';

/**
 * Repository keys (docs/format.md "Encryption"). An encrypted repository has one random 256-bit
 * master key. It is stored only wrapped (AES-256-GCM), once per key file under keys/:
 *   - passphrase keys: wrapped with a key derived from the passphrase (Kdf), parameters in the file;
 *   - KMS keys: wrapped with a data key from AWS KMS GenerateDataKey, whose KMS-encrypted blob
 *     is in the file (KMS Decrypt gets it back).
 * Adding or removing a key file changes who can open the repository without re-encrypting data.
 */

export const KEYS_PREFIX = 'keys/';
export const KEY_FORMAT = 's3backup-key' as const;
const KEY_RE = /^keys\/([0-9a-f]{16})\.json$/;
const MASTER_BYTES = 32;

/**
 * How a passphrase becomes the key that wraps the master key (docs/format.md "Keys"):
 *   - scrypt: scrypt(passphrase, salt, N, r, p). What earlier s3backup made (N = 2^17); still opened.
 *   - scrypt-lanes: `lanes` independent scrypt(passphrase, salt ‖ lane, N, r, 1), run at the same
 *     time on as many cores, then HKDF-SHA256 over them all. Why: a backup waits for its unlock,
 *     and Node's scrypt computes even the parallel lanes of p > 1 one after the other. Two lanes
 *     of N = 2^16 cost a guess what scrypt N = 2^16, p = 2 does (OWASP lists it as equivalent to
 *     N = 2^17, p = 1), with the same 128 MiB, in half the wall time on two cores.
 */
export type Kdf = { name: 'scrypt'; N: number; r: number; p: number } | { name: 'scrypt-lanes'; N: number; r: number; lanes: number };

export const DEFAULT_KDF = { name: 'scrypt-lanes', N: 2 ** 16, r: 8, lanes: 2 } as const satisfies Kdf;

/**
 * The most memory a passphrase's derivation may take at once. Opening checks it so that a
 * planted key file cannot make us spend gigabytes on it; making a key checks it so that we
 * never write one that opening would refuse.
 */
export const MAX_KDF_MEMORY = 2 ** 30;

/** scrypt calls the derivation runs at the same time (one for scrypt: Node computes its p lanes in turn). */
function kdfLanes(kdf: Kdf): number {
  return kdf.name === 'scrypt-lanes' ? kdf.lanes : 1;
}

/** Bytes of memory the derivation takes at once (scrypt: 128·N·r per lane running). */
export function kdfMemory(kdf: Kdf): number {
  return 128 * kdf.N * kdf.r * kdfLanes(kdf);
}

/** Parameters within what opening accepts (see MAX_KDF_MEMORY); anything else is not ours. */
function kdfAcceptable(kdf: { name?: string; N?: number; r?: number; p?: number; lanes?: number } | undefined): kdf is Kdf {
  // scrypt itself refuses an N that is not a power of two: such a file is skipped, like any other not ours.
  if (!kdf || !(Number.isInteger(kdf.N) && kdf.N! >= 2 && (kdf.N! & (kdf.N! - 1)) === 0 && Number.isInteger(kdf.r) && kdf.r! >= 1))
    return false;
  const k = kdf as Kdf;
  if (k.name === 'scrypt') return Number.isInteger(k.p) && k.p >= 1 && k.p <= 16 && kdfMemory(k) <= MAX_KDF_MEMORY;
  if (k.name === 'scrypt-lanes') return Number.isInteger(k.lanes) && k.lanes >= 1 && k.lanes <= 16 && kdfMemory(k) <= MAX_KDF_MEMORY;
  return false;
}

export interface KeyFile {
  format: typeof KEY_FORMAT;
  /** 2 for a scrypt-lanes key (older s3backup then says "upgrade" instead of "wrong passphrase"), else 1. */
  version: 1 | 2;
  id: string;
  created: string;
  host: string;
  user: string;
  label?: string;
  kind: 'passphrase' | 'kms';
  kdf?: Kdf & { salt: string };
  kms?: { keyId: string; blob: string };
  /** base64 of nonce (12) ‖ wrapped master key (32) ‖ tag (16). */
  wrapped: string;
}

const KdfSchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('scrypt'), N: z.number(), r: z.number(), p: z.number() }),
  z.object({ name: z.literal('scrypt-lanes'), N: z.number(), r: z.number(), lanes: z.number() }),
]);
true satisfies Same<z.output<typeof KdfSchema>, Kdf>;

/**
 * What a reader accepts as a key file (src/schema.ts). The KDF's bounds are not checked
 * here but where a passphrase is tried (kdfAcceptable); a passphrase key needs its kdf, a KMS
 * key its kms.
 */
const KeyFileSchema = z
  .object({
    format: z.literal(KEY_FORMAT),
    version: z.literal([1, 2]),
    id: z.string(),
    created: z.string().refine(isTime, TIME_MESSAGE),
    host: z.string(),
    user: z.string(),
    label: z.string().optional(),
    kind: z.enum(['passphrase', 'kms']),
    kdf: z.intersection(KdfSchema, z.object({ salt: z.string() })).optional(),
    kms: z.object({ keyId: z.string(), blob: z.string() }).optional(),
    wrapped: z.string(),
  })
  .superRefine((k, ctx) => {
    const need = k.kind === 'passphrase' ? 'kdf' : 'kms';
    if (k[need] === undefined) ctx.addIssue({ code: 'custom', path: [need], message: `is missing (a ${k.kind} key needs it)` });
  });
true satisfies Same<z.output<typeof KeyFileSchema>, KeyFile>;

/** Where the key that opens a repository comes from. */
export interface KeySource {
  /** The passphrase (S3BACKUP_PASSWORD, --password-file). */
  passphrase?: string | undefined;
  /** Fetch the passphrase (--password-command); called only if a repository needs one, in place of `passphrase`. */
  fetchPassphrase?: (() => Promise<string>) | undefined;
  /** Ask for the passphrase (a terminal prompt); called only if it is needed. */
  prompt?: (() => Promise<string>) | undefined;
  kms?: KmsOptions | undefined;
}

export interface UnlockedKey {
  master: Buffer;
  /** The key file that opened it. */
  keyId: string;
}

export type NewKeySpec = { passphrase: string; kdf?: Kdf | undefined } | { kmsKeyId: string; kms?: KmsOptions | undefined };

export class WrongPassphraseError extends S3BackupError {}

export function newMasterKey(): Buffer {
  return randomBytes(MASTER_BYTES);
}

function wrapAad(repoId: string, keyId: string): Buffer {
  return Buffer.from(`s3backup key v1 ${repoId} ${keyId}`);
}

function wrap(kek: Buffer, master: Buffer, aad: Buffer): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek, iv);
  c.setAAD(aad);
  return Buffer.concat([iv, c.update(master), c.final(), c.getAuthTag()]).toString('base64');
}

function unwrap(kek: Buffer, wrapped: string, aad: Buffer): Buffer | undefined {
  const b = Buffer.from(wrapped, 'base64');
  if (b.length !== 12 + MASTER_BYTES + 16) return undefined;
  const d = createDecipheriv('aes-256-gcm', kek, b.subarray(0, 12));
  d.setAAD(aad);
  d.setAuthTag(b.subarray(12 + MASTER_BYTES));
  const out = d.update(b.subarray(12, 12 + MASTER_BYTES));
  try {
    d.final();
  } catch {
    return undefined;
  }
  return out;
}

function scrypt(passphrase: string, salt: Buffer, p: { N: number; r: number; p: number }): Promise<Buffer> {
  const opts: ScryptOptions = { N: p.N, r: p.r, p: p.p, maxmem: 128 * p.N * p.r * 2 + (1 << 20) };
  return new Promise((resolve, reject) => scryptCb(passphrase.normalize('NFC'), salt, 32, opts, (e, k) => (e ? reject(e) : resolve(k))));
}

/** Derivations running now whose lanes take every core (see derivationHoldingCores). */
const holdingCores = new Set<Promise<unknown>>();

/**
 * A passphrase derivation that has every core busy now, or undefined. Other work started
 * meanwhile only makes it, and so whatever waits for the key, finish later: a backup's walk does
 * not run ahead then (SourceWalk.runAheadWhile), as it does while one lane leaves a core free.
 */
export function derivationHoldingCores(): Promise<unknown> | undefined {
  return holdingCores.values().next().value;
}

/** The key-encryption key a passphrase gives under `kdf` (see Kdf). */
export function deriveKek(passphrase: string, salt: Buffer, kdf: Kdf): Promise<Buffer> {
  const derived = kdf.name === 'scrypt' ? scrypt(passphrase, salt, kdf) : scryptLanes(passphrase, salt, kdf);
  if (kdfLanes(kdf) >= os.availableParallelism()) {
    holdingCores.add(derived);
    const done = () => holdingCores.delete(derived);
    derived.then(done, done);
  }
  return derived;
}

async function scryptLanes(passphrase: string, salt: Buffer, kdf: Extract<Kdf, { name: 'scrypt-lanes' }>): Promise<Buffer> {
  // Node runs each scrypt call on its own libuv pool thread, so the lanes run side by side.
  const lanes = await Promise.all(
    Array.from({ length: kdf.lanes }, (_, i) => scrypt(passphrase, Buffer.concat([salt, Buffer.of(i)]), { N: kdf.N, r: kdf.r, p: 1 })),
  );
  return Buffer.from(hkdfSync('sha256', Buffer.concat(lanes), salt, 's3backup kek scrypt-lanes v1', 32));
}

function kmsContext(repoId: string, keyId: string): Record<string, string> {
  return { 's3backup-repository': repoId, 's3backup-key': keyId };
}

/** A new key file wrapping `master` for the repository `repoId`. */
export async function makeKeyFile(master: Buffer, repoId: string, spec: NewKeySpec, label?: string): Promise<KeyFile> {
  const id = randomBytes(8).toString('hex');
  const base = {
    format: KEY_FORMAT as typeof KEY_FORMAT,
    version: 1 as const,
    id,
    created: new Date().toISOString(),
    host: os.hostname(),
    user: safeUser(),
    ...(label ? { label } : {}),
  };
  if ('passphrase' in spec) {
    if (spec.passphrase === '') throw new UsageError('the passphrase is empty', { hint: 'choose a non-empty passphrase' });
    const kdf: Kdf = spec.kdf ?? DEFAULT_KDF;
    if (!kdfAcceptable(kdf))
      throw new UsageError(
        `passphrase key parameters out of bounds: ${JSON.stringify(kdf)} (at most ${MAX_KDF_MEMORY / 2 ** 20} MiB at once)`,
      );
    const salt = randomBytes(16);
    const kek = await deriveKek(spec.passphrase, salt, kdf);
    return {
      ...base,
      version: kdf.name === 'scrypt-lanes' ? 2 : 1,
      kind: 'passphrase',
      kdf: { ...kdf, salt: salt.toString('base64') },
      wrapped: wrap(kek, master, wrapAad(repoId, id)),
    };
  }
  const dk = await kmsGenerateDataKey(spec.kmsKeyId, kmsContext(repoId, id), spec.kms);
  return {
    ...base,
    kind: 'kms',
    kms: { keyId: dk.keyArn, blob: dk.blob.toString('base64') },
    wrapped: wrap(dk.plaintext, master, wrapAad(repoId, id)),
  };
}

function safeUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return '';
  }
}

export function keyObjectName(id: string): string {
  return `${KEYS_PREFIX}${id}.json`;
}

/** Store a key file (create-only). */
export async function putKeyFile(store: Store, k: KeyFile): Promise<void> {
  try {
    await store.put(keyObjectName(k.id), Buffer.from(`${JSON.stringify(k, null, 2)}\n`), {
      createOnly: true,
      contentType: 'application/json',
    });
  } catch (e) {
    if (e instanceof AlreadyExistsError) throw new S3BackupError(`key ${k.id} already exists in ${store.location}; try again`);
    throw e;
  }
}

/** Every key file of the repository (unreadable ones reported, not fatal). */
export async function listKeyFiles(store: Store): Promise<{ keys: KeyFile[]; invalid: { key: string; error: string }[] }> {
  const keys: KeyFile[] = [];
  const invalid: { key: string; error: string }[] = [];
  for await (const o of store.list(KEYS_PREFIX)) {
    if (!KEY_RE.test(o.key)) continue;
    try {
      const raw = JSON.parse((await getBuffer(store, o.key)).toString('utf8')) as { format?: unknown; version?: unknown } | null;
      if (raw?.format !== KEY_FORMAT) throw new Error('not an s3backup key file');
      if (typeof raw.version === 'number' && raw.version > 2) throw new Error(`key file version ${raw.version}; upgrade s3backup`);
      const k = checkShape(KeyFileSchema, raw, (problem) => new Error(`damaged: ${problem}`));
      if (`${KEYS_PREFIX}${k.id}.json` !== o.key)
        throw new Error(`damaged: it holds key ${JSON.stringify(k.id)}, not the one its name says`);
      keys.push(k);
    } catch (e) {
      invalid.push({ key: o.key, error: (e as Error).message });
    }
  }
  keys.sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : 0));
  return { keys, invalid };
}

async function tryPassphrase(keys: KeyFile[], repoId: string, passphrase: string): Promise<UnlockedKey | undefined> {
  for (const k of keys) {
    const kdf = k.kdf;
    // Bounds, so that a planted key file cannot make us spend gigabytes or hours on it.
    if (!kdfAcceptable(kdf) || typeof kdf.salt !== 'string') continue;
    const kek = await deriveKek(passphrase, Buffer.from(kdf.salt, 'base64'), kdf);
    const master = unwrap(kek, k.wrapped, wrapAad(repoId, k.id));
    if (master) return { master, keyId: k.id };
  }
  return undefined;
}

/**
 * Open the repository's master key: with the passphrase if one is given, else with a KMS key if
 * the repository has one, else by asking (prompt). A wrong passphrase is one clear error.
 */
export async function unlockMasterKey(store: Store, repoId: string, source: KeySource): Promise<UnlockedKey> {
  const { keys, invalid } = await listKeyFiles(store);
  const where = store.location;
  if (keys.length === 0) {
    throw new S3BackupError(`encrypted repository ${where} has no readable key file under ${KEYS_PREFIX}`, {
      hint: invalid.length
        ? `${invalid[0]!.key}: ${invalid[0]!.error}`
        : 'its keys/ objects were deleted; without one no backup in it can be read',
    });
  }
  const pass = keys.filter((k) => k.kind === 'passphrase');
  const kms = keys.filter((k) => k.kind === 'kms' && k.kms);
  const wrong = () =>
    new WrongPassphraseError(`wrong passphrase for repository ${where} (it matches none of its ${pass.length} passphrase key(s))`, {
      hint: 'check S3BACKUP_PASSWORD, --password-file or --password-command; "s3backup key list" shows the keys (after opening with a right one)',
    });
  const given = source.passphrase ?? (await source.fetchPassphrase?.());
  if (given !== undefined) {
    if (pass.length === 0) {
      throw new UsageError(`repository ${where} has no passphrase keys (it is opened with AWS KMS)`, {
        hint: 'unset S3BACKUP_PASSWORD / --password-file / --password-command, and give credentials allowed to kms:Decrypt',
      });
    }
    const r = await tryPassphrase(pass, repoId, given);
    if (!r) throw wrong();
    return r;
  }
  let kmsError: unknown;
  for (const k of kms) {
    try {
      const kek = await kmsDecrypt(Buffer.from(k.kms!.blob, 'base64'), kmsContext(repoId, k.id), k.kms!.keyId, source.kms);
      const master = unwrap(kek, k.wrapped, wrapAad(repoId, k.id));
      if (master) return { master, keyId: k.id };
      kmsError = new S3BackupError(`key file ${keyObjectName(k.id)} does not open with its KMS data key (it was changed)`);
    } catch (e) {
      kmsError = e;
    }
  }
  if (pass.length > 0 && source.prompt) {
    const r = await tryPassphrase(pass, repoId, await source.prompt());
    if (!r) throw wrong();
    return r;
  }
  if (kmsError && pass.length === 0) throw kmsError;
  throw new UsageError(`repository ${where} is encrypted: its passphrase is needed`, {
    hint: `set S3BACKUP_PASSWORD, use --password-file FILE or --password-command CMD, or run on a terminal to be asked${kmsError ? ` (its KMS key failed: ${(kmsError as Error).message})` : ''}`,
  });
}
