import type { Kysely } from 'kysely';
import type { Database } from './tables.js';
import type { Runner } from './repository.js';

/** What the batch needs of the SQLite connection: run a statement, and whether a transaction is open. */
export interface SqliteConnection {
  run<R>(query: { sql: string; parameters: readonly unknown[] }, parameters?: readonly unknown[]): R[];
  inTransaction(): boolean;
}

interface Job {
  work: (run: Runner) => Promise<unknown>;
  committed?: (value: unknown) => void;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** How long one write's `work` may run inside the batch before it is taken for stuck. */
export const SELF_WAIT_LIMIT_MS = 1000;

export class BatchSelfWaitError extends Error {
  constructor() {
    super(
      `A write in the SQLite write batch did not finish within ${SELF_WAIT_LIMIT_MS} ms: it awaited something that waits for the batch itself ` +
        '(a query outside the runner it was given, or another store.write). Build statements with Kysely and run them through the write\'s runner (see write-batch.ts).',
    );
    this.name = 'BatchSelfWaitError';
  }
}

/** Writes per transaction at most: a bound on how long one batch holds the connection. */
export const MAX_BATCH = 64;

const statement = (sql: string) => ({ sql, parameters: [] as unknown[] });
const BEGIN = statement('begin immediate');
const COMMIT = statement('commit');
const ROLLBACK = statement('rollback');
const SAVEPOINT = statement('savepoint write');
const RELEASE = statement('release write');
const ROLLBACK_TO = statement('rollback to write');

/**
 * Group commit for the SQLite store.
 *
 * SQLite has one writer, and on this store the cost of a small write is mostly the
 * transaction around it (taking the write lock, appending to the WAL, committing).
 * Writes submitted during one turn of the event loop are therefore run one after the
 * other in one transaction, each inside its own savepoint:
 *
 * - a write that fails is rolled back to its savepoint and gets its own error; the
 *   others are not affected by it;
 * - a write's promise settles only after the COMMIT: an answer never reports data
 *   that is not stored;
 * - if the COMMIT (or SQLite itself) fails, nothing of the batch is stored and every
 *   write of the batch gets that error;
 * - `committed` callbacks run synchronously right after the COMMIT, in submission
 *   order, before any other request can run (cache upkeep goes there).
 *
 * The statements run on the raw connection (no Kysely layers per statement) while the
 * batch holds Kysely's connection, so Kysely's own queries wait for the batch instead
 * of running inside its transaction. A write's `work` must use only the `run` it is
 * given; awaiting a Kysely query (or another `submit`) inside it would wait for the batch
 * itself. A write is a few synchronous statements, so one still running after
 * SELF_WAIT_LIMIT_MS is taken for that mistake: it fails with BatchSelfWaitError, is
 * rolled back to its savepoint, its runner refuses any further statement, and the batch
 * goes on — the store fails loudly instead of hanging. (One timer per batch, no
 * per-request async hooks: AsyncLocalStorage made every request measurably slower.)
 */
export class WriteBatch {
  /** Counts the batches' transactions: writes that see the same number share one transaction (and SQLite's write lock). */
  transactionNumber = 0;
  private queue: Job[] = [];
  private scheduled = false;
  private flushing = false;
  /** Told the number of writes of each transaction (GET /metrics). */
  onBatch: ((writes: number) => void) | null = null;

  constructor(private readonly db: Kysely<Database>, private readonly connection: SqliteConnection) {}

  submit<T>(work: (run: Runner) => Promise<T>, committed?: (value: T) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, committed: committed as Job['committed'], resolve: resolve as Job['resolve'], reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    this.flushing = true;
    const jobs = this.queue.splice(0, MAX_BATCH);
    try {
      await this.db.connection().execute(() => this.runBatch(jobs));
    } catch (error) {
      // The connection could not be had (the store is closing): nothing ran.
      for (const job of jobs) job.reject(error);
    } finally {
      this.flushing = false;
      if (this.queue.length) this.schedule();
    }
  }

  private async runBatch(jobs: Job[]): Promise<void> {
    // A lone write needs no savepoint: its failure rolls back the whole transaction.
    const alone = jobs.length === 1;
    const outcomes: Outcome[] = [];
    const watchdog = new Watchdog();
    try {
      this.connection.run(BEGIN);
      this.transactionNumber++;
      this.onBatch?.(jobs.length);
      for (const job of jobs) {
        if (!alone) this.connection.run(SAVEPOINT);
        const turn = watchdog.start();
        const run: Runner = (query, parameters) => {
          if (turn.stuck) throw new BatchSelfWaitError();
          return this.connection.run(query, parameters);
        };
        try {
          outcomes.push({ ok: true, value: await Promise.race([job.work(run), turn.abandoned]) });
          watchdog.end();
          if (!alone) this.connection.run(RELEASE);
        } catch (error) {
          watchdog.end();
          // SQLite may have ended the transaction itself (a full disk, for one): then the batch is lost.
          if (alone || !this.connection.inTransaction()) throw error;
          this.connection.run(ROLLBACK_TO);
          this.connection.run(RELEASE);
          outcomes.push({ ok: false, error });
        }
      }
      watchdog.finish();
      this.connection.run(COMMIT);
    } catch (error) {
      watchdog.finish();
      if (this.connection.inTransaction()) this.connection.run(ROLLBACK);
      // Nothing of the batch is stored; a write that had failed on its own keeps its own error.
      jobs.forEach((job, i) => job.reject(outcomes[i] && !outcomes[i].ok ? (outcomes[i] as { error: unknown }).error : error));
      return;
    }
    jobs.forEach((job, i) => {
      const outcome = outcomes[i];
      if (!outcome.ok) return job.reject(outcome.error);
      try {
        job.committed?.(outcome.value);
      } catch {
        // Upkeep after the COMMIT (a cache) must not turn a stored write into a failure,
        // nor keep the next writes of the batch from being answered.
      }
      job.resolve(outcome.value);
    });
  }
}

/** One write's turn in the batch: `stuck` turns true, and `abandoned` rejects, if it runs past the limit. */
interface Turn {
  stuck: boolean;
  abandoned: Promise<never>;
}

/**
 * One timer per batch, re-armed for the write that is running, and one `abandoned`
 * promise shared by the writes of a batch until one is abandoned (then a new one): the
 * common path adds a flag and a Promise.race per write, nothing per request.
 */
class Watchdog {
  private timer: NodeJS.Timeout | null = null;
  private current: { turn: Turn; startedAt: number } | null = null;
  private abandoned!: Promise<never>;
  private abandon!: (error: Error) => void;

  constructor() {
    this.arm();
  }

  private arm(): void {
    this.abandoned = new Promise<never>((_, reject) => (this.abandon = reject));
    // Never left unhandled: Promise.race listens to it while a write runs.
    this.abandoned.catch(() => undefined);
  }

  start(): Turn {
    const turn: Turn = { stuck: false, abandoned: this.abandoned };
    this.current = { turn, startedAt: Date.now() };
    this.timer ??= setTimeout(() => this.check(), SELF_WAIT_LIMIT_MS);
    return turn;
  }

  /** The running write settled (the timer stays for the next one). */
  end(): void {
    this.current = null;
  }

  /** The batch is over. */
  finish(): void {
    this.current = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private check(): void {
    this.timer = null;
    const current = this.current;
    if (!current) return;
    const left = current.startedAt + SELF_WAIT_LIMIT_MS - Date.now();
    if (left > 0) {
      this.timer = setTimeout(() => this.check(), left);
      return;
    }
    current.turn.stuck = true;
    this.abandon(new BatchSelfWaitError());
    this.arm();
  }
}
