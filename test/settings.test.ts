// The settings declaration form (src/config/settings.ts, src/cli/settings.ts): each setting is
// declared once and its flag, config file key, environment variable and default all come from
// that declaration; and --repo located once (src/store/open.ts locateRepository).
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { Command, CommanderError } from 'commander';
import { ArchiveSettings, DEFAULT_ARCHIVE_SIZE } from '../src/config/archive-settings.ts';
import { ConfigSchema } from '../src/config/config.ts';
import { CostSettings } from '../src/config/cost-settings.ts';
import { declaredSettings, envValues, fileSection, resolveSettings } from '../src/config/settings.ts';
import { StoreSettings } from '../src/config/store-settings.ts';
import { addSettingOptions, flagValues, settingOptions } from '../src/cli/settings.ts';
import { costSettingsOf } from '../src/cost/settings.ts';
import { UsageError } from '../src/errors.ts';
import { bucketLocation, isPathLocation, locateRepository, readOnlyLocation } from '../src/store/open.ts';

/** Parse `argv` with the flags of `feature` on a bare command; a parse error is thrown as is. */
function parseFlags(feature: Parameters<typeof addSettingOptions>[1], argv: string[]): Record<string, unknown> {
  const cmd = addSettingOptions(new Command('t').exitOverride().configureOutput({ writeErr: () => {} }), feature);
  cmd.parse(argv, { from: 'user' });
  return cmd.opts();
}

describe('declarations', () => {
  test('every feature field is a config file key, and every declared flag is a distinct option', () => {
    const keys = Object.keys(ConfigSchema.shape);
    const flags = new Set<string>();
    for (const feature of [StoreSettings, ArchiveSettings]) {
      for (const s of declaredSettings(feature)) {
        assert.ok(keys.includes(s.key), `${s.key} is a config key`);
        assert.ok(s.meta.flag && s.meta.help, `${s.key} declares its flag and help`);
        assert.ok(!flags.has(s.meta.flag), `${s.meta.flag} declared once`);
        flags.add(s.meta.flag);
      }
    }
    assert.deepEqual(Object.keys(CostSettings.shape), Object.keys(fileSection(CostSettings).shape));
  });

  test('enum choices and defaults come from the zod schema', () => {
    const byKey = Object.fromEntries(declaredSettings(ArchiveSettings).map((s) => [s.key, s]));
    assert.deepEqual(byKey.compression?.choices, ['zstd', 'gzip', 'none']);
    assert.equal(byKey.archiveSize?.default, DEFAULT_ARCHIVE_SIZE);
    assert.equal(byKey.level?.default, undefined, "the level's default depends on the codec");
    assert.deepEqual(settingOptions(StoreSettings).sse.argChoices, ['AES256', 'aws:kms']);
    assert.equal(Object.fromEntries(declaredSettings(CostSettings).map((s) => [s.key, s.default])).months, 12);
  });
});

describe('config file section', () => {
  test('has no defaults (a default must not hide the environment) and refuses unknown keys', () => {
    assert.deepEqual(fileSection(CostSettings).parse({}), {});
    assert.deepEqual(fileSection(ArchiveSettings).parse({}), {});
    assert.equal(fileSection(CostSettings).safeParse({ monthz: 12 }).success, false);
  });

  test('an archive size is validated once and held as bytes', () => {
    assert.deepEqual(fileSection(ArchiveSettings).parse({ archiveSize: '2 MiB' }), { archiveSize: 2 << 20 });
    const bad = fileSection(ArchiveSettings).safeParse({ archiveSize: '1000' });
    assert.equal(bad.success, false);
    assert.match(bad.error!.issues[0]!.message, /^must be from 1 MiB to 1 TiB, not 1000$/);
  });
});

describe('flags', () => {
  test('parsed by the declared parser, whose errors name the flag', () => {
    assert.equal(parseFlags(ArchiveSettings, ['--archive-size', '4GiB']).archiveSize, 4 * 2 ** 30);
    assert.throws(() => parseFlags(ArchiveSettings, ['--level', '25']), (e: unknown) => e instanceof UsageError && e.message === '--level must be a whole number from 1 to 19, not 25');
    assert.throws(() => parseFlags(CostSettings, ['--months', '5']), (e: unknown) => e instanceof UsageError && e.message === '--months must be a whole number from 12 to 120, not "5"');
    assert.throws(() => parseFlags(ArchiveSettings, ['--compression', 'lz4']), (e: unknown) => e instanceof CommanderError && /Allowed choices are zstd, gzip, none/.test(e.message));
  });

  test('read back by setting key, whatever the flag is called', () => {
    assert.deepEqual(flagValues(StoreSettings, parseFlags(StoreSettings, ['--repo', 's3://b/p', '--sse', 'AES256'])), { repository: 's3://b/p', sse: 'AES256' });
    assert.deepEqual(flagValues(CostSettings, parseFlags(CostSettings, ['--price-region', 'eu-west-1'])), { region: 'eu-west-1' });
    assert.deepEqual(flagValues(CostSettings, parseFlags(CostSettings, [])), {});
  });
});

describe('resolveSettings: flag > environment > config file > default', () => {
  test('each setting from the highest layer that gives it', () => {
    const file = { months: 24, prices: 'file.json', saveCsv: 'file.csv' };
    assert.deepEqual(resolveSettings(CostSettings, { flags: { prices: 'flag.json' }, file }), { months: 24, prices: 'flag.json', saveCsv: 'file.csv' });
    assert.deepEqual(resolveSettings(CostSettings, {}), { months: 12 });
    assert.equal(resolveSettings(ArchiveSettings, {}).archiveSize, DEFAULT_ARCHIVE_SIZE);
  });

  test('the environment sits between flags and the file; an empty variable is unset', () => {
    const env = { S3BACKUP_REPO: 's3://env/p', AWS_ENDPOINT_URL_S3: '', S3BACKUP_STALL_TIMEOUT: '90s' };
    assert.deepEqual(envValues(StoreSettings, env), { repository: 's3://env/p', stallTimeout: '90s' });
    const r = resolveSettings(StoreSettings, { flags: { stallTimeout: '2min' }, env, file: { repository: 's3://file', endpoint: 'http://file:1' } });
    assert.deepEqual(r, { repository: 's3://env/p', endpoint: 'http://file:1', stallTimeout: '2min' });
  });

  test('cost: one reading for the cost command, the schedule and the dashboard', () => {
    const c = costSettingsOf({ cost: { months: 36 }, region: 'eu-west-1', keep: { last: 3 }, configFile: '/etc/s.yaml' }, { saveCsv: 'x.csv' }, {});
    assert.deepEqual([c.months, c.saveCsv, c.region, c.policy, c.policySource], [36, 'x.csv', 'eu-west-1', { last: 3 }, '"keep" in /etc/s.yaml']);
    assert.equal(c.pricesFor('eu-west-1').region, 'eu-west-1');
    const d = costSettingsOf({}, { region: 'us-west-2' }, { AWS_REGION: 'eu-central-1' });
    assert.deepEqual([d.months, d.region, d.policy, d.policySource], [12, 'us-west-2', undefined, 'the default']);
    assert.equal(costSettingsOf({}, {}, { AWS_REGION: 'eu-central-1' }).region, 'eu-central-1');
  });
});

describe('locateRepository: --repo parsed once, with its store options', () => {
  test('an S3 location carries the S3 settings; a bucket of the same server keeps only the connection', () => {
    const loc = locateRepository('s3://bkt/team/a', { endpoint: 'http://127.0.0.1:7480', region: 'r', profile: 'p', sse: 'aws:kms', sseKmsKeyId: 'k', stallTimeout: '90s' });
    assert.deepEqual(loc, {
      kind: 's3',
      bucket: 'bkt',
      prefix: 'team/a',
      options: { endpoint: 'http://127.0.0.1:7480', region: 'r', profile: 'p', sse: 'aws:kms', sseKmsKeyId: 'k', stallTimeoutMs: 90_000 },
    });
    assert.deepEqual(bucketLocation(loc, 'inventory'), { kind: 's3', bucket: 'inventory', prefix: '', options: { endpoint: 'http://127.0.0.1:7480', region: 'r', profile: 'p' } });
    const ro = readOnlyLocation(loc);
    assert.ok(ro.kind === 's3' && ro.options.sse === undefined && ro.options.sseKmsKeyId === undefined && ro.options.stallTimeoutMs === 90_000);
  });

  test('a path is a local location; bad combinations are usage errors before anything is contacted', () => {
    assert.deepEqual(locateRepository('rel/repo', {}), { kind: 'local', path: path.resolve('rel/repo') });
    assert.throws(() => locateRepository('/srv/repo', { sse: 'AES256' }), (e: unknown) => e instanceof UsageError && /--sse AES256 applies to S3 repositories; \/srv\/repo is a local directory/.test(e.message));
    assert.throws(() => locateRepository('s3://b', { sseKmsKeyId: 'k' }), (e: unknown) => e instanceof UsageError && e.message === '--sse-kms-key-id needs --sse aws:kms');
    assert.throws(() => locateRepository('s3://b', { stallTimeout: '0' }), (e: unknown) => e instanceof UsageError && /^--stall-timeout must be more than 0/.test(e.message));
    assert.throws(() => locateRepository('s3//b/x', {}), (e: unknown) => e instanceof UsageError && /did you mean s3:\/\/b\/x/.test(e.message));
  });

  test('isPathLocation: what the config file rebases on its directory', () => {
    for (const p of ['repo', '../repo', '/abs', 'C:\\x', 'name:with-colon', 's3-data']) assert.equal(isPathLocation(p), true, p);
    for (const u of ['s3://b', 'S3://b/p', 'file:///x', 'gs://b', 's3//b', 's3:b', 'file:/x', 'http//host']) assert.equal(isPathLocation(u), false, u);
  });
});
