import type { Kysely } from 'kysely';
import { currentContext } from '../observability/context.js';
import { uuidToPublic, uuidv7 } from '../storage/ids.js';
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
  const row = eventRow(event);
  await db.insertInto('outbox').values(row).execute();
  return uuidToPublic('event', row.id);
}

/**
 * The outbox row of an event, for a statement that writes it itself (payments/operations/guarded.ts);
 * `objectJson`: the event's object already serialized (the same object the request answers with).
 */
export function eventRow(event: NewEvent, objectJson?: string): { id: string; merchant_id: string; type: string; aggregate_id: string; data: string; correlation_id: string | null } {
  return {
    id: uuidv7(),
    merchant_id: event.merchantId,
    type: event.type,
    aggregate_id: event.aggregateId,
    data: objectJson === undefined ? JSON.stringify({ object: event.object }) : `{"object":${objectJson}}`,
    correlation_id: currentContext()?.correlationId ?? null,
  };
}
