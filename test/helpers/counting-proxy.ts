// A small HTTP proxy on loopback for the proxy tests: it forwards plain http:// requests sent in
// absolute form (what a client does with HTTP_PROXY) and tunnels CONNECT (HTTPS_PROXY), and
// records each one: how it came (forward or connect), its target host:port, method and path
// (a tunnel's path and method are the TLS client's secret: only "CONNECT" and the target).
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface ProxiedRequest {
  kind: 'forward' | 'connect';
  /** host:port the client asked for. */
  target: string;
  method: string;
  /** The path of a forwarded request; empty for a tunnel. */
  path: string;
  headers: http.IncomingHttpHeaders;
}

export interface CountingProxy {
  url: string;
  requests: ProxiedRequest[];
  /** The requests to one host:port. */
  to(target: string): ProxiedRequest[];
  close(): Promise<void>;
}

export async function startCountingProxy(): Promise<CountingProxy> {
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    if (!req.url || !/^http:\/\//.test(req.url)) {
      res.writeHead(400).end('a proxy takes absolute-form requests');
      return;
    }
    const url = new URL(req.url);
    const target = `${url.hostname}:${url.port || 80}`;
    requests.push({ kind: 'forward', target, method: req.method ?? '', path: url.pathname + url.search, headers: req.headers });
    const headers = { ...req.headers };
    delete headers['proxy-connection'];
    const upstream = http.request(
      { host: url.hostname, port: url.port || 80, method: req.method, path: url.pathname + url.search, headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('connect', (req, client: net.Socket, head: Buffer) => {
    const target = req.url ?? '';
    requests.push({ kind: 'connect', target, method: 'CONNECT', path: '', headers: req.headers });
    const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    const upstream = net.connect(port, host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    to: (target) => requests.filter((r) => r.target === target),
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
