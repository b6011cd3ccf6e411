import type {
  CompiledQuery,
  DatabaseConnection,
  Dialect,
  DialectAdapter,
  Driver,
  Kysely,
  QueryCompiler,
  QueryResult,
  TransactionSettings,
  DatabaseIntrospector,
} from 'kysely';
import { currentContext } from '../observability/context.js';
import { withSqlComment } from '../observability/sql-comment.js';

/**
 * Statements sent to the database (round trips, BEGIN and COMMIT included) by this process: those made while
 * serving a request, and the rest (relay, projections, jobs). The benchmark divides them by the payments made.
 */
export const statementCounts = { request: 0, background: 0 };

export function countStatement(): void {
  if (currentContext() === undefined) statementCounts.background += 1;
  else statementCounts.request += 1;
}

/**
 * Wraps a dialect so every statement carries the request's correlation id as a trailing SQL comment, on
 * PostgreSQL and PGlite alike.
 */
export class CommentingDialect implements Dialect {
  readonly #inner: Dialect;

  constructor(inner: Dialect) {
    this.#inner = inner;
  }

  createDriver(): Driver {
    return new CommentingDriver(this.#inner.createDriver());
  }

  createQueryCompiler(): QueryCompiler {
    return this.#inner.createQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return this.#inner.createAdapter();
  }

  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return this.#inner.createIntrospector(db);
  }
}

class CommentingDriver implements Driver {
  readonly #inner: Driver;

  constructor(inner: Driver) {
    this.#inner = inner;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    return new CommentingConnection(await this.#inner.acquireConnection());
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    countStatement();
    return this.#inner.beginTransaction(unwrap(connection), settings);
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    countStatement();
    return this.#inner.commitTransaction(unwrap(connection));
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    countStatement();
    return this.#inner.rollbackTransaction(unwrap(connection));
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection(unwrap(connection));
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}

class CommentingConnection implements DatabaseConnection {
  readonly inner: DatabaseConnection;

  constructor(inner: DatabaseConnection) {
    this.inner = inner;
  }

  executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    countStatement();
    return this.inner.executeQuery<R>({ ...compiledQuery, sql: withSqlComment(compiledQuery.sql) });
  }

  streamQuery<R>(compiledQuery: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>({ ...compiledQuery, sql: withSqlComment(compiledQuery.sql) }, chunkSize);
  }
}

function unwrap(connection: DatabaseConnection): DatabaseConnection {
  return connection instanceof CommentingConnection ? connection.inner : connection;
}
