// The dashboard page end to end in headless Chromium (Debian's, driven by playwright-core):
// a repository of 32 real backups with run history and one injected anomaly (judged by the
// real detector), clicking a backup for its details and files, the token when bound off
// loopback, 2,000 backups, and a phone-sized dark view. One browser for the whole file.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { BackupResult } from '../src/backup/backup.ts';
import { costSource, monitorSource } from '../src/dashboard/sources.ts';
import { LocalStore } from '../src/store/local.ts';
import { launchChromium, makeBackups, makeSource, serveDashboard, treeState, writeSyntheticManifests } from './helpers/dashboard.ts';
import { BIN, isolatedEnv, tempDir } from './helpers/tree.ts';
import { splitBackup } from './helpers/store.ts';

const work = tempDir('dash-e2e');
const env = isolatedEnv(path.join(work, 'home'));
const N = 32;
let browser: Browser;

before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

/**
 * A page with the dashboard at `url`, loaded and ready (body[data-ready]), and the script errors
 * it reports (a test asserts there are none). Closed again if it never gets ready; else the
 * caller closes it.
 */
async function openDashboard(
  url: string,
  opts: Parameters<Browser['newPage']>[0] = {},
  readyTimeout?: number,
): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 }, ...opts });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  try {
    await page.goto(url);
    await page.waitForSelector('body[data-ready]', readyTimeout === undefined ? {} : { timeout: readyTimeout });
  } catch (e) {
    await page.close();
    throw e;
  }
  return { page, errors };
}

describe('dashboard page over 32 real backups with an anomaly', () => {
  const src = path.join(work, 'src');
  const repoDir = path.join(work, 'repo');
  let results: BackupResult[];
  let d: Awaited<ReturnType<typeof serveDashboard>>;
  let repoBefore: string[];
  let anomalous: string;

  before(async () => {
    fs.mkdirSync(src);
    makeSource(src);
    const store = new LocalStore(repoDir);
    // Each backup records its run in the history; the last one reads 2 MiB of new random data.
    results = await makeBackups(store, src, N, { bigAt: N - 1 });
    anomalous = results.at(-1)!.id;
    // The backup itself was judged anomalous when it ran (the same detector the page shows).
    assert.ok(
      results.at(-1)!.anomalies?.some((f) => f.metric === 'bytesIn'),
      'the injected change is an anomaly',
    );
    repoBefore = treeState(repoDir);
    d = await serveDashboard(new LocalStore(repoDir), { monitor: monitorSource(undefined).source, cost: costSource({}).source });
  });
  after(async () => d?.close());

  test('loads: status, timeline with the anomaly marked, the list, the anomalies panel', async () => {
    const { page, errors } = await openDashboard(d.server.url);
    try {
      assert.equal(await page.textContent('#repo'), repoDir);
      assert.equal(await page.getAttribute('#status', 'data-freshness'), 'ok');
      assert.match((await page.textContent('#freshness .value')) ?? '', /ago$/);
      // The chart has every backup, and marks exactly the ones the detector flagged.
      assert.equal(await page.getAttribute('#chart', 'data-points'), String(N));
      const marked = ((await page.getAttribute('#chart', 'data-anomalies')) ?? '').split(' ');
      assert.ok(marked.includes(anomalous), `anomaly ${anomalous} marked: ${marked}`);
      assert.ok(await page.isVisible('#chart canvas'));
      // The list: every backup on the first page, the anomalous one flagged with its metrics.
      assert.equal(await page.locator('#backups tbody tr').count(), N);
      assert.match((await page.textContent('#pager')) ?? '', new RegExp(`1–${N} of ${N}`));
      const row = page.locator(`#backups tr[data-id="${anomalous}"]`);
      assert.match((await row.getAttribute('class')) ?? '', /\banomalous\b/);
      assert.match((await row.getAttribute('title')) ?? '', /bytes read 2\.00 MiB/);
      // More data read is worth a look, never high on its own (docs/anomaly-detection.md).
      assert.match((await row.locator('.badge.anomaly').getAttribute('class')) ?? '', /\bwarning\b/);
      const normal = results[10]!.id;
      if (!marked.includes(normal)) assert.equal(await page.locator(`#backups tr[data-id="${normal}"] .badge.anomaly`).count(), 0);
      // The anomalies panel lists it with the detector's sentence.
      await page.waitForSelector('#anomalies .finding');
      assert.match((await page.textContent('#anomalies')) ?? '', /bytes read 2\.00 MiB/);
      // Storage and cost from the cost module: one class (a local store is priced as STANDARD).
      await page.waitForSelector('#cost-total');
      assert.match((await page.textContent('#cost-total')) ?? '', /^\$[\d.]+ per month$/);
      assert.equal(await page.locator('#cost-classes tbody tr').count(), 1);
      assert.match((await page.textContent('#cost-classes tbody tr')) ?? '', /^STANDARD/);
      assert.match((await page.textContent('#cost-forecast')) ?? '', /no forecast yet \(a forecast needs at least 5 points/);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('clicking a backup shows its details, the archives it needs, and its files with a restore command', async () => {
    const { page, errors } = await openDashboard(d.server.url);
    try {
      await page.click(`#backups tr[data-id="${anomalous}"]`);
      await page.waitForSelector('#detail-anomalies');
      assert.match((await page.textContent('#detail h2')) ?? '', new RegExp(anomalous));
      assert.match((await page.textContent('#detail-anomalies')) ?? '', /bytes read 2\.00 MiB is .* expected/);
      assert.match((await page.textContent('#detail-warnings')) ?? '', /pipe: skipped \(FIFO\)/);
      const r = results.at(-1)!;
      assert.match((await page.textContent('#detail dl.stats')) ?? '', new RegExp(`${r.newFiles} / ${r.changedFiles} / ${r.deletedFiles}`));
      // The chain: the archives this incremental needs (its own and older ones), all present.
      const detail = await d.data.detail(anomalous);
      const keys = await page.locator('#chain tbody tr td:first-child').evaluateAll((tds) => tds.map((td) => td.getAttribute('title')));
      assert.deepEqual(
        keys,
        detail.archives.map((a) => a.key),
      );
      assert.ok(keys.includes(r.archiveKey) && keys.includes(results[0]!.archiveKey), "its own archive and the full backup's");
      assert.equal(await page.locator('#chain .badge.broken').count(), 0);
      // The tree: into the source, then docs/deep, and the restore command for one file.
      await page.waitForSelector('#tree .dirlink');
      await page.click(`#tree .dirlink:text("${path.basename(src)}/")`);
      await page.click('#tree .dirlink:text("docs/")');
      await page.click('#tree .dirlink:text("deep/")');
      await page.click('#tree tr[data-path$="note [v1].txt"] button.restore');
      const cmd = (await page.textContent('#restore-cmd code')) ?? '';
      assert.equal(
        cmd,
        `s3backup restore ${anomalous} --repo ${repoDir} --target ./restored --include './${path.basename(src)}/docs/deep/note \\[v1\\].txt'`,
      );
      // Another backup: clicking its row replaces the details.
      await page.click(`#backups tr[data-id="${results[3]!.id}"]`);
      await page.waitForFunction((id) => document.querySelector('#detail')?.getAttribute('data-id') === id, results[3]!.id);
      assert.match((await page.textContent('#detail h2')) ?? '', new RegExp(results[3]!.id));
      assert.equal(await page.locator('#detail-anomalies').count(), 0);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('clicking a point in the chart opens that backup', async () => {
    const { page } = await openDashboard(d.server.url);
    try {
      const over = (await page.locator('#chart .u-over').boundingBox())!;
      // The right edge is the newest backup.
      await page.mouse.move(over.x + over.width - 1, over.y + over.height / 2);
      await page.mouse.click(over.x + over.width - 1, over.y + over.height / 2);
      await page.waitForFunction((id) => document.querySelector('#detail')?.getAttribute('data-id') === id, anomalous);
    } finally {
      await page.close();
    }
  });

  test('the page session wrote nothing to the repository', () => {
    assert.deepEqual(treeState(repoDir), repoBefore);
  });
});

describe('dashboard page, a backup split into several archives', () => {
  test('its details number the archives: part 1/N … N/N', async () => {
    const store = new LocalStore(path.join(work, 'repo-split'));
    const r = await splitBackup(store, path.join(work, 'split-src'));
    const n = r.archiveKeys.length;
    const d = await serveDashboard(store);
    try {
      const { page, errors } = await openDashboard(d.server.url);
      try {
        await page.click(`#backups tr[data-id="${r.id}"]`);
        await page.waitForSelector('#chain tbody tr');
        const cells = await page
          .locator('#chain tbody tr td:first-child')
          .evaluateAll((tds) => tds.map((td) => [td.getAttribute('title'), td.textContent]));
        assert.deepEqual(
          cells.map(([key]) => key),
          r.archiveKeys,
        );
        assert.deepEqual(
          cells.map(([, text]) => text?.replace(/^\S+ /, '')),
          r.archiveKeys.map((_k, i) => `part ${i + 1}/${n} (this one)`),
        );
        assert.deepEqual(errors, []);
      } finally {
        await page.close();
      }
    } finally {
      await d.close();
    }
  });
});

describe('dashboard page, names that are not UTF-8', () => {
  test('the tree shows them with \\xHH, opens such directories (and their crumbs) by their bytes, and its restore command restores that file', async () => {
    const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => Buffer.from(p as string)));
    const src = path.join(work, 'bytes-src');
    fs.mkdirSync(bytes(src, '/dir-', [0xe9], '/sub-', [0xff]), { recursive: true });
    const file = bytes(src, '/dir-', [0xe9], '/sub-', [0xff], '/file-', [0xfe], '.txt');
    fs.writeFileSync(file, 'found by its bytes\n');
    const repoDir = path.join(work, 'repo-bytes');
    const { runBackup } = await import('../src/backup/backup.ts');
    const r = await runBackup({ store: new LocalStore(repoDir), sources: [src] });
    const d = await serveDashboard(new LocalStore(repoDir));
    try {
      const { page, errors } = await openDashboard(d.server.url);
      try {
        await page.click(`#backups tr[data-id="${r.id}"]`);
        await page.waitForSelector('#tree .dirlink');
        await page.click('#tree .dirlink:text("bytes-src/")');
        // Located by plain strings (hasText): a CSS selector would read the backslashes as escapes.
        const dirlink = (text: string) => page.locator('#tree .dirlink', { hasText: text });
        const fileRow = page.locator('#tree tr', { hasText: 'file-\\xfe.txt' });
        await dirlink('dir-\\xe9/').click();
        await dirlink('sub-\\xff/').click();
        await fileRow.waitFor();
        // Back up through the crumbs: the one for dir-\xe9 is opened by its bytes.
        await page.locator('#tree .crumbs button', { hasText: 'dir-\\xe9' }).click();
        await dirlink('sub-\\xff/').click();
        await fileRow.locator('button.restore').click();
        const cmd = (await page.textContent('#restore-cmd code')) ?? '';
        assert.equal(
          cmd,
          `s3backup restore ${r.id} --repo ${repoDir} --target ./restored --include 'bytes-src/dir-\\xe9/sub-\\xff/file-\\xfe.txt'`,
        );
        assert.deepEqual(errors, []);
        // Run as shown: that file comes back under its exact name.
        const cwd = path.join(work, 'bytes-run');
        fs.mkdirSync(cwd);
        const run = spawn('sh', ['-c', `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}${cmd.slice('s3backup'.length)}`], {
          cwd,
          env: { ...process.env, ...env },
          stdio: 'ignore',
        });
        assert.equal(await new Promise((res) => run.on('exit', res)), 0);
        assert.equal(
          fs.readFileSync(bytes(cwd, '/restored/bytes-src/dir-', [0xe9], '/sub-', [0xff], '/file-', [0xfe], '.txt'), 'utf8'),
          'found by its bytes\n',
        );
      } finally {
        await page.close();
      }
    } finally {
      await d.close();
    }
  });
});

describe('dashboard bound off loopback', () => {
  const dir = path.join(work, 'repo-token');
  const token = 'e2e-token-0123456789abcdef';
  let child: ChildProcess;
  let port: number;

  before(async () => {
    await writeSyntheticManifests(new LocalStore(dir), 40);
    // All interfaces, as someone serving it to their network would; we connect over loopback only.
    child = spawn(process.execPath, [BIN, 'dashboard', '--repo', dir, '--host', '0.0.0.0', '--port', '0', '--json'], {
      env: { ...process.env, ...env, S3BACKUP_DASHBOARD_TOKEN: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const doc = await new Promise<{ url: string }>((resolve, reject) => {
      child.stdout!.on('data', (c) => {
        out += c;
        try {
          resolve(JSON.parse(out));
        } catch {
          // more to come
        }
      });
      child.on('exit', (code) => reject(new Error(`dashboard exited ${code}`)));
    });
    port = Number(new URL(doc.url).port);
  });
  after(async () => {
    if (child && child.exitCode === null) {
      const done = new Promise((r) => child.on('exit', r));
      child.kill('SIGTERM');
      await done;
    }
  });

  test('without the token the page and API are refused; ?token= once opens it, kept in an HttpOnly cookie', async () => {
    const base = `http://127.0.0.1:${port}/`;
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const first = await page.goto(base);
      assert.equal(first?.status(), 401);
      assert.match((await page.textContent('body')) ?? '', /needs its token/);
      const api = await page.goto(`${base}api/summary`);
      assert.equal(api?.status(), 401);
      const wrong = await page.goto(`${base}?token=not-the-token-at-all`);
      assert.equal(wrong?.status(), 401);

      await page.goto(`${base}?token=${token}`);
      await page.waitForSelector('body[data-ready]');
      assert.equal(new URL(page.url()).search, '', 'the token is gone from the address bar');
      assert.match((await page.textContent('#pager')) ?? '', /of 40/);
      // Hourly backups that stopped in January 2026: the newest is stale, and its card is red.
      assert.equal(await page.getAttribute('#status', 'data-freshness'), 'stale');
      assert.match((await page.getAttribute('#freshness', 'class')) ?? '', /\bbad\b/);
      assert.equal(await page.evaluate(() => document.cookie), '', 'the cookie is HttpOnly: scripts cannot read it');
      const [cookie] = await context.cookies();
      assert.equal(cookie?.httpOnly, true);
      assert.equal(cookie?.sameSite, 'Strict');
    } finally {
      await context.close();
    }
    // A fresh browser session has no cookie: refused again.
    const other = await browser.newContext();
    try {
      const page = await other.newPage();
      assert.equal((await page.goto(base))?.status(), 401);
    } finally {
      await other.close();
    }
  });
});

describe('dashboard page with 2,000 backups', () => {
  const dir = path.join(work, 'repo-2000');
  let d: Awaited<ReturnType<typeof serveDashboard>>;
  before(async () => {
    await writeSyntheticManifests(new LocalStore(dir), 2000);
    d = await serveDashboard(new LocalStore(dir));
  });
  after(async () => d?.close());

  test('renders every point in the chart and pages the list', async () => {
    const { page, errors } = await openDashboard(d.server.url, {}, 60_000);
    try {
      assert.equal(await page.getAttribute('#chart', 'data-points'), '2000');
      assert.equal(await page.locator('#backups tbody tr').count(), 50);
      assert.match((await page.textContent('#pager')) ?? '', /1–50 of 2000/);
      await page.click('#older');
      await page.waitForFunction(() => /51–100 of 2000/.test(document.querySelector('#pager')?.textContent ?? ''));
      const firstOnPage2 = await page.getAttribute('#backups tbody tr:first-child', 'data-id');
      await page.click('#backups tbody tr:first-child');
      await page.waitForFunction((id) => document.querySelector('#detail')?.getAttribute('data-id') === id, firstOnPage2);
      await page.selectOption('#metric', 'durationMs');
      assert.equal(await page.getAttribute('#chart', 'data-points'), '2000');
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('on a phone in dark mode: dark colours, nothing wider than the screen', async () => {
    const { page, errors } = await openDashboard(
      d.server.url,
      { viewport: { width: 390, height: 844 }, colorScheme: 'dark', isMobile: true },
      60_000,
    );
    try {
      const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      const [r, g, b] = (bg.match(/\d+/g) ?? []).map(Number);
      assert.ok(r! + g! + b! < 120, `dark background, got ${bg}`);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `page is ${width}px wide on a 390px screen`);
      const chartWidth = await page.evaluate(() => document.querySelector('#chart canvas')!.getBoundingClientRect().width);
      assert.ok(chartWidth <= 390 && chartWidth > 250, `chart ${chartWidth}px`);
      // The theme button switches to light.
      await page.click('#theme'); // auto → light
      const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      const [lr, lg, lb] = (light.match(/\d+/g) ?? []).map(Number);
      assert.ok(lr! + lg! + lb! > 600, `light background, got ${light}`);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});
