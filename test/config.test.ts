// Settings resolution (src/config/config.ts): flags > environment > config file > defaults,
// config file discovery, paths relative to the config file, and validation errors that name the
// key and the file. Every call passes env and cwd explicitly, so nothing depends on the machine.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfigFile, resolveConfig } from '../src/config/config.ts';
import { UsageError } from '../src/errors.ts';
import { tempDir } from './helpers/tree.ts';

const work = tempDir('config');
after(() => fs.rmSync(work, { recursive: true, force: true }));

let n = 0;
/** A fresh home with XDG dirs, a working directory, and the environment naming them. */
function sandbox() {
  const root = path.join(work, `s${n++}`);
  const home = path.join(root, 'home');
  const cwd = path.join(root, 'cwd');
  fs.mkdirSync(home, { recursive: true });
  fs.mkdirSync(cwd, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    HOME: home,
    XDG_DATA_HOME: path.join(home, 'data'),
    XDG_STATE_HOME: path.join(home, 'state'),
    XDG_CONFIG_HOME: path.join(home, 'config'),
  };
  const xdgConfig = path.join(home, 'config', 's3backup', 's3backup.yaml');
  return { root, home, cwd, env, xdgConfig };
}

function write(file: string, text: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

/** The UsageError a call throws (fails the test if it throws nothing or something else). */
function usageError(f: () => unknown): UsageError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof UsageError, `expected a UsageError, got ${String(e)}`);
    assert.equal(e.exitCode, 2);
    return e;
  }
  assert.fail('expected a UsageError, nothing was thrown');
}

describe('precedence: flags > env > config file > defaults', () => {
  test('defaults come from the XDG dirs of the given environment', () => {
    const s = sandbox();
    const c = resolveConfig({ flags: {}, env: s.env, cwd: s.cwd });
    assert.equal(c.repository, path.join(s.home, 'data', 's3backup', 'repository'));
    assert.equal(c.logDir, path.join(s.home, 'state', 's3backup', 'logs'));
    assert.equal(c.repositorySource, 'default');
    assert.equal(c.configFile, undefined);
    assert.equal(c.endpoint, undefined);
  });

  test('without XDG variables the defaults are under HOME', () => {
    const s = sandbox();
    const c = resolveConfig({ flags: {}, env: { HOME: s.home }, cwd: s.cwd });
    assert.equal(c.repository, path.join(s.home, '.local', 'share', 's3backup', 'repository'));
    assert.equal(c.logDir, path.join(s.home, '.local', 'state', 's3backup', 'logs'));
  });

  test('a config file beats the defaults', () => {
    const s = sandbox();
    const file = write(
      path.join(s.cwd, 's3backup.yaml'),
      'repository: s3://from-file/prefix\nlogDir: /var/log/from-file\nendpoint: http://file.example:9000\nregion: eu-west-1\n',
    );
    const c = resolveConfig({ flags: {}, env: s.env, cwd: s.cwd });
    assert.equal(c.configFile, file);
    assert.equal(c.repository, 's3://from-file/prefix');
    assert.equal(c.logDir, '/var/log/from-file');
    assert.equal(c.endpoint, 'http://file.example:9000');
    assert.equal(c.region, 'eu-west-1');
    assert.equal(c.repositorySource, 'config');
  });

  test('the environment beats the config file', () => {
    const s = sandbox();
    write(
      path.join(s.cwd, 's3backup.yaml'),
      'repository: s3://from-file\nlogDir: /from-file\nendpoint: http://file.example:9000\nregion: eu-west-1\n',
    );
    const env = {
      ...s.env,
      S3BACKUP_REPO: 's3://from-env/p',
      S3BACKUP_LOG_DIR: '/from-env',
      AWS_ENDPOINT_URL_S3: 'http://env.example:7480',
    };
    const c = resolveConfig({ flags: {}, env, cwd: s.cwd });
    assert.equal(c.repository, 's3://from-env/p');
    assert.equal(c.logDir, '/from-env');
    assert.equal(c.endpoint, 'http://env.example:7480');
    assert.equal(c.region, 'eu-west-1', 'keys the environment does not set still come from the file');
    assert.equal(c.repositorySource, 'env');
  });

  test('flags beat the environment and the config file', () => {
    const s = sandbox();
    write(path.join(s.cwd, 's3backup.yaml'), 'repository: s3://from-file\nlogDir: /from-file\nendpoint: http://file.example:9000\n');
    const env = { ...s.env, S3BACKUP_REPO: 's3://from-env', S3BACKUP_LOG_DIR: '/from-env', AWS_ENDPOINT_URL_S3: 'http://env.example:7480' };
    const c = resolveConfig({
      flags: { repository: 's3://from-flag', logDir: '/from-flag', endpoint: 'http://flag.example:1' },
      env,
      cwd: s.cwd,
    });
    assert.equal(c.repository, 's3://from-flag');
    assert.equal(c.logDir, '/from-flag');
    assert.equal(c.endpoint, 'http://flag.example:1');
    assert.equal(c.repositorySource, 'flag');
  });

  test('undefined flags and empty list flags do not hide lower layers', () => {
    const s = sandbox();
    write(path.join(s.cwd, 's3backup.yaml'), 'exclude: ["*.tmp", "cache/**"]\ntags: [nightly]\nlevel: 7\n');
    const c = resolveConfig({ flags: { repository: undefined, exclude: [], tags: [] }, env: s.env, cwd: s.cwd });
    assert.deepEqual(c.exclude, ['*.tmp', 'cache/**']);
    assert.deepEqual(c.tags, ['nightly']);
    assert.equal(c.level, 7);
    assert.equal(c.repositorySource, 'default');
    const c2 = resolveConfig({ flags: { exclude: ['*.iso'] }, env: s.env, cwd: s.cwd });
    assert.deepEqual(c2.exclude, ['*.iso']);
  });

  test('BUCKET_NAME means s3://$BUCKET_NAME; S3BACKUP_REPO beats it; empty values are unset', () => {
    const s = sandbox();
    write(path.join(s.cwd, 's3backup.yaml'), 'repository: /from-file\n');
    const a = resolveConfig({ flags: {}, env: { ...s.env, BUCKET_NAME: 'my-bucket' }, cwd: s.cwd });
    assert.equal(a.repository, 's3://my-bucket');
    assert.equal(a.repositorySource, 'env');
    const b = resolveConfig({ flags: {}, env: { ...s.env, BUCKET_NAME: 'my-bucket', S3BACKUP_REPO: 's3://other/p' }, cwd: s.cwd });
    assert.equal(b.repository, 's3://other/p');
    const c = resolveConfig({ flags: {}, env: { ...s.env, BUCKET_NAME: '', S3BACKUP_REPO: '' }, cwd: s.cwd });
    assert.equal(c.repository, '/from-file');
    assert.equal(c.repositorySource, 'config');
    const d = resolveConfig({ flags: { repository: '/flag' }, env: { ...s.env, BUCKET_NAME: 'my-bucket' }, cwd: s.cwd });
    assert.equal(d.repository, '/flag');
  });

  test('SNS_TOPIC_ARN beats notify.snsTopicArn from the file', () => {
    const s = sandbox();
    write(path.join(s.cwd, 's3backup.yaml'), 'notify:\n  snsTopicArn: arn:aws:sns:eu-west-1:123456789012:from-file\n');
    const a = resolveConfig({ flags: {}, env: s.env, cwd: s.cwd });
    assert.equal(a.notify?.snsTopicArn, 'arn:aws:sns:eu-west-1:123456789012:from-file');
    const b = resolveConfig({ flags: {}, env: { ...s.env, SNS_TOPIC_ARN: 'arn:aws:sns:us-east-1:1:from-env' }, cwd: s.cwd });
    assert.equal(b.notify?.snsTopicArn, 'arn:aws:sns:us-east-1:1:from-env');
  });
});

describe('config file discovery', () => {
  test('the XDG config dir file is used when the working directory has none', () => {
    const s = sandbox();
    write(s.xdgConfig, 'repository: s3://from-xdg\n');
    const c = resolveConfig({ flags: {}, env: s.env, cwd: s.cwd });
    assert.equal(c.configFile, s.xdgConfig);
    assert.equal(c.repository, 's3://from-xdg');
  });

  test('without XDG_CONFIG_HOME the file under $HOME/.config is used', () => {
    const s = sandbox();
    const file = write(path.join(s.home, '.config', 's3backup', 's3backup.yaml'), 'repository: s3://from-home-config\n');
    const c = resolveConfig({ flags: {}, env: { HOME: s.home }, cwd: s.cwd });
    assert.equal(c.configFile, file);
    assert.equal(c.repository, 's3://from-home-config');
  });

  test('./s3backup.yaml in the working directory is found before the XDG one', () => {
    const s = sandbox();
    write(s.xdgConfig, 'repository: s3://from-xdg\n');
    const local = write(path.join(s.cwd, 's3backup.yaml'), 'repository: s3://from-cwd\n');
    const c = resolveConfig({ flags: {}, env: s.env, cwd: s.cwd });
    assert.equal(c.configFile, local);
    assert.equal(c.repository, 's3://from-cwd');
  });

  test('--config (relative to cwd) and S3BACKUP_CONFIG replace discovery; the flag wins', () => {
    const s = sandbox();
    write(path.join(s.cwd, 's3backup.yaml'), 'repository: s3://from-cwd\n');
    const viaFlag = write(path.join(s.cwd, 'conf', 'flag.yaml'), 'repository: s3://from-flag-file\n');
    const viaEnv = write(path.join(s.root, 'env.yaml'), 'repository: s3://from-env-file\n');
    const a = resolveConfig({ flags: { config: 'conf/flag.yaml' }, env: s.env, cwd: s.cwd });
    assert.equal(a.configFile, viaFlag);
    assert.equal(a.repository, 's3://from-flag-file');
    const b = resolveConfig({ flags: {}, env: { ...s.env, S3BACKUP_CONFIG: viaEnv }, cwd: s.cwd });
    assert.equal(b.configFile, viaEnv);
    assert.equal(b.repository, 's3://from-env-file');
    const c = resolveConfig({ flags: { config: 'conf/flag.yaml' }, env: { ...s.env, S3BACKUP_CONFIG: viaEnv }, cwd: s.cwd });
    assert.equal(c.repository, 's3://from-flag-file');
  });

  test('an explicit config file that does not exist is a UsageError naming it', () => {
    const s = sandbox();
    const e = usageError(() => resolveConfig({ flags: { config: 'missing.yaml' }, env: s.env, cwd: s.cwd }));
    assert.match(e.message, /cannot read config file/);
    assert.ok(e.message.includes(path.join(s.cwd, 'missing.yaml')), e.message);
  });

  test('a relative repository path in a config file is relative to that file, not to cwd', () => {
    const s = sandbox();
    write(s.xdgConfig, 'repository: ../backups/repo\n');
    const c = resolveConfig({ flags: {}, env: s.env, cwd: s.cwd });
    assert.equal(c.repository, path.join(s.home, 'config', 'backups', 'repo'));
    const other = path.join(s.root, 'elsewhere');
    write(path.join(other, 'my.yaml'), 'repository: repo-here\n');
    const d = resolveConfig({ flags: { config: path.join(other, 'my.yaml') }, env: s.env, cwd: s.cwd });
    assert.equal(d.repository, path.join(other, 'repo-here'));
  });

  test('every relative path in a config file is relative to that file; relative paths from flags and the environment are not', () => {
    const s = sandbox();
    const dir = path.join(s.root, 'etc-s3backup');
    const cfg = path.join(dir, 's3backup.yaml');
    write(
      cfg,
      'logDir: logs\nsources: [data, /abs/src]\nexcludeFile: excludes.txt\npasswordFile: secret/pass\nmetrics:\n  prometheusTextfile: prom/s3backup.prom\n',
    );
    const c = resolveConfig({ flags: { config: cfg }, env: s.env, cwd: s.cwd });
    assert.equal(c.logDir, path.join(dir, 'logs'));
    assert.deepEqual(c.sources, [path.join(dir, 'data'), '/abs/src']);
    assert.equal(c.excludeFile, path.join(dir, 'excludes.txt'));
    assert.equal(c.passwordFile, path.join(dir, 'secret/pass'));
    assert.equal(c.metrics?.prometheusTextfile, path.join(dir, 'prom/s3backup.prom'));
    const f = resolveConfig({
      flags: { config: cfg, logDir: 'logs', sources: ['data'], excludeFile: 'ex.txt', passwordFile: 'p' },
      env: s.env,
      cwd: s.cwd,
    });
    assert.deepEqual([f.logDir, f.sources, f.excludeFile, f.passwordFile], ['logs', ['data'], 'ex.txt', 'p']);
    const e = resolveConfig({
      flags: { config: cfg },
      env: { ...s.env, S3BACKUP_LOG_DIR: 'env-logs', S3BACKUP_PASSWORD_FILE: 'env-pass' },
      cwd: s.cwd,
    });
    assert.deepEqual([e.logDir, e.passwordFile], ['env-logs', 'env-pass']);
  });

  test('URL repositories in a config file are left alone', () => {
    const s = sandbox();
    write(path.join(s.cwd, 's3backup.yaml'), 'repository: file:///srv/backups\n');
    assert.equal(resolveConfig({ flags: {}, env: s.env, cwd: s.cwd }).repository, 'file:///srv/backups');
    write(path.join(s.cwd, 's3backup.yaml'), 'repository: s3://bucket/some/prefix\n');
    assert.equal(resolveConfig({ flags: {}, env: s.env, cwd: s.cwd }).repository, 's3://bucket/some/prefix');
  });

  test('a relative repository from a flag or the environment is not rebased on the config file', () => {
    const s = sandbox();
    write(path.join(s.root, 'conf', 's3backup.yaml'), 'repository: from-file\n');
    const cfg = path.join(s.root, 'conf', 's3backup.yaml');
    const a = resolveConfig({ flags: { config: cfg, repository: 'rel-flag' }, env: s.env, cwd: s.cwd });
    assert.equal(a.repository, 'rel-flag');
    const b = resolveConfig({ flags: { config: cfg }, env: { ...s.env, S3BACKUP_REPO: 'rel-env' }, cwd: s.cwd });
    assert.equal(b.repository, 'rel-env');
  });

  test('an empty config file is an empty configuration', () => {
    const s = sandbox();
    write(path.join(s.cwd, 's3backup.yaml'), '# nothing yet\n');
    const c = resolveConfig({ flags: {}, env: s.env, cwd: s.cwd });
    assert.equal(c.repositorySource, 'default');
    assert.equal(c.configFile, path.join(s.cwd, 's3backup.yaml'));
  });
});

describe('config file validation', () => {
  const dir = path.join(work, 'validation');
  const file = (name: string, text: string) => write(path.join(dir, name), text);

  test('a valid file with every key loads', () => {
    const f = file(
      'full.yaml',
      [
        'repository: s3://b/p',
        'endpoint: http://127.0.0.1:7480',
        'region: us-east-1',
        'profile: backup',
        'logDir: /var/log/s3backup',
        'sources: [/home, /etc]',
        'exclude: ["**/node_modules"]',
        'excludeFile: /etc/s3backup.exclude',
        'tags: [nightly, host1]',
        'compression: gzip',
        'level: 9',
        'passwordFile: /etc/s3backup/passphrase',
        'sse: aws:kms',
        'sseKmsKeyId: alias/backups',
        'objectLock: { days: 30, mode: COMPLIANCE }',
        'notify:',
        '  snsTopicArn: arn:aws:sns:us-east-1:123456789012:backups',
        '',
      ].join('\n'),
    );
    const c = loadConfigFile(f);
    assert.deepEqual(c, {
      repository: 's3://b/p',
      endpoint: 'http://127.0.0.1:7480',
      region: 'us-east-1',
      profile: 'backup',
      logDir: '/var/log/s3backup',
      sources: ['/home', '/etc'],
      exclude: ['**/node_modules'],
      excludeFile: '/etc/s3backup.exclude',
      tags: ['nightly', 'host1'],
      compression: 'gzip',
      level: 9,
      passwordFile: '/etc/s3backup/passphrase',
      sse: 'aws:kms',
      sseKmsKeyId: 'alias/backups',
      objectLock: { days: 30, mode: 'COMPLIANCE' },
      notify: { snsTopicArn: 'arn:aws:sns:us-east-1:123456789012:backups' },
    });
  });

  test('an unknown key names the key and the file', () => {
    const f = file('unknown.yaml', 'repository: s3://b\nretention: 30d\n');
    const e = usageError(() => loadConfigFile(f));
    assert.ok(e.message.includes(f), e.message);
    assert.match(e.message, /unknown key "retention"/);
    assert.match(e.hint ?? '', /repository/, 'the hint lists the valid keys');
  });

  test('an unknown key found by discovery also names the file', () => {
    const s = sandbox();
    const f = write(path.join(s.cwd, 's3backup.yaml'), 'repo: s3://typo\n');
    const e = usageError(() => resolveConfig({ flags: {}, env: s.env, cwd: s.cwd }));
    assert.ok(e.message.includes(f), e.message);
    assert.match(e.message, /"repo"/);
  });

  test('an unknown nested key names its path', () => {
    const f = file('nested-unknown.yaml', 'notify:\n  email: me@example.com\n');
    const e = usageError(() => loadConfigFile(f));
    assert.ok(e.message.includes(f), e.message);
    assert.match(e.message, /notify: unknown key "email"/);
  });

  for (const [name, text, keyPath] of [
    ['level-word', 'level: high\n', 'level'],
    ['level-range', 'level: 25\n', 'level'],
    ['level-fraction', 'level: 3.5\n', 'level'],
    ['compression', 'compression: lz4\n', 'compression'],
    ['exclude-string', 'exclude: "*.tmp"\n', 'exclude'],
    ['tags-item', 'tags: [ok, 5]\n', 'tags.1'],
    ['endpoint', 'endpoint: not a url\n', 'endpoint'],
    ['repository-empty', 'repository: ""\n', 'repository'],
    ['sns', 'notify:\n  snsTopicArn: my-topic\n', 'notify.snsTopicArn'],
    ['notify-scalar', 'notify: yes\n', 'notify'],
    ['sse', 'sse: aes256\n', 'sse'],
    ['object-lock-days', 'objectLock: { days: 0, mode: GOVERNANCE }\n', 'objectLock.days'],
    ['object-lock-mode', 'objectLock: { days: 3, mode: LEGAL }\n', 'objectLock.mode'],
  ] as const) {
    test(`a wrong value (${name}) names the key path ${keyPath}`, () => {
      const f = file(`${name}.yaml`, text);
      const e = usageError(() => loadConfigFile(f));
      assert.ok(e.message.includes(f), e.message);
      assert.ok(e.message.includes(`: ${keyPath}: `), `"${keyPath}" not named in: ${e.message}`);
    });
  }

  test('a top-level value that is not a mapping is refused', () => {
    const f = file('list.yaml', '- a\n- b\n');
    const e = usageError(() => loadConfigFile(f));
    assert.ok(e.message.includes(f), e.message);
    assert.match(e.message, /top level/);
  });

  test('invalid YAML gives a clear one-line error naming the file', () => {
    for (const [name, text] of [
      ['unclosed.yaml', 'repository: [s3://b\nlevel: 3\n'],
      ['indent.yaml', 'notify:\n  snsTopicArn: arn:x\n bad: 1\n'],
      ['dup.yaml', 'level: 3\nlevel: 4\n'],
    ] as const) {
      const f = file(name, text);
      const e = usageError(() => loadConfigFile(f));
      assert.ok(e.message.includes(f), e.message);
      assert.match(e.message, /is not valid YAML/);
      assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    }
  });
});
