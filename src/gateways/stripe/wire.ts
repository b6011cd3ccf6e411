import { assertNever } from '../../errors.js';
import type { DeclineCode } from '../connector.js';

/** Stripe's own wire types (PaymentIntents API) and the exhaustive mapping of its statuses onto Keel's. */

export const stripeIntentStatuses = [
  'requires_payment_method',
  'requires_confirmation',
  'requires_action',
  'processing',
  'requires_capture',
  'canceled',
  'succeeded',
] as const;
export type StripeIntentStatus = (typeof stripeIntentStatuses)[number];

export interface StripeError {
  readonly type: 'card_error' | 'api_error' | 'invalid_request_error' | 'idempotency_error' | 'authentication_error' | 'rate_limit_error';
  readonly code?: string;
  readonly decline_code?: string;
  readonly message: string;
  readonly payment_intent?: StripePaymentIntent;
}

export interface StripePaymentIntent {
  readonly id: string;
  readonly object: 'payment_intent';
  readonly amount: number;
  readonly amount_capturable: number;
  readonly amount_received: number;
  readonly currency: string;
  readonly status: StripeIntentStatus;
  readonly capture_method: 'automatic' | 'manual' | 'automatic_async';
  readonly latest_charge: string | null;
  readonly metadata: Record<string, string>;
  readonly last_payment_error: StripeError | null;
  readonly payment_method: string | null;
}

export interface StripeRefund {
  readonly id: string;
  readonly object: 'refund';
  readonly amount: number;
  readonly currency: string;
  readonly payment_intent: string;
  readonly status: 'pending' | 'requires_action' | 'succeeded' | 'failed' | 'canceled';
  readonly metadata: Record<string, string>;
}

export interface StripePaymentMethod {
  readonly id: string;
  readonly object: 'payment_method';
  readonly type: 'card';
  readonly card: { readonly brand: string; readonly last4: string; readonly exp_month: number; readonly exp_year: number };
}

/**
 * A movement of the account's Stripe balance (`GET /v1/balance_transactions`). With `expand[]=data.source` the
 * source is the charge (or refund) object, whose `payment_intent` names the PaymentIntent Keel holds.
 */
export interface StripeBalanceTransaction {
  readonly id: string;
  readonly object: 'balance_transaction';
  readonly amount: number;
  readonly currency: string;
  readonly fee: number;
  readonly net: number;
  readonly type: 'charge' | 'payment' | 'refund' | 'payment_refund' | 'adjustment' | 'payout' | 'stripe_fee';
  readonly status: 'available' | 'pending';
  readonly created: number;
  readonly available_on: number;
  readonly source: string | { readonly id: string; readonly object: 'charge' | 'refund'; readonly payment_intent: string | null } | null;
}

export interface StripeList<T> {
  readonly object: 'list' | 'search_result';
  readonly data: readonly T[];
  readonly has_more: boolean;
}

export type StripeIntentMeaning = 'needs_payment_method' | 'needs_authentication' | 'pending' | 'authorized' | 'captured' | 'canceled';

export function mapStripeStatus(status: StripeIntentStatus): StripeIntentMeaning {
  switch (status) {
    case 'requires_payment_method':
    case 'requires_confirmation':
      return 'needs_payment_method';
    case 'requires_action':
      return 'needs_authentication';
    case 'processing':
      return 'pending';
    case 'requires_capture':
      return 'authorized';
    case 'succeeded':
      return 'captured';
    case 'canceled':
      return 'canceled';
    default:
      return assertNever(status, 'Stripe PaymentIntent status');
  }
}

/** Stripe's decline codes (and card error codes) mapped to Keel's; anything else is a generic decline. */
export function stripeDeclineCode(error: StripeError): DeclineCode {
  const code = error.decline_code ?? error.code ?? '';
  switch (code) {
    case 'insufficient_funds':
    case 'card_velocity_exceeded':
      return 'insufficient_funds';
    case 'expired_card':
      return 'expired_card';
    case 'incorrect_number':
    case 'invalid_number':
    case 'incorrect_cvc':
    case 'invalid_cvc':
    case 'invalid_expiry_month':
    case 'invalid_expiry_year':
      return 'incorrect_card';
    default:
      return 'card_declined';
  }
}

export function isStripeErrorBody(body: unknown): body is { error: StripeError } {
  const candidate = body as { error?: Partial<StripeError> } | null;
  return typeof candidate?.error?.type === 'string' && typeof candidate.error.message === 'string';
}

/** Stripe's form encoding of nested parameters: `a[b][c]=v`. */
export function toStripeForm(parameters: Record<string, unknown>): string {
  const form = new URLSearchParams();
  const walk = (prefix: string, value: unknown): void => {
    if (value === undefined || value === null) return;
    if (typeof value === 'object' && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) walk(prefix === '' ? key : `${prefix}[${key}]`, inner);
      return;
    }
    form.append(prefix, String(value));
  };
  walk('', parameters);
  return form.toString();
}
