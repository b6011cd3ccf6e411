import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Selectable } from 'kysely';
import { publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { KeelDatabase, OutboxTable } from '../storage/schema.js';
import type { EventBus, EventHandler, KeelEvent } from './bus.js';

/**
 * The outbox relay: publishes unpublished outbox rows in id order, then marks them published. One relay
 * publishes at a time: it holds a lease (a row in `leases`, renewed every round, taken over when it expires),
 * which keeps every payment's events in order even with several workers running. No transaction is held while
 * publishing, so an in-process consumer may write to the database as it receives an event (PGlite has one
 * connection). If the broker is down the publish fails and nothing is marked; the relay retries with backoff,
 * so no event is lost or reordered. A crash between publishing and marking publishes the event again, which
 * JetStream's de-duplication window (keyed by event id) and the consumers' inbox absorb.
 */
export const relayBatchSizeMax = 100;
export const relayIdleDelayMs = 100;
export const relayBackoffMaxMs = 5_000;
export const relayLeaseMs = 10_000;

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

/** One round: publishes up to a batch; returns how many were published (0 when idle or another relay holds the lease). */
export async function relayOnce(db: Kysely<KeelDatabase>, bus: EventBus, holder: string): Promise<number> {
  if (!(await acquireLease(db, 'outbox_relay', holder, relayLeaseMs))) return 0;
  const rows = await db.selectFrom('outbox').selectAll().where('published_at', 'is', null).orderBy('id').limit(relayBatchSizeMax).execute();
  const published: string[] = [];
  try {
    for (const row of rows) {
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
  options: { readonly before?: (trx: Kysely<KeelDatabase>) => Promise<void> } = {},
): EventHandler {
  return async (event) => {
    const eventId = publicToUuid('event', event.id);
    if (eventId === undefined) throw new Error(`not an event id: ${event.id}`);
    await db.transaction().execute(async (trx) => {
      // A consumer that can be rebuilt takes its lock before it reads its inbox.
      await options.before?.(trx);
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
