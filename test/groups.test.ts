// Groups everywhere, end to end through the CLI, on a local repository and on Ceph: three
// sources on two hosts in one repository (one source stopped backing up, one with a
// ransomware-like run), long host names and paths. list, history, anomalies, forget --dry-run
// and cost show each backup's group with short ids in 120 columns; --host, --path and --tag
// select backups and "latest" within them; diff and the anomaly advice name the backup itself.
// An encrypted repository beside it answers the same way.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestBucket, deleteTestBucket, s3CliEnv } from './helpers/s3.ts';
import { type CliResult, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('groups');
after(() => fs.rmSync(work, { recursive: true, force: true }));

// A host name and source paths long enough that a table showing them whole would not fit.
const WEB = 'web1-frontend-with-a-rather-long-name.eu-central.internal.example.com';
const DB = 'db2';

/** The three sources of one repository's fleet, under a long directory name. */
interface Sources {
  projects: string;
  www: string;
  db: string;
}

const text = (i: number, round: number) =>
  Array.from({ length: 80 }, (_, k) => `line ${k} of document ${i}, round ${round}: the quick brown fox\n`).join('');

function makeSources(label: string): Sources {
  const root = path.join(work, label, 'sources-under-a-deliberately-long-directory-name-to-fill-the-columns');
  const { projects, www, db } = { projects: path.join(root, 'projects'), www: path.join(root, 'www'), db: path.join(root, 'db') };
  for (const dir of [projects, www, db]) fs.mkdirSync(dir, { recursive: true });
  for (let i = 0; i < 60; i++) fs.writeFileSync(path.join(projects, `doc-${i}.txt`), text(i, 0));
  fs.writeFileSync(path.join(www, 'index.html'), '<h1>hello</h1>\n');
  fs.writeFileSync(path.join(db, 'data.sql'), 'create table t (x int);\n');
  return { projects, www, db };
}

/** Every line of a table fits 120 columns. */
function fits(r: CliResult, what: string): void {
  for (const line of r.stdout.split('\n')) assert.ok([...line].length <= 120, `${what}: line of ${[...line].length} columns:\n${line}`);
}

interface Fleet extends Sources {
  cli: (...args: string[]) => Promise<CliResult>;
  /** Backup ids by group, oldest first. */
  ids: { projects: string[]; www: string[]; db: string[] };
  /** The ransomware-like backup of projects. */
  attacked: string;
}

/** Back up the three sources of the two hosts, interleaved; the last projects run "encrypts" 30 documents. */
async function buildFleet(repo: string, env: NodeJS.ProcessEnv, label: string): Promise<Fleet> {
  const { projects, www, db } = makeSources(label);
  // Small test data: judge from 1 byte and 3 comparable backups instead of the defaults.
  const config = path.join(work, `s3backup-${path.basename(repo)}.yaml`);
  fs.writeFileSync(config, `repository: ${repo}\nanomaly:\n  minBytes: 0\n  minHistory: 3\n`);
  const cli = (...args: string[]) => runCli([...args, '--config', config], { env });
  const backup = async (host: string, src: string, ...more: string[]) => {
    // The host as --host for one host and as S3BACKUP_HOST for the other: both name the group.
    const r =
      host === WEB
        ? await cli('backup', src, '--host', host, '--json', ...more)
        : await runCli(['backup', src, '--config', config, '--json', ...more], { env: { ...env, S3BACKUP_HOST: host } });
    assert.equal(r.code, 0, r.stderr);
    return json(r.stdout).id as string;
  };
  const ids: Fleet['ids'] = { projects: [], www: [], db: [] };
  ids.www.push(await backup(WEB, www)); // then www stops backing up
  for (let round = 1; round <= 4; round++) {
    for (const i of [round, round + 20]) fs.appendFileSync(path.join(projects, `doc-${i}.txt`), `edit ${round}\n`);
    ids.projects.push(await backup(WEB, projects));
    if (round % 2 === 0) {
      fs.appendFileSync(path.join(db, 'data.sql'), `insert into t values (${round});\n`);
      ids.db.push(await backup(DB, db, '--tag', 'nightly'));
    }
  }
  for (let i = 30; i < 60; i++) {
    const p = path.join(projects, `doc-${i}.txt`);
    fs.writeFileSync(p, pseudoRandom(fs.statSync(p).size, i));
  }
  const attacked = await backup(WEB, projects);
  ids.projects.push(attacked);
  // The newest backup of the repository is db2's: "latest" alone is not the attacked one.
  fs.appendFileSync(path.join(db, 'data.sql'), 'insert into t values (99);\n');
  ids.db.push(await backup(DB, db, '--tag', 'nightly'));
  return { cli, ids, attacked, projects, www, db };
}

function fleetTests(name: string, setup: () => Promise<{ repo: string; env: NodeJS.ProcessEnv }>, cleanup: () => Promise<void>) {
  describe(name, () => {
    let f: Fleet;
    let projects: string;
    let www: string;
    before(async () => {
      const { repo, env } = await setup();
      f = await buildFleet(repo, env, name.replace(/\W+/g, '-'));
      ({ projects, www } = f);
    });
    after(cleanup);
    const short = (id: string) => id.slice(-8);

    test('list: each backup with its short id and group, in 120 columns; --json has group and anomalies', async () => {
      const r = await f.cli('list');
      assert.equal(r.code, 0, r.stderr);
      fits(r, 'list');
      assert.match(r.stdout, /^ID\s+TIME \(UTC\)\s+HOST: SOURCES \[TAGS\]\s+KIND/);
      const rows = r.stdout.split('\n').filter((l) => /^[0-9a-f]{8} {2}/.test(l));
      assert.equal(rows.length, 9, r.stdout);
      // A long group is cut in its middle: the host's start and the source's end stay.
      const attackedRow = rows.find((l) => l.startsWith(short(f.attacked)))!;
      assert.match(attackedRow, /^[0-9a-f]{8} {2}\d{4}-\d\d-\d\d \d\d:\d\d {2}web1-.*….*\/projects\s+incr HELD\s/); // its group is under an anomaly hold
      assert.match(attackedRow, /\d!$/, 'the attacked backup has a finding of high severity');
      assert.match(rows.find((l) => l.startsWith(short(f.ids.db[0]!)))!, /db2: .*\/db \[nightly\]/);
      assert.match(r.stdout, /9 backup\(s\) of 3 group\(s\)/);

      const doc = json((await f.cli('list', '--json')).stdout);
      const groups = new Map<string, { host: string; sources: string[] }>();
      for (const b of doc.backups) {
        assert.equal(b.shortId, short(b.id));
        assert.equal(b.group.host, b.host);
        assert.deepEqual(b.group.sources, b.sources);
        assert.match(b.group.id, /^[0-9a-f]{16}$/);
        groups.set(b.group.id, b.group);
        assert.equal(b.anomalies, b.id === f.attacked ? b.anomalies : 0, `${b.id}: ${b.anomalies}`);
      }
      assert.equal(groups.size, 3);
      assert.equal(doc.groups, 3);
      assert.ok(doc.backups.find((b: any) => b.id === f.attacked).anomalies >= 1);
    });

    test('--host, --path and --tag select backups; latest resolves within them', async () => {
      const byHost = json((await f.cli('list', '--host', DB, '--json')).stdout);
      assert.deepEqual(
        byHost.backups.map((b: any) => b.id),
        f.ids.db,
      );
      const byPath = json((await f.cli('list', '--path', projects, '--json')).stdout);
      assert.deepEqual(
        byPath.backups.map((b: any) => b.id),
        f.ids.projects,
      );
      const byTag = json((await f.cli('list', '--tag', 'nightly', '--json')).stdout);
      assert.deepEqual(
        byTag.backups.map((b: any) => b.id),
        f.ids.db,
      );
      const none = await f.cli('list', '--host', WEB, '--tag', 'nightly');
      assert.equal(none.code, 0, none.stderr);
      assert.match(none.stdout, /no backups in .* match --host web1-frontend.* --tag nightly/);

      // "latest" alone is the newest of any group (db2's); within the filters, that group's newest.
      assert.equal(json((await f.cli('ls', 'latest', '--json')).stdout).id, f.ids.db.at(-1));
      const ls = await f.cli('ls', 'latest', '--host', WEB, '--path', projects, '--json');
      assert.equal(ls.code, 0, ls.stderr);
      assert.equal(json(ls.stdout).id, f.attacked);
      assert.equal(json((await f.cli('ls', 'latest', '--path', www, '--json')).stdout).id, f.ids.www[0]);

      // The case: restore latest --include 'projects/**' needs the group's latest.
      const target = path.join(work, `restored-${name.replace(/\W+/g, '-')}`);
      const wrong = await f.cli('restore', 'latest', '--target', target, '--include', 'projects/**');
      assert.equal(wrong.code, 2);
      assert.match(wrong.stderr, /nothing in backup .* \(db2: .*\/db\) matches "projects\/\*\*"/);
      assert.match(wrong.stderr, /--host and --path/);
      const right = await f.cli('restore', 'latest', '--host', WEB, '--path', projects, '--target', target, '--include', 'projects/**');
      assert.equal(right.code, 0, right.stderr);
      assert.equal(fs.readdirSync(path.join(target, 'projects')).length, 60);

      // cat and verify take the filters too; a given id must match them.
      const cat = await f.cli('cat', 'latest', '--host', DB, 'db/data.sql');
      assert.equal(cat.code, 0, cat.stderr);
      assert.match(cat.stdout, /values \(99\)/);
      const v = await f.cli('verify', 'latest', '--path', www, '--json');
      assert.equal(v.code, 0, v.stderr);
      assert.equal(json(v.stdout).id, f.ids.www[0]);
      const all = json((await f.cli('verify', '--all', '--host', DB, '--json')).stdout);
      assert.equal(all.backups, f.ids.db.length);
      const mismatch = await f.cli('ls', short(f.ids.db[0]!), '--host', WEB);
      assert.equal(mismatch.code, 2);
      assert.match(mismatch.stderr, new RegExp(`backup ${f.ids.db[0]} \\(db2: .*\\) does not match --host ${WEB.replace(/\./g, '\\.')}`));
      const unknown = await f.cli('ls', 'latest', '--host', 'nohost');
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /no backup in .* matches --host nohost/);
    });

    test('history: id and group columns in 120 columns, anomalous runs marked; filters', async () => {
      const r = await f.cli('history');
      assert.equal(r.code, 0, r.stderr);
      fits(r, 'history');
      assert.match(r.stdout, /^ID\s+TIME \(UTC\)\s+HOST: SOURCES \[TAGS\]\s+KIND\s+RESULT/);
      const [head, ...rows] = r.stdout.split('\n');
      const anomColumn = head!.indexOf('ANOM');
      const marked = rows.filter((l) => /^[0-9a-f]{8} /.test(l) && l.slice(anomColumn).trim() !== '');
      assert.deepEqual(
        marked.map((l) => l.slice(0, 8)),
        [short(f.attacked)],
      );
      assert.match(r.stdout, /^1 of them flagged as anomalous/m);
      const doc = json((await f.cli('history', '--host', DB, '--json')).stdout);
      assert.deepEqual(
        doc.runs.map((x: any) => x.id),
        f.ids.db,
      );
      for (const run of doc.runs) {
        assert.equal(run.group.host, DB);
        assert.equal(run.anomalies, 0);
        assert.equal(run.shortId, short(run.id));
      }
      const attacked = json((await f.cli('history', '--path', projects, '--json')).stdout).runs.at(-1);
      assert.equal(attacked.id, f.attacked);
      assert.ok(attacked.anomalies >= 1);
    });

    test('diff: what the attacked backup changed, by short id, ID^ and latest within filters', async () => {
      const a = short(f.attacked);
      const r = await f.cli('diff', `${a}^`, a, '--json');
      assert.equal(r.code, 0, r.stderr);
      const doc = json(r.stdout);
      assert.equal(doc.from.id, f.ids.projects.at(-2));
      assert.equal(doc.to.id, f.attacked);
      assert.equal(doc.summary.added, 0);
      assert.equal(doc.summary.removed, 0);
      // The 30 overwritten documents (same size, new content) and the directory's mtime.
      const content = doc.changes.filter((c: any) => c.what.includes('content'));
      assert.equal(content.length, 30);
      assert.deepEqual(
        content.map((c: any) => c.after.path).sort(),
        Array.from({ length: 30 }, (_, k) => `projects/doc-${k + 30}.txt`).sort(),
      );
      assert.equal(doc.summary.contentChanged, 30);
      const same = await f.cli('diff', 'latest^', 'latest', '--host', WEB, '--path', projects, '--json');
      assert.deepEqual(json(same.stdout).summary, doc.summary);
      const human = await f.cli('diff', `${a}^`, a);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /^M {2}projects\/doc-30\.txt {2}\(content \([\d.]+ KiB\)(; mtime)?\)$/m);
      assert.match(human.stderr, /0 added \(0 B\), 0 removed \(0 B\), \d+ changed \(content 30, .*\), \d+ unchanged/);
    });

    test('anomaly advice names the backup and the diff to run', async () => {
      const a = short(f.attacked);
      const r = await f.cli('anomalies', a, '--json');
      assert.equal(r.code, 3, r.stderr);
      const run = json(r.stdout).runs[0];
      assert.equal(run.id, f.attacked);
      assert.equal(run.group.host, WEB);
      const advice = run.findings.map((x: any) => x.recommendation).join('\n');
      // The backup it was compared with (the previous one of its group), then the backup itself.
      assert.ok(advice.includes(`s3backup diff ${f.ids.projects.at(-2)} ${f.attacked}`), advice);
      assert.doesNotMatch(advice, /ls latest/);
      const human = await f.cli('anomalies', '--all');
      fits(
        {
          ...human,
          stdout: human.stdout
            .split('\n')
            .filter((l) => !l.startsWith(' '))
            .join('\n'),
        },
        'anomalies',
      );
      assert.match(human.stdout, new RegExp(`^${a} \\d{4}-.* UTC incremental of web1-frontend.*….*/projects: \\d+ finding`, 'm'));
    });

    test('forget --dry-run and cost show the groups; forget takes the filters', async () => {
      // The attacked group is under an anomaly hold: nothing of it is removed without --force.
      const held = await f.cli('forget', '--dry-run', '--keep-last', '1', '--host', WEB);
      assert.equal(held.code, 0, held.stderr);
      fits(held, 'forget');
      assert.match(held.stdout, /^RETENTION HELD for web1-frontend.*\/projects since backup /m);
      assert.match(held.stdout, /no backups to remove/);
      const r = await f.cli('forget', '--dry-run', '--keep-last', '1', '--host', WEB, '--force');
      assert.equal(r.code, 0, r.stderr);
      fits(r, 'forget');
      assert.match(r.stdout, /only the backups matching --host web1-frontend/);
      assert.equal(r.stdout.match(/^group /gm)?.length, 2, r.stdout);
      assert.doesNotMatch(r.stdout, /db2/);
      for (const id of f.ids.projects.slice(0, -1)) assert.match(r.stdout, new RegExp(`^ {2}${short(id)} .*\\bremove\\b`, 'm'));
      assert.match(r.stdout, new RegExp(`would remove ${f.ids.projects.length - 1} backup\\(s\\): ${short(f.ids.projects[0]!)}`));
      const j = json((await f.cli('forget', '--dry-run', '--keep-last', '1', '--path', www, '--json')).stdout);
      assert.equal(j.groups.length, 1);
      assert.equal(j.groups[0].group.host, WEB);
      assert.deepEqual(j.removed, []);

      const cost = await f.cli('cost');
      assert.equal(cost.code, 0, cost.stderr);
      assert.match(cost.stdout, /backups: 9 from .* in 3 group\(s\)/);
      assert.match(cost.stdout, /^ {2}HOST: SOURCES\s+BACKUPS\s+EVERY\s+ARCHIVE/m);
      assert.match(cost.stdout, /^ {2}db2: .*\/db\s+3\s/m);
      assert.match(cost.stdout, /^ {2}web1-frontend.*\/projects\s+5\s/m);
    });
  });
}

fleetTests(
  'local repository',
  async () => ({ repo: path.join(work, 'repo-local'), env: isolatedEnv(path.join(work, 'home')) }),
  async () => {},
);

let bucket: string | undefined;
fleetTests(
  'S3 (Ceph)',
  async () => {
    bucket = await createTestBucket('groups');
    return { repo: `s3://${bucket}/fleet`, env: isolatedEnv(path.join(work, 'home-s3'), s3CliEnv()) };
  },
  async () => {
    if (bucket) await deleteTestBucket(bucket);
  },
);

test('an encrypted repository: filters, latest, list anomaly counts and diff with the passphrase', async () => {
  const repo = path.join(work, 'repo-encrypted');
  const env = isolatedEnv(path.join(work, 'home-enc'), { S3BACKUP_PASSWORD: 'correct horse battery staple' });
  const cli = (...args: string[]) => runCli([...args, '--repo', repo], { env });
  const { www, db } = makeSources('encrypted');
  assert.equal((await cli('init', '--encrypt')).code, 0);
  const ids: Record<string, string> = {};
  for (const [host, src] of [
    [WEB, www],
    [DB, db],
  ] as const) {
    const r = await cli('backup', src, '--host', host, '--json');
    assert.equal(r.code, 0, r.stderr);
    ids[host] = json(r.stdout).id;
  }
  const list = json((await cli('list', '--json')).stdout);
  assert.deepEqual(
    list.backups.map((b: any) => [b.group.host, b.anomalies]),
    [
      [WEB, 0],
      [DB, 0],
    ],
  );
  assert.equal(json((await cli('ls', 'latest', '--host', WEB, '--json')).stdout).id, ids[WEB]);
  const d = await cli('diff', ids[WEB]!.slice(-8), 'latest', '--json');
  assert.equal(d.code, 0, d.stderr);
  const doc = json(d.stdout);
  assert.equal(doc.to.id, ids[DB]);
  assert.ok(doc.changes.some((c: any) => c.change === 'removed' && c.path === 'www/index.html'));
  assert.ok(doc.changes.some((c: any) => c.change === 'added' && c.path === 'db/data.sql'));
  const first = await cli('diff', `${ids[WEB]!.slice(-8)}^`, ids[WEB]!);
  assert.equal(first.code, 1);
  assert.match(first.stderr, /backup .* has no earlier backup of web1-frontend.*\/www/);
});
