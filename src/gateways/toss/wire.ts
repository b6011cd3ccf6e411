import { assertNever } from '../../errors.js';
import type { DeclineCode } from '../connector.js';

/**
 * Toss Payments' own wire types (API version 2022-11-16), as its documentation describes them, and the
 * exhaustive mapping of its statuses and error codes onto Keel's.
 */

export const tossPaymentStatuses = [
  'READY',
  'IN_PROGRESS',
  'WAITING_FOR_DEPOSIT',
  'DONE',
  'CANCELED',
  'PARTIAL_CANCELED',
  'ABORTED',
  'EXPIRED',
] as const;
export type TossPaymentStatus = (typeof tossPaymentStatuses)[number];

export interface TossCancel {
  readonly cancelAmount: number;
  readonly cancelReason: string;
  readonly canceledAt: string;
  readonly transactionKey: string;
  readonly cancelStatus?: string;
}

export interface TossPayment {
  readonly mId?: string;
  readonly paymentKey: string;
  readonly orderId: string;
  readonly orderName?: string;
  readonly status: TossPaymentStatus;
  readonly totalAmount: number;
  readonly balanceAmount: number;
  readonly currency: string;
  readonly method?: string | null;
  readonly requestedAt?: string;
  readonly approvedAt?: string | null;
  readonly card?: { readonly number?: string; readonly issuerCode?: string; readonly cardType?: string } | null;
  readonly cancels?: readonly TossCancel[] | null;
  readonly metadata?: Record<string, string> | null;
  readonly failure?: { readonly code: string; readonly message: string } | null;
}

export interface TossBillingAuthorization {
  readonly mId?: string;
  readonly customerKey: string;
  readonly authenticatedAt: string;
  readonly method: string;
  readonly billingKey: string;
  readonly cardCompany?: string;
  readonly cardNumber?: string;
  readonly card?: { readonly number?: string; readonly cardType?: string; readonly ownerType?: string } | null;
}

export interface TossError {
  readonly code: string;
  readonly message: string;
}

export interface TossSettlement {
  readonly mId: string;
  readonly paymentKey: string;
  readonly transactionKey: string;
  readonly orderId: string;
  readonly currency: string;
  readonly method: string;
  readonly amount: number;
  readonly approvedAt: string;
  readonly soldDate: string;
  readonly paidOutDate: string;
  readonly fees: readonly { readonly type: string; readonly fee: number }[];
  readonly supplyAmount: number;
  readonly vat: number;
  readonly payOutAmount: number;
}

/** What a Toss payment status means for a charge Keel asked for. */
/** Toss Payments authenticates with HTTP Basic: the secret key as the user name, no password. */
export function tossAuthorization(secretKey: string): string {
  return `Basic ${Buffer.from(`${secretKey}:`).toString('base64')}`;
}

export type TossStatusMeaning = 'pending' | 'captured' | 'failed' | 'canceled';

export function mapTossStatus(status: TossPaymentStatus): TossStatusMeaning {
  switch (status) {
    case 'READY':
    case 'IN_PROGRESS':
    case 'WAITING_FOR_DEPOSIT':
      return 'pending';
    case 'DONE':
    case 'PARTIAL_CANCELED':
      return 'captured';
    case 'CANCELED':
      return 'canceled';
    case 'ABORTED':
    case 'EXPIRED':
      return 'failed';
    default:
      return assertNever(status, 'Toss payment status');
  }
}

export function isTossPaymentStatus(value: unknown): value is TossPaymentStatus {
  return typeof value === 'string' && (tossPaymentStatuses as readonly string[]).includes(value);
}

/** Toss error codes that are the card issuer's decline, mapped to Keel's decline codes. */
const tossDeclines: Readonly<Record<string, DeclineCode>> = {
  REJECT_CARD_PAYMENT: 'insufficient_funds',
  EXCEED_MAX_DAILY_PAYMENT_COUNT: 'card_declined',
  EXCEED_MAX_PAYMENT_AMOUNT: 'insufficient_funds',
  REJECT_CARD_COMPANY: 'card_declined',
  INVALID_STOPPED_CARD: 'card_declined',
  INVALID_CARD_LOST_OR_STOLEN: 'card_declined',
  RESTRICTED_TRANSFER_ACCOUNT: 'card_declined',
  REJECT_ACCOUNT_PAYMENT: 'insufficient_funds',
  INVALID_CARD_EXPIRATION: 'expired_card',
  INVALID_CARD_NUMBER: 'incorrect_card',
  INVALID_CARD_PASSWORD: 'incorrect_card',
};

export function tossDeclineCode(code: string): DeclineCode | undefined {
  return Object.hasOwn(tossDeclines, code) ? tossDeclines[code] : undefined;
}

export function isTossError(body: unknown): body is TossError {
  const candidate = body as Partial<TossError> | null;
  return typeof candidate?.code === 'string' && typeof candidate.message === 'string';
}

export function isTossPayment(body: unknown): body is TossPayment {
  const candidate = body as Partial<TossPayment> | null;
  return typeof candidate?.paymentKey === 'string' && isTossPaymentStatus(candidate.status);
}
