// Issue 26's fleet, end to end: one repository on Ceph with three sources on two hosts (a
// database backed up every 6 hours, projects daily, www daily until it stopped a week ago, and
// a ransomware-like run of projects), plus an encrypted local repository beside it. Backups are
// real (runBackup), given their start times (startedAt), so twelve days of history take seconds
// and nothing waits. list, history, latest and diff answer per group through the CLI;
// `dashboard --repo A --repo B` gives one fleet overview (/api/groups and the page in headless
// Chromium, desktop and phone) where only the stopped group is red.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { runBackup } from '../src/backup/backup.ts';
import { Repository } from '../src/repo/repository.ts';
import { LocalStore } from '../src/store/local.ts';
import type { Store } from '../src/store/store.ts';
import { launchChromium, startDashboardCli } from './helpers/dashboard.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Store } from './helpers/s3.ts';
import { isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('dash-fleet');
const WEB = 'web1.example.com';
const DB = 'db2';
const MAIL = 'mail1';
const PASSWORD = 'fleet test passphrase';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const DAYS = 12;
const DETECTOR = { minBytes: 0, minHistory: 3 };

const text = (i: number, round: number) =>
  Array.from({ length: 80 }, (_, k) => `line ${k} of document ${i}, round ${round}: the quick brown fox\n`).join('');

interface Fleet {
  /** Backup ids by group, oldest first. */
  ids: { projects: string[]; www: string[]; db: string[]; mail: string[] };
  attacked: string;
  dirs: { projects: string; www: string; db: string; mail: string };
  /** When the newest projects backup started: 14 hours ago. */
  projectsLast: number;
}

/**
 * Twelve days that end now: projects every day at 01:00, www every day at 01:00 until day 4,
 * the database every 6 hours (tagged "db"), the mail of the encrypted repository daily from day
 * 8. Day 11's projects run finds 30 documents rewritten with random bytes.
 */
async function buildFleet(plain: Store, encrypted: Store): Promise<Fleet> {
  const root = path.join(work, 'sources');
  const dirs = {
    projects: path.join(root, 'projects'),
    www: path.join(root, 'www'),
    db: path.join(root, 'db'),
    mail: path.join(root, 'mail'),
  };
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  for (let i = 0; i < 60; i++) fs.writeFileSync(path.join(dirs.projects, `doc-${i}.txt`), text(i, 0));
  fs.writeFileSync(path.join(dirs.www, 'index.html'), '<h1>hello</h1>\n');
  fs.writeFileSync(path.join(dirs.db, 'data.sql'), 'create table t (x int);\n');
  fs.writeFileSync(path.join(dirs.mail, 'inbox.mbox'), text(0, 0));
  await Repository.init(encrypted, { encryption: { passphrase: PASSWORD, kdf: { name: 'scrypt-lanes', N: 2 ** 14, r: 8, lanes: 2 } } });

  const now = Date.now();
  const base = now - (DAYS - 1) * DAY - 15 * HOUR; // day 11 at 01:00 is 14 hours ago
  type Run = { t: number; group: keyof Fleet['ids']; day: number };
  const runs: Run[] = [];
  for (let day = 0; day < DAYS; day++) {
    runs.push({ t: base + day * DAY + HOUR, group: 'projects', day });
    if (day <= 4) runs.push({ t: base + day * DAY + HOUR + 60_000, group: 'www', day });
    if (day >= 8) runs.push({ t: base + day * DAY + 2 * HOUR, group: 'mail', day });
    for (const h of [1.5, 7.5, 13.5, 19.5]) {
      const t = base + day * DAY + h * HOUR;
      if (t < now - 30 * 60_000) runs.push({ t, group: 'db', day });
    }
  }
  runs.sort((a, b) => a.t - b.t);
  const ids: Fleet['ids'] = { projects: [], www: [], db: [], mail: [] };
  let attacked = '';
  for (const [n, run] of runs.entries()) {
    const history = { detector: DETECTOR };
    const startedAt = new Date(run.t);
    if (run.group === 'projects') {
      for (const i of [1, 2]) fs.appendFileSync(path.join(dirs.projects, `doc-${i}.txt`), `edit on day ${run.day}\n`);
      if (run.day === DAYS - 1) {
        for (let i = 30; i < 60; i++) {
          const p = path.join(dirs.projects, `doc-${i}.txt`);
          fs.writeFileSync(p, pseudoRandom(fs.statSync(p).size, i));
        }
      }
    } else if (run.group === 'db') {
      // The same size every time: a steadily growing file of a few hundred bytes is judged by
      // the detector's percentage steps, which is not what this test is about.
      fs.writeFileSync(path.join(dirs.db, 'data.sql'), `create table t (x int);\ninsert into t values (${1000 + n});\n`.repeat(20));
    } else if (run.group === 'mail') fs.appendFileSync(path.join(dirs.mail, 'inbox.mbox'), `From someone on day ${run.day}\n`);
    else fs.writeFileSync(path.join(dirs.www, 'index.html'), `<h1>hello ${run.day}</h1>\n`);
    const r =
      run.group === 'mail'
        ? await runBackup({ store: encrypted, keys: { passphrase: PASSWORD }, sources: [dirs.mail], host: MAIL, startedAt, history })
        : await runBackup({
            store: plain,
            sources: [dirs[run.group]],
            host: run.group === 'db' ? DB : WEB,
            ...(run.group === 'db' ? { tags: ['db'] } : {}),
            startedAt,
            history,
          });
    ids[run.group].push(r.id);
    if (run.group === 'projects' && run.day === DAYS - 1) attacked = r.id;
  }
  return { ids, attacked, dirs, projectsLast: base + (DAYS - 1) * DAY + HOUR };
}

interface GroupJson {
  repository: string;
  repositoryIndex: number;
  id: string;
  host: string;
  sources: string[];
  tags: string[];
  backups: number;
  freshness: { status: string; basis?: string; maxAgeMs?: number; ageMs?: number; newest?: { id: string } };
  lastBackup: { id: string } | null;
  lastResult: { ok: boolean; id: string } | null;
  trend: { t: number[]; bytesTotal: number[] };
  anomalies: number | null;
  hold: { backupId: string } | null;
}

describe('a fleet of 3 sources on 2 hosts on Ceph, and an encrypted repository beside it', () => {
  let bucket: string;
  let repo: string;
  const encDir = path.join(work, 'repo-encrypted');
  let env: NodeJS.ProcessEnv;
  let f: Fleet;
  let child: ChildProcess | undefined;
  let url: string;
  let browser: Browser;
  const cli = (...args: string[]) => runCli(args, { env });

  before(async () => {
    browser = await launchChromium();
    bucket = await createTestBucket('dash-fleet');
    repo = `s3://${bucket}/fleet`;
    env = isolatedEnv(path.join(work, 'home'), { ...s3CliEnv(), S3BACKUP_PASSWORD: PASSWORD });
    const plain = testS3Store(bucket, 'fleet');
    try {
      f = await buildFleet(plain, new LocalStore(encDir));
    } finally {
      await plain.close();
    }
    // The anomaly settings of the backups, so the dashboard judges the history as they did.
    const config = path.join(work, 's3backup.yaml');
    fs.writeFileSync(config, 'anomaly:\n  minBytes: 0\n  minHistory: 3\n');
    const started = await startDashboardCli(['--repo', repo, '--repo', encDir, '--config', config], env);
    child = started.child;
    url = started.doc.url;
    assert.deepEqual((started.doc as unknown as { repositories: string[] }).repositories, [repo, encDir]);
  });
  after(async () => {
    await browser?.close();
    if (child && child.exitCode === null) {
      const done = new Promise((r) => child!.on('exit', r));
      child.kill('SIGTERM');
      await done;
    }
    if (bucket) await deleteTestBucket(bucket);
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('the CLI answers per group: list, history, latest and diff', async () => {
    const list = json((await cli('list', '--repo', repo, '--json')).stdout);
    assert.equal(list.groups, 3);
    const count = (host: string, src: string) => list.backups.filter((b: any) => b.group.host === host && b.sources[0] === src).length;
    assert.equal(count(WEB, f.dirs.projects), DAYS);
    assert.equal(count(WEB, f.dirs.www), 5);
    assert.equal(count(DB, f.dirs.db), f.ids.db.length);
    assert.deepEqual(
      list.backups.filter((b: any) => b.anomalies > 0).map((b: any) => b.id),
      [f.attacked],
    );
    const history = json((await cli('history', '--repo', repo, '--path', f.dirs.www, '--json')).stdout);
    assert.deepEqual(
      history.runs.map((r: any) => r.id),
      f.ids.www,
    );
    // latest within the filters: each group's own newest backup, whatever ran after it.
    const latest = async (...filters: string[]) => json((await cli('ls', 'latest', '--repo', repo, ...filters, '--json')).stdout).id;
    assert.equal(await latest('--path', f.dirs.www), f.ids.www.at(-1));
    assert.equal(await latest('--host', DB), f.ids.db.at(-1));
    assert.equal(await latest('--host', WEB, '--path', f.dirs.projects), f.attacked);
    const diff = await cli('diff', 'latest^', 'latest', '--repo', repo, '--path', f.dirs.projects, '--json');
    assert.equal(diff.code, 0, diff.stderr);
    const d = json(diff.stdout);
    assert.equal(d.from.id, f.ids.projects.at(-2));
    assert.equal(d.to.id, f.attacked);
    // The 30 rewritten documents, and the two edited that day as every day.
    assert.equal(d.summary.contentChanged, 32);
    const rewritten = d.changes.filter((c: any) => c.what.includes('content') && /doc-[3-5]\d\.txt$/.test(c.after.path));
    assert.equal(rewritten.length, 30);
    const enc = json((await cli('list', '--repo', encDir, '--json')).stdout);
    assert.deepEqual(
      enc.backups.map((b: any) => b.id),
      f.ids.mail,
    );
    assert.equal(json((await cli('ls', 'latest', '--repo', encDir, '--host', MAIL, '--json')).stdout).id, f.ids.mail.at(-1));
  });

  test('/api/groups: one entry per group of both repositories, each on its own rhythm; only the stopped one is stale', async () => {
    const doc = (await (await fetch(`${url}api/groups`)).json()) as {
      repositories: { index: number; location: string; groups: number; error?: string }[];
      groups: GroupJson[];
    };
    assert.deepEqual(doc.repositories, [
      { index: 0, location: repo, groups: 3 },
      { index: 1, location: encDir, groups: 1 },
    ]);
    const by = new Map(doc.groups.map((g) => [`${g.host} ${g.sources.join(',')}`, g]));
    assert.equal(by.size, 4);
    const projects = by.get(`${WEB} ${f.dirs.projects}`)!;
    const www = by.get(`${WEB} ${f.dirs.www}`)!;
    const db = by.get(`${DB} ${f.dirs.db}`)!;
    const mail = by.get(`${MAIL} ${f.dirs.mail}`)!;
    assert.deepEqual(
      [projects, www, db, mail].map((g) => [g.repository, g.repositoryIndex, g.backups, g.lastBackup?.id, g.freshness.status]),
      [
        [repo, 0, DAYS, f.attacked, 'ok'],
        [repo, 0, 5, f.ids.www.at(-1), 'stale'],
        [repo, 0, f.ids.db.length, f.ids.db.at(-1), 'ok'],
        [encDir, 1, 4, f.ids.mail.at(-1), 'ok'],
      ],
    );
    // Each from its own usual gap: a day for projects, www and mail, 6 hours for the database.
    for (const g of [projects, www, mail]) assert.equal(g.freshness.maxAgeMs, 2 * DAY, g.host);
    assert.equal(db.freshness.maxAgeMs, 12 * HOUR);
    assert.ok(www.freshness.ageMs! > 6 * DAY);
    // The old rule (twice the gap of all backups mixed) would have called projects stale: its
    // newest backup is 14 hours old, and the mixed gap is the database's 6 hours or less.
    const all = (await (await fetch(`${url}api/timeline?repo=0`)).json()) as { t: number[] };
    const gaps = all.t.slice(1).map((t, i) => (t - all.t[i]!) * 1000);
    const mixedMedian = gaps.sort((a, b) => a - b)[Math.floor(gaps.length / 2)]!;
    assert.ok(Date.now() - f.projectsLast > 2 * mixedMedian, `mixed median gap ${mixedMedian}`);
    // Anomalies and the hold belong to the attacked group only; tags stay with theirs.
    assert.deepEqual(
      [projects, www, db, mail].map((g) => [g.anomalies, g.hold?.backupId ?? null]),
      [
        [1, f.attacked],
        [0, null],
        [0, null],
        [0, null],
      ],
    );
    assert.deepEqual(db.tags, ['db']);
    assert.equal(projects.trend.bytesTotal.length, DAYS);
    assert.ok(projects.lastResult?.ok);
    // The repository's freshness is its worst group's, named.
    const summary = (await (await fetch(`${url}api/summary?repo=0`)).json()) as {
      freshness: { status: string; group: { host: string; sources: string[] } };
      groups: { total: number; stale: number };
    };
    assert.equal(summary.freshness.status, 'stale');
    assert.deepEqual(summary.freshness.group.sources, [f.dirs.www]);
    assert.deepEqual(summary.groups, { total: 3, stale: 1 });
    // One group's timeline and backups; bad selectors are refused.
    const tl = (await (await fetch(`${url}api/timeline?repo=0&group=${db.id}`)).json()) as { ids: string[] };
    assert.deepEqual(tl.ids, f.ids.db);
    const page = (await (await fetch(`${url}api/backups?repo=1&group=${mail.id}`)).json()) as { total: number };
    assert.equal(page.total, 4);
    for (const bad of ['api/groups?x=1&repo=2', 'api/summary?repo=2', 'api/backups?group=nothex', 'api/timeline?repo=-1']) {
      const r = await fetch(url + bad);
      if (bad.startsWith('api/groups')) assert.equal(r.status, 200, bad);
      else assert.equal(r.status, 400, bad);
    }
  });

  test('dashboard.repositories in the config gives the same fleet; --repo given on the command line wins over it', async () => {
    const config = path.join(work, 's3backup-list.yaml');
    fs.writeFileSync(config, `dashboard:\n  repositories:\n    - ${encDir}\n    - ${repo}\n`);
    for (const [args, expected] of [
      [[], [encDir, repo]],
      [['--repo', repo], [repo]],
    ] as const) {
      const { child: c, doc } = await startDashboardCli([...args, '--config', config], env);
      try {
        const fleet = (await (await fetch(`${doc.url}api/groups`)).json()) as { repositories: { location: string }[]; groups: GroupJson[] };
        assert.deepEqual(
          fleet.repositories.map((r) => r.location),
          expected,
        );
        assert.equal(fleet.groups.length, expected.length === 2 ? 4 : 3);
        assert.equal(fleet.groups[0]!.repository, expected[0]);
      } finally {
        const done = new Promise((r) => c.on('exit', r));
        c.kill('SIGTERM');
        await done;
      }
    }
  });

  async function open(page: Page): Promise<string[]> {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(url);
    await page.waitForSelector('body[data-ready]');
    return errors;
  }

  /** Click a fleet row and wait until the page shows its group: cards, timeline and table all loaded. */
  async function selectFleetRow(page: Page, text: string): Promise<void> {
    const row = page.locator('#fleet tbody tr', { hasText: text });
    const want = `${await row.getAttribute('data-repo')}:${await row.getAttribute('data-group')}`;
    await page.evaluate(() => delete document.body.dataset.group);
    await row.click();
    await page.waitForFunction((g) => document.body.dataset.group === g, want);
  }

  test('the page: the fleet first, the stopped group red, each group its own timeline with its band', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    try {
      const errors = await open(page);
      const rows = page.locator('#fleet tbody tr');
      assert.equal(await rows.count(), 4);
      const stale = await page.locator('#fleet tbody tr.stale').evaluateAll((trs) => trs.map((tr) => tr.textContent));
      assert.equal(stale.length, 1);
      assert.match(stale[0]!, /www/);
      assert.equal(await page.getAttribute('#status', 'data-freshness'), 'stale');
      assert.match((await page.textContent('#fleet-card')) ?? '', /1 of 4 stale/);
      // Each row names its repository; the encrypted one is there with its group.
      const repoCells = await page.locator('#fleet tbody td.repo-cell').allTextContents();
      assert.deepEqual([...new Set(repoCells)], [repo, encDir]);
      // The attacked group: its own 12 points, its band, its anomaly, its hold.
      const projectsRow = page.locator('#fleet tbody tr', { hasText: 'projects' });
      assert.match((await projectsRow.textContent()) ?? '', /⚠ 1.*retention held/);
      assert.equal(await projectsRow.locator('svg.spark polyline').count(), 1);
      await selectFleetRow(page, 'projects');
      assert.equal(await page.getAttribute('#chart', 'data-points'), String(DAYS));
      assert.ok(Number(await page.getAttribute('#chart', 'data-band')) >= DAYS - 6, 'the band from the 5th earlier backup on');
      assert.deepEqual(((await page.getAttribute('#chart', 'data-anomalies')) ?? '').split(' '), [f.attacked]);
      assert.equal(await page.locator('#backups tbody tr').count(), DAYS);
      // Sources by their end ("…/projects"), whole in the title.
      assert.equal(await page.locator('#backups tbody td.sources').first().getAttribute('title'), f.dirs.projects);
      assert.match((await page.locator('#backups tbody td.sources').first().textContent()) ?? '', /\/projects$/);
      assert.equal(await page.locator('#backups tbody td.host').first().textContent(), WEB);
      await page.waitForSelector('#anomalies .group-name');
      assert.match((await page.textContent('#anomalies .finding .group-name')) ?? '', new RegExp(`${WEB}: .*projects`));
      // All groups of the repository in the table, with their hosts.
      await page.selectOption('#scope', 'all');
      await page.waitForFunction(
        (n) => document.querySelectorAll('#backups tbody tr').length === n,
        Math.min(50, DAYS + 5 + f.ids.db.length),
      );
      assert.deepEqual(new Set(await page.locator('#backups tbody td.host').allTextContents()), new Set([WEB, DB]));
      await page.selectOption('#scope', 'group');
      // The encrypted repository's group: its timeline, its backups and a backup's details.
      await selectFleetRow(page, 'mail');
      await page.waitForFunction(() => document.querySelector('#chart')?.getAttribute('data-points') === '4');
      await page.waitForFunction(() => document.querySelectorAll('#backups tbody tr').length === 4);
      await page.click(`#backups tr[data-id="${f.ids.mail.at(-1)}"]`);
      await page.waitForFunction((id) => document.querySelector('#detail')?.getAttribute('data-id') === id, f.ids.mail.at(-1)!);
      await page.waitForSelector('#tree .dirlink');
      assert.match((await page.textContent('#timeline-group')) ?? '', new RegExp(`^${MAIL}: .*mail$`));
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test('on a phone (390×844): the tables scroll inside their boxes, the chart fits, details open where the finger is', async () => {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    try {
      const errors = await open(page);
      assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 390, 'nothing wider than the screen');
      const within = async (sel: string, box: { left: number; right: number }) => {
        const r = await page.evaluate((s) => {
          const b = document.querySelector(s)!.getBoundingClientRect();
          return { left: b.left, right: b.right, width: b.width };
        }, sel);
        assert.ok(
          r.left >= box.left - 0.5 && r.right <= box.right + 0.5,
          `${sel} spans ${r.left}–${r.right}, outside ${box.left}–${box.right}`,
        );
        return r;
      };
      // The tables: their scroll boxes within the screen, the wide table scrolling inside.
      for (const sel of ['#fleet-panel .scroll', '#backups-panel .scroll']) await within(sel, { left: 0, right: 390 });
      const fleetScroll = await page.evaluate(() => {
        const s = document.querySelector('#fleet-panel .scroll')!;
        const edge = s.getBoundingClientRect().right;
        // What sticks out, for the message.
        const wide = [...s.querySelectorAll('*')]
          .filter((el) => el.getBoundingClientRect().right > edge + 0.5)
          .map((el) => `${el.tagName.toLowerCase()}.${el.getAttribute('class')}: ${el.textContent?.slice(0, 60)}`);
        return { scrollWidth: s.scrollWidth, clientWidth: s.clientWidth, overflowX: getComputedStyle(s).overflowX, wide };
      });
      assert.equal(fleetScroll.overflowX, 'auto');
      assert.ok(fleetScroll.clientWidth <= 390);
      // The fleet fits (a card per group): every row's freshness in sight without scrolling.
      assert.ok(
        fleetScroll.scrollWidth <= fleetScroll.clientWidth,
        `fleet ${fleetScroll.scrollWidth}px in ${fleetScroll.clientWidth}px: ${fleetScroll.wide.join('; ')}`,
      );
      for (const badge of await page.locator('#fleet .badge.fresh').all()) {
        const b = (await badge.boundingBox())!;
        assert.ok(b.x >= 0 && b.x + b.width <= 390, `freshness badge at ${b.x}+${b.width}`);
      }
      const chart = await within('#chart canvas', { left: 0, right: 390 });
      assert.ok(chart.width > 250, `chart ${chart.width}px wide`);
      // Tap a backup of the selected group: its details in a sheet on screen, not far below.
      const id = await page.getAttribute('#backups tbody tr:nth-child(3)', 'data-id');
      await page.tap('#backups tbody tr:nth-child(3)');
      await page.waitForFunction((x) => document.querySelector('#detail')?.getAttribute('data-id') === x, id);
      await page.waitForSelector('#tree .dirlink');
      const sheet = await page.evaluate(() => {
        const b = document.querySelector('#detail')!.getBoundingClientRect();
        return { top: b.top, bottom: b.bottom, left: b.left, right: b.right };
      });
      assert.ok(sheet.top >= 0 && sheet.bottom <= 844 + 0.5 && sheet.left >= 0 && sheet.right <= 390.5, JSON.stringify(sheet));
      assert.ok(sheet.bottom - sheet.top > 200, 'the sheet shows the details');
      await page.tap('#detail .sheet-close');
      assert.equal(await page.evaluate(() => document.body.classList.contains('sheet-open')), false);
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});
