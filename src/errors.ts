/**
 * Keel's closed error catalogue. Every error a client can see has a code here, and every code has exactly one
 * HTTP status and one error type. `docs/errors.md` documents the same table; a test keeps the two in step.
 */

export const errorTypes = [
  'invalid_request_error',
  'authentication_error',
  'card_error',
  'idempotency_error',
  'rate_limit_error',
  'api_error',
  'gateway_error',
] as const;
export type ErrorType = (typeof errorTypes)[number];

interface CatalogueEntry {
  readonly status: number;
  readonly type: ErrorType;
  readonly description: string;
}

export const errorCatalogue = {
  // 400
  parameter_invalid: { status: 400, type: 'invalid_request_error', description: 'A parameter has the wrong type, format or range; `param` names it.' },
  parameter_missing: { status: 400, type: 'invalid_request_error', description: 'A required parameter is absent; `param` names it.' },
  parameter_unknown: { status: 400, type: 'invalid_request_error', description: 'The body has a field the endpoint does not accept; `param` names it.' },
  body_malformed: { status: 400, type: 'invalid_request_error', description: 'The body is not valid JSON, or not a JSON object.' },
  media_type_unsupported: { status: 415, type: 'invalid_request_error', description: 'The body is not `application/json`.' },
  body_too_large: { status: 413, type: 'invalid_request_error', description: 'The body is larger than the limit (64 KiB).' },
  amount_too_large: { status: 400, type: 'invalid_request_error', description: 'The amount is above the maximum for its currency.' },
  currency_unsupported: { status: 400, type: 'invalid_request_error', description: 'The currency is not an ISO 4217 code Keel supports.' },
  idempotency_key_missing: { status: 400, type: 'invalid_request_error', description: 'A POST under /v1 has no `Idempotency-Key` header.' },
  idempotency_key_invalid: { status: 400, type: 'invalid_request_error', description: 'The `Idempotency-Key` is not 1-255 printable ASCII characters.' },
  amount_mismatch: { status: 400, type: 'invalid_request_error', description: 'The amount differs from the amount the payment was created with.' },
  gateway_not_configured: { status: 400, type: 'invalid_request_error', description: 'The payment would go to a partner this live merchant has no key for; nothing was sent. Add the key, or route elsewhere.' },
  payment_method_required: { status: 400, type: 'invalid_request_error', description: 'Confirming needs a payment method, on the payment or in the request.' },
  // 401 / 403
  authentication_required: { status: 401, type: 'authentication_error', description: 'No API key was given.' },
  api_key_invalid: { status: 401, type: 'authentication_error', description: 'The API key is unknown or revoked.' },
  signature_invalid: { status: 401, type: 'authentication_error', description: 'The request\'s signature is missing or wrong, or its timestamp is more than 300 s from now (chat-ops); nothing was done.' },
  api_key_not_allowed: { status: 403, type: 'authentication_error', description: 'A publishable key was used where a secret key (or the operator token) is needed.' },
  // 404
  resource_missing: { status: 404, type: 'invalid_request_error', description: 'No such object for this merchant (another merchant\'s object is also missing).' },
  route_not_found: { status: 404, type: 'invalid_request_error', description: 'No such endpoint.' },
  // 409
  payment_unexpected_state: { status: 409, type: 'invalid_request_error', description: 'The operation is not allowed in the payment\'s current status; the message and `payment` name it.' },
  order_id_taken: { status: 409, type: 'invalid_request_error', description: 'This merchant already has a payment with that `order_id`.' },
  refund_exceeds_payment: { status: 409, type: 'invalid_request_error', description: 'The refund would take the refunded total above `amount_received`.' },
  reconciliation_in_progress: { status: 409, type: 'invalid_request_error', description: 'A reconciliation of that partner and day is already running; try again when it ends.' },
  incident_resolved: { status: 409, type: 'invalid_request_error', description: 'The incident is resolved: its status, roles and timeline no longer change (a new alert opens a new incident).' },
  postmortem_incomplete: { status: 409, type: 'invalid_request_error', description: 'Publishing a post-mortem needs what happened, at least one wrong assumption and at least one action item.' },
  queue_ticket_not_admitted: { status: 409, type: 'invalid_request_error', description: 'The queue ticket is still waiting, its admission lapsed, or another checkout already used it; the message says which.' },
  idempotency_key_in_use: { status: 409, type: 'idempotency_error', description: 'A request with this key is still running; retry after it finishes.' },
  // 422
  idempotency_key_reused: { status: 422, type: 'idempotency_error', description: 'The key was used before with a different method, path or body.' },
  // 402: the partner declined. A decline is a card_error, never a 5xx.
  card_declined: { status: 402, type: 'card_error', description: 'The partner declined the card.' },
  insufficient_funds: { status: 402, type: 'card_error', description: 'The partner declined for insufficient funds.' },
  expired_card: { status: 402, type: 'card_error', description: 'The card has expired.' },
  incorrect_card: { status: 402, type: 'card_error', description: 'The card number, expiry or CVC is wrong.' },
  card_authentication_required: { status: 402, type: 'card_error', description: 'The card needs 3-D Secure authentication, which Keel does not run; the partner\'s intent was canceled and nothing is held.' },
  // Brand Pay
  pin_required: { status: 400, type: 'invalid_request_error', description: 'The customer has no PIN yet, or changing it needs `current_pin`.' },
  pin_incorrect: { status: 403, type: 'invalid_request_error', description: 'The PIN is wrong; the message says how many tries remain before the customer is locked.' },
  customer_inactive: { status: 409, type: 'invalid_request_error', description: 'The customer is deleted, or the payment method is detached or belongs to another customer.' },
  payment_method_unsupported: { status: 400, type: 'invalid_request_error', description: 'This kind of payment method cannot be charged through the merchant\'s partner.' },
  checkout_session_expired: { status: 410, type: 'invalid_request_error', description: 'The checkout session expired (30 minutes after it was created); create a new one.' },
  checkout_session_used: { status: 409, type: 'invalid_request_error', description: 'The checkout session was already used for a payment; sessions are single use.' },
  customer_locked: { status: 403, type: 'invalid_request_error', description: 'The customer entered 5 wrong PINs in a row and is locked until the merchant unlocks them.' },
  // 429
  rate_limited: { status: 429, type: 'rate_limit_error', description: 'Too many requests; wait for `Retry-After` seconds.' },
  // 5xx
  internal_error: { status: 500, type: 'api_error', description: 'Keel failed unexpectedly; the request may be retried with the same idempotency key.' },
  overloaded: { status: 503, type: 'api_error', description: 'Keel is shedding load to protect payments already under way; retry after `Retry-After` seconds.' },
  service_unavailable: { status: 503, type: 'api_error', description: 'Keel or its database is temporarily unavailable; retry with the same idempotency key.' },
  gateway_unavailable: { status: 503, type: 'gateway_error', description: 'The partner was not reached (connection refused, breaker open, bulkhead full); nothing was charged; retry.' },
  gateway_error: { status: 502, type: 'gateway_error', description: 'The partner refused the request for a reason that is not a decline (e.g. Keel\'s credentials).' },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof errorCatalogue;

export interface KeelErrorOptions {
  readonly param?: string;
  readonly payment?: unknown;
  readonly retryAfterSeconds?: number;
  readonly cause?: unknown;
}

/** An operating error with a catalogue code: expected, handled, shown to the client in the error envelope. */
export class KeelError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: ErrorType;
  readonly param: string | undefined;
  readonly payment: unknown;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: KeelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const entry: CatalogueEntry = errorCatalogue[code];
    this.name = 'KeelError';
    this.code = code;
    this.status = entry.status;
    this.type = entry.type;
    this.param = options.param;
    this.payment = options.payment;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

export function isKeelError(error: unknown): error is KeelError {
  return error instanceof KeelError;
}

export function assertNever(value: never, what = 'value'): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(value)}`);
}
