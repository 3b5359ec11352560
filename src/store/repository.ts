import type { Compilable, CompiledQuery } from 'kysely';
import type { Db } from './tables.js';

/**
 * Runs one compiled statement and gives its rows. Repositories build statements with
 * Kysely and run them through a Runner: Kysely's own executor (a pool or a
 * transaction), or, inside a SQLite write batch, the SQLite connection directly.
 */
export type Runner = <R>(query: CompiledQuery, parameters?: readonly unknown[]) => Promise<R[]> | R[];

export function kyselyRunner(db: Db): Runner {
  return async <R>(query: CompiledQuery, parameters?: readonly unknown[]) => (await db.executeQuery<R>(parameters ? { ...query, parameters } : query)).rows;
}

/** A repository builds its statements with `db` and runs them through `runner` (Kysely's executor unless a write batch gives another). */
export abstract class Repository {
  constructor(protected readonly db: Db, protected readonly runner: Runner = kyselyRunner(db)) {}

  protected rows<R>(query: Compilable): Promise<R[]> | R[] {
    return this.runner<R>(query.compile());
  }
}
