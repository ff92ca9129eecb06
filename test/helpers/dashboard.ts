// Repositories for the dashboard tests: real backups of a small changing tree, or (for the
// 2,000-backup tests) manifests written directly with the library's encoder for a tiny tree.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { type BackupResult, runBackup, runRecordOf as libraryRunRecordOf } from '../../src/backup/backup.ts';
import { DashboardData, type DashboardDataOptions } from '../../src/dashboard/data.ts';
import { type RunningDashboard, startDashboard } from '../../src/dashboard/server.ts';
import { emptyStats, encodeManifestHead, type Entry, MANIFEST_FORMAT, type ManifestHeader } from '../../src/repo/manifest.ts';
import { newSnapshotId, Repository } from '../../src/repo/repository.ts';
import type { Store } from '../../src/store/store.ts';
import type { RunRecord } from '../../src/monitor/types.ts';
import { BIN, pseudoRandom } from './tree.ts';
import { LEGACY_MANIFEST_VERSION } from './legacy-manifest.ts';

/** A small source tree: text files, a nested dir, a name with glob characters, a FIFO (one warning per backup). */
export function makeSource(dir: string): void {
  fs.mkdirSync(path.join(dir, 'docs', 'deep'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'hello.txt'), 'hello, world\n');
  fs.writeFileSync(path.join(dir, 'docs', 'readme.md'), '# readme\n'.repeat(200));
  fs.writeFileSync(path.join(dir, 'docs', 'deep', 'note [v1].txt'), 'a note with glob characters in its name\n');
  fs.writeFileSync(path.join(dir, 'counter.txt'), '0\n');
  execFileSync('mkfifo', [path.join(dir, 'pipe')]);
}

/**
 * n real backups of dir, each after the same kind of small change (a counter file rewritten
 * with a slightly different size, one log file rewritten, one temporary file replaced by a new
 * one), so the history is steady. bigAt: before that backup, add `big` bytes of random content
 * (an anomaly for the detector; best the last backup, so no later one has to "recover").
 */
export async function makeBackups(
  store: Store,
  dir: string,
  n: number,
  opts: { bigAt?: number; big?: number; onBackup?: (r: BackupResult, i: number) => Promise<void> | void } = {},
): Promise<BackupResult[]> {
  const out: BackupResult[] = [];
  for (let i = 0; i < n; i++) {
    fs.writeFileSync(path.join(dir, 'counter.txt'), `${i}\n${'x'.repeat(1000 + ((i * 37) % 200))}\n`);
    fs.writeFileSync(path.join(dir, `log-${i % 3}.txt`), `entry ${i}\n`.repeat(50 + (i % 7) * 5));
    fs.rmSync(path.join(dir, `tmp-${i - 1}.txt`), { force: true });
    fs.writeFileSync(path.join(dir, `tmp-${i}.txt`), `temporary ${i}\n`);
    if (i === opts.bigAt) fs.writeFileSync(path.join(dir, 'big-random.bin'), pseudoRandom(opts.big ?? 2 << 20, 1234 + i));
    const r = await runBackup({ store, sources: [dir] });
    out.push(r);
    await opts.onBackup?.(r, i);
  }
  return out;
}

/**
 * n backups written as manifests only (no archives; every one lists the same one-file tree),
 * one hour apart, oldest first. For listing and paging at scale, where real backups would be slow.
 */
export async function writeSyntheticManifests(store: Store, n: number, start = Date.UTC(2026, 0, 1)): Promise<string[]> {
  const { repo } = await Repository.openOrInit(store);
  const ids: string[] = [];
  const entries = [
    { path: 'data', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: start, ctime: start, ino: 1, size: 0 },
    { path: 'data/file.txt', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: start, ctime: start, ino: 2, size: 0 },
  ] satisfies Entry[];
  const body = zlib.zstdCompressSync(`${entries.map((e) => JSON.stringify(e)).join('\n')}\n`);
  const queue: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const t = new Date(start + i * 3_600_000);
    const id = newSnapshotId(t);
    ids.push(id);
    const stats = {
      ...emptyStats(),
      files: 1,
      dirs: 1,
      bytesIn: 1000 + (i % 24) * 10,
      bytesTotal: 1000,
      bytesStored: 600 + (i % 24) * 5,
      durationMs: 100 + (i % 10),
    };
    const header: ManifestHeader = {
      format: MANIFEST_FORMAT,
      version: LEGACY_MANIFEST_VERSION,
      id,
      time: t.toISOString(),
      endTime: new Date(t.getTime() + stats.durationMs).toISOString(),
      kind: 'full',
      host: 'synthetic',
      sources: [{ path: '/srv/data', name: 'data' }],
      tags: [],
      toolVersion: 'test',
      options: { codec: 'zstd', frameSize: 1 << 20, excludes: [] },
      stats,
      warnings: [],
    };
    queue.push(store.put(repo.manifestKey(id), Buffer.concat([encodeManifestHead(header, []), body])));
    if (queue.length >= 32) await Promise.all(queue.splice(0));
  }
  await Promise.all(queue);
  return ids;
}

/** A dashboard on 127.0.0.1 on a free port, over this store. */
export async function serveDashboard(
  store: Store,
  opts: DashboardDataOptions & { token?: string; host?: string } = {},
): Promise<{
  data: DashboardData;
  server: RunningDashboard;
  get: (p: string, init?: RequestInit) => Promise<Response>;
  close: () => Promise<void>;
}> {
  const data = new DashboardData(store, opts);
  const server = await startDashboard({ data, host: opts.host ?? '127.0.0.1', port: 0, token: opts.token });
  const base = `http://127.0.0.1:${server.port}`;
  return {
    data,
    server,
    get: (p, init) => fetch(base + p, init),
    close: async () => {
      await server.close();
      await data.close();
    },
  };
}

/** Every file under dir with its size and mtime, to prove nothing was written. */
export function treeState(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const abs = path.join(d, name);
      const st = fs.statSync(abs);
      out.push(`${path.relative(dir, abs)} ${st.isDirectory() ? 'dir' : st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(abs);
    }
  };
  walk(dir);
  return out;
}

/** A run record like the one a backup leaves in the run history (tests derive failure records from it). */
export function runRecordOf(r: BackupResult, sources: string[]): RunRecord {
  return libraryRunRecordOf(
    r,
    os.hostname(),
    sources.map((s) => path.resolve(s)),
    [],
  );
}

/** `s3backup dashboard --port 0 --json ARGS` as a child process; resolves with its --json document once it listens. */
export async function startDashboardCli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; doc: { url: string; repository: string; tokenRequired: boolean } }> {
  const child = spawn(process.execPath, [BIN, 'dashboard', '--port', '0', '--json', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const doc = await new Promise<{ url: string; repository: string; tokenRequired: boolean }>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      stdout += d;
      try {
        resolve(JSON.parse(stdout));
      } catch {
        // not complete yet
      }
    });
    child.on('exit', (code) => reject(new Error(`dashboard exited with ${code}: ${stderr}`)));
  });
  return { child, doc };
}

export { launchChromium } from '../../scripts/headless-chromium.ts';
