// Notifications and metrics through the real CLI: `s3backup backup`, `schedule --once backup`
// and `notify test`, with every channel pointed at a local peer (SNS and CloudWatch: a local
// endpoint the real AWS SDK calls; Slack/webhook: local HTTP servers), and one backup to real
// S3 (Ceph) with SNS beside it.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseTextfile } from '../src/metrics/prometheus.ts';
import { closedPort, type FakeAws, fakeAwsEnv, type Receiver, startFakeAws, startReceiver } from './helpers/fake-aws.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv } from './helpers/s3.ts';
import { isolatedEnv, runCli, tempDir } from './helpers/tree.ts';

const TOPIC = 'arn:aws:sns:us-east-1:123456789012:backups';
const SLACK_TOKEN = 'T0000/B0000/slackSecretToken42';

let fake: FakeAws;
let rx: Receiver;
before(async () => {
  fake = await startFakeAws();
  rx = await startReceiver();
});
after(async () => {
  await fake.close();
  await rx.close();
});

function workspace(label: string) {
  const work = tempDir(label);
  const src = path.join(work, 'src');
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(src, 'a.txt'), 'hello\n');
  fs.writeFileSync(path.join(src, 'sub', 'b.bin'), Buffer.alloc(10_000, 7));
  const repo = path.join(work, 'repo');
  const logDir = path.join(work, 'logs');
  const prom = path.join(work, 's3backup.prom');
  const env = isolatedEnv(path.join(work, 'home'), { ...fakeAwsEnv(fake), S3BACKUP_LOG_DIR: logDir });
  return { work, src, repo, logDir, prom, env, errorsLog: path.join(logDir, 'backup-errors.log') };
}

const allChannels = (w: ReturnType<typeof workspace>) => ({
  SNS_TOPIC_ARN: TOPIC,
  SLACK_WEBHOOK_URL: `${rx.url}/services/${SLACK_TOKEN}`,
  WEBHOOK_URL: `${rx.url}/hook`,
  WEBHOOK_SECRET: 'hook-secret',
  CLOUDWATCH_NAMESPACE: 'S3Backup',
  PROMETHEUS_TEXTFILE: w.prom,
});

describe('backup with notifications and metrics', () => {
  test('success: every channel and sink told, reported in --json; the second backup counts 2', async () => {
    const w = workspace('notify-ok');
    fake.publishes.length = 0;
    fake.puts.length = 0;
    rx.reset();
    const env = { ...w.env, ...allChannels(w) };
    const r = await runCli(['backup', w.src, '--repo', w.repo, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(
      doc.notifications.map((n: { channel: string; ok: boolean }) => [n.channel, n.ok]),
      [
        ['sns', true],
        ['slack', true],
        ['webhook', true],
      ],
    );
    assert.deepEqual(
      doc.metrics.map((n: { channel: string; ok: boolean }) => [n.channel, n.ok]),
      [
        ['cloudwatch', true],
        ['prometheus', true],
      ],
    );
    assert.equal(fake.publishes.length, 1);
    const msg = fake.publishes[0]!;
    assert.equal(msg.MessageAttributes.event?.StringValue, 'success');
    assert.ok(msg.Message.includes(doc.archiveKey), msg.Message);
    assert.match(msg.Message, /^Backups in repository: 1$/m);
    const hook = rx.posts.find((p) => p.path === '/hook')!;
    const event = JSON.parse(hook.body);
    assert.equal(event.type, 'success');
    assert.equal(event.backupId, doc.id);
    assert.equal(event.archive, doc.archiveKey);
    assert.equal(event.bytesStored, doc.bytesStored);
    assert.deepEqual(event.sources, [w.src]);
    assert.ok(rx.posts.some((p) => p.path === `/services/${SLACK_TOKEN}`));
    assert.equal(fake.puts.length, 1);
    assert.equal(fake.puts[0]!.MetricData.find((d) => d.MetricName === 'FilesTotal')?.Value, 2);
    const prom = parseTextfile(fs.readFileSync(w.prom, 'utf8'));
    assert.equal(prom.find((s) => s.name === 's3backup_backup_success')?.value, '1');
    assert.equal(prom.find((s) => s.name === 's3backup_backup_success')?.labels.repository, w.repo);

    fake.publishes.length = 0;
    const r2 = await runCli(['backup', w.src, '--repo', w.repo, '--json'], { env });
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(fake.publishes[0]!.Message, /^Backups in repository: 2$/m);
  });

  test('failing channels never fail the backup: exit 3, the failures in --json and backup-errors.log, no secret anywhere', async () => {
    const w = workspace('notify-fail');
    fake.failNext(Infinity, 500);
    rx.respond(404, `no_team for /services/${SLACK_TOKEN}`, 5);
    const port = await closedPort();
    const env = {
      ...w.env,
      ...allChannels(w),
      WEBHOOK_URL: `http://127.0.0.1:${port}/hook`,
      SMTP_URL: `smtp://u:SmtpPassw0rd@127.0.0.1:${port}`,
      EMAIL_TO: 'ops@example.com',
    };
    try {
      const r = await runCli(['backup', w.src, '--repo', w.repo, '--json'], { env });
      assert.equal(r.code, 3, r.stderr);
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.ok, true);
      const failed = [...doc.notifications, ...doc.metrics]
        .filter((n: { ok: boolean }) => !n.ok)
        .map((n: { channel: string }) => n.channel);
      assert.deepEqual(failed.sort(), ['cloudwatch', 'email', 'slack', 'sns', 'webhook']);
      assert.equal(doc.metrics.find((m: { channel: string }) => m.channel === 'prometheus').ok, true);
      // The backup is there all the same.
      const list = await runCli(['list', '--json', '--repo', w.repo], { env: w.env });
      assert.deepEqual(
        JSON.parse(list.stdout).backups.map((b: { id: string }) => b.id),
        [doc.id],
      );
      const errors = fs.readFileSync(w.errorsLog, 'utf8');
      for (const ch of ['sns', 'slack', 'webhook', 'email'])
        assert.match(errors, new RegExp(`WARN .*success notification via ${ch} failed: `));
      assert.match(errors, /WARN .*metrics not written to cloudwatch: /);
      // Without --json the failures are named on stderr (and notify.retries: 0 tries once).
      fs.writeFileSync(path.join(w.work, 's3backup.yaml'), 'notify:\n  retries: 0\n');
      const before = fake.requests;
      const plain = await runCli(['backup', w.src, '--repo', w.repo], { env, cwd: w.work });
      assert.equal(fake.requests - before, 2, 'one SNS and one CloudWatch request: no retries');
      assert.equal(plain.code, 3);
      assert.match(plain.stderr, /^warning: slack not delivered: HTTP 404/m);
      const everything = [
        r.stdout,
        r.stderr,
        plain.stdout,
        plain.stderr,
        errors,
        fs.readFileSync(path.join(w.logDir, 'backup.log'), 'utf8'),
      ].join('\n');
      for (const secret of ['slackSecretToken42', 'SmtpPassw0rd', 'hook-secret'])
        assert.ok(!everything.includes(secret), `${secret} leaked`);
    } finally {
      fake.failNext(0);
      rx.reset();
    }
  });

  test('a failed backup: failure message with error, operation and log file; --json of the error reports the channels', async () => {
    const w = workspace('notify-failure');
    rx.reset();
    fake.publishes.length = 0;
    const env = { ...w.env, SNS_TOPIC_ARN: TOPIC, WEBHOOK_URL: `${rx.url}/hook`, PROMETHEUS_TEXTFILE: w.prom };
    const missing = path.join(w.work, 'no-such-dir');
    const r = await runCli(['backup', missing, '--repo', w.repo, '--json'], { env });
    assert.equal(r.code, 2);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.ok, false);
    assert.match(doc.error.message, /does not exist/);
    assert.deepEqual(
      doc.notifications.map((n: { channel: string; ok: boolean }) => [n.channel, n.ok]),
      [
        ['sns', true],
        ['webhook', true],
      ],
    );
    const event = JSON.parse(rx.posts[0]!.body);
    assert.equal(event.type, 'failure');
    assert.equal(event.operation, 'pre-flight');
    assert.match(event.error, /no-such-dir does not exist/);
    assert.equal(event.logFile, w.errorsLog);
    assert.deepEqual(event.sources, [missing]);
    assert.equal(event.priority, 'high');
    assert.match(fake.publishes[0]!.Message, /^Failed operation: pre-flight$/m);
    assert.match(fake.publishes[0]!.Message, new RegExp(`^Log file: +${w.errorsLog.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    const prom = parseTextfile(fs.readFileSync(w.prom, 'utf8'));
    assert.equal(prom.find((s) => s.name === 's3backup_backup_success')?.value, '0');
  });

  test('--notify-on failure: a successful backup sends nothing; metrics are still written', async () => {
    const w = workspace('notify-on');
    rx.reset();
    const env = { ...w.env, WEBHOOK_URL: `${rx.url}/hook`, PROMETHEUS_TEXTFILE: w.prom };
    const r = await runCli(['backup', w.src, '--repo', w.repo, '--json', '--notify-on', 'failure'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).notifications, []);
    assert.equal(rx.posts.length, 0);
    assert.ok(fs.existsSync(w.prom));
    const bad = await runCli(['backup', w.src, '--repo', w.repo, '--notify-on', 'succes'], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--notify-on: unknown event "succes"/);
    // notify.on in the config file does the same.
    fs.writeFileSync(path.join(w.work, 's3backup.yaml'), 'notify:\n  on: [anomaly]\n');
    const r2 = await runCli(['backup', w.src, '--repo', w.repo, '--json'], { env, cwd: w.work });
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(rx.posts.length, 0);
  });

  test('a bad channel setting is a configuration error before anything is backed up', async () => {
    const w = workspace('notify-bad');
    const r = await runCli(['backup', w.src, '--repo', w.repo], {
      env: { ...w.env, SLACK_WEBHOOK_URL: 'hooks.slack.com/services/xyzSecret' },
    });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /the Slack webhook URL \(SLACK_WEBHOOK_URL or notify.slackWebhookUrl\) is not a valid URL/);
    assert.ok(!r.stderr.includes('xyzSecret'));
    assert.equal(fs.existsSync(w.repo), false);
  });

  test('schedule --once backup notifies and writes metrics too', async () => {
    const w = workspace('notify-sched');
    rx.reset();
    const env = { ...w.env, WEBHOOK_URL: `${rx.url}/hook`, PROMETHEUS_TEXTFILE: w.prom };
    const r = await runCli(['schedule', '--once', 'backup', w.src, '--repo', w.repo, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(doc.notifications, [{ channel: 'webhook', ok: true, attempts: 1 }]);
    assert.equal(JSON.parse(rx.posts[0]!.body).backupId, doc.id);
    assert.ok(fs.existsSync(w.prom));
    const quiet = await runCli(['schedule', '--once', 'backup', w.src, '--repo', w.repo, '--json', '--notify-on', 'failure'], { env });
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.deepEqual(JSON.parse(quiet.stdout).notifications, []);
    assert.equal(rx.posts.length, 1);
  });
});

describe('start-up cost', () => {
  test('the SNS, CloudWatch and SMTP libraries load only when their channel is on', async () => {
    const w = workspace('notify-lazy');
    const hook = path.join(w.work, 'hook.mjs');
    // Records every module the CLI resolves whose path names one of the three libraries.
    fs.writeFileSync(
      hook,
      `import { registerHooks } from 'node:module';\nimport { appendFileSync } from 'node:fs';\n` +
        `registerHooks({ resolve(s, c, next) { const r = next(s, c); if (/client-sns|client-cloudwatch|nodemailer/.test(r.url)) appendFileSync(process.env.LOADED_LOG, r.url + '\\n'); return r; } });\n`,
    );
    const loaded = path.join(w.work, 'loaded.txt');
    const run = async (extra: NodeJS.ProcessEnv) => {
      fs.rmSync(loaded, { force: true });
      const r = await runCli(['backup', w.src, '--repo', w.repo, '--notify-on', 'failure'], {
        env: { ...w.env, ...extra, LOADED_LOG: loaded, NODE_OPTIONS: `--import ${hook}` },
      });
      assert.equal(r.code, 0, r.stderr);
      return fs.existsSync(loaded) ? fs.readFileSync(loaded, 'utf8') : '';
    };
    assert.equal(await run({ WEBHOOK_URL: `${rx.url}/hook`, PROMETHEUS_TEXTFILE: w.prom }), '');
    assert.match(await run({ CLOUDWATCH_NAMESPACE: 'S3Backup' }), /client-cloudwatch/);
  });
});

describe('s3backup notify test', () => {
  test('sends a test message to every channel; exit 1 naming the channel that failed', async () => {
    const w = workspace('notify-test');
    fake.publishes.length = 0;
    rx.reset();
    const env = { ...w.env, SNS_TOPIC_ARN: TOPIC, WEBHOOK_URL: `${rx.url}/hook` };
    const r = await runCli(['notify', 'test', '--json', '--event', 'anomaly'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(doc, {
      ok: true,
      event: 'anomaly',
      channels: [
        { channel: 'sns', ok: true, attempts: 1 },
        { channel: 'webhook', ok: true, attempts: 1 },
      ],
    });
    assert.match(fake.publishes[0]!.Subject!, /^\[TEST\] \[HIGH PRIORITY\] /);
    assert.equal(fake.publishes[0]!.MessageAttributes.test?.StringValue, 'true');
    assert.equal(JSON.parse(rx.posts[0]!.body).test, true);

    const port = await closedPort();
    const r2 = await runCli(['notify', 'test'], { env: { ...env, SLACK_WEBHOOK_URL: `http://127.0.0.1:${port}/services/${SLACK_TOKEN}` } });
    assert.equal(r2.code, 1);
    assert.match(r2.stdout, /^sns: sent$/m);
    assert.match(r2.stdout, /^slack: FAILED: fetch failed \(ECONNREFUSED\)/m);
    assert.ok(!r2.stdout.includes('slackSecretToken42') && !r2.stderr.includes('slackSecretToken42'));
  });

  test('no channel configured: exit 2 with the settings to use', async () => {
    const w = workspace('notify-none');
    const r = await runCli(['notify', 'test'], { env: w.env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no notification channel is configured/);
    assert.match(r.stderr, /SNS_TOPIC_ARN, SLACK_WEBHOOK_URL, WEBHOOK_URL or SMTP_URL/);
  });
});

describe('backup to S3 (Ceph) with SNS on its own endpoint', () => {
  let bucket = '';
  before(async () => {
    bucket = await createTestBucket('notify-s3');
  });
  after(() => deleteTestBucket(bucket));

  test('AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_SNS each reach their own server', async () => {
    const w = workspace('notify-s3');
    fake.publishes.length = 0;
    const env = { ...w.env, ...fakeAwsEnv(fake), ...s3CliEnv(), AWS_ENDPOINT_URL_SNS: fake.url, SNS_TOPIC_ARN: TOPIC };
    const r = await runCli(['backup', w.src, '--repo', `s3://${bucket}/host1`, '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.deepEqual(doc.notifications, [{ channel: 'sns', ok: true, attempts: 1 }]);
    assert.equal(fake.publishes.length, 1);
    assert.match(fake.publishes[0]!.Message, new RegExp(`^Repository: +s3://${bucket}/host1$`, 'm'));
    assert.ok(fake.publishes[0]!.Message.includes(doc.archiveKey));
  });
});
