import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { outboxPrunedBefore } from '../storage/retention.js';
import type { EventHandler, KeelEvent } from '../events/bus.js';
import { toKeelEvent } from '../events/relay.js';
import type { PreparedStatements } from '../storage/database.js';
import { namedStatement, runNamed, type NamedStatement } from '../storage/named-statements.js';
import { publicToUuid } from '../storage/ids.js';
import type { KeelDatabase } from '../storage/schema.js';

/**
 * The payments read model (CQRS): daily counters per merchant, currency, country and partner, built only from
 * events by the `projections` consumer that workers run. Each event adds to counters, and additions commute,
 * so the model comes out the same whatever order at-least-once delivery brings the events in, and the inbox
 * makes each event count once. Payment outcomes are counted on the day the payment was created (so a day's
 * approval rate compares like with like); refunds on the day of the refund.
 *
 * Counters are spread over `counterShards` rows per key (chosen by the payment or refund id), so consumers on
 * several workers do not queue on one hot row; reports sum the shards.
 *
 * The model can be rebuilt from the outbox, which keeps every event: `rebuildProjections` replaces the
 * counters and the consumer's inbox in one transaction under an exclusive advisory lock, while live consumers
 * hold the same lock shared, so an event is counted either by the rebuild or by the consumer, never both.
 */
export const projectionConsumer = 'projections';
export const paymentsProjection = 'payments_daily';
export const counterShards = 8;
export const rebuildBatchSize = 500;
/** How long a rebuild waits for consumers' transactions in flight to let go of the read model. */
export const rebuildLockWaitMs = 30_000;

export const counterNames = ['created', 'authorized', 'failed', 'not_sent', 'canceled', 'captured', 'amount_captured', 'refunds', 'amount_refunded'] as const;
export type CounterName = (typeof counterNames)[number];

/** The event types that change the model; others are acknowledged without a transaction. */
export const projectedEventTypes: ReadonlySet<string> = new Set([
  'payment.created',
  'payment.requires_capture',
  'payment.succeeded',
  'payment.failed',
  'payment.not_sent',
  'payment.canceled',
  'refund.succeeded',
]);

type Db = Kysely<KeelDatabase>;

interface Increment {
  readonly merchantId: string;
  readonly day: string;
  readonly currency: string;
  readonly country: string;
  /** The partner on the payment when the event was written (creation: the first in the merchant's order). */
  readonly gateway: string;
  readonly shard: number;
  readonly counters: Partial<Record<CounterName, bigint>>;
  readonly failureCode?: string;
}

/** The advisory lock key of this schema's read models (tests run many schemas in one database). */
const lockKeyText = "hashtext(current_schema() || '.keel.projections')";
const lockKey = sql<number>`${sql.raw(lockKeyText)}`;

function shardOf(id: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < id.length; index += 1) hash = Math.imul(hash ^ id.charCodeAt(index), 0x01000193) >>> 0;
  return hash % counterShards;
}

/** An event the model cannot count (a bug upstream): logged and acknowledged, never retried forever. */
export class MalformedEventError extends Error {}

function text(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw new MalformedEventError(`event object has no ${field}`);
  return value;
}

function amount(value: unknown, field: string): bigint {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new MalformedEventError(`event object has no integer ${field}`);
  return BigInt(value);
}

/** What one payment event adds: a pure function of the event. */
export function paymentIncrement(event: KeelEvent): Increment | undefined {
  const object = event.data.object;
  const merchantId = publicToUuid('merchant', event.merchant);
  if (merchantId === undefined) throw new MalformedEventError(`not a merchant id: ${event.merchant}`);
  const key = {
    merchantId,
    day: text(object['created_at'], 'created_at').slice(0, 10),
    currency: text(object['currency'], 'currency'),
    country: text(object['country'], 'country'),
    gateway: typeof object['gateway'] === 'string' ? object['gateway'] : '',
    shard: shardOf(text(object['id'], 'id')),
  };
  switch (event.type) {
    case 'payment.created':
      return { ...key, counters: { created: 1n } };
    case 'payment.requires_capture':
      return { ...key, counters: { authorized: 1n } };
    case 'payment.succeeded':
      // A manual-capture payment was counted as authorized when it reached requires_capture.
      return {
        ...key,
        counters: { ...(object['capture_method'] === 'manual' ? {} : { authorized: 1n }), captured: 1n, amount_captured: amount(object['amount_received'], 'amount_received') },
      };
    case 'payment.failed':
      return { ...key, counters: { failed: 1n }, failureCode: typeof object['failure_code'] === 'string' ? object['failure_code'] : 'unknown' };
    case 'payment.not_sent':
      return { ...key, counters: { not_sent: 1n } };
    case 'payment.canceled':
      return { ...key, counters: { canceled: 1n } };
    default:
      return undefined;
  }
}

/** A refund counts under its payment's country and partner, which the refund object does not carry. */
async function refundIncrement(trx: Db, event: KeelEvent): Promise<Increment> {
  const { paymentId, ...key } = refundKey(event);
  const payment = await trx
    .selectFrom('payments')
    .select(['country', 'gateway'])
    .where('merchant_id', '=', key.merchantId)
    .where('id', '=', paymentId)
    .executeTakeFirst();
  if (payment === undefined) throw new MalformedEventError(`refund event ${event.id} names a payment Keel does not have`);
  return { ...key, country: payment.country, gateway: payment.gateway ?? '' };
}

async function addIncrement(trx: Db, increment: Increment): Promise<void> {
  const names = counterNames.filter((name) => increment.counters[name] !== undefined);
  const key = [increment.merchantId, increment.day, increment.currency, increment.country, increment.gateway, increment.shard];
  await sql`
    INSERT INTO report_payments_daily (merchant_id, day, currency, country, gateway, shard, ${sql.join(names.map((name) => sql.ref(name)))})
    VALUES (${sql.join(key)}, ${sql.join(names.map((name) => increment.counters[name] as bigint))})
    ON CONFLICT (merchant_id, day, currency, country, gateway, shard) DO UPDATE SET
      ${sql.join(names.map((name) => sql`${sql.ref(name)} = report_payments_daily.${sql.ref(name)} + EXCLUDED.${sql.ref(name)}`))}`.execute(trx);
  if (increment.failureCode !== undefined) {
    await sql`
      INSERT INTO report_payment_failures (merchant_id, day, currency, country, gateway, failure_code, shard, count)
      VALUES (${sql.join(key.slice(0, 5))}, ${increment.failureCode}, ${increment.shard}, 1)
      ON CONFLICT (merchant_id, day, currency, country, gateway, failure_code, shard) DO UPDATE SET count = report_payment_failures.count + 1`.execute(trx);
  }
}

/**
 * Applies one event to the read model (within the caller's transaction). A malformed event is logged and left
 * out; a database error propagates, so the event is delivered again.
 */
/** Applies an event's increment; with `fromDay`, only to days from it on (a rebuild after retention pruned). */
export async function applyEvent(trx: Db, event: KeelEvent, logger: Logger, fromDay?: string): Promise<void> {
  if (!projectedEventTypes.has(event.type)) return;
  let increment: Increment | undefined;
  try {
    increment = event.type === 'refund.succeeded' ? await refundIncrement(trx, event) : paymentIncrement(event);
  } catch (error) {
    if (!(error instanceof MalformedEventError)) throw error;
    leftOut(logger, event, error.message);
    return;
  }
  if (increment !== undefined && (fromDay === undefined || increment.day >= fromDay)) await addIncrement(trx, increment);
}

/**
 * The worker's consumer: each projected event applied once, under the shared side of the rebuild lock, in one
 * statement (a named prepared statement per kind of increment) that commits by itself: the lock, the inbox
 * entry, the counters and a decline's failure code. The counters and the failure code are written only when
 * the inbox entry is new. The statement's snapshot predates the lock's wait, but nothing it writes depends on
 * what it reads under that snapshot: the inbox's and the counters' `ON CONFLICT` see the rows a rebuild
 * committed meanwhile, so an event the rebuild counted is skipped, and an increment adds to the rebuilt row.
 */
export function projectionsConsumer(database: { readonly statements: PreparedStatements }, logger: Logger): EventHandler {
  return async (event) => {
    if (!projectedEventTypes.has(event.type)) return;
    const eventId = publicToUuid('event', event.id);
    if (eventId === undefined) throw new Error(`not an event id: ${event.id}`);
    let increment: Increment | RefundKey | undefined;
    try {
      increment = event.type === 'refund.succeeded' ? refundKey(event) : paymentIncrement(event);
    } catch (error) {
      if (!(error instanceof MalformedEventError)) throw error;
      leftOut(logger, event, error.message);
      increment = undefined;
    }
    const statement = applyStatement(increment);
    const rows = await runNamed<{ applied: boolean; found: boolean }>(database.statements, statement, { consumer: projectionConsumer, event_id: eventId, ...incrementParameters(increment) });
    if (rows[0]?.applied === true && rows[0].found === false) leftOut(logger, event, `refund event ${event.id} names a payment Keel does not have`);
  };
}

function leftOut(logger: Logger, event: KeelEvent, reason: string): void {
  logger.error({ event_id: event.id, event_type: event.type, err_message: reason }, 'event left out of the read model');
}

/** A refund's increment but its country and partner, which the statement reads from its payment. */
interface RefundKey {
  readonly paymentId: string;
  readonly merchantId: string;
  readonly day: string;
  readonly currency: string;
  readonly shard: number;
  readonly counters: Partial<Record<CounterName, bigint>>;
}

function refundKey(event: KeelEvent): RefundKey {
  const object = event.data.object;
  const merchantId = publicToUuid('merchant', event.merchant);
  const paymentId = publicToUuid('payment', text(object['payment'], 'payment'));
  if (merchantId === undefined || paymentId === undefined) throw new MalformedEventError(`refund event ${event.id} names no merchant or payment`);
  return {
    paymentId,
    merchantId,
    day: text(object['created_at'], 'created_at').slice(0, 10),
    currency: text(object['currency'], 'currency'),
    shard: shardOf(text(object['id'], 'id')),
    counters: { refunds: 1n, amount_refunded: amount(object['amount'], 'amount') },
  };
}

function incrementParameters(increment: Increment | RefundKey | undefined): Record<string, unknown> {
  if (increment === undefined) return {};
  const counters = Object.fromEntries(counterNames.filter((name) => increment.counters[name] !== undefined).map((name) => [`counter_${name}`, increment.counters[name]]));
  return {
    merchant_id: increment.merchantId,
    day: increment.day,
    currency: increment.currency,
    shard: increment.shard,
    ...counters,
    ...('paymentId' in increment ? { payment_id: increment.paymentId } : { country: increment.country, gateway: increment.gateway, failure_code: increment.failureCode ?? null }),
  };
}

const applyStatements = new Map<string, NamedStatement>();

/** The statement for an increment's shape (which counters, a refund's or a payment's, with a failure code or not). */
function applyStatement(increment: Increment | RefundKey | undefined): NamedStatement {
  const names = increment === undefined ? [] : counterNames.filter((name) => increment.counters[name] !== undefined);
  const refund = increment !== undefined && 'paymentId' in increment;
  const failure = increment !== undefined && !refund && (increment as Increment).failureCode !== undefined;
  const shape = `${names.join('_')}${refund ? '_r' : ''}${failure ? '_f' : ''}`;
  const known = applyStatements.get(shape);
  if (known !== undefined) return known;
  // The key's columns from the event (a payment's) or from the refund's payment, found by its id.
  const source = refund ? `inbox, payments WHERE payments.id = :payment_id AND payments.merchant_id = :merchant_id` : 'inbox';
  const country = refund ? 'payments.country' : ':country';
  const gateway = refund ? `coalesce(payments.gateway, '')` : ':gateway';
  const counters =
    names.length === 0
      ? ''
      : `, counters AS (
  INSERT INTO report_payments_daily (merchant_id, day, currency, country, gateway, shard, ${names.join(', ')})
  SELECT :merchant_id, :day, :currency, ${country}, ${gateway}, :shard, ${names.map((name) => `:counter_${name}`).join(', ')} FROM ${source}
  ON CONFLICT (merchant_id, day, currency, country, gateway, shard) DO UPDATE SET
    ${names.map((name) => `${name} = report_payments_daily.${name} + EXCLUDED.${name}`).join(', ')}
  RETURNING 1
)`;
  const failures = !failure
    ? ''
    : `, failures AS (
  INSERT INTO report_payment_failures (merchant_id, day, currency, country, gateway, failure_code, shard, count)
  SELECT :merchant_id, :day, :currency, :country, :gateway, :failure_code, :shard, 1 FROM inbox
  ON CONFLICT (merchant_id, day, currency, country, gateway, failure_code, shard) DO UPDATE SET count = report_payment_failures.count + 1
)`;
  const statement = namedStatement(
    `keel_projection_${shape || 'none'}`,
    `
WITH lock AS (
  SELECT pg_advisory_xact_lock_shared(${lockKeyText})
), inbox AS (
  INSERT INTO inbox (consumer, event_id) SELECT :consumer, :event_id FROM lock
  ON CONFLICT (consumer, event_id) DO NOTHING
  RETURNING event_id
)${counters}${failures}
SELECT EXISTS (SELECT 1 FROM inbox) AS applied, ${names.length === 0 ? 'true' : 'EXISTS (SELECT 1 FROM counters)'} AS found`,
  );
  applyStatements.set(shape, statement);
  return statement;
}

export interface RebuildReport {
  readonly events: number;
  readonly rebuiltAt: Date;
}

/**
 * Recomputes the read model from every event in the outbox, in one transaction: counters and the consumer's
 * inbox are replaced together, so the live consumer skips exactly the events the rebuild counted. With
 * `onlyIfNeverBuilt`, a model already built is left as it is and the report is that of its last rebuild.
 */
export async function rebuildProjections(db: Db, logger: Logger, options: { readonly onlyIfNeverBuilt?: boolean } = {}): Promise<RebuildReport> {
  return db.transaction().execute(async (trx) => {
    // A rebuild is one long transaction by design: the sessions' 5 s statement and 1 s lock bounds are for
    // payments, not for replacing a read model. Live consumers keep theirs, so while a rebuild holds the lock
    // they time out and retry (JetStream redelivers; the in-process relay backs off).
    await sql`SET LOCAL statement_timeout = 0`.execute(trx);
    await sql`SET LOCAL lock_timeout = ${sql.lit(`${rebuildLockWaitMs}ms`)}`.execute(trx);
    await sql`SELECT pg_advisory_xact_lock(${lockKey})`.execute(trx);
    if (options.onlyIfNeverBuilt === true) {
      const built = await trx.selectFrom('projections').select(['rebuilt_at', 'events_replayed']).where('name', '=', paymentsProjection).executeTakeFirst();
      if (built !== undefined) return { events: Number(built.events_replayed), rebuiltAt: new Date(built.rebuilt_at) };
    }
    // Retention may have pruned the outbox's oldest days. A day before the mark gets no increment from a
    // retained event (an event counts on its payment's or refund's day, never later than itself), so its rows,
    // applied live from events now pruned, are kept, and only days from the mark on are rebuilt.
    const prunedBefore = await outboxPrunedBefore(trx);
    const fromDay = prunedBefore === null ? undefined : prunedBefore.toISOString().slice(0, 10);
    await (fromDay === undefined ? trx.deleteFrom('report_payment_failures') : trx.deleteFrom('report_payment_failures').where('day', '>=', fromDay)).execute();
    await (fromDay === undefined ? trx.deleteFrom('report_payments_daily') : trx.deleteFrom('report_payments_daily').where('day', '>=', fromDay)).execute();
    await trx.deleteFrom('inbox').where('consumer', '=', projectionConsumer).execute();
    let events = 0;
    let after: string | undefined;
    for (;;) {
      let query = trx.selectFrom('outbox').selectAll().where('type', 'in', [...projectedEventTypes]).orderBy('id').limit(rebuildBatchSize);
      if (after !== undefined) query = query.where('id', '>', after);
      const rows = await query.execute();
      if (rows.length === 0) break;
      for (const row of rows) await applyEvent(trx, toKeelEvent(row), logger, fromDay);
      await trx
        .insertInto('inbox')
        .values(rows.map((row) => ({ consumer: projectionConsumer, event_id: row.id })))
        .onConflict((conflict) => conflict.columns(['consumer', 'event_id']).doNothing())
        .execute();
      events += rows.length;
      after = rows[rows.length - 1]?.id;
    }
    const rebuiltAt = new Date();
    await trx
      .insertInto('projections')
      .values({ name: paymentsProjection, rebuilt_at: rebuiltAt, events_replayed: events })
      .onConflict((conflict) => conflict.column('name').doUpdateSet({ rebuilt_at: rebuiltAt, events_replayed: events }))
      .execute();
    return { events, rebuiltAt };
  });
}
