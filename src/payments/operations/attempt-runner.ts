import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import type { GatewayName, PartnerOutcome } from '../../gateways/connector.js';
import { advanceKey, finishKey } from '../../http/idempotency.js';
import { newId, uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { findAttempt, findPayment, toAttempt } from '../repository.js';
import type { Attempt, Payment } from '../types.js';
import { setAttempt } from './records.js';
import { partnerContext, type OperationContext, type OperationResult } from './context.js';

/**
 * The shape every partner operation (confirm, capture, cancel, refund) shares: lock and decide,
 * commit a `pending` attempt, call the partner outside a transaction, commit the outcome. A plan supplies the
 * operation's own decisions; the runner supplies the phases, the recovery of a resumed key and the fencing.
 */
export type SettledOutcome<T> = PartnerOutcome<T> | { readonly kind: 'not_found' };

export type Decision =
  | { readonly kind: 'result'; readonly result: OperationResult }
  | { readonly kind: 'attempt'; readonly amount: bigint; readonly refundId?: string };

export interface AttemptPlan<T> {
  readonly operation: Attempt['operation'];
  /**
   * With the payment locked: answer at once, or ask for an attempt. Throwing a KeelError stores nothing. Each
   * plan decides which attempts may overlap: refunds may (each reserves its amount), the others may not.
   */
  decide(trx: Kysely<KeelDatabase>, payment: Payment): Promise<Decision>;
  /** The partner call; `not_found` when there is nothing to send (a resumed confirm without its card). */
  send(attempt: Attempt, payment: Payment): Promise<SettledOutcome<T>>;
  inquire(attempt: Attempt, payment: Payment): Promise<SettledOutcome<T>>;
  /** Phase 3 for each outcome, with the payment locked and the attempt still unsettled. */
  record(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, outcome: SettledOutcome<T>): Promise<OperationResult>;
  /** The answer when the attempt was already settled by someone else, or is still unknown. */
  describe(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt): Promise<OperationResult>;
}

export async function runAttempt<T>(context: OperationContext, paymentId: string, plan: AttemptPlan<T>): Promise<OperationResult> {
  const { deps, merchant, key } = context;
  const prepared = await deps.db.transaction().execute(async (trx) => {
    const payment = await findPayment(trx, merchant.id, paymentId, { forUpdate: true });
    assert.ok(payment !== undefined, 'the payment exists');
    if (key?.attemptId != null) {
      const own = await findAttempt(trx, merchant.id, key.attemptId);
      if (own?.status === 'pending') return { kind: 'recover' as const, attempt: own, payment };
      if (own !== undefined && own.status !== 'not_sent') return { kind: 'result' as const, result: await plan.describe(trx, payment, own) };
    }
    const decision = await plan.decide(trx, payment);
    if (decision.kind === 'result') return decision;
    const attempt = await insertAttempt(trx, context, payment, { operation: plan.operation, amount: decision.amount, refundId: decision.refundId });
    return { kind: 'send' as const, attempt, payment };
  });
  if (prepared.kind === 'result') return prepared.result;
  return sendAndSettle(context, prepared.attempt, prepared.payment, plan, prepared.kind === 'recover');
}

/** Commits a `pending` attempt with its own partner idempotency key, and records it on the request's key. */
export async function insertAttempt(
  trx: Kysely<KeelDatabase>,
  context: OperationContext,
  payment: Payment,
  spec: {
    readonly operation: Attempt['operation'];
    readonly amount: bigint;
    readonly refundId?: string | undefined;
    /** The partner to send to; by default the payment's. */
    readonly gateway?: GatewayName;
  },
): Promise<Attempt> {
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
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  if (context.key !== null) {
    await advanceKey(trx, context.key, 'attempt_created', {
      paymentId: payment.id,
      attemptId: uuid,
      ...(spec.refundId === undefined ? {} : { refundId: spec.refundId }),
    });
  }
  return toAttempt(row);
}

/**
 * Phases 2 and 3: the partner call outside any transaction, then its outcome. A recovering request asks the
 * partner first and sends only what the partner has no record of, under the same partner idempotency key.
 */
export async function sendAndSettle<T>(context: OperationContext, first: Attempt, payment: Payment, plan: AttemptPlan<T>, recovering: boolean): Promise<OperationResult> {
  let attempt = first;
  let outcome: SettledOutcome<T>;
  if (recovering) {
    outcome = await plan.inquire(attempt, payment);
    if (outcome.kind === 'not_found') outcome = await plan.send(attempt, payment);
  } else {
    context.deps.faults.check('after_attempt_created');
    outcome = await plan.send(attempt, payment);
  }
  // Failover: only a call that provably was not sent may go to the merchant's next partner, as a new attempt
  // committed before it is sent. An unknown outcome is never tried elsewhere.
  for (let next = nextPartner(context, plan, attempt); outcome.kind === 'unreachable' && next !== undefined; next = nextPartner(context, plan, attempt)) {
    attempt = await failOver(context, attempt, payment, plan, next, outcome.reason);
    outcome = await plan.send(attempt, payment);
  }
  context.deps.faults.check('after_partner_call');
  return settleAttempt(context, attempt, plan, outcome);
}

function nextPartner<T>(context: OperationContext, plan: AttemptPlan<T>, attempt: Attempt): GatewayName | undefined {
  if (plan.operation !== 'authorize') return undefined;
  const partners = context.merchant.partners;
  const index = partners.findIndex((partner) => partner.gateway === attempt.gateway);
  return index < 0 ? undefined : partners[index + 1]?.gateway;
}

async function failOver<T>(context: OperationContext, attempt: Attempt, payment: Payment, plan: AttemptPlan<T>, gateway: GatewayName, reason: string): Promise<Attempt> {
  context.deps.logger.warn({ from: attempt.gateway, to: gateway, reason }, 'partner unavailable before sending; failing over');
  return context.deps.db.transaction().execute(async (trx) => {
    await setAttempt(trx, attempt, 'not_sent', { failure_code: 'gateway_unavailable', failure_message: reason });
    return insertAttempt(trx, context, payment, { operation: plan.operation, amount: attempt.amount, gateway });
  });
}

/** Phase 3, shared with the janitor: records the outcome unless the attempt was settled meanwhile. */
export async function settleAttempt<T>(context: OperationContext, attempt: Attempt, plan: AttemptPlan<T>, outcome: SettledOutcome<T>): Promise<OperationResult> {
  const { deps, merchant, key } = context;
  return deps.db.transaction().execute(async (trx) => {
    const payment = await findPayment(trx, merchant.id, attempt.paymentId, { forUpdate: true });
    assert.ok(payment !== undefined);
    const current = await findAttempt(trx, merchant.id, attempt.id);
    assert.ok(current !== undefined);
    const unsettled = current.status === 'pending' || current.status === 'unknown';
    const stillUnknown = current.status === 'unknown' && outcome.kind === 'unknown';
    let result: OperationResult;
    if (stillUnknown) {
      await scheduleNextInquiry(trx, current);
      result = await plan.describe(trx, payment, current);
    } else {
      result = unsettled ? await plan.record(trx, payment, current, outcome) : await plan.describe(trx, payment, current);
    }
    if (key !== null && result.final) await finishKey(trx, key, result.status, result.body);
    return result;
  });
}

/** Backoff for status inquiries: 1 s doubling to at most 5 minutes. */
export const inquiryBackoffMaxSeconds = 300;

export async function scheduleNextInquiry(trx: Kysely<KeelDatabase>, attempt: Attempt): Promise<void> {
  const delaySeconds = Math.min(2 ** attempt.inquiryCount, inquiryBackoffMaxSeconds);
  await trx
    .updateTable('payment_attempts')
    .set({
      inquiry_count: attempt.inquiryCount + 1,
      next_inquiry_at: sql<Date>`now() + make_interval(secs => ${delaySeconds})`,
      updated_at: new Date(),
    })
    .where('id', '=', attempt.id)
    .execute();
}

export async function markUnknown(trx: Kysely<KeelDatabase>, attempt: Attempt): Promise<void> {
  await setAttempt(trx, attempt, 'unknown', { next_inquiry_at: sql<Date>`now() + interval '1 second'` });
}

/** The partner inquiry every plan makes, mapped to a settled outcome of its own type. */
export async function inquireAttempt<T>(
  context: OperationContext,
  attempt: Attempt,
  payment: Payment,
  onSucceeded: (found: { readonly partnerPaymentId: string | null; readonly captured: boolean }) => T,
  refundedBefore = 0n,
): Promise<SettledOutcome<T>> {
  const answer = await context.deps.gateways.connector(attempt.gateway).inquire(
    partnerContext(context.merchant, attempt.gateway, `${attempt.partnerIdempotencyKey}:inquiry:${attempt.inquiryCount}`),
    {
      attemptId: uuidToPublic('attempt', attempt.id),
      operation: attempt.operation,
      orderId: payment.orderId,
      partnerPaymentId: attempt.partnerPaymentId ?? payment.partnerPaymentId,
      amount: attempt.amount,
      refundedBefore,
    },
  );
  if (answer.kind !== 'ok') return { kind: 'unknown', reason: `inquiry failed: ${answer.kind}` };
  const result = answer.value;
  switch (result.state) {
    case 'succeeded':
      if (attempt.operation === 'capture' && !result.captured) return { kind: 'not_found' };
      if (attempt.operation === 'cancel' && !result.canceled) return { kind: 'not_found' };
      return { kind: 'ok', value: onSucceeded(result) };
    case 'declined':
      return { kind: 'declined', code: result.code, message: result.message };
    case 'pending':
      return { kind: 'unknown', reason: 'the partner is still processing' };
    case 'not_found':
      return { kind: 'not_found' };
  }
}
