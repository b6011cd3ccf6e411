import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Writable } from 'node:stream';
import { after, before } from 'node:test';
import { loadConfig, type KeelConfig } from '../config.js';
import { createMerchant, type CreatedMerchant, type NewMerchant } from '../merchants/merchants.js';
import { createKeel, type Keel } from '../runtime.js';
import { dropSchema, migrateTo, openDatabase, type Database } from '../storage/database.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';

/**
 * Starts a whole Keel for a test: the real API (driven through `app.inject`), the real benchmark gateway on a
 * loopback port, and a real database: PostgreSQL in a schema of its own when `KEEL_TEST_DATABASE_URL` is set,
 * otherwise an in-memory PGlite. With `KEEL_TEST_REQUIRE_SERVICES=1` a missing PostgreSQL fails the test.
 */
export interface TestResponse {
  readonly status: number;
  readonly body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests read API JSON freely
  readonly headers: Record<string, string | number | string[] | undefined>;
}

export interface RequestOptions {
  readonly body?: unknown;
  readonly rawBody?: string;
  readonly idempotencyKey?: string | null;
  readonly headers?: Record<string, string>;
  readonly secretKey?: string | null;
  /** The connection's address (default 127.0.0.1). */
  readonly remoteAddress?: string;
}

export interface TestKeel {
  readonly keel: Keel;
  readonly merchant: CreatedMerchant;
  /** Every log line Keel wrote, as text. */
  readonly logs: string[];
  request(method: 'GET' | 'POST' | 'DELETE', path: string, options?: RequestOptions): Promise<TestResponse>;
  createMerchant(input?: Partial<NewMerchant>): Promise<CreatedMerchant>;
  simCharges(orderId?: string): Promise<SimChargeView[]>;
  /** The benchmark gateway's inquiry lag (`POST /__sim/consistency`); null resets it. */
  setInquiryLag(lagMs: number | null): Promise<void>;
  /**
   * Lets `ms` pass for everything that measures time against stored timestamps: Keel's attempts (when they
   * were last sent, when they are next asked about) and the gateway's record of when each change happened.
   * The partners' consistency windows are minutes to an hour; a test lets them pass instead of waiting.
   */
  passTime(ms: number): Promise<void>;
  /** The number of rows in every table of Keel's schema, by table: a refusal must leave all of them as they were. */
  countAllRows(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export interface SimChargeView {
  readonly id: string;
  readonly order_id: string;
  readonly order_name: string | null;
  readonly amount: number;
  readonly currency: string;
  readonly status: string;
  readonly captured: boolean;
  readonly captured_amount: number;
  readonly refunded_amount: number;
}

export interface TestKeelOptions {
  readonly gateway?: 'toss' | 'stripe';
  readonly config?: Partial<KeelConfig>;
  readonly forceEmbedded?: boolean;
}

/** The Redis to test against, or undefined (then Redis-only tests are skipped, and CI's required Redis fails). */
export function testRedisUrl(): string | undefined {
  const url = process.env['KEEL_TEST_REDIS_URL'];
  if ((url === undefined || url === '') && process.env['KEEL_TEST_REQUIRE_SERVICES'] === '1') throw new Error('KEEL_TEST_REQUIRE_SERVICES=1 but KEEL_TEST_REDIS_URL is not set');
  return url === '' ? undefined : url;
}

export function testDatabaseUrl(forceEmbedded = false): string | undefined {
  const url = process.env['KEEL_TEST_DATABASE_URL'];
  if (forceEmbedded) return undefined;
  if ((url === undefined || url === '') && process.env['KEEL_TEST_REQUIRE_SERVICES'] === '1' && process.env['KEEL_TEST_EMBEDDED'] !== '1') {
    throw new Error('KEEL_TEST_REQUIRE_SERVICES=1 but KEEL_TEST_DATABASE_URL is not set');
  }
  return url === '' || process.env['KEEL_TEST_EMBEDDED'] === '1' ? undefined : url;
}

/**
 * A database of its own for an upgrade test — a fresh schema on the test PostgreSQL, or an in-memory PGlite —
 * opened before the file's tests and dropped after them. `startAt(version)` migrates it to the version the test
 * starts from and adds a merchant, as an earlier Keel would have left it.
 */
export function useUpgradeDatabase(): (version: string) => Promise<{ database: Database; merchantId: string }> {
  let opened: Database | undefined;
  const url = testDatabaseUrl();
  const schema = url === undefined ? undefined : `keel_test_${randomBytes(6).toString('hex')}`;
  before(async () => {
    opened = await openDatabase({ url, schema });
  });
  after(async () => {
    await opened?.close();
    if (url !== undefined && schema !== undefined) await dropSchema(url, schema);
  });
  return async (version: string) => {
    assert.ok(opened !== undefined, 'the upgrade database opens before the tests');
    await migrateTo(opened, version);
    const merchantId = randomUUID();
    await opened.db.insertInto('merchants').values({ id: merchantId, name: 'Upgraded', brand_name: 'U', country: 'KR', gateway: 'toss', partner_secret_key_encrypted: 'x' }).execute();
    return { database: opened, merchantId };
  };
}

/**
 * The partners' consistency window in tests: longer than any inquiry lag a test sets (`setInquiryLag`), so a
 * "no such charge" is believed only once `passTime` has let it pass.
 */
export const testConsistencyWindowMs = 45_000;

let sequence = 0;
export function uniqueKey(prefix = 'key'): string {
  sequence += 1;
  return `${prefix}_${Date.now().toString(36)}_${sequence}_${randomBytes(4).toString('hex')}`;
}

export async function startTestKeel(options: TestKeelOptions = {}): Promise<TestKeel> {
  const databaseUrl = testDatabaseUrl(options.forceEmbedded);
  const schema = databaseUrl === undefined ? undefined : `keel_test_${randomBytes(6).toString('hex')}`;
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(chunk.toString('utf8'));
      callback();
    },
  });
  const base = loadConfig({});
  const config: KeelConfig = {
    ...base,
    databaseUrl,
    logLevel: 'info',
    idempotencyLockTimeoutMs: 2_000,
    completerAbandonedAfterMs: 2_500,
    // Tests fire bursts on purpose; the rate-limit tests set their own limits per merchant.
    rateLimit: { perSecond: 10_000, burst: 20_000 },
    // Test processes share two cores, so event-loop delay is theirs, not Keel's; the shedding tests opt in.
    shedding: { ...base.shedding, enabled: false },
    partnerConsistencyWindowMs: { toss: testConsistencyWindowMs, stripe: testConsistencyWindowMs },
    // Tests never reach the partners' production APIs; a live-mode test points these at a gateway of its own.
    liveUrls: { toss: 'http://127.0.0.1:9', stripe: 'http://127.0.0.1:9' },
    ...options.config,
    partnerHttp: { connectTimeoutMs: 500, readTimeoutMs: 600, connectionsMax: 64, ...options.config?.partnerHttp },
  };
  const keel = await createKeel({
    config,
    role: 'all',
    inMemory: true,
    ...(schema === undefined ? {} : { databaseSchema: schema }),
    logDestination: destination,
    simulatorPort: 0,
    simulatorAmbiguousDelayMs: 2_500,
  });
  const makeMerchant = (input: Partial<NewMerchant> = {}) =>
    createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Test Shop', gateway: options.gateway ?? 'toss', ...input });
  const merchant = await makeMerchant();

  return {
    keel,
    merchant,
    logs,
    createMerchant: makeMerchant,
    async request(method, path, requestOptions = {}) {
      const headers: Record<string, string> = { ...requestOptions.headers };
      const secretKey = requestOptions.secretKey === undefined ? merchant.secret_key : requestOptions.secretKey;
      if (secretKey !== null) headers['authorization'] ??= `Bearer ${secretKey}`;
      if (method === 'POST' && requestOptions.idempotencyKey !== null) headers['idempotency-key'] ??= requestOptions.idempotencyKey ?? uniqueKey();
      let payload: string | undefined = requestOptions.rawBody;
      if (payload === undefined && requestOptions.body !== undefined) payload = JSON.stringify(requestOptions.body);
      if (payload !== undefined) headers['content-type'] ??= 'application/json';
      const response = await keel.app.inject({
        method,
        url: path,
        headers,
        ...(payload === undefined ? {} : { payload }),
        ...(requestOptions.remoteAddress === undefined ? {} : { remoteAddress: requestOptions.remoteAddress }),
      });
      const text = response.body;
      let body: unknown = text;
      try {
        body = text === '' ? null : JSON.parse(text);
      } catch {
        body = text;
      }
      return { status: response.statusCode, body, headers: response.headers };
    },
    async simCharges(orderId) {
      const query = orderId === undefined ? '' : `?order_id=${encodeURIComponent(orderId)}`;
      const response = await fetch(`${keel.gatewayUrl}/__sim/charges${query}`);
      const json = (await response.json()) as { data: SimChargeView[] };
      return json.data;
    },
    async setInquiryLag(lagMs) {
      const response = await fetch(`${keel.gatewayUrl}/__sim/consistency`, { method: lagMs === null ? 'DELETE' : 'POST', ...(lagMs === null ? {} : { body: JSON.stringify({ inquiry_lag_ms: lagMs }) }) });
      if (!response.ok) throw new Error(`setting the inquiry lag failed: ${response.status}`);
    },
    async passTime(ms) {
      const db = keel.database.db;
      await db
        .updateTable('payment_attempts')
        .set({ last_sent_at: sql<Date>`last_sent_at - make_interval(secs => ${ms / 1000})`, next_inquiry_at: sql<Date>`next_inquiry_at - make_interval(secs => ${ms / 1000})` })
        .execute();
      keel.simulator?.state.ageHistory(ms);
    },
    async countAllRows() {
      const db = keel.database.db;
      const counts: Record<string, number> = {};
      for (const name of await keelTables(keel)) {
        const result = await sql<{ count: string }>`SELECT count(*)::text AS count FROM ${sql.table(name)}`.execute(db);
        counts[name] = Number(result.rows[0]?.count ?? 0);
      }
      assert.ok(Object.keys(counts).length >= 20, `expected Keel's tables in the current schema, found ${Object.keys(counts).join(', ')}`);
      return counts;
    },
    async close() {
      await keel.close();
      if (databaseUrl !== undefined && schema !== undefined) await dropSchema(databaseUrl, schema);
      // Each test deployment has a stream of its own on the shared NATS server; it goes with the deployment.
      if (config.natsUrl !== undefined && keel.eventStream !== undefined) await deleteStream(config.natsUrl, keel.eventStream);
    },
  };
}

/** Removes a test deployment's JetStream stream (and its consumers). */
export async function deleteStream(natsUrl: string, stream: string): Promise<void> {
  const connection = await connect({ servers: natsUrl });
  try {
    const manager = await jetstreamManager(connection);
    await manager.streams.delete(stream).catch(() => false);
  } finally {
    await connection.close();
  }
}

/** Every table of Keel's schema, by name. */
export async function keelTables(keel: Keel): Promise<string[]> {
  const tables = await sql<{ name: string }>`
    SELECT table_name AS name FROM information_schema.tables
    WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`.execute(keel.database.db);
  return tables.rows.map((row) => row.name);
}

export const testCard = (number = '4242424242424242') => ({ type: 'card', card: { number, exp_month: 12, exp_year: 2034, cvc: '123' } });
