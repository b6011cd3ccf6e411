import type { Kysely } from 'kysely';
import { KeelError } from '../../errors.js';
import { appendEvent } from '../../events/outbox.js';
import { effectiveDay, postTransaction, refundPostings } from '../../ledger/ledger.js';
import { newId, uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { findRefund, pendingRefundTotal, updatePayment } from '../repository.js';
import { refundToApi } from '../serialize.js';
import type { Attempt, Payment, Refund } from '../types.js';
import { errorResult, ok, partnerContext, type OperationContext, type OperationResult } from './context.js';
import { fromPartner, type Settlement } from './outcome.js';
import { askAgainAndSettle, lockPayment, markUnknown, openAttempt, resumeKeyAttempt, retryAfterSeconds, setAttempt, settle } from './steps.js';

/**
 * Refunds, partial or full. The payment row is locked while the refund is reserved, and unfinished refunds
 * count against the remaining amount, so no interleaving of concurrent refunds can refund more than was
 * received. Each refund is proven on its own: by the partner's answer to its own request (sent again under its
 * own key when the answer was lost), or by an inquiry that finds it by its own reference; never by totals.
 */
export interface RefundInput {
  readonly paymentId: string;
  readonly amount: bigint | undefined;
  readonly reason: string | undefined;
}

type Refunded = { readonly partnerRefundId: string | null };
type Step = { readonly kind: 'send' | 'ask_again'; readonly attempt: Attempt; readonly payment: Payment } | { readonly kind: 'answer'; readonly result: OperationResult };

export const defaultRefundReason = 'requested_by_customer';

export async function createRefund(context: OperationContext, input: RefundInput): Promise<OperationResult> {
  const { deps, merchant } = context;
  const step = await deps.db.transaction().execute(async (trx): Promise<Step> => {
    const payment = await lockPayment(trx, merchant.id, input.paymentId);
    const resumed = await resumeKeyAttempt(trx, context, payment);
    if (resumed !== undefined) return resumed.kind === 'answer' ? resumed : { kind: 'ask_again', attempt: resumed.attempt, payment };
    if (payment.status !== 'succeeded') {
      throw new KeelError('payment_unexpected_state', `The payment cannot be refunded because its status is ${payment.status}.`, { param: 'payment' });
    }
    const reserved = payment.amountRefunded + (await pendingRefundTotal(trx, merchant.id, payment.id));
    const refundable = payment.amountReceived - reserved;
    const amount = input.amount ?? refundable;
    if (amount <= 0n || amount > refundable) {
      throw new KeelError('refund_exceeds_payment', `The refund exceeds what remains refundable (${refundable} ${payment.currency}).`, { param: 'amount' });
    }
    const { uuid } = newId('refund');
    await trx
      .insertInto('refunds')
      .values({ id: uuid, merchant_id: merchant.id, payment_id: payment.id, amount, currency: payment.currency, status: 'pending', reason: input.reason ?? null })
      .execute();
    const attempt = await openAttempt(trx, context, payment, { operation: 'refund', amount, refundId: uuid, reason: input.reason ?? defaultRefundReason });
    return { kind: 'send', attempt, payment };
  });
  if (step.kind === 'answer') return step.result;
  if (step.kind === 'ask_again') return askRefundAgain(context, step.attempt, step.payment);
  const outcome = await sendRefund(context, step.attempt, step.payment);
  return settle(context, step.attempt, outcome, recordRefund, { resent: false });
}

/** The same refund under the same key while the partner keeps it, otherwise an inquiry by its own reference. */
export function askRefundAgain(context: OperationContext, attempt: Attempt, payment: Payment): Promise<OperationResult> {
  return askAgainAndSettle(context, attempt, payment, {
    send: () => sendRefund(context, attempt, payment),
    interpret: () => ({ kind: 'approved', value: { partnerRefundId: null } }),
    record: recordRefund,
  });
}

async function sendRefund(context: OperationContext, attempt: Attempt, payment: Payment): Promise<Settlement<Refunded>> {
  const outcome = await context.deps.gateways.connector(attempt.gateway).refund(partnerContext(context.merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
    attemptId: uuidToPublic('attempt', attempt.id),
    partnerPaymentId: payment.partnerPaymentId ?? '',
    amount: attempt.amount,
    currency: payment.currency,
    reason: attempt.reason ?? defaultRefundReason,
  });
  return fromPartner(outcome, (value) => value);
}

async function recordRefund(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, outcome: Settlement<Refunded>): Promise<OperationResult> {
  const refund = await refundOf(trx, payment.merchantId, attempt);
  switch (outcome.kind) {
    case 'approved': {
      await setAttempt(trx, attempt, 'succeeded');
      await updatePayment(trx, payment, payment.status, { amount_refunded: payment.amountRefunded + refund.amount });
      await postTransaction(trx, { merchantId: payment.merchantId, currency: payment.currency, kind: 'refund', paymentId: payment.id, refundId: refund.id, effectiveDate: effectiveDay(attempt.createdAt), postings: refundPostings(payment.gateway, refund.amount) });
      return finishRefund(trx, payment, refund, 'succeeded', null);
    }
    case 'unknown':
      await markUnknown(trx, attempt, outcome.askAgainAfter);
      return ok(202, refundToApi(refund));
    case 'not_sent':
      // Nothing reached the partner: this refund is void (no event), and a retry with the same key reserves anew.
      await setAttempt(trx, attempt, 'not_sent', { failure_code: 'gateway_unavailable', failure_message: outcome.reason });
      await trx.updateTable('refunds').set({ status: 'failed', failure_code: 'gateway_unavailable', updated_at: new Date() }).where('id', '=', refund.id).execute();
      return errorResult('gateway_unavailable', 'The payment partner could not be reached; nothing was refunded. Retry the request.', {
        final: false,
        retryAfterSeconds: retryAfterSeconds(outcome),
      });
    case 'declined':
    case 'refused':
      await setAttempt(trx, attempt, 'rejected', { failure_code: outcome.kind, failure_message: outcome.kind === 'declined' ? outcome.message : outcome.reason });
      return finishRefund(trx, payment, refund, 'failed', 'gateway_error');
    case 'absent_confirmed':
      await setAttempt(trx, attempt, 'absent', { failure_code: 'processing_error', failure_message: 'the partner has no record of this refund' });
      return finishRefund(trx, payment, refund, 'failed', 'processing_error');
  }
}

async function refundOf(trx: Kysely<KeelDatabase>, merchantId: string, attempt: Attempt): Promise<Refund> {
  const refund = attempt.refundId === null ? undefined : await findRefund(trx, merchantId, attempt.refundId, { forUpdate: true });
  if (refund === undefined) throw new Error(`refund attempt ${attempt.id} has no refund`);
  return refund;
}

async function finishRefund(trx: Kysely<KeelDatabase>, payment: Payment, refund: Refund, status: 'succeeded' | 'failed', failureCode: string | null): Promise<OperationResult> {
  await trx.updateTable('refunds').set({ status, failure_code: failureCode, updated_at: new Date() }).where('id', '=', refund.id).execute();
  const object = refundToApi({ ...refund, status, failureCode });
  await appendEvent(trx, { merchantId: payment.merchantId, type: `refund.${status}`, aggregateId: refund.id, object });
  return ok(200, object);
}
