import type { AddressInfo } from 'node:net';
import type { Config } from '../config.js';

/** PUBLIC_URL, or http://HOST:PORT of the listening socket (the configured port before it listens). */
export function publicUrlOf(config: Pick<Config, 'publicUrl' | 'host' | 'port'>, address: AddressInfo | string | null): string {
  if (config.publicUrl) return config.publicUrl;
  const port = address && typeof address === 'object' ? address.port : config.port;
  let host = config.host;
  if (host === '0.0.0.0' || host === '::' || host === '') host = 'localhost';
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `http://${host}:${port}`;
}
