import { PassThrough } from 'node:stream';
import { type ContentResult, ContentReader } from '../archive/content-reader.ts';
import { FrameWriter } from '../archive/frames.ts';
import type { ArchiveSettingValues } from '../config/archive-settings.ts';
import { END_OF_ARCHIVE } from '../archive/tar.ts';
import { IntegrityError } from '../errors.ts';
import type { ArchiveRef } from '../repo/manifest.ts';
import type { Repository } from '../repo/repository.ts';
import type { PutOptions } from '../store/store.ts';

/** Bytes the archive's body stream holds before the frame writer waits for the store. */
const ARCHIVE_BODY_BUFFER = 1 << 20;

export interface ArchiveOutOptions {
  repo: Repository;
  /** The backup writing it. */
  id: string;
  /** Its number within the backup: 1 for the first, 2… for the archives a large backup is split into. */
  part: number;
  codec: NonNullable<ArchiveSettingValues['compression']>;
  level: ArchiveSettingValues['level'];
  frameSize: number;
  maxInFlight: number;
  retention: PutOptions['retention'];
  /** The most bytes it may hold (the store sizes its upload parts from this). */
  sizeHint: number;
  /** The content reader's results for the files that ended in a frame, once it is read. */
  onResults: (results: ContentResult[]) => void;
}

/**
 * One archive being written: the store upload it streams into, the frame writer that compresses
 * (and, encrypted, seals) into it, and the content reader that fills its frames with file data.
 * A backup writes one, or several when it outgrows the archive size (backup.ts splits at file
 * boundaries). Each is a standalone tar stream, ended by finish() with the two zero blocks.
 */
export class ArchiveOut {
  readonly key: string;
  readonly frames: FrameWriter;
  readonly reader: ContentReader;
  private readonly body: PassThrough;
  private readonly upload: Promise<void>;
  private readonly ref: Pick<ArchiveRef, 'id' | 'key' | 'codec' | 'part' | 'encryption'>;
  private readonly repo: Repository;

  constructor(o: ArchiveOutOptions) {
    this.repo = o.repo;
    const store = o.repo.store;
    this.key = o.repo.archiveKey(o.id, o.codec, o.part);
    const sealer = o.repo.archiveSealer(o.id, o.part);
    this.ref = {
      id: o.id,
      key: this.key,
      codec: o.codec,
      ...(o.part > 1 ? { part: o.part } : {}),
      ...(sealer ? { encryption: sealer.encryption } : {}),
    };
    // Between the frame writer and the store: a frame's compressed pieces go in at once and the
    // writer waits for 'drain' past this, so it bounds what waits here, not the speed.
    this.body = new PassThrough({ highWaterMark: ARCHIVE_BODY_BUFFER });
    // A store that says when it is done with the archive's bytes lets their buffers be freed then.
    let frames: FrameWriter | undefined;
    this.upload = store.put(this.key, this.body, {
      contentType: 'application/octet-stream',
      retention: o.retention,
      sizeHint: o.sizeHint,
      onConsumed: (n) => frames?.consumed(n),
    });
    // If the upload fails first, break the pipe so the writer stops instead of waiting on it.
    this.upload.catch((e: unknown) => this.body.destroy(e instanceof Error ? e : new Error(String(e))));
    // File contents are read and hashed on a worker, straight into the frame buffers (which also
    // hashes, and in an encrypted repository seals, the archive's frames).
    const reader = new ContentReader({ sealKey: sealer?.key });
    this.reader = reader;
    frames = new FrameWriter({
      codec: o.codec,
      level: o.level,
      frameSize: o.frameSize,
      maxInFlight: o.maxInFlight,
      output: this.body,
      storedHash: reader,
      onFrame: (frame) => reader.submit(frame).then(o.onResults),
    });
    this.frames = frames;
  }

  /**
   * End the tar stream, wait for the upload, check what was stored: the archive's manifest entry.
   * `end: false` leaves out the two zero blocks: the header archive of a streamed file, which the
   * next archive continues (docs/format.md "Streamed files").
   */
  async finish({ end = true }: { end?: boolean } = {}): Promise<ArchiveRef> {
    const p = end ? this.frames.write(END_OF_ARCHIVE) : undefined;
    if (p) await p;
    const archive = await this.frames.finish();
    await this.upload;
    const stored = await this.repo.store.head(this.key);
    if (!stored || stored.size !== archive.compressedSize) {
      throw new IntegrityError(
        `archive ${this.key} was stored with ${stored?.size ?? 'no'} bytes, expected ${archive.compressedSize}; no backup was recorded`,
      );
    }
    const { encryption, ...named } = this.ref;
    return {
      ...named,
      size: archive.compressedSize,
      sha256: archive.sha256,
      uncompressedSize: archive.uncompressedSize,
      frames: archive.frames,
      ...(encryption ? { encryption } : {}),
    };
  }

  /** Stop writing (a failed backup): break the upload off and wait until it has let go. */
  async abort(e: unknown): Promise<void> {
    this.body.destroy(e instanceof Error ? e : new Error(String(e)));
    await this.upload.catch(() => {});
  }

  /** Release the compression streams and the reader's worker (and files it still holds open). */
  async close(): Promise<void> {
    this.frames.close();
    await this.reader.close();
  }
}
