import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { nameFromBytes } from '../archive/names.ts';
import { NotFoundError, S3BackupError, UsageError } from '../errors.ts';
import { isSnapshotId } from '../repo/repository.ts';
import type { DashboardData } from './data.ts';

/**
 * `s3backup dashboard`: one page and a small JSON API from the same process. Read-only (only
 * GET and HEAD are answered; the data layer wraps the store so writes are refused anyway).
 * Bound to loopback by default; anywhere else it needs a token, checked on every request.
 */

export const TOKEN_COOKIE = 's3backup_dashboard';
export const MIN_TOKEN_LENGTH = 16;

export interface DashboardServerOptions {
  /** One repository, or several shown in one fleet overview (API: ?repo=INDEX picks one, default 0). */
  data: DashboardData | readonly DashboardData[];
  host?: string;
  port?: number;
  token?: string | undefined;
}

export interface RunningDashboard {
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Loopback addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** Refuse settings that would expose the dashboard without protection (a usage error, exit 2). */
export function checkExposure(host: string, token: string | undefined): void {
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw new UsageError(`the dashboard token is too short (${token.length} characters; at least ${MIN_TOKEN_LENGTH})`, {
      hint: 'make one with: openssl rand -hex 24',
    });
  }
  if (!isLoopback(host) && !token) {
    throw new UsageError(`refusing to serve the dashboard on ${host} without a token: anyone who can reach it would see your backups`, {
      hint: 'set --token (or S3BACKUP_DASHBOARD_TOKEN, e.g. $(openssl rand -hex 24)), or keep the default --host 127.0.0.1',
    });
  }
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
/** Constant-time: both sides hashed to 32 bytes first, so neither length nor content leaks through timing. */
export function tokenMatches(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  return timingSafeEqual(digest(given), digest(token));
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** Where the page's files are: beside this module (src/ when run from source, dist/ once built). */
function publicDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dir = path.join(here, 'public');
  if (!fs.existsSync(path.join(dir, 'index.html'))) {
    throw new S3BackupError(`the dashboard's page files are missing from ${dir}`, { hint: 'rebuild s3backup with "npm run build"' });
  }
  return dir;
}

interface Asset {
  body: Buffer;
  type: string;
}

function loadAssets(): Map<string, Asset> {
  const dir = publicDir();
  const types: Record<string, string> = {
    '.html': 'text/html; charset=utf-8',
    '.js': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8',
    '.svg': 'image/svg+xml',
  };
  const assets = new Map<string, Asset>();
  for (const name of fs.readdirSync(dir)) {
    const type = types[path.extname(name)];
    if (type) assets.set(name === 'index.html' ? '/' : `/${name}`, { body: fs.readFileSync(path.join(dir, name)), type });
  }
  // The chart library, straight from its package (no build step at run time).
  const require = createRequire(import.meta.url);
  const uplotDir = path.dirname(require.resolve('uplot/dist/uPlot.esm.js'));
  assets.set('/vendor/uPlot.esm.js', { body: fs.readFileSync(path.join(uplotDir, 'uPlot.esm.js')), type: types['.js']! });
  assets.set('/vendor/uPlot.min.css', { body: fs.readFileSync(path.join(uplotDir, 'uPlot.min.css')), type: types['.css']! });
  return assets;
}

const SECURITY_HEADERS: Record<string, string> = {
  // uPlot sizes its elements with inline styles; everything else is same-origin only.
  'Content-Security-Policy':
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

function intParam(c: Context, name: string, fallback: number): number {
  const v = c.req.query(name);
  if (v === undefined || v === '') return fallback;
  if (!/^\d{1,9}$/.test(v)) throw new UsageError(`${name} must be a whole number`);
  return Number(v);
}

/** The repository a request is about: ?repo=INDEX into the dashboard's list (default the first). */
function repoOf(c: Context, repos: readonly DashboardData[]): DashboardData {
  const v = c.req.query('repo');
  if (v === undefined || v === '') return repos[0]!;
  if (!/^\d{1,4}$/.test(v) || Number(v) >= repos.length) {
    throw new UsageError(`repo must be the index of one of the dashboard's ${repos.length} repositories (0-${repos.length - 1})`);
  }
  return repos[Number(v)]!;
}

/** ?group=ID: a group id as /api/groups gives it (16 hex digits), or none. */
function groupParam(c: Context): string | undefined {
  const v = c.req.query('group');
  if (v === undefined || v === '') return undefined;
  if (!/^[0-9a-f]{16}$/.test(v))
    throw new UsageError(`group must be a group id as /api/groups gives it (16 hex digits), not ${JSON.stringify(v)}`);
  return v;
}

/**
 * The fleet overview: every group of every repository, each naming its repository. A
 * repository that cannot be read says so in `repositories` and leaves the others shown.
 */
async function fleetGroups(repos: readonly DashboardData[]) {
  const answers = await Promise.all(
    repos.map(async (d, index) => {
      try {
        return { index, location: d.location, groups: await d.groups() };
      } catch (e) {
        return { index, location: d.location, error: (e as Error).message, groups: [] };
      }
    }),
  );
  return {
    repositories: answers.map(({ groups, ...r }) => ({ ...r, groups: groups.length })),
    groups: answers.flatMap((a) => a.groups.map((g) => ({ repository: a.location, repositoryIndex: a.index, ...g }))),
  };
}

function backupRef(c: Context): string {
  const id = c.req.param('id') ?? '';
  if (id !== 'latest' && !isSnapshotId(id)) throw new UsageError(`${JSON.stringify(id)} is not a backup id`);
  return id;
}

/** The Hono app: exported apart from listening so tests can also call app.request(). */
export function dashboardApp(opts: { data: DashboardData | readonly DashboardData[]; token?: string | undefined }) {
  const { token } = opts;
  const repos: readonly DashboardData[] = Array.isArray(opts.data) ? opts.data : [opts.data as DashboardData];
  const assets = loadAssets();
  const app = new Hono();

  app.use('*', async (c, next) => {
    await next();
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.res.headers.set(k, v);
  });

  app.use('*', async (c, next) => {
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      return c.json({ error: 'the dashboard is read-only: only GET and HEAD are answered' }, 405, { Allow: 'GET, HEAD' });
    }
    // On loopback without a token, a web page elsewhere could still reach us through a DNS name
    // that resolves to 127.0.0.1 (DNS rebinding): answer only requests addressed to loopback.
    if (!token) {
      const hostHeader = c.req.header('host') ?? '';
      const name = hostHeader.replace(/:\d+$/, '');
      if (!isLoopback(name)) return c.text('this dashboard only answers requests addressed to 127.0.0.1 or localhost\n', 421);
    }
    if (token) {
      const auth = c.req.header('authorization');
      const bearer = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
      const fromQuery = c.req.query('token');
      if (tokenMatches(bearer, token) || tokenMatches(cookieValue(c.req.header('cookie'), TOKEN_COOKIE), token)) return next();
      if (fromQuery !== undefined && tokenMatches(fromQuery, token)) {
        if (c.req.path.startsWith('/api/')) return next();
        // First page load with ?token=: keep it in a cookie and drop it from the address bar
        // (and so from history and any Referer).
        const url = new URL(c.req.url);
        url.searchParams.delete('token');
        return new Response(null, {
          status: 303,
          headers: {
            Location: `${url.pathname}${url.search}`,
            'Set-Cookie': `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict`,
            'Cache-Control': 'no-store',
          },
        });
      }
      if (c.req.path.startsWith('/api/')) {
        return c.json({ error: 'this dashboard needs its token: Authorization: Bearer TOKEN' }, 401, { 'WWW-Authenticate': 'Bearer' });
      }
      return c.html(
        '<!doctype html><meta charset="utf-8"><title>s3backup dashboard</title><p>This dashboard needs its token: open it once as <code>/?token=YOUR-TOKEN</code> (it is then kept in a cookie for this browser session).</p>',
        401,
        { 'WWW-Authenticate': 'Bearer' },
      );
    }
    return next();
  });

  app.use('/api/*', async (c, next) => {
    await next();
    c.res.headers.set('Cache-Control', 'no-store');
  });

  app.get('/api/groups', async (c) => c.json(await fleetGroups(repos)));
  app.get('/api/summary', async (c) => c.json(await repoOf(c, repos).summary()));
  app.get('/api/backups', async (c) =>
    c.json(await repoOf(c, repos).page(intParam(c, 'offset', 0), intParam(c, 'limit', 50), groupParam(c))),
  );
  app.get('/api/timeline', async (c) => {
    const data = repoOf(c, repos);
    const [timeline, mon] = await Promise.all([data.timeline(groupParam(c)), data.monitor()]);
    const shown = new Set(timeline.ids);
    const anomalies: Record<string, { severity: string; metrics: string[]; messages: string[] }> = {};
    if (mon.status === 'ok') {
      for (const [id, fs] of Object.entries(mon.data.findings)) {
        if (!fs.length || !shown.has(id)) continue;
        anomalies[id] = {
          severity: fs.some((f) => f.severity === 'high') ? 'high' : 'warning',
          metrics: [...new Set(fs.map((f) => f.metric))],
          messages: fs.map((f) => f.message),
        };
      }
    }
    return c.json({ ...timeline, anomalies, monitor: mon.status === 'ok' ? { status: 'ok', runs: mon.data.runs.length } : mon });
  });
  app.get('/api/anomalies', async (c) => {
    const mon = await repoOf(c, repos).monitor();
    if (mon.status !== 'ok') return c.json(mon);
    const runs = mon.data.runs;
    const recent = runs
      .filter((r) => (mon.data.findings[r.id]?.length ?? 0) > 0)
      .slice(-50)
      .reverse()
      .map((r) => ({ id: r.id, time: r.time, host: r.host, sources: r.sources, group: r.sourceKey, findings: mon.data.findings[r.id] }));
    const failures = runs
      .filter((r) => !r.ok)
      .slice(-20)
      .reverse()
      .map((r) => ({
        id: r.id,
        time: r.time,
        host: r.host,
        sources: r.sources,
        group: r.sourceKey,
        error: r.error,
        operation: r.operation,
      }));
    const holds = mon.data.holds.map((h) => ({ backupId: h.backupId, time: h.time, host: h.host, sources: h.sources, reasons: h.reasons }));
    return c.json({ status: 'ok', data: { runs: runs.length, recent, failures, holds } });
  });
  app.get('/api/cost', async (c) => c.json(await repoOf(c, repos).cost()));
  app.get('/api/backups/:id', async (c) => c.json(await repoOf(c, repos).detail(backupRef(c))));
  // ?path= for a path that is UTF-8, ?pathBase64= (its bytes, as the tree gives them) for any.
  app.get('/api/backups/:id/tree', async (c) => {
    const b64 = c.req.query('pathBase64');
    const dir = b64 !== undefined ? nameFromBytes(Buffer.from(b64, 'base64')) : (c.req.query('path') ?? '');
    return c.json(await repoOf(c, repos).tree(backupRef(c), dir, intParam(c, 'offset', 0), intParam(c, 'limit', 2000)));
  });
  app.get('/api/*', (c) => c.json({ error: `no API ${c.req.path}` }, 404));

  app.get('*', (c) => {
    const a = assets.get(c.req.path);
    if (!a) return c.text('not found\n', 404);
    return c.body(new Uint8Array(a.body), 200, {
      'Content-Type': a.type,
      'Cache-Control': c.req.path === '/' ? 'no-store' : 'max-age=300',
    });
  });

  app.onError((e, c) => {
    if (e instanceof UsageError) return c.json({ error: e.message, hint: e.hint }, 400);
    if (e instanceof NotFoundError || (e instanceof S3BackupError && /^no backup /.test(e.message)))
      return c.json({ error: e.message }, 404);
    if (e instanceof S3BackupError) return c.json({ error: e.message, hint: e.hint }, 502);
    return c.json({ error: `unexpected error: ${(e as Error).message}` }, 500);
  });
  return app;
}

/** Serve the dashboard; resolves once listening (port 0 = any free port). */
export async function startDashboard(opts: DashboardServerOptions): Promise<RunningDashboard> {
  const host = opts.host ?? '127.0.0.1';
  checkExposure(host, opts.token);
  const app = dashboardApp({ data: opts.data, token: opts.token });
  const server = serve({ fetch: app.fetch, port: opts.port ?? 8080, hostname: host });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      reject(
        e.code === 'EADDRINUSE'
          ? new UsageError(`port ${opts.port} on ${host} is already in use`, { hint: 'choose another with --port' })
          : e.code === 'EADDRNOTAVAIL'
            ? new UsageError(`${host} is not an address of this machine`, { hint: 'use --host 127.0.0.1, or an address this machine has' })
            : new S3BackupError(`cannot listen on ${host}:${opts.port}: ${e.message}`),
      );
    };
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/`,
    host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        (server as import('node:http').Server).closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
