// Runs the CLI in this process and reports peak RSS (getrusage maxRSS) on fd 3 at exit.
import { writeSync } from 'node:fs';
process.on('exit', () => {
  try {
    const u = process.resourceUsage();
    // CPU time of every thread (main, workers, libuv pool): steadier than wall time on a busy machine.
    writeSync(3, JSON.stringify({ maxRssKiB: u.maxRSS, cpuMs: (u.userCPUTime + u.systemCPUTime) / 1000 }));
  } catch {}
});
await import(new URL('../dist/cli/main.js', import.meta.url).href);
