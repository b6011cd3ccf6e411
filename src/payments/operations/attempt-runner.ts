import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import type { PartnerOutcome } from '../../gateways/connector.js';
import { advanceKey, finishKey } from '../../http/idempotency.js';
import { newId, uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import { findAttempt, findPayment } from '../repository.js';
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
      if (own?.status === 'pending') return { kind: 'recover' as const, attempt: own };
      if (own !== undefined && own.status !== 'not_sent') return { kind: 'result' as const, result: await plan.describe(trx, payment, own) };
    }
    const decision = await plan.decide(trx, payment);
    if (decision.kind === 'result') return decision;
    const { uuid, publicId } = newId('attempt');
    await trx
      .insertInto('payment_attempts')
      .values({
        id: uuid,
        merchant_id: merchant.id,
        payment_id: payment.id,
        refund_id: decision.refundId ?? null,
        operation: plan.operation,
        status: 'pending',
        amount: decision.amount,
        partner_idempotency_key: `keel_${publicId}`,
        partner_payment_id: payment.partnerPaymentId,
      })
      .execute();
    if (key !== null) {
      await advanceKey(trx, key, 'attempt_created', {
        paymentId: payment.id,
        attemptId: uuid,
        ...(decision.refundId === undefined ? {} : { refundId: decision.refundId }),
      });
    }
    const attempt = await findAttempt(trx, merchant.id, uuid);
    assert.ok(attempt !== undefined);
    return { kind: 'send' as const, attempt };
  });
  if (prepared.kind === 'result') return prepared.result;
  const payment = await findPayment(deps.db, merchant.id, paymentId);
  assert.ok(payment !== undefined);
  let outcome: SettledOutcome<T>;
  if (prepared.kind === 'recover') {
    outcome = await plan.inquire(prepared.attempt, payment);
    if (outcome.kind === 'not_found') outcome = await plan.send(prepared.attempt, payment);
  } else {
    deps.faults.check('after_attempt_created');
    outcome = await plan.send(prepared.attempt, payment);
  }
  deps.faults.check('after_partner_call');
  return settleAttempt(context, prepared.attempt, plan, outcome);
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
  const answer = await context.deps.gateways.connector(payment.gateway).inquire(
    partnerContext(context.merchant, `${attempt.partnerIdempotencyKey}:inquiry:${attempt.inquiryCount}`),
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
