import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';

/**
 * A private redis-server for one test, on a free port of 127.0.0.1, that the test may
 * kill -9 and start again on the same port. The shared Redis of the machine is never touched.
 */
export class PrivateRedis {
  private child: ChildProcess | null = null;

  private constructor(readonly port: number) {}

  /** Why the tests that need one must skip, or false. */
  static readonly unavailable: string | false = (() => {
    const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
    return probe.error || probe.status !== 0 ? `needs the redis-server binary on PATH to start a private Redis (${probe.error?.message ?? `exit ${probe.status}`})` : false;
  })();

  static async start(): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort());
    await redis.restart();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts (again) on the same port, empty, and waits until it answers PING. */
  async restart(): Promise<void> {
    if (this.running) return;
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
    this.child = child;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server on port ${this.port} exited with ${child.exitCode}`);
      const probe = new Redis(this.url, { lazyConnect: true, connectTimeout: 500, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
      probe.on('error', () => {});
      try {
        await probe.connect();
        if ((await probe.ping()) === 'PONG') return;
      } catch {
        /* not up yet */
      } finally {
        probe.disconnect();
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`redis-server on port ${this.port} did not answer PING within 10 s`);
  }

  /** kill -9: no goodbye to the clients. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** A client of this server for the test's own checks (fails fast when it is down). */
  client(): Redis {
    const client = new Redis(this.url, { maxRetriesPerRequest: 0, enableOfflineQueue: true, connectTimeout: 1000 });
    client.on('error', () => {});
    return client;
  }

  stop(): Promise<void> {
    return this.kill();
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
