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

const PAGE = 4096;

/** The processes below `pid` (children of every thread, recursively), from /proc. */
function descendants(pid) {
  const out = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop();
    let tasks;
    try {
      tasks = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const t of tasks) {
      let text = '';
      try {
        text = fs.readFileSync(`/proc/${p}/task/${t}/children`, 'utf8');
      } catch {}
      for (const c of text.split(' ')) {
        if (!c) continue;
        out.push(Number(c));
        stack.push(Number(c));
      }
    }
  }
  return out;
}

/** Resident bytes of `pid` and every process below it (each counted once). */
export function treeRss(pid) {
  let bytes = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      bytes += Number(fs.readFileSync(`/proc/${p}/statm`, 'utf8').split(' ')[1]) * PAGE;
    } catch {}
  }
  return bytes;
}

/**
 * Peak RSS of a process tree (a pipeline's processes together), sampled from /proc every
 * `everyMs` until stop() is called: { stop(): peak bytes }. Sampling can miss a peak shorter
 * than the interval; for a single process, getrusage's maxRSS (exact) is the better figure.
 */
export function sampleTreeRss(pid, everyMs = 100) {
  let peak = 0;
  const look = () => {
    peak = Math.max(peak, treeRss(pid));
  };
  look();
  const timer = setInterval(look, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}
