// The launcher (bin/s3backup.js) runs the commands that move data with malloc that gives memory
// back and, for backup and restore, a bounded old generation: it starts Node again in its own place when they are
// not in effect yet. A probe loaded with --import reports each start's settings.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { BIN, tempDir } from './helpers/tree.ts';

const work = tempDir('launcher');
after(() => fs.rmSync(work, { recursive: true, force: true }));

const probe = path.join(work, 'probe.mjs');
fs.writeFileSync(
  probe,
  `process.stderr.write('PROBE ' + JSON.stringify({ pid: process.pid, arena: process.env.MALLOC_ARENA_MAX ?? null, ` +
    `mmap: process.env.MALLOC_MMAP_THRESHOLD_ ?? null, flags: process.execArgv.filter((a) => a.startsWith('--max-') || a.startsWith('--initial-')) }) + '\\n');\n`,
);

interface Start {
  pid: number;
  arena: string | null;
  mmap: string | null;
  flags: string[];
}

/** Run the CLI under the probe: each start of Node (before and after the launcher's re-run), and the exit code. */
function starts(args: string[], env: NodeJS.ProcessEnv = {}, nodeFlags: string[] = []): { starts: Start[]; status: number | null } {
  const clean = { ...process.env };
  delete clean.MALLOC_ARENA_MAX;
  delete clean.MALLOC_MMAP_THRESHOLD_;
  delete clean.NODE_OPTIONS;
  const r = spawnSync(process.execPath, [...nodeFlags, '--import', probe, BIN, ...args], { env: { ...clean, ...env }, encoding: 'utf8' });
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('PROBE '));
  return { starts: lines.map((l) => JSON.parse(l.slice(6)) as Start), status: r.status };
}

describe('the launcher', () => {
  test('backup: started again in the same process with the malloc settings and both heap bounds', () => {
    const r = starts(['backup', '--help']);
    assert.equal(r.status, 0);
    assert.equal(r.starts.length, 2, JSON.stringify(r.starts));
    const [first, second] = r.starts as [Start, Start];
    assert.equal(second.pid, first.pid, 'execve: the same process, not a child');
    assert.deepEqual(first, { pid: first.pid, arena: null, mmap: null, flags: [] });
    assert.deepEqual(second, { pid: first.pid, arena: '2', mmap: '262144', flags: ['--max-semi-space-size=4', '--max-old-space-size=96'] });
  });

  test('backup after the common options: the same bounds', () => {
    const r = starts(['--repo', path.join(work, 'repo'), '--json', 'backup', '--help']);
    assert.equal(r.status, 0);
    assert.deepEqual(r.starts.at(-1)?.flags, ['--max-semi-space-size=4', '--max-old-space-size=96']);
  });

  test('restore: the arena bound, its heap bounds and the old generation floor, but not the mmap threshold', () => {
    const r = starts(['restore', '--help']);
    assert.equal(r.status, 0);
    assert.deepEqual(r.starts.at(-1), {
      pid: r.starts[0]!.pid,
      arena: '2',
      mmap: null,
      flags: ['--max-semi-space-size=2', '--max-old-space-size=96', '--initial-old-space-size=32'],
    });
    // The shebang's young-generation bound is replaced by restore's own; other values given are kept.
    const shebang = starts(['restore', '--help'], {}, ['--max-semi-space-size=4']);
    assert.equal(shebang.starts.length, 2);
    assert.deepEqual(shebang.starts.at(-1)?.flags, ['--max-semi-space-size=2', '--max-old-space-size=96', '--initial-old-space-size=32']);
    const kept = starts(['restore', '--help'], {}, ['--max-semi-space-size=8', '--initial-old-space-size=20']);
    assert.deepEqual(kept.starts.at(-1)?.flags, ['--max-semi-space-size=8', '--initial-old-space-size=20', '--max-old-space-size=96']);
    // A backup keeps the shebang's.
    assert.deepEqual(starts(['backup', '--help'], {}, ['--max-semi-space-size=4']).starts.at(-1)?.flags, [
      '--max-semi-space-size=4',
      '--max-old-space-size=96',
    ]);
  });

  test('commands that move data or run for long: the arena bound; only backup and restore bound the old generation', () => {
    for (const command of ['verify', 'copy', 'dump', 'prune', 'schedule', 'dashboard']) {
      const r = starts([command, '--help']);
      assert.equal(r.status, 0, command);
      assert.deepEqual(r.starts.at(-1), { pid: r.starts[0]!.pid, arena: '2', mmap: null, flags: ['--max-semi-space-size=4'] }, command);
    }
  });

  test('lookups and the other short commands: Node starts once, with nothing added', () => {
    for (const args of [
      ['ls', '--help'],
      ['cat', '--help'],
      ['list', '--help'],
      ['diff', '--help'],
      ['--repo', work, 'ls', '--help'],
      ['--version'],
    ]) {
      const r = starts(args);
      assert.equal(r.status, 0, args.join(' '));
      assert.deepEqual(r.starts, [{ pid: r.starts[0]!.pid, arena: null, mmap: null, flags: [] }], args.join(' '));
    }
  });

  test('a command word after the command is an argument: ls of a path named "backup" starts once', () => {
    const r = starts(['ls', 'latest', 'backup', '--repo', path.join(work, 'none')]);
    assert.equal(r.starts.length, 1, JSON.stringify(r.starts));
  });

  test('settings already given are kept, and with all of them in effect Node starts once', () => {
    const kept = starts(['backup', '--help'], { MALLOC_ARENA_MAX: '4' }, ['--max-old-space-size=300']);
    assert.deepEqual(kept.starts.at(-1), {
      pid: kept.starts[0]!.pid,
      arena: '4',
      mmap: '262144',
      flags: ['--max-old-space-size=300', '--max-semi-space-size=4'],
    });
    const once = starts(
      ['backup', '--help'],
      { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '262144', NODE_OPTIONS: '--max-old-space-size=128' },
      ['--max-semi-space-size=4'],
    );
    assert.equal(once.status, 0);
    assert.equal(once.starts.length, 1, JSON.stringify(once.starts));
  });
});

test('the launcher knows every command the CLI has (its list is its own, to start fast): the same names, and no alias of one it bounds', () => {
  const help = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  const section = help.stdout.slice(help.stdout.indexOf('Commands:'));
  const words = [...section.matchAll(/^ {2}([a-z][a-z-]*(?:\|[a-z-]+)*)\s/gm)].map((m) => m[1]!.split('|'));
  const cli = words.map((w) => w[0]!).filter((w) => w !== 'help');
  const aliases = words.flatMap((w) => w.slice(1));
  const launcher = fs.readFileSync(BIN, 'utf8');
  const listed = (name: string) => {
    const m = new RegExp(`const ${name} = new Set\\(\\[([^\\]]*)\\]\\)`).exec(launcher);
    assert.ok(m, `${name} in bin/s3backup.js`);
    return [...m[1]!.matchAll(/'([a-z-]+)'/g)].map((x) => x[1]!);
  };
  assert.ok(cli.length >= 20, cli.join(' '));
  assert.deepEqual([...listed('COMMANDS')].sort(), [...cli].sort());
  const bounded = listed('BOUNDED_COMMANDS');
  for (const b of bounded) assert.ok(cli.includes(b), `${b} is a command`);
  // An alias of a bounded command would run without its memory settings: the launcher looks for the names above.
  for (const w of words) if (bounded.includes(w[0]!)) assert.deepEqual(w.slice(1), [], `aliases of ${w[0]}`);
  assert.ok(aliases.includes('ls-backups'), 'the alias syntax is read');
});
