// Notification channels against real local peers: the real AWS SDK against a local endpoint
// speaking SNS's query protocol, Slack and webhook against local HTTP servers, e-mail against a
// real SMTP server (smtp-server) on loopback.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SMTPServer } from 'smtp-server';
import { resolveConfig } from '../src/config/config.ts';
import type { AnomalyFinding, BackupEvent } from '../src/monitor/types.ts';
import { selectEvent } from '../src/notify/events.ts';
import { sendNotifications } from '../src/notify/notify.ts';
import { metricsSettings, type NotifySettings, notifySettings } from '../src/notify/settings.ts';
import { tempDir } from './helpers/tree.ts';
import { closedPort, type FakeAws, fakeAwsEnv, type Receiver, startFakeAws, startReceiver } from './helpers/fake-aws.ts';

const TOPIC = 'arn:aws:sns:eu-central-1:123456789012:backups';

const stats = {
  time: '2026-11-26T02:00:07.000Z',
  repository: 's3://my-bucket/host1',
  host: 'db1',
  sources: ['/srv/data'],
  backupId: '20261126T020000.000Z-1a2b3c4d',
  archive: 'archives/20261126T020000.000Z-1a2b3c4d.tar.zst',
  kind: 'incremental' as const,
  files: 4321,
  bytesIn: 5 * 1024 * 1024,
  bytesStored: 3 * 1024 * 1024,
  durationMs: 125_000,
  backupCount: 17,
  warnings: 0,
};
const success: BackupEvent = { type: 'success', ...stats };
const finding: AnomalyFinding = {
  metric: 'bytesIn',
  method: 'zscore',
  current: 5 * 1024 * 1024,
  expected: 100 * 1024,
  score: 7.5,
  level: 2.6,
  threshold: 3,
  historySize: 12,
  message: 'read 5 MiB, usually about 100 KiB (7.5 sigma above the mean)',
  recommendation: 'check what changed in /srv/data before the next backup',
  severity: 'high',
};
const anomaly: BackupEvent = { type: 'anomaly', ...stats, findings: [finding] };
const failure: BackupEvent = {
  type: 'failure',
  time: '2026-11-26T02:00:09.000Z',
  repository: 's3://my-bucket/host1',
  host: 'db1',
  sources: ['/srv/data'],
  error: 'uploading archives/x.tar.zst failed: connection reset',
  operation: 'upload',
  logFile: '/var/log/s3backup/backup-errors.log',
};

const quiet = { info: () => {}, warn: () => {} };
function recordingLog() {
  const lines: string[] = [];
  return { lines, info: (m: string) => lines.push(`INFO ${m}`), warn: (m: string) => lines.push(`WARN ${m}`) };
}

function settings(extra: Partial<NotifySettings>): NotifySettings {
  return { on: new Set(['success', 'failure', 'anomaly']), timeoutMs: 5000, retries: 2, backoffMs: 10, ...extra };
}

let fake: FakeAws;
const savedEnv = { ...process.env };
before(async () => {
  fake = await startFakeAws();
  Object.assign(process.env, fakeAwsEnv(fake));
});
after(async () => {
  await fake.close();
  process.env = savedEnv;
});

describe('SNS (real SDK, local query-protocol endpoint)', () => {
  const sns = { topicArn: TOPIC, region: 'eu-central-1' };

  test('success: the documented fields in the message, event and priority as attributes, signed for the topic region', async () => {
    fake.publishes.length = 0;
    const r = await sendNotifications(success, settings({ sns }), quiet);
    assert.deepEqual(r, [{ channel: 'sns', ok: true, attempts: 1 }]);
    assert.equal(fake.publishes.length, 1);
    const p = fake.publishes[0]!;
    assert.equal(p.TopicArn, TOPIC);
    assert.equal(p.Subject, 's3backup: backup OK on db1');
    for (const s of [
      'archives/20261126T020000.000Z-1a2b3c4d.tar.zst',
      '3.00 MiB stored',
      '5.00 MiB read',
      '4321 files',
      '2m05s',
      'Backups in repository: 17',
      '2026-11-26T02:00:07.000Z',
    ]) {
      assert.ok(p.Message.includes(s), `message lacks ${JSON.stringify(s)}:\n${p.Message}`);
    }
    assert.deepEqual(p.MessageAttributes, {
      event: { DataType: 'String', StringValue: 'success' },
      priority: { DataType: 'String', StringValue: 'normal' },
      host: { DataType: 'String', StringValue: 'db1' },
    });
    // SigV4 for SNS in the topic's region (eu-central-1), not AWS_REGION (eu-west-1).
    assert.match(p.authorization, /^AWS4-HMAC-SHA256 Credential=AKIDFAKEFORTESTS\/\d{8}\/eu-central-1\/sns\/aws4_request/);
  });

  test('anomaly: high priority in subject and attributes, findings with what to do', async () => {
    fake.publishes.length = 0;
    await sendNotifications(anomaly, settings({ sns }), quiet);
    const p = fake.publishes[0]!;
    assert.match(p.Subject!, /^\[HIGH PRIORITY\] s3backup: backup anomaly on db1 \(1 finding\)$/);
    assert.equal(p.MessageAttributes.priority?.StringValue, 'high');
    assert.equal(p.MessageAttributes.event?.StringValue, 'anomaly');
    assert.ok(p.Message.includes(finding.message));
    assert.ok(p.Message.includes(finding.recommendation));
    assert.ok(p.Message.includes('archives/20261126T020000.000Z-1a2b3c4d.tar.zst'), 'an anomaly message has the success fields too');
  });

  test('failure: error, failed operation, log file, timestamp', async () => {
    fake.publishes.length = 0;
    await sendNotifications(failure, settings({ sns }), quiet);
    const p = fake.publishes[0]!;
    assert.match(p.Subject!, /FAILED on db1 \(upload\)/);
    for (const s of [
      failure.error,
      'Failed operation: upload',
      'Log file:         /var/log/s3backup/backup-errors.log',
      '2026-11-26T02:00:09.000Z',
    ]) {
      assert.ok(p.Message.includes(s), `message lacks ${JSON.stringify(s)}:\n${p.Message}`);
    }
    assert.equal(p.MessageAttributes.priority?.StringValue, 'high');
  });

  test('a 500 is retried; a 400 is not; the failure is logged as a warning', async () => {
    fake.publishes.length = 0;
    fake.failNext(1, 500);
    const r1 = await sendNotifications(success, settings({ sns }), quiet);
    assert.deepEqual(r1, [{ channel: 'sns', ok: true, attempts: 2 }]);
    assert.equal(fake.publishes.length, 1);
    fake.failNext(5, 400);
    const before = fake.requests;
    const log = recordingLog();
    const r2 = await sendNotifications(success, settings({ sns }), log);
    assert.equal(r2[0]!.ok, false);
    assert.equal(r2[0]!.attempts, 1);
    assert.equal(fake.requests - before, 1);
    assert.match(r2[0]!.error!, /injected failure/);
    assert.ok(
      log.lines.some((l) => /^WARN success notification via sns failed: .*injected failure/.test(l)),
      log.lines.join('\n'),
    );
    fake.failNext(0);
  });

  test('a FIFO topic gets a message group and a deduplication id; a standard topic neither', async () => {
    fake.publishes.length = 0;
    const fifo = 'arn:aws:sns:eu-central-1:123456789012:backups.fifo';
    await sendNotifications(success, settings({ sns: { topicArn: fifo, region: 'eu-central-1' } }), quiet);
    await sendNotifications(success, settings({ sns: { topicArn: fifo, region: 'eu-central-1' } }), quiet);
    await sendNotifications(success, settings({ sns }), quiet);
    const [a, b, c] = fake.publishes;
    assert.equal(a!.MessageGroupId, 's3backup');
    assert.match(a!.MessageDeduplicationId ?? '', /^[0-9a-f-]{36}$/);
    assert.notEqual(a!.MessageDeduplicationId, b!.MessageDeduplicationId);
    assert.equal(c!.MessageGroupId, undefined);
    assert.equal(c!.MessageDeduplicationId, undefined);
  });

  test('SNS down for good: 1 + retries attempts, then a failure result (never a throw)', async () => {
    fake.failNext(Infinity, 503);
    const before = fake.requests;
    const r = await sendNotifications(success, settings({ sns, retries: 2 }), quiet);
    fake.failNext(0);
    assert.equal(r[0]!.ok, false);
    assert.equal(r[0]!.attempts, 3);
    assert.equal(fake.requests - before, 3);
    assert.match(r[0]!.error!, /after 3 attempts/);
  });
});

describe('Slack and webhook (local HTTP servers)', () => {
  let rx: Receiver;
  before(async () => {
    rx = await startReceiver();
  });
  after(() => rx.close());

  test('Slack: blocks with the fields; anomalies marked high priority', async () => {
    rx.reset();
    const url = `${rx.url}/services/T0/B0/secrettoken123`;
    const r = await sendNotifications(anomaly, settings({ slack: { url } }), quiet);
    assert.deepEqual(r, [{ channel: 'slack', ok: true, attempts: 1 }]);
    const post = rx.posts[0]!;
    assert.equal(post.path, '/services/T0/B0/secrettoken123');
    assert.equal(post.headers['content-type'], 'application/json');
    const body = JSON.parse(post.body);
    assert.match(body.text, /^:rotating_light: \*HIGH PRIORITY\* s3backup: backup anomaly on db1$/);
    const fieldText = body.blocks[1].fields.map((f: { text: string }) => f.text).join('\n');
    assert.ok(fieldText.includes('*Archive*\narchives/20261126T020000.000Z-1a2b3c4d.tar.zst'));
    assert.ok(fieldText.includes('*Backups in repository*\n17'));
    assert.ok(body.blocks[2].text.text.includes(finding.message));
    // Slack's markup characters are escaped.
    rx.reset();
    await sendNotifications({ ...failure, error: 'bad <thing> & more' }, settings({ slack: { url } }), quiet);
    assert.ok(rx.posts[0]!.body.includes('bad &lt;thing&gt; &amp; more'));
  });

  test('an anomaly of warnings only: normal priority, [WARNING] in the subject, *warning* on Slack', async () => {
    const mild: BackupEvent = { type: 'anomaly', ...stats, findings: [{ ...finding, severity: 'warning', level: 1.4 }] };
    rx.reset();
    const url = `${rx.url}/services/T0/B0/secrettoken123`;
    await sendNotifications(mild, settings({ slack: { url }, webhook: { url: `${rx.url}/hook` } }), quiet);
    const slack = JSON.parse(rx.posts.find((p) => p.path.startsWith('/services'))!.body);
    assert.match(slack.text, /^:rotating_light: \*warning\* s3backup: backup anomaly on db1$/);
    const doc = JSON.parse(rx.posts.find((p) => p.path === '/hook')!.body);
    assert.equal(doc.priority, 'normal');
    assert.equal(doc.subject, '[WARNING] s3backup: backup anomaly on db1 (1 finding)');
  });

  test('webhook: the event as JSON, signed with HMAC-SHA256 of the exact body', async () => {
    rx.reset();
    const secret = 'hmac-key-ABC';
    const r = await sendNotifications(failure, settings({ webhook: { url: `${rx.url}/hook`, secret } }), quiet);
    assert.equal(r[0]!.ok, true);
    const post = rx.posts[0]!;
    const expected = `sha256=${createHmac('sha256', secret).update(post.body).digest('hex')}`;
    assert.equal(post.headers['x-s3backup-signature'], expected);
    assert.equal(post.headers['x-s3backup-event'], 'failure');
    const doc = JSON.parse(post.body);
    assert.equal(doc.source, 's3backup');
    assert.equal(doc.priority, 'high');
    for (const [k, v] of Object.entries(failure)) assert.deepEqual(doc[k], v, k);
    // Without a secret: no signature header.
    rx.reset();
    await sendNotifications(success, settings({ webhook: { url: `${rx.url}/hook` } }), quiet);
    assert.equal(rx.posts[0]!.headers['x-s3backup-signature'], undefined);
    assert.equal(JSON.parse(rx.posts[0]!.body).priority, 'normal');
  });

  test('HTTP 500 then 200: retried; 404: not retried, and the error never shows the URL token', async () => {
    rx.reset();
    rx.respond(500, 'busy');
    const url = `${rx.url}/services/T0/B0/secrettoken123?key=querysecret99`;
    const ok = await sendNotifications(success, settings({ slack: { url } }), quiet);
    assert.deepEqual(ok, [{ channel: 'slack', ok: true, attempts: 2 }]);
    assert.equal(rx.posts.length, 2);
    // The receiver echoes the URL in its error (as some proxies do): it must be cut out.
    rx.respond(404, `no_service for ${url} /services/T0/B0/secrettoken123 querysecret99`);
    const log = recordingLog();
    const bad = await sendNotifications(success, settings({ slack: { url } }), log);
    assert.equal(bad[0]!.ok, false);
    assert.equal(bad[0]!.attempts, 1);
    assert.match(bad[0]!.error!, /^HTTP 404/);
    for (const text of [bad[0]!.error!, ...log.lines]) {
      assert.ok(!text.includes('secrettoken123') && !text.includes('querysecret99'), `secret leaked: ${text}`);
    }
    assert.ok(bad[0]!.error!.includes('***'));
  });

  test('connection refused and a server that never answers: failure results, other channels unaffected', async () => {
    rx.reset();
    const port = await closedPort();
    const hang = http.createServer(() => {}); // accepts, never answers
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
    try {
      const r = await sendNotifications(
        success,
        settings({
          slack: { url: `http://127.0.0.1:${port}/services/x` },
          webhook: { url: `http://127.0.0.1:${(hang.address() as AddressInfo).port}/hook` },
          timeoutMs: 300,
          retries: 1,
        }),
        quiet,
      );
      const byName = Object.fromEntries(r.map((x) => [x.channel, x]));
      assert.equal(byName.slack!.ok, false);
      assert.match(byName.slack!.error!, /ECONNREFUSED/);
      assert.equal(byName.slack!.attempts, 2, 'connection refused is transient: retried');
      assert.equal(byName.webhook!.ok, false);
      assert.match(byName.webhook!.error!, /timed out/);
    } finally {
      hang.closeAllConnections();
      hang.close();
    }
  });
});

describe('e-mail (real SMTP server on loopback)', () => {
  let smtp: SMTPServer;
  let port = 0;
  const received: { from: string; to: string[]; raw: string; user?: string }[] = [];
  before(async () => {
    smtp = new SMTPServer({
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth(auth, _session, cb) {
        if (auth.username === 'backup' && auth.password === 'p@ss w0rd!') cb(null, { user: 'backup' });
        else cb(new Error('Invalid username or password'));
      },
      onData(stream, session, cb) {
        let raw = '';
        stream.setEncoding('utf8');
        stream.on('data', (d: string) => (raw += d));
        stream.on('end', () => {
          received.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw,
            user: session.user as string | undefined,
          });
          cb();
        });
      },
    });
    await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', () => r()));
    port = (smtp.server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => smtp.close(() => r())));

  const smtpUrl = (pw: string) => `smtp://backup:${encodeURIComponent(pw)}@127.0.0.1:${port}`;

  test('an anomaly e-mail arrives, authenticated, with subject, body and high priority', async () => {
    received.length = 0;
    const r = await sendNotifications(
      anomaly,
      settings({ email: { smtpUrl: smtpUrl('p@ss w0rd!'), to: ['ops@example.com', 'me@example.com'], from: 'backup@db1.example.com' } }),
      quiet,
    );
    assert.deepEqual(r, [{ channel: 'email', ok: true, attempts: 1 }]);
    assert.equal(received.length, 1);
    const m = received[0]!;
    assert.equal(m.user, 'backup');
    assert.equal(m.from, 'backup@db1.example.com');
    assert.deepEqual(m.to, ['ops@example.com', 'me@example.com']);
    const unfolded = m.raw.replace(/\r\n[ \t]/g, ' ');
    assert.match(unfolded, /^Subject: \[HIGH PRIORITY\] s3backup: backup anomaly on db1 \(1 finding\)\r$/m);
    assert.match(unfolded, /^X-Priority: 1 \(Highest\)\r$/m);
    assert.match(unfolded, /^X-S3backup-Event: anomaly\r$/m);
    const body = m.raw.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    assert.ok(body.includes('archives/20261126T020000.000Z-1a2b3c4d.tar.zst'), body);
    assert.ok(body.includes('check what changed in /srv/data'), body);
  });

  test('a wrong password: a failure result that never shows the password or the URL', async () => {
    received.length = 0;
    const pw = 'Wr0ngSecretPw';
    const log = recordingLog();
    const r = await sendNotifications(
      success,
      settings({ email: { smtpUrl: smtpUrl(pw), to: ['ops@example.com'], from: 'b@example.com' } }),
      log,
    );
    assert.equal(r[0]!.ok, false);
    assert.match(r[0]!.error!, /Invalid username or password|auth/i);
    assert.equal(received.length, 0);
    for (const text of [r[0]!.error!, ...log.lines]) assert.ok(!text.includes(pw), `password leaked: ${text}`);
  });
});

describe('configuration', () => {
  test('s3backup.yaml notify/metrics keys merge with the environment key by key', () => {
    const dir = tempDir('notify-cfg');
    fs.writeFileSync(
      path.join(dir, 's3backup.yaml'),
      [
        'notify:',
        '  slackWebhookUrl: https://hooks.slack.com/services/T/B/fromfile',
        '  on: [failure]',
        '  timeoutSeconds: 2.5',
        '  retries: 0',
        'metrics:',
        '  cloudwatchNamespace: FromFile',
        '  prometheusTextfile: ./m.prom',
      ].join('\n'),
    );
    const cfg = resolveConfig({ flags: {}, env: { HOME: dir, SNS_TOPIC_ARN: TOPIC, CLOUDWATCH_NAMESPACE: 'FromEnv' }, cwd: dir });
    const n = notifySettings(cfg);
    assert.equal(n.sns?.topicArn, TOPIC);
    assert.equal(n.slack?.url, 'https://hooks.slack.com/services/T/B/fromfile');
    assert.deepEqual([...n.on], ['failure']);
    assert.equal(n.timeoutMs, 2500);
    assert.equal(n.retries, 0);
    const m = metricsSettings(cfg);
    assert.equal(m.cloudwatch?.namespace, 'FromEnv');
    assert.equal(m.prometheus?.textfile, path.join(dir, 'm.prom'));
    fs.writeFileSync(path.join(dir, 's3backup.yaml'), 'notify:\n  slackWebhookUrl: not a url\n');
    assert.throws(() => resolveConfig({ flags: {}, env: { HOME: dir }, cwd: dir }), /notify.slackWebhookUrl: Invalid URL/);
    fs.writeFileSync(path.join(dir, 's3backup.yaml'), 'notify:\n  on: [sucess]\n');
    assert.throws(() => resolveConfig({ flags: {}, env: { HOME: dir }, cwd: dir }), /notify.on.0: /);
    fs.writeFileSync(path.join(dir, 's3backup.yaml'), 'metrics:\n  cloudwatchNamespace: AWS/S3\n');
    assert.throws(
      () => resolveConfig({ flags: {}, env: { HOME: dir }, cwd: dir }),
      /metrics.cloudwatchNamespace: must not start with AWS\//,
    );
    fs.writeFileSync(path.join(dir, 's3backup.yaml'), 'metrics:\n  prometheusTextfile: /tmp/metrics.txt\n');
    assert.throws(() => metricsSettings(resolveConfig({ flags: {}, env: { HOME: dir }, cwd: dir })), /must end in \.prom/);
  });
});

describe('which events are sent', () => {
  test('--notify-on: anomaly events fall back to a success message when only success is on', () => {
    assert.equal(selectEvent(anomaly, new Set(['anomaly']))?.type, 'anomaly');
    const asSuccess = selectEvent(anomaly, new Set(['success']));
    assert.equal(asSuccess?.type, 'success');
    assert.equal('findings' in asSuccess!, false);
    assert.equal(selectEvent(anomaly, new Set(['failure'])), undefined);
    assert.equal(selectEvent(success, new Set(['failure', 'anomaly'])), undefined);
    assert.equal(selectEvent(failure, new Set(['failure']))?.type, 'failure');
  });

  test('settings: channels on by their settings; bad values are errors that never print a secret', () => {
    const cfg = (env: Record<string, string>, yaml?: object) =>
      resolveConfig({ flags: {}, env: { HOME: '/nonexistent', ...env }, cwd: '/nonexistent', ...(yaml ? {} : {}) });
    const s = notifySettings(
      cfg({
        SNS_TOPIC_ARN: TOPIC,
        SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T/B/x',
        SMTP_URL: 'smtps://u:pw@mail:465',
        EMAIL_TO: 'a@x.org, b@y.org',
      }),
    );
    assert.deepEqual(s.sns, { topicArn: TOPIC, region: 'eu-central-1', profile: undefined });
    assert.equal(s.slack?.url, 'https://hooks.slack.com/services/T/B/x');
    assert.deepEqual(s.email?.to, ['a@x.org', 'b@y.org']);
    assert.equal(s.webhook, undefined);
    assert.deepEqual([...s.on].sort(), ['anomaly', 'failure', 'success']);
    assert.deepEqual([...notifySettings(cfg({}), { notifyOn: ['failure,anomaly'] }).on].sort(), ['anomaly', 'failure']);
    assert.throws(() => notifySettings(cfg({}), { notifyOn: 'sucess' }), /--notify-on: unknown event "sucess"/);
    const bad: [Record<string, string>, RegExp, string?][] = [
      [{ SNS_TOPIC_ARN: 'arn:aws:s3:::bucket' }, /is not an SNS topic ARN/],
      [{ SLACK_WEBHOOK_URL: 'hooks.slack.com/services/T/B/topsecretpart' }, /Slack webhook URL .* is not a valid URL/, 'topsecretpart'],
      [{ WEBHOOK_URL: 'ftp://user:topsecretpw@host/x' }, /must be an http/, 'topsecretpw'],
      [{ WEBHOOK_SECRET: 'topsecretkey' }, /WEBHOOK_SECRET .* is set but WEBHOOK_URL/, 'topsecretkey'],
      [{ SMTP_URL: 'smtp://u:topsecretpw@mail' }, /EMAIL_TO/, 'topsecretpw'],
      [{ SMTP_URL: 'http://u:topsecretpw@mail', EMAIL_TO: 'a@b.c' }, /must start with smtp:\/\//, 'topsecretpw'],
      [{ EMAIL_TO: 'a@b.c' }, /SMTP_URL .* is not/],
    ];
    for (const [env, re, secret] of bad) {
      assert.throws(
        () => notifySettings(cfg(env)),
        (e: Error & { exitCode?: number }) => {
          assert.match(e.message, re);
          assert.equal(e.exitCode, 2);
          if (secret) assert.ok(!e.message.includes(secret) && !String((e as { hint?: string }).hint).includes(secret), e.message);
          return true;
        },
      );
    }
  });
});
