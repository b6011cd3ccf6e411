import { PGlite, types } from '@electric-sql/pglite';
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
} from 'kysely';

/**
 * The embedded adapter: PGlite (PostgreSQL compiled to WASM) behind Kysely. PGlite has one connection, so the
 * driver hands it out to one holder at a time; a transaction therefore never interleaves with another
 * request's statements. Kysely ships no PGlite dialect, and the community one lags PGlite's releases, so this
 * one is small and ours.
 */
export function openPglite(dataDir: string | undefined): PGlite {
  // bigint columns come back as strings, as they do from `pg`, so both adapters return the same rows.
  const parsers = { [types.INT8]: (value: string) => value };
  return dataDir === undefined ? new PGlite({ parsers }) : new PGlite(dataDir, { parsers });
}

export class PgliteDialect implements Dialect {
  readonly #pglite: PGlite;

  constructor(pglite: PGlite) {
    this.#pglite = pglite;
  }

  createDriver(): Driver {
    return new PgliteDriver(this.#pglite);
  }

  createQueryCompiler(): PostgresQueryCompiler {
    return new PostgresQueryCompiler();
  }

  createAdapter(): PostgresAdapter {
    return new PostgresAdapter();
  }

  createIntrospector(db: Kysely<unknown>): PostgresIntrospector {
    return new PostgresIntrospector(db);
  }
}

class PgliteDriver implements Driver {
  readonly #connection: PgliteConnection;
  #queue: Promise<void> = Promise.resolve();

  constructor(pglite: PGlite) {
    this.#connection = new PgliteConnection(pglite);
  }

  async init(): Promise<void> {
    await this.#connection.pglite.waitReady;
  }

  /** Waits for the single connection; released in `releaseConnection`. */
  async acquireConnection(): Promise<DatabaseConnection> {
    let release: () => void = () => undefined;
    const previous = this.#queue;
    this.#queue = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    this.#connection.release = release;
    return this.#connection;
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('BEGIN'));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('COMMIT'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('ROLLBACK'));
  }

  async releaseConnection(): Promise<void> {
    const release = this.#connection.release;
    this.#connection.release = undefined;
    release?.();
  }

  async destroy(): Promise<void> {
    await this.#queue;
    if (!this.#connection.pglite.closed) await this.#connection.pglite.close();
  }
}

class PgliteConnection implements DatabaseConnection {
  readonly pglite: PGlite;
  release: (() => void) | undefined;

  constructor(pglite: PGlite) {
    this.pglite = pglite;
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const parameters = compiledQuery.parameters as unknown[];
    // Statements without parameters may hold several commands (migrations): the simple protocol runs them.
    if (parameters.length === 0 && /;\s*\S/.test(compiledQuery.sql)) {
      const results = await this.pglite.exec(compiledQuery.sql);
      const last = results.at(-1);
      return { rows: (last?.rows ?? []) as R[] };
    }
    const result = await this.pglite.query<R>(compiledQuery.sql, parameters);
    const affected = result.affectedRows;
    return affected === undefined ? { rows: result.rows } : { rows: result.rows, numAffectedRows: BigInt(affected) };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('PGlite adapter does not stream queries');
  }
}
