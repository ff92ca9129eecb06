import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

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

const IN_PLACE_PIECE = 1 << 20;

/**
 * Free a buffer's memory now: detaching its ArrayBuffer (transfer to length 0) releases it,
 * where the garbage collector would only get to it after up to 64 MB more such memory, all of it
 * in the RSS of an encrypted backup (docs/performance.md, "Why the defaults are what they are").
 * Only for a buffer
 * that owns its whole ArrayBuffer (never a view of Node's shared pool) and that nothing else holds.
 */
function release(b: Buffer): void {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length && b.buffer instanceof ArrayBuffer) b.buffer.transfer(0);
}

export type Purpose = 'archive' | 'manifest' | 'history' | 'entries';

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
   * Seal buf[0, length) in place: the ciphertext replaces the plaintext and the tag follows it
   * (buf must have TAG_BYTES of room past length). Returns the sealed length. In pieces of
   * 1 MiB, each read before it is overwritten; Node's cipher gives each piece back in fresh
   * memory, which is freed at once (see release) rather than left for the garbage collector.
   */
  sealInPlace(buf: Uint8Array, length: number, index: number, last: boolean): number {
    if (buf.length < length + TAG_BYTES) throw new Error(`no room for the authentication tag: ${buf.length} < ${length} + ${TAG_BYTES}`);
    const c = createCipheriv('aes-256-gcm', this.key, nonce(index));
    c.setAAD(this.aad(index, last));
    for (let at = 0; at < length; at += IN_PLACE_PIECE) {
      const end = Math.min(at + IN_PLACE_PIECE, length);
      const out = c.update(buf.subarray(at, end));
      if (out.length !== end - at) throw new Error('internal error: AES-GCM output differs in length from its input');
      buf.set(out, at);
      release(out);
    }
    if (c.final().length !== 0) throw new Error('internal error: AES-GCM final output is not empty');
    buf.set(c.getAuthTag(), length);
    return length + TAG_BYTES;
  }

  /**
   * The key and AAD prefix, to rebuild this key on a worker thread (fromMaterial) that seals
   * for it. Never stored or logged.
   */
  material(): { key: Uint8Array; prefix: Uint8Array } {
    return { key: new Uint8Array(this.key), prefix: new Uint8Array(this.prefix) };
  }

  static fromMaterial(m: { key: Uint8Array; prefix: Uint8Array }): ObjectKey {
    if (m.key.length !== KEY_BYTES) throw new Error('an object key must be 32 bytes');
    return new ObjectKey(Buffer.from(m.key), Buffer.from(m.prefix));
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
