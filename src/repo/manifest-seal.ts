import * as fs from 'node:fs';
import { IntegrityError } from '../errors.ts';
import { MAX_MANIFEST_HEAD } from './manifest.ts';
import { AuthenticationError, newSalt, ObjectKey, SALT_BYTES, TAG_BYTES } from '../crypto/aead.ts';

/**
 * A sealed manifest (docs/format.md "Encryption"): the plain manifest's bytes (zstd head frame,
 * then the entries' zstd frames) cut into segments, each sealed on its own:
 *   "S3BKMAN1" ‖ salt (16) ‖ { length (u32 BE) ‖ sealed segment }…
 * Segment 0 is exactly the head frame, so `list` decrypts the header from one small ranged GET;
 * the entries follow in segments of at most 4 MiB; the last segment is sealed as "last".
 */

export const SEALED_MANIFEST_MAGIC = Buffer.from('S3BKMAN1');
const PREFIX = SEALED_MANIFEST_MAGIC.length + SALT_BYTES;
const SEGMENT = 4 << 20;
/**
 * The head segment: the head frame (header and archives lines, frame tables; they decompress to
 * at most MAX_MANIFEST_HEAD bytes, so the compressed frame is no larger) and its padding, sealed.
 */
const MAX_HEAD = MAX_MANIFEST_HEAD + (MAX_MANIFEST_HEAD >> 7) + (64 << 10);

function segments(bodyLen: number): number {
  return Math.max(1, Math.ceil(bodyLen / SEGMENT));
}

/** Size of the sealed object for a head frame and entries of these sizes. */
export function sealedManifestSize(headLen: number, bodyLen: number): number {
  return PREFIX + 4 + headLen + TAG_BYTES + segments(bodyLen) * (4 + TAG_BYTES) + bodyLen;
}

function lengthPrefixed(sealed: Buffer): Buffer[] {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(sealed.length);
  return [len, sealed];
}

/** Seal a manifest: its head frame, and the entries' frames that follow it (none in version 3). */
export function sealManifest(master: Buffer, id: string, head: Buffer, body: Buffer): Buffer {
  const salt = newSalt();
  const key = ObjectKey.derive(master, 'manifest', id, salt);
  const parts: Buffer[] = [SEALED_MANIFEST_MAGIC, salt, ...lengthPrefixed(key.seal(head, 0, false))];
  const n = segments(body.length);
  for (let i = 0; i < n; i++) {
    parts.push(...lengthPrefixed(key.seal(body.subarray(i * SEGMENT, (i + 1) * SEGMENT), i + 1, i === n - 1)));
  }
  return Buffer.concat(parts);
}

export function isSealedManifest(prefix: Buffer): boolean {
  return prefix.length >= SEALED_MANIFEST_MAGIC.length && prefix.subarray(0, SEALED_MANIFEST_MAGIC.length).equals(SEALED_MANIFEST_MAGIC);
}

/**
 * The head frame from the start of a sealed manifest, or how many bytes are needed for it.
 * Throws IntegrityError naming `where` if it is not a sealed manifest or does not authenticate.
 */
export function openManifestHead(
  master: Buffer,
  id: string,
  prefix: Buffer,
  where: string,
  whole: boolean,
): { head: Buffer } | { need: number } {
  if (prefix.length < PREFIX + 4) {
    if (!whole) return { need: PREFIX + 4 };
    throw new IntegrityError(`manifest ${where} is truncated`);
  }
  if (!isSealedManifest(prefix)) {
    throw new IntegrityError(
      `manifest ${where} is not encrypted, but this repository is: refusing it (tampered, or copied in from elsewhere)`,
    );
  }
  const len = prefix.readUInt32BE(PREFIX);
  if (len > MAX_HEAD) throw new IntegrityError(`manifest ${where}: its header segment claims ${len} bytes (corrupt)`);
  const end = PREFIX + 4 + len;
  if (end > prefix.length) {
    if (!whole) return { need: end };
    throw new IntegrityError(`manifest ${where} is truncated`);
  }
  const key = ObjectKey.derive(master, 'manifest', id, prefix.subarray(SEALED_MANIFEST_MAGIC.length, PREFIX));
  try {
    return { head: key.open(prefix.subarray(PREFIX + 4, end), 0, false) };
  } catch (e) {
    if (e instanceof AuthenticationError) {
      throw new IntegrityError(
        `manifest ${where} fails authentication (segment 0, its header): it was modified, or it is not this backup's`,
      );
    }
    throw e;
  }
}

/** Decrypt a sealed manifest file into `outFile` (the plain manifest), checking every segment. */
export async function openManifestFile(master: Buffer, id: string, inFile: string, outFile: string, where: string): Promise<void> {
  const fd = await fs.promises.open(inFile, 'r');
  const out = await fs.promises.open(outFile, 'w', 0o600);
  try {
    const size = (await fd.stat()).size;
    const read = async (pos: number, len: number): Promise<Buffer> => {
      const b = Buffer.allocUnsafe(len);
      const { bytesRead } = await fd.read(b, 0, len, pos);
      if (bytesRead < len) throw new IntegrityError(`manifest ${where} is truncated (at byte ${pos + bytesRead})`);
      return b;
    };
    const pre = await read(0, Math.min(size, PREFIX));
    if (!isSealedManifest(pre)) {
      throw new IntegrityError(
        `manifest ${where} is not encrypted, but this repository is: refusing it (tampered, or copied in from elsewhere)`,
      );
    }
    if (size < PREFIX + 4) throw new IntegrityError(`manifest ${where} is truncated`);
    const key = ObjectKey.derive(master, 'manifest', id, pre.subarray(SEALED_MANIFEST_MAGIC.length));
    let pos = PREFIX;
    for (let i = 0; pos < size; i++) {
      const len = (await read(pos, 4)).readUInt32BE(0);
      if (len > (i === 0 ? MAX_HEAD : SEGMENT + TAG_BYTES))
        throw new IntegrityError(`manifest ${where}: segment ${i} has an impossible length (${len})`);
      const sealed = await read(pos + 4, len);
      pos += 4 + len;
      const last = pos >= size;
      if (i === 0 && last) throw new IntegrityError(`manifest ${where} is truncated (no entries after its header)`);
      let plain: Buffer;
      try {
        plain = key.open(sealed, i, i > 0 && last);
      } catch (e) {
        if (!(e instanceof AuthenticationError)) throw e;
        throw new IntegrityError(
          `manifest ${where} fails authentication at segment ${i} (byte ${pos - 4 - len}): it was modified, cut short, or is not this backup's`,
        );
      }
      await out.write(plain);
    }
  } finally {
    await fd.close();
    await out.close();
  }
}
