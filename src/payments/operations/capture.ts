import { KeelError } from '../../errors.js';
import { capturePostings, postTransaction } from '../../ledger/ledger.js';
import { appendEvent } from '../../events/outbox.js';
import { uuidToPublic } from '../../storage/ids.js';
import { latestTokenForPayment, liveAttempts, updatePayment } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import { emitted, resultForPayment, setAttempt, retryAfterSeconds } from './records.js';
import { inquireAttempt, markUnknown, runAttempt, type AttemptPlan } from './attempt-runner.js';
import { errorResult, partnerContext, type OperationContext, type OperationResult } from './context.js';

/** Capturing an authorized payment, in full or in part, exactly once. */
export async function capturePayment(context: OperationContext, paymentId: string, requestedAmount: bigint | undefined): Promise<OperationResult> {
  return runAttempt(context, paymentId, capturePlan(context, requestedAmount));
}

export function capturePlan(context: OperationContext, requestedAmount: bigint | undefined): AttemptPlan<{ partnerPaymentId: string | null }> {
  const { deps, merchant } = context;
  return {
    operation: 'capture',
    async decide(trx, payment) {
      const live = await liveAttempts(trx, merchant.id, payment.id);
      if (payment.status !== 'requires_capture' || live.length > 0) {
        throw new KeelError('payment_unexpected_state', `The payment cannot be captured because its status is ${payment.status}.`, {
          payment: paymentToApi(payment),
        });
      }
      const amount = requestedAmount ?? payment.amountCapturable;
      if (amount > payment.amountCapturable) {
        throw new KeelError('parameter_invalid', `amount must be at most amount_capturable (${payment.amountCapturable}).`, { param: 'amount' });
      }
      return { kind: 'attempt', amount };
    },
    async send(attempt, payment) {
      const token = await latestTokenForPayment(deps.db, merchant.id, payment.id);
      return deps.gateways.connector(attempt.gateway).capture(partnerContext(merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
        attemptId: uuidToPublic('attempt', attempt.id),
        orderId: payment.orderId,
        amount: attempt.amount,
        currency: payment.currency,
        customerKey: payment.customerId ?? `keel_${uuidToPublic('merchant', payment.merchantId)}`,
        partnerPaymentId: payment.partnerPaymentId,
        token: token === null ? null : deps.cipher.decrypt(token),
      });
    },
    inquire: (attempt, payment) => inquireAttempt(context, attempt, payment, (found) => ({ partnerPaymentId: found.partnerPaymentId })),
    async record(trx, payment, attempt, outcome) {
      const fromProcessing = payment.status === 'processing';
      switch (outcome.kind) {
        case 'ok': {
          await setAttempt(trx, attempt, 'succeeded', { partner_payment_id: outcome.value.partnerPaymentId });
          const updated = await updatePayment(trx, payment, 'succeeded', {
            amount_received: attempt.amount,
            amount_capturable: 0n,
            partner_payment_id: outcome.value.partnerPaymentId ?? payment.partnerPaymentId,
          });
          await postTransaction(trx, { merchantId: updated.merchantId, currency: updated.currency, kind: 'capture', paymentId: updated.id, postings: capturePostings(updated.gateway, attempt.amount) });
          return emitted(trx, updated, 'payment.succeeded', 200);
        }
        case 'declined': {
          await setAttempt(trx, attempt, 'declined', { failure_code: outcome.code, failure_message: outcome.message });
          const updated = await updatePayment(trx, payment, 'failed', { amount_capturable: 0n, failure_code: outcome.code, failure_message: outcome.message });
          await appendEvent(trx, { merchantId: updated.merchantId, type: 'payment.failed', aggregateId: updated.id, object: paymentToApi(updated) });
          return resultForPayment(updated);
        }
        case 'unknown': {
          await markUnknown(trx, attempt);
          if (fromProcessing) return resultForPayment(payment);
          return emitted(trx, await updatePayment(trx, payment, 'processing'), 'payment.processing', 202);
        }
        case 'unreachable':
        case 'not_found':
        case 'rejected': {
          const sent = outcome.kind === 'rejected' ? 'rejected' : 'not_sent';
          await setAttempt(trx, attempt, sent, { failure_code: outcome.kind, failure_message: 'reason' in outcome ? outcome.reason : 'not found at the partner' });
          const updated = fromProcessing ? await updatePayment(trx, payment, 'requires_capture') : payment;
          if (outcome.kind === 'rejected') return errorResult('gateway_error', 'The payment partner refused the capture; nothing was captured.', { payment: paymentToApi(updated) });
          return errorResult('gateway_unavailable', 'The payment partner could not be reached; nothing was captured. Retry the request.', {
            payment: paymentToApi(updated),
            final: outcome.kind === 'unreachable' ? false : true,
            retryAfterSeconds: retryAfterSeconds(outcome),
          });
        }
      }
    },
    describe: async (_trx, payment) => resultForPayment(payment),
  };
}
