import { CompiledQuery, Kysely, Migrator, PostgresDialect, sql, type Dialect, type MigrationResultSet } from 'kysely';
import pg from 'pg';
import { CommentingDialect, countStatement } from './commenting-dialect.js';
import { migrationProvider } from './migrations/index.js';
import { openPglite, PgliteDialect } from './pglite.js';
import { restrictTree } from './data-dir.js';
import type { KeelDatabase } from './schema.js';

/**
 * The storage port. Both adapters are real PostgreSQL engines behind one Kysely instance: `pg` against a server
 * (production, CI) and PGlite in-process (embedded mode). Modules see only `Database`.
 */
export interface Database {
  readonly db: Kysely<KeelDatabase>;
  readonly engine: 'postgres' | 'pglite';
  /** The PostgreSQL schema Keel's tables live in, when not the default. */
  readonly schema: string | undefined;
  ping(): Promise<void>;
  close(): Promise<void>;
  /** The connection pool's state (PostgreSQL); undefined for the embedded engine, which has one connection. */
  pool(): { total: number; idle: number; waiting: number } | undefined;
  /** Hot statements compiled once, run on their own (each its own transaction). */
  readonly statements: PreparedStatements;
}

/**
 * A statement whose text never changes, run outside any transaction (it commits by itself): on PostgreSQL a
 * named prepared statement, parsed and planned once per connection; on PGlite the same text through its one
 * connection. The text carries no correlation-id comment (it would make every text unique); the hot statements
 * write the correlation id as a bound parameter instead, which PostgreSQL's statement log prints.
 */
export interface PreparedStatements {
  run<R>(name: string, text: string, values: readonly unknown[]): Promise<R[]>;
}

export interface DatabaseOptions {
  /** `postgres://…`; absent selects embedded PGlite. */
  readonly url?: string | undefined;
  /** PGlite data directory; absent with no url means an in-memory database. */
  readonly dataDir?: string | undefined;
  /** PostgreSQL schema to use (tests isolate themselves in one); created if missing. */
  readonly schema?: string | undefined;
  readonly poolSizeMax?: number;
  readonly statementTimeoutMs?: number;
  readonly lockTimeoutMs?: number;
  readonly poolAcquireTimeoutMs?: number;
  /** `application_name` of every session, so operators (and tests) can tell Keel's connections apart. */
  readonly applicationName?: string | undefined;
}

export const databaseDefaults = {
  poolSizeMax: 20,
  statementTimeoutMs: 5_000,
  lockTimeoutMs: 1_000,
  poolAcquireTimeoutMs: 2_000,
  idleInTransactionTimeoutMs: 10_000,
} as const;

const schemaNamePattern = /^[a-z_][a-z0-9_]{0,62}$/;

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.url === undefined) return openEmbedded(options);
  return openPostgres(options.url, options);
}

async function openPostgres(url: string, options: DatabaseOptions): Promise<Database> {
  const schema = options.schema;
  if (schema !== undefined && !schemaNamePattern.test(schema)) throw new Error(`invalid schema name ${schema}`);
  if (schema !== undefined) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    } finally {
      await client.end();
    }
  }
  const sessionSettings = [
    `-c statement_timeout=${options.statementTimeoutMs ?? databaseDefaults.statementTimeoutMs}`,
    `-c lock_timeout=${options.lockTimeoutMs ?? databaseDefaults.lockTimeoutMs}`,
    `-c idle_in_transaction_session_timeout=${databaseDefaults.idleInTransactionTimeoutMs}`,
    ...(schema === undefined ? [] : [`-c search_path=${schema}`]),
  ];
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSizeMax ?? databaseDefaults.poolSizeMax,
    connectionTimeoutMillis: options.poolAcquireTimeoutMs ?? databaseDefaults.poolAcquireTimeoutMs,
    options: sessionSettings.join(' '),
    application_name: options.applicationName ?? 'keel',
  });
  // A connection that dies while idle (server restart, pg_terminate_backend) is dropped from the pool; the
  // next query opens a new one. Without this handler the error would end the process.
  pool.on('error', () => undefined);
  // The same for a connection that dies while a query runs: the query rejects with the error (a 503 for the
  // request), and the pool discards the connection when it comes back; the client's own 'error' event must
  // still be heard, or it would end the process.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  const db = new Kysely<KeelDatabase>({ dialect: new CommentingDialect(new PostgresDialect({ pool })) });
  const statements: PreparedStatements = {
    async run<R>(name: string, text: string, values: readonly unknown[]) {
      countStatement();
      const result = await pool.query({ name, text, values: [...values] });
      return result.rows as R[];
    },
  };
  return {
    db,
    statements,
    engine: 'postgres',
    schema,
    ping: async () => {
      await sql`SELECT 1`.execute(db);
    },
    close: async () => {
      await db.destroy();
    },
    pool: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
  };
}

async function openEmbedded(options: DatabaseOptions): Promise<Database> {
  const pglite = openPglite(options.dataDir);
  await pglite.waitReady;
  const { dataDir } = options;
  // The engine's files hold every payment and secret: readable by Keel's user only (see data-dir.ts).
  if (dataDir !== undefined) restrictTree(dataDir);
  const dialect: Dialect = new CommentingDialect(new PgliteDialect(pglite));
  const db = new Kysely<KeelDatabase>({ dialect });
  const statements: PreparedStatements = {
    async run<R>(_name: string, text: string, values: readonly unknown[]) {
      // Through Kysely's driver, which hands out the one connection in turn (never inside another's transaction).
      const result = await db.executeQuery<R>(CompiledQuery.raw(text, [...values]));
      return [...result.rows];
    },
  };
  return {
    db,
    statements,
    engine: 'pglite',
    schema: undefined,
    ping: async () => {
      await sql`SELECT 1`.execute(db);
    },
    close: async () => {
      await db.destroy();
      if (dataDir !== undefined) restrictTree(dataDir);
    },
    pool: () => undefined,
  };
}

/** This deployment's identity: one id per database (and schema), shared by every instance on it. */
export async function deploymentId(db: Kysely<KeelDatabase>): Promise<string> {
  const row = await db.selectFrom('deployment').select('id').executeTakeFirstOrThrow();
  return row.id;
}

/** Brings the schema up to date; safe to run on every start and from several processes at once. */
export function migrateToLatest(database: Database): Promise<readonly string[]> {
  return migrate(database, (migrator) => migrator.migrateToLatest());
}

/** Brings the schema to `version` (an upgrade test's starting point), as `migrateToLatest` does. */
export function migrateTo(database: Database, version: string): Promise<readonly string[]> {
  return migrate(database, (migrator) => migrator.migrateTo(version));
}

async function migrate(database: Database, run: (migrator: Migrator) => Promise<MigrationResultSet>): Promise<readonly string[]> {
  // Kysely looks for its migration tables in every schema unless told which one: name it, so databases that
  // hold several Keel schemas (tests, side-by-side deployments) never see each other's migration state.
  const migrator = new Migrator({
    db: database.db,
    provider: migrationProvider,
    ...(database.schema === undefined ? {} : { migrationTableSchema: database.schema }),
  });
  for (let attempt = 1; ; attempt += 1) {
    const { error, results } = await run(migrator);
    // Kysely finds its migration table by reading the catalog of every schema in the database; a schema another
    // deployment drops during that read fails it before anything ran here: "schema … does not exist" (3F000), or
    // "relation … does not exist" (42P01) for a table of that schema the read had listed.
    if (error !== undefined && introspectionRaces.has(String((error as PgErrorLike).code)) && attempt < migrationAttemptsMax) continue;
    if (error !== undefined) throw error;
    return (results ?? []).filter((result) => result.status === 'Success').map((result) => result.migrationName);
  }
}

const migrationAttemptsMax = 5;
const introspectionRaces: ReadonlySet<string> = new Set(['3F000', '42P01']);

/** Drops a test schema and everything in it. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  if (!schemaNamePattern.test(schema)) throw new Error(`invalid schema name ${schema}`);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

interface PgErrorLike {
  readonly code?: unknown;
  readonly constraint?: unknown;
  readonly message?: unknown;
}

export function isUniqueViolation(error: unknown, constraint?: string): boolean {
  const candidate = error as PgErrorLike | null;
  if (candidate?.code !== '23505') return false;
  if (constraint === undefined) return true;
  // PGlite does not fill `constraint`; its message names the constraint.
  return candidate.constraint === constraint || String(candidate.message).includes(constraint);
}

/**
 * Errors that mean "the database is unavailable or overloaded right now", not "the request is wrong":
 * connection failures, pool exhaustion, statement and lock timeouts, terminated backends, serialization.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  const candidate = error as PgErrorLike | null;
  const code = typeof candidate?.code === 'string' ? candidate.code : '';
  if (['57014', '55P03', '57P01', '57P02', '57P03', '40001', '40P01', '53300', '08000', '08003', '08006'].includes(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'].includes(code)) return true;
  const message = typeof candidate?.message === 'string' ? candidate.message : '';
  return /timeout exceeded when trying to connect|Connection terminated|connection ended|Client has encountered a connection error/i.test(message);
}
