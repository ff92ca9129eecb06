#!/usr/bin/env node
// Dashboard figures for a large repository (README "Dashboard", docs/dashboard.md):
//   node scripts/dashboard-bench.mjs [N]      (default 2000 backups; needs /usr/bin/chromium)
//   S3_TEST_ENDPOINT=http://127.0.0.1:7480 node scripts/dashboard-bench.mjs   also on S3
// Writes N backups as manifests (a tiny tree each, the library's encoder), serves the dashboard
// over them, and times the first (cold) and a later (warm) API answer, the timeline's size, and
// the page in headless Chromium until its data is shown.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { LocalStore } from '../src/store/local.ts';
import { serveDashboard, writeSyntheticManifests } from '../test/helpers/dashboard.ts';

const n = Number(process.argv[2] ?? 2000);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-dash-bench-'));
const ms = (t0) => `${(performance.now() - t0).toFixed(0)} ms`;

async function bench(label, makeStore) {
  const t0 = performance.now();
  await writeSyntheticManifests(makeStore(), n);
  console.log(`${label}: wrote ${n} manifests in ${ms(t0)}`);
  const d = await serveDashboard(makeStore());
  try {
    let t = performance.now();
    await (await d.get('/api/summary')).json();
    console.log(`${label}: first /api/summary (list + ${n} header reads): ${ms(t)}`);
    t = performance.now();
    await (await d.get('/api/backups?offset=0&limit=50')).json();
    console.log(`${label}: /api/backups page of 50 (cached): ${ms(t)}`);
    t = performance.now();
    const body = await (await d.get('/api/timeline')).text();
    console.log(`${label}: /api/timeline: ${ms(t)}, ${(body.length / 1024).toFixed(0)} KiB`);
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
    });
    try {
      for (const run of ['first', 'second']) {
        const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
        t = performance.now();
        await page.goto(d.server.url);
        await page.waitForSelector('body[data-ready]', { timeout: 120_000 });
        console.log(`${label}: page load to data shown (${run}): ${ms(t)}`);
        t = performance.now();
        await page.selectOption('#metric', 'durationMs');
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
        console.log(`${label}: redraw the chart with ${n} points (metric switch): ${ms(t)}`);
        await page.close();
      }
    } finally {
      await browser.close();
    }
  } finally {
    await d.close();
  }
}

try {
  await bench('local', () => new LocalStore(path.join(work, 'repo')));
  if (process.env.S3_TEST_ENDPOINT) {
    const { createTestBucket, deleteTestBucket, testS3Store } = await import('../test/helpers/s3.ts');
    process.env.S3_TEST_ACCESS_KEY_ID ??= 'testkey';
    process.env.S3_TEST_SECRET_ACCESS_KEY ??= 'testsecret';
    const bucket = await createTestBucket('dash-bench');
    try {
      await bench('s3', () => testS3Store(bucket, 'repo'));
    } finally {
      await deleteTestBucket(bucket);
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
