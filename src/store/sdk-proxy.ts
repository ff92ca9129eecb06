import * as http from 'node:http';
import * as https from 'node:https';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { proxyAgentOptions } from './proxy.ts';

// Apart from proxy.ts, which every command loads (fetch, S3 agents): this one loads the AWS
// SDK's HTTP handler, which only the clients that already load the SDK need.

/**
 * The request handler for an AWS SDK client (SNS, CloudWatch, KMS) through the proxy; no
 * option (the SDK's own handler) when no proxy is set.
 */
export function sdkProxyOptions(env: NodeJS.ProcessEnv = process.env): { requestHandler?: NodeHttpHandler } {
  const proxy = proxyAgentOptions(env);
  if (!proxy.proxyEnv) return {};
  const opts = { keepAlive: true, ...proxy };
  return { requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent(opts), httpsAgent: new https.Agent(opts) }) };
}
