// HTTP(S) proxies from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) for every request
// the CLI makes: S3 (Ceph, plain http, so HTTP_PROXY and the absolute form), SNS and CloudWatch
// (a local fake the real SDK talks to), Slack and webhooks (local receivers), and over
// HTTPS_PROXY's CONNECT tunnel a webhook and KMS on a loopback TLS server. A counting proxy on
// loopback sees each request. Every endpoint here is 127.0.0.1, which a client would otherwise
// reach directly only if NO_PROXY says so: each test sets NO_PROXY explicitly.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CountingProxy, startCountingProxy } from './helpers/counting-proxy.ts';
import { type FakeAws, fakeAwsEnv, type Receiver, startFakeAws, startReceiver } from './helpers/fake-aws.ts';
import { createTestBucket, deleteTestBucket, s3CliEnv, s3TestConfig } from './helpers/s3.ts';
import { diffTrees, isolatedEnv, json, runCli, tempDir } from './helpers/tree.ts';

const work = tempDir('proxy');
let proxy: CountingProxy;
let fake: FakeAws;
let rx: Receiver;
let tls: { server: https.Server; url: string; posts: { path: string; target: string }[]; ca: string };

/** A TLS server on 127.0.0.1 with a certificate made now, trusted by the CLI through NODE_EXTRA_CA_CERTS. */
async function startTlsReceiver(): Promise<typeof tls> {
  const key = path.join(work, 'tls.key');
  const cert = path.join(work, 'tls.crt');
  const r = spawnSync('openssl', [
    ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1'],
    ...['-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
  ]);
  assert.equal(r.status, 0, String(r.stderr));
  const posts: { path: string; target: string }[] = [];
  const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    req.resume();
    req.on('end', () => {
      posts.push({ path: req.url ?? '', target: String(req.headers['x-amz-target'] ?? '') });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  return { server, url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, posts, ca: cert };
}

before(async () => {
  proxy = await startCountingProxy();
  fake = await startFakeAws();
  rx = await startReceiver();
  tls = await startTlsReceiver();
});
after(async () => {
  await proxy.close();
  await fake.close();
  await rx.close();
  await new Promise((r) => tls.server.close(r));
  fs.rmSync(work, { recursive: true, force: true });
});

const hostPort = (url: string) => {
  const u = new URL(url);
  return `${u.hostname}:${u.port || (u.protocol === 'https:' ? 443 : 80)}`;
};

function workspace(label: string) {
  const dir = fs.mkdtempSync(path.join(work, `${label}-`));
  const src = path.join(dir, 'data');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n'.repeat(1000));
  fs.writeFileSync(path.join(src, 'b.bin'), Buffer.alloc(200_000, 3));
  return { dir, src, env: isolatedEnv(path.join(dir, 'home'), { S3BACKUP_LOG_DIR: path.join(dir, 'logs') }) };
}

describe('S3 through HTTP_PROXY (Ceph)', () => {
  test('backup and restore go through the proxy; NO_PROXY naming the endpoint goes direct', async () => {
    const bucket = await createTestBucket('proxy');
    try {
      const w = workspace('s3');
      const s3 = hostPort(s3TestConfig().endpoint);
      const repo = `s3://${bucket}/host1`;
      const env = { ...w.env, ...s3CliEnv(), HTTP_PROXY: proxy.url, NO_PROXY: 'example.invalid' };
      const b = await runCli(['backup', w.src, '--repo', repo, '--json'], { env });
      assert.equal(b.code, 0, b.stderr);
      const viaProxy = proxy.to(s3);
      assert.ok(
        viaProxy.some((r) => r.kind === 'forward' && r.method === 'PUT' && r.path.startsWith(`/${bucket}/host1/`)),
        JSON.stringify(viaProxy.map((r) => `${r.method} ${r.path}`)),
      );
      const target = path.join(w.dir, 'restored');
      const r = await runCli(['restore', json(b.stdout).id, '--repo', repo, '--target', target], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(diffTrees(w.src, path.join(target, 'data')), []);
      assert.ok(proxy.to(s3).some((x) => x.method === 'GET' && x.path.startsWith(`/${bucket}/host1/`)));

      const seen = proxy.to(s3).length;
      for (const noProxy of [s3, '127.0.0.1', 'localhost,127.0.0.1']) {
        const direct = await runCli(['backup', w.src, '--repo', repo, '--no-forget'], { env: { ...env, NO_PROXY: noProxy } });
        assert.equal(direct.code, 0, direct.stderr);
      }
      // Lower-case names work too (and win, as in curl).
      const lower = await runCli(['list', '--repo', repo], { env: { ...env, NO_PROXY: '', no_proxy: s3 } });
      assert.equal(lower.code, 0, lower.stderr);
      assert.equal(proxy.to(s3).length, seen, 'no request through the proxy when NO_PROXY names the endpoint');
    } finally {
      await deleteTestBucket(bucket);
    }
  });

  test('a proxy variable that is not a URL is a configuration error naming it', async () => {
    const w = workspace('bad');
    const r = await runCli(['list', '--repo', 's3://some-bucket/x'], {
      env: { ...w.env, ...s3CliEnv(), HTTPS_PROXY: 'proxy.example:3128' },
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /HTTPS_PROXY is not an http:\/\/ or https:\/\/ URL/);
  });
});

describe('notifications, metrics and KMS through the proxy', () => {
  test('SNS, CloudWatch, Slack and webhook requests go through HTTP_PROXY', async () => {
    const w = workspace('notify');
    fake.publishes.length = 0;
    fake.puts.length = 0;
    rx.reset();
    const env = {
      ...w.env,
      ...fakeAwsEnv(fake),
      SNS_TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:backups',
      CLOUDWATCH_NAMESPACE: 'S3Backup',
      SLACK_WEBHOOK_URL: `${rx.url}/services/T0/B0/token`,
      WEBHOOK_URL: `${rx.url}/hook`,
      HTTP_PROXY: proxy.url,
      NO_PROXY: 'example.invalid',
    };
    const before = proxy.requests.length;
    const r = await runCli(['backup', w.src, '--repo', path.join(w.dir, 'repo'), '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const mine = proxy.requests.slice(before);
    const toFake = mine.filter((x) => x.target === hostPort(fake.url));
    assert.ok(
      toFake.some((x) => x.headers['x-amz-target'] === 'GraniteServiceVersion20100801.PutMetricData'),
      'CloudWatch',
    );
    assert.ok(
      toFake.some((x) => String(x.headers['content-type']).startsWith('application/x-www-form-urlencoded')),
      'SNS',
    );
    // fetch (Slack, webhook) tunnels with CONNECT even to an http:// URL: one tunnel or two (keep-alive).
    const toRx = mine.filter((x) => x.target === hostPort(rx.url));
    assert.ok(toRx.length >= 1 && toRx.every((x) => x.kind === 'connect'), JSON.stringify(toRx));
    assert.equal(fake.publishes.length, 1);
    assert.equal(fake.puts.length, 1);
    assert.equal(rx.posts.length, 2);
  });

  test('over HTTPS_PROXY: a CONNECT tunnel to an https webhook and to KMS', async () => {
    const w = workspace('connect');
    const env = {
      ...w.env,
      NODE_EXTRA_CA_CERTS: tls.ca,
      WEBHOOK_URL: `${tls.url}/hook`,
      HTTPS_PROXY: proxy.url,
      NO_PROXY: 'example.invalid',
    };
    const before = proxy.requests.length;
    const r = await runCli(['backup', w.src, '--repo', path.join(w.dir, 'repo')], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      tls.posts.map((p) => p.path),
      ['/hook'],
    );
    // KMS: the TLS server is no KMS (its answer is refused), but the request reached it through the tunnel.
    const init = await runCli(['init', '--repo', path.join(w.dir, 'kms-repo'), '--kms-key-id', 'alias/backups'], {
      env: { ...env, ...fakeAwsEnv(fake), AWS_ENDPOINT_URL_KMS: tls.url },
    });
    assert.notEqual(init.code, 0);
    assert.ok(
      tls.posts.some((p) => p.target === 'TrentService.GenerateDataKey'),
      JSON.stringify(tls.posts),
    );
    const tunnels = proxy.requests.slice(before).filter((x) => x.kind === 'connect' && x.target === hostPort(tls.url));
    assert.ok(tunnels.length >= 2, `a tunnel for the webhook and one for KMS: ${tunnels.length}`);
  });
});
