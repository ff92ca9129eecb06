// A listed backup always restores: the CLI as users run it, against Ceph through a
// fault-injecting proxy (test/helpers/fault-proxy.ts). Each test injects one kind of fault
// where it hurts (the manifest's commit, a manifest read during prune, a body cut mid-way, a
// server gone silent), then checks the repository directly against Ceph, without the proxy:
// every listed backup verifies deeply and restores byte-exact.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, s3TestConfig, testS3Client } from './helpers/s3.ts';
import { type CliResult, diffTrees, isolatedEnv, json, pseudoRandom, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('commit');
const home = path.join(work, 'home');
let bucket = '';
let proxy: FaultProxy;

before(async () => {
  bucket = await createTestBucket('commit-safety');
  proxy = await startFaultProxy({ upstream: s3TestConfig().endpoint, seed: 20 });
});
after(async () => {
  await proxy?.close();
  if (bucket) await deleteTestBucket(bucket);
  fs.rmSync(work, { recursive: true, force: true });
});

/** A source tree of a few files, one spanning several frames and a multipart upload. */
function makeSource(dir: string, seed: number): void {
  fs.mkdirSync(path.join(dir, 'docs'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'hello.txt'), `hello ${seed}\n`);
  fs.writeFileSync(path.join(dir, 'docs', 'notes.md'), '# notes\n'.repeat(5000));
  fs.writeFileSync(path.join(dir, 'big.bin'), pseudoRandom(9 << 20, seed)); // two 8 MiB parts
  fs.writeFileSync(path.join(dir, 'log.txt'), 'line of log\n'.repeat(20000));
}

/** One repository, reached through the proxy or directly. */
class Repo {
  readonly prefix: string;
  constructor(prefix: string) {
    this.prefix = prefix;
  }

  get url(): string {
    return `s3://${bucket}/${this.prefix}`;
  }

  run(args: string[], opts: { direct?: boolean; stall?: string } = {}): Promise<CliResult & { ms: number }> {
    const env = isolatedEnv(home, {
      ...s3CliEnv(),
      AWS_ENDPOINT_URL_S3: opts.direct ? s3TestConfig().endpoint : proxy.url,
      S3BACKUP_STALL_TIMEOUT: opts.stall ?? '20s',
    });
    const t0 = performance.now();
    return runCli([...args, '--repo', this.url], { env }).then((r) => ({ ...r, ms: performance.now() - t0 }));
  }

  /** Objects under the repository, straight from Ceph. */
  async keys(under: string): Promise<string[]> {
    const c = testS3Client();
    try {
      const r = await c.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${this.prefix}/${under}` }));
      return (r.Contents ?? []).map((o) => o.Key!.slice(this.prefix.length + 1)).sort();
    } finally {
      c.destroy();
    }
  }

  async deleteObject(key: string): Promise<void> {
    const c = testS3Client();
    try {
      await c.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${this.prefix}/${key}` }));
    } finally {
      c.destroy();
    }
  }

  /**
   * Straight against Ceph: every listed backup verifies deeply and restores byte-exact to the
   * tree it was taken of (sources: backup id → a copy of the source as it was then).
   */
  async assertEveryBackupRestores(sources: Map<string, string>): Promise<string[]> {
    const list = await this.run(['list', '--json'], { direct: true });
    assert.equal(list.code, 0, `list: ${list.stderr}`);
    const ids: string[] = json(list.stdout).backups.map((b: { id: string; broken: boolean }) => {
      assert.equal(b.broken, false, `backup ${b.id} is listed as broken`);
      return b.id;
    });
    for (const id of ids) {
      const v = await this.run(['verify', id, '--deep'], { direct: true });
      assert.equal(v.code, 0, `verify --deep ${id}: ${v.stdout}${v.stderr}`);
      const target = fs.mkdtempSync(path.join(work, 'restore-'));
      const r = await this.run(['restore', id, '--target', target], { direct: true });
      assert.equal(r.code, 0, `restore ${id}: ${r.stderr}`);
      const src = sources.get(id);
      assert.ok(src, `backup ${id} is listed, but no run of this test said it made it`);
      assert.deepEqual(diffTrees(src, path.join(target, 'data')), [], `backup ${id} restores byte-exact`);
      fs.rmSync(target, { recursive: true, force: true });
    }
    return ids;
  }
}

/** A failed command: one clear line (and a hint), never a stack trace. */
function assertCleanFailure(r: CliResult, what: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0: ${r.stdout}`);
  assert.match(r.stderr, what);
  assert.doesNotMatch(r.stderr, /\n\s+at |unexpected error/, `no stack trace:\n${r.stderr}`);
}

/** A copy of the source as it is now (times kept), for the byte-exact comparison later. */
function freeze(src: string): string {
  const copy = path.join(fs.mkdtempSync(path.join(work, 'frozen-')), 'data');
  execFileSync('cp', ['-a', src, copy]);
  return copy;
}

const MANIFEST_PUT = { method: 'PUT', path: /\/snapshots\/[^/]+\.ndjson\.zst$/, withoutQuery: 'partNumber' } as const;

describe('the manifest commit under lost answers', () => {
  for (const [prefix, name, retries] of [
    ['lost-412', 'the retry gets 412 (it is there now)', undefined],
    ['lost-503', 'every retry gets 503 SlowDown', { kind: 'status', status: 503 }],
    ['lost-all', 'every retry loses its answer too', { kind: 'forward-drop' }],
  ] as const) {
    test(`S3 stores the manifest, the answer is lost, ${name}: the backup succeeds, and so do the incrementals after it`, async () => {
      const repo = new Repo(prefix);
      const src = path.join(work, `src-${repo.prefix}`, 'data');
      makeSource(src, 1);
      const sources = new Map<string, string>();
      const first = proxy.addRule({ ...MANIFEST_PUT, count: { nth: 1 }, action: { kind: 'forward-drop' }, label: 'lost manifest answer' });
      const rest = retries ? proxy.addRule({ ...MANIFEST_PUT, action: retries, label: 'manifest retries' }) : undefined;
      let r;
      try {
        r = await repo.run(['backup', src, '--json']);
      } finally {
        first.remove();
        rest?.remove();
      }
      assert.equal(first.fired, 1, 'the answer was dropped');
      assert.equal(r.code, 0, r.stderr);
      const id = json(r.stdout).id as string;
      sources.set(id, freeze(src));
      // Two more backups on top, without faults: incrementals of it, and all three restore.
      for (let i = 0; i < 2; i++) {
        fs.appendFileSync(path.join(src, 'log.txt'), `more ${i}\n`);
        const next = await repo.run(['backup', src, '--json']);
        assert.equal(next.code, 0, next.stderr);
        const doc = json(next.stdout);
        assert.equal(doc.kind, 'incremental');
        sources.set(doc.id, freeze(src));
      }
      assert.equal((await repo.assertEveryBackupRestores(sources)).length, 3);
    });
  }

  test('the manifest never reached S3: exit 1, nothing listed, the archives stay for prune (which removes them past its grace)', async () => {
    const repo = new Repo('never-stored');
    const src = path.join(work, 'src-never', 'data');
    makeSource(src, 2);
    const rule = proxy.addRule({ ...MANIFEST_PUT, action: { kind: 'reset-before' } });
    let r;
    try {
      r = await repo.run(['backup', src]);
    } finally {
      rule.remove();
    }
    assertCleanFailure(r, /s3backup: error: /);
    assert.ok(rule.fired >= 2, 'the SDK retried the manifest');
    assert.deepEqual(await repo.keys('snapshots/'), []);
    // Once the manifest's write began nothing is deleted: it might have landed.
    const archives = await repo.keys('archives/');
    assert.equal(archives.length, 1, `archives: ${archives.join(', ')}`);
    const list = await repo.run(['list', '--json'], { direct: true });
    assert.deepEqual(json(list.stdout).backups, []);
    const prune = await repo.run(['prune', '--grace', '0', '--json'], { direct: true });
    assert.equal(prune.code, 0, prune.stderr);
    assert.deepEqual(await repo.keys('archives/'), []);
  });

  test('the answer is lost and the manifest cannot be read back either: "may or may not", nothing deleted, and it is a whole backup', async () => {
    const repo = new Repo('unknown');
    const src = path.join(work, 'src-unknown', 'data');
    makeSource(src, 3);
    const frozen = freeze(src);
    const put = proxy.addRule({ ...MANIFEST_PUT, action: { kind: 'forward-drop' } });
    const readBack = proxy.addRule({ method: ['HEAD', 'GET'], path: /\/snapshots\//, action: { kind: 'status', status: 503 } });
    let r;
    try {
      r = await repo.run(['backup', src]);
    } finally {
      put.remove();
      readBack.remove();
    }
    assertCleanFailure(r, /may or may not have been written/);
    assert.match(r.stderr, /hint: .*s3backup list/);
    assert.equal((await repo.keys('snapshots/')).length, 1, 'the manifest is there');
    const list = await repo.run(['list', '--json'], { direct: true });
    const id = json(list.stdout).backups[0].id as string;
    await repo.assertEveryBackupRestores(new Map([[id, frozen]]));
  });
});

describe('a broken chain is never built upon', () => {
  test('a parent whose archive is gone: the next backup is a full one with a warning; list marks the broken one, verify --all names it', async () => {
    const repo = new Repo('broken-parent');
    const src = path.join(work, 'src-broken', 'data');
    makeSource(src, 4);
    const b1 = await repo.run(['backup', src, '--json'], { direct: true });
    assert.equal(b1.code, 0, b1.stderr);
    const id1 = json(b1.stdout).id as string;
    await repo.deleteObject(json(b1.stdout).archiveKey);

    fs.writeFileSync(path.join(src, 'new.txt'), 'new\n');
    const b2 = await repo.run(['backup', src, '--json'], { direct: true });
    assert.equal(b2.code, 3, `a warning, exit 3: ${b2.stderr}`);
    const doc = json(b2.stdout);
    assert.equal(doc.kind, 'full');
    assert.match(doc.warnings.join('\n'), new RegExp(`backup ${id1} is broken \\(archives/.*: archive is missing\\)`));

    const list = await repo.run(['list', '--json'], { direct: true });
    assert.equal(list.code, 3);
    const rows = json(list.stdout).backups;
    assert.deepEqual(
      rows.map((b: { broken: boolean }) => b.broken),
      [true, false],
    );
    assert.equal(rows[0].problems[0].problem, 'archive is missing');
    const human = await repo.run(['list'], { direct: true });
    assert.match(human.stdout, /full BROKEN/);
    assert.match(human.stderr, new RegExp(`backup ${id1} is BROKEN`));

    const all = await repo.run(['verify', '--all', '--json'], { direct: true });
    assert.equal(all.code, 1);
    const v = json(all.stdout);
    assert.equal(v.backups, 2);
    assert.deepEqual(
      v.broken.map((b: { id: string }) => b.id),
      [id1],
    );
    const allHuman = await repo.run(['verify', '--all'], { direct: true });
    assert.match(allHuman.stdout, new RegExp(`1 of 2 backup\\(s\\) .* cannot be fully restored:\\n  ${id1}\\n    archives/`));
  });
});

describe('prune and spurious 404s', () => {
  test('one 404 on a listed manifest: prune reads it again and deletes nothing it references', async () => {
    const repo = new Repo('prune-404');
    const src = path.join(work, 'src-prune', 'data');
    makeSource(src, 5);
    const sources = new Map<string, string>();
    for (let i = 0; i < 2; i++) {
      fs.writeFileSync(path.join(src, 'hello.txt'), `version ${i}\n`);
      const b = await repo.run(['backup', src, '--json', '--full'], { direct: true });
      assert.equal(b.code, 0, b.stderr);
      sources.set(json(b.stdout).id, freeze(src));
    }
    const [first] = [...sources.keys()];
    const once = proxy.addRule({
      method: 'GET',
      path: new RegExp(`/snapshots/${first}`),
      count: { nth: 1 },
      action: { kind: 'status', status: 404 },
    });
    let r;
    try {
      r = await repo.run(['prune', '--grace', '0', '--json']);
    } finally {
      once.remove();
    }
    assert.equal(once.fired, 1);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(json(r.stdout).archives.deleted, []);
    assert.equal((await repo.assertEveryBackupRestores(sources)).length, 2);

    // A manifest that keeps answering 404 while it is listed: prune refuses, deletes nothing.
    const always = proxy.addRule({ method: 'GET', path: new RegExp(`/snapshots/${first}`), action: { kind: 'status', status: 404 } });
    try {
      r = await repo.run(['prune', '--grace', '0']);
    } finally {
      always.remove();
    }
    assertCleanFailure(r, /prune refused: .*\(it is listed, but reading it answers "not found"/);
    assert.equal((await repo.assertEveryBackupRestores(sources)).length, 2);
  });
});

describe('bodies cut mid-way', () => {
  const repo = new Repo('cut');
  const sources = new Map<string, string>();
  let id = '';
  let src = '';
  before(async () => {
    src = path.join(work, 'src-cut', 'data');
    makeSource(src, 6);
    const b = await repo.run(['backup', src, '--json'], { direct: true });
    assert.equal(b.code, 0, b.stderr);
    id = json(b.stdout).id;
    sources.set(id, freeze(src));
  });

  for (const kind of ['reset-mid-body', 'truncate'] as const) {
    test(`one ${kind} on every kind of download: restore, ls, cat, verify --deep, list, forget, prune complete`, async () => {
      const commands: string[][] = [
        ['restore', id, '--target', path.join(work, `cut-${kind}`)],
        ['ls', id],
        ['cat', id, 'data/big.bin'],
        ['verify', id, '--deep'],
        ['list'],
        ['forget', '--keep-last', '5'],
        ['prune', '--grace', '0'],
      ];
      for (const args of commands) {
        // The first GET of each kind of object this command reads is cut half-way.
        const rules = ['/archives/', '/snapshots/', '/config.json', '/history/'].map((p) =>
          proxy.addRule({ method: 'GET', path: new RegExp(p), count: { first: 1 }, action: { kind, fraction: 0.5 } }),
        );
        let r;
        try {
          r = await repo.run(args);
        } finally {
          for (const rule of rules) rule.remove();
        }
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
        assert.ok(
          rules.some((x) => x.fired > 0),
          `${args[0]}: a body was cut`,
        );
        if (args[0] === 'cat') assert.ok(r.stdout.length > 0);
      }
      assert.deepEqual(diffTrees(src, path.join(work, `cut-${kind}`, 'data')), []);
    });
  }

  test('a download cut every time: exit 1, "lost the connection" naming the endpoint and the object, no stack trace', async () => {
    const rule = proxy.addRule({ method: 'GET', path: /\/archives\//, action: { kind: 'reset-mid-body', fraction: 0.3 } });
    let r;
    try {
      r = await repo.run(['restore', id, '--target', path.join(work, 'cut-always')]);
    } finally {
      rule.remove();
    }
    assertCleanFailure(
      r,
      new RegExp(`lost the connection to S3 endpoint ${proxy.url.replace(/[.]/g, '\\.')} while reading s3://${bucket}/cut/archives/`),
    );
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stderr, /cannot write/);
  });
});

describe('a server gone silent', () => {
  test('everything stalls: the backup gives up after --stall-timeout plus its cleanup budget, exit 1, one line', async () => {
    const repo = new Repo('silent');
    const src = path.join(work, 'src-silent', 'data');
    makeSource(src, 7);
    const ok = await repo.run(['backup', src], { direct: true });
    assert.equal(ok.code, 0, ok.stderr);
    const rule = proxy.addRule({ action: { kind: 'stall' } });
    let r;
    try {
      r = await repo.run(['backup', src], { stall: '3s' });
    } finally {
      rule.remove();
    }
    assertCleanFailure(r, /no answer from S3 endpoint .* for 3 s; giving up/);
    assert.equal(r.code, 1);
    // 3 s of silence, at most 1.5 s of cleanup, and the CLI's start-up (a second or two on a
    // busy machine). Without the one bound, each request would make its 5 attempts of 1.5 s,
    // and every cleanup step its own.
    assert.ok(r.ms < 12_000, `took ${Math.round(r.ms)} ms`);
  });

  test('--stall-timeout must be a duration above 0: a usage error before anything is contacted', async () => {
    const repo = new Repo('stall-flag');
    for (const [value, message] of [
      ['0', /--stall-timeout must be more than 0, not "0"/],
      ['5m', /--stall-timeout: "5m" is not a duration[\s\S]*hint: write 5min for minutes/],
      ['soon', /--stall-timeout: "soon" is not a duration/],
    ] as const) {
      const before = proxy.counters.requests;
      const r = await repo.run(['list', '--stall-timeout', value]);
      assert.equal(r.code, 2, r.stderr);
      assertCleanFailure(r, message);
      assert.equal(proxy.counters.requests, before, 'nothing was sent to S3');
    }
  });

  test('a restore whose download goes silent half-way ends with a clear message', async () => {
    const repo = new Repo('silent-restore');
    const src = path.join(work, 'src-silent-restore', 'data');
    makeSource(src, 8);
    const ok = await repo.run(['backup', src], { direct: true });
    assert.equal(ok.code, 0, ok.stderr);
    const rule = proxy.addRule({ method: 'GET', path: /\/archives\//, action: { kind: 'stall-mid-body', fraction: 0.4 } });
    let r;
    try {
      r = await repo.run(['restore', 'latest', '--target', path.join(work, 'silent-target')], { stall: '3s' });
    } finally {
      rule.remove();
    }
    assertCleanFailure(r, /no answer from S3 endpoint|lost the connection to S3 endpoint/);
    assert.equal(r.code, 1);
    assert.ok(r.ms < 30_000, `took ${Math.round(r.ms)} ms`);
  });
});
