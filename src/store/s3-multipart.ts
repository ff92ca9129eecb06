// A stream put to S3 as a multipart upload from a fixed set of part buffers: the stream's bytes
// are copied into a part buffer as they arrive (so the stream's own chunks are free at once),
// `queueSize` full parts upload while the next one fills, and a part buffer is reused once its
// part is stored. An upload holds (queueSize + 1) part buffers, whatever the stream's size.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { S3BackupError } from '../errors.ts';
import { partSizeAt, type UploadShape } from './s3-parts.ts';

/**
 * Part buffers kept between the uploads of one store (a backup writes its archives one after
 * the other), so that each upload does not allocate fresh memory for V8's collector to find.
 * Buffers of one size are kept, the size last asked for: an upload's parts grow from 5 MiB to
 * the part size (uploadShape), and the small ones are not needed again until the next upload.
 */
export class PartBuffers {
  private readonly free: Buffer[] = [];
  private size = 0;
  /** The most buffers kept: what one upload uses, parts in flight and the one filling. */
  private readonly keep: number;

  constructor(keep: number) {
    this.keep = keep;
  }

  take(size: number): Buffer {
    if (size !== this.size) {
      this.free.length = 0;
      this.size = size;
    }
    return this.free.pop() ?? Buffer.allocUnsafeSlow(size);
  }

  give(buf: Buffer): void {
    if (buf.length === this.size && this.free.length < this.keep) this.free.push(buf);
  }

  clear(): void {
    this.free.length = 0;
  }
}

export interface StreamUploadOptions {
  client: S3Client;
  /** Bucket, Key and what CreateMultipartUpload takes for the whole object (storage class, SSE…). */
  params: CreateMultipartUploadCommandInput & { Bucket: string; Key: string };
  /** Part sizes: the first `smallParts` of S3's minimum, then `partSize` (uploadShape). */
  shape: UploadShape;
  buffers: PartBuffers;
  /** A stream that fits in one part goes up as one PutObject (with its Content-MD5). */
  putWhole: (body: Buffer) => Promise<void>;
  /** PutOptions.onConsumed: the stream's first n bytes are copied out, nothing refers to them. */
  onConsumed?: ((bytes: number) => void) | undefined;
}

/**
 * One stream put. `run()` resolves once the object is stored; on failure the multipart upload
 * is aborted (no parts are left behind and billed; a killed process's leftovers are for
 * prune). The stream is left to the caller, which destroys it with the error it reports (its
 * producer then stops rather than waits, and sees that error, not a premature close).
 */
export class StreamUpload {
  /** Bytes read from the stream so far. */
  sent = 0;
  /** The whole stream is uploaded and CompleteMultipartUpload was sent (its answer may be lost). */
  completing = false;
  private uploadId: string | undefined;
  private readonly parts: CompletedPart[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  /** The first part that failed (its error), which stops the upload. */
  private failure: { error: unknown } | undefined;
  private readonly o: StreamUploadOptions;

  constructor(o: StreamUploadOptions) {
    this.o = o;
  }

  async run(body: Readable): Promise<void> {
    let part: Buffer | undefined = this.o.buffers.take(partSizeAt(this.o.shape, 1));
    let fill = 0;
    try {
      for await (const read of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer | string>) {
        const chunk = typeof read === 'string' ? Buffer.from(read) : read;
        let at = 0;
        while (at < chunk.length) {
          if (fill === part.length) {
            // Full, and more is coming: it goes up as a part (a stream of exactly one part
            // stays a single PutObject).
            await this.send(part, fill);
            part = this.o.buffers.take(partSizeAt(this.o.shape, this.parts.length + 1));
            fill = 0;
          }
          const n = chunk.copy(part, fill, at);
          fill += n;
          at += n;
        }
        this.sent += chunk.length;
        this.o.onConsumed?.(this.sent);
      }
      if (this.uploadId === undefined) {
        await this.o.putWhole(part.subarray(0, fill));
        this.o.buffers.give(part);
        part = undefined;
        return;
      }
      await this.send(part, fill);
      part = undefined;
      await this.settle();
      if (this.failure) throw this.failure.error;
      await this.complete();
    } catch (e) {
      await this.settle();
      if (part) this.o.buffers.give(part);
      await this.abort();
      throw e;
    }
  }

  /** Upload buf[0, length) as the next part once fewer than queueSize are in flight. */
  private async send(buf: Buffer, length: number): Promise<void> {
    while (this.inFlight.size >= this.o.shape.queueSize && !this.failure) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure.error;
    this.uploadId ??= await this.create();
    const PartNumber = this.parts.length + 1;
    const entry: CompletedPart = { PartNumber };
    this.parts.push(entry);
    const body = buf.subarray(0, length);
    const uploaded = this.o.client
      .send(
        new UploadPartCommand({
          Bucket: this.o.params.Bucket,
          Key: this.o.params.Key,
          UploadId: this.uploadId,
          PartNumber,
          Body: body,
          ContentLength: length,
          // The server rejects a part damaged on the way (BadDigest).
          ContentMD5: createHash('md5').update(body).digest('base64'),
        }),
      )
      .then((res) => {
        if (!res.ETag) throw new S3BackupError(`the server answered part ${PartNumber} of ${this.o.params.Key} without an ETag`);
        entry.ETag = res.ETag;
      })
      .catch((e: unknown) => {
        this.failure ??= { error: e };
      })
      .finally(() => {
        this.inFlight.delete(uploaded);
        // The SDK is done with the buffer (retries included): it may take the next part.
        this.o.buffers.give(buf);
      });
    this.inFlight.add(uploaded);
  }

  private async create(): Promise<string> {
    const res = await this.o.client.send(new CreateMultipartUploadCommand(this.o.params));
    if (!res.UploadId) throw new S3BackupError(`the server started no multipart upload for ${this.o.params.Key} (no UploadId)`);
    return res.UploadId;
  }

  /** Wait for every part in flight to succeed or fail. */
  private async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
  }

  private async complete(): Promise<void> {
    this.completing = true;
    // The answer's ETag is not used: Ceph answers CompleteMultipartUpload with an empty one.
    // The caller checks the stored size with a HeadObject instead.
    await this.o.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.o.params.Bucket,
        Key: this.o.params.Key,
        UploadId: this.uploadId,
        MultipartUpload: { Parts: this.parts },
      }),
    );
  }

  private async abort(): Promise<void> {
    if (this.uploadId === undefined) return;
    await this.o.client
      .send(new AbortMultipartUploadCommand({ Bucket: this.o.params.Bucket, Key: this.o.params.Key, UploadId: this.uploadId }))
      .catch(() => {});
  }
}
