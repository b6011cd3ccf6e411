import type { Kysely } from 'kysely';
import { currentContext } from '../observability/context.js';
import { newId } from '../storage/ids.js';
import type { KeelDatabase } from '../storage/schema.js';

/**
 * The transactional outbox: an event is written in the same transaction as the state change it reports, so
 * an event exists exactly when its change committed. Publishing is the relay's job.
 */
export interface NewEvent {
  readonly merchantId: string;
  readonly type: string;
  readonly aggregateId: string;
  readonly object: Record<string, unknown>;
}

export async function appendEvent(db: Kysely<KeelDatabase>, event: NewEvent): Promise<string> {
  const { uuid, publicId } = newId('event');
  await db
    .insertInto('outbox')
    .values({
      id: uuid,
      merchant_id: event.merchantId,
      type: event.type,
      aggregate_id: event.aggregateId,
      data: JSON.stringify({ object: event.object }),
      correlation_id: currentContext()?.correlationId ?? null,
    })
    .execute();
  return publicId;
}
