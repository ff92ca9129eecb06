// Objects of a repository that are valid JSON of the wrong shape: a manifest
// header with "sources": "x", an entry line `null`, an archive's frames as a string, a
// config.json, key file, run record or lock of the wrong shape. Each is reported as damaged, by
// name and with what is wrong, never as an unexpected error with a stack trace; list still lists
// the other backups (exit 3), a backup passes the damaged one over as its parent (warning, exit
// 3), forget keeps it, and restore, ls, cat and verify of it fail with a one-line message.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { bufferReader, zstdFrames } from '../src/archive/zstd-frames.ts';
import { IntegrityError } from '../src/errors.ts';
import { type Entry, entryProblem, EntrySchema, LocalManifest } from '../src/repo/manifest.ts';
import { getBuffer, type Store } from '../src/store/store.ts';
import { LocalStore } from '../src/store/local.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, testS3Store } from './helpers/s3.ts';
import { type CliResult, diffTrees, isolatedEnv, json, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('damaged');
after(() => fs.rmSync(work, { recursive: true, force: true }));
const home = path.join(work, 'home');
const env = isolatedEnv(home);
const src = path.join(work, 'data');
fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
fs.writeFileSync(path.join(src, 'sub', 'b.txt'), 'beta\n'.repeat(1000));

let repoCount = 0;
const newRepo = () => path.join(work, `repo-${++repoCount}`);

async function backup(repo: string, extra: string[] = [], e = env): Promise<any> {
  const r = await runCli(['backup', src, '--repo', repo, '--no-forget', '--json', ...extra], { env: e });
  assert.ok(r.code === 0 || r.code === 3, r.stderr);
  return json(r.stdout);
}

/** The lines of a manifest object (every zstd frame decoded), and the object made from lines again. */
function manifestLines(buf: Buffer): string[] {
  const text = zstdFrames(bufferReader(buf), buf.length)
    .map(([s, e]) => zlib.zstdDecompressSync(buf.subarray(s, e)).toString('utf8'))
    .join('');
  return text.split('\n').filter((l, i, all) => i < all.length - 1 || l !== '');
}
function manifestOf(lines: string[]): Buffer {
  return Buffer.concat([
    zlib.zstdCompressSync(`${lines.slice(0, 2).join('\n')}\n`),
    zlib.zstdCompressSync(`${lines.slice(2).join('\n')}\n`),
  ]);
}
/**
 * A plain repository's manifest as the lines of the layout before segments: header, archives,
 * then every entry (from its segments, whose archive lists must all be the same: small trees
 * have one segment), and that archive list.
 */
async function expandedLines(store: Store, id: string): Promise<{ lines: string[]; segmentArchives: string }> {
  const head = manifestLines(await getBuffer(store, `snapshots/${id}.ndjson.zst`));
  const lines = head.slice(0, 2);
  let segmentArchives: string | undefined;
  for (const [segment] of JSON.parse(head[2]!).segments as [string][]) {
    const [archives, ...entries] = manifestLines(await getBuffer(store, `entries/${segment}.ndjson.zst`));
    assert.ok(segmentArchives === undefined || segmentArchives === archives, 'one archive list in every segment');
    segmentArchives = archives!;
    lines.push(...entries);
  }
  return { lines, segmentArchives: segmentArchives! };
}

/**
 * Rewrite backup `id`'s manifest in `store` (plain repository): `edit` changes its lines (as
 * expandedLines gives them) in place; the entries are then stored as one segment, under the id
 * of their new text, so that only the edit is wrong.
 */
async function tamper(store: Store, id: string, edit: (lines: string[]) => void): Promise<void> {
  const { lines, segmentArchives } = await expandedLines(store, id);
  edit(lines);
  const text = Buffer.from(`${segmentArchives}\n${lines.slice(2).join('\n')}\n`);
  const segment = createHash('sha256').update(text).digest('hex');
  await store.put(`entries/${segment}.ndjson.zst`, zlib.zstdCompressSync(text));
  const head = [lines[0], lines[1], JSON.stringify({ segments: [[segment, 'data', lines.length - 2]] })];
  await store.put(`snapshots/${id}.ndjson.zst`, zlib.zstdCompressSync(`${head.join('\n')}\n`));
}
const editJson = (lines: string[], i: number, f: (o: any) => void) => {
  const o = JSON.parse(lines[i]!);
  f(o);
  lines[i] = JSON.stringify(o);
};
const header = (f: (h: any) => void) => (lines: string[]) => editJson(lines, 0, f);

/** A failure the way a user should see it: the exit code, one error line naming the problem, no stack trace. */
function failsCleanly(r: CliResult, pattern: RegExp, codes = [1]): void {
  assert.ok(codes.includes(r.code!), `exit ${r.code}: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\n\s+at /, r.stderr);
  assert.doesNotMatch(r.stderr, /unexpected error|TypeError/, r.stderr);
  assert.match(r.stderr, /^s3backup: error: /m);
  assert.match(r.stderr, pattern);
}
const noStack = (r: CliResult) => {
  assert.doesNotMatch(r.stderr, /\n\s+at |unexpected error|TypeError/, r.stderr);
};

describe('a manifest header of the wrong shape ("sources": "x")', () => {
  const repo = newRepo();
  const store = new LocalStore(repo);
  let a: any;
  let b: any;
  const problem = /manifest .*snapshots\/\S+\.ndjson\.zst is damaged: header field "sources" must be an array \(it is a string\)/;
  before(async () => {
    a = await backup(repo);
    b = await backup(repo);
    await tamper(
      store,
      b.id,
      header((h) => (h.sources = 'x')),
    );
  });

  test('list names it as damaged, lists the others, exits 3; --json too', async () => {
    const r = await runCli(['list', '--repo', repo], { env });
    assert.equal(r.code, 3, r.stderr);
    noStack(r);
    // Short ids (the last 8 characters) in the table; the error is in the group column, cut to fit.
    assert.match(r.stdout, new RegExp(`${b.id.slice(-8)}.*header field "sources".*DAMAGED`));
    assert.match(r.stdout, new RegExp(`${a.id.slice(-8)}.*full`));
    assert.match(r.stderr, /1 backup manifest\(s\) could not be read/);
    const j = json((await runCli(['list', '--repo', repo, '--json'], { env })).stdout);
    assert.equal(j.ok, false);
    assert.deepEqual(
      j.backups.map((x: any) => [x.id, !!x.damaged]),
      [
        [a.id, false],
        [b.id, true],
      ],
    );
    assert.match(j.backups[1].error, problem);
    assert.equal(j.backups[0].files, 2);
  });

  test('restore, ls, cat and verify of it fail with one line naming it', async () => {
    failsCleanly(await runCli(['restore', b.id, '--repo', repo, '--target', path.join(work, 'r-header')], { env }), problem);
    failsCleanly(await runCli(['ls', b.id, '--repo', repo], { env }), problem);
    failsCleanly(await runCli(['cat', b.id, 'data/a.txt', '--repo', repo], { env }), problem);
    const v = await runCli(['verify', b.id, '--repo', repo], { env });
    assert.equal(v.code, 1, v.stderr);
    noStack(v);
    assert.match(v.stdout, problem);
    // The hint says what to do about it.
    const r = await runCli(['ls', b.id, '--repo', repo], { env });
    assert.match(r.stderr, new RegExp(`hint: check it with "s3backup verify ${b.id}"; if that backup is lost, delete .* by hand`));
  });

  test('a backup passes it over as its parent (a warning, exit 3) and compares with the one before', async () => {
    const r = await runCli(['backup', src, '--repo', repo, '--no-forget', '--json'], { env });
    assert.equal(r.code, 3, r.stderr);
    noStack(r);
    const doc = json(r.stdout);
    assert.equal(doc.kind, 'incremental');
    assert.equal(doc.parent, a.id);
    assert.equal(doc.unchangedFiles, 2);
    assert.equal(doc.warnings.length, 1);
    assert.match(doc.warnings[0], problem);
    assert.match(doc.warnings[0], /passed over as the parent/);
    // Once a newer backup is its parent, the damaged one is no longer in the way: no warning.
    const next = await runCli(['backup', src, '--repo', repo, '--no-forget', '--json'], { env });
    assert.equal(next.code, 0, next.stderr);
    assert.equal(json(next.stdout).parent, doc.id);
  });

  test('forget keeps it and reports it as damaged; prune refuses while it is there', async () => {
    const f = await runCli(['forget', '--repo', repo, '--keep-last', '1', '--no-prune', '--json'], { env });
    assert.equal(f.code, 3, f.stderr);
    noStack(f);
    const doc = json(f.stdout);
    assert.deepEqual(
      doc.damaged.map((d: any) => d.id),
      [b.id],
    );
    assert.match(doc.damaged[0].error, problem);
    assert.ok(!doc.removed.includes(b.id));
    assert.ok(fs.existsSync(path.join(repo, 'snapshots', `${b.id}.ndjson.zst`)));
    const p = await runCli(['prune', '--repo', repo], { env });
    failsCleanly(p, /prune refused: manifest .* cannot be read \(.*header field "sources" must be an array/);
  });
});

describe('an entry line of the wrong shape (null)', () => {
  const repo = newRepo();
  const store = new LocalStore(repo);
  let a: any;
  const problem = /manifest .*snapshots\/\S+\.ndjson\.zst is damaged: entry 2 must be an object \(it is null\)/;
  before(async () => {
    a = await backup(repo);
    await tamper(store, a.id, (lines) => (lines[3] = 'null'));
  });

  test('restore, ls and cat fail with one line naming it; verify reports it (exit 1)', async () => {
    failsCleanly(await runCli(['restore', a.id, '--repo', repo, '--target', path.join(work, 'r-entry')], { env }), problem);
    failsCleanly(await runCli(['ls', a.id, '--repo', repo], { env }), problem);
    failsCleanly(await runCli(['cat', a.id, 'data/sub/b.txt', '--repo', repo], { env }), problem);
    const v = await runCli(['verify', a.id, '--repo', repo, '--json'], { env });
    assert.equal(v.code, 1, v.stderr);
    noStack(v);
    const doc = json(v.stdout);
    assert.equal(doc.ok, false);
    assert.match(doc.problems.map((p: any) => p.problem).join('\n'), problem);
  });

  test('a backup after it cannot be a layer over it: a full one instead, with a warning naming it; it restores whole', async () => {
    const r = await runCli(['backup', src, '--repo', repo, '--no-forget', '--json'], { env });
    assert.equal(r.code, 3, r.stderr);
    noStack(r);
    const doc = json(r.stdout);
    assert.equal(doc.kind, 'full');
    assert.equal(doc.parent, undefined);
    assert.match(doc.kindReason, /damaged/);
    // Only the full backup's archive is left: the one the abandoned layer had begun was deleted.
    assert.deepEqual(
      fs.readdirSync(path.join(repo, 'archives')).filter((n) => !n.startsWith(a.id)),
      [`${doc.id}.tar.zst`],
    );
    assert.match(doc.warnings.join('\n'), problem);
    assert.equal(doc.files, 2);
    const target = path.join(work, 'r-after-entry');
    const res = await runCli(['restore', doc.id, '--repo', repo, '--target', target], { env });
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(diffTrees(src, path.join(target, 'data')), []);
    const v = await runCli(['verify', doc.id, '--repo', repo, '--deep'], { env });
    assert.equal(v.code, 0, v.stdout);
  });
});

describe('an archive list of the wrong shape (frames as a string)', () => {
  const repo = newRepo();
  const store = new LocalStore(repo);
  let a: any;
  const problem =
    /manifest .*snapshots\/\S+\.ndjson\.zst is damaged: archive list field "archives\[0\]\.frames" must be an array \(it is a string\)/;
  before(async () => {
    a = await backup(repo);
    await tamper(store, a.id, (lines) => editJson(lines, 1, (l) => (l.archives[0].frames = 'x')));
  });

  test('restore, ls, cat and verify of it fail with one line naming it', async () => {
    failsCleanly(await runCli(['restore', a.id, '--repo', repo, '--target', path.join(work, 'r-frames')], { env }), problem);
    failsCleanly(await runCli(['ls', a.id, '--repo', repo], { env }), problem);
    failsCleanly(await runCli(['cat', a.id, 'data/a.txt', '--repo', repo], { env }), problem);
    const v = await runCli(['verify', a.id, '--repo', repo, '--deep'], { env });
    assert.equal(v.code, 1, v.stderr);
    noStack(v);
    assert.match(v.stdout, problem);
  });

  test('a backup falls back to a full one with a warning; prune refuses, naming it', async () => {
    const r = await runCli(['backup', src, '--repo', repo, '--no-forget', '--json'], { env });
    assert.equal(r.code, 3, r.stderr);
    noStack(r);
    const doc = json(r.stdout);
    assert.equal(doc.kind, 'full');
    assert.match(doc.warnings.join('\n'), problem);
    failsCleanly(await runCli(['prune', '--repo', repo], { env }), /prune refused: .*archive list field "archives\[0\]\.frames"/);
  });
});

test('the hand-written entry check is exactly as strict as a zod schema of Entry', () => {
  const good: Entry = {
    path: 'data/a.txt',
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 1.5,
    ctime: 2.5,
    ino: 3,
    size: 6,
    sha256: 'ab',
    archive: 0,
    header: 0,
    offset: 512,
  };
  const values: unknown[] = [
    undefined,
    null,
    'x',
    '',
    0,
    1.5,
    -1,
    true,
    false,
    [],
    {},
    'file',
    'hardlink',
    'socket',
    { 'user.a': 'eA==' },
    { 'user.a': 1 },
    { a: 'x', b: null },
    ['eA=='],
    [[0, 0, 1]],
    [
      [0, 0, 1],
      [1, 5, 2],
    ],
    [[0, 0]],
    [[0, 'a', 1]],
    [[0, 0, 1, 2]],
    [null],
  ];
  let cases = 0;
  for (const base of [good, { path: 'data', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, ctime: 0, ino: 1, size: 0 }]) {
    assert.equal(entryProblem(base), undefined);
    for (const field of [...Object.keys(EntrySchema.shape), 'unknownField']) {
      for (const v of values) {
        const e: Record<string, unknown> = { ...base, [field]: v };
        if (v === undefined) delete e[field];
        const zodOk = EntrySchema.safeParse(e).success;
        assert.equal(
          entryProblem(e) === undefined,
          zodOk,
          `${field} = ${JSON.stringify(v)}: zod says ${zodOk ? 'valid' : 'invalid'}, the check ${entryProblem(e)}`,
        );
        cases++;
      }
    }
  }
  for (const v of [null, 1, 'x', [], [good]]) assert.equal(entryProblem(v) === undefined, EntrySchema.safeParse(v).success);
  assert.ok(cases > 400);
  assert.equal(entryProblem({ ...good, size: '6' }), 'field "size" must be a number (it is a string)');
  assert.equal(
    entryProblem({ ...good, type: 'socket' }),
    'field "type" must be one of "file", "dir", "symlink", "hardlink", "other" (it is "socket")',
  );
  assert.equal(entryProblem({ ...good, changed: null }), 'field "changed" must be true or false (it is null)');
  assert.equal(
    entryProblem({ ...good, xattrs: { 'user.a': 1 } }),
    'field "xattrs" must be an object whose values are strings ("user.a" is a number)',
  );
});

test('LocalManifest: a damaged entry is an IntegrityError naming the manifest, the entry and the field', async () => {
  const repo = newRepo();
  const a = await backup(repo);
  // In the layout before segments (version 2), which LocalManifest reads on its own.
  const { lines } = await expandedLines(new LocalStore(repo), a.id);
  editJson(lines, 0, (h) => (h.version = 2));
  editJson(lines, 3, (e) => (e.mtime = '2026-01-01'));
  const noSegments = () => {
    throw new Error('a manifest of version 2 has no segments');
  };
  const m = await LocalManifest.fromStream(Readable.from([manifestOf(lines)]), 'here/snapshots/X.ndjson.zst', noSegments);
  try {
    await assert.rejects(
      async () => {
        for await (const _ of m.entries());
      },
      (e: unknown) =>
        e instanceof IntegrityError &&
        e.message === 'manifest here/snapshots/X.ndjson.zst is damaged: entry 2 field "mtime" must be a number (it is a string)',
    );
  } finally {
    await m.dispose();
  }
  // Old manifests lack fields added since (bytesTotal, the incremental counters, chain): still read.
  const old = [...lines];
  editJson(old, 3, (e) => (e.mtime = 1));
  editJson(old, 0, (h) => {
    for (const k of ['bytesTotal', 'newFiles', 'changedFiles', 'unchangedFiles', 'deletedFiles']) delete h.stats[k];
    delete h.chain;
    delete h.chainStart;
    h.futureField = { anything: [1, 2] };
  });
  const m2 = await LocalManifest.fromStream(Readable.from([manifestOf(old)]), 'old', noSegments);
  try {
    assert.equal(m2.header.stats.bytesTotal, undefined);
    let n = 0;
    for await (const _ of m2.entries()) n++;
    assert.equal(n, 4);
  } finally {
    await m2.dispose();
  }
});

test('config.json of the wrong shape: named as damaged, with the field; no stack trace', async () => {
  const repo = newRepo();
  await backup(repo);
  const file = path.join(repo, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  fs.writeFileSync(file, JSON.stringify({ ...config, defaults: { ...config.defaults, frameSize: '4MiB' } }));
  const problem = /repository config .*config\.json is damaged: field "defaults\.frameSize" must be a number \(it is a string\)/;
  failsCleanly(await runCli(['backup', src, '--repo', repo], { env }), problem);
  failsCleanly(await runCli(['list', '--repo', repo], { env }), problem);
  fs.writeFileSync(file, JSON.stringify({ ...config, created: 1_700_000_000 }));
  failsCleanly(
    await runCli(['list', '--repo', repo], { env }),
    /config\.json is damaged: field "created" must be a string \(it is a number\)/,
  );
});

describe('encrypted repository: a key file of the wrong shape', () => {
  const repo = newRepo();
  const kenv = { ...env, S3BACKUP_PASSWORD: 'correct horse' };
  before(async () => {
    const r = await runCli(['init', '--repo', repo, '--encrypt', '--scrypt-n', '16384'], { env: kenv });
    assert.equal(r.code, 0, r.stderr);
    const [name] = fs.readdirSync(path.join(repo, 'keys'));
    const key = JSON.parse(fs.readFileSync(path.join(repo, 'keys', name!), 'utf8'));
    // A copy under another id whose "created" is a number, and a KMS key whose "kms" is a string.
    fs.writeFileSync(path.join(repo, 'keys', '0123456789abcdef.json'), JSON.stringify({ ...key, id: '0123456789abcdef', created: 5 }));
    const { kdf: _kdf, ...rest } = key;
    fs.writeFileSync(
      path.join(repo, 'keys', 'fedcba9876543210.json'),
      JSON.stringify({ ...rest, id: 'fedcba9876543210', kind: 'kms', kms: 'x' }),
    );
  });

  test('key list names them as damaged; the repository still opens with its good key', async () => {
    const r = await runCli(['key', 'list', '--repo', repo], { env: kenv });
    noStack(r);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /2 key file\(s\) cannot be read/);
    assert.match(r.stdout, /^1 key\(s\) in /m);
    assert.match(r.stdout, /key file keys\/0123456789abcdef\.json: damaged: field "created" must be a string \(it is a number\)/);
    assert.match(r.stdout, /key file keys\/fedcba9876543210\.json: damaged: field "kms" must be an object \(it is a string\)/);
    const listed = await runCli(['key', 'list', '--repo', repo, '--json'], { env: kenv });
    assert.equal(listed.code, 3);
    const doc = json(listed.stdout);
    assert.equal(doc.ok, false);
    assert.deepEqual(doc.invalid.map((i: any) => i.key).sort(), ['keys/0123456789abcdef.json', 'keys/fedcba9876543210.json']);
    const b = await runCli(['backup', src, '--repo', repo, '--no-forget'], { env: kenv });
    assert.equal(b.code, 0, b.stderr);
    // Without a passphrase: the damaged KMS key is not tried (decoding it would fail in Buffer.from).
    const n = await runCli(['list', '--repo', repo], { env: { ...env, S3BACKUP_PASSWORD: '' } });
    noStack(n);
    assert.equal(n.code, 2, n.stderr);
    assert.match(n.stderr, /its passphrase is needed/);
    assert.doesNotMatch(n.stderr, /KMS key failed/);
  });
});

test('a run record and a history segment of the wrong shape are skipped with a warning naming the field', async () => {
  const repo = newRepo();
  const a = await backup(repo);
  const runs = path.join(repo, 'history', 'runs');
  const [name] = fs.readdirSync(runs);
  const record = JSON.parse(fs.readFileSync(path.join(runs, name!), 'utf8'));
  fs.writeFileSync(
    path.join(runs, '20991231T000000.000Z-deadbeef-h.json'),
    JSON.stringify({ ...record, id: '20991231T000000.000Z-deadbeef', sources: [5] }),
  );
  const segments = path.join(repo, 'history', 'segments');
  fs.mkdirSync(segments, { recursive: true });
  const seg = [
    { ...record, id: '20991231T000000.000Z-0000000a' },
    { ...record, id: '20991231T000000.000Z-0000000b', extensions: { txt: 'many' } },
  ];
  fs.writeFileSync(path.join(segments, 'x_y-00000000.ndjson.zst'), zlib.zstdCompressSync(seg.map((r) => JSON.stringify(r)).join('\n')));
  const r = await runCli(['history', '--repo', repo, '--json'], { env });
  noStack(r);
  assert.equal(r.code, 3, r.stderr);
  const doc = json(r.stdout);
  assert.deepEqual(
    doc.runs.map((x: any) => x.id),
    [a.id],
  );
  const w = doc.warnings.join('\n');
  assert.match(
    w,
    /20991231T000000\.000Z-deadbeef-h\.json is not a valid run record \(field "sources\[0\]" must be a string \(it is a number\)\); skipped/,
  );
  assert.match(
    w,
    /segment .*x_y-00000000\.ndjson\.zst has 1 unreadable line\(s\) \(record 2: field "extensions\.txt" must be a number \(it is a string\)\); skipped/,
  );
});

test('a lock of the wrong shape counts as a damaged lock (exclusive while it is young), named as such', async () => {
  const repo = newRepo();
  await backup(repo);
  const id = '20261126T101500.123Z-1a2b3c4d';
  const lock = {
    format: 's3backup-lock',
    id,
    host: 'elsewhere',
    pid: 4242,
    user: ['root'],
    command: 'backup',
    exclusive: false,
    time: new Date().toISOString(),
    expires: new Date(Date.now() + 3_600_000).toISOString(),
  };
  fs.mkdirSync(path.join(repo, 'locks'), { recursive: true });
  fs.writeFileSync(path.join(repo, 'locks', `${id}.json`), JSON.stringify(lock));
  const problem = new RegExp(`locks/${id.replace(/\./g, '\\.')}\\.json \\(damaged: field "user" must be a string \\(it is an array\\)`);
  // (prune, not backup: a backup would wait five minutes for the lock to go.)
  failsCleanly(await runCli(['prune', '--repo', repo], { env }), problem);
  const u = await runCli(['unlock', '--repo', repo, '--json'], { env });
  assert.equal(u.code, 0, u.stderr);
  const doc = json(u.stdout);
  assert.equal(doc.kept.length, 1);
  assert.equal(doc.kept[0].error, 'field "user" must be a string (it is an array)');
  assert.equal(doc.kept[0].user, undefined);
});

describe('S3: a manifest header of the wrong shape', () => {
  let bucket: string;
  before(async () => {
    bucket = await createTestBucket('damaged');
  });
  after(async () => {
    if (bucket) await deleteTestBucket(bucket);
  });

  test('list exits 3 naming it and lists the other; a backup passes it over with a warning', async () => {
    const s3env = { ...env, ...s3CliEnv() };
    const repo = `s3://${bucket}/team`;
    const a = await backup(repo, [], s3env);
    const b = await backup(repo, [], s3env);
    const store = testS3Store(bucket, 'team');
    try {
      await tamper(
        store,
        b.id,
        header((h) => (h.stats = { files: 'many' })),
      );
    } finally {
      await store.close();
    }
    const problem = new RegExp(
      `manifest s3://${bucket}/team/snapshots/${b.id.replace(/\./g, '\\.')}\\.ndjson\\.zst is damaged: header field "stats\\.files" must be a number \\(it is a string\\)`,
    );
    const r = await runCli(['list', '--repo', repo, '--json'], { env: s3env });
    assert.equal(r.code, 3, r.stderr);
    noStack(r);
    const doc = json(r.stdout);
    assert.equal(doc.backups[0].id, a.id);
    assert.equal(doc.backups[0].files, 2);
    assert.match(doc.backups[1].error, problem);
    const c = await runCli(['backup', src, '--repo', repo, '--no-forget', '--json'], { env: s3env });
    assert.equal(c.code, 3, c.stderr);
    const cd = json(c.stdout);
    assert.equal(cd.parent, a.id);
    assert.match(cd.warnings.join('\n'), problem);
  });
});
