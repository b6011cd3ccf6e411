import type { Kysely } from 'kysely';
import { KeelError } from '../../errors.js';
import { eventRow } from '../../events/outbox.js';
import { claimedKey, type KeyClaim } from '../../idempotency/keys.js';
import { capturePostings, effectiveDay, journalValues, postTransaction } from '../../ledger/ledger.js';
import type { MerchantContext } from '../../merchants/types.js';
import { newId, uuidToPublic } from '../../storage/ids.js';
import type { KeelDatabase } from '../../storage/schema.js';
import type { FreshStart } from '../keyed.js';
import { latestTokenForPayment, liveAttempts, toPayment } from '../repository.js';
import { paymentToApi } from '../serialize.js';
import { assertTransition } from '../state-machine.js';
import type { Attempt, Payment } from '../types.js';
import { errorResult, partnerContext, type OperationContext, type OperationResult, type PaymentsDeps } from './context.js';
import { claimParameters, eventParameters, eventPart, finishKeyPart, journalParameters, journalPart, runFinishing, runStart, serializedOk, startedAttempt, unlessGuardMissed } from './guarded.js';
import { namedStatement } from '../../storage/named-statements.js';
import { fromPartner, type Settlement } from './outcome.js';
import { askAgainAndSettle, lockPayment, openAttempt, orderNameOf, partnerCustomerKey, recordNotSent, recordUnknown, resultForPayment, resumeKeyAttempt, setAttempt, settle, transition } from './steps.js';

/**
 * Capturing an authorized payment, in full or in part, exactly once: with the payment locked, decide and commit
 * the attempt; call the partner; record. A capture whose answer was lost is asked about again under its own
 * key (the partner replays its answer), or inquired; never sent under a new one.
 */
type Captured = { readonly partnerPaymentId: string | null };
type Step = { readonly kind: 'send' | 'ask_again'; readonly attempt: Attempt; readonly payment: Payment } | { readonly kind: 'answer'; readonly result: OperationResult };

export async function capturePayment(context: OperationContext, paymentId: string, requestedAmount: bigint | undefined): Promise<OperationResult> {
  const { deps, merchant } = context;
  const step = await deps.db.transaction().execute(async (trx): Promise<Step> => {
    const payment = await lockPayment(trx, merchant.id, paymentId);
    const resumed = await resumeKeyAttempt(trx, context, payment);
    if (resumed !== undefined) return resumed.kind === 'answer' ? resumed : { kind: 'ask_again', attempt: resumed.attempt, payment };
    const live = await liveAttempts(trx, merchant.id, payment.id);
    if (payment.status !== 'requires_capture' || live.length > 0) {
      throw new KeelError('payment_unexpected_state', `The payment cannot be captured because its status is ${payment.status}.`, { payment: paymentToApi(payment) });
    }
    const amount = requestedAmount ?? payment.amountCapturable;
    if (amount > payment.amountCapturable) {
      throw new KeelError('parameter_invalid', `amount must be at most amount_capturable (${payment.amountCapturable}).`, { param: 'amount' });
    }
    return { kind: 'send', attempt: await openAttempt(trx, context, payment, { operation: 'capture', amount }), payment };
  });
  if (step.kind === 'answer') return step.result;
  if (step.kind === 'ask_again') return askCaptureAgain(context, step.attempt, step.payment);
  return sendAndRecord(context, step.attempt, step.payment);
}

/**
 * A capture at its cost floor, tried before the general path: phase `attempt_created` in one statement
 * (`keel_capture_start`: the key inserted, the payment locked and checked, the attempt written, the stored
 * token read), the partner call, and a captured answer recorded in one statement. A key that exists, or a
 * payment in no state to capture, wrote nothing and sends the request the general way, which answers it.
 */
export function startCapture(deps: PaymentsDeps, merchant: MerchantContext, paymentId: string | undefined, requestedAmount: bigint | undefined): FreshStart {
  return async (claim) => {
    if (paymentId === undefined) return undefined;
    const started = await insertCaptureAttempt(deps, merchant, claim, paymentId, requestedAmount);
    if (started === undefined) return undefined;
    return { key: started.key, rest: (context) => sendAndRecord(context, started.attempt, started.payment, started.token) };
  };
}

const captureStart = namedStatement(
  'keel_capture_start',
  'SELECT keel_capture_start(:merchant_id, :key, :method, :path, :hash, :lock_token, :correlation_id, :payment_id, :attempt_id, :partner_key, :amount, :now) AS started',
);

async function insertCaptureAttempt(deps: PaymentsDeps, merchant: MerchantContext, claim: KeyClaim, paymentId: string, requestedAmount: bigint | undefined) {
  const attemptId = newId('attempt');
  const partnerKey = `keel_${attemptId.publicId}`;
  const now = new Date();
  const started = await runStart(deps.statements, captureStart, { ...claimParameters(claim), payment_id: paymentId, attempt_id: attemptId.uuid, partner_key: partnerKey, amount: requestedAmount ?? null, now });
  if (started === undefined) return undefined;
  const payment = toPayment(started.payment);
  const attempt = startedAttempt(started, {
    id: attemptId.uuid,
    merchantId: merchant.id,
    paymentId,
    refundId: null,
    gateway: payment.gateway,
    operation: 'capture',
    partnerIdempotencyKey: partnerKey,
    partnerPaymentId: payment.partnerPaymentId,
    reason: null,
    createdAt: now,
  });
  return { key: claimedKey(claim, started.key_id, 'attempt_created', { paymentId, attemptId: attemptId.uuid }), payment, attempt, token: started.token ?? null };
}

/** Phases 2 and 3: the partner call, then its outcome, a captured answer in one statement when it can be. */
async function sendAndRecord(context: OperationContext, attempt: Attempt, payment: Payment, token?: string | null): Promise<OperationResult> {
  context.deps.faults.check('after_attempt_created');
  const outcome = await sendCapture(context, attempt, payment, token);
  context.deps.faults.check('after_partner_call');
  return (await settleCaptured(context, attempt, payment, outcome)) ?? settle(context, attempt, outcome, recordCapture, { resent: false });
}

const captured = namedStatement(
  'keel_capture_captured',
  `
WITH attempt AS (
  UPDATE payment_attempts SET status = 'succeeded', partner_payment_id = :partner_payment_id, updated_at = :now
  WHERE id = :attempt_id AND merchant_id = :merchant_id AND status = 'pending'
  RETURNING id
), payment AS (
  UPDATE payments SET status = 'succeeded', amount_received = :amount, amount_capturable = 0, partner_payment_id = coalesce(:partner_payment_id, partner_payment_id), updated_at = :now
  WHERE id = :payment_id AND merchant_id = :merchant_id AND status = 'requires_capture' AND EXISTS (SELECT 1 FROM attempt)
  RETURNING id
), ${journalPart('payment')}, ${eventPart('payment')}, ${finishKeyPart('payment', { answerIsEvent: true })}`,
);

/**
 * A captured answer to this request's own capture, recorded in one statement guarded by the states the first
 * phase left (the attempt `pending`, the payment `requires_capture`) and the key's lock; `undefined` for any
 * other answer, or when a guard missed (nothing was written), for the general `settle` to record.
 */
async function settleCaptured(context: OperationContext, attempt: Attempt, payment: Payment, outcome: Settlement<Captured>): Promise<OperationResult | undefined> {
  const { deps, key } = context;
  if (key === null || outcome.kind !== 'approved' || payment.status !== 'requires_capture') return undefined;
  const now = new Date();
  assertTransition(payment.status, 'succeeded');
  const partnerPaymentId = outcome.value.partnerPaymentId;
  const updated: Payment = { ...payment, status: 'succeeded', amountReceived: attempt.amount, amountCapturable: 0n, partnerPaymentId: partnerPaymentId ?? payment.partnerPaymentId, updatedAt: now };
  const journal = journalValues({ kind: 'capture', postings: capturePostings(updated.gateway, attempt.amount) });
  const result = serializedOk(paymentToApi(updated));
  const event = eventRow({ merchantId: payment.merchantId, type: 'payment.succeeded', aggregateId: payment.id, object: result.body }, result.json);
  return unlessGuardMissed(
    runFinishing(
      deps.statements,
      captured,
      key,
      {
        merchant_id: payment.merchantId,
        attempt_id: attempt.id,
        payment_id: payment.id,
        refund_id: null,
        partner_payment_id: partnerPaymentId,
        amount: attempt.amount,
        currency: payment.currency,
        now,
        ...journalParameters(journal, 'capture', effectiveDay(attempt.createdAt)),
        ...eventParameters(event),
      },
      result,
    ),
  );
}

/** The same capture under the same key while the partner keeps it, otherwise an inquiry. */
export function askCaptureAgain(context: OperationContext, attempt: Attempt, payment: Payment): Promise<OperationResult> {
  return askAgainAndSettle(context, attempt, payment, {
    send: () => sendCapture(context, attempt, payment),
    interpret: (found) => (found.captured ? { kind: 'approved', value: { partnerPaymentId: found.partnerPaymentId } } : 'absent'),
    record: recordCapture,
  });
}

/** `stored`: the payment's stored token when the caller has read it already (null: there is none). */
async function sendCapture(context: OperationContext, attempt: Attempt, payment: Payment, stored?: string | null): Promise<Settlement<Captured>> {
  const { deps, merchant } = context;
  const token = stored !== undefined ? stored : await latestTokenForPayment(deps.db, merchant.id, payment.id);
  const outcome = await deps.gateways.connector(attempt.gateway).capture(partnerContext(merchant, attempt.gateway, attempt.partnerIdempotencyKey), {
    attemptId: uuidToPublic('attempt', attempt.id),
    orderId: payment.orderId,
    orderName: orderNameOf(payment),
    amount: attempt.amount,
    currency: payment.currency,
    customerKey: partnerCustomerKey(payment),
    partnerPaymentId: payment.partnerPaymentId,
    token: token === null ? null : deps.cipher.decrypt(token),
  });
  return fromPartner(outcome, (value) => ({ partnerPaymentId: value.partnerPaymentId }));
}

async function recordCapture(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, outcome: Settlement<Captured>): Promise<OperationResult> {
  switch (outcome.kind) {
    case 'approved': {
      await setAttempt(trx, attempt, 'succeeded', { partner_payment_id: outcome.value.partnerPaymentId });
      const updated = await transition(trx, payment, 'succeeded', {
        amount_received: attempt.amount,
        amount_capturable: 0n,
        partner_payment_id: outcome.value.partnerPaymentId ?? payment.partnerPaymentId,
      });
      await postTransaction(trx, { merchantId: updated.merchantId, currency: updated.currency, kind: 'capture', paymentId: updated.id, effectiveDate: effectiveDay(attempt.createdAt), postings: capturePostings(updated.gateway, attempt.amount) });
      return resultForPayment(updated);
    }
    case 'declined':
      await setAttempt(trx, attempt, 'declined', { failure_code: outcome.code, failure_message: outcome.message });
      return resultForPayment(await transition(trx, payment, 'failed', { amount_capturable: 0n, failure_code: outcome.code, failure_message: outcome.message }));
    case 'unknown':
      return recordUnknown(trx, payment, attempt, outcome);
    case 'not_sent':
      return recordNotSent(trx, payment, attempt, outcome, 'The payment partner could not be reached; nothing was captured. Retry the request.');
    case 'refused':
      await setAttempt(trx, attempt, 'rejected', { failure_code: 'gateway_error', failure_message: outcome.reason });
      return errorResult('gateway_error', 'The payment partner refused the capture; nothing was captured.', { payment: paymentToApi(payment) });
    case 'absent_confirmed':
      // Asked past its consistency window, the partner shows no capture: the authorization still stands.
      await setAttempt(trx, attempt, 'absent', { failure_code: 'processing_error', failure_message: 'the partner has no record of this capture' });
      return resultForPayment(await transition(trx, payment, 'requires_capture'));
  }
}
