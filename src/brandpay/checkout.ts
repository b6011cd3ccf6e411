import type { Kysely } from 'kysely';
import { KeelError } from '../errors.js';
import { capturePayment } from '../payments/operations/capture.js';
import { runUnderKey } from '../payments/keyed.js';
import type { OperationContext, OperationResult, PaymentsDeps } from '../payments/operations/context.js';
import { ok } from '../payments/operations/context.js';
import { createPayment } from '../payments/operations/create.js';
import { resultForPayment } from '../payments/operations/steps.js';
import { findPayment, liveAttempts } from '../payments/repository.js';
import type { MerchantContext } from '../merchants/types.js';
import type { Payment } from '../payments/types.js';
import { paymentToApi } from '../payments/serialize.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { CheckoutSessionRow, KeelDatabase, PaymentMethodRow } from '../storage/schema.js';
import { verifyPin } from './customers.js';
import { findMethod, storedCardCharge } from './payment-methods.js';

/**
 * Checkout sessions: the shopper's approval on the hosted page authorizes the payment with a stored method
 * (after the PIN), and the merchant's server then confirms it with `payment_key`, `order_id` and `amount`; a
 * changed amount is refused. Sessions expire after 30 minutes and are single use.
 */
export const checkoutSessionLifetimeMs = 30 * 60 * 1000;

type Db = Kysely<KeelDatabase>;

export function sessionToApi(row: CheckoutSessionRow, publicUrl: string): Record<string, unknown> {
  const id = uuidToPublic('checkoutSession', row.id);
  return {
    id,
    object: 'checkout_session',
    url: `${publicUrl}/pay/${id}`,
    status: effectiveStatus(row),
    customer: uuidToPublic('customer', row.customer_id),
    amount: Number(row.amount),
    currency: row.currency,
    order_id: row.order_id,
    order_name: row.order_name,
    payment: row.payment_id === null ? null : uuidToPublic('payment', row.payment_id),
    expires_at: new Date(row.expires_at).toISOString(),
  };
}

function effectiveStatus(row: CheckoutSessionRow): CheckoutSessionRow['status'] {
  return row.status === 'open' && new Date(row.expires_at).getTime() <= Date.now() ? 'expired' : row.status;
}

export interface NewSession {
  readonly merchantId: string;
  readonly customerId: string;
  readonly amount: bigint;
  readonly currency: string;
  readonly orderId: string;
  readonly country: string;
  readonly successUrl: string;
  readonly failUrl: string;
  readonly orderName: string | null;
}

export async function createSession(db: Db, input: NewSession): Promise<CheckoutSessionRow> {
  const taken = await db.selectFrom('payments').select('id').where('merchant_id', '=', input.merchantId).where('order_id', '=', input.orderId).executeTakeFirst();
  if (taken !== undefined) throw new KeelError('order_id_taken', `This merchant already has a payment with order_id ${input.orderId}.`, { param: 'order_id' });
  const row = await db
    .insertInto('checkout_sessions')
    .values({
      id: newId('checkoutSession').uuid,
      merchant_id: input.merchantId,
      customer_id: input.customerId,
      amount: input.amount,
      currency: input.currency,
      order_id: input.orderId,
      country: input.country,
      success_url: input.successUrl,
      fail_url: input.failUrl,
      order_name: input.orderName,
      status: 'open',
      expires_at: new Date(Date.now() + checkoutSessionLifetimeMs),
    })
    .onConflict((conflict) => conflict.columns(['merchant_id', 'order_id']).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (row === undefined) throw new KeelError('order_id_taken', `A checkout session already exists for order_id ${input.orderId}.`, { param: 'order_id' });
  return row;
}

/** The session a hosted-page request names; its id is the page's only credential (128 random bits). */
export async function findSession(db: Db, publicId: string): Promise<CheckoutSessionRow> {
  const uuid = publicToUuid('checkoutSession', publicId);
  const row = uuid === undefined ? undefined : await db.selectFrom('checkout_sessions').selectAll().where('id', '=', uuid).executeTakeFirst();
  if (row === undefined) throw new KeelError('resource_missing', 'No such checkout session.');
  return row;
}

/** Whether the session can still be paid (open and not expired). */
export function sessionIsOpen(row: CheckoutSessionRow): boolean {
  return effectiveStatus(row) === 'open';
}

export function assertOpen(row: CheckoutSessionRow): void {
  const status = effectiveStatus(row);
  if (status === 'expired') throw new KeelError('checkout_session_expired', 'This checkout session has expired. Start the payment again from the shop.');
  if (status !== 'open') throw new KeelError('checkout_session_used', 'This checkout session was already used.');
}

export type Approval =
  | { readonly kind: 'redirect'; readonly url: string }
  /** The payment is under way (a second tap while the partner answers the first): the page waits for it. */
  | { readonly kind: 'processing' };

export interface ApprovalRequest {
  readonly sessionId: string;
  readonly methodPublicId: string;
  readonly pin: string;
}

/**
 * The shopper approves with a stored method and the PIN. The approval runs under an idempotency key of its own,
 * derived from the session, so that the session's one payment is made once whatever happens: a retry after a
 * partner that could not be reached resumes the same payment, a second tap while the partner answers finds the
 * first still running, and after a crash the completer finishes it (sending the same request under the same
 * partner key with the stored card's token). The payment is authorized, with capture left to the merchant's
 * confirm.
 */
export async function approveSession(deps: PaymentsDeps, merchant: MerchantContext, lockTimeoutMs: number, approval: ApprovalRequest): Promise<Approval> {
  const { db } = deps;
  const session = await findSession(db, approval.sessionId);
  await verifyPin(db, session.merchant_id, session.customer_id, approval.pin);
  const keyed = { key: `checkout_session:${session.id}:approve`, method: 'POST', path: `/pay/${approval.sessionId}/approve`, body: { payment_method: approval.methodPublicId } };
  const outcome = await runUnderKey(deps, merchant, keyed, lockTimeoutMs, async (context) => {
    if (context.key?.paymentId == null) assertOpen(session);
    const method = await chargeableMethod(db, session, approval.methodPublicId);
    const { source, snapshot } = storedCardCharge(method, method.token_encrypted ?? '', deps.cipher);
    return createPayment(context, {
      amount: BigInt(session.amount),
      currency: session.currency,
      orderId: session.order_id,
      country: session.country,
      captureMethod: 'manual',
      source,
      snapshot,
      confirm: true,
      // The partner shows it as the order's name (Toss orderName); without one, the order id.
      description: session.order_name ?? undefined,
      metadata: { checkout_session: approval.sessionId },
      customerId: session.customer_id,
      paymentMethodId: method.id,
    });
  });
  if (outcome.kind === 'in_use') return { kind: 'processing' };
  if (outcome.kind === 'reused' || (outcome.replayed && session.status === 'completed')) {
    throw new KeelError('checkout_session_used', 'This checkout session was already used.');
  }
  return finishApproval(db, session, outcome.result);
}

async function chargeableMethod(db: Db, session: CheckoutSessionRow, methodPublicId: string): Promise<PaymentMethodRow & { token_encrypted: string }> {
  const methodId = publicToUuid('paymentMethod', methodPublicId);
  const method = methodId === undefined ? undefined : await findMethod(db, session.merchant_id, methodId);
  if (method === undefined || method.customer_id !== session.customer_id || method.status !== 'active' || method.token_encrypted === null) {
    throw new KeelError('resource_missing', 'Choose one of your stored payment methods.', { param: 'payment_method' });
  }
  if (method.type !== 'card') throw new KeelError('payment_method_unsupported', 'Bank account payments are not supported by this shop\'s partners yet.');
  return { ...method, token_encrypted: method.token_encrypted };
}

/** Links the session to its payment and tells the page where to go; a partner that was not reached leaves it open. */
async function finishApproval(db: Db, session: CheckoutSessionRow, result: OperationResult): Promise<Approval> {
  const body = result.body as { id?: string; status?: string; error?: { code: string; message: string; payment?: { id: string; status: string } } };
  const payment = body.error?.payment ?? body;
  const paymentId = payment.id === undefined ? undefined : publicToUuid('payment', payment.id);
  if (!result.final || paymentId === undefined) {
    throw new KeelError('gateway_unavailable', 'The payment could not be completed right now; nothing was charged. Please try again.', { retryAfterSeconds: 1 });
  }
  await db
    .updateTable('checkout_sessions')
    .set({ status: 'approved', payment_id: paymentId, updated_at: new Date() })
    .where('id', '=', session.id)
    .where('status', '=', 'open')
    .execute();
  if (result.status === 200 && payment.status === 'requires_capture') {
    const query = new URLSearchParams({ paymentKey: payment.id ?? '', orderId: session.order_id, amount: String(session.amount) });
    return { kind: 'redirect', url: withQuery(session.success_url, query) };
  }
  // The partner has not answered yet: the page says so and waits; the janitor settles the payment by the
  // partner's word, and the page's next question (`approvalStatus`) finds where it went.
  if (payment.status === 'processing') return { kind: 'processing' };
  // A payment the partner proved it never charged (asked past its consistency window) ends the session too.
  const code = body.error?.code ?? (payment.status === 'requires_confirmation' ? 'payment_not_completed' : 'payment_failed');
  const message = body.error?.message ?? 'The payment did not go through.';
  return { kind: 'redirect', url: withQuery(session.fail_url, new URLSearchParams({ code, message, orderId: session.order_id })) };
}

/**
 * Where an approval stands, for a page that is waiting (a second tap, a reload): the session's payment (found by
 * its order when a crash kept it from being linked) as a redirect, or still under way.
 */
export async function approvalStatus(db: Db, sessionId: string): Promise<Approval | { readonly kind: 'open' }> {
  const session = await findSession(db, sessionId);
  const payment = await sessionPayment(db, session);
  if (payment === undefined) return { kind: 'open' };
  if (payment.status === 'processing') return { kind: 'processing' };
  // Created but not yet charged: the approval is still sending it (a live attempt), or it was not reached and
  // the shopper may approve again, which resumes the same payment under the approval's key.
  if (payment.status === 'requires_confirmation') {
    const sending = (await liveAttempts(db, payment.merchantId, payment.id)).length > 0;
    if (sending) return { kind: 'processing' };
    if (session.payment_id === null) return { kind: 'open' };
  }
  return finishApproval(db, session, resultForPayment(payment));
}

async function sessionPayment(db: Db, session: CheckoutSessionRow): Promise<Payment | undefined> {
  if (session.payment_id !== null) return findPayment(db, session.merchant_id, session.payment_id);
  const row = await db.selectFrom('payments').select('id').where('merchant_id', '=', session.merchant_id).where('order_id', '=', session.order_id).executeTakeFirst();
  return row === undefined ? undefined : findPayment(db, session.merchant_id, row.id);
}

function withQuery(url: string, query: URLSearchParams): string {
  return `${url}${url.includes('?') ? '&' : '?'}${query.toString()}`;
}

/**
 * The merchant's confirm: the payment from the success redirect, checked against the order and the amount
 * the merchant expects, then captured. Confirming an already confirmed payment answers it again.
 */
export async function confirmBrandPayPayment(context: OperationContext, input: { paymentKey: string; orderId: string; amount: bigint }): Promise<OperationResult> {
  const { deps, merchant } = context;
  const paymentId = publicToUuid('payment', input.paymentKey);
  const payment = paymentId === undefined ? undefined : await findPayment(deps.db, merchant.id, paymentId);
  if (payment === undefined) throw new KeelError('resource_missing', `No such payment: ${input.paymentKey}.`, { param: 'payment_key' });
  if (payment.orderId !== input.orderId) throw new KeelError('parameter_invalid', 'order_id does not match the payment.', { param: 'order_id' });
  if (payment.amount !== input.amount) {
    throw new KeelError('amount_mismatch', `amount ${input.amount} differs from the payment's ${payment.amount}.`, { param: 'amount' });
  }
  if (payment.status === 'succeeded') return ok(200, paymentToApi(payment));
  const result = await capturePayment(context, payment.id, payment.amount);
  if (result.status === 200) {
    await deps.db.updateTable('checkout_sessions').set({ status: 'completed', payment_id: payment.id, updated_at: new Date() }).where('merchant_id', '=', merchant.id).where('order_id', '=', payment.orderId).execute();
  }
  return result;
}
