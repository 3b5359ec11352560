import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { redisProblem as sharedRedisProblem } from '../../helpers/services.js';

export const REDIS_URL = process.env.SMARTPROC_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/** Null when Redis answers PING, else why not (the Redis specs are skipped then). */
export const redisProblem = (url = REDIS_URL) => sharedRedisProblem(url);

/** A key prefix of our own on the shared Redis (never flushed: keys are deleted by prefix at the end). */
export function testPrefix(name: string): string {
  return `smartproc-test:${name}:${randomBytes(4).toString('hex')}`;
}

export async function deleteByPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
}

export function client(url = REDIS_URL): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 2, enableOfflineQueue: true });
  redis.on('error', () => {});
  return redis;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A private redis-server of this test (so that it can be killed): null when none is installed. */
export async function startPrivateRedis(onPort?: number): Promise<{ url: string; port: number; child: ChildProcess; stop(): Promise<void> } | null> {
  const port = onPort ?? (await freePort());
  let child: ChildProcess;
  try {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  const failed = await new Promise<boolean>((resolve) => {
    child.once('error', () => resolve(true));
    const deadline = Date.now() + 5000;
    const probe = () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) resolve(true);
        else setTimeout(probe, 50);
      });
    };
    probe();
  });
  if (failed) {
    child.kill('SIGKILL');
    return null;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
