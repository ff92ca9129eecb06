#!/usr/bin/env node
// `npm run screenshot`: the README's picture of the dashboard (docs/dashboard.png, and a phone-
// sized dark one, docs/dashboard-phone.png), made from a real demo repository:
//   35 nightly backups of a small tree with ordinary daily churn, on dates a month apart from
//   today (each backup runs under faketime, so the timeline looks like a real month), the 30th
//   of them after a ransomware-like rewrite of many files with random content (an anomaly);
//   then `s3backup dashboard` over it in headless Chromium, with a backup opened.
//   A cost report each week (s3backup cost --save-csv) gives the cost forecast its history.
// Needs: npm run build, Debian's chromium and faketime (apt-get install chromium faketime).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 's3backup.js');
const outDir = process.argv[2] ?? path.join(root, 'docs');
if (!fs.existsSync('/usr/bin/chromium')) {
  console.error('/usr/bin/chromium is missing: apt-get install chromium');
  process.exit(2);
}
// libfaketime preloaded into our own child (not the faketime wrapper), so the pid we stop is node's.
const libDir = fs
  .readdirSync('/usr/lib')
  .map((d) => path.join('/usr/lib', d, 'faketime', 'libfaketime.so.1'))
  .find((f) => fs.existsSync(f));
if (!libDir) {
  console.error('libfaketime is missing: apt-get install faketime');
  process.exit(2);
}
/** Environment that makes a child's clock start at `when` (and run on from there). */
const at = (when) => ({
  ...env,
  LD_PRELOAD: libDir,
  FAKETIME: `@${when.toISOString().replace('T', ' ').slice(0, 19)}`,
  FAKETIME_DONT_FAKE_MONOTONIC: '1',
});
if (!fs.existsSync(path.join(root, 'dist', 'dashboard', 'public', 'app.js'))) {
  console.error('not built: run "npm run build" first');
  process.exit(2);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 's3b-screenshot-'));
const src = path.join(work, 'team-share');
const repo = path.join(work, 'repo');
const costCsv = path.join(work, 'cost.csv');
const env = {
  ...process.env,
  HOME: work,
  XDG_STATE_HOME: path.join(work, 'state'),
  XDG_CONFIG_HOME: path.join(work, 'config'),
  S3BACKUP_REPO: '',
  S3BACKUP_CONFIG: '',
};

/** Deterministic pseudo-random bytes (xorshift). */
function noise(size, seed) {
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
const write = (p, data) => {
  fs.mkdirSync(path.dirname(path.join(src, p)), { recursive: true });
  fs.writeFileSync(path.join(src, p), data);
};
const text = (n, seed) =>
  Array.from({ length: n }, (_, i) => `line ${i} of a document, revision ${seed}: lorem ipsum dolor sit amet\n`).join('');

// The tree: documents, a code project, photos (incompressible), a mail spool that grows.
for (let i = 0; i < 40; i++) write(`documents/reports/report-${String(i).padStart(2, '0')}.md`, text(200 + i * 10, 0));
for (let i = 0; i < 30; i++) write(`projects/website/src/module-${i}.ts`, text(80, 0));
for (let i = 0; i < 12; i++) write(`photos/2026/img_${1000 + i}.jpg`, noise(300_000 + i * 5000, i + 1));
write('mail/inbox.mbox', text(2000, 0));

const days = 35;
const anomalyDay = 29;
const start = Date.now() - days * 86_400_000;
let last;
for (let d = 0; d < days; d++) {
  // Ordinary churn: a few documents edited, the mail grows, now and then new photos.
  for (let k = 0; k < 3 + (d % 4); k++)
    write(`documents/reports/report-${String((d * 7 + k) % 40).padStart(2, '0')}.md`, text(220 + d * 3, d));
  fs.appendFileSync(path.join(src, 'mail/inbox.mbox'), text(60 + (d % 5) * 20, d));
  if (d % 6 === 5) write(`photos/2026/img_${2000 + d}.jpg`, noise(400_000, 100 + d));
  if (d % 9 === 8) write(`projects/website/src/module-${d % 30}.ts`, text(90, d));
  if (d === anomalyDay) {
    // Many files rewritten with random content, as ransomware would.
    for (let i = 0; i < 40; i++) write(`documents/reports/report-${String(i).padStart(2, '0')}.md`, noise(200_000, 7000 + i));
  }
  if (d === anomalyDay + 1) {
    for (let i = 0; i < 40; i++) write(`documents/reports/report-${String(i).padStart(2, '0')}.md`, text(230 + i, d));
  }
  const when = new Date(start + d * 86_400_000);
  when.setUTCHours(2, (d * 13) % 20, 0, 0);
  const r = spawnSync(process.execPath, [bin, 'backup', src, '--repo', repo, '--no-forget', '--json'], { env: at(when), encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 3) {
    console.error(r.stderr);
    process.exit(1);
  }
  last = JSON.parse(r.stdout);
  process.stderr.write(
    `backup ${d + 1}/${days} ${last.id}${last.anomalies?.length ? ` (anomalies: ${last.anomalies.map((a) => a.metric).join(', ')})` : ''}\n`,
  );
  if (d % 7 === 6) {
    const c = spawnSync(process.execPath, [bin, 'cost', '--repo', repo, '--save-csv', costCsv, '--json'], {
      env: at(new Date(when.getTime() + 3_600_000)),
      encoding: 'utf8',
    });
    if (c.status !== 0) {
      console.error(c.stderr);
      process.exit(1);
    }
  }
}
const ids = JSON.parse(execFileSync(process.execPath, [bin, 'list', '--repo', repo, '--json'], { env, encoding: 'utf8' })).backups.map(
  (b) => b.id,
);
const anomalous = ids[anomalyDay];

// The dashboard, as of a few hours after the last backup.
const now = new Date(start + (days - 1) * 86_400_000 + 9 * 3_600_000);
const config = path.join(work, 's3backup.yaml');
fs.writeFileSync(config, `cost:\n  saveCsv: ${costCsv}\n`);
const server = spawn(
  process.execPath,
  [bin, 'dashboard', '--repo', repo, '--config', config, '--port', '0', '--max-age', '26h', '--json'],
  { env: at(now), stdio: ['ignore', 'pipe', 'inherit'] },
);
const url = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (c) => {
    out += c;
    try {
      resolve(JSON.parse(out).url);
    } catch {
      // more to come
    }
  });
  server.on('exit', (code) => reject(new Error(`dashboard exited with ${code}`)));
});

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, colorScheme: 'light' });
  await page.goto(url);
  await page.waitForSelector('body[data-ready]');
  await page.click(`#backups tr[data-id="${anomalous}"]`);
  await page.waitForSelector('#tree .dirlink');
  await page.click('#tree .dirlink');
  await page.click('#tree .dirlink:text("documents/")');
  await page.click('#tree .dirlink:text("reports/")');
  await page.click('#tree tr:nth-child(3) button.restore');
  await page.waitForSelector('#anomalies .finding');
  await page.waitForSelector('#forecast-chart canvas');
  await page.screenshot({ path: path.join(outDir, 'dashboard.png'), fullPage: true });

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', isMobile: true, deviceScaleFactor: 1 });
  await phone.goto(url);
  await phone.waitForSelector('body[data-ready]');
  await phone.screenshot({ path: path.join(outDir, 'dashboard-phone.png') });
  console.log(`wrote ${path.join(outDir, 'dashboard.png')} and dashboard-phone.png (${ids.length} backups, anomaly at ${anomalous})`);
} finally {
  await browser.close();
  server.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
}
