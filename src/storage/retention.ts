import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { KeelDatabase } from './schema.js';

/**
 * Retention: the operational records Keel keeps only for as long as they serve are pruned in bounded batches,
 * each batch its own short statement, until none is due. What is pruned, and after how long:
 * - idempotency keys, finished, after `KEEL_IDEMPOTENCY_TTL_HOURS`;
 * - outbox events, published, after `KEEL_RETENTION_DAYS` (from the start of the UTC day that many days ago;
 *   the mark is kept, so a projections rebuild knows which days the outbox still covers);
 * - inbox entries (which events a consumer applied), webhook deliveries that succeeded or failed, and checkout
 *   sessions that expired unused, after `KEEL_RETENTION_DAYS`.
 * Records of money (payments, attempts, refunds, ledger entries and settlements, anomalies) and customers and
 * their payment methods are never pruned: they are the shop's books. The read model's daily rows are aggregates
 * and stay. The JetStream stream keeps events for the same `KEEL_RETENTION_DAYS` (`max_age`).
 */
export const retentionBatchSize = 1_000;

/** Batches a run makes at most per table, so one run is bounded even after a long outage of the job. */
export const retentionBatchesMax = 1_000;

export interface RetentionPolicy {
  readonly retentionDays: number;
  readonly idempotencyTtlHours: number;
}

export type RetentionReport = Readonly<Record<PrunedTable, number>>;

type PrunedTable = 'idempotency_keys' | 'outbox' | 'inbox' | 'webhook_deliveries' | 'checkout_sessions';

type Db = Kysely<KeelDatabase>;

/** The first instant still kept: the start of the UTC day `retentionDays` days ago. */
export function retentionCutoff(retentionDays: number, now: Date = new Date()): Date {
  const day = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  return new Date(day - retentionDays * 86_400_000);
}

/** Before this instant the outbox holds no events any more (null: nothing pruned yet). */
export async function outboxPrunedBefore(db: Db): Promise<Date | null> {
  const row = await db.selectFrom('retention_marks').select('pruned_before').where('name', '=', 'outbox').executeTakeFirst();
  return row === undefined ? null : new Date(row.pruned_before);
}

export async function pruneExpired(db: Db, policy: RetentionPolicy, now: Date = new Date()): Promise<RetentionReport> {
  const cutoff = retentionCutoff(policy.retentionDays, now);
  const keysBefore = new Date(now.getTime() - policy.idempotencyTtlHours * 3_600_000);
  // The mark first: a rebuild that starts meanwhile treats the days before it as gone already.
  await db
    .insertInto('retention_marks')
    .values({ name: 'outbox', pruned_before: cutoff })
    .onConflict((conflict) => conflict.column('name').doUpdateSet({ pruned_before: sql<Date>`greatest(retention_marks.pruned_before, excluded.pruned_before)` }))
    .execute();
  return {
    idempotency_keys: await inBatches(db, (limit) => sql`
      DELETE FROM idempotency_keys WHERE id IN (
        SELECT id FROM idempotency_keys WHERE created_at < ${keysBefore} AND recovery_point = 'finished'
        ORDER BY created_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)`),
    outbox: await inBatches(db, (limit) => sql`
      DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox WHERE created_at < ${cutoff} AND published_at IS NOT NULL
        ORDER BY created_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)`),
    inbox: await inBatches(db, (limit) => sql`
      DELETE FROM inbox WHERE (consumer, event_id) IN (
        SELECT consumer, event_id FROM inbox WHERE processed_at < ${cutoff}
        ORDER BY processed_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)`),
    webhook_deliveries: await inBatches(db, (limit) => sql`
      DELETE FROM webhook_deliveries WHERE id IN (
        SELECT id FROM webhook_deliveries WHERE status IN ('succeeded', 'failed') AND updated_at < ${cutoff}
        ORDER BY updated_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)`),
    checkout_sessions: await inBatches(db, (limit) => sql`
      DELETE FROM checkout_sessions WHERE id IN (
        SELECT id FROM checkout_sessions WHERE payment_id IS NULL AND status IN ('open', 'expired') AND expires_at < ${cutoff}
        ORDER BY expires_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)`),
  };
}

async function inBatches(db: Db, batch: (limit: number) => RawBuilder<unknown>): Promise<number> {
  let total = 0;
  for (let round = 0; round < retentionBatchesMax; round += 1) {
    const result = await batch(retentionBatchSize).execute(db);
    const deleted = Number(result.numAffectedRows ?? 0n);
    total += deleted;
    if (deleted < retentionBatchSize) break;
  }
  return total;
}
