import pg from 'pg';
import { Redis } from 'ioredis';

/** The PostgreSQL and Redis the tests use, and why a test that needs one must skip. */
export const TEST_POSTGRES_URL = process.env.SMARTPROC_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env.SMARTPROC_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

const masked = (url: string) => url.replace(/:[^:@/]*@/, ':***@');

/** Why a PostgreSQL test must skip (naming the URL, password masked), or false. */
export async function postgresProblem(url: string = TEST_POSTGRES_URL): Promise<string | false> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('select 1');
    return false;
  } catch (error) {
    return `needs PostgreSQL at ${masked(url)} (set SMARTPROC_TEST_DATABASE_URL): ${error instanceof Error ? error.message : String(error)}`;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Null when Redis answers PING, else why not. */
export async function redisProblem(url: string = TEST_REDIS_URL): Promise<string | null> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 1500, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const pong = await redis.ping();
    return pong === 'PONG' ? null : `PING answered ${pong}`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    redis.disconnect();
  }
}
