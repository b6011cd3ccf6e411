import assert from 'node:assert/strict';
import type { Kysely } from 'kysely';
import type { GatewayName } from '../gateways/connector.js';
import type { AttemptRow, KeelDatabase, PaymentRow, PaymentUpdate, RefundRow } from '../storage/schema.js';
import { paged, type Page } from '../http/lists.js';
import { assertTransition } from './state-machine.js';
import type { Attempt, Payment, PaymentMethodSnapshot, PaymentStatus, Refund } from './types.js';

/**
 * The only code that reads or writes the payments module's tables. Every query names the merchant: a row of
 * another merchant is simply not found.
 */
type Db = Kysely<KeelDatabase>;

export function toPayment(row: PaymentRow): Payment {
  return {
    id: row.id,
    merchantId: row.merchant_id,
    orderId: row.order_id,
    amount: BigInt(row.amount),
    currency: row.currency,
    country: row.country,
    status: row.status as PaymentStatus,
    captureMethod: row.capture_method as Payment['captureMethod'],
    amountCapturable: BigInt(row.amount_capturable),
    amountReceived: BigInt(row.amount_received),
    amountRefunded: BigInt(row.amount_refunded),
    gateway: row.gateway as GatewayName,
    failureCode: row.failure_code,
    failureMessage: row.failure_message,
    customerId: row.customer_id,
    paymentMethod: row.payment_method as PaymentMethodSnapshot | null,
    paymentMethodId: row.payment_method_id,
    description: row.description,
    metadata: row.metadata,
    livemode: row.livemode,
    partnerPaymentId: row.partner_payment_id,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

export function toAttempt(row: AttemptRow): Attempt {
  return {
    id: row.id,
    merchantId: row.merchant_id,
    paymentId: row.payment_id,
    refundId: row.refund_id,
    gateway: row.gateway as GatewayName,
    operation: row.operation as Attempt['operation'],
    status: row.status as Attempt['status'],
    amount: BigInt(row.amount),
    partnerIdempotencyKey: row.partner_idempotency_key,
    partnerPaymentId: row.partner_payment_id,
    partnerTokenEncrypted: row.partner_token_encrypted,
    inquiryCount: row.inquiry_count,
    sourceFingerprint: row.source_fingerprint,
    reason: row.reason,
    lastSentAt: new Date(row.last_sent_at),
    createdAt: new Date(row.created_at),
  };
}

export function toRefund(row: RefundRow): Refund {
  return {
    id: row.id,
    merchantId: row.merchant_id,
    paymentId: row.payment_id,
    amount: BigInt(row.amount),
    currency: row.currency,
    status: row.status as Refund['status'],
    reason: row.reason,
    failureCode: row.failure_code,
    createdAt: new Date(row.created_at),
  };
}

export async function findPayment(db: Db, merchantId: string, paymentId: string, options: { forUpdate?: boolean } = {}): Promise<Payment | undefined> {
  let query = db.selectFrom('payments').selectAll().where('merchant_id', '=', merchantId).where('id', '=', paymentId);
  if (options.forUpdate === true) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  return row === undefined ? undefined : toPayment(row);
}

/**
 * Writes a payment's new state, guarded by its current status so a concurrent writer that got there first
 * makes this update find nothing (which is a programming error: callers hold the row lock).
 */
export async function updatePayment(db: Db, payment: Payment, to: PaymentStatus, changes: Omit<PaymentUpdate, 'status'> = {}): Promise<Payment> {
  assertTransition(payment.status, to);
  const row = await db
    .updateTable('payments')
    .set({ ...changes, status: to, updated_at: new Date() })
    .where('id', '=', payment.id)
    .where('merchant_id', '=', payment.merchantId)
    .where('status', '=', payment.status)
    .returningAll()
    .executeTakeFirst();
  assert.ok(row !== undefined, `payment ${payment.id} changed under its lock`);
  const updated = toPayment(row);
  assert.ok(updated.amountRefunded <= updated.amountReceived, 'refunded never exceeds received');
  assert.ok(updated.amountReceived <= updated.amount, 'received never exceeds the amount');
  return updated;
}

export async function findAttempt(db: Db, merchantId: string, attemptId: string): Promise<Attempt | undefined> {
  const row = await db
    .selectFrom('payment_attempts')
    .selectAll()
    .where('merchant_id', '=', merchantId)
    .where('id', '=', attemptId)
    .executeTakeFirst();
  return row === undefined ? undefined : toAttempt(row);
}

/** Attempts whose outcome is not settled: a partner call is, or may be, in flight. */
export async function liveAttempts(db: Db, merchantId: string, paymentId: string): Promise<Attempt[]> {
  const rows = await db
    .selectFrom('payment_attempts')
    .selectAll()
    .where('merchant_id', '=', merchantId)
    .where('payment_id', '=', paymentId)
    .where('status', 'in', ['pending', 'unknown'])
    .execute();
  return rows.map(toAttempt);
}

export async function latestTokenForPayment(db: Db, merchantId: string, paymentId: string): Promise<string | null> {
  const row = await db
    .selectFrom('payment_attempts')
    .select('partner_token_encrypted')
    .where('merchant_id', '=', merchantId)
    .where('payment_id', '=', paymentId)
    .where('operation', '=', 'authorize')
    .where('status', '=', 'succeeded')
    .orderBy('id', 'desc')
    .executeTakeFirst();
  return row?.partner_token_encrypted ?? null;
}

export async function findRefund(db: Db, merchantId: string, refundId: string, options: { forUpdate?: boolean } = {}): Promise<Refund | undefined> {
  let query = db.selectFrom('refunds').selectAll().where('merchant_id', '=', merchantId).where('id', '=', refundId);
  if (options.forUpdate === true) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  return row === undefined ? undefined : toRefund(row);
}

/** Refunds that are not finished count against what may still be refunded. */
export async function pendingRefundTotal(db: Db, merchantId: string, paymentId: string): Promise<bigint> {
  const row = await db
    .selectFrom('refunds')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<string>('amount'), eb.val('0')).as('total'))
    .where('merchant_id', '=', merchantId)
    .where('payment_id', '=', paymentId)
    .where('status', '=', 'pending')
    .executeTakeFirstOrThrow();
  return BigInt(row.total);
}

export interface PaymentListFilter {
  readonly status?: PaymentStatus;
  readonly orderId?: string;
}

/** A page of the merchant's payments, newest first (`http/lists.ts`). */
export async function listPayments(db: Db, merchantId: string, filter: PaymentListFilter, page: Page): Promise<PaymentRow[]> {
  let query = db.selectFrom('payments').selectAll().where('merchant_id', '=', merchantId);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.orderId !== undefined) query = query.where('order_id', '=', filter.orderId);
  return paged(query, page).execute();
}

/** A page of the merchant's refunds, newest first, of one payment when `paymentId` is given. */
export async function listRefunds(db: Db, merchantId: string, paymentId: string | undefined, page: Page): Promise<RefundRow[]> {
  let query = db.selectFrom('refunds').selectAll().where('merchant_id', '=', merchantId);
  if (paymentId !== undefined) query = query.where('payment_id', '=', paymentId);
  return paged(query, page).execute();
}
