// Runs the CLI in this process, through its launcher as a user would (bin/s3backup.js: thread
// pool size), and reports peak RSS (getrusage maxRSS) and CPU time on fd 3 at exit. bench.mjs
// starts it with the node flags of the launcher's shebang.
import { writeSync } from 'node:fs';
process.on('exit', () => {
  try {
    const u = process.resourceUsage();
    // CPU time of every thread (main, workers, libuv pool): steadier than wall time on a busy machine.
    writeSync(3, JSON.stringify({ maxRssKiB: u.maxRSS, cpuMs: (u.userCPUTime + u.systemCPUTime) / 1000 }));
  } catch {}
});
await import(new URL('../bin/s3backup.js', import.meta.url).href);
