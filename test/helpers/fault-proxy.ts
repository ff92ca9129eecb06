// A fault-injecting HTTP/1.1 proxy between the real AWS SDK and the test S3 server (Ceph RGW),
// for tests of what the backup does when S3 misbehaves: error answers (503 SlowDown, 500,
// spurious 404), connections reset before or after S3 did the work, bodies cut short, servers
// that go silent, slow answers. Faults happen on the wire, so the SDK's own retries, timeouts
// and stream handling are what gets tested, and S3 really did (or did not) do the work.
//
//   const proxy = await startFaultProxy({ upstream: s3TestConfig().endpoint, seed: 1 });
//   const client = new S3Client({ ...s3TestConfig(), endpoint: proxy.url, forcePathStyle: true, ... });
//   const rule = proxy.addRule({ method: 'PUT', path: /\/snapshots\//, count: { nth: 1 }, action: { kind: 'forward-drop' } });
//   ... run a command ...
//   rule.remove();                      // or proxy.clearRules()
//   proxy.summary();                    // "12 requests, 1 fault injected (forward-drop 1)"
//   await proxy.close();
//
// Requests go to the upstream with their headers unchanged (Host included: SigV4 signs it),
// except the hop-by-hop Connection and Keep-Alive, which describe each connection, not the
// request. Bodies stream both ways; only a cut given as a fraction of an answer without
// Content-Length reads that answer whole first.
//
// Rules are tried in the order they were added. Each rule counts every request its filters
// match (so { nth: 2 } is the second such request whatever the other rules do); the first rule
// whose count selector picks the request applies its action, and a later rule that also picked
// it loses that pick. Probabilities come from a seeded PRNG per rule, so the same sequence of
// requests meets the same faults on every run (requests sent concurrently may arrive in another
// order: reproducible then only up to that order).
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { prng } from './tree.ts';

/** What the proxy does to a request a rule picked. Byte cuts: `bytes`, else `fraction` of the body (default 0.5). */
export type FaultAction =
  /** Answer this status with an S3 XML error body, without forwarding. code: the S3 error code (default by status). */
  | { kind: 'status'; status: number; code?: string; message?: string }
  /** Reset the client's connection (RST) without forwarding: the request never reached S3. */
  | { kind: 'reset-before' }
  /** Forward the request, read S3's whole answer, then reset the client's connection: S3 did the work, the client never hears. */
  | { kind: 'forward-drop' }
  /** Forward; send the status, the headers and part of the body; then reset (RST). resetAfterMs: pause before the RST so the client reads what was sent (default 50). */
  | { kind: 'reset-mid-body'; bytes?: number; fraction?: number; resetAfterMs?: number }
  /** Forward; send the status, the headers (the real Content-Length) and part of the body; then close cleanly (FIN). */
  | { kind: 'truncate'; bytes?: number; fraction?: number }
  /** Read the request and never answer: the connection stays open until the client gives up or close(). */
  | { kind: 'stall' }
  /** Forward; send the status, the headers and part of the body; then go silent, connection open. */
  | { kind: 'stall-mid-body'; bytes?: number; fraction?: number }
  /** Forward after ms milliseconds. */
  | { kind: 'delay'; ms: number };

export type FaultKind = FaultAction['kind'];
export const FAULT_KINDS: readonly FaultKind[] = [
  'status',
  'reset-before',
  'forward-drop',
  'reset-mid-body',
  'truncate',
  'stall',
  'stall-mid-body',
  'delay',
];

/**
 * Which of the matching requests a rule acts on: every one; only the nth (1-based); the first n;
 * or each with probability p (drawn from the rule's seeded PRNG, once per matching request).
 */
export type CountSelector = 'every' | { nth: number } | { first: number } | { probability: number };

/** A request as rules and predicates see it. */
export interface ProxyRequest {
  /** 1-based arrival number. */
  seq: number;
  method: string;
  /** The decoded path, bucket included: /bucket/prefix/snapshots/x. */
  path: string;
  bucket: string;
  /** The object key ('' for bucket-level requests). */
  key: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
}

export interface FaultRuleSpec {
  /** One method or any of several (upper case, as sent). */
  method?: string | readonly string[];
  /** Tested against ProxyRequest.path (decoded, bucket included). */
  path?: RegExp;
  /** Query parameters that must all be present (e.g. 'uploadId', 'partNumber', 'uploads'). */
  query?: string | readonly string[];
  /** Query parameters that must all be absent (a PUT without 'partNumber' is a PutObject, not an UploadPart). */
  withoutQuery?: string | readonly string[];
  /** Any other condition (a header, say). */
  when?: (req: ProxyRequest) => boolean;
  /** Default 'every'. */
  count?: CountSelector;
  /** One action, or several for the rule's PRNG to pick one from each time it acts. */
  action: FaultAction | readonly FaultAction[];
  /** The rule's PRNG seed; default: derived from the proxy's seed and the rule's number. */
  seed?: number;
  /** Shown in the log. */
  label?: string;
}

export interface FaultRule {
  readonly id: number;
  readonly label: string;
  /** Requests the rule's filters matched so far. */
  readonly matched: number;
  /** Faults the rule injected so far. */
  readonly fired: number;
  remove(): void;
}

export interface RandomFaultOptions {
  /** Probability of a fault on each request not exempted. */
  p: number;
  seed?: number;
  actions: readonly FaultAction[];
  /** Requests never faulted (e.g. the test's own setup, or a lock the scenario must keep). */
  exempt?: (req: ProxyRequest) => boolean;
}

export interface ProxyLogEntry {
  seq: number;
  /** Milliseconds since the proxy started. */
  at: number;
  method: string;
  path: string;
  /** The raw query string, without '?'. */
  query: string;
  /** The fault applied, and the rule that applied it. */
  fault?: FaultKind;
  rule?: number;
  /** The status the client was sent (absent: it got no status line). */
  status?: number;
  /** What S3 answered, when the request was forwarded. */
  upstreamStatus?: number;
  /** A failure of the upstream connection. */
  error?: string;
}

export interface FaultCounters {
  requests: number;
  /** Requests sent on to S3 (forward-drop, mid-body faults and delays included). */
  forwarded: number;
  faults: number;
  byKind: Record<FaultKind, number>;
  /** Client connections accepted (fewer than requests when keep-alive works). */
  connections: number;
}

export interface FaultProxy {
  url: string;
  port: number;
  addRule(spec: FaultRuleSpec): FaultRule;
  removeRule(rule: FaultRule): void;
  clearRules(): void;
  readonly rules: readonly FaultRule[];
  /** A rule matching every request not exempted, acting with probability p with an action picked at random. */
  random(opts: RandomFaultOptions): FaultRule;
  /** Every request, in arrival order; entries fill in as answers go out. */
  readonly log: readonly ProxyLogEntry[];
  readonly counters: FaultCounters;
  /** "N requests, M faults injected (kind n, ...)", for a test's closing notes. */
  summary(): string;
  /** Destroys every open connection, stalled ones included, and stops listening. */
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** The S3 server, e.g. http://127.0.0.1:7480. */
  upstream: string;
  /** Seed of the rules' PRNGs (default 1): the same seed, the same faults. */
  seed?: number;
}

const DEFAULT_ERROR_CODES: Record<number, [code: string, message: string]> = {
  400: ['InvalidRequest', 'Invalid Request'],
  403: ['AccessDenied', 'Access Denied'],
  404: ['NoSuchKey', 'The specified key does not exist.'],
  409: ['OperationAborted', 'A conflicting conditional operation is currently in progress against this resource.'],
  412: ['PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'],
  500: ['InternalError', 'We encountered an internal error. Please try again.'],
  501: ['NotImplemented', 'A header you provided implies functionality that is not implemented'],
  503: ['SlowDown', 'Please reduce your request rate.'],
};

const xmlEscape = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** Connection and Keep-Alive belong to one hop; everything else passes as sent. */
function withoutHopHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'connection' || name === 'keep-alive') continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

const asList = (v: string | readonly string[] | undefined): readonly string[] => (v === undefined ? [] : typeof v === 'string' ? [v] : v);

interface RuleState extends FaultRule {
  spec: FaultRuleSpec;
  random: () => number;
  matched: number;
  fired: number;
}

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const upstream = new URL(opts.upstream);
  const seed = opts.seed ?? 1;
  const started = Date.now();
  // Its own pool, so close() can end the upstream connections too.
  const agent = new http.Agent({ keepAlive: true });
  const timers = new Set<NodeJS.Timeout>();
  let rules: RuleState[] = [];
  let nextRuleId = 1;
  let closed = false;
  const log: ProxyLogEntry[] = [];
  const counters: FaultCounters = {
    requests: 0,
    forwarded: 0,
    faults: 0,
    byKind: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
    connections: 0,
  };

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  function matches(spec: FaultRuleSpec, r: ProxyRequest): boolean {
    const methods = asList(spec.method);
    if (methods.length && !methods.includes(r.method)) return false;
    if (spec.path) {
      spec.path.lastIndex = 0; // a /g or /y regex keeps state between tests
      if (!spec.path.test(r.path)) return false;
    }
    if (!asList(spec.query).every((q) => r.query.has(q))) return false;
    if (asList(spec.withoutQuery).some((q) => r.query.has(q))) return false;
    return !spec.when || spec.when(r);
  }

  function picks(rule: RuleState): boolean {
    const c = rule.spec.count ?? 'every';
    if (c === 'every') return true;
    if ('nth' in c) return rule.matched === c.nth;
    if ('first' in c) return rule.matched <= c.first;
    return rule.random() < c.probability;
  }

  function decide(r: ProxyRequest): { rule: RuleState; action: FaultAction } | undefined {
    let chosen: { rule: RuleState; action: FaultAction } | undefined;
    for (const rule of [...rules]) {
      if (!matches(rule.spec, r)) continue;
      rule.matched++;
      // Every matching rule draws, so each rule's sequence depends on its own matches only.
      if (!picks(rule) || chosen) continue;
      const a = rule.spec.action;
      const action = Array.isArray(a) ? a[Math.floor(rule.random() * a.length)]! : (a as FaultAction);
      rule.fired++;
      chosen = { rule, action };
    }
    return chosen;
  }

  function addRule(spec: FaultRuleSpec): FaultRule {
    const id = nextRuleId++;
    if (Array.isArray(spec.action) && spec.action.length === 0) throw new Error('fault rule with an empty list of actions');
    const rule: RuleState = {
      id,
      label: spec.label ?? `rule ${id}`,
      spec,
      random: prng(spec.seed ?? (seed + Math.imul(id, 0x9e3779b9)) >>> 0),
      matched: 0,
      fired: 0,
      remove: () => removeRule(rule),
    };
    rules.push(rule);
    return rule;
  }

  function removeRule(rule: FaultRule): void {
    rules = rules.filter((r) => r.id !== rule.id);
  }

  /** The S3 error answer, as S3 words it; HEAD answers go without the body, as S3's do. */
  function answerStatus(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    entry: ProxyLogEntry,
    r: ProxyRequest,
    a: Extract<FaultAction, { kind: 'status' }>,
  ) {
    const [defaultCode, defaultMessage] =
      DEFAULT_ERROR_CODES[a.status] ?? (a.status >= 500 ? DEFAULT_ERROR_CODES[500]! : DEFAULT_ERROR_CODES[400]!);
    const requestId = `faultproxy-${r.seq.toString(16).padStart(8, '0')}`;
    const body =
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(a.code ?? defaultCode)}</Code>` +
      `<Message>${xmlEscape(a.message ?? defaultMessage)}</Message><Resource>${xmlEscape(r.path)}</Resource>` +
      `<RequestId>${requestId}</RequestId></Error>`;
    // The request is read to its end first, so the client's keep-alive connection stays usable.
    req.resume();
    req.once('end', () => {
      entry.status = a.status;
      res.writeHead(a.status, {
        'content-type': 'application/xml',
        'content-length': Buffer.byteLength(body),
        'x-amz-request-id': requestId,
      });
      res.end(body);
    });
  }

  /** Sends the request on to S3; onResponse gets S3's answer (default: relayed as it comes). */
  function forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    entry: ProxyLogEntry,
    onResponse?: (ur: http.IncomingMessage) => void,
  ) {
    counters.forwarded++;
    const up = http.request({
      host: upstream.hostname,
      port: upstream.port || 80,
      method: req.method,
      path: req.url,
      headers: withoutHopHeaders(req.rawHeaders),
      agent,
    });
    up.on('response', (ur) => {
      entry.upstreamStatus = ur.statusCode;
      ur.on('error', (e) => {
        entry.error ??= `upstream answer: ${e.message}`;
        res.destroy();
      });
      if (onResponse) return onResponse(ur);
      entry.status = ur.statusCode;
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage, withoutHopHeaders(ur.rawHeaders));
      ur.pipe(res);
    });
    up.on('error', (e) => {
      entry.error ??= `upstream: ${e.message}`;
      if (res.headersSent || closed) res.destroy();
      else {
        entry.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`fault proxy: upstream ${e.message}\n`);
      }
    });
    // The client gave up (its timeout) or a fault cut it: stop the upstream exchange too.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  }

  /** Relays the status, the headers and the first part of the body, then calls cut (once it is written). */
  function relayPartOfBody(
    res: http.ServerResponse,
    entry: ProxyLogEntry,
    ur: http.IncomingMessage,
    a: { bytes?: number; fraction?: number },
    cut: () => void,
  ) {
    entry.status = ur.statusCode;
    res.writeHead(ur.statusCode ?? 502, ur.statusMessage, withoutHopHeaders(ur.rawHeaders));
    res.flushHeaders();
    const lengthHeader = ur.headers['content-length'];
    const total = lengthHeader === undefined ? undefined : Number(lengthHeader);
    // Never the whole body: a "cut" after the last byte would be no fault at all.
    const clamp = (n: number, size: number) => Math.max(0, Math.min(Math.floor(n), size - 1));
    if (a.bytes === undefined && total === undefined) {
      // A fraction of a body of unknown length: read it all to know how long it is.
      const chunks: Buffer[] = [];
      ur.on('data', (c: Buffer) => chunks.push(c));
      ur.on('end', () => {
        const all = Buffer.concat(chunks);
        const n = clamp((a.fraction ?? 0.5) * all.length, all.length);
        if (n === 0) later(0, cut);
        else res.write(all.subarray(0, n), () => cut());
      });
      return;
    }
    const limit =
      a.bytes !== undefined
        ? total === undefined
          ? Math.max(0, a.bytes)
          : clamp(a.bytes, total)
        : clamp((a.fraction ?? 0.5) * total!, total!);
    let sent = 0;
    let done = false;
    const finish = () => {
      done = true;
      ur.resume(); // S3 finishes its answer into the void
      later(0, cut);
    };
    if (limit === 0) return finish();
    ur.on('data', (chunk: Buffer) => {
      if (done) return;
      const piece = chunk.length <= limit - sent ? chunk : chunk.subarray(0, limit - sent);
      sent += piece.length;
      if (sent >= limit) {
        done = true;
        res.write(piece, () => cut());
        ur.resume();
        return;
      }
      if (!res.write(piece)) {
        ur.pause();
        res.once('drain', () => ur.resume());
      }
    });
    ur.on('end', () => {
      if (!done) finish(); // a body shorter than the cut (a bytes count past its end)
    });
  }

  function handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const seq = ++counters.requests;
    const url = new URL(req.url ?? '/', 'http://fault-proxy');
    let path = url.pathname;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      // A malformed escape: match on the path as sent.
    }
    const slash = path.indexOf('/', 1);
    const r: ProxyRequest = {
      seq,
      method: req.method ?? 'GET',
      path,
      bucket: slash < 0 ? path.slice(1) : path.slice(1, slash),
      key: slash < 0 ? '' : path.slice(slash + 1),
      query: url.searchParams,
      headers: req.headers,
    };
    const entry: ProxyLogEntry = { seq, at: Date.now() - started, method: r.method, path, query: url.search.slice(1) };
    log.push(entry);
    const chosen = decide(r);
    if (!chosen) return forward(req, res, entry);
    const { action } = chosen;
    entry.fault = action.kind;
    entry.rule = chosen.rule.id;
    counters.faults++;
    counters.byKind[action.kind]++;
    const socket: Socket = req.socket;
    // RST (SO_LINGER 0), unless the client has closed the connection already.
    const reset = () => {
      if (!socket.destroyed) socket.resetAndDestroy();
    };
    switch (action.kind) {
      case 'status':
        return answerStatus(req, res, entry, r, action);
      case 'reset-before':
        return reset();
      case 'forward-drop':
        return forward(req, res, entry, (ur) => {
          ur.resume();
          ur.on('end', reset);
        });
      case 'reset-mid-body':
        return forward(req, res, entry, (ur) => relayPartOfBody(res, entry, ur, action, () => later(action.resetAfterMs ?? 50, reset)));
      case 'truncate':
        // end(): the bytes written so far, then FIN; the response itself never ends.
        return forward(req, res, entry, (ur) => relayPartOfBody(res, entry, ur, action, () => socket.end()));
      case 'stall':
        req.resume();
        return;
      case 'stall-mid-body':
        return forward(req, res, entry, (ur) => relayPartOfBody(res, entry, ur, action, () => {}));
      case 'delay':
        return later(action.ms, () => forward(req, res, entry));
    }
  }

  const server = http.createServer(handle);
  // Long uploads and idle SDK connections are the client's business, not the proxy's.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 30_000;
  server.on('connection', () => counters.connections++);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    addRule,
    removeRule,
    clearRules: () => {
      rules = [];
    },
    get rules() {
      return [...rules];
    },
    random: (o) =>
      addRule({
        label: 'random',
        count: { probability: o.p },
        action: o.actions,
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...(o.exempt ? { when: (r: ProxyRequest) => !o.exempt!(r) } : {}),
      }),
    log,
    counters,
    summary() {
      const kinds = FAULT_KINDS.filter((k) => counters.byKind[k] > 0).map((k) => `${k} ${counters.byKind[k]}`);
      return `${counters.requests} request${counters.requests === 1 ? '' : 's'}, ${counters.faults} fault${counters.faults === 1 ? '' : 's'} injected${kinds.length ? ` (${kinds.join(', ')})` : ''}`;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      agent.destroy();
      await stopped;
    },
  };
}
