import { KeelError } from '../../errors.js';
import { postTransaction, refundPostings } from '../../ledger/ledger.js';
import { appendEvent } from '../../events/outbox.js';
import type { Kysely } from 'kysely';
import { newId, uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { findRefund, pendingRefundTotal, updatePayment } from '../repository.js';
import { refundToApi } from '../serialize.js';
import type { Attempt, Payment, Refund } from '../types.js';
import { inquireAttempt, markUnknown, runAttempt, type AttemptPlan } from './attempt-runner.js';
import { errorResult, ok, partnerContext, type OperationContext, type OperationResult } from './context.js';
import { setAttempt, retryAfterSeconds } from './records.js';

/**
 * Refunds, partial or full. The payment row is locked while the refund is reserved, and unfinished refunds
 * count against the remaining amount, so no interleaving of concurrent refunds can refund more than was
 * received.
 */
export interface RefundInput {
  readonly paymentId: string;
  readonly amount: bigint | undefined;
  readonly reason: string | undefined;
}

export async function createRefund(context: OperationContext, input: RefundInput): Promise<OperationResult> {
  return runAttempt(context, input.paymentId, refundPlan(context, input));
}

export function refundPlan(context: OperationContext, input: RefundInput): AttemptPlan<{ partnerRefundId: string | null }> {
  const { deps, merchant } = context;
  return {
    operation: 'refund',
    async decide(trx, payment) {
      if (payment.status !== 'succeeded') {
        throw new KeelError('payment_unexpected_state', `The payment cannot be refunded because its status is ${payment.status}.`, {
          param: 'payment',
        });
      }
      const reserved = payment.amountRefunded + (await pendingRefundTotal(trx, merchant.id, payment.id));
      const refundable = payment.amountReceived - reserved;
      const amount = input.amount ?? refundable;
      if (amount <= 0n || amount > refundable) {
        throw new KeelError('refund_exceeds_payment', `The refund exceeds what remains refundable (${refundable} ${payment.currency}).`, {
          param: 'amount',
        });
      }
      const { uuid } = newId('refund');
      await trx
        .insertInto('refunds')
        .values({ id: uuid, merchant_id: merchant.id, payment_id: payment.id, amount, currency: payment.currency, status: 'pending', reason: input.reason ?? null })
        .execute();
      return { kind: 'attempt', amount, refundId: uuid };
    },
    send(attempt, payment) {
      return deps.gateways.connector(attempt.gateway).refund(partnerContext(merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
        attemptId: uuidToPublic('attempt', attempt.id),
        partnerPaymentId: payment.partnerPaymentId ?? '',
        amount: attempt.amount,
        currency: payment.currency,
        reason: input.reason ?? 'requested_by_customer',
      });
    },
    inquire: (attempt, payment) => inquireAttempt(context, attempt, payment, () => ({ partnerRefundId: null }), payment.amountRefunded),
    async record(trx, payment, attempt, outcome) {
      const refund = await refundOf(trx, merchant.id, attempt);
      switch (outcome.kind) {
        case 'ok': {
          await setAttempt(trx, attempt, 'succeeded');
          await updatePayment(trx, payment, payment.status, { amount_refunded: payment.amountRefunded + refund.amount });
          await postTransaction(trx, { merchantId: payment.merchantId, currency: payment.currency, kind: 'refund', paymentId: payment.id, refundId: refund.id, postings: refundPostings(payment.gateway, refund.amount) });
          return finishRefund(trx, payment, refund, 'succeeded', null);
        }
        case 'unknown':
          await markUnknown(trx, attempt);
          return ok(202, refundToApi(refund));
        case 'unreachable':
          // Nothing reached the partner: this refund is void (no event), and a retry with the same key reserves anew.
          await setAttempt(trx, attempt, 'not_sent', { failure_code: 'gateway_unavailable', failure_message: outcome.reason });
          await trx.updateTable('refunds').set({ status: 'failed', failure_code: 'gateway_unavailable', updated_at: new Date() }).where('id', '=', refund.id).execute();
          return errorResult('gateway_unavailable', 'The payment partner could not be reached; nothing was refunded. Retry the request.', {
            final: false,
            retryAfterSeconds: retryAfterSeconds(outcome),
          });
        case 'declined':
        case 'rejected':
        case 'not_found': {
          const reason = outcome.kind === 'not_found' ? 'not found at the partner' : outcome.kind === 'declined' ? outcome.message : outcome.reason;
          await setAttempt(trx, attempt, outcome.kind === 'not_found' ? 'not_sent' : 'rejected', { failure_code: outcome.kind, failure_message: reason });
          return finishRefund(trx, payment, refund, 'failed', outcome.kind === 'not_found' ? 'processing_error' : 'gateway_error');
        }
      }
    },
    async describe(trx, _payment, attempt) {
      const refund = await refundOf(trx, merchant.id, attempt);
      return ok(refund.status === 'pending' ? 202 : 200, refundToApi(refund));
    },
  };
}

async function refundOf(trx: Kysely<KeelDatabase>, merchantId: string, attempt: Attempt): Promise<Refund> {
  const refund = attempt.refundId === null ? undefined : await findRefund(trx, merchantId, attempt.refundId, { forUpdate: true });
  if (refund === undefined) throw new Error(`refund attempt ${attempt.id} has no refund`);
  return refund;
}

async function finishRefund(
  trx: Kysely<KeelDatabase>,
  payment: Payment,
  refund: Refund,
  status: 'succeeded' | 'failed',
  failureCode: string | null,
): Promise<OperationResult> {
  await trx.updateTable('refunds').set({ status, failure_code: failureCode, updated_at: new Date() }).where('id', '=', refund.id).execute();
  const updated: Refund = { ...refund, status, failureCode };
  const object = refundToApi(updated);
  await appendEvent(trx, { merchantId: payment.merchantId, type: `refund.${status}`, aggregateId: refund.id, object });
  return ok(200, object);
}
