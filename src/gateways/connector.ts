/**
 * The connector interface every partner implements. A connector speaks one partner's wire format and maps its
 * answers onto Keel's four outcomes; it never touches the database. Whether a failure happened *before* the
 * request was sent (unreachable: nothing can have been charged) or *after* (unknown: only an inquiry may tell)
 * is the distinction everything else relies on.
 */

export const gatewayNames = ['toss', 'stripe'] as const;
export type GatewayName = (typeof gatewayNames)[number];

export const declineCodes = ['card_declined', 'insufficient_funds', 'expired_card', 'incorrect_card', 'card_authentication_required'] as const;
export type DeclineCode = (typeof declineCodes)[number];

export interface CardDetails {
  readonly number: string;
  readonly expMonth: number;
  readonly expYear: number;
  readonly cvc: string;
}

/** What every partner call carries besides its own parameters. */
export interface PartnerCallContext {
  readonly partnerSecretKey: string;
  /** A live merchant's call: it goes to the partner's live URL, never to the benchmark gateway. */
  readonly livemode: boolean;
  readonly country: string;
  readonly idempotencyKey: string;
  readonly correlationId: string;
  /** A shorter read timeout for this call (a half-open breaker's trial). */
  readonly readTimeoutMs?: number;
}

export type PartnerOutcome<T> =
  | { readonly kind: 'ok'; readonly value: T }
  | { readonly kind: 'declined'; readonly code: DeclineCode; readonly message: string }
  | { readonly kind: 'unreachable'; readonly reason: string; readonly retryAfterMs?: number }
  | { readonly kind: 'unknown'; readonly reason: string }
  | { readonly kind: 'rejected'; readonly reason: string };

/**
 * What a charge is made with: a card at hand (never stored), or a token a partner issued, which only that
 * partner can charge.
 */
export type PaymentSource = { readonly card: CardDetails } | { readonly token: string; readonly gateway: GatewayName };

export interface AuthorizeRequest {
  readonly attemptId: string;
  readonly orderId: string;
  /** What the shopper bought, as the partner shows it (Toss `orderName`): the payment's description, else the order id. */
  readonly orderName: string;
  readonly amount: bigint;
  readonly currency: string;
  readonly captureMethod: 'automatic' | 'manual';
  readonly customerKey: string;
  readonly source: PaymentSource;
}

export interface AuthorizeResult {
  /** The partner's id of the charge; absent when the partner holds only a token until capture. */
  readonly partnerPaymentId: string | null;
  readonly captured: boolean;
  /** A reusable token (Toss billing key) Keel must keep, encrypted, to capture later. */
  readonly token: string | null;
  readonly card: { readonly brand: string; readonly last4: string } | null;
}

export interface CaptureRequest {
  readonly attemptId: string;
  readonly orderId: string;
  readonly orderName: string;
  readonly amount: bigint;
  readonly currency: string;
  readonly customerKey: string;
  readonly partnerPaymentId: string | null;
  readonly token: string | null;
}

export interface CancelRequest {
  readonly attemptId: string;
  readonly partnerPaymentId: string | null;
  readonly token: string | null;
  readonly reason: string;
}

export interface RefundRequest {
  readonly attemptId: string;
  readonly partnerPaymentId: string;
  readonly amount: bigint;
  readonly currency: string;
  readonly reason: string;
}

export interface InquiryRequest {
  readonly attemptId: string;
  readonly operation: AttemptOperation;
  readonly orderId: string;
  readonly partnerPaymentId: string | null;
  readonly amount: bigint;
}

export type AttemptOperation = 'authorize' | 'capture' | 'cancel' | 'refund';

/**
 * What an inquiry found. Inquiries may lag behind the partner's truth (search indexes, replicas), so `absent`
 * says only that the partner showed nothing *yet*; whether that may be trusted is Keel's decision, by time.
 */
export type InquiryResult =
  /** The partner shows no trace of this attempt's effect (no charge; or, for a capture or cancel, not done). */
  | { readonly state: 'absent' }
  | { readonly state: 'pending' }
  | { readonly state: 'declined'; readonly code: DeclineCode; readonly message: string }
  | { readonly state: 'succeeded'; readonly partnerPaymentId: string | null; readonly captured: boolean; readonly canceled: boolean }
  /** The partner's records cannot tell this attempt apart from others (e.g. Toss cancels carry no reference). */
  | { readonly state: 'unverifiable'; readonly reason: string };

export interface TokenizeRequest {
  readonly customerKey: string;
  readonly card: CardDetails;
}

export interface TokenizeResult {
  readonly token: string;
  readonly brand: string;
  readonly last4: string;
}

export interface Connector {
  readonly name: GatewayName;
  /** Whether this partner can charge the currency; a partner never charges another currency than asked. */
  supportsCurrency(currency: string): boolean;
  /**
   * How long the partner remembers an idempotency key: within it, the same request under the same key replays
   * the first answer (or does the work once, if the first never arrived); after it, a resend is a new request.
   */
  readonly idempotencyKeyRetentionMs: number;
  authorize(context: PartnerCallContext, request: AuthorizeRequest): Promise<PartnerOutcome<AuthorizeResult>>;
  capture(context: PartnerCallContext, request: CaptureRequest): Promise<PartnerOutcome<{ partnerPaymentId: string }>>;
  cancel(context: PartnerCallContext, request: CancelRequest): Promise<PartnerOutcome<null>>;
  refund(context: PartnerCallContext, request: RefundRequest): Promise<PartnerOutcome<{ partnerRefundId: string | null }>>;
  inquire(context: PartnerCallContext, request: InquiryRequest): Promise<PartnerOutcome<InquiryResult>>;
  tokenize(context: PartnerCallContext, request: TokenizeRequest): Promise<PartnerOutcome<TokenizeResult>>;
  /** Revokes a token (billing key, payment method) at the partner. */
  detach(context: PartnerCallContext, request: { readonly token: string }): Promise<PartnerOutcome<null>>;
}

export function cardLast4(number: string): string {
  return number.slice(-4);
}

/** The card network by its number's leading digits (IIN ranges of the major networks). */
export function cardBrand(number: string): string {
  if (/^4/.test(number)) return 'visa';
  if (/^(5[1-5]|2[2-7])/.test(number)) return 'mastercard';
  if (/^3[47]/.test(number)) return 'amex';
  if (/^(6011|65|64[4-9])/.test(number)) return 'discover';
  if (/^35(2[89]|[3-8])/.test(number)) return 'jcb';
  if (/^(62|81)/.test(number)) return 'unionpay';
  if (/^9/.test(number)) return 'local';
  return 'unknown';
}
