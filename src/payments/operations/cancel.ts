import { KeelError } from '../../errors.js';
import { liveAttempts, latestTokenForPayment, updatePayment } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import { cancelableStatuses } from '../state-machine.js';
import { inquireAttempt, markUnknown, runAttempt, type AttemptPlan } from './attempt-runner.js';
import { errorResult, partnerContext, type OperationContext, type OperationResult } from './context.js';
import { emitted, resultForPayment, setAttempt, retryAfterSeconds } from './records.js';

/**
 * Canceling a payment before capture. A payment never sent to a partner is canceled locally; an authorized one
 * is voided at the partner first (an attempt like any other).
 */
export async function cancelPayment(context: OperationContext, paymentId: string, reason: string | undefined): Promise<OperationResult> {
  return runAttempt(context, paymentId, cancelPlan(context, reason));
}

export function cancelPlan(context: OperationContext, reason: string | undefined): AttemptPlan<null> {
  const { deps, merchant } = context;
  return {
    operation: 'cancel',
    async decide(trx, payment) {
      const live = await liveAttempts(trx, merchant.id, payment.id);
      if (!cancelableStatuses.includes(payment.status) || live.length > 0) {
        throw new KeelError('payment_unexpected_state', `The payment cannot be canceled because its status is ${payment.status}.`, {
          payment: paymentToApi(payment),
        });
      }
      if (payment.status !== 'requires_capture') {
        const updated = await updatePayment(trx, payment, 'canceled', { amount_capturable: 0n });
        return { kind: 'result', result: await emitted(trx, updated, 'payment.canceled', 200) };
      }
      return { kind: 'attempt', amount: payment.amount };
    },
    async send(attempt, payment) {
      const token = await latestTokenForPayment(deps.db, merchant.id, payment.id);
      return deps.gateways.connector(attempt.gateway).cancel(partnerContext(merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
        partnerPaymentId: payment.partnerPaymentId,
        token: token === null ? null : deps.cipher.decrypt(token),
        reason: reason ?? 'requested_by_customer',
      });
    },
    inquire: (attempt, payment) => inquireAttempt(context, attempt, payment, () => null),
    async record(trx, payment, attempt, outcome) {
      const fromProcessing = payment.status === 'processing';
      if (outcome.kind === 'ok') {
        await setAttempt(trx, attempt, 'succeeded');
        const updated = await updatePayment(trx, payment, 'canceled', { amount_capturable: 0n });
        return emitted(trx, updated, 'payment.canceled', 200);
      }
      if (outcome.kind === 'unknown') {
        await markUnknown(trx, attempt);
        return fromProcessing ? resultForPayment(payment) : emitted(trx, await updatePayment(trx, payment, 'processing'), 'payment.processing', 202);
      }
      const failure = outcome.kind === 'not_found' ? 'not found at the partner' : outcome.kind === 'declined' ? outcome.message : outcome.reason;
      await setAttempt(trx, attempt, outcome.kind === 'unreachable' || outcome.kind === 'not_found' ? 'not_sent' : 'rejected', {
        failure_code: outcome.kind,
        failure_message: failure,
      });
      const updated = fromProcessing ? await updatePayment(trx, payment, 'requires_capture') : payment;
      if (outcome.kind === 'unreachable') {
        return errorResult('gateway_unavailable', 'The payment partner could not be reached; the payment is still authorized. Retry the request.', {
          payment: paymentToApi(updated),
          final: false,
          retryAfterSeconds: retryAfterSeconds(outcome),
        });
      }
      return errorResult('gateway_error', `The payment partner did not cancel the payment: ${failure}.`, { payment: paymentToApi(updated) });
    },
    describe: async (_trx, payment) => resultForPayment(payment),
  };
}
