/** A few raw RESP commands, enough to tell whether Redis is there (no client library, no retries). */
import net from 'node:net';

export interface RedisTarget {
  host: string;
  port: number;
  password: string | null;
  db: number;
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** Parses redis://[:password@]host[:port][/db]; refuses hosts other than this machine. */
export function parseRedisUrl(url: string): RedisTarget | { problem: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { problem: `"${url}" is not a URL` };
  }
  if (parsed.protocol !== 'redis:') return { problem: `only redis:// URLs are benchmarked (got ${parsed.protocol})` };
  if (!LOCAL_HOSTS.has(parsed.hostname)) return { problem: `the benchmark only talks to this machine; ${parsed.hostname} is not 127.0.0.1` };
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
  return {
    host: parsed.hostname === 'localhost' ? '127.0.0.1' : parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port ? Number(parsed.port) : 6379,
    password: parsed.password ? decodeURIComponent(parsed.password) : null,
    db: Number.isInteger(db) ? db : 0,
  };
}

function encode(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/**
 * Sends the commands in one connection and returns the first line of each reply
 * (e.g. "+PONG", ":123", "-NOAUTH ..."). Rejects on connection problems or after timeoutMs.
 */
export function redisCommands(target: RedisTarget, commands: string[][], timeoutMs = 2_000): Promise<string[]> {
  const all = [...(target.password ? [['AUTH', target.password]] : []), ...(target.db ? [['SELECT', String(target.db)]] : []), ...commands];
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port });
    let buffer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${target.host}:${target.port} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('connect', () => socket.write(all.map(encode).join('')));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      // Only simple replies are expected here (+OK, :n, -ERR); a bulk reply counts its header line.
      const lines = buffer.split('\r\n').filter((l, i, a) => i < a.length - 1);
      const replies = lines.filter((l) => /^[+\-:$*]/.test(l));
      if (replies.length >= all.length) {
        clearTimeout(timer);
        socket.end();
        resolve(replies.slice(all.length - commands.length, all.length));
      }
    });
  });
}
