import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import { appendEvent } from '../../events/outbox.js';
import { declineCodes, type GatewayName, type InquiryResult } from '../../gateways/connector.js';
import { advanceKey, finishKey } from '../../idempotency/keys.js';
import { newId, uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase, PaymentUpdate } from '../../storage/schema.js';
import { findAttempt, findPayment, findRefund, toAttempt, updatePayment } from '../repository.js';
import { paymentToApi, refundToApi } from '../serialize.js';
import type { Attempt, Payment, PaymentStatus } from '../types.js';
import { errorResult, ok, partnerContext, type OperationContext, type OperationResult } from './context.js';
import type { Settlement } from './outcome.js';

/**
 * The steps every payment operation is built from. An operation (authorize, capture, cancel, refund) reads top
 * to bottom in its own file and calls these: lock the payment, persist an attempt before the partner is
 * called, ask the partner, record what the partner's answer proves.
 */
type Db = Kysely<KeelDatabase>;

export async function lockPayment(trx: Db, merchantId: string, paymentId: string): Promise<Payment> {
  const payment = await findPayment(trx, merchantId, paymentId, { forUpdate: true });
  assert.ok(payment !== undefined, 'the payment exists');
  return payment;
}

/** An attempt whose outcome is not recorded yet: a call for it may be at the partner. */
export function isOpen(attempt: Attempt): boolean {
  return attempt.status === 'pending' || attempt.status === 'unknown';
}

/**
 * What a resumed request (its key already names an attempt) does: an open attempt is asked about again; a
 * settled one is answered as it stands; one that provably was not sent lets the operation decide anew.
 */
export type Resumed = { readonly kind: 'ask_again'; readonly attempt: Attempt } | { readonly kind: 'answer'; readonly result: OperationResult } | undefined;

export async function resumeKeyAttempt(trx: Db, context: OperationContext, payment: Payment): Promise<Resumed> {
  const attemptId = context.key?.attemptId;
  if (attemptId == null) return undefined;
  const own = await findAttempt(trx, context.merchant.id, attemptId);
  if (own === undefined || own.status === 'not_sent') return undefined;
  if (isOpen(own)) return { kind: 'ask_again', attempt: own };
  return { kind: 'answer', result: await currentAnswer(trx, payment, own) };
}

export interface AttemptSpec {
  readonly operation: Attempt['operation'];
  readonly amount: bigint;
  /** The partner to send to; by default the payment's. */
  readonly gateway?: GatewayName;
  readonly refundId?: string;
  readonly reason?: string;
  readonly sourceFingerprint?: string;
}

/** Commits a `pending` attempt with its own partner idempotency key, and records it on the request's key. */
export async function openAttempt(trx: Db, context: OperationContext, payment: Payment, spec: AttemptSpec): Promise<Attempt> {
  const { uuid, publicId } = newId('attempt');
  const row = await trx
    .insertInto('payment_attempts')
    .values({
      id: uuid,
      merchant_id: payment.merchantId,
      payment_id: payment.id,
      refund_id: spec.refundId ?? null,
      gateway: spec.gateway ?? payment.gateway,
      operation: spec.operation,
      status: 'pending',
      amount: spec.amount,
      partner_idempotency_key: `keel_${publicId}`,
      partner_payment_id: payment.partnerPaymentId,
      source_fingerprint: spec.sourceFingerprint ?? null,
      reason: spec.reason ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await adoptAttempt(trx, context, payment, uuid, spec.refundId);
  return toAttempt(row);
}

/** Records on the request's key the attempt it is about, so a crash is resumed from there. */
export async function adoptAttempt(trx: Db, context: OperationContext, payment: Payment, attemptId: string, refundId?: string | null): Promise<void> {
  if (context.key === null) return;
  await advanceKey(trx, context.key, 'attempt_created', {
    paymentId: payment.id,
    attemptId,
    ...(refundId == null ? {} : { refundId }),
  });
}

/**
 * The partner keeps an idempotency key for a limited time: within it, the same request under the same key is
 * answered with the first request's outcome (or done once, if the first never arrived); after it, the same
 * request would be a new one. An attempt is sent again only well inside that time.
 */
export const resendMarginMs = 3_600_000;

/**
 * A resend the partner answers with an error (a 5xx it keeps giving, as Stripe replays a stored 500) proves
 * nothing, and each resend starts the consistency window again: after this many unanswered rounds Keel stops
 * sending and inquires, so that the window can pass and a "no such charge" be believed.
 */
export const resendRoundsMax = 3;

export function canResend(context: OperationContext, attempt: Attempt, now = Date.now()): boolean {
  const retentionMs = context.deps.gateways.connector(attempt.gateway).idempotencyKeyRetentionMs;
  return attempt.inquiryCount < resendRoundsMax && now - attempt.createdAt.getTime() < retentionMs - resendMarginMs;
}

/** Notes, before it happens, that an attempt is sent again: a later "no such charge" is measured from here. */
export async function markSent(db: Db, attempt: Attempt): Promise<void> {
  await db.updateTable('payment_attempts').set({ last_sent_at: sql<Date>`now()`, updated_at: new Date() }).where('id', '=', attempt.id).execute();
}

/**
 * Asks the partner what became of an attempt. `interpret` reads a found record for the operation (e.g. a
 * capture is approved only if the intent shows it captured); a record that shows nothing yet is `absent`,
 * which is trusted only past the partner's consistency window (see `absentOrUnknown`).
 */
export async function inquire<T>(
  context: OperationContext,
  attempt: Attempt,
  payment: Payment,
  interpret: (found: Extract<InquiryResult, { state: 'succeeded' }>) => Settlement<T> | 'absent',
): Promise<Settlement<T>> {
  const askedAt = Date.now();
  const answer = await context.deps.gateways.connector(attempt.gateway).inquire(
    partnerContext(context.merchant, attempt.gateway, `${attempt.partnerIdempotencyKey}:inquiry:${attempt.inquiryCount}`),
    {
      attemptId: uuidToPublic('attempt', attempt.id),
      operation: attempt.operation,
      orderId: payment.orderId,
      partnerPaymentId: attempt.partnerPaymentId ?? payment.partnerPaymentId,
      amount: attempt.amount,
    },
  );
  if (answer.kind !== 'ok') return { kind: 'unknown', reason: `inquiry failed: ${answer.kind}` };
  const found = answer.value;
  switch (found.state) {
    case 'succeeded': {
      const meaning = interpret(found);
      return meaning === 'absent' ? absentOrUnknown(context, attempt, askedAt) : meaning;
    }
    case 'declined':
      return { kind: 'declined', code: found.code, message: found.message };
    case 'pending':
      return { kind: 'unknown', reason: 'the partner is still processing' };
    case 'unverifiable':
      return { kind: 'unknown', reason: found.reason };
    case 'absent':
      return absentOrUnknown(context, attempt, askedAt);
  }
}

/**
 * A partner showing no record is believed only when it was asked at least the partner's consistency window
 * after Keel last sent the attempt; before that, the record may simply not be visible yet.
 */
export function absentOrUnknown(context: OperationContext, attempt: Attempt, askedAt: number): Settlement<never> {
  const trustedFrom = attempt.lastSentAt.getTime() + context.deps.consistencyWindowMs[attempt.gateway];
  if (askedAt >= trustedFrom) return { kind: 'absent_confirmed' };
  return { kind: 'unknown', reason: 'the partner shows no record yet, which may be lag', askAgainAfter: new Date(trustedFrom) };
}

/**
 * Asks the partner again about an open capture, cancel or refund and settles it: the same request under the
 * attempt's own key while the partner keeps the key (noted as sent first), otherwise an inquiry read by
 * `interpret`.
 */
export async function askAgainAndSettle<T>(
  context: OperationContext,
  attempt: Attempt,
  payment: Payment,
  ask: {
    readonly send: () => Promise<Settlement<T>>;
    readonly interpret: (found: Extract<InquiryResult, { state: 'succeeded' }>) => Settlement<T> | 'absent';
    readonly record: Recorder<T>;
  },
): Promise<OperationResult> {
  let outcome: Settlement<T>;
  if (canResend(context, attempt)) {
    await markSent(context.deps.db, attempt);
    outcome = await ask.send();
  } else {
    outcome = await inquire(context, attempt, payment, ask.interpret);
  }
  return settle(context, attempt, outcome, ask.record, { resent: true });
}

export type Recorder<T> = (trx: Db, payment: Payment, attempt: Attempt, outcome: Settlement<T>) => Promise<OperationResult>;

/**
 * The last phase: records what the partner's answer proves, with the payment locked, unless someone settled the
 * attempt meanwhile. An attempt that may already have reached the partner (it is `unknown`, or this was a
 * resend) is never settled by a resend that was not sent or was refused: those say nothing of the first.
 */
export async function settle<T>(context: OperationContext, attempt: Attempt, outcome: Settlement<T>, record: Recorder<T>, options: { readonly resent: boolean }): Promise<OperationResult> {
  const { deps, merchant, key } = context;
  return deps.db.transaction().execute(async (trx) => {
    const payment = await lockPayment(trx, merchant.id, attempt.paymentId);
    const current = await findAttempt(trx, merchant.id, attempt.id);
    assert.ok(current !== undefined);
    let result: OperationResult;
    if (!isOpen(current)) {
      result = await currentAnswer(trx, payment, current);
    } else {
      const mayHaveReached = current.status === 'unknown' || options.resent;
      const proven: Settlement<T> =
        mayHaveReached && (outcome.kind === 'not_sent' || outcome.kind === 'refused') ? { kind: 'unknown', reason: `asked again, and the answer was ${outcome.kind}` } : outcome;
      if (current.status === 'unknown' && proven.kind === 'unknown') {
        await scheduleNextInquiry(trx, current, proven.askAgainAfter);
        result = await currentAnswer(trx, payment, current);
      } else {
        result = await record(trx, payment, current, proven);
      }
    }
    if (key !== null && result.final) await finishKey(trx, key, result.status, result.body);
    return result;
  });
}

/** The answer for an attempt as it stands: the refund for refunds, the payment otherwise. */
export async function currentAnswer(trx: Db, payment: Payment, attempt: Attempt): Promise<OperationResult> {
  if (attempt.operation !== 'refund') return resultForPayment(payment);
  const refund = attempt.refundId === null ? undefined : await findRefund(trx, payment.merchantId, attempt.refundId);
  assert.ok(refund !== undefined, `refund attempt ${attempt.id} has a refund`);
  return ok(refund.status === 'pending' ? 202 : 200, refundToApi(refund));
}

/** Changes a payment's status, and writes the event that reports it in the same transaction. */
export async function transition(trx: Db, payment: Payment, to: Exclude<PaymentStatus, 'requires_payment_method'>, changes: Omit<PaymentUpdate, 'status'> = {}): Promise<Payment> {
  const updated = await updatePayment(trx, payment, to, changes);
  if (to !== payment.status) {
    await appendEvent(trx, { merchantId: updated.merchantId, type: `payment.${to}`, aggregateId: updated.id, object: paymentToApi(updated) });
  }
  return updated;
}

export async function setAttempt(
  trx: Db,
  attempt: Attempt,
  status: Attempt['status'],
  changes: {
    partner_payment_id?: string | null;
    partner_token_encrypted?: string | null;
    failure_code?: string;
    failure_message?: string;
    next_inquiry_at?: ReturnType<typeof sql<Date>> | Date | null;
  } = {},
): Promise<void> {
  await trx
    .updateTable('payment_attempts')
    .set({ ...changes, status, updated_at: new Date() })
    .where('id', '=', attempt.id)
    .where('merchant_id', '=', attempt.merchantId)
    .execute();
}

/** Inquiries back off from 1 s doubling to at most 5 minutes, and never come before `notBefore`. */
export const inquiryBackoffMaxSeconds = 300;

export async function markUnknown(trx: Db, attempt: Attempt, notBefore?: Date): Promise<void> {
  await setAttempt(trx, attempt, 'unknown', { next_inquiry_at: notBefore ?? sql<Date>`now() + interval '1 second'` });
}

export async function scheduleNextInquiry(trx: Db, attempt: Attempt, notBefore?: Date): Promise<void> {
  const delaySeconds = Math.min(2 ** attempt.inquiryCount, inquiryBackoffMaxSeconds);
  const backoff = sql<Date>`now() + make_interval(secs => ${delaySeconds})`;
  await trx
    .updateTable('payment_attempts')
    .set({
      inquiry_count: attempt.inquiryCount + 1,
      next_inquiry_at: notBefore === undefined ? backoff : sql<Date>`greatest(${backoff}, ${notBefore})`,
      updated_at: new Date(),
    })
    .where('id', '=', attempt.id)
    .execute();
}

/** An answer lost (for a payment's own attempt): the attempt waits to be asked again, the payment is processing (202). */
export async function recordUnknown(trx: Db, payment: Payment, attempt: Attempt, outcome: Extract<Settlement<unknown>, { kind: 'unknown' }>): Promise<OperationResult> {
  await markUnknown(trx, attempt, outcome.askAgainAfter);
  return resultForPayment(await transition(trx, payment, 'processing'));
}

/** A call that provably never reached the partner: nothing changed, 503 with Retry-After, the key left open. */
export async function recordNotSent(trx: Db, payment: Payment, attempt: Attempt, outcome: Extract<Settlement<unknown>, { kind: 'not_sent' }>, message: string): Promise<OperationResult> {
  await setAttempt(trx, attempt, 'not_sent', { failure_code: 'gateway_unavailable', failure_message: outcome.reason });
  return errorResult('gateway_unavailable', message, { payment: paymentToApi(payment), final: false, retryAfterSeconds: retryAfterSeconds(outcome) });
}

/** The HTTP answer that describes a payment as it stands. */
export function resultForPayment(payment: Payment): OperationResult {
  const object = paymentToApi(payment);
  if (payment.status === 'processing') return ok(202, object);
  if (payment.status === 'failed') {
    const code = (declineCodes as readonly string[]).includes(payment.failureCode ?? '') ? (payment.failureCode as (typeof declineCodes)[number]) : 'card_declined';
    return errorResult(code, payment.failureMessage ?? 'The card was declined.', { payment: object });
  }
  return ok(200, object);
}

/** Seconds a client should wait before retrying a call that was not sent: the breaker's remaining open time. */
export function retryAfterSeconds(outcome: { readonly retryAfterMs?: number }): number {
  return outcome.retryAfterMs === undefined ? 1 : Math.max(1, Math.ceil(outcome.retryAfterMs / 1000));
}

/** What the partner shows the shopper for the order (Toss allows 100 characters): the description, else the order id. */
export function orderNameOf(payment: Payment): string {
  return (payment.description ?? payment.orderId).slice(0, 100);
}

/** The customer reference partners are sent: the Brand Pay customer, else the merchant. */
export function partnerCustomerKey(payment: Payment): string {
  return payment.customerId ?? `keel_${uuidToPublic('merchant', payment.merchantId)}`;
}
