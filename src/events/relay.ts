import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Selectable } from 'kysely';
import { publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { KeelDatabase, OutboxTable } from '../storage/schema.js';
import type { EventBus, EventHandler, KeelEvent } from './bus.js';

/**
 * The outbox relay: publishes unpublished outbox rows in id order, then marks them published. The outbox is
 * split into `relayPartitions` partitions by merchant (a generated column), and a partition is published by
 * one relay at a time: a relay takes the partition's lease (a row in `leases`), publishes one batch, marks it,
 * and gives the lease back, so relays on several workers share the partitions round by round while every
 * payment's events (one merchant, one partition) stay in order. A relay that dies holding a lease loses it when
 * it expires. No transaction is held while publishing, so an in-process consumer may write to the database as
 * it receives an event (PGlite has one connection). If the broker is down the publish fails and nothing is
 * marked; the relay retries with backoff, so no event is lost or reordered. A crash between publishing and
 * marking publishes the event again, which JetStream's de-duplication window (keyed by event id) and the
 * consumers' inbox absorb.
 */
export const relayBatchSizeMax = 100;
export const relayIdleDelayMs = 100;
export const relayBackoffMaxMs = 5_000;
export const relayLeaseMs = 10_000;
export const relayPartitions = 16;

export function toKeelEvent(row: Selectable<OutboxTable>): KeelEvent {
  return {
    id: uuidToPublic('event', row.id),
    type: row.type,
    created_at: new Date(row.created_at).toISOString(),
    merchant: uuidToPublic('merchant', row.merchant_id),
    correlation_id: row.correlation_id,
    data: row.data as { object: Record<string, unknown> },
  };
}

/** Takes or renews the named lease for `holder`; false while another holder's lease runs. */
export async function acquireLease(db: Kysely<KeelDatabase>, name: string, holder: string, leaseMs: number): Promise<boolean> {
  const result = await sql<{ holder: string }>`
    INSERT INTO leases (name, holder, expires_at) VALUES (${name}, ${holder}, now() + make_interval(secs => ${leaseMs / 1000}))
    ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
      WHERE leases.holder = EXCLUDED.holder OR leases.expires_at < now()
    RETURNING holder`.execute(db);
  return result.rows[0]?.holder === holder;
}

/** Gives a lease back at once (only if `holder` still has it). */
export async function releaseLease(db: Kysely<KeelDatabase>, name: string, holder: string): Promise<void> {
  await db.updateTable('leases').set({ expires_at: new Date(0) }).where('name', '=', name).where('holder', '=', holder).execute();
}

export const relayLeaseName = (partition: number) => `outbox_relay:${partition}`;

/** The partitions with unpublished events: one index probe each. */
async function pendingPartitions(db: Kysely<KeelDatabase>): Promise<number[]> {
  const result = await sql<{ partition: number }>`
    SELECT partition FROM generate_series(0, ${relayPartitions - 1}) AS partition
    WHERE EXISTS (SELECT 1 FROM outbox WHERE relay_partition = partition AND published_at IS NULL)`.execute(db);
  return result.rows.map((row) => Number(row.partition));
}

/**
 * One round: one batch from every partition with waiting events whose lease this relay can take; resolves to
 * how many it published (0 when idle or when other relays hold every busy partition). A partition whose
 * publishing failed keeps its unpublished rows; the others' batches are marked, and the round then throws.
 */
export async function relayOnce(db: Kysely<KeelDatabase>, bus: EventBus, holder: string): Promise<number> {
  const partitions = await pendingPartitions(db);
  // A random order, so relays starting together do not all queue for the same partition first.
  for (let index = partitions.length - 1; index > 0; index -= 1) {
    const other = Math.floor(Math.random() * (index + 1));
    [partitions[index], partitions[other]] = [partitions[other] as number, partitions[index] as number];
  }
  // Partitions publish concurrently: each is in order on its own, and a broker round trip per event is what
  // bounds one partition.
  const outcomes = await Promise.allSettled(
    partitions.map(async (partition) => {
      const lease = relayLeaseName(partition);
      if (!(await acquireLease(db, lease, holder, relayLeaseMs))) return 0;
      try {
        return await publishBatch(db, bus, partition);
      } finally {
        await releaseLease(db, lease, holder);
      }
    }),
  );
  const failure = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
  return outcomes.reduce((total, outcome) => total + (outcome.status === 'fulfilled' ? outcome.value : 0), 0);
}

async function publishBatch(db: Kysely<KeelDatabase>, bus: EventBus, partition: number): Promise<number> {
  // Stop well before the lease could expire, so no other relay ever publishes this partition alongside.
  const stopAt = Date.now() + relayLeaseMs / 2;
  const rows = await db
    .selectFrom('outbox')
    .selectAll()
    .where('relay_partition', '=', partition)
    .where('published_at', 'is', null)
    .orderBy('id')
    .limit(relayBatchSizeMax)
    .execute();
  const published: string[] = [];
  try {
    for (const row of rows) {
      if (Date.now() > stopAt) break;
      await bus.publish(toKeelEvent(row));
      published.push(row.id);
    }
  } finally {
    if (published.length > 0) await db.updateTable('outbox').set({ published_at: new Date() }).where('id', 'in', published).execute();
  }
  return published.length;
}

/** Runs the relay until `signal` aborts, backing off while the broker or the database is unavailable. */
export async function runRelay(db: Kysely<KeelDatabase>, bus: EventBus, holder: string, logger: Logger, signal: AbortSignal): Promise<void> {
  let backoffMs = relayIdleDelayMs;
  while (!signal.aborted) {
    try {
      const published = await relayOnce(db, bus, holder);
      backoffMs = relayIdleDelayMs;
      if (published === 0) await sleep(relayIdleDelayMs, undefined, { signal }).catch(() => undefined);
    } catch (error) {
      logger.warn({ err_message: String(error), retry_in_ms: backoffMs }, 'outbox relay could not publish; retrying');
      await sleep(backoffMs, undefined, { signal }).catch(() => undefined);
      backoffMs = Math.min(backoffMs * 2, relayBackoffMaxMs);
    }
  }
}

/**
 * Wraps a consumer's handler so each event is applied once: the event id goes into the inbox in the same
 * transaction as the handler's writes, and an event already in the inbox is acknowledged without effect.
 */
export function deduplicated(
  db: Kysely<KeelDatabase>,
  consumer: string,
  apply: (trx: Kysely<KeelDatabase>, event: KeelEvent) => Promise<void>,
): EventHandler {
  return async (event) => {
    const eventId = publicToUuid('event', event.id);
    if (eventId === undefined) throw new Error(`not an event id: ${event.id}`);
    await db.transaction().execute(async (trx) => {
      const inserted = await trx
        .insertInto('inbox')
        .values({ consumer, event_id: eventId })
        .onConflict((conflict) => conflict.columns(['consumer', 'event_id']).doNothing())
        .returning('event_id')
        .executeTakeFirst();
      if (inserted !== undefined) await apply(trx, event);
    });
  };
}
