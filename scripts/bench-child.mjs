// Runs the CLI in this process and reports peak RSS (getrusage maxRSS) on fd 3 at exit.
import { writeSync } from 'node:fs';
process.on('exit', () => {
  try {
    writeSync(3, JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS }));
  } catch {}
});
await import(new URL('../dist/cli/main.js', import.meta.url).href);
