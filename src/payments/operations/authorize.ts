import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import { KeelError } from '../../errors.js';
import { appendEvent } from '../../events/outbox.js';
import type { AuthorizeResult, InquiryResult, PartnerOutcome, PaymentSource } from '../../gateways/connector.js';
import { advanceKey, finishKey } from '../../http/idempotency.js';
import { newId, uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { findAttempt, findPayment, liveAttempts, updatePayment } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import { confirmableStatuses } from '../state-machine.js';
import type { Attempt, Payment, PaymentMethodSnapshot } from '../types.js';
import { errorResult, ok, partnerContext, type OperationContext, type OperationResult } from './context.js';
import { emitted, resultForPayment, setAttempt } from './records.js';

/**
 * Confirming a payment: the partner call that moves money. Three phases, as DESIGN.md describes:
 * (1) lock the payment and commit a `pending` attempt with its own partner idempotency key; (2) call the partner
 * outside any transaction; (3) commit the outcome, the events and the stored response together. A request that
 * resumes a key whose attempt is still `pending` first asks the partner what happened, and sends again (with
 * the same partner idempotency key) only if the partner has no record of it.
 */

export interface AuthorizeInput {
  readonly paymentId: string;
  /** The card or token to charge; absent when resuming without the original request (completer). */
  readonly source: PaymentSource | undefined;
  readonly snapshot: PaymentMethodSnapshot | undefined;
}

/** A partner outcome, or "the partner has no record of this attempt" from an inquiry. */
export type AuthorizationOutcome = PartnerOutcome<AuthorizeResult> | { readonly kind: 'not_found' };

type Prepared =
  | { readonly kind: 'result'; readonly result: OperationResult }
  | { readonly kind: 'send'; readonly attempt: Attempt }
  | { readonly kind: 'recover'; readonly attempt: Attempt };

export async function authorizePayment(context: OperationContext, input: AuthorizeInput): Promise<OperationResult> {
  const prepared = await context.deps.db.transaction().execute((trx) => prepareAttempt(trx, context, input));
  if (prepared.kind === 'result') return prepared.result;
  const { attempt } = prepared;
  const connector = context.deps.gateways.connector(context.merchant.gateway);
  let outcome: AuthorizationOutcome;
  if (prepared.kind === 'recover') {
    outcome = await inquireAuthorization(context, attempt);
    if (outcome.kind === 'not_found' && input.source !== undefined) outcome = await sendAuthorization(context, attempt, input.source);
  } else {
    context.deps.faults.check('after_attempt_created');
    assert.ok(input.source !== undefined, 'a new attempt has a source');
    outcome = await sendAuthorization(context, attempt, input.source);
  }
  context.deps.faults.check('after_partner_call');
  context.deps.metrics.paymentOutcomes.inc({ outcome: outcome.kind, gateway: connector.name });
  return recordAuthorization(context, attempt, outcome);
}

async function prepareAttempt(trx: Kysely<KeelDatabase>, context: OperationContext, input: AuthorizeInput): Promise<Prepared> {
  const { merchant, key } = context;
  const payment = await findPayment(trx, merchant.id, input.paymentId, { forUpdate: true });
  assert.ok(payment !== undefined, 'the payment to authorize exists');
  if (key?.attemptId != null) {
    const own = await findAttempt(trx, merchant.id, key.attemptId);
    if (own?.status === 'pending') return { kind: 'recover', attempt: own };
    if (own?.status === 'unknown') return { kind: 'result', result: ok(202, paymentToApi(payment)) };
  }
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
  const { uuid, publicId } = newId('attempt');
  await trx
    .insertInto('payment_attempts')
    .values({
      id: uuid,
      merchant_id: merchant.id,
      payment_id: payment.id,
      operation: 'authorize',
      status: 'pending',
      amount: payment.amount,
      partner_idempotency_key: `keel_${publicId}`,
      correlation_id: null,
    })
    .execute();
  await updatePayment(trx, payment, 'requires_confirmation', {
    ...(input.snapshot === undefined ? {} : { payment_method: JSON.stringify(input.snapshot) }),
    failure_code: null,
    failure_message: null,
  });
  if (key !== null) await advanceKey(trx, key, 'attempt_created', { paymentId: payment.id, attemptId: uuid });
  const attempt = await findAttempt(trx, merchant.id, uuid);
  assert.ok(attempt !== undefined);
  return { kind: 'send', attempt };
}

async function sendAuthorization(context: OperationContext, attempt: Attempt, source: PaymentSource): Promise<PartnerOutcome<AuthorizeResult>> {
  const payment = await findPayment(context.deps.db, context.merchant.id, attempt.paymentId);
  assert.ok(payment !== undefined);
  return context.deps.gateways.connector(context.merchant.gateway).authorize(partnerContext(context.merchant, attempt.partnerIdempotencyKey), {
    attemptId: uuidToPublic('attempt', attempt.id),
    orderId: payment.orderId,
    amount: payment.amount,
    currency: payment.currency,
    captureMethod: payment.captureMethod,
    customerKey: payment.customerId ?? `keel_${uuidToPublic('merchant', payment.merchantId)}`,
    source,
  });
}

export async function inquireAuthorization(context: OperationContext, attempt: Attempt): Promise<AuthorizationOutcome> {
  const payment = await findPayment(context.deps.db, context.merchant.id, attempt.paymentId);
  assert.ok(payment !== undefined);
  const answer = await context.deps.gateways.connector(context.merchant.gateway).inquire(
    partnerContext(context.merchant, `${attempt.partnerIdempotencyKey}:inquiry:${attempt.inquiryCount}`),
    {
      attemptId: uuidToPublic('attempt', attempt.id),
      operation: 'authorize',
      orderId: payment.orderId,
      partnerPaymentId: attempt.partnerPaymentId,
      amount: attempt.amount,
      refundedBefore: 0n,
    },
  );
  return inquiryToOutcome(answer);
}

export function inquiryToOutcome(answer: PartnerOutcome<InquiryResult>): AuthorizationOutcome {
  if (answer.kind !== 'ok') return { kind: 'unknown', reason: `inquiry failed: ${answer.kind}` };
  const result = answer.value;
  switch (result.state) {
    case 'succeeded':
      return { kind: 'ok', value: { partnerPaymentId: result.partnerPaymentId, captured: result.captured, token: null, card: null } };
    case 'declined':
      return { kind: 'declined', code: result.code, message: result.message };
    case 'pending':
      return { kind: 'unknown', reason: 'the partner is still processing' };
    case 'not_found':
      return { kind: 'not_found' };
  }
}

/** Phase 3: the outcome, the payment's new status, its events and the stored response, in one transaction. */
export async function recordAuthorization(context: OperationContext, attempt: Attempt, outcome: AuthorizationOutcome): Promise<OperationResult> {
  const { deps, merchant, key } = context;
  return deps.db.transaction().execute(async (trx) => {
    const payment = await findPayment(trx, merchant.id, attempt.paymentId, { forUpdate: true });
    assert.ok(payment !== undefined);
    const current = await findAttempt(trx, merchant.id, attempt.id);
    assert.ok(current !== undefined);
    // Someone else (the janitor) settled this attempt meanwhile: answer with what the payment is now.
    const result = current.status === 'pending' || current.status === 'unknown' ? await applyOutcome(trx, payment, current, outcome) : resultForPayment(payment);
    if (key !== null && result.final) await finishKey(trx, key, result.status, result.body);
    return result;
  });
}

async function applyOutcome(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, outcome: AuthorizationOutcome): Promise<OperationResult> {
  const fromUnknown = attempt.status === 'unknown';
  switch (outcome.kind) {
    case 'ok': {
      const { value } = outcome;
      await setAttempt(trx, attempt, 'succeeded', { partner_payment_id: value.partnerPaymentId, partner_token_encrypted: value.token });
      const captured = value.captured;
      const updated = await updatePayment(trx, payment, captured ? 'succeeded' : 'requires_capture', {
        amount_received: captured ? payment.amount : 0n,
        amount_capturable: captured ? 0n : payment.amount,
        partner_payment_id: value.partnerPaymentId,
        failure_code: null,
        failure_message: null,
      });
      return emitted(trx, updated, captured ? 'payment.succeeded' : 'payment.requires_capture', 200);
    }
    case 'declined': {
      await setAttempt(trx, attempt, 'declined', { failure_code: outcome.code, failure_message: outcome.message });
      const updated = await updatePayment(trx, payment, 'failed', { failure_code: outcome.code, failure_message: outcome.message });
      await appendEvent(trx, { merchantId: updated.merchantId, type: 'payment.failed', aggregateId: updated.id, object: paymentToApi(updated) });
      return resultForPayment(updated);
    }
    case 'unknown': {
      await setAttempt(trx, attempt, 'unknown', { next_inquiry_at: sql<Date>`now() + interval '1 second'` });
      if (payment.status === 'processing') return resultForPayment(payment);
      const updated = await updatePayment(trx, payment, 'processing');
      return emitted(trx, updated, 'payment.processing', 202);
    }
    case 'unreachable': {
      await setAttempt(trx, attempt, 'not_sent', { failure_code: 'gateway_unavailable', failure_message: outcome.reason });
      return errorResult('gateway_unavailable', 'The payment partner could not be reached; nothing was charged. Retry the request.', {
        payment: paymentToApi(payment),
        final: false,
        retryAfterSeconds: 1,
      });
    }
    case 'rejected': {
      await setAttempt(trx, attempt, 'rejected', { failure_code: 'gateway_error', failure_message: outcome.reason });
      const updated = fromUnknown ? await updatePayment(trx, payment, 'requires_confirmation') : payment;
      return errorResult('gateway_error', 'The payment partner refused the request; nothing was charged.', { payment: paymentToApi(updated) });
    }
    case 'not_found': {
      // The partner has no record: nothing was charged. The payment may be confirmed again.
      await setAttempt(trx, attempt, 'not_sent', { failure_code: 'processing_error', failure_message: 'the partner has no record of this attempt' });
      const updated = fromUnknown
        ? await updatePayment(trx, payment, 'requires_confirmation', {
            failure_code: 'processing_error',
            failure_message: 'The partner did not complete the charge; nothing was charged. Confirm the payment again.',
          })
        : payment;
      return resultForPayment(updated);
    }
  }
}
