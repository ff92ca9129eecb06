import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import type { Codec } from '../archive/codec.ts';
import type { FrameInfo } from '../archive/frames.ts';
import { IntegrityError } from '../errors.ts';
import { waitForDrain } from '../archive/frames.ts';

/**
 * Manifest format v1 (docs/format.md): a zstd-compressed NDJSON document.
 *   line 1: ManifestHeader  (small, so `list` reads it with one ranged GET)
 *   line 2: { archives: ArchiveRef[] } — every archive this snapshot's content lives in, with
 *           its frame table, so the manifest alone is enough to restore (even after the
 *           manifests that first wrote those archives are forgotten)
 *   line 3…: one Entry per line, in archive (tree) order
 */
export const MANIFEST_FORMAT = 's3backup-manifest';
export const MANIFEST_VERSION = 1;

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

export interface Entry {
  /** Path inside the snapshot: "<source name>/<relative path>", "/"-separated. */
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  /** Modification time, milliseconds since the epoch (fractional: sub-ms precision kept). */
  mtime: number;
  /** Status change time and inode: change detection for incremental backups. */
  ctime: number;
  ino: number;
  /** Content size (files, and hard links, which share their first link's content). */
  size: number;
  /** SHA-256 (hex) of the content (files and hard links). */
  sha256?: string;
  /** Index into the manifest's archives list of the archive holding the content. */
  archive?: number;
  /** Uncompressed offset of this entry's first tar header block in that archive. */
  header?: number;
  /** Uncompressed offset of its content in that archive. */
  offset?: number;
  /** Symlink target (as stored, never followed), or for hard links the path of the first link. */
  target?: string;
  /** Set when the entry could not be backed up (it is in the listing but has no content). */
  error?: string;
  /** Set when the file changed while it was read: the stored content may be inconsistent. */
  changed?: boolean;
}

export interface ArchiveRef {
  /** Backup id that wrote the archive. */
  id: string;
  key: string;
  codec: Codec;
  /** Bytes as stored. */
  size: number;
  /** SHA-256 (hex) of the stored bytes. */
  sha256: string;
  uncompressedSize: number;
  frames: FrameInfo[];
}

export interface BackupStats {
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Entries that were skipped or unreadable. */
  skipped: number;
  /** Bytes of file content read from the source. */
  bytesIn: number;
  /** Bytes this backup added to the store (its archive plus its manifest). */
  bytesStored: number;
  /** Compressed archive bytes written by this backup. */
  archiveBytes: number;
  durationMs: number;
  /** bytesIn / archiveBytes (1 for no data). */
  compressionRatio: number;
  warnings: number;
}

export interface ManifestHeader {
  format: typeof MANIFEST_FORMAT;
  version: number;
  id: string;
  /** ISO time the backup started. */
  time: string;
  endTime: string;
  kind: 'full' | 'incremental';
  parent?: string;
  host: string;
  /** Absolute source paths and the top-level name each has inside the snapshot. */
  sources: { path: string; name: string }[];
  tags: string[];
  toolVersion: string;
  options: { codec: Codec; level?: number | undefined; frameSize: number; excludes: string[] };
  stats: BackupStats;
  /** The first warnings (all of them are also on their entries); stats.warnings counts all. */
  warnings: string[];
}

export const MAX_HEADER_WARNINGS = 100;

/**
 * Streams entries to a temporary NDJSON file as the backup walks, bounding memory. The manifest
 * is compressed once at the end, as one zstd stream with the head lines in front (Node's zstd
 * decoder stops after the first frame, so a manifest must not be several concatenated frames).
 */
export class EntryWriter {
  readonly file: string;
  private readonly out: WriteStream;
  count = 0;

  private constructor(file: string) {
    this.file = file;
    this.out = createWriteStream(file, { highWaterMark: 1 << 20 });
  }

  static async create(): Promise<EntryWriter> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 's3backup-manifest-'));
    return new EntryWriter(path.join(dir, 'entries.ndjson'));
  }

  private pending: string[] = [];
  private pendingBytes = 0;

  /** Queue one entry; returns a promise only when the caller should wait for the disk. */
  add(e: Entry): Promise<void> | undefined {
    this.count++;
    const line = `${JSON.stringify(e)}\n`;
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes < 256 << 10) return undefined;
    return this.flush();
  }

  private flush(): Promise<void> | undefined {
    if (this.pending.length === 0) return undefined;
    const chunk = this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    return this.out.write(chunk) ? undefined : waitForDrain(this.out);
  }

  async finish(): Promise<void> {
    await this.flush();
    await new Promise<void>((resolve, reject) => this.out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }

  async dispose(): Promise<void> {
    this.out.destroy();
    await fs.rm(path.dirname(this.file), { recursive: true, force: true });
  }
}

/** The whole manifest object: the two head lines, then the entries, as one zstd stream. */
export async function encodeManifest(
  header: ManifestHeader,
  archives: ArchiveRef[],
  entries: EntryWriter,
): Promise<Buffer> {
  const head = `${JSON.stringify(header)}\n${JSON.stringify({ archives })}\n`;
  const zstd = zlib.createZstdCompress({
    chunkSize: 1 << 20,
    params: { [zlib.constants.ZSTD_c_compressionLevel]: 6, [zlib.constants.ZSTD_c_checksumFlag]: 1 },
  });
  const chunks: Buffer[] = [];
  async function* source() {
    yield Buffer.from(head);
    yield* createReadStream(entries.file, { highWaterMark: 1 << 20 });
  }
  await pipeline(source, zstd, async (compressed: AsyncIterable<Buffer>) => {
    for await (const c of compressed) chunks.push(c);
  });
  return Buffer.concat(chunks);
}

/** Split a byte stream into lines (no trailing newline handling surprises: the last line may lack \n). */
export async function* lines(stream: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
  let rest = '';
  const decoder = new TextDecoder('utf-8');
  for await (const chunk of stream) {
    rest += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let i: number;
    let start = 0;
    while ((i = rest.indexOf('\n', start)) >= 0) {
      yield rest.slice(start, i);
      start = i + 1;
    }
    rest = rest.slice(start);
  }
  rest += decoder.decode();
  if (rest.length > 0) yield rest;
}

function parseLine<T>(line: string | undefined, what: string, where: string): T {
  if (line === undefined) throw new IntegrityError(`manifest ${where} is truncated (no ${what})`);
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new IntegrityError(`manifest ${where} is corrupt (bad ${what})`);
  }
}

export function checkHeader(h: ManifestHeader, where: string): ManifestHeader {
  if (h?.format !== MANIFEST_FORMAT) throw new IntegrityError(`${where} is not an s3backup manifest`);
  if (h.version > MANIFEST_VERSION) {
    throw new IntegrityError(`${where} has manifest version ${h.version}; this s3backup reads up to ${MANIFEST_VERSION}`, {
      hint: 'upgrade s3backup',
    });
  }
  return h;
}

/** Parse just the header from the start of a manifest object (which may be truncated). */
export async function parseHeaderPrefix(prefix: Buffer, where: string): Promise<ManifestHeader | undefined> {
  const dec = zlib.createZstdDecompress();
  let text = '';
  const result = await new Promise<string | undefined>((resolve) => {
    dec.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        resolve(text.slice(0, nl));
        dec.destroy();
      }
    });
    dec.on('error', () => resolve(undefined));
    dec.on('end', () => resolve(undefined));
    dec.end(prefix);
  });
  if (result === undefined) return undefined;
  return checkHeader(parseLine<ManifestHeader>(result, 'header', where), where);
}

/** A manifest downloaded to a local temporary file, whose entries can be read any number of times. */
export class LocalManifest {
  readonly header: ManifestHeader;
  readonly archives: ArchiveRef[];
  private readonly file: string;
  private readonly where: string;

  private constructor(file: string, header: ManifestHeader, archives: ArchiveRef[], where: string) {
    this.file = file;
    this.header = header;
    this.archives = archives;
    this.where = where;
  }

  static async fromStream(body: Readable, where: string): Promise<LocalManifest> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 's3backup-manifest-'));
    const file = path.join(dir, 'manifest.ndjson.zst');
    await pipeline(body, createWriteStream(file));
    const it = lines(createReadStream(file).pipe(zlib.createZstdDecompress()));
    let header: ManifestHeader;
    let archives: ArchiveRef[];
    try {
      header = checkHeader(parseLine<ManifestHeader>((await it.next()).value ?? undefined, 'header', where), where);
      archives = parseLine<{ archives: ArchiveRef[] }>((await it.next()).value ?? undefined, 'archive list', where).archives;
    } catch (e) {
      await fs.rm(dir, { recursive: true, force: true });
      if (e instanceof IntegrityError) throw e;
      throw new IntegrityError(`manifest ${where} cannot be decompressed: ${(e as Error).message}`);
    } finally {
      await it.return(undefined);
    }
    return new LocalManifest(file, header, archives, where);
  }

  /** Every entry, in archive order. */
  async *entries(): AsyncGenerator<Entry> {
    let n = 0;
    try {
      for await (const line of lines(createReadStream(this.file).pipe(zlib.createZstdDecompress()))) {
        if (n++ < 2 || line === '') continue;
        yield parseLine<Entry>(line, `entry ${n - 2}`, this.where);
      }
    } catch (e) {
      if (e instanceof IntegrityError) throw e;
      throw new IntegrityError(`manifest ${this.where} cannot be decompressed: ${(e as Error).message}`);
    }
  }

  async dispose(): Promise<void> {
    await fs.rm(path.dirname(this.file), { recursive: true, force: true });
  }
}
