import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { NodeHttpHandler, type NodeHttpHandlerOptions } from '@smithy/node-http-handler';
import type { HttpHandlerOptions } from '@smithy/types';
import { IntegrityError, S3BackupError, StoreAccessError } from '../errors.ts';
import { proxyAgentOptions } from './proxy.ts';

/**
 * How long a command may wait on S3 while nothing comes back on any of its connections (see
 * NetworkWatch for what counts) before it gives up as a whole. The SDK's timeouts are per attempt and its
 * retries multiply them (and every cleanup step after a failure has its own): this one bound
 * covers them all.
 */
export const DEFAULT_STALL_TIMEOUT_MS = 5 * 60_000;
/** After a stall, what the command does to clean up (abort an upload, remove its lock, record the failure) gets this much more. */
export const MAX_CLEANUP_BUDGET_MS = 30_000;
/** Attempts of each request (the SDK's retries) unless AWS_MAX_ATTEMPTS says otherwise: 3 (the SDK's default) fails a 1,000-request backup at 5 % lost answers about one run in ten. */
export const DEFAULT_MAX_ATTEMPTS = 5;
/** Bytes written between two looks (half a second) that count as life: more than a request's headers, less than any upload worth the name (32 KiB/s). */
const WRITE_ACTIVITY = 16 << 10;
/** Ranged re-reads of a download whose body was cut, before the download fails. */
export const BODY_RESUME_ATTEMPTS = 5;

/**
 * Silence on one store's connections. Requests (and downloads waiting for their next bytes)
 * register while they wait on the endpoint; a timer looks every half second whether any byte
 * arrived on any socket of this store, or an upload went out (a slow upload is not silence; a
 * request's own headers are no answer). When nothing did for `stallMs` while something waited,
 * every wait is aborted and the store
 * stalls: from then on its requests share a short cleanup budget, and after that they fail at
 * once. One bound for the whole command, however many requests and retries it makes.
 */
export class NetworkWatch {
  readonly stallMs: number;
  readonly cleanupMs: number;
  private readonly describe: () => string;
  private readonly sockets = new Set<Socket>();
  private closedRead = 0;
  private closedWritten = 0;
  private lastRead = 0;
  private lastWritten = 0;
  private waiting = 0;
  /** Silence so far: time something waited while no byte moved. */
  private silentMs = 0;
  private lastLook = 0;
  private timer: NodeJS.Timeout | undefined;
  private controller = new AbortController();
  private stalledAt: number | undefined;
  private cleanupTimer: NodeJS.Timeout | undefined;
  private stallError: StoreAccessError | undefined;

  constructor(stallMs: number, describe: () => string) {
    if (!(Number.isFinite(stallMs) && stallMs > 0)) throw new S3BackupError(`the stall timeout must be positive, not ${stallMs} ms`);
    this.stallMs = stallMs;
    this.cleanupMs = Math.min(MAX_CLEANUP_BUDGET_MS, Math.max(1000, stallMs / 2));
    this.describe = describe;
  }

  /** Aborted when the wait in progress must end (the stall limit, or the end of the cleanup budget). */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get stalled(): boolean {
    return this.stalledAt !== undefined;
  }

  /** The error every request of a stalled store ends with. */
  error(): StoreAccessError {
    return (this.stallError ??= new StoreAccessError(
      `no answer from S3 endpoint ${this.describe()} for ${formatMs(this.stallMs)}; giving up`,
      {
        exitCode: 1,
        hint: 'the server or the network stopped responding; run the command again once it is reachable (--stall-timeout sets how long to wait)',
      },
    ));
  }

  /** Before a request: throws once the cleanup budget after a stall is spent. */
  admit(): void {
    if (this.stalledAt !== undefined && Date.now() - this.stalledAt >= this.cleanupMs) throw this.error();
  }

  /** A socket of this store's agents: its bytes count as activity. */
  track(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.closedRead += socket.bytesRead;
      this.closedWritten += socket.bytesWritten;
    });
  }

  /** Something waits on the endpoint from now until the returned function is called (once is enough). */
  begin(): () => void {
    if (this.waiting++ === 0) {
      // Time when nothing waited is not silence; silence from before (a failed attempt, then
      // its retry) still counts unless some byte moved meanwhile.
      this.sample(false);
      this.timer = setInterval(() => this.sample(true), 500);
      this.timer.unref();
    }
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.waiting === 0 && this.timer) {
        this.sample(true);
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Release the timers (the store is closed). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.cleanupTimer) clearTimeout(this.cleanupTimer);
  }

  private bytesMoved(): { read: number; written: number } {
    let read = this.closedRead;
    let written = this.closedWritten;
    for (const s of this.sockets) {
      read += s.bytesRead;
      written += s.bytesWritten;
    }
    return { read, written };
  }

  /**
   * Whether the endpoint showed life since the last look: any byte received, or an upload going
   * out (written bytes count only past WRITE_ACTIVITY a look: a request's own headers, or the
   * retry of one, are not an answer). If not (and something `waited`), that time was silent.
   */
  private sample(waited: boolean): void {
    const now = Date.now();
    const { read, written } = this.bytesMoved();
    if (read !== this.lastRead || written - this.lastWritten >= WRITE_ACTIVITY) this.silentMs = 0;
    else if (waited) this.silentMs += now - this.lastLook;
    this.lastRead = read;
    this.lastWritten = written;
    this.lastLook = now;
    if (this.stalledAt === undefined && this.silentMs >= this.stallMs) this.stall();
  }

  private stall(): void {
    this.stalledAt = Date.now();
    this.controller.abort(this.error());
    // The cleanup gets its own signal, aborted when its budget ends.
    this.controller = new AbortController();
    const cleanup = this.controller;
    this.cleanupTimer = setTimeout(() => cleanup.abort(this.error()), this.cleanupMs);
    this.cleanupTimer.unref();
  }
}

/**
 * An http(s) agent whose sockets the watch sees (the SDK's own defaults otherwise: keep-alive, 50
 * sockets), through the proxy of HTTPS_PROXY / HTTP_PROXY unless NO_PROXY names the endpoint.
 */
function watchedAgents(watch: NetworkWatch): { httpAgent: http.Agent; httpsAgent: https.Agent } {
  class WatchedHttpAgent extends http.Agent {
    override createConnection(...args: Parameters<http.Agent['createConnection']>): ReturnType<http.Agent['createConnection']> {
      const s = super.createConnection(...args);
      if (s) watch.track(s as Socket);
      return s;
    }
  }
  class WatchedHttpsAgent extends https.Agent {
    override createConnection(...args: Parameters<https.Agent['createConnection']>): ReturnType<https.Agent['createConnection']> {
      const s = super.createConnection(...args);
      if (s) watch.track(s as Socket);
      return s;
    }
  }
  const opts = { keepAlive: true, maxSockets: 50, ...proxyAgentOptions() };
  return { httpAgent: new WatchedHttpAgent(opts), httpsAgent: new WatchedHttpsAgent(opts) };
}

/**
 * The SDK's Node handler, with every request also ended by the watch (its stall limit, then
 * its cleanup budget). An abort of the watch's becomes the watch's own error, which the SDK
 * does not retry.
 */
class WatchedHttpHandler extends NodeHttpHandler {
  private readonly watch: NetworkWatch;
  constructor(watch: NetworkWatch, options: NodeHttpHandlerOptions) {
    super(options);
    this.watch = watch;
  }

  override async handle(
    request: Parameters<NodeHttpHandler['handle']>[0],
    options: HttpHandlerOptions = {},
  ): ReturnType<NodeHttpHandler['handle']> {
    this.watch.admit();
    const own = this.watch.signal;
    const abortSignal = options.abortSignal ? AbortSignal.any([options.abortSignal as AbortSignal, own]) : own;
    try {
      return await super.handle(request, { ...options, abortSignal });
    } catch (e) {
      if (own.aborted) throw this.watch.error();
      throw e;
    }
  }
}

export function watchedRequestHandler(watch: NetworkWatch, opts: { connectionTimeout: number; socketTimeout: number }): NodeHttpHandler {
  return new WatchedHttpHandler(watch, { ...opts, ...watchedAgents(watch) });
}

/**
 * Middleware (inside the SDK's retry loop, so once per attempt) that registers each attempt
 * with the watch until its answer is read: for most commands the body too, for GetObject the
 * headers (its body is a download, registered by resumableBody while it waits for bytes).
 */
export function addWatchMiddleware(client: { middlewareStack: { add: (mw: never, opts: object) => void } }, watch: NetworkWatch): void {
  const mw = (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
    const end = watch.begin();
    try {
      return await next(args);
    } finally {
      end();
    }
  };
  client.middlewareStack.add(mw as never, { step: 'finalizeRequest', name: 's3backupNetworkWatch', priority: 'low' });
}

export interface ResumableBodyOptions {
  /** The first response's body. */
  first: Readable;
  /** Its length in bytes (Content-Length): a body that ends short of it was cut. */
  length: number;
  /** A fresh body for the bytes from `offset` (relative to the first response's start) on. */
  refetch: (offset: number) => Promise<Readable>;
  watch: NetworkWatch;
  /** The error once the attempts are spent (cause: the last cut). */
  lost: (cause: Error, attempts: number) => S3BackupError;
  attempts?: number;
  /** Backoff before re-read n (1, 2, …); default exponential with full jitter, 0.2 s to 8 s. */
  backoffMs?: (n: number) => number;
}

/** Full-jitter exponential backoff: a random wait up to 0.2 s · 2^(n-1), capped at 8 s. */
export function jitteredBackoff(n: number): number {
  return Math.random() * Math.min(8000, 200 * 2 ** (n - 1));
}

/**
 * A download that survives its connection: when the body breaks off (a reset, a socket
 * timeout, a clean close before Content-Length), the rest is fetched with a ranged GET from the
 * first byte not yet received, after a jittered backoff, up to `attempts` times. The consumer
 * sees one uninterrupted stream, or the `lost` error. Errors that are not the network's (an
 * S3BackupError from refetch: the object changed, access denied, a stall) end it at once.
 */
export function resumableBody(opts: ResumableBodyOptions): Readable {
  const attempts = opts.attempts ?? BODY_RESUME_ATTEMPTS;
  const backoff = opts.backoffMs ?? jitteredBackoff;
  let source: Readable | undefined;
  let received = 0;
  let cuts = 0;
  let endWait: (() => void) | undefined;
  let refetching = false;
  const stopWaiting = () => {
    endWait?.();
    endWait = undefined;
  };
  const out = new Readable({
    highWaterMark: 1 << 20,
    read() {
      endWait ??= opts.watch.begin();
      source?.resume();
    },
    destroy(err, cb) {
      stopWaiting();
      opts.watch.signal.removeEventListener('abort', onStall);
      source?.destroy();
      cb(err);
    },
  });
  const onStall = () => {
    if (endWait) out.destroy(opts.watch.error());
  };
  opts.watch.signal.addEventListener('abort', onStall);
  const attach = (s: Readable) => {
    source = s;
    s.on('data', (chunk: Buffer) => {
      if (received + chunk.length > opts.length) {
        s.destroy();
        out.destroy(new IntegrityError(`the server sent more bytes than the ${opts.length} it announced`));
        return;
      }
      received += chunk.length;
      stopWaiting();
      if (!out.push(chunk)) s.pause();
    });
    s.once('end', () => {
      if (source !== s) return;
      if (received === opts.length) {
        stopWaiting();
        opts.watch.signal.removeEventListener('abort', onStall);
        out.push(null);
      } else cut(s, new Error(`the connection closed after ${received} of ${opts.length} bytes`));
    });
    s.once('error', (e) => {
      if (source === s) cut(s, e);
    });
  };
  const cut = (s: Readable, cause: Error) => {
    s.removeAllListeners('data');
    s.destroy();
    source = undefined;
    if (out.destroyed || refetching) return;
    if (cause instanceof S3BackupError) {
      out.destroy(cause);
      return;
    }
    cuts++;
    if (cuts >= attempts) {
      out.destroy(opts.lost(cause, cuts));
      return;
    }
    refetching = true;
    const wait = backoff(cuts);
    setTimeout(() => {
      if (out.destroyed) return;
      opts.refetch(received).then(
        (next) => {
          refetching = false;
          if (out.destroyed) {
            next.destroy();
            return;
          }
          attach(next);
        },
        (e: unknown) => {
          refetching = false;
          out.destroy(e instanceof S3BackupError ? e : opts.lost(e as Error, cuts));
        },
      );
    }, wait);
  };
  attach(opts.first);
  return out;
}

export function formatMs(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}
