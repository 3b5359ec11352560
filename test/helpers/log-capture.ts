import { Writable } from 'node:stream';

/** A logger configuration (pino options) whose lines are kept in `lines`, for specs that look at what was logged. */
export function captureLogs(level = 'trace'): { lines: string[]; logger: never } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, logger: { level, stream } as never };
}
