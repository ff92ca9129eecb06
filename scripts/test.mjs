#!/usr/bin/env node
// The project's test command (`npm test`): builds, starts a real S3 server (Ceph RGW on
// loopback, via scripts/ceph-rgw.sh) unless S3_TEST_ENDPOINT points at one already, runs every
// test file with node's test runner, then stops the server it started.
//
//   npm test                       all tests
//   npm test -- test/restore.test.ts   some files
//   S3_TEST_ENDPOINT=http://127.0.0.1:7480 npm test   reuse a running server (keys: S3_TEST_ACCESS_KEY_ID/S3_TEST_SECRET_ACCESS_KEY)
import { spawnSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(`npm test needs Node.js >= 24 (this is ${process.version}); run it through npm so the project's own Node is used`);
  process.exit(2);
}

let b = run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
if (b.status !== 0) process.exit(b.status ?? 1);
b = run(process.execPath, [join(root, 'scripts/copy-assets.mjs')]);
if (b.status !== 0) process.exit(b.status ?? 1);
// The tests are type-checked too (the build covers src/ only): a test that calls an API wrongly
// fails here, in a second, instead of at run time or not at all.
b = run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.test.json']);
if (b.status !== 0) process.exit(b.status ?? 1);

// The whole suite also checks the code's shape: Biome (format and lint), knip (unused files,
// exports and dependencies) and the function-size limit. A run of some files skips this.
if (process.argv.length <= 2) {
  const bin = (name) => join(root, 'node_modules/.bin', name);
  for (const [cmd, args] of [
    [bin('biome'), ['check', '.']],
    [bin('knip'), ['--no-progress']],
    [process.execPath, [join(root, 'scripts/function-sizes.mjs'), '--max', '150', '--except', 'buildProgram']],
  ]) {
    b = run(cmd, args);
    if (b.status !== 0) {
      console.error(`npm test: ${cmd.split('/').pop()} ${args[0]} failed (npm run lint, npm run format)`);
      process.exit(b.status ?? 1);
    }
  }
}

let startedCeph = false;
const port = process.env.S3_TEST_PORT ?? '7480';
if (!process.env.S3_TEST_ENDPOINT) {
  const r = spawnSync('bash', [join(root, 'scripts/ceph-rgw.sh'), 'start', port], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    console.error('could not start the Ceph RGW test server (scripts/ceph-rgw.sh); set S3_TEST_ENDPOINT to use another S3 server');
    process.exit(1);
  }
  const env = Object.fromEntries(
    r.stdout
      .split('\n')
      .filter((l) => /^[A-Z0-9_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  process.env.S3_TEST_ENDPOINT = env.S3_ENDPOINT;
  process.env.S3_TEST_ACCESS_KEY_ID = env.AWS_ACCESS_KEY_ID;
  process.env.S3_TEST_SECRET_ACCESS_KEY = env.AWS_SECRET_ACCESS_KEY;
  // A server that was already running on the port is another run's: it is left running.
  startedCeph = env.S3_SERVER_REUSED !== '1';
}
process.env.S3_TEST_ACCESS_KEY_ID ??= 'testkey';
process.env.S3_TEST_SECRET_ACCESS_KEY ??= 'testsecret';

let files = process.argv.slice(2);
if (files.length === 0) {
  files = readdirSync(join(root, 'test'))
    .filter((f) => f.endsWith('.test.ts'))
    .sort()
    .map((f) => join('test', f));
}
// Every temporary file of the run (the tests' trees and repositories, the CLI's own, Chromium's
// profiles: a few hundred MB) goes into one directory, removed when the run passes and kept for
// a look when it fails; repeated runs would otherwise fill /tmp.
const runTmp = mkdtempSync(join(tmpdir(), 's3backup-test-'));
// Like /tmp itself (sticky, open to all): some tests run the CLI as an unprivileged user.
chmodSync(runTmp, 0o1777);
const child = spawn(process.execPath, ['--test', '--test-concurrency=2', '--test-reporter=spec', ...files], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, TMPDIR: runTmp },
});
const stop = () => {
  if (startedCeph) spawnSync('bash', [join(root, 'scripts/ceph-rgw.sh'), 'stop', port], { cwd: root, stdio: 'inherit' });
};
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  stop();
  const status = code ?? (signal ? 1 : 0);
  if (status === 0) rmSync(runTmp, { recursive: true, force: true });
  else console.error(`the tests' temporary files are kept in ${runTmp}`);
  process.exit(status);
});
