import type { Kysely } from 'kysely';
import { KeelError } from '../../errors.js';
import { capturePostings, effectiveDay, postTransaction } from '../../ledger/ledger.js';
import { uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { latestTokenForPayment, liveAttempts } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import type { Attempt, Payment } from '../types.js';
import { errorResult, partnerContext, type OperationContext, type OperationResult } from './context.js';
import { fromPartner, type Settlement } from './outcome.js';
import { askAgainAndSettle, lockPayment, openAttempt, orderNameOf, partnerCustomerKey, recordNotSent, recordUnknown, resultForPayment, resumeKeyAttempt, setAttempt, settle, transition } from './steps.js';

/**
 * Capturing an authorized payment, in full or in part, exactly once: with the payment locked, decide and commit
 * the attempt; call the partner; record. A capture whose answer was lost is asked about again under its own
 * key (the partner replays its answer), or inquired; never sent under a new one.
 */
type Captured = { readonly partnerPaymentId: string | null };
type Step = { readonly kind: 'send' | 'ask_again'; readonly attempt: Attempt; readonly payment: Payment } | { readonly kind: 'answer'; readonly result: OperationResult };

export async function capturePayment(context: OperationContext, paymentId: string, requestedAmount: bigint | undefined): Promise<OperationResult> {
  const { deps, merchant } = context;
  const step = await deps.db.transaction().execute(async (trx): Promise<Step> => {
    const payment = await lockPayment(trx, merchant.id, paymentId);
    const resumed = await resumeKeyAttempt(trx, context, payment);
    if (resumed !== undefined) return resumed.kind === 'answer' ? resumed : { kind: 'ask_again', attempt: resumed.attempt, payment };
    const live = await liveAttempts(trx, merchant.id, payment.id);
    if (payment.status !== 'requires_capture' || live.length > 0) {
      throw new KeelError('payment_unexpected_state', `The payment cannot be captured because its status is ${payment.status}.`, { payment: paymentToApi(payment) });
    }
    const amount = requestedAmount ?? payment.amountCapturable;
    if (amount > payment.amountCapturable) {
      throw new KeelError('parameter_invalid', `amount must be at most amount_capturable (${payment.amountCapturable}).`, { param: 'amount' });
    }
    return { kind: 'send', attempt: await openAttempt(trx, context, payment, { operation: 'capture', amount }), payment };
  });
  if (step.kind === 'answer') return step.result;
  if (step.kind === 'ask_again') return askCaptureAgain(context, step.attempt, step.payment);
  const outcome = await sendCapture(context, step.attempt, step.payment);
  return settle(context, step.attempt, outcome, recordCapture, { resent: false });
}

/** The same capture under the same key while the partner keeps it, otherwise an inquiry. */
export function askCaptureAgain(context: OperationContext, attempt: Attempt, payment: Payment): Promise<OperationResult> {
  return askAgainAndSettle(context, attempt, payment, {
    send: () => sendCapture(context, attempt, payment),
    interpret: (found) => (found.captured ? { kind: 'approved', value: { partnerPaymentId: found.partnerPaymentId } } : 'absent'),
    record: recordCapture,
  });
}

async function sendCapture(context: OperationContext, attempt: Attempt, payment: Payment): Promise<Settlement<Captured>> {
  const { deps, merchant } = context;
  const token = await latestTokenForPayment(deps.db, merchant.id, payment.id);
  const outcome = await deps.gateways.connector(attempt.gateway).capture(partnerContext(merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
    attemptId: uuidToPublic('attempt', attempt.id),
    orderId: payment.orderId,
    orderName: orderNameOf(payment),
    amount: attempt.amount,
    currency: payment.currency,
    customerKey: partnerCustomerKey(payment),
    partnerPaymentId: payment.partnerPaymentId,
    token: token === null ? null : deps.cipher.decrypt(token),
  });
  return fromPartner(outcome, (value) => ({ partnerPaymentId: value.partnerPaymentId }));
}

async function recordCapture(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, outcome: Settlement<Captured>): Promise<OperationResult> {
  switch (outcome.kind) {
    case 'approved': {
      await setAttempt(trx, attempt, 'succeeded', { partner_payment_id: outcome.value.partnerPaymentId });
      const updated = await transition(trx, payment, 'succeeded', {
        amount_received: attempt.amount,
        amount_capturable: 0n,
        partner_payment_id: outcome.value.partnerPaymentId ?? payment.partnerPaymentId,
      });
      await postTransaction(trx, { merchantId: updated.merchantId, currency: updated.currency, kind: 'capture', paymentId: updated.id, effectiveDate: effectiveDay(attempt.createdAt), postings: capturePostings(updated.gateway, attempt.amount) });
      return resultForPayment(updated);
    }
    case 'declined':
      await setAttempt(trx, attempt, 'declined', { failure_code: outcome.code, failure_message: outcome.message });
      return resultForPayment(await transition(trx, payment, 'failed', { amount_capturable: 0n, failure_code: outcome.code, failure_message: outcome.message }));
    case 'unknown':
      return recordUnknown(trx, payment, attempt, outcome);
    case 'not_sent':
      return recordNotSent(trx, payment, attempt, outcome, 'The payment partner could not be reached; nothing was captured. Retry the request.');
    case 'refused':
      await setAttempt(trx, attempt, 'rejected', { failure_code: 'gateway_error', failure_message: outcome.reason });
      return errorResult('gateway_error', 'The payment partner refused the capture; nothing was captured.', { payment: paymentToApi(payment) });
    case 'absent_confirmed':
      // Asked past its consistency window, the partner shows no capture: the authorization still stands.
      await setAttempt(trx, attempt, 'absent', { failure_code: 'processing_error', failure_message: 'the partner has no record of this capture' });
      return resultForPayment(await transition(trx, payment, 'requires_capture'));
  }
}
