import { KeelError } from '../../errors.js';
import { capturePostings, postTransaction } from '../../ledger/ledger.js';
import type { AuthorizeResult, PaymentSource } from '../../gateways/connector.js';
import { uuidToPublic } from '../../storage/ids.js';
import { liveAttempts, updatePayment } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import { confirmableStatuses } from '../state-machine.js';
import type { PaymentMethodSnapshot } from '../types.js';
import { inquireAttempt, markUnknown, runAttempt, type AttemptPlan } from './attempt-runner.js';
import { errorResult, partnerContext, type OperationContext, type OperationResult } from './context.js';
import { emitted, resultForPayment, setAttempt, retryAfterSeconds } from './records.js';

/**
 * Confirming a payment: the partner call that moves money, in the three phases of DESIGN.md (see
 * `attempt-runner.ts`). A resumed request whose attempt is still `pending` first asks the partner what
 * happened, and sends again (with the same partner idempotency key) only if the partner has no record of it
 * and the card is at hand; the completer, which has no card, leaves the payment to be confirmed again.
 */
export interface AuthorizeInput {
  readonly paymentId: string;
  /** The card or token to charge; absent when resuming without the original request (completer). */
  readonly source: PaymentSource | undefined;
  readonly snapshot: PaymentMethodSnapshot | undefined;
}

export async function authorizePayment(context: OperationContext, input: AuthorizeInput): Promise<OperationResult> {
  return runAttempt(context, input.paymentId, authorizePlan(context, input));
}

export function authorizePlan(context: OperationContext, input: Omit<AuthorizeInput, 'paymentId'>): AttemptPlan<AuthorizeResult> {
  const { deps, merchant } = context;
  return {
    operation: 'authorize',
    async decide(trx, payment) {
      const live = await liveAttempts(trx, merchant.id, payment.id);
      if (live.length > 0 || payment.status === 'processing') {
        throw new KeelError('payment_unexpected_state', `A partner call for this payment is in flight (status ${payment.status}); retry later.`, {
          payment: paymentToApi(payment),
        });
      }
      if (!confirmableStatuses.includes(payment.status)) {
        throw new KeelError('payment_unexpected_state', `The payment cannot be confirmed because its status is ${payment.status}.`, {
          payment: paymentToApi(payment),
        });
      }
      if (input.source === undefined) {
        throw new KeelError('payment_method_required', 'Confirming needs a payment_method.', { param: 'payment_method' });
      }
      await updatePayment(trx, payment, 'requires_confirmation', {
        ...(input.snapshot === undefined ? {} : { payment_method: JSON.stringify(input.snapshot) }),
        failure_code: null,
        failure_message: null,
      });
      return { kind: 'attempt', amount: payment.amount };
    },
    async send(attempt, payment) {
      if (input.source === undefined) return { kind: 'not_found' };
      const outcome = await deps.gateways.connector(attempt.gateway).authorize(partnerContext(merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
        attemptId: uuidToPublic('attempt', attempt.id),
        orderId: payment.orderId,
        amount: payment.amount,
        currency: payment.currency,
        captureMethod: payment.captureMethod,
        customerKey: payment.customerId ?? `keel_${uuidToPublic('merchant', payment.merchantId)}`,
        source: input.source,
      });
      deps.metrics.paymentOutcomes.inc({ outcome: outcome.kind, gateway: payment.gateway });
      return outcome;
    },
    inquire: (attempt, payment) =>
      inquireAttempt(context, attempt, payment, (found) => ({ partnerPaymentId: found.partnerPaymentId, captured: found.captured, token: null, card: null })),
    async record(trx, payment, attempt, outcome) {
      const fromProcessing = payment.status === 'processing';
      switch (outcome.kind) {
        case 'ok': {
          const { partnerPaymentId, captured, token } = outcome.value;
          await setAttempt(trx, attempt, 'succeeded', {
            partner_payment_id: partnerPaymentId,
            partner_token_encrypted: token === null ? null : deps.cipher.encrypt(token),
          });
          const updated = await updatePayment(trx, payment, captured ? 'succeeded' : 'requires_capture', {
            amount_received: captured ? payment.amount : 0n,
            amount_capturable: captured ? 0n : payment.amount,
            partner_payment_id: partnerPaymentId,
            gateway: attempt.gateway,
            failure_code: null,
            failure_message: null,
          });
          if (captured) await postTransaction(trx, { merchantId: updated.merchantId, currency: updated.currency, kind: 'capture', paymentId: updated.id, postings: capturePostings(attempt.gateway, updated.amountReceived) });
          return emitted(trx, updated, captured ? 'payment.succeeded' : 'payment.requires_capture', 200);
        }
        case 'declined': {
          await setAttempt(trx, attempt, 'declined', { failure_code: outcome.code, failure_message: outcome.message });
          const updated = await updatePayment(trx, payment, 'failed', { failure_code: outcome.code, failure_message: outcome.message });
          await emitted(trx, updated, 'payment.failed', 402);
          return resultForPayment(updated);
        }
        case 'unknown':
          await markUnknown(trx, attempt);
          return fromProcessing ? resultForPayment(payment) : emitted(trx, await updatePayment(trx, payment, 'processing'), 'payment.processing', 202);
        case 'unreachable':
          await setAttempt(trx, attempt, 'not_sent', { failure_code: 'gateway_unavailable', failure_message: outcome.reason });
          return errorResult('gateway_unavailable', 'The payment partner could not be reached; nothing was charged. Retry the request.', {
            payment: paymentToApi(payment),
            final: false,
            retryAfterSeconds: retryAfterSeconds(outcome),
          });
        case 'rejected': {
          await setAttempt(trx, attempt, 'rejected', { failure_code: 'gateway_error', failure_message: outcome.reason });
          const updated = fromProcessing ? await updatePayment(trx, payment, 'requires_confirmation') : payment;
          return errorResult('gateway_error', 'The payment partner refused the request; nothing was charged.', { payment: paymentToApi(updated) });
        }
        case 'not_found': {
          // The partner has no record of the attempt: nothing was charged, and the payment may be confirmed again.
          await setAttempt(trx, attempt, 'not_sent', { failure_code: 'processing_error', failure_message: 'the partner has no record of this attempt' });
          const updated = fromProcessing
            ? await updatePayment(trx, payment, 'requires_confirmation', {
                failure_code: 'processing_error',
                failure_message: 'The partner did not complete the charge; nothing was charged. Confirm the payment again.',
              })
            : payment;
          return resultForPayment(updated);
        }
      }
    },
    describe: async (_trx, payment) => resultForPayment(payment),
  };
}
