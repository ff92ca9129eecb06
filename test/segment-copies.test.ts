// An incremental backup copies the parent's entry segments whose entries did not change, without
// serializing or hashing them (SegmentWriter, src/repo/segments.ts): what it writes must be
// exactly what writing every entry anew gives. Checked by reading each backup's entries back and
// cutting them into segments again from scratch: the same ids, first paths and counts, and
// nothing new to store.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { runBackup } from '../src/backup/backup.ts';
import type { Entry } from '../src/repo/manifest.ts';
import { ENTRIES, Repository } from '../src/repo/repository.ts';
import { SegmentWriter } from '../src/repo/segments.ts';
import { runRestore } from '../src/restore/restore.ts';
import { LocalStore } from '../src/store/local.ts';
import type { Store } from '../src/store/store.ts';
import { diffTrees, tempDir } from './helpers/tree.ts';

const work = tempDir('segment-copies');
after(() => fs.rmSync(work, { recursive: true, force: true }));

/** 40 directories of 200 files, some symlinks, a hard link pair: ~8,100 entries, several segments. */
function makeTree(root: string): void {
  for (let d = 0; d < 40; d++) {
    const dir = path.join(root, `d${String(d).padStart(2, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 200; f++) fs.writeFileSync(path.join(dir, `f${f}.txt`), `directory ${d} file ${f}\n`.repeat(1 + (f % 5)));
    fs.symlinkSync(`f${d}.txt`, path.join(dir, 'link'));
  }
  fs.linkSync(path.join(root, 'd05', 'f1.txt'), path.join(root, 'd05', 'hard'));
}

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'ignore' });
const setfattr = (file: string, name: string, value: string) => sh('setfattr', ['-h', '-n', name, '-v', value, file]);

async function segmentKeys(store: Store): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const o of store.list(ENTRIES)) out.add(o.key);
  return out;
}

/** The backup's entries cut into segments again, every one serialized and hashed: its refs and how many it would store. */
async function rewritten(repo: Repository, id: string): Promise<{ refs: unknown; stored: number; expected: unknown }> {
  const manifest = await repo.loadManifest(id);
  try {
    const refs = manifest.segments!.refs;
    const writer = new SegmentWriter(repo.segmentStore(), new Set(refs.map(([s]) => s)), (i) => manifest.archives[i]!.key);
    const entries: Entry[] = [];
    for await (const e of manifest.entries()) entries.push(e);
    for (const e of entries) await writer.add(e);
    await writer.finish();
    return { refs: writer.refs, stored: writer.written, expected: refs };
  } finally {
    await manifest.dispose();
  }
}

test('segments copied from the parent are those writing every entry anew gives, through changes that move the cuts', async () => {
  const src = path.join(work, 'src');
  makeTree(src);
  setfattr(path.join(src, 'd10'), 'user.note', 'a directory with attributes');
  setfattr(path.join(src, 'd10', 'f3.txt'), 'user.note', 'a file with attributes');
  const store = new LocalStore(path.join(work, 'repo'));
  const first = await runBackup({ store, sources: [src] });
  const repo = await Repository.open(store);
  const firstRefs = (await rewritten(repo, first.id)).expected as unknown[];
  assert.ok(firstRefs.length >= 4, `several segments: ${firstRefs.length}`);

  // Nothing changed: the parent's segments, all of them, and none stored.
  const before = await segmentKeys(store);
  const same = await runBackup({ store, sources: [src] });
  assert.equal(same.unchangedFiles, first.files);
  const sameCheck = await rewritten(repo, same.id);
  assert.deepEqual(sameCheck.expected, firstRefs);
  assert.deepEqual(sameCheck.refs, sameCheck.expected);
  assert.deepEqual(await segmentKeys(store), before);

  // Changes all over: a file in the middle of a segment, a new directory of 600 files (new
  // cuts), a deletion, a directory's mode, a symlink's target, attributes, a second hard link.
  fs.appendFileSync(path.join(src, 'd20', 'f100.txt'), 'changed\n');
  fs.mkdirSync(path.join(src, 'd07-new'));
  for (let f = 0; f < 600; f++) fs.writeFileSync(path.join(src, 'd07-new', `n${f}.txt`), `new ${f}\n`);
  fs.rmSync(path.join(src, 'd30', 'f150.txt'));
  fs.chmodSync(path.join(src, 'd33'), 0o750);
  fs.rmSync(path.join(src, 'd36', 'link'));
  fs.symlinkSync('elsewhere', path.join(src, 'd36', 'link'));
  setfattr(path.join(src, 'd10', 'f3.txt'), 'user.note', 'changed attributes');
  fs.linkSync(path.join(src, 'd05', 'f1.txt'), path.join(src, 'd05', 'hard2'));
  const changed = await runBackup({ store, sources: [src] });
  assert.equal(changed.newFiles, 600);
  assert.equal(changed.deletedFiles, 1);
  const check = await rewritten(repo, changed.id);
  assert.deepEqual(check.refs, check.expected);
  assert.equal(check.stored, 0);
  // Some segments are the parent's, some are not.
  const parentIds = new Set(firstRefs.map((r) => (r as [string])[0]));
  const ids = (check.expected as [string][]).map(([s]) => s);
  assert.ok(ids.some((s) => parentIds.has(s)) && ids.some((s) => !parentIds.has(s)), 'both copied and new segments');

  // And it restores as the tree is.
  const target = tempDir('segment-copies-restore');
  await runRestore({ store, snapshot: changed.id, target });
  assert.deepEqual(diffTrees(src, path.join(target, 'src')), []);
});
