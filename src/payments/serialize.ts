import { uuidToPublic } from '../storage/ids.js';
import type { Payment, Refund } from './types.js';

/** Domain objects to API objects (the contract's shapes). Amounts are JSON numbers: all are below 2^53. */

export type PaymentObject = Record<string, unknown> & { id: string; status: string };

export function paymentToApi(payment: Payment): PaymentObject {
  return {
    id: uuidToPublic('payment', payment.id),
    object: 'payment',
    amount: Number(payment.amount),
    currency: payment.currency,
    order_id: payment.orderId,
    country: payment.country,
    status: payment.status,
    capture_method: payment.captureMethod,
    amount_capturable: Number(payment.amountCapturable),
    amount_received: Number(payment.amountReceived),
    amount_refunded: Number(payment.amountRefunded),
    gateway: payment.gateway,
    failure_code: payment.failureCode,
    failure_message: payment.failureMessage,
    customer: payment.customerId === null ? null : uuidToPublic('customer', payment.customerId),
    payment_method: payment.paymentMethod,
    description: payment.description,
    metadata: payment.metadata,
    livemode: payment.livemode,
    created_at: payment.createdAt.toISOString(),
    updated_at: payment.updatedAt.toISOString(),
  };
}

export function refundToApi(refund: Refund): Record<string, unknown> & { id: string } {
  return {
    id: uuidToPublic('refund', refund.id),
    object: 'refund',
    payment: uuidToPublic('payment', refund.paymentId),
    amount: Number(refund.amount),
    currency: refund.currency,
    status: refund.status,
    reason: refund.reason,
    failure_code: refund.failureCode,
    created_at: refund.createdAt.toISOString(),
  };
}
