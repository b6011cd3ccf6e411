import type { Kysely } from 'kysely';
import { KeelError } from '../../errors.js';
import { uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { latestTokenForPayment, liveAttempts } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import { cancelableStatuses } from '../state-machine.js';
import type { Attempt, Payment } from '../types.js';
import { errorResult, partnerContext, type OperationContext, type OperationResult } from './context.js';
import { fromPartner, type Settlement } from './outcome.js';
import { askAgainAndSettle, lockPayment, openAttempt, recordNotSent, recordUnknown, resultForPayment, resumeKeyAttempt, setAttempt, settle, transition } from './steps.js';

/**
 * Canceling a payment before capture. A payment never sent to a partner is canceled locally; an authorized one
 * is voided at the partner first, as an attempt like any other: decide and commit it with the payment locked,
 * call the partner, record.
 */
type Step =
  | { readonly kind: 'send' | 'ask_again'; readonly attempt: Attempt; readonly payment: Payment }
  | { readonly kind: 'answer'; readonly result: OperationResult };

export const defaultCancelReason = 'requested_by_customer';

export async function cancelPayment(context: OperationContext, paymentId: string, reason: string | undefined): Promise<OperationResult> {
  const { deps, merchant } = context;
  const step = await deps.db.transaction().execute(async (trx): Promise<Step> => {
    const payment = await lockPayment(trx, merchant.id, paymentId);
    const resumed = await resumeKeyAttempt(trx, context, payment);
    if (resumed !== undefined) return resumed.kind === 'answer' ? resumed : { kind: 'ask_again', attempt: resumed.attempt, payment };
    const live = await liveAttempts(trx, merchant.id, payment.id);
    if (!cancelableStatuses.includes(payment.status) || live.length > 0) {
      throw new KeelError('payment_unexpected_state', `The payment cannot be canceled because its status is ${payment.status}.`, { payment: paymentToApi(payment) });
    }
    if (payment.status !== 'requires_capture') {
      return { kind: 'answer', result: resultForPayment(await transition(trx, payment, 'canceled', { amount_capturable: 0n })) };
    }
    return { kind: 'send', attempt: await openAttempt(trx, context, payment, { operation: 'cancel', amount: payment.amount, reason: reason ?? defaultCancelReason }), payment };
  });
  if (step.kind === 'answer') return step.result;
  if (step.kind === 'ask_again') return askCancelAgain(context, step.attempt, step.payment);
  const outcome = await sendCancel(context, step.attempt, step.payment);
  return settle(context, step.attempt, outcome, recordCancel, { resent: false });
}

/** The same cancel under the same key while the partner keeps it, otherwise an inquiry. */
export function askCancelAgain(context: OperationContext, attempt: Attempt, payment: Payment): Promise<OperationResult> {
  return askAgainAndSettle(context, attempt, payment, {
    send: () => sendCancel(context, attempt, payment),
    interpret: (found) => (found.canceled ? { kind: 'approved', value: null } : 'absent'),
    record: recordCancel,
  });
}

async function sendCancel(context: OperationContext, attempt: Attempt, payment: Payment): Promise<Settlement<null>> {
  const { deps, merchant } = context;
  const token = await latestTokenForPayment(deps.db, merchant.id, payment.id);
  const outcome = await deps.gateways.connector(attempt.gateway).cancel(partnerContext(merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
    attemptId: uuidToPublic('attempt', attempt.id),
    partnerPaymentId: payment.partnerPaymentId,
    token: token === null ? null : deps.cipher.decrypt(token),
    reason: attempt.reason ?? defaultCancelReason,
  });
  return fromPartner(outcome, () => null);
}

async function recordCancel(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, outcome: Settlement<null>): Promise<OperationResult> {
  switch (outcome.kind) {
    case 'approved':
      await setAttempt(trx, attempt, 'succeeded');
      return resultForPayment(await transition(trx, payment, 'canceled', { amount_capturable: 0n }));
    case 'unknown':
      return recordUnknown(trx, payment, attempt, outcome);
    case 'not_sent':
      return recordNotSent(trx, payment, attempt, outcome, 'The payment partner could not be reached; the payment is still authorized. Retry the request.');
    case 'declined':
    case 'refused': {
      const failure = outcome.kind === 'declined' ? outcome.message : outcome.reason;
      await setAttempt(trx, attempt, 'rejected', { failure_code: outcome.kind, failure_message: failure });
      const updated = await transition(trx, payment, 'requires_capture');
      return errorResult('gateway_error', `The payment partner did not cancel the payment: ${failure}.`, { payment: paymentToApi(updated) });
    }
    case 'absent_confirmed':
      // Asked past its consistency window, the partner shows the authorization still standing.
      await setAttempt(trx, attempt, 'absent', { failure_code: 'processing_error', failure_message: 'the partner has no record of this cancel' });
      return resultForPayment(await transition(trx, payment, 'requires_capture'));
  }
}
