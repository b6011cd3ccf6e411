import type { Kysely } from 'kysely';
import { KeelError } from '../../errors.js';
import { appendEvent, eventRow } from '../../events/outbox.js';
import { claimedKey, type KeyClaim } from '../../idempotency/keys.js';
import { effectiveDay, journalValues, postTransaction, refundPostings } from '../../ledger/ledger.js';
import type { MerchantContext } from '../../merchants/types.js';
import { newId, uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import type { FreshStart } from '../keyed.js';
import { findRefund, pendingRefundTotal, toPayment, updatePayment } from '../repository.js';
import { refundToApi } from '../serialize.js';
import type { Attempt, Payment, Refund } from '../types.js';
import { errorResult, ok, partnerContext, type OperationContext, type OperationResult, type PaymentsDeps } from './context.js';
import { claimParameters, eventParameters, eventPart, finishKeyPart, journalParameters, journalPart, runFinishing, runStart, serializedOk, startedAttempt, unlessGuardMissed } from './guarded.js';
import { namedStatement } from '../../storage/named-statements.js';
import { fromPartner, type Settlement } from './outcome.js';
import { askAgainAndSettle, lockPayment, markUnknown, openAttempt, resumeKeyAttempt, retryAfterSeconds, setAttempt, settle } from './steps.js';

/**
 * Refunds, partial or full. The payment row is locked while the refund is reserved, and unfinished refunds
 * count against the remaining amount, so no interleaving of concurrent refunds can refund more than was
 * received. Each refund is proven on its own: by the partner's answer to its own request (sent again under its
 * own key when the answer was lost), or by an inquiry that finds it by its own reference; never by totals.
 */
export interface RefundInput {
  readonly paymentId: string;
  readonly amount: bigint | undefined;
  readonly reason: string | undefined;
}

type Refunded = { readonly partnerRefundId: string | null };
type Step = { readonly kind: 'send' | 'ask_again'; readonly attempt: Attempt; readonly payment: Payment } | { readonly kind: 'answer'; readonly result: OperationResult };

export const defaultRefundReason = 'requested_by_customer';

export async function createRefund(context: OperationContext, input: RefundInput): Promise<OperationResult> {
  const { deps, merchant } = context;
  const step = await deps.db.transaction().execute(async (trx): Promise<Step> => {
    const payment = await lockPayment(trx, merchant.id, input.paymentId);
    const resumed = await resumeKeyAttempt(trx, context, payment);
    if (resumed !== undefined) return resumed.kind === 'answer' ? resumed : { kind: 'ask_again', attempt: resumed.attempt, payment };
    if (payment.status !== 'succeeded') {
      throw new KeelError('payment_unexpected_state', `The payment cannot be refunded because its status is ${payment.status}.`, { param: 'payment' });
    }
    const reserved = payment.amountRefunded + (await pendingRefundTotal(trx, merchant.id, payment.id));
    const refundable = payment.amountReceived - reserved;
    const amount = input.amount ?? refundable;
    if (amount <= 0n || amount > refundable) {
      throw new KeelError('refund_exceeds_payment', `The refund exceeds what remains refundable (${refundable} ${payment.currency}).`, { param: 'amount' });
    }
    const { uuid } = newId('refund');
    await trx
      .insertInto('refunds')
      .values({ id: uuid, merchant_id: merchant.id, payment_id: payment.id, amount, currency: payment.currency, status: 'pending', reason: input.reason ?? null })
      .execute();
    const attempt = await openAttempt(trx, context, payment, { operation: 'refund', amount, refundId: uuid, reason: input.reason ?? defaultRefundReason });
    return { kind: 'send', attempt, payment };
  });
  if (step.kind === 'answer') return step.result;
  if (step.kind === 'ask_again') return askRefundAgain(context, step.attempt, step.payment);
  return sendAndRecord(context, step.attempt, step.payment, undefined);
}

/**
 * A refund at its cost floor, tried before the general path: phase `attempt_created` in one statement
 * (`keel_refund_start`: the key inserted, the payment locked, what remains refundable counted with the pending
 * refunds, the refund and its attempt written), the partner call, and an approval recorded in one statement. A
 * key that exists, or a refund the payment cannot take, wrote nothing and sends the request the general way,
 * which answers it.
 */
export function startRefund(deps: PaymentsDeps, merchant: MerchantContext, paymentId: string | undefined, input: Omit<RefundInput, 'paymentId'>): FreshStart {
  return async (claim) => {
    if (paymentId === undefined) return undefined;
    const started = await insertRefundAttempt(deps, merchant, claim, { ...input, paymentId });
    if (started === undefined) return undefined;
    return { key: started.key, rest: (context) => sendAndRecord(context, started.attempt, started.payment, started.refund) };
  };
}

const refundStart = namedStatement(
  'keel_refund_start',
  'SELECT keel_refund_start(:merchant_id, :key, :method, :path, :hash, :lock_token, :correlation_id, :payment_id, :refund_id, :attempt_id, :partner_key, :amount, :reason, :attempt_reason, :now) AS started',
);

async function insertRefundAttempt(deps: PaymentsDeps, merchant: MerchantContext, claim: KeyClaim, input: RefundInput) {
  const refundId = newId('refund').uuid;
  const attemptId = newId('attempt');
  const partnerKey = `keel_${attemptId.publicId}`;
  const reason = input.reason ?? defaultRefundReason;
  const now = new Date();
  const started = await runStart(deps.statements, refundStart, {
    ...claimParameters(claim),
    payment_id: input.paymentId,
    refund_id: refundId,
    attempt_id: attemptId.uuid,
    partner_key: partnerKey,
    amount: input.amount ?? null,
    reason: input.reason ?? null,
    attempt_reason: reason,
    now,
  });
  if (started === undefined) return undefined;
  const payment = toPayment(started.payment);
  const attempt = startedAttempt(started, {
    id: attemptId.uuid,
    merchantId: merchant.id,
    paymentId: payment.id,
    refundId,
    gateway: payment.gateway,
    operation: 'refund',
    partnerIdempotencyKey: partnerKey,
    partnerPaymentId: payment.partnerPaymentId,
    reason,
    createdAt: now,
  });
  const refund: Refund = { id: refundId, merchantId: merchant.id, paymentId: payment.id, amount: attempt.amount, currency: payment.currency, status: 'pending', reason: input.reason ?? null, failureCode: null, createdAt: now };
  return { key: claimedKey(claim, started.key_id, 'attempt_created', { paymentId: payment.id, attemptId: attemptId.uuid, refundId }), payment, attempt, refund };
}

/** Phases 2 and 3: the partner call, then its outcome; an approval of a refund at hand in one statement. */
async function sendAndRecord(context: OperationContext, attempt: Attempt, payment: Payment, refund: Refund | undefined): Promise<OperationResult> {
  context.deps.faults.check('after_attempt_created');
  const outcome = await sendRefund(context, attempt, payment);
  context.deps.faults.check('after_partner_call');
  return (refund === undefined ? undefined : await settleRefunded(context, attempt, payment, refund, outcome)) ?? settle(context, attempt, outcome, recordRefund, { resent: false });
}

const refunded = namedStatement(
  'keel_refund_refunded',
  `
WITH attempt AS (
  UPDATE payment_attempts SET status = 'succeeded', updated_at = :now
  WHERE id = :attempt_id AND merchant_id = :merchant_id AND status = 'pending'
  RETURNING id
), refund AS (
  UPDATE refunds SET status = 'succeeded', failure_code = NULL, updated_at = :now
  WHERE id = :refund_id AND merchant_id = :merchant_id AND status = 'pending' AND EXISTS (SELECT 1 FROM attempt)
  RETURNING id
), payment AS (
  UPDATE payments SET amount_refunded = amount_refunded + :amount, updated_at = :now
  WHERE id = :payment_id AND merchant_id = :merchant_id AND status = 'succeeded' AND EXISTS (SELECT 1 FROM refund)
  RETURNING id
), ${journalPart('payment')}, ${eventPart('payment')}, ${finishKeyPart('payment', { answerIsEvent: true })}`,
);

/**
 * An approval of this request's own refund, recorded in one statement guarded by the states the first phase
 * left (the attempt and the refund `pending`) and the key's lock; `undefined` for any other answer, or when a
 * guard missed (nothing was written), for the general `settle` to record.
 */
async function settleRefunded(context: OperationContext, attempt: Attempt, payment: Payment, refund: Refund, outcome: Settlement<Refunded>): Promise<OperationResult | undefined> {
  const { deps, key } = context;
  if (key === null || outcome.kind !== 'approved') return undefined;
  const now = new Date();
  const result = serializedOk(refundToApi({ ...refund, status: 'succeeded', failureCode: null }));
  const journal = journalValues({ kind: 'refund', postings: refundPostings(payment.gateway, refund.amount) });
  const event = eventRow({ merchantId: payment.merchantId, type: 'refund.succeeded', aggregateId: refund.id, object: result.body }, result.json);
  return unlessGuardMissed(
    runFinishing(
      deps.statements,
      refunded,
      key,
      {
        merchant_id: payment.merchantId,
        attempt_id: attempt.id,
        refund_id: refund.id,
        payment_id: payment.id,
        amount: refund.amount,
        currency: payment.currency,
        now,
        ...journalParameters(journal, 'refund', effectiveDay(attempt.createdAt)),
        ...eventParameters(event),
      },
      result,
    ),
  );
}

/** The same refund under the same key while the partner keeps it, otherwise an inquiry by its own reference. */
export function askRefundAgain(context: OperationContext, attempt: Attempt, payment: Payment): Promise<OperationResult> {
  return askAgainAndSettle(context, attempt, payment, {
    send: () => sendRefund(context, attempt, payment),
    interpret: () => ({ kind: 'approved', value: { partnerRefundId: null } }),
    record: recordRefund,
  });
}

async function sendRefund(context: OperationContext, attempt: Attempt, payment: Payment): Promise<Settlement<Refunded>> {
  const outcome = await context.deps.gateways.connector(attempt.gateway).refund(partnerContext(context.merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
    attemptId: uuidToPublic('attempt', attempt.id),
    partnerPaymentId: payment.partnerPaymentId ?? '',
    amount: attempt.amount,
    currency: payment.currency,
    reason: attempt.reason ?? defaultRefundReason,
  });
  return fromPartner(outcome, (value) => value);
}

async function recordRefund(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, outcome: Settlement<Refunded>): Promise<OperationResult> {
  const refund = await refundOf(trx, payment.merchantId, attempt);
  switch (outcome.kind) {
    case 'approved': {
      await setAttempt(trx, attempt, 'succeeded');
      await updatePayment(trx, payment, payment.status, { amount_refunded: payment.amountRefunded + refund.amount });
      await postTransaction(trx, { merchantId: payment.merchantId, currency: payment.currency, kind: 'refund', paymentId: payment.id, refundId: refund.id, effectiveDate: effectiveDay(attempt.createdAt), postings: refundPostings(payment.gateway, refund.amount) });
      return finishRefund(trx, payment, refund, 'succeeded', null);
    }
    case 'unknown':
      await markUnknown(trx, attempt, outcome.askAgainAfter);
      return ok(202, refundToApi(refund));
    case 'not_sent':
      // Nothing reached the partner: this refund is void (no event), and a retry with the same key reserves anew.
      await setAttempt(trx, attempt, 'not_sent', { failure_code: 'gateway_unavailable', failure_message: outcome.reason });
      await trx.updateTable('refunds').set({ status: 'failed', failure_code: 'gateway_unavailable', updated_at: new Date() }).where('id', '=', refund.id).execute();
      return errorResult('gateway_unavailable', 'The payment partner could not be reached; nothing was refunded. Retry the request.', {
        final: false,
        retryAfterSeconds: retryAfterSeconds(outcome),
      });
    case 'declined':
    case 'refused':
      await setAttempt(trx, attempt, 'rejected', { failure_code: outcome.kind, failure_message: outcome.kind === 'declined' ? outcome.message : outcome.reason });
      return finishRefund(trx, payment, refund, 'failed', 'gateway_error');
    case 'absent_confirmed':
      await setAttempt(trx, attempt, 'absent', { failure_code: 'processing_error', failure_message: 'the partner has no record of this refund' });
      return finishRefund(trx, payment, refund, 'failed', 'processing_error');
  }
}

async function refundOf(trx: Kysely<KeelDatabase>, merchantId: string, attempt: Attempt): Promise<Refund> {
  const refund = attempt.refundId === null ? undefined : await findRefund(trx, merchantId, attempt.refundId, { forUpdate: true });
  if (refund === undefined) throw new Error(`refund attempt ${attempt.id} has no refund`);
  return refund;
}

async function finishRefund(trx: Kysely<KeelDatabase>, payment: Payment, refund: Refund, status: 'succeeded' | 'failed', failureCode: string | null): Promise<OperationResult> {
  await trx.updateTable('refunds').set({ status, failure_code: failureCode, updated_at: new Date() }).where('id', '=', refund.id).execute();
  const object = refundToApi({ ...refund, status, failureCode });
  await appendEvent(trx, { merchantId: payment.merchantId, type: `refund.${status}`, aggregateId: refund.id, object });
  return ok(200, object);
}
