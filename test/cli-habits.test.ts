// The command line as an operator meets it: Ctrl-C on a terminal through the launcher, the
// progress bar, options before the command, mistyped options, a --repo that is a file, and
// installing the command globally from the checkout with the machine's own npm and node.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { globalFlagsAfterCommand } from '../src/cli/common.ts';
import { progressFields } from '../src/cli/progress.ts';
import { bytes } from '../src/format.ts';
import { VERSION } from '../src/version.ts';
import { startFaultProxy } from './helpers/fault-proxy.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, s3TestConfig, testS3Store } from './helpers/s3.ts';
import { BIN, isolatedEnv, json, pseudoRandom, ROOT, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('cli-habits');
const env = isolatedEnv(path.join(work, 'home'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** PATH as a user's shell has it: npm scripts put the project's node_modules/.bin (Node 24) first. */
const systemPath = (process.env.PATH ?? '')
  .split(path.delimiter)
  .filter((dir) => !dir.split(path.sep).includes('node_modules'))
  .join(path.delimiter);
const systemEnv = { ...process.env, ...env, PATH: systemPath };
const systemNodeMajor = Number(
  spawnSync('node', ['-p', 'process.versions.node'], { env: systemEnv, encoding: 'utf8' }).stdout.split('.')[0],
);

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Run `cmd` under `script`, a real pseudo-terminal: what the terminal showed, and the exit code. */
function onTerminal(cmd: string, extraEnv: NodeJS.ProcessEnv = {}) {
  const r = spawnSync('script', ['-qefc', cmd, '/dev/null'], {
    encoding: 'utf8',
    env: { ...process.env, ...env, COLUMNS: '120', ...extraEnv },
  });
  return { code: r.status, screen: r.stdout };
}

/** The progress-bar frames in what a terminal showed (each redraw moves to column 1: ESC [ 1 G). */
function frames(screen: string, label: string): string[] {
  return screen.split(/\r|\n|\x1b\[1G/).filter((l) => l.startsWith(`${label} `) && l.includes('ETA'));
}

describe('the launcher on a terminal', () => {
  const s3env = s3CliEnv();
  let bucket = '';
  after(async () => {
    if (bucket) await deleteTestBucket(bucket);
  });

  test('Ctrl-C: the launcher passes it on and waits; the prompt comes back after s3backup has cleaned up', async () => {
    bucket = await createTestBucket('cli-habits');
    const src = path.join(work, 'big');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'big.bin'), pseudoRandom(40 << 20, 7));
    // Each part of the archive's multipart upload is answered after 1.5 s: the backup is still
    // under way, with an upload to abort, when Ctrl-C comes.
    const proxy = await startFaultProxy({ upstream: s3TestConfig().endpoint, seed: 1 });
    const slowParts = proxy.addRule({ method: 'PUT', query: 'partNumber', action: { kind: 'delay', ms: 1500 }, label: 'slow parts' });
    // bin/s3backup.js as a shell starts it (its shebang's `node` from the user's PATH): on this
    // machine's older system Node it hands over to the bundled Node 24 in a child process.
    const repo = `s3://${bucket}/repo`;
    const cmd = `echo launcher=$$; exec ${q(BIN)} backup ${q(src)} --repo ${q(repo)} --endpoint ${q(proxy.url)} --compression none`;
    const terminal = spawn('script', ['-qefc', cmd, '/dev/null'], {
      env: { ...systemEnv, ...s3env, COLUMNS: '120' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    terminal.stdout.on('data', (d) => (screen += d));
    // 'exit', not 'close': stdin stays open for the keystroke; the screen is complete once stdout ends.
    const screenEnded = new Promise((resolve) => terminal.stdout.on('end', resolve));
    const exited = new Promise<number | null>((resolve) => terminal.on('exit', (code) => resolve(code)));
    for (let i = 0; i < 2400 && slowParts.matched === 0 && terminal.exitCode === null; i++) await sleep(25);
    assert.ok(slowParts.matched > 0, `the backup never reached its upload: ${screen}`);
    const launcher = Number(/launcher=(\d+)/.exec(screen)?.[1]);
    const children = fs.readFileSync(`/proc/${launcher}/task/${launcher}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
    if (systemNodeMajor < 24) {
      assert.equal(children.length, 1, 'an older system Node hands over to the bundled Node 24');
      assert.match(fs.readFileSync(`/proc/${children[0]}/cmdline`, 'utf8'), /node_modules\/node\/bin\/node\0.*s3backup\.js\0backup/);
    } else assert.deepEqual(children, [], 'a system Node 24 runs s3backup in the launcher itself');

    terminal.stdin.write('\x03'); // what a terminal's Ctrl-C is: the line discipline signals the foreground group
    const code = await exited;
    terminal.stdin.end();
    await screenEnded;
    await proxy.close();
    // The launcher ends with s3backup's own exit code (1: interrupted), not killed by the signal
    // (130) while s3backup still works; by then s3backup is gone, its upload aborted, and its
    // last words were on the terminal before the prompt could come back.
    assert.equal(code, 1, screen);
    for (const pid of children) assert.equal(fs.existsSync(`/proc/${pid}`), false, `s3backup (pid ${pid}) outlived the launcher`);
    const stopping = screen.indexOf('SIGINT received, stopping');
    const last = screen.indexOf('backup interrupted; nothing was recorded');
    assert.ok(stopping >= 0 && last > stopping, screen);
    assert.equal(screen.match(/received, stopping/g)?.length, 1, 'one Ctrl-C is one signal, even when it arrives twice');
    assert.doesNotMatch(screen.slice(last), /\n.*\S.*\n.*\S/, 'nothing after the last message but the line end');
    const store = testS3Store(bucket, 'repo');
    let uploads = 0;
    for await (const _ of store.listMultipartUploads()) uploads++;
    assert.equal(uploads, 0, 'the multipart upload was aborted before the launcher exited');
    await store.close();
  });

  test('no Node 24 beside an older launcher: exit 2, saying what to install', () => {
    const copy = path.join(work, 'lone', 'pkg', 'bin', 's3backup.js');
    fs.mkdirSync(path.dirname(copy), { recursive: true });
    fs.copyFileSync(BIN, copy);
    const r = spawnSync('node', [copy, '--version'], { env: systemEnv, encoding: 'utf8' });
    assert.equal(r.status, 2, r.stderr);
    if (systemNodeMajor < 24) assert.match(r.stderr, /s3backup needs Node\.js 24 or newer \(this is v\d+[^)]*\)\. Run "npm install"/);
    else assert.match(r.stderr, /s3backup is not built yet: run "npm install"/);
    assert.equal(r.stdout, '');
  });
});

describe('installing the command', () => {
  test('npm install -g of the checkout (the README way) gives a working s3backup; npx prints no EBADENGINE', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    assert.equal(pkg.engines, undefined, 'npm checks "engines" against the Node running npm, not the one s3backup runs on');
    const prefix = path.join(work, 'global');
    // The machine's own npm and node, as a user runs them; --offline: a folder install needs no registry.
    const npm = (args: string[], cwd: string) =>
      spawnSync('npm', [...args, '--offline', '--no-audit', '--no-fund', '--cache', path.join(work, 'npm-cache')], {
        cwd,
        env: systemEnv,
        encoding: 'utf8',
      });
    const install = npm(['install', '-g', '--ignore-scripts', '--prefix', prefix, '.'], ROOT);
    assert.equal(install.status, 0, install.stderr);
    assert.doesNotMatch(install.stderr, /EBADENGINE|warn/i);
    const installed = spawnSync(path.join(prefix, 'bin', 's3backup'), ['--version'], { cwd: work, env: systemEnv, encoding: 'utf8' });
    assert.equal(installed.status, 0, installed.stderr);
    assert.equal(installed.stdout.trim(), VERSION);
    assert.equal(installed.stderr, '');
    const npx = spawnSync('npx', ['--offline', 's3backup', '--version'], { cwd: ROOT, env: systemEnv, encoding: 'utf8' });
    assert.equal(npx.status, 0, npx.stderr);
    assert.equal(npx.stdout.trim(), VERSION);
    assert.doesNotMatch(npx.stderr, /EBADENGINE/);
  });
});

describe('options', () => {
  const repo = path.join(work, 'repo');
  const src = path.join(work, 'small');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');

  test('--repo, -r, --repo=, -rR and --config before the command are taken as the command’s', async () => {
    const first = await runCli(['--repo', repo, 'backup', src, '--json'], { env });
    assert.equal(first.code, 0, first.stderr);
    const id = json(first.stdout).id;
    const config = path.join(work, 's3backup.yaml');
    fs.writeFileSync(config, `repository: ${repo}\n`);
    for (const before of [
      ['--repo', repo],
      ['-r', repo],
      [`--repo=${repo}`],
      [`-r${repo}`],
      ['--config', config],
      ['-c', config, '--json'],
    ]) {
      const r = await runCli([...before, 'list', '--json'], { env });
      assert.equal(r.code, 0, `${before.join(' ')}: ${r.stderr}`);
      assert.deepEqual(
        json(r.stdout).backups.map((b: { id: string }) => b.id),
        [id],
        before.join(' '),
      );
    }
    const alone = await runCli(['--repo', repo], { env });
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /--repo \S+ needs a command after it/);
  });

  test('options move after the command but before "--"; --help and typos before it are left alone', () => {
    assert.deepEqual(globalFlagsAfterCommand(['-r', 'R', '--json', 'backup', 'a', '--', '-odd']), [
      'backup',
      'a',
      '-r',
      'R',
      '--json',
      '--',
      '-odd',
    ]);
    assert.deepEqual(globalFlagsAfterCommand(['--repo', 'R', '--help', 'list']), ['--help', 'list', '--repo', 'R']);
    assert.deepEqual(globalFlagsAfterCommand(['--tagret', 'x', 'list']), ['--tagret', 'x', 'list']);
    assert.deepEqual(globalFlagsAfterCommand(['list', '--repo', 'R']), ['list', '--repo', 'R']);
  });

  test('an unknown option is named with a suggestion, even when a required option is missing too', async () => {
    const target = path.join(work, 'restored');
    const r = await runCli(['restore', 'latest', '--tagret', target, '--repo', repo], { env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^s3backup: error: unknown option '--tagret'\n\(Did you mean --target\?\)/);
    assert.doesNotMatch(r.stderr, /required option/);
    assert.equal(fs.existsSync(target), false);
    const missing = await runCli(['restore', 'latest', '--repo', repo], { env });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /required option '--target <dir>' not specified/);
    const before = await runCli(['--repo', repo, 'list', '--jsno'], { env });
    assert.equal(before.code, 2);
    assert.match(before.stderr, /unknown option '--jsno'\n\(Did you mean --json\?\)/);
  });

  test('--repo at a regular file: exit 2 naming it, no stack trace, the file untouched', async () => {
    const file = path.join(work, 'not-a-repo.txt');
    fs.writeFileSync(file, 'my notes\n');
    const runs: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [['list', '--repo', file], env, /repository \S+not-a-repo\.txt \(from --repo\) cannot be used: \S+ is a file, not a directory/],
      [['backup', src, '--repo', file], env, /is a file, not a directory/],
      [
        ['restore', 'latest', '--target', path.join(work, 'r2'), '--repo', path.join(file, 'sub')],
        env,
        /not-a-repo\.txt, on the way to \S+sub, is a file/,
      ],
      [['list'], { ...env, S3BACKUP_REPO: file }, /\(from S3BACKUP_REPO\)/],
    ];
    for (const [args, runEnv, message] of runs) {
      const r = await runCli(args, { env: runEnv });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /hint: a local repository is a directory/);
      assert.doesNotMatch(r.stderr, /\n\s+at |ENOTDIR|unexpected error/);
    }
    assert.equal(fs.readFileSync(file, 'utf8'), 'my notes\n');
    assert.equal(fs.existsSync(path.join(work, 'r2')), false);
  });
});

describe('the progress bar', () => {
  test('its fields are never NaN or Infinity: "-" until there is a rate', () => {
    for (const [done, total, seconds] of [
      [0, 0, 0],
      [0, 1000, 0],
      [500, 1000, 0],
      [0, 1000, 3],
      [2000, 1000, 1],
      [5, 0, 1],
    ] as const) {
      const f = progressFields(done, total, seconds);
      assert.doesNotMatch(JSON.stringify(f), /NaN|Infinity|INF|NULL/, `${done} of ${total} in ${seconds} s`);
      assert.ok(f.percent >= 0 && f.percent <= 100);
    }
    assert.deepEqual(progressFields(0, 1000, 0), { percent: 0, done: bytes(0), rate: '-', eta: '-' });
    assert.deepEqual(progressFields(250, 1000, 5), { percent: 25, done: bytes(250), rate: `${bytes(50)}/s`, eta: '15s' });
    assert.equal(progressFields(1, 7201, 1).eta, '2h00m');
  });

  test('backup and verify --deep on a terminal: no NaN or Inf on any frame; verify counts files, with its summary’s totals', async () => {
    const src = path.join(work, 'many');
    fs.mkdirSync(src);
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), pseudoRandom(1 << 20, 100 + i));
    fs.writeFileSync(path.join(src, 'empty'), '');
    const repo = path.join(work, 'repo-progress');
    const backup = onTerminal(`${q(process.execPath)} ${q(BIN)} backup ${q(src)} --repo ${q(repo)} --compression none`);
    assert.equal(backup.code, 0, backup.screen);
    const backupFrames = frames(backup.screen, 'backup');
    assert.ok(backupFrames.length > 0, backup.screen);
    assert.doesNotMatch(backup.screen, /NaN|Inf|NFs|NULL/i);

    const verify = onTerminal(`${q(process.execPath)} ${q(BIN)} verify latest --deep --repo ${q(repo)}`);
    assert.equal(verify.code, 0, verify.screen);
    assert.doesNotMatch(verify.screen, /NaN|Inf|NFs|NULL/i);
    const summary = /intact: 1 archive\(s\), (\d+) files \(([^)]+)\) checked/.exec(verify.screen);
    assert.ok(summary, verify.screen);
    assert.equal(summary[1], '41');
    const verifyFrames = frames(verify.screen, 'verify');
    assert.ok(
      verifyFrames.some((f) => / [1-9]\d* of 41 files/.test(f)),
      verify.screen,
    );
    for (const frame of verifyFrames) {
      const m = /(\d+) of (\d+) files \| (.+?) of (.+?) \|/.exec(frame);
      assert.ok(m, frame);
      assert.ok(Number(m[1]) <= 41, frame);
      assert.equal(m[2], summary[1], frame);
      assert.equal(m[4], summary[2], frame);
    }
  });
});
