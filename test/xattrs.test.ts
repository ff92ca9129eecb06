// Extended attributes and POSIX ACLs: a tree with attributes of every kind (user.*, trusted.*,
// security.capability, security.selinux, an access ACL, a directory with a default ACL, one on a
// symlink, on a hard link pair) backed up and restored on the local store and on Ceph RGW, and
// extracted from the archive by GNU tar (--xattrs --xattrs-include='*'): every copy compared
// attribute for attribute with the source, as getfattr (the attr package) reads them, not as
// s3backup does. Also: a non-root restore, --no-xattrs, an incremental that turns them on, verify
// --deep catching a manifest that disagrees with its archive, and a target without attributes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { paxXattrs, xattrRecord } from '../src/archive/tar.ts';
import { runBackup } from '../src/backup/backup.ts';
import { runRestore } from '../src/restore/restore.ts';
import type { Store } from '../src/store/store.ts';
import { runVerify } from '../src/verify/verify.ts';
import { testBackends } from './helpers/store.ts';
import { LocalStore } from '../src/store/local.ts';
import { diffTrees, isolatedEnv, json, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('xattrs');
fs.chmodSync(work, 0o755); // the non-root restore below must reach its target
const src = path.join(work, 'src');
/** A home for the CLI's logs and state, apart from the user's; writable by nobody too. */
const home = path.join(work, 'home');
const env = isolatedEnv(home);

// setcap and getcap live in /usr/sbin, which a non-login PATH may lack.
const toolEnv = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` };
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: toolEnv });
const setfattr = (file: string, name: string, value: string) => sh('setfattr', ['-h', '-n', name, '-v', value, file]);

/** The tree: every kind of attribute the issue names, on files, a directory and a symlink. */
function makeXattrTree(root: string): void {
  fs.mkdirSync(path.join(root, 'acl-dir', 'sub'), { recursive: true });
  const f = (rel: string, content: string) => {
    fs.writeFileSync(path.join(root, rel), content);
    return path.join(root, rel);
  };
  f('plain.txt', 'no attributes\n');
  // user.*: text, binary (every byte value, NUL included), empty, and names with "=" and "%"
  // (escaped in the pax keyword) and non-ASCII.
  const user = f('user.txt', 'user attributes\n');
  setfattr(user, 'user.comment', 'a note with spaces');
  setfattr(user, 'user.binary', `0x${Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('hex')}`);
  setfattr(user, 'user.empty', '""');
  setfattr(user, 'user.a=b%c', 'escaped name');
  setfattr(user, 'user.grüße', 'non-ASCII name');
  const trusted = f('trusted.txt', 'trusted\n');
  setfattr(trusted, 'trusted.md5', '0x00ff10');
  // security.selinux as a label would be on an SELinux host (set as a plain attribute here).
  const labelled = f('labelled.txt', 'selinux\n');
  setfattr(labelled, 'security.selinux', 'system_u:object_r:bin_t:s0');
  // A file capability (what ping has): security.capability, set by setcap.
  const cap = path.join(root, 'ping-like');
  fs.copyFileSync('/bin/true', cap);
  fs.chmodSync(cap, 0o755);
  sh('setcap', ['cap_net_raw+ep', cap]);
  // ACLs: a file with named-user and named-group entries; a directory with an access ACL and
  // default entries (what new files in it inherit), and a file in it that inherited them.
  const acl = f('acl.txt', 'acl\n');
  sh('setfacl', ['-m', 'u:nobody:rw,g:daemon:r', acl]);
  sh('setfacl', ['-m', 'u:nobody:rwx,g:daemon:rx', path.join(root, 'acl-dir')]);
  sh('setfacl', ['-d', '-m', 'u:nobody:rx,g:daemon:rx,o::-', path.join(root, 'acl-dir')]);
  f('acl-dir/inherited.txt', 'inherits the default ACL\n');
  setfattr(path.join(root, 'acl-dir', 'sub'), 'user.dir', 'on a directory');
  // A symlink's own attribute (trusted.*: user.* is not allowed on symlinks).
  fs.symlinkSync('user.txt', path.join(root, 'link'));
  setfattr(path.join(root, 'link'), 'trusted.link', 'on the link itself');
  // A hard link pair: one inode, one set of attributes.
  const hard = f('hard-a.txt', 'hard\n');
  setfattr(hard, 'user.hard', 'shared');
  fs.linkSync(hard, path.join(root, 'hard-b.txt'));
}

/** Every entry's attributes under root, as getfattr lists them (no symlink followed): path → name → hex. */
function xattrsOf(root: string): Map<string, Record<string, string>> {
  const r = spawnSync('getfattr', ['-R', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  for (const line of r.stdout.split('\n')) {
    const file = /^# file: (.*)$/.exec(line);
    if (file) {
      const rel = path.relative(
        root,
        file[1]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
      );
      current = {};
      out.set(rel, current);
      continue;
    }
    const attr = /^([^=]+)=(.*)$/.exec(line);
    if (attr && current) current[attr[1]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))] = attr[2]!;
  }
  return out;
}

/** Differences in attributes between two trees (empty: the same), optionally only for names `keep` accepts. */
function diffXattrs(a: string, b: string, keep: (name: string) => boolean = () => true): string[] {
  const xa = xattrsOf(a);
  const xb = xattrsOf(b);
  const lines: string[] = [];
  for (const p of new Set([...xa.keys(), ...xb.keys()])) {
    const ra = Object.fromEntries(Object.entries(xa.get(p) ?? {}).filter(([k]) => keep(k)));
    const rb = Object.fromEntries(Object.entries(xb.get(p) ?? {}).filter(([k]) => keep(k)));
    for (const k of new Set([...Object.keys(ra), ...Object.keys(rb)])) {
      if (ra[k] !== rb[k]) lines.push(`${p}: ${k}: ${ra[k] ?? '(none)'} vs ${rb[k] ?? '(none)'}`);
    }
  }
  return lines;
}

/** A whole archive from the store, extracted by GNU tar with every attribute into dir. */
async function extractWithGnuTar(store: Store, keys: string[], dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  for (const key of keys) {
    const file = path.join(work, 'archive.tar.zst');
    const chunks: Buffer[] = [];
    for await (const c of (await store.get(key)) as Readable) chunks.push(c as Buffer);
    fs.writeFileSync(file, Buffer.concat(chunks));
    const r = spawnSync('bash', ['-c', `zstd -dc "${file}" | tar --xattrs --xattrs-include='*' -xpf - -C "${dir}"`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    fs.rmSync(file);
  }
}

before(() => {
  fs.mkdirSync(home, { mode: 0o777 });
  fs.chmodSync(home, 0o777);
  fs.mkdirSync(src);
  makeXattrTree(src);
});
after(() => fs.rmSync(work, { recursive: true, force: true }));

test('the source tree has every kind of attribute (as getfattr reads it)', () => {
  const x = xattrsOf(src);
  const names = new Set([...x.values()].flatMap((r) => Object.keys(r)));
  for (const n of [
    'user.comment',
    'user.binary',
    'user.a=b%c',
    'trusted.md5',
    'security.selinux',
    'security.capability',
    'system.posix_acl_access',
    'system.posix_acl_default',
    'trusted.link',
  ]) {
    assert.ok(names.has(n), `${n} missing from the source: ${[...names].join(', ')}`);
  }
  assert.ok(x.get('acl-dir')?.['system.posix_acl_default']);
  assert.ok(x.get('acl-dir/inherited.txt')?.['system.posix_acl_access'], 'the default ACL was inherited');
  assert.equal(x.get('plain.txt'), undefined);
});

test('a SCHILY.xattr record holds any bytes and any name, and reads back', () => {
  const value = Buffer.from([0, 10, 61, 37, 255, 32]);
  const rec = xattrRecord('user.a=b%c\u00e9', value);
  // "%d %s=%s\n", the length counting the whole record.
  assert.equal(Number(rec.toString('latin1').split(' ')[0]), rec.length);
  assert.match(rec.toString('latin1'), / SCHILY\.xattr\.user\.a%3Db%25c/);
  const back = paxXattrs(Buffer.concat([Buffer.from('11 path=ab\n'), rec]));
  assert.deepEqual([...back.keys()], ['user.a=b%c\u00e9']);
  assert.deepEqual(back.get('user.a=b%c\u00e9'), value);
  assert.throws(() => paxXattrs(Buffer.from('99 SCHILY.xattr.user.x=1\n')), /malformed/);
});

for (const backend of testBackends('xattrs', 'host/xattrs')) {
  describe(`extended attributes on ${backend.name}`, () => {
    let store: Store;
    let repoArg: string;
    let cliEnv: NodeJS.ProcessEnv;
    let cleanup: () => Promise<void>;
    let archiveKeys: string[];
    const out = (name: string) => path.join(work, `${backend.name.split(' ')[0]}-${name}`);
    before(async () => {
      ({ store, repoArg, cliEnv, cleanup } = await backend.open());
      const b = await runBackup({ store, sources: [src], host: 'xattr-test' });
      assert.deepEqual(b.warnings, []);
      archiveKeys = b.archiveKeys;
    });
    after(async () => {
      await store.close();
      await cleanup();
    });

    test('restore (as root) brings back every attribute, content and mode', async () => {
      const target = out('restore');
      const r = await runRestore({ store, snapshot: 'latest', target });
      assert.deepEqual(r.warnings, []);
      assert.deepEqual(diffTrees(src, path.join(target, 'src'), { mtimes: true }), []);
      assert.deepEqual(diffXattrs(src, path.join(target, 'src')), []);
      assert.match(sh('getcap', [path.join(target, 'src', 'ping-like')]), /cap_net_raw[=+]ep/);
      assert.match(sh('getfacl', ['-p', path.join(target, 'src', 'acl-dir')]), /default:user:nobody:r-x/);
      // Hard links are links again, sharing the one set of attributes.
      assert.equal(fs.statSync(path.join(target, 'src', 'hard-a.txt')).ino, fs.statSync(path.join(target, 'src', 'hard-b.txt')).ino);
    });

    test("GNU tar extracts the archive with the same attributes (tar --xattrs --xattrs-include='*')", async () => {
      const target = out('gnutar');
      await extractWithGnuTar(store, archiveKeys, target);
      // ustar mtimes are whole seconds (the manifest keeps the fraction).
      assert.deepEqual(diffTrees(src, path.join(target, 'src'), { mtimes: false }), []);
      assert.deepEqual(diffXattrs(src, path.join(target, 'src')), []);
    });

    test("ls --json shows each entry's attributes (base64 values), as the source has them", async () => {
      const r = await runCli(['ls', 'latest', '--repo', repoArg, '--json'], { env: { ...env, ...cliEnv } });
      assert.equal(r.code, 0, r.stderr);
      const entries = json(r.stdout).entries as { path: string; xattrs?: Record<string, string> }[];
      const source = xattrsOf(src);
      for (const e of entries) {
        const want = source.get(e.path.slice('src/'.length)) ?? (e.path === 'src' ? source.get('') : undefined);
        const got = e.xattrs
          ? Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, `0x${Buffer.from(v, 'base64').toString('hex')}`]))
          : undefined;
        // getfattr writes an empty value as "" in hex mode too.
        const norm = (o: Record<string, string> | undefined) =>
          o ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v === '0x' || v === '""' ? '' : v])) : undefined;
        assert.deepEqual(norm(got), norm(want), e.path);
      }
      assert.equal(entries.find((e) => e.path === 'src/plain.txt')?.xattrs, undefined);
    });

    test("verify --deep compares every header's attributes with the manifest: all agree", async () => {
      const v = await runVerify({ store, snapshot: 'latest', deep: true });
      assert.deepEqual(v.problems, []);
      assert.ok(v.ok);
    });

    test('a restore by a user other than root sets user.* and ACLs, and warns about security.* and trusted.*', async () => {
      const target = out('nobody');
      fs.mkdirSync(target, { mode: 0o777 });
      fs.chmodSync(target, 0o777);
      // nobody reads the local repository (it only reads: a restore takes no lock).
      if (backend.name === 'local') spawnSync('chmod', ['-R', 'a+rX', repoArg]);
      const r = await runCli(['restore', 'latest', '--repo', repoArg, '--target', target, '--json'], {
        env: { ...env, ...cliEnv },
        asUser: 65534,
        cwd: target,
      });
      assert.equal(r.code, 3, r.stderr);
      const doc = json(r.stdout);
      assert.equal(doc.warnings.length, 1, doc.warnings.join('\n'));
      // trusted.md5, security.selinux, security.capability, and the symlink's trusted.link.
      assert.match(
        doc.warnings[0],
        /^4 extended attribute\(s\) \(security\.\*, trusted\.\*\) not restored: only root may set them \(first: src\/labelled\.txt \(security\.selinux\)\); restore as root/,
      );
      const userOnly = (n: string) => n.startsWith('user.') || n.startsWith('system.posix_acl_');
      assert.deepEqual(diffXattrs(src, path.join(target, 'src'), userOnly), []);
      const restored = xattrsOf(path.join(target, 'src'));
      for (const p of ['ping-like', 'trusted.txt', 'labelled.txt', 'link']) {
        assert.deepEqual(
          Object.keys(restored.get(p) ?? {}).filter((n) => !userOnly(n)),
          [],
          p,
        );
      }
      fs.rmSync(target, { recursive: true, force: true });
    });
  });
}

describe('--no-xattrs, and an incremental that turns them back on', () => {
  const repo = path.join(work, 'repo-toggle');
  test('--no-xattrs stores none: not in the manifest, not in the archive', async () => {
    const r = await runCli(['backup', src, '--repo', repo, '--no-xattrs', '--no-forget', '--host', 'toggle', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const ls = json((await runCli(['ls', 'latest', '--repo', repo, '--json'], { env })).stdout);
    assert.deepEqual(
      ls.entries.filter((e: { xattrs?: unknown }) => e.xattrs),
      [],
    );
    const archive = path.join(repo, json(r.stdout).archiveKeys[0]);
    const listing = spawnSync(
      'bash',
      ['-c', `zstd -dc "${archive}" | tar --xattrs -tvf - 2>&1 | head -1; zstd -dc "${archive}" | grep -ac SCHILY.xattr`],
      { encoding: 'utf8' },
    );
    assert.match(listing.stdout, /\n0\n$/);
    const target = path.join(work, 'no-xattrs-restore');
    const rr = await runCli(['restore', 'latest', '--repo', repo, '--target', target], { env });
    assert.equal(rr.code, 0, rr.stderr);
    assert.deepEqual(
      [...xattrsOf(target).values()].filter((a) => Object.keys(a).length > 0),
      [],
    );
  });

  test('the next backup stores the attributes again: unchanged files with attributes are stored anew', async () => {
    const r = await runCli(['backup', src, '--repo', repo, '--no-forget', '--host', 'toggle', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.kind, 'incremental');
    // The 7 files with attributes are read again; plain.txt is not (nor hard-b.txt: a hard link).
    assert.equal(doc.changedFiles, 7);
    assert.equal(doc.unchangedFiles, 1);
    const v = await runCli(['verify', 'latest', '--deep', '--repo', repo, '--json'], { env });
    assert.equal(v.code, 0, v.stdout);
    const target = path.join(work, 'toggle-restore');
    const rr = await runCli(['restore', 'latest', '--repo', repo, '--target', target], { env });
    assert.equal(rr.code, 0, rr.stderr);
    assert.deepEqual(diffXattrs(src, path.join(target, 'src')), []);
  });

  test("a no-change incremental keeps every file's attributes; one changed attribute stores that file again", async () => {
    const before = json((await runCli(['ls', 'latest', '--repo', repo, '--json'], { env })).stdout).entries;
    const r = await runCli(['backup', src, '--repo', repo, '--no-forget', '--host', 'toggle', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([json(r.stdout).changedFiles, json(r.stdout).unchangedFiles], [0, 8]);
    const now = json((await runCli(['ls', 'latest', '--repo', repo, '--json'], { env })).stdout).entries;
    assert.deepEqual(
      now.map((e: { path: string; xattrs?: unknown }) => [e.path, e.xattrs]),
      before.map((e: { path: string; xattrs?: unknown }) => [e.path, e.xattrs]),
    );
    // Only the attribute changes (the content and mtime stay): the ctime moves, the file is stored again.
    setfattr(path.join(src, 'user.txt'), 'user.comment', 'changed');
    const c = await runCli(['backup', src, '--repo', repo, '--no-forget', '--host', 'toggle', '--json'], { env });
    assert.deepEqual([json(c.stdout).changedFiles, json(c.stdout).unchangedFiles], [1, 7]);
    const target = path.join(work, 'toggle-restore-2');
    assert.equal((await runCli(['restore', 'latest', '--repo', repo, '--target', target], { env })).code, 0);
    assert.deepEqual(diffXattrs(src, path.join(target, 'src')), []);
    assert.match(sh('getfattr', ['-n', 'user.comment', path.join(target, 'src', 'user.txt')]), /user\.comment="changed"/);
    setfattr(path.join(src, 'user.txt'), 'user.comment', 'a note with spaces');
  });
});

describe('verify --deep when the manifest and the archive disagree', () => {
  const repo = path.join(work, 'repo-tamper');
  test('an attribute changed in the manifest (not in the archive) is named', async () => {
    const r = await runCli(['backup', src, '--repo', repo, '--no-forget', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const id = json(r.stdout).id as string;
    // Rewrite the entry segment that holds it with one attribute of one entry changed, stored
    // under its new id, and the manifest's segment list pointing at it.
    const file = path.join(repo, 'snapshots', `${id}.ndjson.zst`);
    const head = sh('zstd', ['-dc', file]).split('\n');
    const segments = JSON.parse(head[2]!).segments as [string, string, number][];
    const k = segments.findIndex(([sid]) =>
      sh('zstd', ['-dc', path.join(repo, 'entries', `${sid}.ndjson.zst`)]).includes('"user.comment"'),
    );
    assert.ok(k >= 0, 'a segment with user.comment');
    const text = sh('zstd', ['-dc', path.join(repo, 'entries', `${segments[k]![0]}.ndjson.zst`)]).split('\n');
    const i = text.findIndex((l) => l.includes('"user.comment"'));
    assert.ok(i >= 1, 'an entry with user.comment');
    const e = JSON.parse(text[i]!);
    e.xattrs['user.comment'] = Buffer.from('something else').toString('base64');
    text[i] = JSON.stringify(e);
    const changed = Buffer.from(text.join('\n'));
    const sid = createHash('sha256').update(changed).digest('hex');
    fs.writeFileSync(path.join(repo, 'entries', `${sid}.ndjson.zst`), zlib.zstdCompressSync(changed));
    segments[k]![0] = sid;
    head[2] = JSON.stringify({ segments });
    fs.writeFileSync(file, zlib.zstdCompressSync(head.join('\n')));
    const v = await runCli(['verify', id, '--deep', '--repo', repo, '--json'], { env });
    assert.equal(v.code, 1, v.stdout + v.stderr);
    const problems = json(v.stdout).problems as { where: string; problem: string }[];
    assert.deepEqual(problems, [
      {
        where: 'src/user.txt',
        problem: "extended attributes in the archive's tar header do not match the manifest's: user.comment differs",
      },
    ]);
  });
});

describe('a target file system without extended attributes (ramfs)', () => {
  const mnt = path.join(work, 'ramfs');
  let mounted = false;
  before(() => {
    fs.mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'ramfs', '-o', 'size=8m', 'ramfs', mnt], { encoding: 'utf8' });
    assert.equal(m.status, 0, `mount ramfs: ${m.stderr}`);
    mounted = true;
  });
  after(() => {
    if (mounted) spawnSync('umount', [mnt]);
  });

  test('the restore writes everything else and says once how many attributes it could not set', async () => {
    const repo = path.join(work, 'repo-ramfs');
    assert.equal((await runCli(['backup', src, '--repo', repo, '--no-forget'], { env })).code, 0);
    const target = path.join(mnt, 'out');
    const r = await runCli(['restore', 'latest', '--repo', repo, '--target', target, '--json'], { env });
    assert.equal(r.code, 3, r.stderr);
    const doc = json(r.stdout);
    assert.equal(doc.files, 8);
    assert.deepEqual(diffTrees(src, path.join(target, 'src'), { mtimes: true }), []);
    const total = [...xattrsOf(src).values()].reduce((n, a) => n + Object.keys(a).length, 0) - 1; // hard-b shares hard-a's inode (restored by a link)
    assert.equal(doc.warnings.length, 1, doc.warnings.join('\n'));
    assert.match(
      doc.warnings[0],
      new RegExp(`^${total} extended attribute\\(s\\) not restored: the target's file system does not support them \\(ENOTSUP; first: `),
    );
  });

  test('a backup of such a file system has nothing to say about attributes', async () => {
    const dir = path.join(mnt, 'plain');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'a.txt'), 'a');
    const b = await runBackup({ store: new LocalStore(path.join(work, 'repo-ramfs-src')), sources: [dir] });
    assert.deepEqual(b.warnings, []);
  });
});
