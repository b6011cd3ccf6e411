import type { GatewayName } from '../gateways/connector.js';

/** Payments' domain types: what operations reason about, apart from rows and API objects. */

export const paymentStatuses = [
  'requires_payment_method',
  'requires_confirmation',
  'processing',
  'requires_capture',
  'succeeded',
  'failed',
  'canceled',
] as const;
export type PaymentStatus = (typeof paymentStatuses)[number];

export const captureMethods = ['automatic', 'manual'] as const;
export type CaptureMethod = (typeof captureMethods)[number];

/**
 * An attempt's life: `pending` from its commit until the partner's answer is recorded; `unknown` when the
 * request may have reached the partner and its answer did not; `not_sent` when it provably never left Keel;
 * `absent` when the partner confirmed, past its consistency window, that it never received it; `rejected`
 * when the partner refused it without acting; `succeeded` and `declined` as the partner answered.
 */
export const attemptStatuses = ['pending', 'succeeded', 'declined', 'not_sent', 'unknown', 'rejected', 'absent'] as const;
export type AttemptStatus = (typeof attemptStatuses)[number];

export const refundStatuses = ['pending', 'succeeded', 'failed'] as const;
export type RefundStatus = (typeof refundStatuses)[number];

/** What Keel keeps of a payment method: never the number or CVC. */
export interface PaymentMethodSnapshot {
  readonly type: 'card';
  readonly card: { readonly brand: string; readonly last4: string; readonly exp_month: number; readonly exp_year: number };
}

export interface Payment {
  readonly id: string;
  readonly merchantId: string;
  readonly orderId: string;
  readonly amount: bigint;
  readonly currency: string;
  readonly country: string;
  readonly status: PaymentStatus;
  readonly captureMethod: CaptureMethod;
  readonly amountCapturable: bigint;
  readonly amountReceived: bigint;
  readonly amountRefunded: bigint;
  readonly gateway: GatewayName;
  readonly failureCode: string | null;
  readonly failureMessage: string | null;
  readonly customerId: string | null;
  readonly paymentMethod: PaymentMethodSnapshot | null;
  /** The stored Brand Pay method the payment was made with, if any. */
  readonly paymentMethodId: string | null;
  readonly description: string | null;
  readonly metadata: Readonly<Record<string, string>>;
  readonly livemode: boolean;
  readonly partnerPaymentId: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface Attempt {
  readonly id: string;
  readonly merchantId: string;
  readonly paymentId: string;
  readonly refundId: string | null;
  /** The partner this attempt was (or is to be) sent to. */
  readonly gateway: GatewayName;
  readonly operation: 'authorize' | 'capture' | 'cancel' | 'refund';
  readonly status: AttemptStatus;
  readonly amount: bigint;
  readonly partnerIdempotencyKey: string;
  readonly partnerPaymentId: string | null;
  readonly partnerTokenEncrypted: string | null;
  readonly inquiryCount: number;
  /** A keyed fingerprint of the card or token an authorization was sent with; resends must carry the same. */
  readonly sourceFingerprint: string | null;
  /** What a cancel or refund told the partner. */
  readonly reason: string | null;
  /** When Keel last sent this attempt to the partner (first send or resend). */
  readonly lastSentAt: Date;
  readonly createdAt: Date;
}

export interface Refund {
  readonly id: string;
  readonly merchantId: string;
  readonly paymentId: string;
  readonly amount: bigint;
  readonly currency: string;
  readonly status: RefundStatus;
  readonly reason: string | null;
  readonly failureCode: string | null;
  readonly createdAt: Date;
}
