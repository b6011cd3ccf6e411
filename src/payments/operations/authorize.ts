import type { Kysely } from 'kysely';
import { KeelError } from '../../errors.js';
import { appendEvent } from '../../events/outbox.js';
import type { AuthorizeResult, GatewayName, PaymentSource } from '../../gateways/connector.js';
import { capturePostings, effectiveDay, postTransaction } from '../../ledger/ledger.js';
import type { FieldCipher } from '../../storage/encryption.js';
import { uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { liveAttempts } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import { confirmableStatuses } from '../state-machine.js';
import type { Attempt, Payment, PaymentMethodSnapshot } from '../types.js';
import { errorResult, notConfigured, partnerContext, type OperationContext, type OperationResult } from './context.js';
import { settleFirstSend } from './first-send.js';
import { fromPartner, type Settlement } from './outcome.js';
import {
  adoptAttempt,
  canResend,
  inquire,
  lockPayment,
  markSent,
  openAttempt,
  orderNameOf,
  partnerCustomerKey,
  recordNotSent,
  recordUnknown,
  resultForPayment,
  resumeKeyAttempt,
  setAttempt,
  settle,
  transition,
} from './steps.js';

/**
 * Confirming a payment: the partner call that moves money, in the three phases of DESIGN.md. With the payment
 * locked, decide and commit a `pending` attempt; call the partner outside any transaction; record what its
 * answer proves. A charge that may already be at the partner (its attempt is open) is never made again under a
 * new key: asking again sends the same request under the attempt's own partner idempotency key, which the
 * partner answers with the first request's outcome, or, without the card at hand, inquires.
 */
export interface AuthorizeInput {
  readonly paymentId: string;
  /** The card or token to charge; absent when resuming without the original request (completer). */
  readonly source: PaymentSource | undefined;
  readonly snapshot: PaymentMethodSnapshot | undefined;
}

type Step =
  | { readonly kind: 'send'; readonly attempt: Attempt; readonly payment: Payment; readonly source: PaymentSource }
  | { readonly kind: 'ask_again'; readonly attempt: Attempt; readonly payment: Payment }
  | { readonly kind: 'answer'; readonly result: OperationResult };

export async function authorizePayment(context: OperationContext, input: AuthorizeInput): Promise<OperationResult> {
  const { deps, merchant } = context;
  const step = await deps.db.transaction().execute(async (trx): Promise<Step> => {
    const payment = await lockPayment(trx, merchant.id, input.paymentId);
    const resumed = await resumeKeyAttempt(trx, context, payment);
    if (resumed !== undefined) return resumed.kind === 'answer' ? resumed : { kind: 'ask_again', attempt: resumed.attempt, payment };
    const inFlight = (await liveAttempts(trx, merchant.id, payment.id)).find((attempt) => attempt.operation === 'authorize');
    if (inFlight !== undefined) return { kind: 'ask_again', attempt: await adoptInFlight(trx, context, payment, inFlight, input.source), payment };
    if (!confirmableStatuses.includes(payment.status)) {
      throw new KeelError('payment_unexpected_state', `The payment cannot be confirmed because its status is ${payment.status}.`, { payment: paymentToApi(payment) });
    }
    if (input.source === undefined) throw new KeelError('payment_method_required', 'Confirming needs a payment_method.', { param: 'payment_method' });
    const [gateway] = chargeablePartners(context, payment.currency, input.source);
    const ready = await transition(trx, payment, 'requires_confirmation', {
      ...(input.snapshot === undefined ? {} : { payment_method: JSON.stringify(input.snapshot) }),
      failure_code: null,
      failure_message: null,
      gateway,
    });
    const attempt = await openAttempt(trx, context, ready, { operation: 'authorize', amount: ready.amount, gateway, sourceFingerprint: sourceFingerprint(deps.cipher, input.source) });
    return { kind: 'send', attempt, payment: ready, source: input.source };
  });
  if (step.kind === 'answer') return step.result;
  if (step.kind === 'ask_again') return askAuthorizeAgain(context, step.attempt, step.payment, input.source);
  return chargeAndRecord(context, step.attempt, step.payment, step.source);
}

/**
 * A confirm of a payment whose charge may be in flight: the same card or token asks the partner again under the
 * open attempt's key (never a second charge); anything else waits for the partner's answer.
 */
async function adoptInFlight(trx: Kysely<KeelDatabase>, context: OperationContext, payment: Payment, inFlight: Attempt, source: PaymentSource | undefined): Promise<Attempt> {
  const same = source !== undefined && inFlight.sourceFingerprint === sourceFingerprint(context.deps.cipher, source);
  if (inFlight.status !== 'unknown' || !same) {
    throw new KeelError(
      'payment_unexpected_state',
      `A charge for this payment may be at the partner (status ${payment.status}); confirm again with the same payment method to ask the partner, or wait for its answer.`,
      { payment: paymentToApi(payment) },
    );
  }
  await adoptAttempt(trx, context, payment, inFlight.id);
  return inFlight;
}

/**
 * Phases 2 and 3 of a first send: the partner call, failover when it provably never reached the partner (a new
 * attempt, committed before it is sent, at the next partner that can charge the currency with this source),
 * then the outcome. A stored token is only ever sent to the partner that issued it.
 */
export async function chargeAndRecord(context: OperationContext, first: Attempt, payment: Payment, source: PaymentSource): Promise<OperationResult> {
  context.deps.faults.check('after_attempt_created');
  let attempt = first;
  let outcome = await sendAuthorize(context, attempt, payment, source);
  for (let next = nextPartner(context, payment.currency, source, attempt.gateway); outcome.kind === 'not_sent' && next !== undefined; next = nextPartner(context, payment.currency, source, attempt.gateway)) {
    attempt = await failOver(context, attempt, payment, next, outcome.reason);
    outcome = await sendAuthorize(context, attempt, payment, source);
  }
  context.deps.faults.check('after_partner_call');
  return (await settleFirstSend(context, attempt, payment, outcome)) ?? settle(context, attempt, outcome, recordAuthorize(context), { resent: false });
}

/**
 * Asks the partner again about an open authorization (a resumed request, a repeated confirm, the janitor, the
 * completer): the same request under the same key when the card or token is at hand and the partner still keeps
 * the key, otherwise an inquiry.
 */
export async function askAuthorizeAgain(context: OperationContext, attempt: Attempt, payment: Payment, given?: PaymentSource): Promise<OperationResult> {
  const source = given ?? (payment.paymentMethodId === null ? undefined : await context.deps.storedMethods.source(payment.merchantId, payment.paymentMethodId));
  const same = source !== undefined && attempt.sourceFingerprint === sourceFingerprint(context.deps.cipher, source);
  let outcome: Settlement<AuthorizeResult>;
  if (source !== undefined && same && canResend(context, attempt)) {
    await markSent(context.deps.db, attempt);
    outcome = await sendAuthorize(context, attempt, payment, source);
  } else {
    outcome = await inquireAuthorize(context, attempt, payment);
  }
  return settle(context, attempt, outcome, recordAuthorize(context), { resent: true });
}

export async function sendAuthorize(context: OperationContext, attempt: Attempt, payment: Payment, source: PaymentSource): Promise<Settlement<AuthorizeResult>> {
  const outcome = await context.deps.gateways.connector(attempt.gateway).authorize(partnerContext(context.merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
    attemptId: uuidToPublic('attempt', attempt.id),
    orderId: payment.orderId,
    orderName: orderNameOf(payment),
    amount: payment.amount,
    currency: payment.currency,
    captureMethod: payment.captureMethod,
    customerKey: partnerCustomerKey(payment),
    source,
  });
  context.deps.metrics.paymentOutcomes.inc({ outcome: outcome.kind, gateway: attempt.gateway, country: context.merchant.country });
  return fromPartner(outcome, (value) => value);
}

export function inquireAuthorize(context: OperationContext, attempt: Attempt, payment: Payment): Promise<Settlement<AuthorizeResult>> {
  return inquire(context, attempt, payment, (found) =>
    // An intent canceled before any capture holds nothing: the charge was not made (a 3-D Secure intent Keel
    // canceled, or one the partner voided), which is a decline, never an authorization.
    found.canceled && !found.captured
      ? { kind: 'declined', code: 'card_declined', message: 'The partner canceled this payment before it was captured.' }
      : { kind: 'approved', value: { partnerPaymentId: found.partnerPaymentId, captured: found.captured, token: null, card: null } },
  );
}

/** Phase 3: what each answer does to the attempt and the payment. */
export function recordAuthorize(context: OperationContext) {
  return async (trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, outcome: Settlement<AuthorizeResult>): Promise<OperationResult> => {
    switch (outcome.kind) {
      case 'approved': {
        const { partnerPaymentId, captured, token } = outcome.value;
        await setAttempt(trx, attempt, 'succeeded', {
          partner_payment_id: partnerPaymentId,
          partner_token_encrypted: token === null ? null : context.deps.cipher.encrypt(token),
        });
        const updated = await transition(trx, payment, captured ? 'succeeded' : 'requires_capture', {
          amount_received: captured ? payment.amount : 0n,
          amount_capturable: captured ? 0n : payment.amount,
          partner_payment_id: partnerPaymentId,
          gateway: attempt.gateway,
          failure_code: null,
          failure_message: null,
        });
        if (captured) {
          await postTransaction(trx, { merchantId: updated.merchantId, currency: updated.currency, kind: 'capture', paymentId: updated.id, effectiveDate: effectiveDay(attempt.createdAt), postings: capturePostings(attempt.gateway, updated.amountReceived) });
        }
        return resultForPayment(updated);
      }
      case 'declined': {
        await setAttempt(trx, attempt, 'declined', { failure_code: outcome.code, failure_message: outcome.message });
        // The partner that declined is the payment's partner from now on (a failover's, not the first choice).
        return resultForPayment(await transition(trx, payment, 'failed', { gateway: attempt.gateway, failure_code: outcome.code, failure_message: outcome.message }));
      }
      case 'unknown':
        return recordUnknown(trx, payment, attempt, outcome);
      case 'not_sent':
        // The payment stays as it was; the event says a confirmation was refused before sending, under the partner
        // it was refused for (reports count it against the approval rate).
        await appendEvent(trx, { merchantId: payment.merchantId, type: 'payment.not_sent', aggregateId: payment.id, object: { ...paymentToApi(payment), gateway: attempt.gateway } });
        return recordNotSent(trx, payment, attempt, outcome, 'The payment partner could not be reached; nothing was charged. Retry the request.');
      case 'refused':
        await setAttempt(trx, attempt, 'rejected', { failure_code: 'gateway_error', failure_message: outcome.reason });
        return errorResult('gateway_error', 'The payment partner refused the request; nothing was charged.', { payment: paymentToApi(payment) });
      case 'absent_confirmed': {
        // The partner, asked past its consistency window, has no record: nothing was charged, and the shop is told.
        await setAttempt(trx, attempt, 'absent', { failure_code: 'processing_error', failure_message: 'the partner has no record of this attempt' });
        const updated = await transition(trx, payment, 'requires_confirmation', {
          failure_code: 'processing_error',
          failure_message: 'The partner did not complete the charge; nothing was charged. Confirm the payment again.',
        });
        return resultForPayment(updated);
      }
    }
  };
}

/**
 * The merchant's partners that may charge this currency with this source, in the merchant's order: a token's
 * own partner only. None: the payment is refused before anything is written or sent.
 */
export function chargeablePartners(context: Pick<OperationContext, 'deps' | 'merchant'>, currency: string, source: PaymentSource | undefined): [GatewayName, ...GatewayName[]] {
  const { merchant, deps } = context;
  const candidates = source !== undefined && 'token' in source ? merchant.partners.filter((partner) => partner.gateway === source.gateway) : merchant.partners;
  if (candidates.length === 0) {
    throw new KeelError('payment_method_unsupported', 'This payment method was issued by a partner the merchant does not use.', { param: 'payment_method' });
  }
  const able = candidates.filter((partner) => deps.gateways.connector(partner.gateway).supportsCurrency(currency));
  const [first, ...rest] = able;
  if (first === undefined) {
    throw new KeelError('currency_unsupported', `No partner of this merchant can charge ${currency}${candidates.length < merchant.partners.length ? ' with this payment method' : ''}.`, { param: 'currency' });
  }
  // The payment goes to the first able partner; a live merchant's partner without a key refuses it, and is
  // never a failover target.
  if (first.partnerSecretKey === null) throw notConfigured(first.gateway);
  return [first.gateway, ...rest.filter((partner) => partner.partnerSecretKey !== null).map((partner) => partner.gateway)];
}

function nextPartner(context: OperationContext, currency: string, source: PaymentSource, current: GatewayName): GatewayName | undefined {
  const partners = chargeablePartners(context, currency, source);
  const index = partners.indexOf(current);
  return index < 0 ? undefined : partners[index + 1];
}

async function failOver(context: OperationContext, attempt: Attempt, payment: Payment, gateway: GatewayName, reason: string): Promise<Attempt> {
  context.deps.logger.warn({ from: attempt.gateway, to: gateway, reason }, 'partner unavailable before sending; failing over');
  return context.deps.db.transaction().execute(async (trx) => {
    await setAttempt(trx, attempt, 'not_sent', { failure_code: 'gateway_unavailable', failure_message: reason });
    return openAttempt(trx, context, payment, { operation: 'authorize', amount: attempt.amount, gateway, ...(attempt.sourceFingerprint === null ? {} : { sourceFingerprint: attempt.sourceFingerprint }) });
  });
}

/**
 * A keyed fingerprint of what a charge is sent with, so that Keel can tell whether a repeated confirm carries the
 * same card (number, expiry and CVC, as the partner's idempotency check compares them) without keeping it.
 */
export function sourceFingerprint(cipher: FieldCipher, source: PaymentSource): string {
  if ('token' in source) return cipher.fingerprint(`token:${source.gateway}:${source.token}`);
  const { number, expMonth, expYear, cvc } = source.card;
  return cipher.fingerprint(`card:${number}:${expMonth}:${expYear}:${cvc}`);
}
