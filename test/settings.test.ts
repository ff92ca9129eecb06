// The settings declaration form (src/config/settings.ts, src/cli/settings.ts): each setting is
// declared once and its flag, config file key, environment variable and default all come from
// that declaration; and --repo located once (src/store/open.ts locateRepository).
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { Command, CommanderError } from 'commander';
import type { z } from 'zod';
import { ArchiveSettings, DEFAULT_ARCHIVE_SIZE } from '../src/config/archive-settings.ts';
import { ConfigSchema } from '../src/config/config.ts';
import { CostSettings } from '../src/config/cost-settings.ts';
import { BackupSettings, FullBackupSettings, ObjectLockSettings } from '../src/config/backup-settings.ts';
import { CommonSettings } from '../src/config/common-settings.ts';
import { DashboardSettings } from '../src/config/dashboard-settings.ts';
import { KeepSettings } from '../src/config/keep-settings.ts';
import { MetricsPublishSettings, NotificationSettings } from '../src/config/notify-settings.ts';
import { ScheduleSettings } from '../src/config/schedule-settings.ts';
import { declaredSettings, envValues, fileSection, type FlagOptions, resolveSettings } from '../src/config/settings.ts';
import { StoreSettings } from '../src/config/store-settings.ts';
import { type CommonOpts, withCommon } from '../src/cli/common.ts';
import { addSettingOptions, flagValues, settingOptions } from '../src/cli/settings.ts';
import { costSettingsOf } from '../src/cost/settings.ts';
import { UsageError } from '../src/errors.ts';
import { bucketLocation, isPathLocation, locateRepository, readOnlyLocation } from '../src/store/open.ts';

/** Parse `argv` with the flags of `feature` on a bare command; a parse error is thrown as is. */
function parseFlags<F extends z.ZodObject>(feature: F, argv: string[]): FlagOptions<F> {
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
    assert.throws(
      () => parseFlags(ArchiveSettings, ['--level', '25']),
      (e: unknown) => e instanceof UsageError && e.message === '--level must be a whole number from 1 to 19, not 25',
    );
    assert.throws(
      () => parseFlags(CostSettings, ['--months', '5']),
      (e: unknown) => e instanceof UsageError && e.message === '--months must be a whole number from 12 to 120, not "5"',
    );
    assert.throws(
      () => parseFlags(ArchiveSettings, ['--compression', 'lz4']),
      (e: unknown) => e instanceof CommanderError && /Allowed choices are zstd, gzip, none/.test(e.message),
    );
  });

  test('read back by setting key, whatever the flag is called', () => {
    assert.deepEqual(flagValues(StoreSettings, parseFlags(StoreSettings, ['--repo', 's3://b/p', '--sse', 'AES256'])), {
      repository: 's3://b/p',
      sse: 'AES256',
    });
    assert.deepEqual(flagValues(CostSettings, parseFlags(CostSettings, ['--price-region', 'eu-west-1'])), { region: 'eu-west-1' });
    assert.deepEqual(flagValues(CostSettings, parseFlags(CostSettings, [])), {});
  });
});

describe('resolveSettings: flag > environment > config file > default', () => {
  test('each setting from the highest layer that gives it', () => {
    const file = { months: 24, prices: 'file.json', saveCsv: 'file.csv' };
    assert.deepEqual(resolveSettings(CostSettings, { flags: { prices: 'flag.json' }, file }), {
      months: 24,
      prices: 'flag.json',
      saveCsv: 'file.csv',
    });
    assert.deepEqual(resolveSettings(CostSettings, {}), { months: 12 });
    assert.equal(resolveSettings(ArchiveSettings, {}).archiveSize, DEFAULT_ARCHIVE_SIZE);
  });

  test('the environment sits between flags and the file; an empty variable is unset', () => {
    const env = { S3BACKUP_REPO: 's3://env/p', AWS_ENDPOINT_URL_S3: '', S3BACKUP_STALL_TIMEOUT: '90s' };
    assert.deepEqual(envValues(StoreSettings, env), { repository: 's3://env/p', stallTimeout: '90s' });
    const r = resolveSettings(StoreSettings, {
      flags: { stallTimeout: '2min' },
      env,
      file: { repository: 's3://file', endpoint: 'http://file:1' },
    });
    assert.deepEqual(r, { repository: 's3://env/p', endpoint: 'http://file:1', stallTimeout: '2min' });
  });

  test('cost: one reading for the cost command, the schedule and the dashboard', () => {
    const c = costSettingsOf(
      { cost: { months: 36 }, region: 'eu-west-1', keep: { last: 3 }, configFile: '/etc/s.yaml' },
      { saveCsv: 'x.csv' },
      {},
    );
    assert.deepEqual(
      [c.months, c.saveCsv, c.region, c.policy, c.policySource],
      [36, 'x.csv', 'eu-west-1', { last: 3 }, '"keep" in /etc/s.yaml'],
    );
    assert.equal(c.pricesFor('eu-west-1').region, 'eu-west-1');
    const d = costSettingsOf({}, { region: 'us-west-2' }, { AWS_REGION: 'eu-central-1' });
    assert.deepEqual([d.months, d.region, d.policy, d.policySource], [12, 'us-west-2', undefined, 'the default']);
    assert.equal(costSettingsOf({}, {}, { AWS_REGION: 'eu-central-1' }).region, 'eu-central-1');
  });
});

describe('locateRepository: --repo parsed once, with its store options', () => {
  test('an S3 location carries the S3 settings; a bucket of the same server keeps all but SSE', () => {
    const loc = locateRepository('s3://bkt/team/a', {
      endpoint: 'http://127.0.0.1:7480',
      region: 'r',
      profile: 'p',
      sse: 'aws:kms',
      sseKmsKeyId: 'k',
      stallTimeout: '90s',
    });
    assert.deepEqual(loc, {
      kind: 's3',
      bucket: 'bkt',
      prefix: 'team/a',
      options: { endpoint: 'http://127.0.0.1:7480', region: 'r', profile: 'p', sse: 'aws:kms', sseKmsKeyId: 'k', stallTimeoutMs: 90_000 },
    });
    // Read only, as the cost job's location: the same server, credentials and stall timeout, no SSE.
    assert.deepEqual(bucketLocation(loc, 'inventory'), {
      kind: 's3',
      bucket: 'inventory',
      prefix: '',
      options: {
        endpoint: 'http://127.0.0.1:7480',
        region: 'r',
        profile: 'p',
        sse: undefined,
        sseKmsKeyId: undefined,
        stallTimeoutMs: 90_000,
      },
    });
    const ro = readOnlyLocation(loc);
    assert.ok(
      ro.kind === 's3' && ro.options.sse === undefined && ro.options.sseKmsKeyId === undefined && ro.options.stallTimeoutMs === 90_000,
    );
  });

  test('a path is a local location; bad combinations are usage errors before anything is contacted', () => {
    assert.deepEqual(locateRepository('rel/repo', {}), { kind: 'local', path: path.resolve('rel/repo') });
    assert.throws(
      () => locateRepository('/srv/repo', { sse: 'AES256' }),
      (e: unknown) =>
        e instanceof UsageError && /--sse AES256 applies to S3 repositories; \/srv\/repo is a local directory/.test(e.message),
    );
    assert.throws(
      () => locateRepository('s3://b', { sseKmsKeyId: 'k' }),
      (e: unknown) => e instanceof UsageError && e.message === '--sse-kms-key-id needs --sse aws:kms',
    );
    assert.throws(
      () => locateRepository('s3://b', { stallTimeout: '0' }),
      (e: unknown) => e instanceof UsageError && /^--stall-timeout must be more than 0/.test(e.message),
    );
    assert.throws(
      () => locateRepository('s3//b/x', {}),
      (e: unknown) => e instanceof UsageError && /did you mean s3:\/\/b\/x/.test(e.message),
    );
  });

  test('isPathLocation: what the config file rebases on its directory', () => {
    for (const p of ['repo', '../repo', '/abs', 'C:\\x', 'name:with-colon', 's3-data']) assert.equal(isPathLocation(p), true, p);
    for (const u of ['s3://b', 'S3://b/p', 'file:///x', 'gs://b', 's3//b', 's3:b', 'file:/x', 'http//host'])
      assert.equal(isPathLocation(u), false, u);
  });
});

describe('every feature declared once', () => {
  test('top-level settings are config keys; each section is its feature, key for key', () => {
    const keys = Object.keys(ConfigSchema.shape);
    for (const feature of [CommonSettings, BackupSettings])
      for (const s of declaredSettings(feature)) assert.ok(keys.includes(s.key), `${s.key} is a config key`);
    const sections = {
      objectLock: ObjectLockSettings,
      notify: NotificationSettings,
      metrics: MetricsPublishSettings,
      keep: KeepSettings,
      schedule: ScheduleSettings,
      dashboard: DashboardSettings,
    };
    for (const [section, feature] of Object.entries(sections)) {
      const shape = (ConfigSchema.shape[section as keyof typeof ConfigSchema.shape] as z.ZodOptional<z.ZodObject>).unwrap().shape;
      assert.deepEqual(Object.keys(shape), Object.keys(feature.shape), section);
    }
    // The full-backup policy is flags only.
    for (const s of declaredSettings(FullBackupSettings)) assert.ok(!keys.includes(s.key) && s.meta.flag, s.key);
  });

  test('the config file takes a section as the feature declares it, without defaults', () => {
    const file = ConfigSchema.parse({
      keep: { last: 3, tags: ['release'] },
      dashboard: { port: 9000 },
      notify: { on: ['failure'] },
      objectLock: { days: 7, mode: 'GOVERNANCE' },
    });
    assert.deepEqual(file, {
      keep: { last: 3, tags: ['release'] },
      dashboard: { port: 9000 },
      notify: { on: ['failure'] },
      objectLock: { days: 7, mode: 'GOVERNANCE' },
    });
    const noMode = ConfigSchema.safeParse({ objectLock: { days: 7 } });
    assert.equal(noMode.success, false, 'Object Lock takes both keys');
    assert.deepEqual(noMode.error!.issues[0]!.path, ['objectLock', 'mode']);
    assert.equal(ConfigSchema.safeParse({ keep: { lats: 3 } }).success, false);
  });

  test('defaults come from the schema', () => {
    assert.deepEqual(resolveSettings(DashboardSettings, {}), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(resolveSettings(DashboardSettings, { flags: { port: 0 }, file: { port: 9000, maxAge: '26h' } }), {
      host: '127.0.0.1',
      port: 0,
      maxAge: '26h',
    });
    assert.deepEqual(resolveSettings(NotificationSettings, { file: { retries: 0 } }), { retries: 0, timeoutSeconds: 10 });
  });

  test('environment variables of notify and metrics, from their declarations', () => {
    const env = {
      SNS_TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:t',
      EMAIL_TO: '',
      PROMETHEUS_TEXTFILE: '/var/lib/s3backup.prom',
      S3BACKUP_HOST: 'h1',
      S3BACKUP_PASSWORD_FILE: '/p',
    };
    assert.deepEqual(envValues(NotificationSettings, env), { snsTopicArn: 'arn:aws:sns:eu-west-1:123456789012:t' });
    assert.deepEqual(envValues(MetricsPublishSettings, env), { prometheusTextfile: '/var/lib/s3backup.prom' });
    assert.deepEqual(envValues(BackupSettings, env), { host: 'h1' });
    assert.deepEqual(envValues(CommonSettings, env), { passwordFile: '/p' });
  });
});

describe('flags of the converted features', () => {
  test('a repeatable flag collects its values; read back by setting key', () => {
    const keep = parseFlags(KeepSettings, ['--keep-tag', 'a', '--keep-last', '3', '--keep-tag', 'b,c']);
    assert.deepEqual(keep, { keepTag: ['a', 'b,c'], keepLast: 3 });
    assert.deepEqual(flagValues(KeepSettings, keep), { last: 3, tags: ['a', 'b,c'] });
    const backup = parseFlags(BackupSettings, ['-t', 'x', '--tag', 'y', '-e', '*.tmp', '--host', 'h']);
    assert.deepEqual(flagValues(BackupSettings, backup), { host: 'h', exclude: ['*.tmp'], tags: ['x', 'y'] });
    assert.deepEqual(
      flagValues(NotificationSettings, parseFlags(NotificationSettings, ['--notify-on', 'failure', '--notify-on', 'anomaly'])),
      { on: ['failure', 'anomaly'] },
    );
  });

  test('parsers name the flag', () => {
    const fails = (feature: z.ZodObject, argv: string[], message: string) =>
      assert.throws(
        () => parseFlags(feature, argv),
        (e: unknown) => e instanceof UsageError && e.message === message,
        message,
      );
    fails(KeepSettings, ['--keep-daily', '-1'], '--keep-daily must be a whole number of 0 or more, not "-1"');
    fails(FullBackupSettings, ['--full-every', '1.5'], '--full-every must be a whole number, not 1.5');
    fails(ObjectLockSettings, ['--object-lock-days', '0'], '--object-lock-days must be a whole number from 1 to 36500, not 0');
    fails(DashboardSettings, ['--port', '70000'], '--port 70000 is not a port number (0-65535)');
    assert.deepEqual(parseFlags(FullBackupSettings, ['--full-after', '0']), { fullAfter: 0 });
    assert.throws(
      () => parseFlags(ObjectLockSettings, ['--object-lock-mode', 'SOFT']),
      (e: unknown) => e instanceof CommanderError && /Allowed choices are GOVERNANCE, COMPLIANCE/.test(e.message),
    );
  });

  test('a command may word a shared flag its own way', () => {
    assert.equal(settingOptions(ObjectLockSettings, { days: 'for init' }).days.description, 'for init');
    assert.equal(settingOptions(ObjectLockSettings).days.description, declaredSettings(ObjectLockSettings)[0]!.meta.help);
  });

  test('option types come from the declarations: the names commander stores values under', () => {
    const cmd = withCommon(new Command('t').exitOverride().configureOutput({ writeErr: () => {} }));
    cmd.parse(['--repo', 's3://b', '--log-dir', '/l', '--password-file', '/p', '--sse', 'AES256', '--stall-timeout', '90s', '--json'], {
      from: 'user',
    });
    const opts: CommonOpts = cmd.opts();
    assert.deepEqual(
      [opts.repo, opts.logDir, opts.passwordFile, opts.sse, opts.stallTimeout, opts.json],
      ['s3://b', '/l', '/p', 'AES256', '90s', true],
    );
    assert.deepEqual(flagValues(CommonSettings, opts), { logDir: '/l', passwordFile: '/p' });
    // @ts-expect-error a misspelt option name is a type error
    const misspelt: CommonOpts = { repos: 's3://b' };
    // @ts-expect-error so is a value the flag cannot give
    const badSse: CommonOpts = { sse: 'AES512' };
    // @ts-expect-error and a parsed flag has its parser's type
    const badLevel: FlagOptions<typeof ArchiveSettings> = { level: '3' };
    assert.ok(misspelt && badSse && badLevel);
  });
});
