import type { Kysely, sql } from 'kysely';
import { appendEvent } from '../../events/outbox.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { paymentToApi } from '../serialize.js';
import type { Attempt, Payment } from '../types.js';
import { errorResult, ok, type OperationResult } from './context.js';

/** Small writes and answers every operation's last phase shares. */

/** Writes a payment's event to the outbox and answers with the payment. */
export async function emitted(trx: Kysely<KeelDatabase>, payment: Payment, type: string, status: number): Promise<OperationResult> {
  const object = paymentToApi(payment);
  await appendEvent(trx, { merchantId: payment.merchantId, type, aggregateId: payment.id, object });
  return ok(status, object);
}

export async function setAttempt(
  trx: Kysely<KeelDatabase>,
  attempt: Attempt,
  status: Attempt['status'],
  changes: {
    partner_payment_id?: string | null;
    partner_token_encrypted?: string | null;
    failure_code?: string;
    failure_message?: string;
    next_inquiry_at?: ReturnType<typeof sql<Date>> | null;
  } = {},
): Promise<void> {
  await trx
    .updateTable('payment_attempts')
    .set({ ...changes, status, updated_at: new Date() })
    .where('id', '=', attempt.id)
    .where('merchant_id', '=', attempt.merchantId)
    .execute();
}

/** The HTTP answer that describes a payment as it stands. */
export function resultForPayment(payment: Payment): OperationResult {
  const object = paymentToApi(payment);
  if (payment.status === 'processing') return ok(202, object);
  if (payment.status === 'failed') {
    const code = payment.failureCode === 'insufficient_funds' || payment.failureCode === 'expired_card' || payment.failureCode === 'incorrect_card' ? payment.failureCode : 'card_declined';
    return errorResult(code, payment.failureMessage ?? 'The card was declined.', { payment: object });
  }
  return ok(200, object);
}

/** Seconds a client should wait before retrying a call that was not sent: the breaker's remaining open time. */
export function retryAfterSeconds(outcome: { readonly kind: string; readonly retryAfterMs?: number }): number {
  return outcome.kind === 'unreachable' && outcome.retryAfterMs !== undefined ? Math.max(1, Math.ceil(outcome.retryAfterMs / 1000)) : 1;
}
