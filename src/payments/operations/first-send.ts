import type { AuthorizeResult } from '../../gateways/connector.js';
import { claimedKey, claimedKeyColumns, claimedKeyValues, type IdempotencyKey, type KeyClaim } from '../../idempotency/keys.js';
import { eventRow } from '../../events/outbox.js';
import { capturePostings, effectiveDay, journalValues } from '../../ledger/ledger.js';
import { isUniqueViolation } from '../../storage/database.js';
import { eventParameters, eventPart, finishKeyPart, journalParameters, journalPart, runFinishing, serializedOk, unlessGuardMissed } from './guarded.js';
import { namedStatement } from '../../storage/named-statements.js';
import { newId, uuidv7 } from '../../storage/ids.js';
import { KeelError } from '../../errors.js';
import { paymentToApi } from '../serialize.js';
import { assertTransition } from '../state-machine.js';
import type { Attempt, Payment } from '../types.js';
import { chargeablePartners, sourceFingerprint } from './authorize.js';
import type { OperationContext, OperationResult, PaymentsDeps } from './context.js';
import type { CreatePaymentInput } from './create.js';
import type { Settlement } from './outcome.js';
import { resultForPayment } from './steps.js';
import type { MerchantContext } from '../../merchants/types.js';

/**
 * A new payment's first send at its cost floor: each phase of DESIGN.md in one prepared statement, which commits
 * by itself, instead of a transaction of several.
 *
 * - `startPayment` is phase `attempt_created` with the key inserted in it: the idempotency key (already at that
 *   recovery point, naming the payment and the attempt, locked by this request), the payment, its `pending`
 *   attempt and `payment.created`. A key that exists makes the statement insert nothing, and the request goes
 *   the general way (`beginKey`: replay, in use, reused, or resumed). A taken order id fails the whole
 *   statement: nothing is written, the key included.
 * - `settleFirstSend` is the last phase for the two answers a first send mostly gets, a captured approval and a
 *   decline: the attempt and the payment are moved only from the states the first phase left them in (guarded
 *   `UPDATE … WHERE status = …`, so no read is needed), with the ledger's capture, the payment's event and the
 *   stored response, fenced by the key's lock token. When a guard misses — someone settled the attempt, or took
 *   the key over — `keel_assert` fails the statement, every part of it with it, and the general `settle` (a
 *   transaction with the payment locked) decides.
 *
 * The statements' texts are constant: the correlation id is a bound parameter written to the key and the events
 * (and so printed by PostgreSQL's statement log), not a comment.
 */

const startText = `
WITH key AS (
  INSERT INTO idempotency_keys (${claimedKeyColumns})
  VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8, $9, $10)
  ON CONFLICT (merchant_id, key) DO NOTHING
  RETURNING id
), payment AS (
  INSERT INTO payments (id, merchant_id, order_id, amount, currency, country, status, capture_method, amount_capturable, amount_received,
    amount_refunded, gateway, payment_method, customer_id, payment_method_id, description, metadata, livemode, created_at, updated_at)
  SELECT $8, $1, $11, $12, $13, $14, 'requires_confirmation', $15, 0, 0, 0, $16, $17, $18, $19, $20, $21, $22, $23, $23 FROM key
  RETURNING id
), attempt AS (
  INSERT INTO payment_attempts (id, merchant_id, payment_id, gateway, operation, status, amount, partner_idempotency_key, source_fingerprint, created_at, updated_at)
  SELECT $9, $1, id, $16, 'authorize', 'pending', $12, $24, $25, $23, $23 FROM payment
  RETURNING last_sent_at
), event AS (
  INSERT INTO outbox (id, merchant_id, type, aggregate_id, data, correlation_id)
  SELECT $26, $1, 'payment.created', id, $27, $10 FROM payment
)
SELECT (SELECT id FROM key) AS key_id, (SELECT last_sent_at FROM attempt) AS last_sent_at`;

const captured = namedStatement(
  'keel_payment_captured',
  `
WITH attempt AS (
  UPDATE payment_attempts SET status = 'succeeded', partner_payment_id = :partner_payment_id, partner_token_encrypted = :token, updated_at = :now
  WHERE id = :attempt_id AND merchant_id = :merchant_id AND status = 'pending'
  RETURNING id
), payment AS (
  UPDATE payments SET status = 'succeeded', amount_received = amount, amount_capturable = 0, partner_payment_id = :partner_payment_id, gateway = :gateway,
    failure_code = NULL, failure_message = NULL, updated_at = :now
  WHERE id = :payment_id AND merchant_id = :merchant_id AND status = :from_status AND EXISTS (SELECT 1 FROM attempt)
  RETURNING id
), ${journalPart('payment')}, ${eventPart('payment')}, ${finishKeyPart('payment', { answerIsEvent: true })}`,
);

const declined = namedStatement(
  'keel_payment_declined',
  `
WITH attempt AS (
  UPDATE payment_attempts SET status = 'declined', failure_code = :failure_code, failure_message = :failure_message, updated_at = :now
  WHERE id = :attempt_id AND merchant_id = :merchant_id AND status = 'pending'
  RETURNING id
), payment AS (
  UPDATE payments SET status = 'failed', gateway = :gateway, failure_code = :failure_code, failure_message = :failure_message, updated_at = :now
  WHERE id = :payment_id AND merchant_id = :merchant_id AND status = :from_status AND EXISTS (SELECT 1 FROM attempt)
  RETURNING id
), ${eventPart('payment')}, ${finishKeyPart('payment')}`,
);

export interface StartedPayment {
  readonly key: IdempotencyKey;
  readonly payment: Payment;
  readonly attempt: Attempt;
}

/** Phase `attempt_created`, the key inserted with it; `undefined` when the key exists already. */
export async function startPayment(deps: PaymentsDeps, merchant: MerchantContext, claim: KeyClaim, input: CreatePaymentInput & { readonly source: NonNullable<CreatePaymentInput['source']> }): Promise<StartedPayment | undefined> {
  const [gateway] = chargeablePartners({ deps, merchant }, input.currency, input.source);
  const paymentId = uuidv7();
  const attemptId = newId('attempt');
  const now = new Date();
  const payment: Payment = {
    id: paymentId,
    merchantId: merchant.id,
    orderId: input.orderId,
    amount: input.amount,
    currency: input.currency,
    country: input.country,
    status: 'requires_confirmation',
    captureMethod: input.captureMethod,
    amountCapturable: 0n,
    amountReceived: 0n,
    amountRefunded: 0n,
    gateway,
    failureCode: null,
    failureMessage: null,
    customerId: input.customerId ?? null,
    paymentMethod: input.snapshot ?? null,
    paymentMethodId: input.paymentMethodId ?? null,
    description: input.description ?? null,
    metadata: input.metadata,
    livemode: merchant.livemode,
    partnerPaymentId: null,
    createdAt: now,
    updatedAt: now,
  };
  const fingerprint = sourceFingerprint(deps.cipher, input.source);
  const partnerKey = `keel_${attemptId.publicId}`;
  const references = { paymentId, attemptId: attemptId.uuid };
  const event = eventRow({ merchantId: merchant.id, type: 'payment.created', aggregateId: paymentId, object: paymentToApi(payment) });
  let rows: { key_id: string | null; last_sent_at: Date | string | null }[];
  try {
    rows = await deps.statements.run('keel_payment_start', startText, [
      ...claimedKeyValues(claim, 'attempt_created', references),
      input.orderId,
      input.amount,
      input.currency,
      input.country,
      input.captureMethod,
      gateway,
      input.snapshot === undefined ? null : JSON.stringify(input.snapshot),
      input.customerId ?? null,
      input.paymentMethodId ?? null,
      input.description ?? null,
      JSON.stringify(input.metadata),
      merchant.livemode,
      now,
      partnerKey,
      fingerprint,
      event.id,
      event.data,
    ]);
  } catch (error) {
    if (isUniqueViolation(error, 'payments_merchant_id_order_id_key')) {
      throw new KeelError('order_id_taken', `This merchant already has a payment with order_id ${input.orderId}.`, { param: 'order_id' });
    }
    throw error;
  }
  const keyId = rows[0]?.key_id;
  if (keyId === null || keyId === undefined) return undefined;
  const attempt: Attempt = {
    id: attemptId.uuid,
    merchantId: merchant.id,
    paymentId,
    refundId: null,
    gateway,
    operation: 'authorize',
    status: 'pending',
    amount: input.amount,
    partnerIdempotencyKey: partnerKey,
    partnerPaymentId: null,
    partnerTokenEncrypted: null,
    inquiryCount: 0,
    sourceFingerprint: fingerprint,
    reason: null,
    lastSentAt: new Date(rows[0]?.last_sent_at ?? now),
    createdAt: now,
  };
  return { key: claimedKey(claim, String(keyId), 'attempt_created', references), payment, attempt };
}

/**
 * The last phase of a first send in one statement, for a captured approval or a decline; `undefined` when the
 * answer is another, or a guard missed (nothing was written), for the general `settle` to record.
 */
export async function settleFirstSend(context: OperationContext, attempt: Attempt, payment: Payment, outcome: Settlement<AuthorizeResult>): Promise<OperationResult | undefined> {
  const { deps, key } = context;
  if (key === null || payment.status !== 'requires_confirmation') return undefined;
  const now = new Date();
  const common = { merchant_id: payment.merchantId, attempt_id: attempt.id, payment_id: payment.id, from_status: payment.status, gateway: attempt.gateway, now };
  if (outcome.kind === 'approved' && outcome.value.captured) {
    const { partnerPaymentId, token } = outcome.value;
    assertTransition(payment.status, 'succeeded');
    const updated: Payment = { ...payment, status: 'succeeded', amountReceived: payment.amount, amountCapturable: 0n, partnerPaymentId, gateway: attempt.gateway, failureCode: null, failureMessage: null, updatedAt: now };
    const journal = journalValues({ kind: 'capture', postings: capturePostings(attempt.gateway, updated.amountReceived) });
    const result = serializedOk(paymentToApi(updated));
    const event = eventRow({ merchantId: payment.merchantId, type: 'payment.succeeded', aggregateId: payment.id, object: result.body }, result.json);
    return unlessGuardMissed(
      runFinishing(
        deps.statements,
        captured,
        key,
        {
          ...common,
          refund_id: null,
          partner_payment_id: partnerPaymentId,
          token: token === null ? null : deps.cipher.encrypt(token),
          currency: payment.currency,
          ...journalParameters(journal, 'capture', effectiveDay(attempt.createdAt)),
          ...eventParameters(event),
        },
        result,
      ),
    );
  }
  if (outcome.kind === 'declined') {
    assertTransition(payment.status, 'failed');
    const updated: Payment = { ...payment, status: 'failed', gateway: attempt.gateway, failureCode: outcome.code, failureMessage: outcome.message, updatedAt: now };
    const event = eventRow({ merchantId: payment.merchantId, type: 'payment.failed', aggregateId: payment.id, object: paymentToApi(updated) });
    return unlessGuardMissed(runFinishing(deps.statements, declined, key, { ...common, failure_code: outcome.code, failure_message: outcome.message, ...eventParameters(event) }, resultForPayment(updated)));
  }
  return undefined;
}
