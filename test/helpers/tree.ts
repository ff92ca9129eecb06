// Test trees with every entry type the backup must handle, and a byte-and-metadata comparison.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'bin', 's3backup.js');

export function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `s3b-${label}-`));
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function pseudoRandom(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Small, fast, seedable PRNG (mulberry32): numbers in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A source tree with: small, empty, multi-frame (compressible and random) files; empty and
 * nested dirs; relative, absolute and dangling symlinks; a hard link pair; names over 100 and
 * 255 bytes; NFC and NFD unicode; odd modes; old and fractional mtimes.
 */
export function makeTree(root: string): void {
  const w = (p: string, data: string | Buffer, mode?: number) => {
    const abs = path.join(root, p);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, data);
    if (mode !== undefined) fs.chmodSync(abs, mode);
  };
  fs.mkdirSync(root, { recursive: true });
  w('hello.txt', 'hello, world\n');
  w('empty.txt', '');
  w('docs/readme.md', '# readme\n'.repeat(1000));
  w('docs/deep/a/b/c/d/e/file.txt', 'deep\n');
  w('data/compressible.log', Buffer.from('2026-11-26 INFO request served in 12ms\n'.repeat(300_000))); // ~11 MiB
  w('data/random.bin', pseudoRandom(9 * 1024 * 1024 + 123, 42)); // spans frames, incompressible
  w('data/exact-block.bin', pseudoRandom(512 * 8, 7));
  w('modes/private.key', 'secret-ish\n', 0o600);
  w('modes/script.sh', '#!/bin/sh\necho hi\n', 0o755);
  w('modes/readonly.txt', 'ro\n', 0o444);
  fs.mkdirSync(path.join(root, 'modes/locked-dir'), { recursive: true });
  w('modes/locked-dir/inside.txt', 'inside\n');
  fs.chmodSync(path.join(root, 'modes/locked-dir'), 0o555);
  fs.mkdirSync(path.join(root, 'empty-dir/nested-empty'), { recursive: true });
  fs.symlinkSync('hello.txt', path.join(root, 'link-relative'));
  fs.symlinkSync('/etc/hostname', path.join(root, 'link-absolute'));
  fs.symlinkSync('does/not/exist', path.join(root, 'link-dangling'));
  fs.symlinkSync('docs', path.join(root, 'link-to-dir'));
  w('links/original.txt', 'shared content\n');
  fs.linkSync(path.join(root, 'links/original.txt'), path.join(root, 'links/second-name.txt'));
  const long = `${'long-name-'.repeat(12)}end.txt`; // 127 bytes
  w(`long/${long}`, 'long name\n');
  const deepLong = Array.from({ length: 6 }, (_, i) => `segment-${i}-${'x'.repeat(40)}`).join('/');
  w(`long/${deepLong}/file.txt`, 'long path\n'); // > 255 bytes total
  w('unicode/caf\u00e9-nfc.txt', 'nfc\n');
  w('unicode/cafe\u0301-nfd.txt', 'nfd\n');
  w('unicode/日本語/ファイル.txt', 'にほんご\n');
  w('unicode/emoji-😀.txt', 'emoji\n');
  w('spaces and (punctuation) [x] & y.txt', 'odd\n');
  // Times: an old one, and one with a sub-second part.
  fs.utimesSync(path.join(root, 'hello.txt'), 946684800, 946684800); // 2000-01-01
  fs.utimesSync(path.join(root, 'docs/readme.md'), 1700000000.123456, 1700000000.123456);
  fs.utimesSync(path.join(root, 'docs'), 1600000000, 1600000000);
}

export interface TreeItem {
  type: string;
  mode: number;
  size: number;
  mtimeMs: number;
  sha256?: string;
  target?: string;
  ino: number;
}

/** Every path below root (relative) with type, mode, size, mtime, content hash or link target. */
export function snapshotTree(root: string): Map<string, TreeItem> {
  const out = new Map<string, TreeItem>();
  const walk = (dir: string, rel: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const abs = path.join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(abs);
      const item: TreeItem = { type: '', mode: st.mode & 0o7777, size: 0, mtimeMs: st.mtimeMs, ino: st.ino };
      if (st.isDirectory()) item.type = 'dir';
      else if (st.isSymbolicLink()) {
        item.type = 'symlink';
        item.target = fs.readlinkSync(abs);
        item.mode = 0;
      } else if (st.isFile()) {
        item.type = 'file';
        item.size = st.size;
        item.sha256 = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
      } else item.type = 'other';
      out.set(r, item);
      if (st.isDirectory()) walk(abs, r);
    }
  };
  walk(root, '');
  return out;
}

/** Differences between two trees, as readable lines (empty = identical). */
export function diffTrees(a: string, b: string, opts: { mtimes?: boolean; skip?: (p: string) => boolean } = {}): string[] {
  const ta = snapshotTree(a);
  const tb = snapshotTree(b);
  const diffs: string[] = [];
  for (const [p, x] of ta) {
    if (opts.skip?.(p)) continue;
    const y = tb.get(p);
    if (!y) {
      diffs.push(`missing: ${p}`);
      continue;
    }
    for (const k of ['type', 'mode', 'size', 'sha256', 'target'] as const) {
      if (x[k] !== y[k]) diffs.push(`${p}: ${k} ${x[k]} != ${y[k]}`);
    }
    if (opts.mtimes !== false && x.type !== 'symlink' && Math.abs(x.mtimeMs - y.mtimeMs) > 0.01) {
      diffs.push(`${p}: mtime ${x.mtimeMs} != ${y.mtimeMs}`);
    }
  }
  for (const p of tb.keys()) if (!ta.has(p) && !opts.skip?.(p)) diffs.push(`extra: ${p}`);
  return diffs;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A command's --json output: exactly one JSON document on stdout, or the test fails showing it. */
export function json(stdout: string): any {
  try {
    return JSON.parse(stdout);
  } catch {
    assert.fail(`stdout is not one JSON document:\n${stdout}`);
  }
}

/** Run the real CLI (bin/s3backup.js) as a child process. */
export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; asUser?: number; input?: string } = {},
): Promise<CliResult> {
  const cmd = opts.asUser !== undefined ? 'setpriv' : process.execPath;
  const argv =
    opts.asUser !== undefined
      ? [`--reuid=${opts.asUser}`, `--regid=${opts.asUser}`, '--clear-groups', process.execPath, BIN, ...args]
      : [BIN, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** Environment isolating the CLI from the user's own config, repository and logs. */
export function isolatedEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    HOME: home,
    XDG_DATA_HOME: path.join(home, 'data'),
    XDG_STATE_HOME: path.join(home, 'state'),
    XDG_CONFIG_HOME: path.join(home, 'config'),
    S3BACKUP_REPO: '',
    BUCKET_NAME: '',
    S3BACKUP_CONFIG: '',
    S3BACKUP_LOG_DIR: '',
    S3BACKUP_HOST: '',
    AWS_ENDPOINT_URL_S3: '',
    // Notifications and metrics stay off unless a test turns them on.
    SNS_TOPIC_ARN: '',
    SLACK_WEBHOOK_URL: '',
    WEBHOOK_URL: '',
    WEBHOOK_SECRET: '',
    SMTP_URL: '',
    EMAIL_TO: '',
    EMAIL_FROM: '',
    CLOUDWATCH_NAMESPACE: '',
    PROMETHEUS_TEXTFILE: '',
    S3BACKUP_PASSWORD_COMMAND: '',
    // No proxy unless a test sets one (the variables are read in either case).
    HTTP_PROXY: '',
    HTTPS_PROXY: '',
    NO_PROXY: '',
    http_proxy: '',
    https_proxy: '',
    no_proxy: '',
    ...extra,
  };
}
