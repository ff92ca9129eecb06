import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, webcrypto } from 'node:crypto';

/**
 * AES-256-GCM sealing of numbered pieces (archive frames, manifest segments) under a key derived
 * for one object (docs/format.md "Encryption"):
 *   key   = HKDF-SHA256(master key, salt = 16 random bytes stored with the object,
 *                       info = "s3backup <purpose> v1 <backup id>")
 *   nonce = the piece's index as a 96-bit big-endian integer (unique per key: one key per object)
 *   AAD   = "s3backup <purpose> v1 <backup id>\0" ‖ index (u64 BE) ‖ last (1 byte)
 *   sealed piece = ciphertext ‖ 16-byte tag
 * Binding the index and the backup id means pieces cannot be reordered or moved between objects;
 * the "last" flag means a cut after a complete piece is noticed too.
 */

export const TAG_BYTES = 16;
export const SALT_BYTES = 16;
const KEY_BYTES = 32;

export type Purpose = 'archive' | 'manifest';

/** Authentication failed: wrong key, or the bytes were changed, moved or cut. */
export class AuthenticationError extends Error {}

export function newSalt(): Buffer {
  return randomBytes(SALT_BYTES);
}

function nonce(index: number): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(BigInt(index), 4);
  return iv;
}

export class ObjectKey {
  private readonly key: Buffer;
  private readonly prefix: Buffer;
  private webKey: Promise<webcrypto.CryptoKey> | undefined;

  private constructor(key: Buffer, prefix: Buffer) {
    this.key = key;
    this.prefix = prefix;
  }

  static derive(master: Buffer, purpose: Purpose, id: string, salt: Buffer): ObjectKey {
    if (master.length !== KEY_BYTES) throw new Error('master key must be 32 bytes');
    if (salt.length !== SALT_BYTES) throw new AuthenticationError(`salt must be ${SALT_BYTES} bytes`);
    const info = `s3backup ${purpose} v1 ${id}`;
    return new ObjectKey(Buffer.from(hkdfSync('sha256', master, salt, info, KEY_BYTES)), Buffer.from(`${info}\0`));
  }

  private aad(index: number, last: boolean): Buffer {
    const tail = Buffer.alloc(9);
    tail.writeBigUInt64BE(BigInt(index), 0);
    tail[8] = last ? 1 : 0;
    return Buffer.concat([this.prefix, tail]);
  }

  seal(plain: Buffer, index: number, last: boolean): Buffer {
    return Buffer.concat(this.sealParts(plain, index, last));
  }

  /**
   * The sealed piece as [ciphertext, tag], to be written one after the other: joining them
   * would copy every byte once more into fresh memory, which costs as much as half the
   * encryption itself (page faults on a new 4 MiB buffer per frame).
   */
  sealParts(plain: Buffer, index: number, last: boolean): Buffer[] {
    const c = createCipheriv('aes-256-gcm', this.key, nonce(index));
    c.setAAD(this.aad(index, last));
    const body = c.update(plain);
    const f = c.final(); // empty for GCM
    return f.length ? [body, f, c.getAuthTag()] : [body, c.getAuthTag()];
  }

  /**
   * sealParts, off the main thread: WebCrypto runs AES-GCM on the libuv pool, so a backup's
   * sealing overlaps its file reading instead of adding to it (the main thread is the
   * bottleneck of a backup). Same bytes: ciphertext followed by the tag.
   */
  async sealAsync(plain: Buffer, index: number, last: boolean): Promise<Buffer[]> {
    // WebCrypto refuses shared memory (an uncompressed frame is a view of the frame pool).
    if (plain.buffer instanceof SharedArrayBuffer) return this.sealParts(plain, index, last);
    this.webKey ??= webcrypto.subtle.importKey('raw', this.key, 'AES-GCM', false, ['encrypt']);
    const sealed = await webcrypto.subtle.encrypt(
      { name: 'AES-GCM', iv: nonce(index), additionalData: this.aad(index, last), tagLength: TAG_BYTES * 8 },
      await this.webKey,
      plain,
    );
    return [Buffer.from(sealed)];
  }

  open(sealed: Buffer, index: number, last: boolean): Buffer {
    if (sealed.length < TAG_BYTES) throw new AuthenticationError('too short to hold an authentication tag');
    const d = createDecipheriv('aes-256-gcm', this.key, nonce(index));
    d.setAAD(this.aad(index, last));
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const body = d.update(sealed.subarray(0, sealed.length - TAG_BYTES));
    try {
      d.final();
    } catch {
      throw new AuthenticationError('authentication failed');
    }
    return body;
  }
}
