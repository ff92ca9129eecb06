import * as http from 'node:http';
import { UsageError } from '../errors.ts';

// HTTP(S) proxies from the environment, the curl convention: HTTPS_PROXY for https:// requests,
// HTTP_PROXY for http:// ones (lower-case names too, which win), NO_PROXY a comma-separated
// list of hosts (host, host:port, .domain, *) reached directly. Node's own agents implement
// it (proxyEnv): plain http:// requests are sent to the proxy in absolute form, https:// ones
// go through a CONNECT tunnel, so TLS stays end to end. Every request the tool makes uses such
// an agent: S3 (s3-network.ts), SNS, CloudWatch and KMS (sdk-proxy.ts), Slack and webhooks
// (fetch, through proxyFetches).

const PROXY_VARIABLES = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY'] as const;

/** The proxy variables set (and not empty) in `env`. */
function proxiesSet(env: NodeJS.ProcessEnv): string[] {
  return PROXY_VARIABLES.filter((v) => env[v]);
}

/**
 * The agent options that make an agent honour the proxy variables: none when no proxy is set.
 * A proxy that is not a URL is a configuration error naming the variable (its value is not
 * shown: it may carry a user and password).
 */
export function proxyAgentOptions(env: NodeJS.ProcessEnv = process.env): { proxyEnv?: NodeJS.ProcessEnv } {
  const set = proxiesSet(env);
  if (set.length === 0) return {};
  for (const v of set) {
    const url = URL.canParse(env[v]!) ? new URL(env[v]!) : undefined;
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new UsageError(`${v} is not an http:// or https:// URL`, { hint: `e.g. ${v}=http://proxy.example:3128` });
    }
  }
  return { proxyEnv: { ...env } };
}

let fetchProxied = false;

/**
 * Make fetch (Slack, webhooks) go through the proxy: Node's fetch reads the variables only at
 * start-up, and only with NODE_USE_ENV_PROXY set; this sets its dispatcher once per process.
 */
export function proxyFetches(env: NodeJS.ProcessEnv = process.env): void {
  if (fetchProxied || !proxyAgentOptions(env).proxyEnv) return;
  fetchProxied = true;
  http.setGlobalProxyFromEnv(env);
}
