// What the benchmark scripts (bench.mjs, ab.mjs) share.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The node flags a user's run gets: those on the shebang line of a checkout's launcher. */
export function launcherNodeFlags(checkout) {
  return fs
    .readFileSync(path.join(checkout, 'bin/s3backup.js'), 'utf8')
    .split('\n')[0]
    .split(/\s+/)
    .filter((w) => w.startsWith('--'));
}

/** The upper median (of an even count, the larger middle value). */
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A shell command that writes `dir` as a tar stream to stdout, with its own name at the top. */
export function tarOf(dir) {
  const abs = path.resolve(dir);
  return `tar -cf - -C "${path.dirname(abs)}" "${path.basename(abs)}"`;
}

/** Read the whole tree once, so a run finds it in the page cache. Through a pipe: GNU tar
 * writing to /dev/null itself skips reading file contents. */
export function warmTree(dir) {
  spawnSync('bash', ['-c', `${tarOf(dir)} | cat > /dev/null`]);
}
