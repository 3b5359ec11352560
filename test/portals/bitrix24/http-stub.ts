import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  json: any;
}

export type StubHandler = (request: StubRequest, res: http.ServerResponse) => void | Promise<void>;

export interface Stub {
  base: string;
  port: number;
  requests: StubRequest[];
  close(): Promise<void>;
}

/** A tiny HTTP server on 127.0.0.1:0; records every request (body parsed as JSON when it is). */
export async function startStub(handler: StubHandler): Promise<Stub> {
  const requests: StubRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json: any;
      try {
        json = body ? JSON.parse(body) : undefined;
      } catch {
        json = undefined;
      }
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, json };
      requests.push(request);
      Promise.resolve(handler(request, res)).catch((error) => {
        res.statusCode = 599;
        res.end(String(error));
      });
    });
  });
  server.keepAliveTimeout = 500;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers JSON with a status. */
export function reply(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/html' : 'application/json', ...headers });
  res.end(text);
}

export const TIME = { start: 1724916859.42, finish: 1724916859.47, duration: 0.05, processing: 0.01, date_start: '2024-08-29T10:34:19+03:00', date_finish: '2024-08-29T10:34:19+03:00', operating: 0, operating_reset_at: 1724917459 };

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
