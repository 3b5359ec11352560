/**
 * Lets one log line through per interval and counts the ones held back, so that a
 * storm of the same failure (every request while the store is down, every idle
 * connection of the pool at once) is one line per interval, not one per event.
 */
export class LogThrottle {
  private last = -Infinity;
  private held = 0;

  constructor(private readonly intervalMs = 10_000) {}

  /** null: hold this one back; otherwise log it, with the number held back since the last. */
  pass(now = Date.now()): number | null {
    if (now - this.last < this.intervalMs) {
      this.held++;
      return null;
    }
    this.last = now;
    const held = this.held;
    this.held = 0;
    return held;
  }
}

/** The part of a pino logger that the store and the Redis connection use. */
export interface WarnLog {
  warn(object: object, message: string): void;
  info(object: object, message: string): void;
}

/** Before a server logger exists (CLI, migrations): one line on stderr. */
export const stderrLog: WarnLog = {
  warn: (object, message) => process.stderr.write(`warning: ${message}${'err' in object ? ` (${String((object as { err: unknown }).err)})` : ''}\n`),
  info: () => {},
};
