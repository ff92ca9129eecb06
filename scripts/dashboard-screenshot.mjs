#!/usr/bin/env node
// `npm run screenshot`: the README's picture of the dashboard (docs/dashboard.png, and a phone-
// sized dark one, docs/dashboard-phone.png), made from a real demo fleet:
//   one repository with four groups on three hosts: a file server's team share (35 nightly
//   backups with ordinary churn, the 30th after a ransomware-like rewrite: an anomaly and a
//   retention hold), its /etc (nightly), a web server's site that stopped backing up 9 days
//   ago, and a database dumped twice a day; and an encrypted repository beside it (a laptop,
//   nightly for the last 10 days). Each backup runs under faketime on its own date, so the
//   timelines look like a real month. A cost report each week (s3backup cost --save-csv)
//   gives the cost forecast its history. Then `s3backup dashboard --repo A --repo B` in
//   headless Chromium, with the attacked group selected and its backup opened.
// Needs: npm run build, Debian's chromium and faketime (apt-get install chromium faketime).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './headless-chromium.ts';

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
const etc = path.join(work, 'etc');
const www = path.join(work, 'www');
const dbDump = path.join(work, 'db-dump');
const laptop = path.join(work, 'laptop');
const repo = path.join(work, 'office-repo');
const laptopRepo = path.join(work, 'laptops-repo');
const costCsv = path.join(work, 'cost.csv');
const password = 'screenshot demo passphrase';
const env = {
  ...process.env,
  HOME: work,
  XDG_STATE_HOME: path.join(work, 'state'),
  XDG_CONFIG_HOME: path.join(work, 'config'),
  S3BACKUP_REPO: '',
  S3BACKUP_CONFIG: '',
  S3BACKUP_PASSWORD: password,
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
const writeIn = (root, p, data) => {
  fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
  fs.writeFileSync(path.join(root, p), data);
};
const write = (p, data) => writeIn(src, p, data);
const text = (n, seed) =>
  Array.from({ length: n }, (_, i) => `line ${i} of a document, revision ${seed}: lorem ipsum dolor sit amet\n`).join('');

// The team share: documents, a code project, photos (incompressible), a mail spool that grows.
for (let i = 0; i < 40; i++) write(`documents/reports/report-${String(i).padStart(2, '0')}.md`, text(200 + i * 10, 0));
for (let i = 0; i < 30; i++) write(`projects/website/src/module-${i}.ts`, text(80, 0));
for (let i = 0; i < 12; i++) write(`photos/2026/img_${1000 + i}.jpg`, noise(300_000 + i * 5000, i + 1));
write('mail/inbox.mbox', text(2000, 0));
for (let i = 0; i < 20; i++) writeIn(etc, `conf-${i}.conf`, text(20, 0));
for (let i = 0; i < 15; i++) writeIn(www, `page-${i}.html`, text(40, 0));
writeIn(laptop, 'notes/todo.md', text(100, 0));

function run(args, when) {
  const r = spawnSync(process.execPath, [bin, ...args, '--json'], { env: at(when), encoding: 'utf8' });
  if (r.status !== 0 && r.status !== 3) {
    console.error(r.stderr);
    process.exit(1);
  }
  return JSON.parse(r.stdout);
}
const backup = (dir, host, when, more = []) => run(['backup', dir, '--repo', repo, '--host', host, '--no-forget', ...more], when);

execFileSync(process.execPath, [bin, 'init', '--repo', laptopRepo, '--encrypt'], { env, stdio: 'ignore' });
const days = 35;
const anomalyDay = 29;
const wwwStopped = 25;
const start = Date.now() - days * 86_400_000;
let anomalous;
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
  const last = backup(src, 'fileserver', when);
  if (d === anomalyDay) anomalous = last.id;
  process.stderr.write(
    `day ${d + 1}/${days} ${last.id}${last.anomalies?.length ? ` (anomalies: ${last.anomalies.map((a) => a.metric).join(', ')})` : ''}\n`,
  );
  writeIn(etc, `conf-${d % 20}.conf`, text(20, d));
  backup(etc, 'fileserver', new Date(when.getTime() + 20 * 60_000));
  if (d < wwwStopped) {
    writeIn(www, `page-${d % 15}.html`, text(40 + (d % 3), d));
    backup(www, 'web1', new Date(when.getTime() + 40 * 60_000), ['--tag', 'site']);
  }
  for (const hour of [0, 12]) {
    writeIn(dbDump, 'dump.sql', text(500, d * 2 + hour));
    backup(dbDump, 'db2', new Date(when.getTime() + (hour + 1) * 3_600_000));
  }
  if (d >= days - 10) {
    fs.appendFileSync(path.join(laptop, 'notes/todo.md'), text(5, d));
    run(['backup', laptop, '--repo', laptopRepo, '--host', 'laptop-anna', '--no-forget'], new Date(when.getTime() + 18 * 3_600_000));
  }
  if (d % 7 === 6) run(['cost', '--repo', repo, '--save-csv', costCsv], new Date(when.getTime() + 3_600_000));
}

// The dashboard, as of a few hours after the last backups.
const now = new Date(start + (days - 1) * 86_400_000 + 9 * 3_600_000);
const config = path.join(work, 's3backup.yaml');
fs.writeFileSync(config, `cost:\n  saveCsv: ${costCsv}\n`);
const server = spawn(
  process.execPath,
  [bin, 'dashboard', '--repo', repo, '--repo', laptopRepo, '--config', config, '--port', '0', '--json'],
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

const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, colorScheme: 'light' });
  await page.goto(url);
  await page.waitForSelector('body[data-ready]');
  await page.locator('#fleet tbody tr', { hasText: 'team-share' }).click();
  await page.waitForSelector(`#backups tr[data-id="${anomalous}"]`);
  await page.click(`#backups tr[data-id="${anomalous}"]`);
  await page.waitForSelector('#tree .dirlink');
  await page.click('#tree .dirlink');
  await page.click('#tree .dirlink:text("documents/")');
  await page.click('#tree .dirlink:text("reports/")');
  await page.click('#tree tr:nth-child(3) button.restore');
  await page.waitForSelector('#anomalies .finding');
  await page.waitForSelector('#forecast-chart canvas');
  await page.screenshot({ path: path.join(outDir, 'dashboard.png'), fullPage: true });

  // The phone: the fleet, then a tapped backup's details in a sheet over the list.
  const phone = await browser.newPage({
    viewport: { width: 390, height: 844 },
    colorScheme: 'dark',
    isMobile: true,
    hasTouch: true,
    deviceScaleFactor: 1,
  });
  await phone.goto(url);
  await phone.waitForSelector('body[data-ready]');
  await phone.locator('#fleet tbody tr', { hasText: 'team-share' }).tap();
  await phone.waitForSelector(`#backups tr[data-id="${anomalous}"]`);
  await phone.locator(`#backups tr[data-id="${anomalous}"]`).scrollIntoViewIfNeeded();
  await phone.tap(`#backups tr[data-id="${anomalous}"]`);
  await phone.waitForSelector('#tree .dirlink');
  await phone.screenshot({ path: path.join(outDir, 'dashboard-phone.png') });
  await phone.evaluate(() => document.body.classList.remove('sheet-open'));
  await phone.evaluate(() => window.scrollTo(0, 0));
  await phone.screenshot({ path: path.join(outDir, 'dashboard-phone-fleet.png') });
  console.log(`wrote ${path.join(outDir, 'dashboard.png')}, dashboard-phone.png and dashboard-phone-fleet.png (anomaly at ${anomalous})`);
} finally {
  await browser.close();
  server.kill('SIGTERM');
  fs.rmSync(work, { recursive: true, force: true });
}
