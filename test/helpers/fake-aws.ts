// A local stand-in for Amazon SNS and CloudWatch, which have no local server: a node:http
// server on 127.0.0.1 that speaks their wire protocols (SNS: the query protocol, form-encoded
// in, XML out; CloudWatch: JSON 1.0 with X-Amz-Target, gzip when the SDK compresses) so that
// the real AWS SDK talks to it through AWS_ENDPOINT_URL_SNS / AWS_ENDPOINT_URL_CLOUDWATCH.
// It records what the SDK sent, decoded, for the tests to check.
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export interface SnsPublish {
  TopicArn: string;
  Subject?: string;
  Message: string;
  MessageAttributes: Record<string, { DataType: string; StringValue?: string }>;
  MessageGroupId?: string;
  MessageDeduplicationId?: string;
  authorization: string;
}

export interface CloudWatchPut {
  Namespace: string;
  MetricData: { MetricName: string; Value?: number; Unit?: string; Timestamp?: number; Dimensions?: { Name: string; Value: string }[] }[];
  authorization: string;
  contentType: string;
}

export interface FakeAws {
  url: string;
  publishes: SnsPublish[];
  puts: CloudWatchPut[];
  /** Requests seen, including failed ones. */
  requests: number;
  /** Answer the next n requests with HTTP 500 (transient) or 400 (permanent); Infinity: always. */
  failNext(n: number, status?: number): void;
  close(): Promise<void>;
}

/** The query protocol's flattened form: MessageAttributes.entry.1.Name=… → a record. */
function parseSnsForm(form: URLSearchParams): Omit<SnsPublish, 'authorization'> {
  const attrs: SnsPublish['MessageAttributes'] = {};
  for (let i = 1; form.has(`MessageAttributes.entry.${i}.Name`); i++) {
    const p = `MessageAttributes.entry.${i}`;
    attrs[form.get(`${p}.Name`)!] = {
      DataType: form.get(`${p}.Value.DataType`)!,
      ...(form.has(`${p}.Value.StringValue`) ? { StringValue: form.get(`${p}.Value.StringValue`)! } : {}),
    };
  }
  return {
    TopicArn: form.get('TopicArn')!,
    ...(form.has('Subject') ? { Subject: form.get('Subject')! } : {}),
    Message: form.get('Message')!,
    MessageAttributes: attrs,
    ...(form.has('MessageGroupId') ? { MessageGroupId: form.get('MessageGroupId')! } : {}),
    ...(form.has('MessageDeduplicationId') ? { MessageDeduplicationId: form.get('MessageDeduplicationId')! } : {}),
  };
}

export async function startFakeAws(): Promise<FakeAws> {
  const fake: FakeAws = {
    url: '',
    publishes: [],
    puts: [],
    requests: 0,
    failNext(n, status = 500) {
      failures = n;
      failStatus = status;
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
  let failures = 0;
  let failStatus = 500;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      fake.requests++;
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      const target = String(req.headers['x-amz-target'] ?? '');
      const isCloudWatch = target.startsWith('GraniteServiceVersion20100801.');
      if (failures > 0) {
        failures--;
        if (isCloudWatch) {
          res.writeHead(failStatus, { 'content-type': 'application/x-amz-json-1.0' });
          res.end(
            JSON.stringify({ __type: failStatus >= 500 ? 'InternalServiceFault' : 'InvalidParameterValue', message: 'injected failure' }),
          );
        } else {
          res.writeHead(failStatus, { 'content-type': 'text/xml' });
          res.end(
            `<ErrorResponse><Error><Type>${failStatus >= 500 ? 'Receiver' : 'Sender'}</Type><Code>${failStatus >= 500 ? 'InternalError' : 'InvalidParameter'}</Code><Message>injected failure</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
          );
        }
        return;
      }
      const authorization = String(req.headers.authorization ?? '');
      if (isCloudWatch) {
        if (target !== 'GraniteServiceVersion20100801.PutMetricData') {
          res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' });
          res.end(JSON.stringify({ __type: 'UnknownOperationException' }));
          return;
        }
        fake.puts.push({ ...JSON.parse(body.toString('utf8')), authorization, contentType: String(req.headers['content-type']) });
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-requestid': randomUUID() });
        res.end('{}');
        return;
      }
      const form = new URLSearchParams(body.toString('utf8'));
      if (form.get('Action') !== 'Publish') {
        res.writeHead(400, { 'content-type': 'text/xml' });
        res.end(
          `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>${form.get('Action')}</Message></Error></ErrorResponse>`,
        );
        return;
      }
      fake.publishes.push({ ...parseSnsForm(form), authorization });
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(
        `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>${randomUUID()}</MessageId></PublishResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></PublishResponse>`,
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}

/** A local HTTP receiver (Slack, generic webhook): records each POST; status per request. */
export interface Receiver {
  url: string;
  posts: { path: string; headers: http.IncomingHttpHeaders; body: string }[];
  /** Status of the next answers (default 200 "ok"). */
  respond: (status: number, body?: string, times?: number) => void;
  /** Forget the posts and the queued answers. */
  reset(): void;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  let queue: { status: number; body: string }[] = [];
  const r: Receiver = {
    url: '',
    posts: [],
    respond(status, body = 'error', times = 1) {
      for (let i = 0; i < times; i++) queue.push({ status, body });
    },
    reset() {
      queue = [];
      r.posts.length = 0;
    },
    close: () => new Promise((res) => server.close(() => res())),
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      r.posts.push({ path: req.url ?? '', headers: req.headers, body });
      const next = queue.shift() ?? { status: 200, body: 'ok' };
      res.writeHead(next.status, { 'content-type': 'text/plain' });
      res.end(next.body);
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  queue = [];
  return r;
}

/** A loopback port with nothing listening (connection refused). */
export async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Environment for the real AWS SDK to reach the fake with made-up credentials. */
export function fakeAwsEnv(fake: FakeAws): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_SNS: fake.url,
    AWS_ENDPOINT_URL_CLOUDWATCH: fake.url,
    AWS_ACCESS_KEY_ID: 'AKIDFAKEFORTESTS',
    AWS_SECRET_ACCESS_KEY: 'fake-secret-for-tests',
    AWS_REGION: 'eu-west-1',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}
