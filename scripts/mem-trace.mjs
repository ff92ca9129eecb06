// Where a command's memory goes, sampled while it runs: load it before the CLI,
//
//   S3B_MEM_TRACE=out.json node --import ./scripts/mem-trace.mjs bin/s3backup.js backup …
//
// Every S3B_MEM_INTERVAL ms (default 50) it records the process's RSS (anonymous and file-backed,
// from /proc/self/status), the main thread's V8 heap (used and reserved), its external memory
// and array buffers (process.memoryUsage()), and the heaps of worker threads
// (Worker#getHeapStatistics). At exit it writes to S3B_MEM_TRACE: the peak of each, the sample
// at the RSS peak (what the RSS was made of then), and the whole series. RSS not explained by
// the heaps and external memory is native: zstd contexts, thread stacks, libuv, code, and
// glibc arenas that still hold freed memory.
//
// S3B_HEAP_SNAPSHOT_AT=MB writes one heap snapshot (v8.writeHeapSnapshot, beside the trace) the
// first time the main heap's used size passes MB; S3B_HEAP_SNAPSHOT_AT=exit writes one at exit.
import * as fs from 'node:fs';
import * as v8 from 'node:v8';

const out = process.env.S3B_MEM_TRACE;
const interval = Number(process.env.S3B_MEM_INTERVAL ?? 50);
const snapshotAt = process.env.S3B_HEAP_SNAPSHOT_AT;
const MB = 1 << 20;
const t0 = performance.now();
const workers = new Set();
const workerHeaps = new Map(); // worker → last used heap bytes
const samples = [];
let snapshotTaken = false;

process.on('worker', (w) => {
  workers.add(w);
  w.once('exit', () => {
    workers.delete(w);
    workerHeaps.delete(w);
  });
});

function statusKiB(text, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

function sample() {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const mu = process.memoryUsage();
  let workerHeap = 0;
  for (const h of workerHeaps.values()) workerHeap += h;
  const s = {
    ms: Math.round(performance.now() - t0),
    rss: statusKiB(status, 'VmRSS') * 1024,
    rssAnon: statusKiB(status, 'RssAnon') * 1024,
    rssFile: statusKiB(status, 'RssFile') * 1024,
    heapUsed: mu.heapUsed,
    heapTotal: mu.heapTotal,
    external: mu.external,
    arrayBuffers: mu.arrayBuffers,
    workers: workers.size,
    workerHeap,
    threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0),
  };
  samples.push(s);
  for (const w of workers) {
    // Asynchronous: the figure lands in the next sample.
    w.getHeapStatistics?.().then(
      (h) => workerHeaps.set(w, h.used_heap_size),
      () => {},
    );
  }
  if (snapshotAt && snapshotAt !== 'exit' && !snapshotTaken && mu.heapUsed > Number(snapshotAt) * MB && out) {
    snapshotTaken = true;
    v8.writeHeapSnapshot(`${out}.${s.ms}ms.heapsnapshot`);
  }
}

const timer = setInterval(sample, interval);
timer.unref();

process.on('exit', () => {
  if (!out) return;
  sample();
  if (snapshotAt === 'exit') v8.writeHeapSnapshot(`${out}.exit.heapsnapshot`);
  const peak = {};
  for (const k of Object.keys(samples[0])) peak[k] = Math.max(...samples.map((s) => s[k]));
  const atPeak = samples.reduce((a, b) => (b.rss > a.rss ? b : a));
  const mb = (o) =>
    Object.fromEntries(
      Object.entries(o).map(([k, v]) => [k, k === 'ms' || k === 'workers' || k === 'threads' ? v : Math.round((v / MB) * 10) / 10]),
    );
  fs.writeFileSync(
    out,
    JSON.stringify({ argv: process.argv.slice(2), unit: 'MB', peak: mb(peak), atPeak: mb(atPeak), samples: samples.map(mb) }),
  );
});
