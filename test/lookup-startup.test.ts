// A lookup (ls, cat, restore --include of one directory) in a large backup is mostly the CLI
// starting: the CLI loads only the module of the command being run (src/cli/main.ts,
// COMMAND_MODULES), and the work of backup, restore and verify when they run. Checked by
// recording every module the real CLI loads (a module hook given with --import), and by running
// each command, so a module left out where it is needed fails here too. A restore that fits in
// one batch writes its files without starting the writer thread. Also: the hand-written
// check of a manifest's segments line accepts nothing its zod schema refuses.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { IntegrityError } from '../src/errors.ts';
import { isSegmentsLine, parseSegmentsLine, SegmentsLineSchema } from '../src/repo/manifest.ts';
import { BIN, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('lookup-startup');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const recorder = path.join(work, 'record-modules.mjs');
fs.writeFileSync(
  recorder,
  `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({
  load(url, context, next) {
    appendFileSync(process.env.MODULE_LIST, url + '\\n');
    return next(url, context);
  },
});
`,
);

/** Run the CLI with the recorder; what it printed, its exit code, and every module URL it loaded. */
function loaded(args: string[]): { status: number | null; stdout: string; stderr: string; modules: string[] } {
  const list = path.join(work, `modules-${Math.random().toString(36).slice(2)}.txt`);
  const r = spawnSync(process.execPath, ['--import', recorder, BIN, ...args], {
    env: { ...isolatedEnv(path.join(work, 'home')), MODULE_LIST: list },
    encoding: 'utf8',
  });
  const modules = fs.existsSync(list) ? fs.readFileSync(list, 'utf8').split('\n').filter(Boolean) : [];
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, modules };
}

const fromDist = (modules: string[], folder: string) => modules.filter((u) => u.includes(`/dist/${folder}`));
const fromPackage = (modules: string[], name: string) => modules.filter((u) => u.includes(`/node_modules/${name}/`));

describe('what a command loads', () => {
  const src = path.join(work, 'src');
  const repo = path.join(work, 'repo');
  before(async () => {
    for (const d of ['docs', 'photos']) {
      fs.mkdirSync(path.join(src, d), { recursive: true });
      for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(src, d, `f${i}.txt`), `${d} ${i}\n`.repeat(i + 1));
    }
    // More than one batch of the restore's file writer (2 MiB).
    fs.mkdirSync(path.join(src, 'big'));
    fs.writeFileSync(path.join(src, 'big', 'large.bin'), pseudoRandom(3 << 20, 7));
    const r = await runCli(['backup', src, '--repo', repo, '--json', '--no-progress'], { env: isolatedEnv(path.join(work, 'home')) });
    assert.equal(r.code, 0, r.stderr);
  });

  test('ls: its own command module, not backup, restore, verify, the notifiers, node:http or other commands', () => {
    const r = loaded(['ls', 'latest', 'src/docs', '--repo', repo]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 6, r.stdout);
    assert.match(r.stdout, /src\/docs\/f4\.txt/);
    assert.ok(
      r.modules.some((u) => u.endsWith('/dist/cli/commands/ls.js')),
      'ls.js loaded',
    );
    assert.ok(r.modules.length > 50, `${r.modules.length} modules`);
    const other = fromDist(r.modules, 'cli/commands/').filter((u) => !u.endsWith('/ls.js'));
    assert.deepEqual(other, [], 'other command modules');
    for (const folder of ['backup/', 'run/', 'notify/', 'metrics/', 'verify/', 'prune/', 'cost/', 'dashboard/', 'schedule/'])
      assert.deepEqual(fromDist(r.modules, folder), [], folder);
    assert.deepEqual(fromDist(r.modules, 'restore/restore.js'), [], 'restore');
    assert.ok(!r.modules.includes('node:http'), 'node:http (whose ESM form loads undici)');
    for (const name of ['cli-progress', 'croner', 'hono', '@aws-sdk']) assert.deepEqual(fromPackage(r.modules, name), [], name);
  });

  test('cat loads its module and prints the file; restore --include restores one directory without backup or verify', () => {
    const cat = loaded(['cat', 'latest', 'src/photos/f2.txt', '--repo', repo]);
    assert.equal(cat.status, 0, cat.stderr);
    assert.equal(cat.stdout, 'photos 2\n'.repeat(3));
    assert.deepEqual(
      fromDist(cat.modules, 'cli/commands/').map((u) => path.basename(u)),
      ['cat.js'],
    );
    const target = path.join(work, 'restored');
    const restore = loaded(['restore', 'latest', '--repo', repo, '--target', target, '--include', 'src/docs/**', '--json']);
    assert.equal(restore.status, 0, restore.stderr);
    assert.equal(json(restore.stdout).files, 5);
    assert.deepEqual(fs.readdirSync(path.join(target, 'src')), ['docs']);
    assert.equal(fs.readFileSync(path.join(target, 'src/docs/f3.txt'), 'utf8'), 'docs 3\n'.repeat(4));
    assert.deepEqual(fromDist(restore.modules, 'cli/commands/'), []);
    for (const folder of ['backup/', 'run/', 'verify/', 'notify/']) assert.deepEqual(fromDist(restore.modules, folder), [], folder);
    assert.deepEqual(fromPackage(restore.modules, 'cli-progress'), [], 'no progress bar off a terminal');
    assert.deepEqual(fromDist(restore.modules, 'restore/file-writer-worker.js'), [], 'one batch: written without the writer thread');
    assert.equal(fromDist(restore.modules, 'restore/file-batch.js').length, 1);
  });

  test('restore of more than a batch starts the writer thread, and the content comes back exact', () => {
    const target = path.join(work, 'restored-big');
    const r = loaded(['restore', 'latest', '--repo', repo, '--target', target, '--include', 'src/big/**', '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(json(r.stdout).files, 1);
    assert.ok(fs.readFileSync(path.join(target, 'src/big/large.bin')).equals(pseudoRandom(3 << 20, 7)));
    assert.equal(fromDist(r.modules, 'restore/file-writer-worker.js').length, 1, 'the thread loaded its module');
  });

  test('backup and verify load their work when they run; a second backup is an incremental', () => {
    const b = loaded(['backup', src, '--repo', repo, '--json', '--no-progress']);
    assert.equal(b.status, 0, b.stderr);
    assert.equal(json(b.stdout).kind, 'incremental');
    assert.ok(fromDist(b.modules, 'backup/').length > 5);
    assert.ok(fromDist(b.modules, 'run/').length > 0);
    const v = loaded(['verify', 'latest', '--repo', repo, '--deep', '--json']);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(json(v.stdout).ok, true);
    assert.ok(fromDist(v.modules, 'verify/verify.js').length === 1);
    const all = loaded(['verify', '--all', '--repo', repo]);
    assert.equal(all.status, 0, all.stderr);
    assert.match(all.stdout, /all 2 backup\(s\)/);
  });

  test('no command word: every command is there (help, a mistyped command); a command of another module name works', () => {
    const help = loaded(['--help']);
    assert.equal(help.status, 0);
    for (const c of ['backup', 'list', 'restore', 'verify', 'ls', 'cat', 'diff', 'anomalies', 'history', 'dump', 'copy', 'key'])
      assert.match(help.stdout, new RegExp(`^  ${c}\\b`, 'm'), c);
    const typo = loaded(['lss', 'latest']);
    assert.equal(typo.status, 2);
    assert.match(typo.stderr, /unknown command 'lss'[\s\S]*Did you mean ls\?/);
    const anomalies = loaded(['anomalies', '--repo', repo, '--json']);
    assert.equal(anomalies.status, 0, anomalies.stderr);
    assert.equal(json(anomalies.stdout).ok, true);
    const before = loaded(['--repo', repo, 'list', '--json']);
    assert.equal(before.status, 0, before.stderr);
    assert.equal(json(before.stdout).backups.length, 2);
  });

  test('a failure in --json mode still reports one JSON document', () => {
    const r = loaded(['ls', 'nosuchid', '--repo', repo, '--json']);
    assert.equal(r.status, 1);
    assert.equal(json(r.stdout).ok, false);
    assert.match(json(r.stdout).error.message, /no backup "nosuchid"/);
  });
});

test('the hand-written check of the segments line accepts nothing its zod schema refuses', () => {
  const id = 'a'.repeat(64);
  const good = {
    segments: [
      [id, 'data', 3],
      ['b'.repeat(64), 'data/x', 1],
    ],
  };
  const values: unknown[] = [
    good,
    { segments: [] },
    { segments: [[id, 'data', 3]], other: 1 },
    null,
    [],
    'x',
    {},
    { segments: null },
    { segments: {} },
    { segments: [null] },
    { segments: [[id, 'data']] },
    { segments: [[id, 'data', 3, 4]] },
    { segments: [[id.toUpperCase(), 'data', 3]] },
    { segments: [[`${id}0`, 'data', 3]] },
    { segments: [['a'.repeat(63), 'data', 3]] },
    { segments: [[1, 'data', 3]] },
    { segments: [[id, 1, 3]] },
    { segments: [[id, null, 3]] },
    { segments: [[id, 'data', 0]] },
    { segments: [[id, 'data', -1]] },
    { segments: [[id, 'data', 1.5]] },
    { segments: [[id, 'data', '3']] },
    { segments: [[id, 'data', 2 ** 53]] },
    { segments: [[id, 'data', Number.MAX_SAFE_INTEGER]] },
    { segments: [{ 0: id, 1: 'data', 2: 3, length: 3 }] },
    { segments: [[id, 'data', 3]], layers: [] },
    { segments: [[id, 'data', 3]], layers: [[[id, 'data', 3]], [['b'.repeat(64), 'data/x', 2]]] },
    { segments: [[id, 'data', 3]], layers: [[]] },
    { segments: [[id, 'data', 3]], layers: null },
    { segments: [[id, 'data', 3]], layers: {} },
    { segments: [[id, 'data', 3]], layers: [[id, 'data', 3]] },
    { segments: [[id, 'data', 3]], layers: [[[id, 'data', 0]]] },
    { segments: [[id, 'data', 3]], layers: [[['x', 'data', 1]]] },
  ];
  for (const v of values) {
    const zodOk = SegmentsLineSchema.safeParse(v).success;
    if (isSegmentsLine(v)) assert.ok(zodOk, `the check accepts ${JSON.stringify(v)}, which the schema refuses`);
    const line = JSON.stringify(v);
    if (zodOk) assert.deepEqual(parseSegmentsLine(line, 'm'), JSON.parse(line));
    else assert.throws(() => parseSegmentsLine(line, 'm'), IntegrityError, line);
  }
  assert.ok(isSegmentsLine(good));
  assert.throws(
    () => parseSegmentsLine(JSON.stringify({ segments: [[id, 'data', 0]] }), 'snapshots/x.ndjson.zst'),
    /manifest snapshots\/x\.ndjson\.zst is damaged: segment list field "segments\[0\]\[2\]"/,
  );
});
