import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { waitForDrain } from '../../src/archive/frames.ts';
import type { Entry } from '../../src/repo/manifest.ts';

// Manifests in the layout before entry segments (versions 1 and 2: the entries in the manifest
// object, after the head frame), written as s3backup wrote them, so tests can check that
// repositories of older versions still open, and craft hostile manifests of that layout.

/** The last version whose entries are in the manifest object itself. */
export const LEGACY_MANIFEST_VERSION = 2;

async function makeTempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

const TEMP_PREFIX = 's3backup-test-manifest-';

/**
 * The entries frame of a manifest of versions 1 and 2, as s3backup wrote it before entry
 * segments: streamed, compressed as they come, to a temporary file.
 */
export class LegacyEntryWriter {
  readonly file: string;
  private readonly zstd: zlib.ZstdCompress;
  private readonly done: Promise<void>;
  private pending: string[] = [];
  private pendingBytes = 0;
  /** The wait for the compressor to drain, shared by every flush meanwhile (one listener each, not one per flush). */
  private draining: Promise<void> | undefined;
  count = 0;
  /** Some path or target is not valid UTF-8 (version 2). */
  private byteNames = false;

  private constructor(file: string) {
    this.file = file;
    this.zstd = zlib.createZstdCompress({
      chunkSize: 1 << 20,
      params: { [zlib.constants.ZSTD_c_compressionLevel]: 3, [zlib.constants.ZSTD_c_checksumFlag]: 1 },
    });
    this.done = pipeline(this.zstd, createWriteStream(file));
    this.done.catch(() => {});
  }

  static async create(): Promise<LegacyEntryWriter> {
    const dir = await makeTempDir(TEMP_PREFIX);
    return new LegacyEntryWriter(path.join(dir, 'entries.ndjson.zst'));
  }

  /** Queue one entry; returns a promise only when the caller should wait. */
  add(e: Entry): Promise<void> | undefined {
    this.count++;
    if (!this.byteNames && !(e.path.isWellFormed() && (e.target === undefined || e.target.isWellFormed()))) this.byteNames = true;
    const line = `${JSON.stringify(e)}\n`;
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes < 256 << 10) return undefined;
    return this.flush();
  }

  /** The manifest version these entries need (see MANIFEST_VERSION). */
  get version(): number {
    return this.byteNames ? 2 : 1;
  }

  private flush(): Promise<void> | undefined {
    if (this.pending.length === 0) return undefined;
    const chunk = this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    if (this.zstd.write(chunk)) return undefined;
    // A backup may add thousands of entries at once (the results of a frame of small files),
    // each flush finding the stream still full: waiting once keeps Node from warning about
    // a listener leak on stderr.
    this.draining ??= waitForDrain(this.zstd).finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  async finish(): Promise<void> {
    await this.flush();
    this.zstd.end();
    await this.done;
  }

  async dispose(): Promise<void> {
    this.zstd.destroy();
    await fs.rm(path.dirname(this.file), { recursive: true, force: true });
  }
}

/** The whole manifest object of that layout: the head frame, then the entries' frame. */
export async function encodeLegacyManifest(head: Buffer, entries: LegacyEntryWriter): Promise<Buffer> {
  return Buffer.concat([head, await fs.readFile(entries.file)]);
}
