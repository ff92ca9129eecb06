import { proxyFetches } from '../store/proxy.ts';
import { VERSION } from '../version.ts';
import { DeliveryError } from './deliver.ts';

/** POST a JSON body; a non-2xx answer is an error (transient for 5xx, 429 and 408). */
export async function postJson(url: string, body: string, headers: Record<string, string>, signal: AbortSignal): Promise<void> {
  proxyFetches();
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': `s3backup/${VERSION}`, ...headers },
    body,
    signal,
    redirect: 'error', // a redirect would re-send the body somewhere the user did not configure
  });
  const text = await res.text().catch(() => '');
  if (res.ok) return;
  const status = res.status;
  const detail = text.replace(/\s+/g, ' ').trim().slice(0, 200);
  throw new DeliveryError(
    `HTTP ${status}${res.statusText ? ` ${res.statusText}` : ''}${detail ? `: ${detail}` : ''}`,
    status >= 500 || status === 429 || status === 408,
  );
}
