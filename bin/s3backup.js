#!/usr/bin/env -S node --max-semi-space-size=4
// Launcher: s3backup needs Node.js >= 24 (zstd in node:zlib). The repository brings Node 24 as
// an npm dependency; if an older system node started us, hand over to that one.
//
// --max-semi-space-size=4 (MiB; V8's default grows to 16): a backup allocates many short-lived
// objects per file, and a young generation left to grow costs ~30 MB of peak RSS with no gain in
// speed (measured on the bench tree). Node flags must be given at start, hence the shebang; the
// Dockerfile's ENTRYPOINT and the benchmark pass the same flags.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  const candidates = [join(here, '..', 'node_modules', 'node', 'bin', 'node'), join(here, '..', '..', 'node', 'bin', 'node')];
  const node24 = candidates.find((p) => existsSync(p));
  if (!node24) {
    console.error(
      `s3backup needs Node.js >= 24 (this is ${process.version}). Run "npm install" in the s3backup folder, then "npx s3backup".`,
    );
    process.exit(2);
  }
  const r = spawnSync(node24, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
const main = join(here, '..', 'dist', 'cli', 'main.js');
if (!existsSync(main)) {
  console.error('s3backup is not built yet: run "npm install" (or "npm run build") in its folder.');
  process.exit(2);
}
// More libuv threads than the default 4: restores create many files at once, and file creation
// waits on the kernel, not the CPU. Must be set before the pool's first use.
process.env.UV_THREADPOOL_SIZE ??= '8';
// V8 keeps the compiled code on disk between runs (node-compile-cache in the temp dir; a cache it
// cannot write is skipped): ~0.08 s less start-up for every command, most of it the AWS SDK.
(await import('node:module')).enableCompileCache?.();
await import(main);
