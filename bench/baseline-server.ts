/**
 * The "ceiling" of the benchmark: a bare Fastify 5 server answering GET / with a
 * fixed small JSON envelope. Started by bench/run.ts as a child process (the same
 * `node --import tsx` launcher as smartproc, so the RSS figures compare fairly).
 *
 * PORT (default 0 = any free port), HOST is always 127.0.0.1.
 * Prints `listening on http://127.0.0.1:<port>` once ready.
 */
import Fastify from 'fastify';

const app = Fastify({ logger: false });
const answer = { success: true, data: { ok: true } };
app.get('/', async () => answer);

const address = await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
console.log(`listening on ${address}`);

let closing = false;
const close = () => {
  if (closing) return;
  closing = true;
  const timer = setTimeout(() => process.exit(1), 5_000);
  timer.unref();
  void app.close().then(() => process.exit(0));
};
process.once('SIGTERM', close);
process.once('SIGINT', close);
